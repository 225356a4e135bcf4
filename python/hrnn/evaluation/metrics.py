"""Ranking metrics as Amazon Personalize's GetSolutionMetrics defines them, plus next-item metrics.

Every metric is computed per query row (a user, or one next-item prediction) from the row's ranked
recommendations and its set of relevant (target) items, then averaged over the rows that have at
least one target. Rows without targets carry no signal: they are left out of every average (their
recommendations still count towards coverage, since they were served).

Definitions (``rank`` is the 1-based position of a relevant item in the row's list):

- ``precision_at_K`` = |relevant ∩ top K| / K.
- ``normalized_discounted_cumulative_gain_at_K`` = DCG / IDCG with
  DCG = Σ over relevant items at rank ≤ K of 1 / log(1 + rank), and IDCG the same sum for a perfect
  list, over ranks 1 … min(|relevant|, K). The ratio does not depend on the base of the logarithm.
- ``mean_reciprocal_rank_at_25`` = 1 / rank of the *first* relevant item if that rank is ≤ 25, else 0.
- ``coverage`` = distinct items among the first 25 recommendations of all rows / ``num_items``
  (Personalize divides by every item of the interactions data, so pass that count).
- ``recall_at_20`` = |relevant ∩ top 20| / |relevant| (for next-item, one target: the hit rate).
- ``mrr_at_20`` = like MRR@25 with a cut-off of 20.

Ties. With ``scores`` given, items of equal score are ordered *conservatively*: within a run of
equal scores, relevant items come after the non-relevant ones, so a relevant item's rank is the
number of listed items scoring at least as high as it (minus the relevant ones placed after it).
Give one more recommendation than the largest cut-off: a relevant item tied with the last listed
item is then ranked behind it, i.e. outside the cut-off, exactly as a full-catalogue ranking would
place it. Duplicate recommendations count once, at their first position. Negative item indices
are padding (a list shorter than requested) and never match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "NEXT_ITEM_METRICS",
    "PERSONALIZE_METRICS",
    "conservative_ranks",
    "first_hit_ranks",
    "metrics",
    "precision_at",
    "recall_at",
    "reciprocal_rank_at",
]

#: Metric names of GetSolutionMetrics, in the order Personalize lists them.
PERSONALIZE_METRICS = (
    "coverage",
    "mean_reciprocal_rank_at_25",
    "normalized_discounted_cumulative_gain_at_5",
    "normalized_discounted_cumulative_gain_at_10",
    "normalized_discounted_cumulative_gain_at_25",
    "precision_at_5",
    "precision_at_10",
    "precision_at_25",
)
#: The next-item (GRU4Rec-style) metrics.
NEXT_ITEM_METRICS = ("recall_at_20", "mrr_at_20")


def _as_recommendation_matrix(recommendations: Any) -> npt.NDArray[np.int64]:
    if isinstance(recommendations, np.ndarray):
        matrix = recommendations
    else:
        rows = [np.asarray(r, dtype=np.int64).reshape(-1) for r in recommendations]
        width = max((len(r) for r in rows), default=0)
        matrix = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            matrix[i, : len(r)] = r
    if matrix.ndim != 2:
        raise ValueError(f"recommendations: expected a 2-D array [rows, K], found shape {matrix.shape}")
    if matrix.dtype.kind not in "iu" and matrix.size:
        raise TypeError(f"recommendations: expected integer item indices, found dtype {matrix.dtype}")
    return np.asarray(matrix, dtype=np.int64)


def _relevant_csr(relevant: Sequence[Iterable[int]] | Any, rows: int) -> tuple[npt.NDArray[np.int64], ...]:
    """(row of each relevant item, item) with duplicates removed, and |relevant| per row."""
    if isinstance(relevant, tuple) and len(relevant) == 2 and isinstance(relevant[0], np.ndarray):
        offsets, items = (np.asarray(a, dtype=np.int64) for a in relevant)
        if offsets.shape != (rows + 1,):
            raise ValueError(f"relevant: expected {rows + 1} CSR offsets, found {offsets.shape[0]}")
        row_of = np.repeat(np.arange(rows, dtype=np.int64), np.diff(offsets))
    else:
        if len(relevant) != rows:
            raise ValueError(f"relevant: expected one collection per row ({rows}), found {len(relevant)}")
        parts = [np.fromiter(r, dtype=np.int64) for r in relevant]
        items = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        row_of = np.repeat(np.arange(rows, dtype=np.int64), [len(p) for p in parts])
    if items.size and items.min() < 0:
        raise ValueError(f"relevant: item indices must be non-negative, found {int(items.min())}")
    return row_of, items


def conservative_ranks(
    recommendations: Any,
    relevant: Sequence[Iterable[int]] | Any,
    scores: npt.ArrayLike | None = None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Marks the relevant items of each ranked list, ties ordered conservatively.

    Args:
        recommendations: item indices, ``[rows, K]`` (or a sequence of sequences), best first.
        relevant: per row, the relevant item indices (a sequence of collections, or a CSR pair
            ``(offsets, items)`` of numpy arrays).
        scores: optional ``[rows, K]`` scores of ``recommendations``, non-increasing along a row.

    Returns:
        ``(hits, num_relevant)``: ``hits[r, p]`` is True where position ``p`` (0-based, after
        conservative tie ordering) of row ``r`` holds a relevant item; ``num_relevant[r]`` is the
        number of distinct relevant items of row ``r``.

    Raises:
        ValueError: mismatched shapes or negative relevant indices.
        TypeError: non-integer recommendations.
    """
    matrix = _as_recommendation_matrix(recommendations)
    rows, width = matrix.shape
    row_of, items = _relevant_csr(relevant, rows)
    big = int(max(matrix.max(initial=0), items.max(initial=0))) + 1
    relevant_keys = np.unique(row_of * big + items)
    num_relevant = np.bincount(relevant_keys // big, minlength=rows).astype(np.int64)

    keys = np.arange(rows, dtype=np.int64)[:, None] * big + matrix
    hits = np.isin(keys, relevant_keys) & (matrix >= 0)
    if hits.any():
        # a repeated item counts once, at its first position
        flat = np.flatnonzero(hits)
        _, first = np.unique(keys.reshape(-1)[flat], return_index=True)
        keep = np.zeros(hits.size, dtype=bool)
        keep[flat[first]] = True
        hits &= keep.reshape(hits.shape)
    if scores is not None:
        score_matrix = np.asarray(scores, dtype=np.float64)
        if score_matrix.shape != matrix.shape:
            raise ValueError(f"scores: expected shape {matrix.shape}, found {score_matrix.shape}")
        # sort by score descending, then non-relevant before relevant (stable: keeps list order)
        order = np.lexsort((hits, -score_matrix), axis=-1)
        hits = np.take_along_axis(hits, order, axis=-1)
    del width
    return hits, num_relevant


def metrics(
    recommendations: Any,
    relevant: Sequence[Iterable[int]] | Any,
    num_items: int,
    *,
    scores: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """Personalize's offline metrics (and next-item recall/MRR@20) of ranked recommendations.

    See the module docstring for the exact definitions, tie handling and the treatment of rows
    without targets.

    Args:
        recommendations: item indices, ``[rows, K]`` (or a sequence of sequences), best first;
            negative entries are padding. Lists shorter than 25 simply cannot hit below their end.
        relevant: per row, the relevant item indices (a sequence of collections, or a CSR pair
            ``(offsets, items)`` of numpy arrays).
        num_items: the catalogue size, the denominator of ``coverage``.
        scores: optional ``[rows, K]`` scores of ``recommendations``, for conservative ties.

    Returns:
        ``{name: value}`` for :data:`PERSONALIZE_METRICS` and :data:`NEXT_ITEM_METRICS`; every value
        is 0.0 when no row has a target.

    Raises:
        ValueError: mismatched shapes, negative relevant indices or ``num_items`` < 1.
        TypeError: non-integer recommendations.
    """
    if num_items < 1:
        raise ValueError(f"num_items: expected a positive catalogue size, found {num_items}")
    matrix = _as_recommendation_matrix(recommendations)
    hits, num_relevant = conservative_ranks(matrix, relevant, scores)
    listed = matrix[:, :25]
    recommended = np.unique(listed[listed >= 0])
    result = {name: 0.0 for name in (*PERSONALIZE_METRICS, *NEXT_ITEM_METRICS)}
    result["coverage"] = float(recommended.size / num_items)

    evaluated = num_relevant > 0
    if not evaluated.any():
        return result
    hits = hits[evaluated]
    num_relevant = num_relevant[evaluated]
    width = hits.shape[1]
    # pad so every cut-off is defined even for short lists
    if width < 25:
        hits = np.pad(hits, ((0, 0), (0, 25 - width)))
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    gains = 1.0 / np.log2(1.0 + ranks)
    ideal_cumulative = np.cumsum(gains)
    first_hit = first_hit_ranks(hits)

    for k in (5, 10, 25):
        top = hits[:, :k]
        result[f"precision_at_{k}"] = float(np.mean(precision_at(hits, k)))
        dcg = (top * gains[:k]).sum(axis=1)
        idcg = ideal_cumulative[np.minimum(num_relevant, k) - 1]
        result[f"normalized_discounted_cumulative_gain_at_{k}"] = float(np.mean(dcg / idcg))
    for k, name in ((25, "mean_reciprocal_rank_at_25"), (20, "mrr_at_20")):
        result[name] = float(np.mean(reciprocal_rank_at(first_hit, k)))
    result["recall_at_20"] = float(np.mean(recall_at(hits, num_relevant, 20)))
    return result


# ----- per-row metrics: shared by `metrics` and the trainer's validation (one tie rule) -----------
def first_hit_ranks(hits: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """1-based rank of each row's first relevant item (int64 max where the row has none).

    Args:
        hits: ``[rows, K]`` from :func:`conservative_ranks`.

    Returns:
        ``[rows]`` ranks.
    """
    return np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.iinfo(np.int64).max).astype(np.int64)


def reciprocal_rank_at(first_hit: npt.NDArray[np.int64], k: int) -> npt.NDArray[np.float64]:
    """Per row, 1 / ``first_hit`` if it is ≤ ``k``, else 0 (MRR@k before averaging).

    Args:
        first_hit: 1-based rank of each row's first relevant item (:func:`first_hit_ranks`, or a
            conservative rank computed directly).
        k: cut-off.

    Returns:
        ``[rows]`` reciprocal ranks.
    """
    return np.where(first_hit <= k, 1.0 / np.minimum(first_hit, k + 1), 0.0)


def precision_at(hits: npt.NDArray[np.bool_], k: int) -> npt.NDArray[np.float64]:
    """Per row, |relevant ∩ top k| / k (lists shorter than ``k`` count their missing tail as misses).

    Args:
        hits: ``[rows, K]`` from :func:`conservative_ranks`.
        k: cut-off.

    Returns:
        ``[rows]`` precisions.
    """
    return np.asarray(hits[:, :k].sum(axis=1) / k, dtype=np.float64)


def recall_at(
    hits: npt.NDArray[np.bool_], num_relevant: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.float64]:
    """Per row, |relevant ∩ top k| / |relevant| (rows need at least one relevant item).

    Args:
        hits: ``[rows, K]`` from :func:`conservative_ranks`.
        num_relevant: ``[rows]`` distinct relevant items per row.
        k: cut-off.

    Returns:
        ``[rows]`` recalls.
    """
    return np.asarray(hits[:, :k].sum(axis=1) / num_relevant, dtype=np.float64)
