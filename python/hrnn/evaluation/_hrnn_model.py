"""The HRNN under evaluation, behind the same interface as the baselines.

:meth:`HrnnModel.fit` trains with :func:`hrnn.train`. :meth:`HrnnModel.recommend` answers a
split's queries through the serving engine when it is available (``hrnn.Recommender``: the model
is saved, loaded, and each query's context events are sent with ``put_events`` before the
``recommend`` call — the real-time path Personalize's own evaluation uses). Without the engine it
replays each query's history through :meth:`hrnn.TrainedModel.score` (torch), which implements
the same equations (docs/model.md). Either way a query is scored at its ``query_time`` (the
time of the event it predicts, as in training, where ``Δq`` is the target's own gap).
"""

from __future__ import annotations

import logging
import tempfile
import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from hrnn.evaluation.splits import Split

if TYPE_CHECKING:
    from hrnn.interactions import Interactions
    from hrnn.trained_model import TrainedModel

__all__ = ["HrnnModel"]

logger = logging.getLogger(__name__)

TopK = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]

#: Event type sent to the engine for data without an EVENT_TYPE column.
_NO_EVENT_TYPE = "EVENT"
# Context events per put_events call (a bulk load: far above the service's 10 per call).
_CONTEXT_CALL = 1000

#: Queries scored per torch call on the fallback path (bounds the [batch, items] score matrix).
_SCORE_BATCH = 512


def _engine_available() -> bool:
    try:
        from hrnn.recommender import Recommender  # noqa: F401
    except ImportError:
        return False
    return True


class HrnnModel:
    """Trains an HRNN on a split's training data and answers its queries.

    Args:
        config: keyword arguments of :func:`hrnn.train` (hyperparameters and training settings).
        seed: training seed.
        progress: show training progress.
        engine: ``"auto"`` (the Rust engine when importable, else torch), ``"engine"`` or
            ``"torch"``.
        model: an already trained model to evaluate instead of training one (``fit`` then only
            records that no training happened).
        precision: how the engine holds the item table (``Recommender.load(precision=...)``):
            ``"fp32"``, or ``"bf16"`` to measure what the rounded table costs in quality. The
            torch path scores in f32 only, so ``"bf16"`` needs the engine; the model is then
            named ``"hrnn-bf16"`` so both can share one report.

    Raises:
        ValueError: an unknown ``engine`` or ``precision``, or ``"bf16"`` with ``engine="torch"``.
    """

    name = "hrnn"

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        seed: int = 0,
        progress: bool = False,
        engine: str = "auto",
        model: TrainedModel | None = None,
        precision: Literal["fp32", "bf16"] = "fp32",
    ) -> None:
        if engine not in ("auto", "engine", "torch"):
            raise ValueError(f"engine: expected 'auto', 'engine' or 'torch', found {engine!r}")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision: expected 'fp32' or 'bf16', found {precision!r}")
        if precision != "fp32" and engine == "torch":
            raise ValueError(f"precision={precision!r} needs the engine; the torch path scores in f32")
        self.config = dict(config or {})
        self.seed = seed
        self.progress = progress
        self.engine = engine
        self.model = model
        self.precision: Literal["fp32", "bf16"] = precision
        if precision != "fp32":
            self.name = f"hrnn-{precision}"
        self.training_seconds: float | None = None

    def fit(self, train: Interactions) -> HrnnModel:
        """Trains on ``train`` (unless a model was given).

        Args:
            train: the training interactions.

        Returns:
            ``self``.
        """
        if self.model is not None:
            return self
        from hrnn.training import train as train_hrnn

        started = time.perf_counter()
        self.model = train_hrnn(train, **{"seed": self.seed, "progress": self.progress, **self.config})
        self.training_seconds = time.perf_counter() - started
        logger.info("hrnn: trained in %.1f s", self.training_seconds)
        return self

    def recommend(self, split: Split, num_results: int, *, exclude_seen: bool = False) -> TopK:
        """Top items per query, in the split's item space.

        Args:
            split: the split whose queries to answer.
            num_results: list length.
            exclude_seen: drop items of each query's history.

        Returns:
            ``(indices, scores)``, both ``[num_queries, num_results]``, ``-1`` / ``-inf`` padding.

        Raises:
            RuntimeError: not fitted, or the engine is needed (``engine="engine"``, or a precision
                other than ``"fp32"``) and not importable.
        """
        if self.model is None:
            raise RuntimeError("hrnn: call fit() before recommend()")
        use_engine = self.engine == "engine" or (self.engine == "auto" and _engine_available())
        if not use_engine and self.precision != "fp32":
            raise RuntimeError(f"hrnn: precision={self.precision!r} needs the engine (hrnn._hrnn)")
        if use_engine:
            return self._recommend_engine(split, num_results, exclude_seen)
        return self._recommend_torch(split, num_results, exclude_seen)

    # ----- torch replay --------------------------------------------------------------------------
    def _recommend_torch(self, split: Split, num_results: int, exclude_seen: bool) -> TopK:
        assert self.model is not None
        model_items = self.model.item_ids
        split_index = {item: i for i, item in enumerate(split.item_ids)}
        # model column -> split item index
        column_item = np.array([split_index[item] for item in model_items], dtype=np.int64)
        model_index = {item: i for i, item in enumerate(model_items)}
        to_model = np.array([model_index.get(item, -1) for item in split.item_ids], dtype=np.int64)
        offsets, items, stamps, types = split.history_events()
        n = split.num_queries
        indices = np.full((n, num_results), -1, dtype=np.int64)
        scores = np.full((n, num_results), -np.inf)
        for lo in range(0, n, _SCORE_BATCH):
            hi = min(n, lo + _SCORE_BATCH)
            histories = []
            for q in range(lo, hi):
                span = slice(int(offsets[q]), int(offsets[q + 1]))
                known = to_model[items[span]] >= 0  # the model cannot take items it never saw
                histories.append(
                    (
                        np.asarray(split.item_ids, dtype=object)[items[span][known]],
                        stamps[span][known],
                        types[span][known],
                    )
                )
            at = [int(t) for t in split.query_time[lo:hi]]
            full = self.model.score(histories, at=at).scores.astype(np.float64)
            if exclude_seen:
                for row, q in enumerate(range(lo, hi)):
                    seen = to_model[items[int(offsets[q]) : int(offsets[q + 1])]]
                    full[row, seen[seen >= 0]] = -np.inf
            k = min(num_results, full.shape[1])
            top = np.argpartition(-full, k - 1, axis=1)[:, :k]
            top_scores = np.take_along_axis(full, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=1)
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            valid = np.isfinite(top_scores)
            indices[lo:hi, :k] = np.where(valid, column_item[top], -1)
            scores[lo:hi, :k] = np.where(valid, top_scores, -np.inf)
        return indices, scores

    # ----- the Rust engine -----------------------------------------------------------------------
    def _recommend_engine(self, split: Split, num_results: int, exclude_seen: bool) -> TopK:
        from hrnn.recommender import Recommender

        assert self.model is not None
        with tempfile.TemporaryDirectory(prefix="hrnn-eval-") as directory:
            self.model.save(directory)
            engine = Recommender.load(
                directory,
                max_events_per_call=_CONTEXT_CALL,
                precision=self.precision,
            )
        model_items = set(self.model.item_ids)
        split_index = {item: i for i, item in enumerate(split.item_ids)}
        n = split.num_queries
        indices = np.full((n, num_results), -1, dtype=np.int64)
        scores = np.full((n, num_results), -np.inf)
        # queries of one user come in order of growing context: send only the new events
        sent = np.zeros(len(split.user_ids), dtype=np.int64)
        for q in range(n):
            u = int(split.query_user[q])
            user_id = self._engine_user_id(split, u)
            start = int(split.context_offsets[u])
            upto = int(split.query_context_length[q])
            events = [
                {
                    # the engine needs a non-empty type; data without EVENT_TYPE has only ""
                    "event_type": split.event_types[int(split.context_event_type[e])] or _NO_EVENT_TYPE,
                    "sent_at": int(split.context_timestamp[e]),
                    "item_id": split.item_ids[int(split.context_item[e])],
                    # every context row is its own event, even when one repeats another's content
                    "event_id": f"context-{e}",
                }
                for e in range(start + int(sent[u]), start + upto)
                if split.item_ids[int(split.context_item[e])] in model_items
            ]
            for lo in range(0, len(events), _CONTEXT_CALL):
                engine.put_events(
                    user_id=user_id, session_id=f"eval-{u}", events=events[lo : lo + _CONTEXT_CALL]
                )
            sent[u] = upto
            # exactly what a served user gets: the engine excludes what it knows the user has seen
            # (the training data and the events sent above)
            result = engine.recommend(
                user_id, num_results=num_results, exclude_seen=exclude_seen, at=float(split.query_time[q])
            )
            for j, (item_id, score) in enumerate(result[:num_results]):
                indices[q, j] = split_index[item_id]
                scores[q, j] = score
        return indices, scores

    @staticmethod
    def _engine_user_id(split: Split, u: int) -> str:
        # a test user unknown to training must start from an empty state in the engine, even if
        # its id collides with a training user's (explicit test files reuse ids)
        return split.user_ids[u] if split.known_user[u] else f"eval:{split.user_ids[u]}"
