"""User-parallel truncated-BPTT windows: layout invariants, targets, padding, recency weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hrnn
from hrnn._network.time_feature import log_minutes
from hrnn.training._batching import EventFeatures, build_layout, recency_weights, shuffle_ties


def sessions_of(lengths: list[int], seed: int = 0) -> hrnn.Sessions:
    """Sessions with the given per-user lengths; items and times random, rows shuffled."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(len(lengths)), lengths)
    times = 1_600_000_000 + rng.integers(0, 100_000, users.size)
    items = rng.integers(0, 7, users.size)
    order = rng.permutation(users.size)
    data = hrnn.Interactions.from_arrays(users[order], items[order], times[order])
    return data.sessionize(600)


def check_layout(starts: np.ndarray, stops: np.ndarray, slots: int, bptt: int) -> None:
    layout = build_layout(starts, stops, slots, bptt)
    assert layout.position.shape[1] % bptt == 0
    pos = layout.position
    # Every input event appears exactly once.
    expected = np.concatenate(
        [np.arange(a, b) for a, b in zip(starts, stops, strict=True)] + [np.zeros(0, int)]
    )
    np.testing.assert_array_equal(np.sort(pos[pos >= 0]), np.sort(expected))
    for row, reset in zip(pos, layout.reset, strict=True):
        valid = row[row >= 0]
        # Padding only at the end of a slot; users are whole and in time order inside a slot.
        assert np.all(row[: valid.size] >= 0)
        first = np.flatnonzero(reset)
        assert np.all(np.isin(valid[first], starts[stops > starts]))
        # Within a user the positions are consecutive (events in time order, no shuffling).
        steps = np.diff(valid)
        boundaries = np.flatnonzero(steps != 1) + 1
        assert set(boundaries.tolist()) <= set(first.tolist())
        assert np.all(reset[valid.size :] == 0)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=30),
    slots=st.integers(1, 9),
    bptt=st.integers(2, 8),
    seed=st.integers(0, 10),
)
def test_layout_invariants(lengths: list[int], slots: int, bptt: int, seed: int) -> None:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(lengths))
    check_layout(offsets[:-1][order], offsets[1:][order], slots, bptt)


def test_reset_exactly_at_user_boundaries() -> None:
    # Two users of 5 and 3 input events in one slot, bptt 4: the second starts at step 5.
    layout = build_layout(np.array([0, 10]), np.array([5, 13]), num_slots=1, bptt=4)
    np.testing.assert_array_equal(layout.position[0], [0, 1, 2, 3, 4, 10, 11, 12])
    np.testing.assert_array_equal(layout.reset[0], [1, 0, 0, 0, 0, 1, 0, 0])
    assert layout.num_windows == 2


def test_window_targets_are_the_next_event_of_the_same_user() -> None:
    sessions = sessions_of([4, 1, 6, 3])
    features = EventFeatures.from_sessions(sessions)
    starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
    layout = build_layout(starts, ends - 1, num_slots=2, bptt=3)
    seen = 0
    for w in range(layout.num_windows):
        window = layout.window(w, features)
        assert window.item.shape == (3, 2)
        valid = window.position >= 0
        np.testing.assert_array_equal(window.item[valid], sessions.item_index[window.position[valid]])
        np.testing.assert_array_equal(window.target[valid], sessions.item_index[window.position[valid] + 1])
        np.testing.assert_array_equal(
            window.target_time[valid][:, 0], log_minutes(sessions.time_gap[window.position[valid] + 1])
        )
        np.testing.assert_array_equal(
            window.time[valid][:, 1], sessions.session_start[window.position[valid]]
        )
        assert np.all(window.weight[~valid] == 0)
        seen += window.num_targets
    assert seen == len(sessions) - sessions.num_users


def test_input_range_up_to_the_last_event_has_no_target_there() -> None:
    sessions = sessions_of([3])
    features = EventFeatures.from_sessions(sessions)
    window = build_layout(np.array([0]), np.array([3]), 1, 4).window(0, features)
    np.testing.assert_array_equal(window.weight[:, 0], [1, 1, 0, 0])


def test_padding_windows_carry_no_weight() -> None:
    sessions = sessions_of([5, 5])
    features = EventFeatures.from_sessions(sessions)
    layout = build_layout(sessions.user_offsets[:-1], sessions.user_offsets[1:] - 1, 2, 2)
    padded = layout.padded_to(layout.num_windows + 3)
    assert padded.num_windows == layout.num_windows + 3
    for w in range(layout.num_windows, padded.num_windows):
        assert padded.window(w, features).num_targets == 0
    with pytest.raises(ValueError, match="num_windows"):
        layout.padded_to(0)


def test_sharded_layouts_pad_to_the_same_number_of_steps() -> None:
    # What distributed training does: each rank lays out its users, then pads to the maximum.
    lengths = [30, 2, 2, 2, 40, 3]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    starts, stops = offsets[:-1], offsets[1:] - 1
    layouts = [build_layout(starts[r::2], stops[r::2], 2, 4) for r in range(2)]
    steps = max(layout.num_windows for layout in layouts)
    assert {layout.padded_to(steps).num_windows for layout in layouts} == {steps}


def test_recency_weights_follow_the_half_life() -> None:
    t = np.array([100, 90, 80, 60])
    np.testing.assert_allclose(recency_weights(t, 100, 20.0), [1.0, 0.5**0.5, 0.5, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(recency_weights(t, 100, 20.0, enabled=False), np.ones(4))
    with pytest.raises(ValueError, match="recency_half_life"):
        recency_weights(t, 100, 0.0)


def test_time_feature_is_log_minutes() -> None:
    np.testing.assert_allclose(log_minutes([0, 60, -5, 3600]), np.log1p([0, 1, 0, 60]), rtol=1e-6)


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_target_window_gathers_the_next_events_of_the_same_user(decay: float) -> None:
    sessions = sessions_of([4, 1, 6, 3], seed=3)
    rng = np.random.default_rng(1)
    weight = rng.random(len(sessions)).astype(np.float32) + 0.5
    weight[7] = 0.0  # an event that must not be a target (e.g. held out)
    features = EventFeatures.from_sessions(sessions, weight)
    starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
    layout = build_layout(starts, ends - 1, num_slots=2, bptt=3)
    width = 4
    for w in range(layout.num_windows):
        window = layout.window(w, features, target_window=width, target_window_decay=decay)
        single = layout.window(w, features)
        assert window.window_target.shape == (3, 2, width)
        np.testing.assert_array_equal(window.window_target[..., 0], single.target)
        np.testing.assert_array_equal(window.window_weight[..., 0], single.weight)
        np.testing.assert_array_equal(single.window_target[..., 0], single.target)
        for t, b in np.ndindex(window.position.shape):
            p = window.position[t, b]
            for j in range(width):
                q = p + 1 + j
                if p < 0 or q >= features.user_end[p]:
                    assert window.window_weight[t, b, j] == 0
                    continue
                assert window.window_target[t, b, j] == sessions.item_index[q]
                assert window.window_weight[t, b, j] == pytest.approx(weight[q] * decay**j)


def test_shuffle_ties_moves_events_only_within_equal_timestamps() -> None:
    user = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    ts = np.array([5, 7, 7, 7, 9, 7, 7, 7, 7, 8, 8])
    weight = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1], dtype=np.float32)  # 7, 8: held out
    groups = [[1, 2, 3], [5, 6], [7, 8], [9, 10]]
    moved = set()
    for seed in range(30):
        perm = shuffle_ties(user, ts, weight, np.random.default_rng(seed))
        np.testing.assert_array_equal(np.sort(perm), np.arange(user.size))
        np.testing.assert_array_equal(user[perm], user)
        np.testing.assert_array_equal(ts[perm], ts)
        np.testing.assert_array_equal(weight[perm], weight)
        assert perm[0] == 0 and perm[4] == 4
        for g in groups:
            assert sorted(perm[g].tolist()) == g
        moved |= {i for i in range(user.size) if perm[i] != i}
    assert moved == {1, 2, 3, 5, 6, 7, 8, 9, 10}  # every tie group is shuffled some time
