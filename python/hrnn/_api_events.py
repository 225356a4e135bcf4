"""PutEvents' events as the service's JSON has them (camelCase) → the engine's snake_case dicts.

One converter for ``hrnn put-events`` and ``hrnn serve``. Fields Personalize has and the engine
does not use (``recommendationId``, ``metricAttribution``) are accepted and dropped; everything
else is checked by :meth:`hrnn.Recommender.put_events`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["EVENT_FIELDS", "event_from_api"]

#: The service's event fields the engine takes, and their engine names.
EVENT_FIELDS = {
    "eventType": "event_type",
    "sentAt": "sent_at",
    "itemId": "item_id",
    "eventValue": "event_value",
    "eventId": "event_id",
    "impression": "impression",
    "properties": "properties",
}


def event_from_api(event: Any, index: int = 0) -> dict[str, Any]:
    """One ``eventList`` entry as the engine's event dict.

    ``sentAt`` may be Unix seconds or an ISO-8601 time (UTC unless it says otherwise), as the AWS
    CLI and SDKs send it; ``properties`` stays the JSON string the service takes (the engine checks
    it is strict JSON).

    Raises:
        TypeError: the entry is not an object.
        ValueError: ``sentAt`` is a string that is not an ISO-8601 time.
    """
    if not isinstance(event, Mapping):
        raise TypeError(f"eventList[{index}]: expected an object, found {type(event).__name__}")
    out: dict[str, Any] = {}
    for key, value in event.items():
        name = EVENT_FIELDS.get(key)
        if name is None:
            continue
        if name == "sent_at" and isinstance(value, str):
            value = _iso_seconds(value, index)
        out[name] = value
    return out


def _iso_seconds(value: str, index: int) -> float:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"eventList[{index}].sentAt: expected Unix seconds or an ISO-8601 time, found {value!r:.100}"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
