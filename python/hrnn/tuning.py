"""``hrnn.tune``: hyperparameter optimisation like Personalize's ``performHPO`` (optuna).

Each trial trains an HRNN on the training part of a temporal *validation* split made inside the
data you pass (pass training data only: the test users of your final evaluation must never be
seen here) and scores it on the split's queries with :func:`hrnn.evaluation.metrics`. optuna's TPE
sampler proposes the next configuration. ``pip install "hrnn[hpo]"`` provides optuna.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hrnn.evaluation.metrics import NEXT_ITEM_METRICS, PERSONALIZE_METRICS, metrics
from hrnn.evaluation.splits import make_split
from hrnn.interactions import Interactions

if TYPE_CHECKING:
    from hrnn.trained_model import TrainedModel

__all__ = ["DEFAULT_RANGES", "TuningResult", "tune"]

logger = logging.getLogger(__name__)

#: Search space: ``(low, high)`` ints/floats (floats searched on a log scale), or a list of choices.
DEFAULT_RANGES: dict[str, Any] = {
    "hidden_dimension": (32, 256),
    "bptt": (2, 32),
    "recency_mask": [True, False],
    "learning_rate": (1e-3, 3e-2),
    "epochs": (2, 20),
}

_NUM_RESULTS = 26


def _require_optuna() -> Any:
    try:
        import optuna
    except ImportError as e:
        raise ImportError('hrnn.tune needs optuna, which is not installed: pip install "hrnn[hpo]"') from e
    return optuna


@dataclass(frozen=True)
class TuningResult:
    """What :func:`tune` found.

    Attributes:
        objective: the metric maximised.
        best_config: the best trial's configuration (keyword arguments of :func:`hrnn.train`).
        best_value: the best trial's objective value on the validation split.
        trials: one row per trial: ``number``, ``value``, ``seconds``, the sampled parameters
            and every validation metric.
        validation: the validation split's description.
        model: the final model trained on all the data with ``best_config`` (``train_final``).
    """

    objective: str
    best_config: dict[str, Any]
    best_value: float
    trials: list[dict[str, Any]]
    validation: str
    model: TrainedModel | None = field(default=None, repr=False)

    def to_pandas(self) -> Any:
        """The trial table as a DataFrame (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self.trials)

    def train_final(self, interactions: Interactions, **overrides: Any) -> TrainedModel:
        """Trains on ``interactions`` with the best configuration.

        Args:
            interactions: the full training data.
            **overrides: further :func:`hrnn.train` keyword arguments.

        Returns:
            The trained model.
        """
        from hrnn.training import train

        return train(interactions, **{**self.best_config, **overrides})


def _run_trial(
    data: Interactions | dict[str, Any],
    split_options: dict[str, Any],
    config: dict[str, Any],
    exclude_seen: bool,
    seed: int,
) -> tuple[dict[str, float], float]:
    """Trains one configuration on the validation split's training part and scores it."""
    from hrnn.evaluation._hrnn_model import HrnnModel

    interactions = data if isinstance(data, Interactions) else Interactions.from_arrays(**data)
    split = make_split(interactions, **split_options)
    started = time.perf_counter()
    model = HrnnModel(config, seed=seed).fit(split.train)
    indices, scores = model.recommend(split, _NUM_RESULTS, exclude_seen=exclude_seen)
    values = metrics(indices, split.relevant, len(split.item_ids), scores=scores)
    return values, time.perf_counter() - started


def _suggest(trial: Any, ranges: Mapping[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, space in ranges.items():
        if isinstance(space, list):
            config[name] = trial.suggest_categorical(name, space)
        elif isinstance(space, tuple) and len(space) == 2:
            low, high = space
            if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
                config[name] = trial.suggest_int(name, low, high, log=high / max(low, 1) >= 8)
            else:
                config[name] = trial.suggest_float(name, float(low), float(high), log=float(low) > 0)
        else:
            config[name] = space  # a fixed value
    return config


def _check_ranges(ranges: Mapping[str, Any]) -> None:
    for name, space in ranges.items():
        if isinstance(space, tuple):
            if len(space) != 2 or not all(isinstance(v, (int, float)) for v in space) or space[0] > space[1]:
                raise ValueError(f"ranges[{name!r}]: expected (low, high) with low <= high, found {space!r}")
        elif isinstance(space, list) and not space:
            raise ValueError(f"ranges[{name!r}]: expected a non-empty list of choices")


def _search_space(ranges: Mapping[str, Any], fixed: dict[str, Any]) -> dict[str, Any]:
    """The searched parameters: :data:`DEFAULT_RANGES` updated by ``ranges``, less what ``fixed`` holds.

    A value given in ``fixed`` (e.g. ``hrnn train --epochs 5 --perform-hpo``) is held at that value
    instead of being searched over its default range. Where ``ranges`` names the same parameter
    explicitly, the search wins and a warning names the fixed value it replaces (it is dropped
    from ``fixed``), so no setting is overridden without a word.
    """
    explicit = set(ranges)
    space = {**DEFAULT_RANGES, **ranges}
    held = sorted(name for name in fixed if name in space and name not in explicit)
    if held:
        logger.info("tune: not searching %s (given)", ", ".join(f"{n}={fixed[n]!r}" for n in held))
    for name in held:
        del space[name]
    clashes = sorted(name for name in fixed if name in explicit)
    if clashes:
        logger.warning(
            "tune: %s also given a search range; the search replaces the given value",
            ", ".join(f"{n}={fixed[n]!r}" for n in clashes),
        )
    for name in clashes:
        del fixed[name]
    if not space:
        raise ValueError("tune: nothing left to search: every searched parameter is given a fixed value")
    return space


def _num_gpus() -> int:
    try:
        import torch

        return int(torch.cuda.device_count())
    except ImportError:  # pragma: no cover - torch is needed for training anyway
        return 0


def tune(
    interactions: Interactions,
    *,
    objective: str = "normalized_discounted_cumulative_gain_at_25",
    max_trials: int = 20,
    parallel_trials: int = 1,
    ranges: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    protocol: str = "personalize",
    exclude_seen: bool = False,
    train_final: bool = False,
    seed: int = 0,
    timeout: float | None = None,
    **split_options: Any,
) -> TuningResult:
    """Searches HRNN hyperparameters on a temporal validation split of ``interactions``.

    Args:
        interactions: training data only (the validation split is made inside it).
        objective: the metric to maximise (a name :func:`hrnn.evaluation.metrics` returns).
        max_trials: number of trials (Personalize's ``maxNumberOfTrainingJobs``).
        parallel_trials: trials run at once, each in its own process (one per GPU when several
            are present; Personalize's ``maxParallelTrainingJobs``).
        ranges: search space replacing :data:`DEFAULT_RANGES` entries: ``(low, high)`` for ints or
            floats (log scale when ``low > 0`` for floats, or spanning ≥ 8× for ints), a list of
            choices, or a fixed value. Keys are :func:`hrnn.train` keyword arguments.
        fixed: further :func:`hrnn.train` keyword arguments for every trial. A parameter given here
            is not searched over its default range; one that ``ranges`` also names explicitly is
            searched, with a logged warning that the given value is replaced.
        protocol: validation split protocol (:data:`hrnn.evaluation.PROTOCOLS`).
        exclude_seen: exclude each query's history from recommendations when scoring.
        train_final: also train the final model on all of ``interactions`` with the best config.
        seed: seeds the split, the sampler and training.
        timeout: stop starting new trials after this many seconds.
        **split_options: passed to :func:`hrnn.evaluation.make_split`.

    Returns:
        The :class:`TuningResult` (best configuration, trial table, optional final model).

    Raises:
        ImportError: optuna is not installed (``pip install "hrnn[hpo]"``).
        ValueError: an unknown objective, invalid ranges, ``max_trials``/``parallel_trials`` < 1, or
            nothing left to search.
    """
    if objective not in (*PERSONALIZE_METRICS, *NEXT_ITEM_METRICS):
        names = ", ".join((*PERSONALIZE_METRICS, *NEXT_ITEM_METRICS))
        raise ValueError(f"objective: expected one of {names}, found {objective!r}")
    if max_trials < 1:
        raise ValueError(f"max_trials: expected at least 1, found {max_trials}")
    if parallel_trials < 1:
        raise ValueError(f"parallel_trials: expected at least 1, found {parallel_trials}")
    fixed_config = dict(fixed or {})
    space = _search_space(ranges or {}, fixed_config)
    _check_ranges(space)
    optuna = _require_optuna()

    split_options = {"protocol": protocol, "seed": seed, **split_options}
    validation = make_split(interactions, **split_options)  # fail early on bad options
    logger.info("tune: validation split: %s", validation.description)

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    rows: list[dict[str, Any]] = []

    def record(trial: Any, values: dict[str, float], seconds: float, config: dict[str, Any]) -> None:
        value = values[objective]
        study.tell(trial, value if math.isfinite(value) else float("nan"))
        rows.append({"number": trial.number, "value": value, "seconds": seconds, **config, **values})
        logger.info("tune: trial %d %s = %.4f (%s)", trial.number, objective, value, config)

    started = time.perf_counter()
    if parallel_trials == 1:
        for _ in range(max_trials):
            if timeout is not None and time.perf_counter() - started > timeout:
                break
            trial = study.ask()
            config = _suggest(trial, space)
            values, seconds = _run_trial(
                interactions, split_options, {**fixed_config, **config}, exclude_seen, seed
            )
            record(trial, values, seconds, config)
    else:
        gpus = _num_gpus()
        data = interactions.to_arrays()  # picklable columns for trial processes
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # torch and rayon threads do not survive fork
        with ProcessPoolExecutor(max_workers=parallel_trials, mp_context=context) as pool:
            done = 0
            while done < max_trials:
                if timeout is not None and time.perf_counter() - started > timeout:
                    break
                batch = []
                for slot in range(min(parallel_trials, max_trials - done)):
                    trial = study.ask()
                    config = _suggest(trial, space)
                    run_config = {**fixed_config, **config}
                    if gpus > 1:
                        run_config.setdefault("device", f"cuda:{slot % gpus}")
                    future = pool.submit(_run_trial, data, split_options, run_config, exclude_seen, seed)
                    batch.append((trial, config, future))
                for trial, config, future in batch:
                    values, seconds = future.result()
                    record(trial, values, seconds, config)
                done += len(batch)

    if not rows:
        raise RuntimeError("tune: no trial finished before the timeout")
    best = max(rows, key=lambda r: r["value"] if math.isfinite(r["value"]) else -math.inf)
    best_config = {
        **{k: v for k, v in fixed_config.items() if k != "progress"},
        **{k: best[k] for k in space},
    }
    result = TuningResult(
        objective=objective,
        best_config=best_config,
        best_value=float(best["value"]),
        trials=sorted(rows, key=lambda r: r["number"]),
        validation=validation.description,
    )
    if train_final:
        model = result.train_final(interactions, seed=seed, progress=False)
        result = TuningResult(**{**result.__dict__, "model": model})
    return result
