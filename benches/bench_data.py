"""Data layer, side by side: CSV loading, sessionizing and percentile filtering — hrnn vs polars
(2 threads) vs pandas, on the same seeded synthetic log (10M rows when run by benches/ratios.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import hrnn

TIMEOUT = 1800


@pytest.fixture(scope="module")
def interactions(log_csv: Path) -> hrnn.Interactions:
    return hrnn.Interactions.from_csv(log_csv)


@pytest.fixture(scope="module")
def polars_frame(log_arrays):
    pl = pytest.importorskip("polars")
    return pl.DataFrame(log_arrays)


@pytest.fixture(scope="module")
def pandas_frame(log_arrays):
    pd = pytest.importorskip("pandas")
    return pd.DataFrame(log_arrays)


# ----- CSV loading ------------------------------------------------------------------------------
@pytest.mark.benchmark(group="load_csv")
def test_load_csv_hrnn(benchmark, log_csv):
    data = benchmark.pedantic(hrnn.Interactions.from_csv, args=(log_csv,), rounds=3, iterations=1)
    assert len(data) > 0


@pytest.mark.benchmark(group="load_csv")
def test_load_csv_polars(benchmark, log_csv):
    pl = pytest.importorskip("polars")
    frame = benchmark.pedantic(pl.read_csv, args=(log_csv,), rounds=3, iterations=1)
    assert frame.height > 0


# ----- sessionize -------------------------------------------------------------------------------
@pytest.mark.benchmark(group="sessionize")
def test_sessionize_hrnn(benchmark, interactions):
    sessions = benchmark.pedantic(interactions.sessionize, args=(TIMEOUT,), rounds=5, iterations=1)
    assert len(sessions) == len(interactions)


def polars_sessionize(frame):
    import polars as pl

    gap = pl.col("timestamp").diff().over("user")
    return (
        frame.with_row_index("row")
        .sort(["user", "timestamp"], maintain_order=True)
        .with_columns(time_gap=gap.fill_null(0), session_start=gap.is_null() | (gap > TIMEOUT))
        .with_columns(session_id=pl.col("session_start").cum_sum() - 1)
    )


@pytest.mark.benchmark(group="sessionize")
def test_sessionize_polars(benchmark, polars_frame):
    out = benchmark.pedantic(polars_sessionize, args=(polars_frame,), rounds=5, iterations=1)
    assert out.height == polars_frame.height


def pandas_sessionize(frame):
    out = frame.sort_values(["user", "timestamp"], kind="stable")
    gap = out.groupby("user", sort=False)["timestamp"].diff()
    out["time_gap"] = gap.fillna(0).astype(np.int64)
    out["session_start"] = gap.isna() | (gap > TIMEOUT)
    out["session_id"] = out["session_start"].cumsum() - 1
    return out


@pytest.mark.benchmark(group="sessionize")
def test_sessionize_pandas(benchmark, pandas_frame):
    out = benchmark.pedantic(pandas_sessionize, args=(pandas_frame,), rounds=3, iterations=1)
    assert len(out) == len(pandas_frame)


# ----- percentile filter ------------------------------------------------------------------------
@pytest.mark.benchmark(group="history_filter")
def test_filter_hrnn(benchmark, interactions):
    out = benchmark.pedantic(interactions.filter_by_history_length, args=(0.05, 0.99), rounds=5, iterations=1)
    assert 0 < len(out) <= len(interactions)


def polars_filter(frame, lo=0.05, hi=0.99):
    import polars as pl

    lengths = frame.group_by("user").len()
    q_lo = lengths["len"].quantile(lo, interpolation="linear")
    q_hi = lengths["len"].quantile(hi, interpolation="linear")
    keep = lengths.filter(pl.col("len").is_between(q_lo, q_hi)).select("user")
    return frame.join(keep, on="user", how="semi", maintain_order="left")


@pytest.mark.benchmark(group="history_filter")
def test_filter_polars(benchmark, polars_frame):
    out = benchmark.pedantic(polars_filter, args=(polars_frame,), rounds=5, iterations=1)
    assert 0 < out.height <= polars_frame.height


def test_hrnn_and_polars_agree(interactions, polars_frame):
    """The competitors compute the same thing (on the suite's small log)."""
    if len(interactions) > 1_000_000:
        pytest.skip("checked on the small log")
    ours = interactions.filter_by_history_length(0.05, 0.99)
    theirs = polars_filter(polars_frame)
    assert len(ours) == theirs.height
    sessions = interactions.sessionize(TIMEOUT)
    assert sessions.num_sessions == int(polars_sessionize(polars_frame)["session_start"].sum())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_sessions_memory_stays_under_twice_its_arrays(interactions, capsys):
    """The CSR output is numpy arrays over Rust buffers: no per-row Python objects."""
    before = _rss_bytes()
    sessions = interactions.sessionize(TIMEOUT)
    grown = _rss_bytes() - before
    arrays = sum(
        getattr(sessions, name).nbytes
        for name in ("user_offsets", "row", "item_index", "timestamp", "time_gap", "session_start",
                     "session_id", "event_type", "event_value")
    )  # fmt: skip
    with capsys.disabled():
        print(
            f"\nsessions of {len(sessions):,} rows: "
            f"arrays {arrays / 1e6:.1f} MB, RSS grew {grown / 1e6:.1f} MB"
        )
    if len(sessions) >= 1_000_000:  # RSS is too coarse to judge small inputs
        assert grown < 2 * arrays
