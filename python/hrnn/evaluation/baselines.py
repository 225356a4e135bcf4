"""Honest baselines: popularity-count and session-kNN, behind the same interface as the model.

A baseline is fitted on a split's training interactions and then answers the split's queries
(:meth:`recommend`), returning item indices in the split's item space and their scores, so that
:func:`hrnn.evaluation.metrics` can break ties conservatively.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from hrnn import _hrnn
from hrnn.evaluation.splits import Split
from hrnn.interactions import Interactions

__all__ = ["BASELINES", "Baseline", "Popularity", "SessionKnn", "make_baseline"]

logger = logging.getLogger(__name__)

TopK = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


class Baseline(Protocol):
    """What the evaluation needs from a recommender: fit on training data, answer queries."""

    name: str

    def fit(self, train: Interactions) -> Baseline:
        """Learns from the training interactions; returns ``self``."""
        ...

    def recommend(self, split: Split, num_results: int, *, exclude_seen: bool = False) -> TopK:
        """Top ``num_results`` items (split item indices, ``-1`` padding) and scores per query."""
        ...


def _check_fitted(catalogue: int | None, split: Split, name: str) -> None:
    if catalogue is None:
        raise RuntimeError(f"{name}: call fit() before recommend()")
    if catalogue != split.num_items:
        raise ValueError(
            f"split: expected the catalogue this {name} baseline was fitted on ({catalogue} items), "
            f"found {split.num_items}"
        )


class Popularity:
    """aws-popularity-count: the items with the most distinct users in training, for everyone.

    Ties in the count are listed in item-index order (first appearance in the training data); the
    counts are returned as scores so that the metrics treat ties conservatively. With
    ``exclude_seen``, each query's history is removed and the list backfilled from further down.
    """

    name = "popularity"

    def __init__(self) -> None:
        self.counts: npt.NDArray[np.int64] | None = None

    def fit(self, train: Interactions) -> Popularity:
        """Counts distinct users per item.

        Args:
            train: the training interactions.

        Returns:
            ``self``.
        """
        columns = train.columns()
        user, item = columns["user"].astype(np.int64), columns["item"].astype(np.int64)
        self.counts = _hrnn.item_popularity(user, item, train.num_items)
        return self

    def recommend(self, split: Split, num_results: int, *, exclude_seen: bool = False) -> TopK:
        """The most popular items (without the query's history if ``exclude_seen``).

        Args:
            split: the split whose queries to answer (fitted on ``split.train``).
            num_results: list length.
            exclude_seen: drop items of each query's history.

        Returns:
            ``(indices, scores)``, both ``[num_queries, num_results]``.

        Raises:
            RuntimeError: not fitted.
            ValueError: a split with another catalogue.
        """
        _check_fitted(None if self.counts is None else self.counts.shape[0], split, self.name)
        assert self.counts is not None
        order = np.lexsort((np.arange(self.counts.shape[0]), -self.counts))
        n = split.num_queries
        indices = np.full((n, num_results), -1, dtype=np.int64)
        scores = np.full((n, num_results), -np.inf)
        if not exclude_seen:
            top = order[:num_results]
            indices[:, : top.shape[0]] = top
            scores[:, : top.shape[0]] = self.counts[top]
            return indices, scores
        offsets, items = split.histories()
        for q in range(n):
            seen = items[offsets[q] : offsets[q + 1]]
            head = order[: num_results + np.unique(seen).shape[0]]
            top = head[~np.isin(head, seen)][:num_results]
            indices[q, : top.shape[0]] = top
            scores[q, : top.shape[0]] = self.counts[top]
        return indices, scores


@dataclass
class SessionKnn:
    """Session-kNN (V-SKNN with STAN's decays), scored in Rust (``rust/hrnn-core/src/baselines``).

    Training sessions come from :meth:`hrnn.Interactions.sessionize` with ``session_timeout``
    (``None``: each user's whole history is one "session", i.e. user-kNN). A query's current
    session is the newest ``context_length`` distinct items of its history. See
    ``rust/hrnn-core/src/baselines/sknn.rs`` for the exact scoring.

    Attributes:
        neighbours: neighbour sessions that vote.
        sample_size: most recent sessions considered per context item.
        context_length: newest distinct history items that form the current session.
        position_decay: decay (items) of a context item's weight with its age in the session.
        recency_half_life: half-life (seconds) of a neighbour's weight with its distance in time
            from the query; ``None`` = off.
        neighbour_position_decay: decay (positions) of a vote with its distance from the shared
            item inside the neighbour; ``None`` = off.
        idf: weight shared items by inverse session frequency.
        popularity_backfill: weight of the popularity tie-breaker for items without votes.
        session_timeout: gap (seconds) that splits training histories into sessions.
    """

    # defaults tuned on a validation split inside RSC15-100k's training data (the last day)
    neighbours: int = 200
    sample_size: int = 2000
    context_length: int = 10
    position_decay: float = 1.0
    recency_half_life: float | None = None
    neighbour_position_decay: float | None = 4.0
    idf: bool = True
    popularity_backfill: float = 1e-9
    session_timeout: int | None = 1800
    name: str = field(default="sknn", init=False)
    _index: _hrnn.SessionKnnIndex | None = field(default=None, init=False, repr=False)

    def fit(self, train: Interactions) -> SessionKnn:
        """Indexes the training sessions.

        Args:
            train: the training interactions.

        Returns:
            ``self``.
        """
        timeout = 2**62 if self.session_timeout is None else self.session_timeout
        sessions = train.sessionize(timeout)
        starts = np.flatnonzero(sessions.session_start).astype(np.int64)
        offsets = np.append(starts, len(sessions)).astype(np.int64)
        self._index = _hrnn.SessionKnnIndex(
            offsets,
            np.ascontiguousarray(sessions.item_index, dtype=np.uint32),
            np.ascontiguousarray(sessions.timestamp, dtype=np.int64),
            train.num_items,
        )
        logger.info("sknn: indexed %d sessions of %d items", self._index.num_sessions, train.num_items)
        return self

    def recommend(self, split: Split, num_results: int, *, exclude_seen: bool = False) -> TopK:
        """Top items per query from the neighbours of its current session.

        Args:
            split: the split whose queries to answer (fitted on ``split.train``).
            num_results: list length.
            exclude_seen: drop items of each query's history.

        Returns:
            ``(indices, scores)``, both ``[num_queries, num_results]``.

        Raises:
            RuntimeError: not fitted.
            ValueError: a split with another catalogue, or invalid parameters.
        """
        _check_fitted(None if self._index is None else self._index.num_items, split, self.name)
        assert self._index is not None
        offsets, items = split.histories()
        return self._index.recommend(
            offsets,
            items,
            np.ascontiguousarray(split.query_time, dtype=np.int64),
            num_results,
            exclude_seen=exclude_seen,
            neighbours=self.neighbours,
            sample_size=self.sample_size,
            context_length=self.context_length,
            position_decay=self.position_decay,
            recency_half_life=math.inf if self.recency_half_life is None else self.recency_half_life,
            neighbour_position_decay=(
                math.inf if self.neighbour_position_decay is None else self.neighbour_position_decay
            ),
            idf=self.idf,
            popularity_backfill=self.popularity_backfill,
        )


#: Baselines by name, as ``hrnn.evaluate(baselines=...)`` accepts them.
BASELINES: dict[str, type[Popularity] | type[SessionKnn]] = {"popularity": Popularity, "sknn": SessionKnn}


def make_baseline(name: str) -> Baseline:
    """A new, unfitted baseline by name.

    Args:
        name: a key of :data:`BASELINES`.

    Returns:
        The baseline with its default settings.

    Raises:
        ValueError: an unknown name.
    """
    if name not in BASELINES:
        raise ValueError(f"baselines: expected names from {sorted(BASELINES)}, found {name!r}")
    return BASELINES[name]()
