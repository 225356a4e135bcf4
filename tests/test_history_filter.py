"""Percentile filtering by user history length, checked against numpy's quantile."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrnn import Interactions


def _interactions_with_lengths(lengths: list[int]) -> Interactions:
    users = [f"u{u}" for u, n in enumerate(lengths) for _ in range(n)]
    items = [f"i{k % 7}" for k in range(len(users))]
    return Interactions.from_arrays(users, items, list(range(len(users))))


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 60), min_size=1, max_size=40),
    lo=st.floats(0, 1),
    hi=st.floats(0, 1),
)
def test_filter_matches_numpy_quantile(lengths, lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    data = _interactions_with_lengths(lengths)
    q_lo, q_hi = np.quantile(np.array(lengths, dtype=float), [lo, hi])
    expected_users = [f"u{u}" for u, n in enumerate(lengths) if q_lo <= n <= q_hi]
    out = data.filter_by_history_length(lo, hi)
    assert out.user_ids == expected_users
    assert len(out) == sum(n for n in lengths if q_lo <= n <= q_hi)
    bounds = data.history_length_bounds(lo, hi)
    assert bounds == pytest.approx((q_lo, q_hi), rel=1e-12, abs=1e-12)
    drop = out.report().drops[-1]
    assert drop.rule == "user_history_length_percentile"
    assert drop.rows_dropped == len(data) - len(out)
    assert drop.users_dropped == data.num_users - out.num_users


def test_defaults_drop_only_the_longest_histories():
    data = _interactions_with_lengths([*([5] * 99), 500])
    out = data.filter_by_history_length()  # 0.0 .. 0.99
    assert out.num_users == 99 and len(out) == 495


def test_bad_percentiles_name_the_parameter():
    data = _interactions_with_lengths([1, 2])
    with pytest.raises(ValueError, match=r"min_user_history_length_percentile: expected a value in \[0, 1\]"):
        data.filter_by_history_length(-0.5, 0.9)
    with pytest.raises(ValueError, match=r"max_user_history_length_percentile: expected a value in \[0, 1\]"):
        data.filter_by_history_length(0.0, 2.0)
    with pytest.raises(ValueError, match=r"min_user_history_length_percentile: expected at most"):
        data.filter_by_history_length(0.8, 0.2)
    with pytest.raises(ValueError, match="max_user_history_length_percentile"):
        data.filter_by_history_length(0.0, float("nan"))
