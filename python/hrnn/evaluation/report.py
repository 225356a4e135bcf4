"""``hrnn.evaluate``: train, evaluate against baselines on one temporal split, and report."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrnn.evaluation._hrnn_model import HrnnModel
from hrnn.evaluation.baselines import Baseline, make_baseline
from hrnn.evaluation.metrics import NEXT_ITEM_METRICS, PERSONALIZE_METRICS, metrics
from hrnn.evaluation.splits import Split, make_split
from hrnn.interactions import Interactions

__all__ = ["EvaluationReport", "ModelResult", "evaluate", "evaluate_split"]

logger = logging.getLogger(__name__)

#: Recommendations requested per query: one more than the largest cut-off, for exact conservative ties.
_NUM_RESULTS = 26

_SHORT_NAMES = {
    "coverage": "cov",
    "mean_reciprocal_rank_at_25": "MRR@25",
    "normalized_discounted_cumulative_gain_at_5": "NDCG@5",
    "normalized_discounted_cumulative_gain_at_10": "NDCG@10",
    "normalized_discounted_cumulative_gain_at_25": "NDCG@25",
    "precision_at_5": "P@5",
    "precision_at_10": "P@10",
    "precision_at_25": "P@25",
    "recall_at_20": "R@20",
    "mrr_at_20": "MRR@20",
}


@dataclass(frozen=True)
class ModelResult:
    """One recommender's scores on a split.

    Attributes:
        name: ``"hrnn"`` or a baseline's name.
        metrics: ``{metric: value}`` (Personalize's names plus ``recall_at_20``/``mrr_at_20``).
        fit_seconds: wall time of training / fitting.
        recommend_seconds: wall time of answering every query.
        settings: the recommender's configuration.
    """

    name: str
    metrics: dict[str, float]
    fit_seconds: float
    recommend_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {
            "name": self.name,
            "metrics": dict(self.metrics),
            "fit_seconds": self.fit_seconds,
            "recommend_seconds": self.recommend_seconds,
            "settings": dict(self.settings),
        }


@dataclass(frozen=True)
class EvaluationReport:
    """The model and its baselines on one split; ``str()`` is a table, :meth:`to_json` the record.

    Attributes:
        protocol: the split protocol.
        split: the split's one-line description.
        num_queries: queries answered.
        num_items: catalogue size used for coverage (every item of the data).
        exclude_seen: whether each query's history was excluded from its recommendations.
        seed: the seed of the split and of training.
        results: one :class:`ModelResult` per recommender, the model first.
    """

    protocol: str
    split: str
    num_queries: int
    num_items: int
    exclude_seen: bool
    seed: int
    results: tuple[ModelResult, ...]

    def __getitem__(self, name: str) -> ModelResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no result named {name!r}; have {[r.name for r in self.results]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict."""
        return {
            "protocol": self.protocol,
            "split": self.split,
            "num_queries": self.num_queries,
            "num_items": self.num_items,
            "exclude_seen": self.exclude_seen,
            "seed": self.seed,
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int = 2) -> str:
        """The report as JSON text, also written to ``path`` when given.

        Args:
            path: optional file to write.
            indent: JSON indentation.

        Returns:
            The JSON text.
        """
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        """Rebuilds a report from :meth:`to_dict`'s output."""
        results = tuple(ModelResult(**r) for r in data["results"])
        return cls(**{**data, "results": results})

    def __str__(self) -> str:
        names = [*PERSONALIZE_METRICS, *NEXT_ITEM_METRICS]
        header = ["model", *(_SHORT_NAMES[n] for n in names), "fit s", "rec s"]
        rows = [
            [
                r.name,
                *(f"{r.metrics.get(n, float('nan')):.4f}" for n in names),
                f"{r.fit_seconds:.1f}",
                f"{r.recommend_seconds:.1f}",
            ]
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            padded = [c.rjust(w) for c, w in zip(cells, widths, strict=True)]
            padded[0] = cells[0].ljust(widths[0])
            return "  ".join(padded)

        title = (
            f"{self.protocol}: {self.num_queries} queries, {self.num_items} items, "
            f"exclude_seen={self.exclude_seen}, seed={self.seed}\n{self.split}"
        )
        return "\n".join([title, line(header), *(line(row) for row in rows)])


def _stage_bar(total: int, progress: bool) -> Any:
    """A tqdm bar over the recommenders on stderr, shown only when stderr is a terminal.

    ``None`` when progress is off or tqdm is not installed (it comes with ``hrnn[train]``; the
    baselines alone need only numpy).
    """
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    # disable=None: tqdm turns itself off when its file (sys.stderr) is not a TTY, so logs and
    # captured output never get bar lines
    return tqdm(total=total, desc="evaluate", unit="model", disable=None, leave=False, dynamic_ncols=True)


def _run(model: Any, split: Split, exclude_seen: bool) -> ModelResult:
    started = time.perf_counter()
    model.fit(split.train)
    fitted = time.perf_counter()
    indices, scores = model.recommend(split, _NUM_RESULTS, exclude_seen=exclude_seen)
    done = time.perf_counter()
    values = metrics(indices, split.relevant, len(split.item_ids), scores=scores)
    fit_seconds = getattr(model, "training_seconds", None) or (fitted - started)
    settings = getattr(model, "config", None)
    if settings is None:
        settings = {k: v for k, v in vars(model).items() if not k.startswith("_") and _is_plain(v)}
    logger.debug("%s: %s", model.name, values)
    logger.info(
        "evaluate: %s done: fit %.1f s, %d queries in %.1f s%s",
        model.name,
        fit_seconds,
        split.num_queries,
        done - fitted,
        "".join(
            f", {_SHORT_NAMES[name]} {values[name]:.4f}"
            for name in ("mean_reciprocal_rank_at_25", "precision_at_5", "recall_at_20")
            if name in values
        ),
    )
    return ModelResult(model.name, values, float(fit_seconds), done - fitted, dict(settings))


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def evaluate_split(
    split: Split,
    *,
    models: Sequence[Any] = (),
    baselines: Sequence[str | Baseline] = ("popularity", "sknn"),
    exclude_seen: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> EvaluationReport:
    """Evaluates already-built recommenders on a split (see :func:`evaluate`).

    Args:
        split: the split.
        models: recommenders with ``name``, ``fit(train)`` and ``recommend(split, k, exclude_seen=)``
            (e.g. :class:`hrnn.evaluation.HrnnModel`), evaluated first.
        baselines: baseline names or instances.
        exclude_seen: exclude each query's history from its recommendations (every recommender).
        seed: recorded in the report.
        progress: a bar over the recommenders on stderr when it is a terminal (one ``logging``
            INFO line per finished recommender either way); ``False`` for no bar.

    Returns:
        The report.
    """
    runs = [*models, *(make_baseline(b) if isinstance(b, str) else b for b in baselines)]
    bar = _stage_bar(len(runs), progress)
    results_list = []
    for m in runs:
        if bar is not None:
            bar.set_postfix_str(str(getattr(m, "name", "")), refresh=True)
        results_list.append(_run(m, split, exclude_seen))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    results = tuple(results_list)
    return EvaluationReport(
        protocol=split.protocol,
        split=split.description,
        num_queries=split.num_queries,
        num_items=len(split.item_ids),
        exclude_seen=exclude_seen,
        seed=seed,
        results=results,
    )


def evaluate(
    interactions: Interactions,
    *,
    protocol: str = "personalize",
    config: dict[str, Any] | None = None,
    baselines: Sequence[str | Baseline] = ("popularity", "sknn"),
    seed: int = 0,
    exclude_seen: bool = False,
    test: Interactions | None = None,
    model: Any | None = None,
    progress: bool = True,
    **split_options: Any,
) -> EvaluationReport:
    """Splits temporally, trains the HRNN, evaluates it and the baselines on the same queries.

    Ranking is always over the full catalogue; ties count against the target (see
    :mod:`hrnn.evaluation.metrics`).

    Args:
        interactions: the data (with ``test``: the training data).
        protocol: ``"personalize"``, ``"holdout-last"``, ``"next-item"`` or ``"global-time"``
            (:mod:`hrnn.evaluation.splits` documents each).
        config: keyword arguments of :func:`hrnn.train` for the model.
        baselines: baseline names (``"popularity"``, ``"sknn"``) or baseline instances.
        seed: seeds the split and training.
        exclude_seen: exclude each query's history from every recommender's list.
        test: ``next-item`` only: an explicit test set (each USER_ID one sequence).
        model: evaluate this instead of training an HRNN: an :class:`hrnn.TrainedModel`, or any
            object with ``name``, ``fit`` and ``recommend`` (as the baselines have); ``False`` to
            report only the baselines.
        progress: progress bars on stderr (training's, and one over the recommenders) when stderr
            is a terminal — never in logs or captured output; ``False`` turns them off. Each
            finished recommender also logs one ``logging`` INFO line (logger ``hrnn.evaluation.report``).
        **split_options: passed to :func:`hrnn.evaluation.make_split` (``fraction``,
            ``user_fraction``, ``cut_time``, ``session_timeout``).

    Returns:
        The :class:`EvaluationReport` (print it for the table; ``to_json()`` for the record).

    Raises:
        ValueError: an unknown protocol or baseline, or invalid split options.
        ImportError: training needs torch (``pip install "hrnn[train]"``).
    """
    split = make_split(interactions, protocol, seed=seed, test=test, **split_options)
    models: list[Any]
    if model is False:
        models = []
    elif model is None:
        models = [HrnnModel(config, seed=seed, progress=progress)]
    elif hasattr(model, "recommend") and hasattr(model, "fit"):
        models = [model]
    else:
        models = [HrnnModel(seed=seed, model=model)]
    return evaluate_split(
        split, models=models, baselines=baselines, exclude_seen=exclude_seen, seed=seed, progress=progress
    )
