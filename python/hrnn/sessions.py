"""Time-ordered, sessionized interactions in CSR form (the input of training and of the engine)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["Sessions"]


@dataclass(frozen=True, eq=False)
class Sessions:
    """Each user's events, time-ordered and split into sessions, as flat numpy arrays.

    User ``u``'s events are positions ``user_offsets[u]:user_offsets[u + 1]`` of every per-event
    array. Ordering rules (implemented once, in Rust): users in index order; within a user, by
    timestamp, ties keeping input order; a session starts at a user's first event and wherever the
    gap to the previous event exceeds ``session_timeout`` seconds. The arrays are read-only.

    Attributes:
        user_offsets: int64, ``num_users + 1`` offsets.
        row: int64, the source row of each event (a permutation of the input rows).
        item_index: int32, dense item index of each event.
        timestamp: int64, Unix seconds.
        time_gap: int64, seconds since the user's previous event (0 for the first).
        session_start: bool, True where a session starts.
        session_id: int64, global, consecutive session number of each event.
        event_type: int32, event-type index of each event.
        event_value: float32, EVENT_VALUE (NaN where absent).
        num_sessions: number of sessions.
        session_timeout: the timeout used, in seconds.
        user_ids: user id of each user index.
        item_ids: item id of each item index.
        event_types: event type of each event-type index.
    """

    user_offsets: npt.NDArray[np.int64]
    row: npt.NDArray[np.int64]
    item_index: npt.NDArray[np.int32]
    timestamp: npt.NDArray[np.int64]
    time_gap: npt.NDArray[np.int64]
    session_start: npt.NDArray[np.bool_]
    session_id: npt.NDArray[np.int64]
    event_type: npt.NDArray[np.int32]
    event_value: npt.NDArray[np.float32]
    num_sessions: int
    session_timeout: int
    user_ids: list[str] = field(repr=False)
    item_ids: list[str] = field(repr=False)
    event_types: list[str] = field(repr=False)

    def __post_init__(self) -> None:
        for name in (
            "user_offsets",
            "row",
            "item_index",
            "timestamp",
            "time_gap",
            "session_start",
            "session_id",
            "event_type",
            "event_value",
        ):
            getattr(self, name).flags.writeable = False

    def __len__(self) -> int:
        return int(self.item_index.shape[0])

    @property
    def num_users(self) -> int:
        """Number of users (rows of the CSR structure)."""
        return int(self.user_offsets.shape[0] - 1)

    @property
    def num_items(self) -> int:
        """Number of distinct items."""
        return len(self.item_ids)

    @property
    def user_index(self) -> npt.NDArray[np.int64]:
        """The user index of each event (computed from ``user_offsets``)."""
        lengths = np.diff(self.user_offsets)
        return np.repeat(np.arange(self.num_users, dtype=np.int64), lengths)

    def user_slice(self, user: int) -> slice:
        """The positions of user index ``user``'s events."""
        return slice(int(self.user_offsets[user]), int(self.user_offsets[user + 1]))

    def __repr__(self) -> str:
        return (
            f"Sessions(events={len(self)}, users={self.num_users}, items={self.num_items}, "
            f"sessions={self.num_sessions}, session_timeout={self.session_timeout})"
        )
