"""Session sequencing against a 10-line pandas reference (hypothesis) and hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrnn import Interactions

pd = pytest.importorskip("pandas")


def pandas_reference(users, times, timeout):
    frame = pd.DataFrame({"user": users, "ts": times, "row": np.arange(len(users))})
    frame["uidx"] = frame["user"].map({u: i for i, u in enumerate(dict.fromkeys(users))})
    frame = frame.sort_values(["uidx", "ts"], kind="stable")
    gap = frame.groupby("uidx")["ts"].diff()
    frame["gap"] = gap.fillna(0).astype(np.int64)
    frame["start"] = gap.isna() | (gap > timeout)
    frame["sid"] = frame["start"].cumsum() - 1
    return frame


@settings(max_examples=80, deadline=None)
@given(
    events=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 100)), min_size=1, max_size=120),
    timeout=st.integers(0, 30),
)
def test_sessionize_matches_pandas(events, timeout):
    users = [f"u{u}" for u, _ in events]
    times = [t for _, t in events]
    data = Interactions.from_arrays(users, [f"i{k % 3}" for k in range(len(users))], times)
    s = data.sessionize(session_timeout=timeout)
    ref = pandas_reference(users, times, timeout)
    np.testing.assert_array_equal(s.row, ref["row"].to_numpy())
    np.testing.assert_array_equal(s.timestamp, ref["ts"].to_numpy())
    np.testing.assert_array_equal(s.time_gap, ref["gap"].to_numpy())
    np.testing.assert_array_equal(s.session_start, ref["start"].to_numpy())
    np.testing.assert_array_equal(s.session_id, ref["sid"].to_numpy())
    np.testing.assert_array_equal(s.user_index, ref["uidx"].to_numpy())
    assert s.num_sessions == int(ref["start"].sum())
    # Items follow their rows.
    np.testing.assert_array_equal(s.item_index, data.columns()["item"][s.row])


def test_sessions_are_csr_and_read_only():
    data = Interactions.from_arrays(["a", "b", "a", "a"], ["x", "y", "z", "x"], [100, 5, 50, 4000], ["v"] * 4)
    s = data.sessionize(1800)
    np.testing.assert_array_equal(s.user_offsets, [0, 3, 4])
    assert s.user_slice(0) == slice(0, 3)
    np.testing.assert_array_equal(s.timestamp, [50, 100, 4000, 5])
    np.testing.assert_array_equal(s.session_start, [True, False, True, True])
    np.testing.assert_array_equal(s.session_id, [0, 0, 1, 2])
    assert (s.num_users, s.num_items, s.num_sessions, len(s)) == (2, 3, 3, 4)
    assert s.item_index.dtype == np.int32 and s.user_offsets.dtype == np.int64
    with pytest.raises(ValueError, match="read-only"):
        s.timestamp[0] = 1
    assert "sessions=3" in repr(s)


def test_negative_timeout_is_rejected():
    data = Interactions.from_arrays(["a"], ["x"], [1])
    with pytest.raises(ValueError, match="session_timeout"):
        data.sessionize(-1)
