"""Temporal train/test splits: what the model may learn from, and which queries it must answer.

Every protocol orders each user's events by time (ties keep input order, as
:meth:`hrnn.Interactions.sessionize` does) and produces a :class:`Split`: the training
interactions plus a set of *queries*. A query belongs to a test user; it sees the user's training
history (if the user is part of the training data, ``known_user``) followed by the first
``query_context_length`` of the user's *context* events (events the model never trained on and
learns about only through the real-time path, ``put_events``), and has a set of target items.

Protocols (``fraction`` defaults to 0.1):

- ``"personalize"`` — GetSolutionMetrics' split. A seeded random ``user_fraction`` of the users
  (those with ≥ 2 events) is held out entirely; the others train. For each held-out user, the
  events with time rank ``r`` (1-based) and ``r / n > 1 − fraction`` are the targets, the older
  ones the context (so a 20-event user has 18 context events and 2 targets).
- ``"holdout-last"`` — the sample notebook's temporal hold-out (``rank(pct=True, method="first")
  > 0.9``): for every user with ≥ 2 events, the events with ``r / n > 1 − fraction`` are the
  targets; everything else trains. One query per user, no context.
- ``"next-item"`` — each user's last session (``session_timeout``) is a test sequence when the
  user has an earlier session and the last one has ≥ 2 events; the rest trains. Event ``j ≥ 1``
  of the sequence is a query whose target is its item and whose context is events ``0 … j−1``.
  With ``test=`` (an explicit train/test pair such as RSC15's), ``interactions`` is the training
  data and every user of ``test`` is one test sequence (known to the model if its USER_ID also
  occurs in training).
- ``"global-time"`` — every event after ``cut_time`` is a target (default cut: the timestamp below
  which ``1 − fraction`` of the events lie); one query per user with training history, targets the
  distinct items after the cut. Users with no event before the cut are skipped (and counted).

Targets are never filtered: an item missing from the training catalogue cannot be recommended
and counts as a miss. The catalogue (``num_items``) is the training data's items.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hrnn.interactions import DEFAULT_SESSION_TIMEOUT, Interactions
from hrnn.sessions import Sessions

__all__ = ["PROTOCOLS", "Split", "make_split"]

logger = logging.getLogger(__name__)

#: The supported split protocols.
PROTOCOLS = ("personalize", "holdout-last", "next-item", "global-time")

Int64Array = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class Split:
    """Training data plus the queries of one temporal split (all arrays read-only, CSR ragged).

    Attributes:
        protocol: one of :data:`PROTOCOLS`.
        description: how the split was made and what it contains, in one line.
        train: the training interactions.
        item_ids: item id of each item index used below: ``train.item_ids`` first (indices below
            ``num_items``), then items that occur only in the test part.
        num_items: the catalogue size (``train.num_items``).
        event_types: event type of each event-type index used below.
        user_ids: the test users.
        known_user: whether each test user's history is part of ``train``.
        context_offsets: ``len(user_ids) + 1`` offsets into the ``context_*`` arrays.
        context_item: item index of each context event (time-ordered per user).
        context_timestamp: Unix seconds of each context event.
        context_event_type: event-type index of each context event.
        query_user: the test user (index into ``user_ids``) of each query.
        query_context_length: how many of the user's context events precede the query.
        query_time: Unix seconds of the query (the first target's time).
        target_offsets: ``num_queries + 1`` offsets into ``target_item``.
        target_item: the target item indices of every query (distinct within a query).
    """

    protocol: str
    description: str
    train: Interactions = field(repr=False)
    item_ids: list[str] = field(repr=False)
    num_items: int
    event_types: list[str] = field(repr=False)
    user_ids: list[str] = field(repr=False)
    known_user: npt.NDArray[np.bool_] = field(repr=False)
    context_offsets: Int64Array = field(repr=False)
    context_item: Int64Array = field(repr=False)
    context_timestamp: Int64Array = field(repr=False)
    context_event_type: Int64Array = field(repr=False)
    query_user: Int64Array = field(repr=False)
    query_context_length: Int64Array = field(repr=False)
    query_time: Int64Array = field(repr=False)
    target_offsets: Int64Array = field(repr=False)
    target_item: Int64Array = field(repr=False)

    def __post_init__(self) -> None:
        for name in (
            "known_user",
            "context_offsets",
            "context_item",
            "context_timestamp",
            "context_event_type",
            "query_user",
            "query_context_length",
            "query_time",
            "target_offsets",
            "target_item",
        ):
            getattr(self, name).flags.writeable = False

    @property
    def num_queries(self) -> int:
        """Number of queries."""
        return int(self.query_user.shape[0])

    @property
    def relevant(self) -> tuple[Int64Array, Int64Array]:
        """The targets as a CSR pair ``(offsets, items)``, as :func:`hrnn.evaluation.metrics` takes."""
        return self.target_offsets, self.target_item

    def histories(self) -> tuple[Int64Array, Int64Array]:
        """What each query's user has done before the query, as CSR ``(offsets, items)``.

        A query's history is the user's training history (if known), then its visible context
        events; items outside the catalogue are ``-1``.

        Returns:
            ``(offsets, items)`` with ``num_queries + 1`` offsets.
        """
        offsets, items, _, _ = self.history_events()
        return offsets, np.where(items < self.num_items, items, -1)

    def history_events(self) -> tuple[Int64Array, Int64Array, Int64Array, npt.NDArray[np.object_]]:
        """Each query's history with timestamps and event-type names (see :meth:`histories`).

        Returns:
            ``(offsets, item_index, timestamp, event_type)``: CSR over queries; ``item_index`` in
            the split's item space (``>= num_items`` for items only seen in the test part).
        """
        sessions = self.train.sessionize()
        train_user = self.train.user_index()
        train_types = np.asarray(self.train.event_types, dtype=object)[sessions.event_type]
        context_types = np.asarray(self.event_types, dtype=object)[self.context_event_type]
        parts: list[tuple[Int64Array, Int64Array, npt.NDArray[np.object_]]] = []
        for q in range(self.num_queries):
            u = int(self.query_user[q])
            visible = slice(
                int(self.context_offsets[u]), int(self.context_offsets[u]) + int(self.query_context_length[q])
            )
            part = (self.context_item[visible], self.context_timestamp[visible], context_types[visible])
            t = train_user.get(self.user_ids[u]) if self.known_user[u] else None
            if t is not None:
                span = sessions.user_slice(t)
                part = (
                    np.concatenate([sessions.item_index[span].astype(np.int64), part[0]]),
                    np.concatenate([sessions.timestamp[span], part[1]]),
                    np.concatenate([train_types[span], part[2]]),
                )
            parts.append(part)
        offsets = np.zeros(self.num_queries + 1, dtype=np.int64)
        np.cumsum([p[0].shape[0] for p in parts], out=offsets[1:])
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return offsets, empty, empty, np.zeros(0, dtype=object)
        return (
            offsets,
            np.concatenate([p[0] for p in parts]).astype(np.int64),
            np.concatenate([p[1] for p in parts]).astype(np.int64),
            np.concatenate([p[2] for p in parts]),
        )


def _time_ranks(sessions_offsets: Int64Array) -> tuple[Int64Array, Int64Array]:
    """1-based time rank of each time-ordered event within its user, and the user's event count."""
    lengths = np.diff(sessions_offsets)
    starts = np.repeat(sessions_offsets[:-1], lengths)
    rank = np.arange(int(sessions_offsets[-1]), dtype=np.int64) - starts + 1
    return rank, np.repeat(lengths, lengths)


def _newest_fraction(rank: Int64Array, count: Int64Array, fraction: float) -> npt.NDArray[np.bool_]:
    # the sample notebook's rank(pct=True, method="first") > 1 - fraction, for users with >= 2 events
    return (rank / count > 1.0 - fraction) & (count >= 2)


class _Builder:
    """Collects test users, context events and queries, then maps items into the split's space."""

    def __init__(self, train: Interactions, item_ids: list[str], event_types: list[str]) -> None:
        self.train = train
        catalogue = train.item_ids
        index = {item: i for i, item in enumerate(catalogue)}
        extra = [item for item in item_ids if item not in index]
        for item in extra:
            index[item] = len(index)
        self.item_ids = catalogue + extra
        # the source data's item index -> the split's item index
        self.item_map = np.array([index[item] for item in item_ids], dtype=np.int64)
        self.num_items = len(catalogue)
        self.event_types = event_types
        train_users = set(train.user_ids)
        self.train_users = train_users
        self.user_ids: list[str] = []
        self.context: list[tuple[Int64Array, Int64Array, Int64Array]] = []
        self.queries: list[tuple[int, int, int, Int64Array]] = []

    def add_user(
        self, user_id: str, items: Int64Array, timestamps: Int64Array, event_types: Int64Array
    ) -> int:
        self.user_ids.append(user_id)
        self.context.append((self.item_map[items], timestamps, event_types))
        return len(self.user_ids) - 1

    def add_query(self, user: int, context_length: int, time: int, targets: Int64Array) -> None:
        self.queries.append((user, context_length, time, np.unique(self.item_map[targets])))

    def build(self, protocol: str, description: str) -> Split:
        def cat(parts: list[Int64Array]) -> Int64Array:
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

        def offsets(lengths: list[int]) -> Int64Array:
            out = np.zeros(len(lengths) + 1, dtype=np.int64)
            np.cumsum(lengths, out=out[1:])
            return out

        return Split(
            protocol=protocol,
            description=description,
            train=self.train,
            item_ids=self.item_ids,
            num_items=self.num_items,
            event_types=self.event_types,
            user_ids=self.user_ids,
            known_user=np.array([u in self.train_users for u in self.user_ids], dtype=bool),
            context_offsets=offsets([len(c[0]) for c in self.context]),
            context_item=cat([c[0] for c in self.context]),
            context_timestamp=cat([c[1] for c in self.context]),
            context_event_type=cat([c[2] for c in self.context]),
            query_user=np.array([q[0] for q in self.queries], dtype=np.int64),
            query_context_length=np.array([q[1] for q in self.queries], dtype=np.int64),
            query_time=np.array([q[2] for q in self.queries], dtype=np.int64),
            target_offsets=offsets([len(q[3]) for q in self.queries]),
            target_item=cat([q[3] for q in self.queries]),
        )


def make_split(
    interactions: Interactions,
    protocol: str = "personalize",
    *,
    fraction: float = 0.1,
    user_fraction: float = 0.1,
    seed: int = 0,
    cut_time: int | None = None,
    session_timeout: int = DEFAULT_SESSION_TIMEOUT,
    test: Interactions | None = None,
) -> Split:
    """Splits interactions temporally for evaluation (protocols: see the module docstring).

    Args:
        interactions: the data (with ``test``: the training data).
        protocol: one of :data:`PROTOCOLS`.
        fraction: the share of each user's newest events held out (``personalize``,
            ``holdout-last``) or of all events after the cut (``global-time``).
        user_fraction: the share of users held out by ``personalize``.
        seed: seeds the choice of held-out users.
        cut_time: ``global-time``: events with a timestamp > ``cut_time`` are test.
        session_timeout: ``next-item``: the gap (seconds) that starts a new session.
        test: ``next-item`` only: explicit test sequences, one per USER_ID.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: an unknown protocol, a fraction outside (0, 1), ``test`` with another
            protocol, or a split without any query.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {', '.join(PROTOCOLS)}, found {protocol!r}")
    for name, value in (("fraction", fraction), ("user_fraction", user_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name}: expected a number in (0, 1), found {value}")
    if test is not None and protocol != "next-item":
        raise ValueError(f"test: an explicit test set needs protocol='next-item', found {protocol!r}")
    if test is not None:
        split = _explicit_next_item(interactions, test)
    else:
        sessions = interactions.sessionize(session_timeout)
        offsets = sessions.user_offsets
        rank, count = _time_ranks(offsets)
        user = sessions.user_index
        if protocol == "personalize":
            split = _personalize(interactions, sessions, rank, count, user, fraction, user_fraction, seed)
        elif protocol == "holdout-last":
            split = _holdout_last(interactions, sessions, rank, count, user, fraction)
        elif protocol == "next-item":
            split = _next_item(interactions, sessions, user)
        else:
            split = _global_time(interactions, sessions, user, fraction, cut_time)
    if split.num_queries == 0:
        raise ValueError(f"{protocol}: the split has no query (too little data?): {split.description}")
    logger.info("split: %s", split.description)
    return split


def _train_subset(
    interactions: Interactions, sessions_rows: Int64Array, test_event: npt.NDArray[np.bool_], rule: str
) -> Interactions:
    keep = np.ones(len(interactions), dtype=bool)
    keep[sessions_rows[test_event]] = False
    return interactions.subset(keep, rule=rule)


def _personalize(
    interactions: Interactions,
    sessions: Sessions,
    rank: Int64Array,
    count: Int64Array,
    user: Int64Array,
    fraction: float,
    user_fraction: float,
    seed: int,
) -> Split:
    lengths = np.diff(sessions.user_offsets)
    eligible = np.flatnonzero(lengths >= 2)
    rng = np.random.default_rng(seed)
    size = max(1, round(user_fraction * interactions.num_users))
    size = min(size, eligible.size)
    held = np.sort(rng.choice(eligible, size=size, replace=False)) if size else np.zeros(0, dtype=np.int64)
    held_event = np.isin(user, held)
    rule = "evaluation split personalize: held-out user"
    train = _train_subset(interactions, sessions.row, held_event, rule)
    user_ids = interactions.user_ids
    b = _Builder(train, interactions.item_ids, interactions.event_types)
    target = _newest_fraction(rank, count, fraction)
    for u in held:
        span = sessions.user_slice(int(u))
        is_target = target[span]
        items = sessions.item_index[span].astype(np.int64)
        times = sessions.timestamp[span]
        ctx = ~is_target
        k = b.add_user(user_ids[u], items[ctx], times[ctx], sessions.event_type[span][ctx].astype(np.int64))
        b.add_query(k, int(ctx.sum()), int(times[is_target][0]), items[is_target])
    return b.build(
        "personalize",
        f"personalize: {len(held)} of {interactions.num_users} users held out (seed {seed}); their newest "
        f"{fraction:.0%} of events are targets, the rest is put_events context; "
        f"{len(train)} training events",
    )


def _holdout_last(
    interactions: Interactions,
    sessions: Sessions,
    rank: Int64Array,
    count: Int64Array,
    user: Int64Array,
    fraction: float,
) -> Split:
    target = _newest_fraction(rank, count, fraction)
    train = _train_subset(interactions, sessions.row, target, "evaluation split holdout-last: held out")
    user_ids = interactions.user_ids
    b = _Builder(train, interactions.item_ids, interactions.event_types)
    empty = np.zeros(0, dtype=np.int64)
    for u in np.unique(user[target]):
        span = sessions.user_slice(int(u))
        is_target = target[span]
        k = b.add_user(user_ids[u], empty, empty, empty)
        targets = sessions.item_index[span][is_target].astype(np.int64)
        b.add_query(k, 0, int(sessions.timestamp[span][is_target][0]), targets)
    return b.build(
        "holdout-last",
        f"holdout-last: newest {fraction:.0%} of each user's events held out (rank/n > {1 - fraction:g}); "
        f"{len(b.queries)} users with targets, {int(target.sum())} target events, "
        f"{len(train)} training events",
    )


def _add_sequence(b: _Builder, user_id: str, items: Int64Array, times: Int64Array, types: Int64Array) -> None:
    k = b.add_user(user_id, items, times, types)
    for j in range(1, items.shape[0]):
        b.add_query(k, j, int(times[j]), items[j : j + 1])


def _next_item(interactions: Interactions, sessions: Sessions, user: Int64Array) -> Split:
    sid = sessions.session_id
    last_sid = np.full(interactions.num_users, -1, dtype=np.int64)
    first_sid = np.full(interactions.num_users, -1, dtype=np.int64)
    lengths = np.diff(sessions.user_offsets)
    has = lengths > 0
    last_sid[has] = sid[sessions.user_offsets[1:][has] - 1]
    first_sid[has] = sid[sessions.user_offsets[:-1][has]]
    in_last = sid == last_sid[user]
    last_len = np.bincount(user[in_last], minlength=interactions.num_users)
    test_user = has & (last_sid != first_sid) & (last_len >= 2)
    test_event = in_last & test_user[user]
    train = _train_subset(interactions, sessions.row, test_event, "evaluation split next-item: test session")
    user_ids = interactions.user_ids
    b = _Builder(train, interactions.item_ids, interactions.event_types)
    for u in np.flatnonzero(test_user):
        span = sessions.user_slice(int(u))
        mask = test_event[span]
        _add_sequence(
            b,
            user_ids[u],
            sessions.item_index[span][mask].astype(np.int64),
            sessions.timestamp[span][mask],
            sessions.event_type[span][mask].astype(np.int64),
        )
    return b.build(
        "next-item",
        f"next-item: last session of {int(test_user.sum())} users with an earlier session "
        f"(timeout {sessions.session_timeout} s); {len(b.queries)} predictions, {len(train)} training events",
    )


def _explicit_next_item(train: Interactions, test: Interactions) -> Split:
    sessions = test.sessionize()
    user_ids = test.user_ids
    b = _Builder(train, test.item_ids, test.event_types)
    for u in range(test.num_users):
        span = sessions.user_slice(u)
        if span.stop - span.start < 2:
            continue
        _add_sequence(
            b,
            user_ids[u],
            sessions.item_index[span].astype(np.int64),
            sessions.timestamp[span],
            sessions.event_type[span].astype(np.int64),
        )
    split = b.build("next-item", "")
    known = int(split.known_user.sum())
    description = (
        f"next-item (explicit test set {test.report().source}): {len(split.user_ids)} sequences "
        f"({known} of their users also in training), {split.num_queries} predictions, "
        f"{len(train)} training events"
    )
    return Split(**{**split.__dict__, "description": description})


def _global_time(
    interactions: Interactions, sessions: Sessions, user: Int64Array, fraction: float, cut_time: int | None
) -> Split:
    times = sessions.timestamp
    if cut_time is None:
        cut_time = int(np.quantile(times, 1.0 - fraction, method="lower"))
    after = times > cut_time
    rule = f"evaluation split global-time: after {cut_time}"
    train = _train_subset(interactions, sessions.row, after, rule)
    user_ids = interactions.user_ids
    b = _Builder(train, interactions.item_ids, interactions.event_types)
    empty = np.zeros(0, dtype=np.int64)
    cold = 0
    for u in np.unique(user[after]):
        span = sessions.user_slice(int(u))
        mask = after[span]
        if mask.all():
            cold += 1
            continue
        k = b.add_user(user_ids[u], empty, empty, empty)
        b.add_query(k, 0, int(times[span][mask][0]), sessions.item_index[span][mask].astype(np.int64))
    return b.build(
        "global-time",
        f"global-time: events after {cut_time} are targets; {len(b.queries)} users with earlier history "
        f"({cold} users without history before the cut skipped), {len(train)} training events",
    )
