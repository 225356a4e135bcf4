"""hrnn.evaluation.metrics against hand-computed cases and a per-row reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrnn.evaluation import metrics
from hrnn.evaluation.metrics import NEXT_ITEM_METRICS, PERSONALIZE_METRICS, conservative_ranks


def reference(recommendations: list[list[int]], relevant: list[set[int]], num_items: int) -> dict[str, float]:
    """An obviously-correct per-row implementation of the documented definitions."""
    rows = [(r, t) for r, t in zip(recommendations, relevant, strict=True) if t]
    out = {}
    for k in (5, 10, 25):
        out[f"precision_at_{k}"] = float(np.mean([sum(i in t for i in r[:k]) / k for r, t in rows]))
        ndcg = []
        for r, t in rows:
            dcg = sum(1 / math.log2(1 + p) for p, i in enumerate(r[:k], start=1) if i in t)
            idcg = sum(1 / math.log2(1 + p) for p in range(1, min(len(t), k) + 1))
            ndcg.append(dcg / idcg)
        out[f"normalized_discounted_cumulative_gain_at_{k}"] = float(np.mean(ndcg))

    def rr(r: list[int], t: set[int], k: int) -> float:
        return next((1 / p for p, i in enumerate(r[:k], start=1) if i in t), 0.0)

    out["mean_reciprocal_rank_at_25"] = float(np.mean([rr(r, t, 25) for r, t in rows]))
    out["mrr_at_20"] = float(np.mean([rr(r, t, 20) for r, t in rows]))
    out["recall_at_20"] = float(np.mean([len(set(r[:20]) & t) / len(t) for r, t in rows]))
    out["coverage"] = len({i for r in recommendations for i in r[:25]}) / num_items
    return out


def test_hand_computed_case() -> None:
    # row 0: relevant {2, 4} at ranks 2 and 4; row 1: relevant {9} at rank 1; row 2: no targets
    recs = [[1, 2, 3, 4], [9, 8, 7, 6], [1, 2, 3, 4]]
    m = metrics(recs, [{2, 4}, {9}, set()], num_items=20)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["precision_at_5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    assert m["precision_at_25"] == pytest.approx((2 / 25 + 1 / 25) / 2)
    ndcg0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx((ndcg0 + 1) / 2)
    # the users-without-targets row still counts for coverage: items 1,2,3,4,6,7,8,9
    assert m["coverage"] == pytest.approx(8 / 20)
    assert m["recall_at_20"] == pytest.approx(1.0)
    assert set(m) == {*PERSONALIZE_METRICS, *NEXT_ITEM_METRICS}


def test_ideal_dcg_is_capped_at_k() -> None:
    # 30 relevant items, all of the top 5 relevant: NDCG@5 = 1 (ideal over min(|rel|, K) = 5)
    recs = [list(range(5))]
    m = metrics(recs, [set(range(30))], num_items=40)
    assert m["normalized_discounted_cumulative_gain_at_5"] == pytest.approx(1.0)
    assert m["normalized_discounted_cumulative_gain_at_25"] < 1.0
    assert m["recall_at_20"] == pytest.approx(5 / 30)


def test_ties_count_against_the_target() -> None:
    # target 7 ties with items 3 and 5 for the top score: conservatively it is third
    recs = np.array([[7, 3, 5, 1]])
    scores = np.array([[2.0, 2.0, 2.0, 1.0]])
    m = metrics(recs, [{7}], 10, scores=scores)
    assert m["mean_reciprocal_rank_at_25"] == pytest.approx(1 / 3)
    assert metrics(recs, [{7}], 10)["mean_reciprocal_rank_at_25"] == pytest.approx(1.0)
    # tied with the item just past the last cut-off that is listed: outside the list entirely
    hits, _ = conservative_ranks(np.array([[4, 8]]), [{4}], scores=np.array([[0.5, 0.5]]))
    assert hits.tolist() == [[False, True]]
    recs = np.arange(26)[None, :]
    tied = np.full((1, 26), 1.0)
    assert metrics(recs, [{0}], 30, scores=tied)["mean_reciprocal_rank_at_25"] == 0.0


def test_no_targets_at_all_and_padding() -> None:
    m = metrics([[1, -1]], [set()], 5)
    assert m["coverage"] == pytest.approx(1 / 5)
    assert all(v == 0.0 for k, v in m.items() if k != "coverage")
    assert metrics([[-1, 3]], [{3}], 5)["mean_reciprocal_rank_at_25"] == pytest.approx(0.5)


def test_duplicates_count_once_and_csr_input() -> None:
    recs = np.array([[3, 3, 4], [1, 2, 0]])
    offsets, items = np.array([0, 1, 3]), np.array([3, 0, 2])
    m = metrics(recs, (offsets, items), 5)
    assert m["precision_at_5"] == pytest.approx((1 / 5 + 2 / 5) / 2)


def test_errors() -> None:
    with pytest.raises(ValueError, match="num_items"):
        metrics([[1]], [{1}], 0)
    with pytest.raises(ValueError, match="one collection per row"):
        metrics([[1], [2]], [{1}], 3)
    with pytest.raises(ValueError, match="scores: expected shape"):
        metrics([[1, 2]], [{1}], 3, scores=[[1.0]])
    with pytest.raises(TypeError, match="integer item indices"):
        metrics(np.array([[0.5]]), [{1}], 3)
    with pytest.raises(ValueError, match="non-negative"):
        metrics([[1]], [{-2}], 3)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(0, 40), min_size=0, max_size=30, unique=True),
            st.sets(st.integers(0, 40), max_size=8),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_matches_reference(rows: list[tuple[list[int], set[int]]]) -> None:
    recs = [r for r, _ in rows]
    relevant = [t for _, t in rows]
    got = metrics(recs, relevant, 41)
    if not any(relevant):
        return
    want = reference(recs, relevant, 41)
    for name, value in want.items():
        assert got[name] == pytest.approx(value), name
