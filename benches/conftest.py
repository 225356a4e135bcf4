"""Benchmark fixtures. Benchmarks run inside the normal test suite with timing disabled on tiny
inputs (so they stay working), and for real with ``python benches/ratios.py`` at full size."""

from __future__ import annotations

import json
import os
from typing import Any

# Competitors get the same two threads the machine has; set before polars is imported.
os.environ.setdefault("POLARS_MAX_THREADS", "2")

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def benchmarks_enabled(config: pytest.Config) -> bool:
    """True when timing is on (``--benchmark-enable``/``--benchmark-only`` override the suite's disable)."""
    enable = config.getoption("benchmark_enable", default=False)
    if enable or config.getoption("benchmark_only", default=False):
        return True
    return not config.getoption("benchmark_disable", default=True)


@pytest.fixture(scope="session")
def benchmarking(request: pytest.FixtureRequest) -> bool:
    """Whether the benchmarks are timed (full-size inputs) rather than run once inside the tests."""
    return benchmarks_enabled(request.config)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared interaction logs (../shared/data; may be absent)."""
    return SHARED_DATA


@pytest.fixture(scope="session")
def log_rows(request: pytest.FixtureRequest) -> int:
    """Rows of the synthetic log: 10M when benchmarking for real, 20k in the test suite."""
    if benchmarks_enabled(request.config):
        return int(os.environ.get("HRNN_BENCH_ROWS", 10_000_000))
    return 20_000


def synthetic_log(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded log: 100k users (scaled down with rows), 50k Zipf(1.1) items, 90 days, random order."""
    rng = np.random.default_rng(seed)
    num_users = max(10, min(100_000, rows // 100))
    num_items = max(10, min(50_000, rows // 200))
    ranks = np.arange(1, num_items + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-1.1)
    cdf /= cdf[-1]
    items = np.searchsorted(cdf, rng.random(rows)).astype(np.int64)
    users = rng.integers(0, num_users, rows, dtype=np.int64)
    start = 1_700_000_000
    timestamps = start + rng.integers(0, 90 * 86_400, rows, dtype=np.int64)
    return {"user": users, "item": items, "timestamp": timestamps}


@pytest.fixture(scope="session")
def log_arrays(log_rows: int) -> dict[str, np.ndarray]:
    return synthetic_log(log_rows)


@pytest.fixture(scope="session")
def log_csv(log_arrays: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic log as a Personalize CSV (written once per session)."""
    path = tmp_path_factory.mktemp("bench") / "interactions.csv"
    rows = len(log_arrays["user"])
    with path.open("w") as out:
        out.write("USER_ID,ITEM_ID,TIMESTAMP\n")
        chunk = 1_000_000
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            lines = np.char.add(
                np.char.add(np.char.add("u", log_arrays["user"][part].astype(str)), ",i"),
                np.char.add(
                    np.char.add(log_arrays["item"][part].astype(str), ","),
                    log_arrays["timestamp"][part].astype(str),
                ),
            )
            out.write("\n".join(lines.tolist()))
            out.write("\n")
    return path


# ----- models for the scoring-spread benchmark ------------------------------------------------------
def session_log(rows: int, num_items: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded session log over ``num_items`` Zipf(1.05) items with sequential structure: each
    user walks through sessions of ~8 events where the next item is near the previous one
    (so a trained model learns peaked, non-random scores)."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, num_items + 1, dtype=np.float64)
    cdf = np.cumsum(ranks**-1.05)
    cdf /= cdf[-1]
    starts = np.searchsorted(cdf, rng.random(rows))
    step = rng.integers(-20, 21, rows)
    new_session = rng.random(rows) < 1 / 8
    items = np.where(new_session, starts, 0)
    for i in range(1, rows):  # a walk: cheap at the sizes used (≤ 1M rows)
        if not new_session[i]:
            items[i] = (items[i - 1] + step[i]) % num_items
    users = np.cumsum(rng.random(rows) < 1 / 40)
    timestamps = 1_700_000_000 + np.arange(rows, dtype=np.int64) * 7
    return {"user": users, "item": items.astype(np.int64), "timestamp": timestamps}


@pytest.fixture(scope="session")
def spread_models(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Model directories for the scoring-spread benchmark, trained or written once per session.

    Benchmarking: a 1-epoch training on each shared dataset present (ml-latest-small,
    rsc15-100k), a 1-epoch training on a synthetic 100k-item session log (H = 43), and random
    100k-item models at output scales 0.3, 0.05 and 0.01. In the test suite: tiny versions.
    """
    import hrnn
    from hrnn._testing import random_model
    from hrnn.model_format import write_model_dir

    benchmarking = benchmarks_enabled(request.config)
    # HRNN_SPREAD_CACHE: a folder that keeps the trained models between runs (training is most
    # of the benchmark's time); the models are the same for the same seed and data.
    cache = os.environ.get("HRNN_SPREAD_CACHE")
    root = Path(cache) / ("full" if benchmarking else "tiny") if cache else tmp_path_factory.mktemp("spread")
    models: dict[str, Path] = {}
    datasets = {
        "ml-latest-small": SHARED_DATA / "ml-latest-small" / "interactions.csv",
        "rsc15-100k": SHARED_DATA / "rsc15-100k" / "train.csv",
    }
    settings: dict[str, Any] = {"epochs": 1, "progress": False, "hidden_dimension": 43}
    if benchmarking:
        for name, csv in datasets.items():
            if (root / name / "model.json").exists():
                models[f"trained {name}"] = root / name
            elif csv.exists():
                trained = hrnn.train(hrnn.Interactions.from_csv(csv), **settings)
                models[f"trained {name}"] = trained.save(root / name)
    n = 100_000 if benchmarking else 1_000
    synthetic = root / "synthetic"
    if not (synthetic / "model.json").exists():
        log = session_log(1_000_000 if benchmarking else 5_000, n)
        data = hrnn.Interactions.from_arrays(log["user"], log["item"], log["timestamp"])
        hrnn.train(data, **settings).save(synthetic)
    items = len(json.loads((synthetic / "model.json").read_text())["item_ids"])
    models[f"trained synthetic {items // 1000}k"] = synthetic
    for scale in (0.3, 0.05, 0.01):
        model = random_model(n, 43, num_users=4, event_types=["click"], output_scale=scale)
        path = root / f"random-{scale}"
        if not (path / "model.json").exists():
            write_model_dir(path, model.tensors, model.meta)
        models[f"random {n // 1000}k, output_scale {scale}"] = path
    return models
