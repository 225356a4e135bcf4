"""The exception hierarchy of hrnn.

Every error hrnn raises on purpose derives from :class:`HrnnError`. Errors about bad input also
derive from :class:`ValueError`, so code that already catches ``ValueError`` keeps working.
I/O problems are the built-in ``FileNotFoundError``, ``PermissionError`` and ``OSError``.
"""

from __future__ import annotations

__all__ = [
    "EventError",
    "EventLogError",
    "EventLogLockedError",
    "HrnnError",
    "InsufficientDataError",
    "ModelFormatError",
    "SchemaError",
]


class HrnnError(Exception):
    """Base class of every error raised by hrnn."""


class SchemaError(HrnnError, ValueError):
    """Interactions that do not follow the Personalize schema.

    The message names the file, the 1-based line, the column and the offending value.
    """


class InsufficientDataError(HrnnError, ValueError):
    """Too little data to train: fewer than 1000 interactions or fewer than 25 users with ≥ 2."""


class ModelFormatError(HrnnError, ValueError):
    """A model directory that does not match docs/format.md; names the file and tensor/field."""


class EventError(HrnnError, ValueError):
    """A real-time event that fails validation; names the event's index and field."""


class EventLogError(HrnnError, OSError):
    """An event log that cannot be used as it is: corrupt before its end (the message names the
    byte offset; ``hrnn repair-log`` salvages every intact record), not a regular file, or written
    in an older format."""


class EventLogLockedError(EventLogError):
    """The event log is open for writing by another process or another :class:`hrnn.Recommender`
    (one writer per log; reading it, e.g. with ``Interactions.from_event_log``, needs no lock)."""
