"""The event log of a :class:`hrnn.Recommender`, outside of serving: repairing a damaged one.

Reading a log as training data is :meth:`hrnn.Interactions.from_event_log`; what the bytes are and
what each fault does is docs/format.md ("Event log" and "Durability").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hrnn import _hrnn

__all__ = ["RepairReport", "repair_event_log"]


@dataclass(frozen=True)
class RepairReport:
    """What :func:`repair_event_log` did.

    Attributes:
        records: intact records written to the repaired log (event records and model markers).
        events: events in those records.
        skipped: damaged byte ranges ``(start, end)`` of the original that were left out.
        backup: where the original was kept, byte for byte.
        converted: the original was in the older format 1 (now rewritten in the current one).
    """

    records: int
    events: int
    skipped: list[tuple[int, int]]
    backup: Path
    converted: bool


def repair_event_log(path: str | os.PathLike[str]) -> RepairReport:
    """Rewrites a damaged event log with every intact record it holds, keeping the original.

    A recommender refuses to open a log that is damaged anywhere but at its very end (where a
    crash can tear the last write), because guessing would lose or invent acknowledged events.
    This is the explicit way out: the original is copied to ``<path>.corrupt-<unix time>``, every
    record whose checksums hold is kept in order (scanning past damage byte by byte), and the
    repaired log replaces the original by one atomic rename. A log in the older format 1 is
    rewritten in the current format the same way.

    Raises:
        EventLogLockedError: a running recommender holds the log (stop it first).
        FileNotFoundError: no file at ``path``.
    """
    records, events, skipped, backup, converted = _hrnn.repair_event_log(os.fspath(path))
    return RepairReport(records, events, list(skipped), Path(backup), converted)
