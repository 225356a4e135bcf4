"""Benchmark fixtures. Benchmarks run inside the normal test suite with timing disabled on tiny
inputs (so they stay working), and for real with ``python benches/ratios.py`` at full size."""

from __future__ import annotations

import os

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
