"""User-parallel truncated-BPTT mini-batches, built vectorized in numpy from ``Sessions`` CSR arrays.

Scheme (docs/model.md, "Truncated back-propagation through time"): the users of an epoch, in a
seeded random order, are laid end to end and dealt out to ``B`` slots — each slot gets a run of
whole users, so a user is never split between slots. A slot walks through its users' events in
time order; the state of a slot is carried from one window of ``bptt`` steps to the next (detached
by the trainer), and a ``reset`` flag at the first event of each user zeroes it, so nothing leaks
from one user to the next. Steps after a slot's last user are padding with weight 0.

Each step of a slot is one *input* event (position ``p`` of the ``Sessions`` arrays) whose target is
the user's next event ``p + 1``. Ranges of input events are half-open ``[start, stop)`` per user;
``stop`` is at most the user's last event (exclusive of it for training, inclusive when the states
after every event are wanted).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hrnn._network.time_feature import log_minutes
from hrnn.sessions import Sessions

__all__ = [
    "EventFeatures",
    "SlotLayout",
    "Window",
    "balanced_slots",
    "build_layout",
    "recency_weights",
    "shuffle_ties",
]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


def recency_weights(
    timestamps: npt.ArrayLike, end_time: int, half_life: float | None, enabled: bool = True
) -> FloatArray:
    """Loss weights of targets: ``0.5 ** ((end_time − t) / half_life)``, or all 1 when disabled.

    Args:
        timestamps: Unix seconds of the target events.
        end_time: ``T_end``, the last training timestamp.
        half_life: seconds after which a target's weight halves (must be > 0 when enabled).
        enabled: the ``recency_mask`` hyperparameter.

    Returns:
        float32 weights, same shape as ``timestamps`` (before the per-batch normalisation to mean 1,
        which the loss applies).
    """
    t = np.asarray(timestamps, dtype=np.float64)
    if not enabled or half_life is None:
        return np.ones(t.shape, dtype=np.float32)
    if half_life <= 0:
        raise ValueError(f"recency_half_life: expected a value in (0, inf), found {half_life!r}")
    return np.power(0.5, (end_time - t) / half_life).astype(np.float32)


def shuffle_ties(
    user: npt.ArrayLike, timestamp: npt.ArrayLike, weight: npt.ArrayLike, rng: np.random.Generator
) -> IntArray:
    """A random order of the events within each run of equal timestamps of the same user.

    Events of a user with the same timestamp have no order of their own (the input order is kept,
    e.g. by item id); this permutation draws one at random. Only consecutive events of the same
    user, timestamp and target weight (so a held-out event never swaps with a training one) move.

    Args:
        user: user index of each event (time-ordered within each user).
        timestamp: Unix seconds of each event.
        weight: target weight of each event.
        rng: the random generator.

    Returns:
        int64 ``perm`` such that ``item[perm]`` is the shuffled item sequence.
    """
    u = np.asarray(user)
    ts = np.asarray(timestamp)
    w = np.asarray(weight)
    n = u.size
    boundary = np.ones(n, dtype=bool)
    if n > 1:
        boundary[1:] = (u[1:] != u[:-1]) | (ts[1:] != ts[:-1]) | (w[1:] != w[:-1])
    group = np.cumsum(boundary)
    return np.lexsort((rng.random(n), group)).astype(np.int64)


@dataclass(frozen=True)
class EventFeatures:
    """Per-event model inputs over the whole ``Sessions`` arrays (computed once per training run).

    Attributes:
        item: int64 item index of each event.
        event_type: int64 event-type index of each event.
        time: float32 ``[n, 2]``: ``c`` and ``s`` of each event (log-minutes gap, session start).
        user_end: int64, for each event, the position one past its user's last event.
        weight: float32 loss weight of each event *as a target* (recency, or 0 to exclude it).
    """

    item: IntArray
    event_type: IntArray
    time: FloatArray
    user_end: IntArray
    weight: FloatArray

    @classmethod
    def from_sessions(cls, sessions: Sessions, weight: FloatArray | None = None) -> EventFeatures:
        """Computes the per-event features of ``sessions``.

        Args:
            sessions: time-ordered, sessionized events.
            weight: per-event target weight (default: 1 everywhere).

        Returns:
            The features.
        """
        n = len(sessions)
        time = np.empty((n, 2), dtype=np.float32)
        time[:, 0] = log_minutes(sessions.time_gap)
        time[:, 1] = sessions.session_start.astype(np.float32)
        lengths = np.diff(sessions.user_offsets)
        user_end = np.repeat(sessions.user_offsets[1:], lengths).astype(np.int64)
        return cls(
            item=sessions.item_index.astype(np.int64),
            event_type=sessions.event_type.astype(np.int64),
            time=time,
            user_end=user_end,
            weight=np.ones(n, dtype=np.float32) if weight is None else np.asarray(weight, dtype=np.float32),
        )

    def with_weight(self, weight: FloatArray) -> EventFeatures:
        """The same features with other target weights."""
        return EventFeatures(self.item, self.event_type, self.time, self.user_end, weight.astype(np.float32))

    def permuted(self, perm: IntArray) -> EventFeatures:
        """Items, event types and weights reordered by ``perm`` (time features stay in place)."""
        return EventFeatures(
            self.item[perm], self.event_type[perm], self.time, self.user_end, self.weight[perm]
        )


@dataclass(frozen=True)
class Window:
    """One mini-batch: ``bptt`` steps × ``B`` slots (time-major arrays, ready for torch).

    Attributes:
        position: int64 ``[T, B]`` input event position (−1 = padding).
        item: int64 ``[T, B]`` input item (0 at padding).
        event_type: int64 ``[T, B]`` input event type (0 at padding).
        time: float32 ``[T, B, 2]`` input ``(c_t, s_t)``.
        reset: bool ``[T, B]``: the slot starts a new user at this step (zero the state first).
        target: int64 ``[T, B]`` target item (0 where there is none).
        target_time: float32 ``[T, B, 2]`` the target's ``(c_q, s_q)``.
        weight: float32 ``[T, B]`` target loss weight (0 at padding and where there is no target).
        window_target: int64 ``[T, B, W]``: the items of the input's next ``W`` events of the same
            user (``W = target_window`` of :meth:`SlotLayout.window`; 0 where there is none);
            ``window_target[..., 0]`` is ``target``.
        window_weight: float32 ``[T, B, W]``: their loss weights, ``weight of event p + j`` ×
            ``decay ** (j − 1)`` for the ``j``-th next event (0 where there is none);
            ``window_weight[..., 0]`` is ``weight``.
    """

    position: IntArray
    item: IntArray
    event_type: IntArray
    time: FloatArray
    reset: npt.NDArray[np.bool_]
    target: IntArray
    target_time: FloatArray
    weight: FloatArray
    window_target: IntArray
    window_weight: FloatArray

    @property
    def num_targets(self) -> int:
        """Steps that carry a training target (weight > 0)."""
        return int(np.count_nonzero(self.weight))


@dataclass(frozen=True)
class SlotLayout:
    """Input events dealt to ``B`` user-parallel slots, ``num_windows × bptt`` steps each.

    Attributes:
        position: int64 ``[B, num_windows * bptt]``: input event position per slot and step (−1 = pad).
        reset: bool, same shape: True at the first step of each user.
        bptt: steps per window.
    """

    position: IntArray
    reset: npt.NDArray[np.bool_]
    bptt: int

    @property
    def num_slots(self) -> int:
        """``B``."""
        return int(self.position.shape[0])

    @property
    def num_windows(self) -> int:
        """Mini-batches in this layout."""
        return int(self.position.shape[1] // self.bptt)

    def padded_to(self, num_windows: int) -> SlotLayout:
        """This layout with empty (zero-weight) windows appended up to ``num_windows``.

        Used by distributed training so that every rank does the same number of optimizer steps.
        """
        extra = num_windows - self.num_windows
        if extra < 0:
            raise ValueError(f"num_windows: expected ≥ {self.num_windows}, found {num_windows}")
        if extra == 0:
            return self
        pad = np.full((self.num_slots, extra * self.bptt), -1, dtype=np.int64)
        return SlotLayout(
            position=np.concatenate([self.position, pad], axis=1),
            reset=np.concatenate([self.reset, np.zeros(pad.shape, dtype=bool)], axis=1),
            bptt=self.bptt,
        )

    def window(
        self, index: int, features: EventFeatures, target_window: int = 1, target_window_decay: float = 1.0
    ) -> Window:
        """Gathers the inputs, targets and weights of window ``index``.

        Args:
            index: window number in ``[0, num_windows)``.
            features: per-event features of the ``Sessions`` the layout was built from.
            target_window: ``W``, the number of next events of the same user gathered as targets of
                each input (``window_target``); 1 = the next event only.
            target_window_decay: the ``j``-th next event's weight is multiplied by
                ``target_window_decay ** (j − 1)``.

        Returns:
            The time-major window.
        """
        cols = slice(index * self.bptt, (index + 1) * self.bptt)
        pos = np.ascontiguousarray(self.position[:, cols].T)
        valid = pos >= 0
        safe = np.where(valid, pos, 0)
        tgt = safe + 1
        has_target = valid & (tgt < features.user_end[safe])
        tgt = np.where(has_target, tgt, 0)
        time = features.time[safe]
        time[~valid] = 0.0
        # the next W events of the same user: position p + j, j = 1 … W (a target exists where
        # p + j < user end; features.weight is already 0 for events that must not be targets)
        ahead = safe[..., None] + np.arange(1, target_window + 1, dtype=np.int64)
        in_user = valid[..., None] & (ahead < features.user_end[safe][..., None])
        ahead = np.where(in_user, ahead, 0)
        scale = np.power(np.float32(target_window_decay), np.arange(target_window, dtype=np.float32))
        window_weight = np.where(in_user, features.weight[ahead] * scale, 0.0).astype(np.float32)
        window_target = np.where(in_user, features.item[ahead], 0)
        return Window(
            position=pos,
            item=np.where(valid, features.item[safe], 0),
            event_type=np.where(valid, features.event_type[safe], 0),
            time=time,
            reset=np.ascontiguousarray(self.reset[:, cols].T),
            target=np.where(has_target, features.item[tgt], 0),
            target_time=np.where(has_target[..., None], features.time[tgt], 0.0).astype(np.float32),
            weight=np.where(has_target, features.weight[tgt], 0.0).astype(np.float32),
            window_target=window_target,
            window_weight=window_weight,
        )


def balanced_slots(lengths: npt.ArrayLike, num_slots: int, rng: np.random.Generator) -> IntArray:
    """A slot for each user such that the slots' total lengths are as even as possible.

    Longest processing time first: users in order of decreasing length (random among equal
    lengths) each go to the slot with the least work so far. The fullest slot then exceeds the mean
    by less than one user's length, and by far less when users are many (0.97–0.99 of the steps of
    MovieLens latest-small and RSC15-100k carry an event at 64 slots, against 0.57 and 0.95 when
    a random order is cut into equal runs).

    Args:
        lengths: input events of each user.
        num_slots: ``B``.
        rng: breaks ties between users of equal length.

    Returns:
        int64 slot of each user, in ``[0, num_slots)``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.lexsort((rng.random(lengths.size), -lengths))
    load = [(0, s) for s in range(num_slots)]
    slot = np.empty(lengths.size, dtype=np.int64)
    for user, length in zip(order.tolist(), lengths[order].tolist(), strict=True):
        work, s = heapq.heappop(load)
        slot[user] = s
        heapq.heappush(load, (work + length, s))
    return slot


def build_layout(
    starts: IntArray, stops: IntArray, num_slots: int, bptt: int, slot: IntArray | None = None
) -> SlotLayout:
    """Deals users' input-event ranges to ``num_slots`` slots, in the given user order.

    Without ``slot``, users are laid end to end (in the order given) into one stream of ``P``
    steps; the stream is cut into ``num_slots`` runs of about ``P / num_slots`` steps at user
    boundaries (a user belongs to the slot in which its first step falls). With ``slot`` (e.g.
    :func:`balanced_slots`), each user goes to its slot, after the earlier users of that slot in the
    given order. Either way a slot holds whole users, one after another.

    Args:
        starts: first input event position of each user (in the order to process them).
        stops: one past the last input event position of each user; empty ranges are skipped.
        num_slots: ``B``, parallel slots per mini-batch.
        bptt: steps per window.
        slot: optional slot of each user, in ``[0, num_slots)``.

    Returns:
        The layout, padded with −1 to a whole number of windows.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.maximum(np.asarray(stops, dtype=np.int64) - starts, 0)
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    total = int(lengths.sum())
    if total == 0:
        return SlotLayout(
            position=np.zeros((num_slots, 0), dtype=np.int64),
            reset=np.zeros((num_slots, 0), dtype=bool),
            bptt=bptt,
        )
    stream_start = np.cumsum(lengths) - lengths
    if slot is None:
        run = -(-total // num_slots)
        slot = np.minimum(stream_start // run, num_slots - 1)
        # Where each slot's run begins in the stream (first user of each slot), then each user's offset.
        first = np.full(num_slots, total, dtype=np.int64)
        np.minimum.at(first, slot, stream_start)
        offset = stream_start - first[slot]
    else:
        slot = np.asarray(slot, dtype=np.int64)[keep]
        # each user's offset in its slot: the lengths of the slot's earlier users (stable order)
        by_slot = np.argsort(slot, kind="stable")
        ends_sorted = np.cumsum(lengths[by_slot])
        slot_begin = np.zeros(num_slots + 1, dtype=np.int64)
        np.add.at(slot_begin, slot + 1, lengths)
        slot_begin = np.cumsum(slot_begin)
        offset = np.empty_like(lengths)
        offset[by_slot] = ends_sorted - lengths[by_slot] - slot_begin[slot[by_slot]]
    slot_length = np.zeros(num_slots, dtype=np.int64)
    np.add.at(slot_length, slot, lengths)
    steps = -(-int(slot_length.max()) // bptt) * bptt

    position = np.full((num_slots, steps), -1, dtype=np.int64)
    reset = np.zeros((num_slots, steps), dtype=bool)
    user_of_step = np.repeat(np.arange(len(starts)), lengths)
    within = np.arange(total, dtype=np.int64) - stream_start[user_of_step]
    rows = slot[user_of_step]
    cols = offset[user_of_step] + within
    position[rows, cols] = starts[user_of_step] + within
    reset[slot, offset] = True
    return SlotLayout(position=position, reset=reset, bptt=bptt)
