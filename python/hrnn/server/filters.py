"""Named filters: what a request's ``filterArn`` (and ``filterValues``) mean to the engine.

Personalize filters are expressions created with CreateFilter; hrnn's engine has three kinds of
exclusion (docs/api.md), so the server takes a registry mapping each filter ARN to them::

    {
      "arn:aws:personalize:us-east-1:111122223333:filter/unseen":   {"exclude_seen": true},
      "arn:aws:personalize:us-east-1:111122223333:filter/unbought": {"exclude_seen": ["buy"]},
      "arn:aws:personalize:us-east-1:111122223333:filter/by-type":  {"exclude_seen": "$TYPES"},
      "arn:aws:personalize:us-east-1:111122223333:filter/blocked":  {"exclude_items": ["i1", "i2"]},
      "arn:aws:personalize:us-east-1:111122223333:filter/only":     {"include_items": "$ITEMS"}
    }

A string value ``"$NAME"`` (alone, or as an element of a list) is a placeholder filled from the
request's ``filterValues["NAME"]``, written as the service takes it: one or more JSON strings
separated by commas (``"\\"click\\",\\"view\\""``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FilterError", "NamedFilter", "parse_filters"]

_KEYS = ("exclude_seen", "exclude_items", "include_items")


class FilterError(ValueError):
    """A request whose ``filterValues`` do not fit its filter (the service's InvalidInputException)."""


@dataclass(frozen=True)
class NamedFilter:
    """One registry entry; each field as written in the config (lists may hold placeholders)."""

    exclude_seen: bool | str | tuple[str, ...] = False
    exclude_items: str | tuple[str, ...] | None = None
    include_items: str | tuple[str, ...] | None = None

    def engine_kwargs(self, values: Mapping[str, str] | None) -> dict[str, Any]:
        """The keyword arguments of :meth:`hrnn.Recommender.recommend` for a request's
        ``filterValues``.

        Raises:
            FilterError: a placeholder without a value, or a value that is not JSON strings.
        """
        values = values or {}
        kwargs: dict[str, Any] = {}
        if isinstance(self.exclude_seen, bool):
            kwargs["exclude_seen"] = self.exclude_seen
        else:
            kwargs["exclude_seen"] = _expand(self.exclude_seen, values)
        for name in ("exclude_items", "include_items"):
            field = getattr(self, name)
            if field is not None:
                kwargs[name] = _expand(field, values)
        return kwargs


def _expand(field: str | tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    out: list[str] = []
    for element in (field,) if isinstance(field, str) else field:
        if element.startswith("$"):
            out.extend(_filter_value(element[1:], values))
        else:
            out.append(element)
    return out


def _filter_value(name: str, values: Mapping[str, str]) -> list[str]:
    if name not in values:
        raise FilterError(f"filterValues: the filter needs a value for {name!r}; found {sorted(values)}")
    raw = values[name]
    try:
        parsed = json.loads(f"[{raw}]")
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or not parsed or not all(isinstance(v, str) for v in parsed):
        raise FilterError(
            f'filterValues[{name!r}]: expected JSON strings separated by commas (e.g. "\\"a\\",\\"b\\""), '
            f"found {raw[:100]!r}"
        )
    return parsed


def parse_filters(config: Any) -> dict[str, NamedFilter]:
    """The registry from its JSON object (filter ARN → entry).

    Raises:
        ValueError: an entry with an unknown key or a value of the wrong type; names the ARN.
    """
    if not isinstance(config, dict):
        raise ValueError(
            f"filters: expected an object of filter ARN -> filter, found {type(config).__name__}"
        )
    registry: dict[str, NamedFilter] = {}
    for arn, entry in config.items():
        if not isinstance(entry, dict):
            raise ValueError(f"filters[{arn!r}]: expected an object, found {type(entry).__name__}")
        unknown = sorted(set(entry) - set(_KEYS))
        if unknown:
            raise ValueError(f"filters[{arn!r}]: unknown keys {unknown} (expected some of {list(_KEYS)})")
        seen = entry.get("exclude_seen", False)
        if not isinstance(seen, bool):
            seen = _strings(seen, f"filters[{arn!r}].exclude_seen", "true, false, ")
        items = {
            name: None if entry.get(name) is None else _strings(entry[name], f"filters[{arn!r}].{name}", "")
            for name in ("exclude_items", "include_items")
        }
        registry[arn] = NamedFilter(seen, items["exclude_items"], items["include_items"])
    return registry


def _strings(value: Any, where: str, also: str) -> str | tuple[str, ...]:
    if isinstance(value, str) and value.startswith("$"):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f'{where}: expected {also}a list of strings or a "$PLACEHOLDER", found {value!r:.100}')
