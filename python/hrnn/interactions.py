"""Interactions in the Amazon Personalize schema: loading, validation, selection, filtering."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from hrnn import _hrnn
from hrnn.sessions import Sessions

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_SESSION_TIMEOUT", "DataReport", "DropRule", "Interactions", "TimestampUnit"]

#: Default gap, in seconds, after which a new session starts.
DEFAULT_SESSION_TIMEOUT = 1800

#: The unit of a CSV file's TIMESTAMP column: Unix epoch seconds (the schema's), milliseconds,
#: microseconds or nanoseconds.
TimestampUnit = Literal["s", "ms", "us", "ns"]


@dataclass(frozen=True)
class DropRule:
    """One documented rule that dropped data, and how much it dropped."""

    rule: str
    detail: str
    rows_dropped: int
    users_dropped: int
    items_dropped: int


@dataclass(frozen=True)
class DataReport:
    """What was read and what each rule dropped since (nothing is dropped silently)."""

    source: str
    rows_read: int
    rows: int
    users: int
    items: int
    drops: tuple[DropRule, ...]
    ignored_columns: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows": self.rows,
            "users": self.users,
            "items": self.items,
            "drops": [d.__dict__ for d in self.drops],
            "ignored_columns": list(self.ignored_columns),
        }

    def __str__(self) -> str:
        lines = [
            f"{self.source}: {self.rows_read} rows read; kept {self.rows} rows, "
            f"{self.users} users, {self.items} items"
        ]
        for d in self.drops:
            lines.append(
                f"  dropped by {d.rule} ({d.detail}): {d.rows_dropped} rows, "
                f"{d.users_dropped} users, {d.items_dropped} items"
            )
        if self.ignored_columns:
            lines.append(f"  columns ignored: {', '.join(self.ignored_columns)}")
        return "\n".join(lines)


def _as_str_list(values: Any, name: str) -> list[str]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a one-dimensional sequence, found shape {array.shape}")
    if array.dtype.kind == "f":
        raise TypeError(f"{name}: expected strings or integers as ids, found floats ({array.dtype})")
    return [str(v) for v in array.tolist()]


class Interactions:
    """Interactions (USER_ID, ITEM_ID, TIMESTAMP[, EVENT_TYPE, EVENT_VALUE]) held in Rust.

    Users, items and event types get dense integer indices in order of first appearance. Instances
    are immutable: selection and filtering return new objects, and each keeps a report of every
    rule that dropped data (:meth:`report`).
    """

    # the id lists are immutable: read out of Rust once, on first use (each read copies every id)
    __slots__ = ("_event_types", "_inner", "_item_ids", "_user_ids")

    def __init__(self, inner: _hrnn.Interactions) -> None:
        self._inner = inner
        self._user_ids: tuple[str, ...] | None = None
        self._item_ids: tuple[str, ...] | None = None
        self._event_types: tuple[str, ...] | None = None

    # ----- construction -------------------------------------------------------------------------
    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], timestamp_unit: TimestampUnit = "s") -> Interactions:
        """Reads a CSV file in the Personalize interactions schema.

        The header names the columns, matched case-insensitively: ``USER_ID``, ``ITEM_ID`` (1–256
        characters) and ``TIMESTAMP`` (an integer, Unix epoch seconds from 1970-01-01 to
        2199-12-31 UTC) are required; ``EVENT_TYPE`` and ``EVENT_VALUE`` (a float, may be empty)
        are optional; other columns are ignored and listed in :attr:`ignored_columns`. Line
        endings are ``\\n`` or ``\\r\\n``; a record may be at most 1 MiB. The file is streamed,
        never read whole. The rules: docs/format.md ("Input: the interactions CSV").

        A TIMESTAMP past 2199 is an error rather than a date: it is almost always a column in
        milliseconds or microseconds, and the message says which unit gives a plausible date.

        Args:
            path: the CSV file.
            timestamp_unit: the unit of the TIMESTAMP column: ``"s"`` (default), ``"ms"``,
                ``"us"`` or ``"ns"``; other units are converted to whole seconds (rounded down).

        Returns:
            The interactions, in file order, with timestamps in seconds.

        Raises:
            SchemaError: a malformed file; the message names the file, line, column and value.
            ValueError: an unknown ``timestamp_unit``.
            FileNotFoundError: ``path`` does not exist.
            PermissionError: ``path`` cannot be read.
        """
        return cls(_hrnn.Interactions.from_csv(os.fspath(path), timestamp_unit))

    @classmethod
    def from_arrays(
        cls,
        user_id: Sequence[Any] | npt.ArrayLike,
        item_id: Sequence[Any] | npt.ArrayLike,
        timestamp: Sequence[int] | npt.ArrayLike,
        event_type: Sequence[str] | npt.ArrayLike | None = None,
        event_value: Sequence[float] | npt.ArrayLike | None = None,
    ) -> Interactions:
        """Builds interactions from columns (lists or numpy arrays; ids may be ints or strings).

        Args:
            user_id: USER_ID of each row.
            item_id: ITEM_ID of each row.
            timestamp: integer Unix seconds of each row.
            event_type: optional EVENT_TYPE of each row.
            event_value: optional EVENT_VALUE of each row (NaN or None = missing).

        Returns:
            The interactions, in input order.

        Raises:
            SchemaError: an invalid value; the message names the row (as ``line`` = row + 1).
            ValueError: columns of different lengths.
            TypeError: timestamps that are not integers.
        """
        ts = np.asarray(timestamp)
        whole_floats = ts.dtype.kind == "f" and bool(np.all(np.isfinite(ts)) and np.all(ts == np.round(ts)))
        if ts.dtype.kind not in "iu" and ts.size and not whole_floats:
            raise TypeError(f"timestamp: expected integer Unix seconds, found dtype {ts.dtype}")
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        values = None
        if event_value is not None:
            raw = np.asarray(event_value)
            if raw.dtype == object:  # None marks a missing value
                raw = np.array([np.nan if v is None else v for v in raw.tolist()], dtype=np.float64)
            values = np.ascontiguousarray(raw, dtype=np.float64)
        types = None if event_type is None else _as_str_list(event_type, "event_type")
        return cls(
            _hrnn.Interactions.from_arrays(
                _as_str_list(user_id, "user_id"), _as_str_list(item_id, "item_id"), ts, types, values
            )
        )

    @classmethod
    def from_event_log(cls, path: str | os.PathLike[str]) -> Interactions:
        """Reads the event log of a :class:`hrnn.Recommender` (``event_log=``) as interactions.

        Each logged event with an item becomes a row: ``USER_ID`` is its user id, ``ITEM_ID`` its
        item, ``TIMESTAMP`` its ``sent_at`` rounded down to whole seconds, ``EVENT_TYPE`` and
        ``EVENT_VALUE`` (NaN where absent) its own. As Personalize does at a full retrain, an
        anonymous event whose session carried a user id at some point belongs to that user
        (other anonymous events keep their session id as user id), and a repeated event (same
        ``event_id``, or the same content without one) counts once. Events without an item are
        not rows. A torn tail is ignored (the file is not modified). What each rule did is
        logged. The log is read in Rust.

        Args:
            path: the event log.

        Returns:
            The interactions, in log order.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            EventLogError: the log is corrupt before its end, or not an hrnn event log.
        """
        users, items, timestamps, event_types, event_values, counts = _hrnn.read_event_log(os.fspath(path))
        found = dict(counts)
        logger.info(
            "event log %s: %d rows; %d anonymous rows stitched to the user their session carried, "
            "%d repeats and %d events without an item left out, %d bytes of a torn tail ignored",
            os.fspath(path),
            len(users),
            found["stitched"],
            found["repeats"],
            found["without_item"],
            found["torn_bytes"],
        )
        return cls(_hrnn.Interactions.from_arrays(users, items, timestamps, event_types, event_values))

    def with_event_log(self, path: str | os.PathLike[str]) -> Interactions:
        """These interactions plus the events of a recommender's event log (the daily loop's
        training data: yesterday's CSV and what was served since, docs/operations.md).

        The log is read as :meth:`from_event_log` reads it. A logged row equal to one already
        here (same user, item, timestamp and event type) is left out, so a log whose events were
        already exported into the CSV is not counted twice; the count is logged. When these
        interactions have no ``EVENT_TYPE`` (or ``EVENT_VALUE``) column, the logged types
        (values) are dropped too, so every row has the same columns.

        Returns:
            New interactions: these rows, then the log's new rows, in log order.
        """
        logged = Interactions.from_event_log(path).to_arrays()
        mine = self.to_arrays()
        typed = "event_type" in mine
        key_here = _row_keys(mine, typed)
        keys = _row_keys(logged, typed)
        new = ~np.isin(keys, key_here)
        logger.info(
            "event log %s: %d of its %d rows added, %d already in the data",
            os.fspath(path),
            int(new.sum()),
            len(keys),
            int((~new).sum()),
        )
        merged: dict[str, Any] = {}
        for name in ("user_id", "item_id", "timestamp", "event_type", "event_value"):
            if name in mine:
                merged[name] = np.concatenate([mine[name], logged[name][new]])
        return Interactions.from_arrays(**merged)

    @classmethod
    def from_pandas(cls, frame: pd.DataFrame) -> Interactions:
        """Builds interactions from a DataFrame with the schema's columns (case-insensitive).

        Raises:
            SchemaError: a required column is missing or a value is invalid.
        """
        columns = {str(c).strip().upper(): c for c in frame.columns}
        for required in ("USER_ID", "ITEM_ID", "TIMESTAMP"):
            if required not in columns:
                raise _schema_error(
                    f"<DataFrame>: line 1, column {required}: missing required column {required} "
                    f"(found {', '.join(map(str, frame.columns))!r})"
                )

        def col(name: str) -> Any:
            return frame[columns[name]].to_numpy() if name in columns else None

        return cls.from_arrays(
            col("USER_ID"), col("ITEM_ID"), col("TIMESTAMP"), col("EVENT_TYPE"), col("EVENT_VALUE")
        )

    # ----- size and maps ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._inner)

    def __repr__(self) -> str:
        return f"Interactions(rows={len(self)}, users={self.num_users}, items={self.num_items})"

    @property
    def num_users(self) -> int:
        """Number of distinct users."""
        return self._inner.num_users

    @property
    def num_items(self) -> int:
        """Number of distinct items."""
        return self._inner.num_items

    @property
    def user_ids(self) -> list[str]:
        """User id of each user index (a new list; read it once outside a loop)."""
        if self._user_ids is None:
            self._user_ids = tuple(self._inner.user_ids)
        return list(self._user_ids)

    @property
    def item_ids(self) -> list[str]:
        """Item id of each item index (a new list; read it once outside a loop)."""
        if self._item_ids is None:
            self._item_ids = tuple(self._inner.item_ids)
        return list(self._item_ids)

    @property
    def event_types(self) -> list[str]:
        """Event type of each event-type index (``[""]`` without an EVENT_TYPE column)."""
        if self._event_types is None:
            self._event_types = tuple(self._inner.event_types)
        return list(self._event_types)

    @property
    def has_event_type(self) -> bool:
        """Whether the source had an EVENT_TYPE column."""
        return self._inner.has_event_type

    @property
    def has_event_value(self) -> bool:
        """Whether the source had an EVENT_VALUE column."""
        return self._inner.has_event_value

    @property
    def ignored_columns(self) -> list[str]:
        """Columns of the source that are not part of the schema (kept out of the data)."""
        return self._inner.ignored_columns

    def user_index(self) -> dict[str, int]:
        """A dict from user id to dense user index."""
        return {u: i for i, u in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        """A dict from item id to dense item index."""
        return {u: i for i, u in enumerate(self.item_ids)}

    def columns(self) -> dict[str, np.ndarray]:
        """The rows as numpy arrays (copies): user, item, timestamp, event_type, event_value."""
        user, item, ts, etype, evalue = self._inner.columns()
        return {"user": user, "item": item, "timestamp": ts, "event_type": etype, "event_value": evalue}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The rows as id columns, the keyword arguments :meth:`from_arrays` takes.

        Returns:
            ``user_id``, ``item_id`` (object arrays of str), ``timestamp`` (int64), and
            ``event_type`` / ``event_value`` when the source had them.
        """
        c = self.columns()
        data: dict[str, np.ndarray] = {
            "user_id": np.asarray(self.user_ids, dtype=object)[c["user"]],
            "item_id": np.asarray(self.item_ids, dtype=object)[c["item"]],
            "timestamp": c["timestamp"],
        }
        if self.has_event_type:
            data["event_type"] = np.asarray(self.event_types, dtype=object)[c["event_type"]]
        if self.has_event_value:
            data["event_value"] = c["event_value"]
        return data

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a DataFrame with the schema's column names (needs pandas)."""
        import pandas as pd

        return pd.DataFrame({name.upper(): column for name, column in self.to_arrays().items()})

    # ----- rules --------------------------------------------------------------------------------
    def select(
        self, event_type: str | None = None, event_value_threshold: float | None = None
    ) -> Interactions:
        """Personalize's training-data selection (CreateSolution's ``eventType``/``eventValueThreshold``).

        Args:
            event_type: keep only rows of this EVENT_TYPE (default: every type).
            event_value_threshold: keep only rows whose EVENT_VALUE is ≥ this; rows without a
                value are dropped by this rule.

        Returns:
            The selected interactions; :meth:`report` counts what each rule dropped.

        Raises:
            ValueError: a rule names a column the data does not have.
        """
        return Interactions(self._inner.select(event_type, event_value_threshold))

    def history_lengths(self) -> npt.NDArray[np.uint32]:
        """Rows per user, by user index."""
        return self._inner.history_lengths()

    def history_length_bounds(
        self, min_percentile: float = 0.0, max_percentile: float = 0.99
    ) -> tuple[float, float]:
        """The history-length bounds that :meth:`filter_by_history_length` keeps (inclusive)."""
        return self._inner.history_length_bounds(float(min_percentile), float(max_percentile))

    def filter_by_history_length(
        self, min_percentile: float = 0.0, max_percentile: float = 0.99
    ) -> Interactions:
        """Drops users with unusually short or long histories (the recipe's featurization).

        Rule: with ``L`` the per-user history lengths (rows per user), the bounds are
        ``numpy.quantile(L, min_percentile)`` and ``numpy.quantile(L, max_percentile)`` (numpy's
        default ``method="linear"``); users with ``lo <= length <= hi`` are kept, every row of the
        others is dropped and counted in :meth:`report`.

        Args:
            min_percentile: ``min_user_history_length_percentile``, in [0, 1] (default 0.0).
            max_percentile: ``max_user_history_length_percentile``, in [0, 1] (default 0.99).

        Returns:
            The filtered interactions (users and items re-indexed densely).

        Raises:
            ValueError: a percentile outside [0, 1], or min > max; names the parameter.
        """
        return Interactions(
            self._inner.filter_by_history_length(float(min_percentile), float(max_percentile))
        )

    def subset(self, mask: npt.ArrayLike, rule: str = "subset") -> Interactions:
        """Keeps the rows where ``mask`` is True (users and items re-indexed densely)."""
        return Interactions(self._inner.subset(np.ascontiguousarray(mask, dtype=bool), rule))

    def check_minimum(self) -> None:
        """Checks Personalize's minimum data: ≥ 1000 interactions, ≥ 25 users with ≥ 2 each.

        Raises:
            InsufficientDataError: below the minimum; says what was found.
        """
        self._inner.check_minimum()

    def sessionize(self, session_timeout: int = DEFAULT_SESSION_TIMEOUT) -> Sessions:
        """Orders each user's events by time and splits them into sessions (in Rust).

        Args:
            session_timeout: a gap longer than this many seconds starts a new session.

        Returns:
            A :class:`Sessions` in CSR form.

        Raises:
            ValueError: a negative timeout.
        """
        arrays, num_sessions = self._inner.sessionize(int(session_timeout))
        return Sessions(
            num_sessions=num_sessions,
            session_timeout=int(session_timeout),
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            event_types=self.event_types,
            **arrays,
        )

    def report(self) -> DataReport:
        """What was read and what every rule dropped since."""
        return DataReport(
            source=self._inner.source,
            rows_read=self._inner.rows_read,
            rows=len(self),
            users=self.num_users,
            items=self.num_items,
            drops=tuple(DropRule(*d) for d in self._inner.drops),
            ignored_columns=tuple(self.ignored_columns),
        )


def _row_keys(columns: Mapping[str, np.ndarray], typed: bool) -> npt.NDArray[np.str_]:
    """One string per row identifying (user, item, timestamp[, event type])."""
    parts = [columns["user_id"].astype(str), columns["item_id"].astype(str), columns["timestamp"].astype(str)]
    if typed:
        parts.append(columns["event_type"].astype(str))
    key = parts[0]
    for part in parts[1:]:
        key = np.char.add(np.char.add(key, "\x1f"), part)
    return key


def _schema_error(message: str) -> Exception:
    from hrnn.exceptions import SchemaError

    return SchemaError(message)
