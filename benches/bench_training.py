"""Training, side by side: hrnn's trainer against the trainer of hrnn 0.1, on the shared data.

- ``epoch``: events/s of one training epoch (validation off) on RSC15-100k (train.csv) and
  MovieLens latest-small, for three trainers in one run:
  ``hrnn`` (the defaults: fused CPU kernels, automatic settings), ``torch-0.1`` (torch ops only and
  the 0.1 defaults: ``clamp(E // 4000, 16, 256)`` slots, learning rate 0.01, next-item targets) and
  ``kernels-0.1-settings`` (the fused kernels with the 0.1 settings: what the kernels alone give).
  The events/s of each epoch are in the report's ``extra_info``; ``python benches/ratios.py
  benches/bench_training.py -k epoch`` prints the time ratios (one epoch of each trainer covers the
  same events, except that the 0.1 trainer and the defaults differ in their targets per event).
- ``quality``: time to quality — the default ``hrnn.train`` on the whole training data, then the
  dataset's protocol through the serving engine (``hrnn.evaluate``): RSC15-100k next-item
  (Recall@20, MRR@20 on test.csv), MovieLens holdout-last with seen items excluded (MRR@25, P@5).
  ``extra_info`` holds the training seconds and the metrics. ``HRNN_BENCH_LEGACY=1`` adds the 0.1
  trainer's run (several minutes on MovieLens).

Without the shared data, or inside the test suite (timing disabled), every benchmark runs once on
a small synthetic log instead, so that the code stays working. Torch and hrnn use 2 threads.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hrnn  # noqa: E402

#: The 0.1 trainer: torch ops only, its batch rule, learning rate and next-item objective.
LEGACY = {
    "cpu_kernels": False,
    "learning_rate": 0.01,
    "target_window": 1,
    "loss_exclude_seen": False,
    "user_weight_exponent": 0.0,
}
#: The 0.1 settings with the fused kernels.
KERNELS_LEGACY_SETTINGS = {**LEGACY, "cpu_kernels": True}


def _legacy_batch(events: int) -> int:
    """hrnn 0.1's batch rule."""
    return int(min(max(events // 4000, 16), 256))


def _synthetic() -> hrnn.Interactions:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), 25)
    items = (rng.zipf(1.3, users.size) % 500).astype(str)
    times = 1_700_000_000 + np.cumsum(rng.integers(10, 4000, users.size))
    return hrnn.Interactions.from_arrays(
        [f"u{u}" for u in users], [f"i{i}" for i in items], times.astype(np.int64)
    )


def _load(name: str, data: Path, real: bool) -> tuple[hrnn.Interactions, hrnn.Interactions | None]:
    paths = {
        "rsc15": (data / "rsc15-100k" / "train.csv", data / "rsc15-100k" / "test.csv"),
        "movielens": (data / "ml-latest-small" / "interactions.csv", None),
    }
    train, test = paths[name]
    if not (real and Path(train).exists()):
        return _synthetic(), None
    return hrnn.Interactions.from_csv(train), None if test is None else hrnn.Interactions.from_csv(test)


@pytest.fixture(scope="module", params=["rsc15", "movielens"])
def dataset(
    request: pytest.FixtureRequest, benchmarking: bool, shared_data: Path
) -> tuple[str, hrnn.Interactions, hrnn.Interactions | None, bool]:
    real = benchmarking and shared_data.is_dir()
    torch.set_num_threads(2)
    hrnn.set_num_threads(2)
    train, test = _load(request.param, shared_data, real)
    return request.param, train, test, real


def _epoch(data: hrnn.Interactions, settings: dict[str, Any]) -> dict[str, float]:
    model = hrnn.train(data, epochs=1, validation_fraction=0.0, progress=False, **settings)
    return model.training["history"][0]


@pytest.mark.parametrize("trainer", ["hrnn", "torch-0.1", "kernels-0.1-settings"])
def test_epoch(benchmark: Any, dataset: Any, trainer: str) -> None:
    name, data, _, real = dataset
    benchmark.group = f"epoch {name}"
    settings: dict[str, Any] = {}
    if trainer != "hrnn":
        settings = dict(LEGACY if trainer == "torch-0.1" else KERNELS_LEGACY_SETTINGS)
        events = len(data.filter_by_history_length(0.0, 0.99))
        settings["batch_size"] = _legacy_batch(events)
    entries: list[dict[str, float]] = []

    def once() -> None:
        entries.append(_epoch(data, settings))

    benchmark.pedantic(once, rounds=3 if real else 1, iterations=1)
    # the epoch itself (the benchmark's time also covers data preparation and the export)
    benchmark.extra_info["events_per_second"] = float(np.median([e["events_per_second"] for e in entries]))
    benchmark.extra_info["epoch_seconds"] = float(np.median([e["seconds"] for e in entries]))
    benchmark.extra_info["targets"] = entries[0]["targets"]
    assert entries[0]["targets"] > 0 and np.isfinite(entries[0]["loss"])


def _quality(
    name: str, data: hrnn.Interactions, test: hrnn.Interactions | None, settings: dict[str, Any]
) -> Any:
    if name == "rsc15" and test is not None:
        return hrnn.evaluate(data, test=test, protocol="next-item", config=settings, baselines=())
    return hrnn.evaluate(data, protocol="holdout-last", exclude_seen=True, config=settings, baselines=())


@pytest.mark.parametrize("trainer", ["hrnn", "torch-0.1"])
def test_quality(benchmark: Any, dataset: Any, trainer: str) -> None:
    name, data, test, real = dataset
    if trainer == "torch-0.1" and real and os.environ.get("HRNN_BENCH_LEGACY") != "1":
        pytest.skip("the 0.1 trainer's full run takes minutes: set HRNN_BENCH_LEGACY=1")
    benchmark.group = f"quality {name}"
    settings: dict[str, Any] = {} if trainer == "hrnn" else dict(LEGACY)
    if not real:
        settings["epochs"] = 1
    began = time.perf_counter()
    report = benchmark.pedantic(_quality, args=(name, data, test, settings), rounds=1, iterations=1)
    result = report.results[0]
    benchmark.extra_info["seconds_total"] = time.perf_counter() - began
    benchmark.extra_info["fit_seconds"] = result.fit_seconds
    for metric in ("recall_at_20", "mrr_at_20", "mean_reciprocal_rank_at_25", "precision_at_5"):
        if metric in result.metrics:
            benchmark.extra_info[metric] = result.metrics[metric]
    assert result.name == "hrnn" and result.fit_seconds > 0
