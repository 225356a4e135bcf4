"""bf16 item table on trained models: what it costs in quality and gains in speed and memory.

Usage::

    python benches/bf16_quality.py            # every dataset present + the synthetic 110k-item log
    python benches/bf16_quality.py --quick    # 2-epoch models, a 30k-item synthetic log, fewer rounds
    python benches/bf16_quality.py --only rsc15-100k --only synthetic

For each dataset, hrnn is trained with its default settings (``hrnn.train(train, seed=0)``) on
the training part of the project's temporal split, and the split's held-out queries are answered
twice by the serving engine — ``Recommender.load(precision="fp32")`` and ``"bf16"`` — through
:class:`hrnn.evaluation.HrnnModel` (context events by ``put_events``, then ``recommend``, as
``hrnn.evaluate`` does). Per model it reports:

- top-25 overlap, ``|fp32 top-25 ∩ bf16 top-25| / 25`` per query: mean, minimum, and the share of
  queries whose two lists are identical (same items, same order);
- Recall@20, MRR@20 and the Personalize metrics (``hrnn.evaluation.metrics``, conservative ties)
  for both precisions on the same queries;
- single-query latency: median ``recommend(user, 25)`` of training users on one thread, both
  precisions interleaved, and the ratio fp32 / bf16;
- memory: the engine's item table (``ceil(N / 16) · 16 · H`` weights, 4 or 2 bytes each) and the
  resident growth of a fresh process while it loads the model in each precision, as loaded and
  after ``malloc_trim(0)``.

Splits (``hrnn.evaluation.make_split``, seed 0):

- ml-latest-small: ``holdout-last`` (each user's newest 10% of ratings), items rated in training
  excluded, one query per user.
- rsc15-100k, retailrocket-small: ``next-item`` on the explicit train/test files (each test event
  predicted from the events before it in its session).
- synthetic: ``hrnn._demo_data.generate_demo_log`` at 12,000 users and 110,000 items in 110 topics
  (sessions walk a topic's item sequence), ``holdout-last``; defaults (sampled softmax: the
  catalogue is over 50,000 items) but at most 5 epochs, for time.

Trained models are cached (default ``$TMPDIR/hrnn-bf16-quality``, keyed by dataset, settings,
data files and the hrnn version), so a re-run only evaluates. Datasets whose files are absent are
skipped (``$HRNN_DATA``, default /work/shared/data). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

import hrnn
from hrnn.evaluation import HrnnModel, Split, make_split, metrics

DATA = Path(os.environ.get("HRNN_DATA", "/work/shared/data"))
CACHE = Path(tempfile.gettempdir()) / "hrnn-bf16-quality"
K = 25
PRECISIONS: tuple[Literal["fp32"], Literal["bf16"]] = ("fp32", "bf16")
#: Recommendations per query: one more than the largest cut-off, for exact conservative ties.
NUM_RESULTS = 26
PANEL = 16  # items per panel of the engine's item table (rust/hrnn-core/src/engine/model.rs)

logger = logging.getLogger("bf16_quality")


@dataclass(frozen=True)
class Dataset:
    """One row of the report: where the data comes from and how it is split."""

    name: str
    files: tuple[Path, ...]  # empty for generated data
    load: Callable[[bool], tuple[hrnn.Interactions, hrnn.Interactions | None]]
    protocol: str
    exclude_seen: bool
    #: ``hrnn.train`` settings beyond the defaults (``--quick`` caps every model at 2 epochs)
    settings: tuple[tuple[str, Any], ...] = ()


def _csv(*parts: str) -> Path:
    return DATA.joinpath(*parts)


def _movielens(quick: bool) -> tuple[hrnn.Interactions, None]:
    return hrnn.Interactions.from_csv(_csv("ml-latest-small", "interactions.csv")), None


def _train_test(folder: str) -> Callable[[bool], tuple[hrnn.Interactions, hrnn.Interactions]]:
    def load(quick: bool) -> tuple[hrnn.Interactions, hrnn.Interactions]:
        return (
            hrnn.Interactions.from_csv(_csv(folder, "train.csv")),
            hrnn.Interactions.from_csv(_csv(folder, "test.csv")),
        )

    return load


def _synthetic(quick: bool) -> tuple[hrnn.Interactions, None]:
    from hrnn._demo_data import generate_demo_log

    users, items = (4_000, 30_000) if quick else (12_000, 110_000)
    log = generate_demo_log(num_users=users, num_items=items, num_topics=items // 1000, seed=7)
    data = hrnn.Interactions.from_arrays(log["user_id"], log["item_id"], log["timestamp"], log["event_type"])
    return data, None


DATASETS = (
    Dataset(
        "ml-latest-small", (_csv("ml-latest-small", "interactions.csv"),), _movielens, "holdout-last", True
    ),
    Dataset(
        "rsc15-100k",
        (_csv("rsc15-100k", "train.csv"), _csv("rsc15-100k", "test.csv")),
        _train_test("rsc15-100k"),
        "next-item",
        False,
    ),
    Dataset(
        "retailrocket-small",
        (_csv("retailrocket-small", "train.csv"), _csv("retailrocket-small", "test.csv")),
        _train_test("retailrocket-small"),
        "next-item",
        False,
    ),
    # up to 30 epochs of early stopping at ~2 minutes each would not fit the shared machine
    Dataset("synthetic", (), _synthetic, "holdout-last", False, (("epochs", 5),)),
)


# ----- training, cached ---------------------------------------------------------------------------
def _cache_key(dataset: Dataset, settings: dict[str, Any], quick: bool) -> str:
    stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in dataset.files]
    text = json.dumps([dataset.name, settings, quick, stamp, hrnn.__version__], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trained_model(
    dataset: Dataset, split: Split, settings: dict[str, Any], cache: Path, quick: bool, retrain: bool
) -> tuple[Path, float | None]:
    """The model directory trained on ``split.train`` (from the cache when there), and the
    training time in seconds (``None`` when it came from the cache)."""
    directory = cache / f"{dataset.name}-{_cache_key(dataset, settings, quick)}"
    if (directory / "model.json").exists() and not retrain:
        logger.info("%s: cached model %s", dataset.name, directory)
        return directory, None
    started = time.perf_counter()
    model = hrnn.train(split.train, seed=0, progress=False, **settings)
    seconds = time.perf_counter() - started
    model.save(directory)
    logger.info("%s: trained in %.0f s -> %s", dataset.name, seconds, directory)
    return directory, seconds


# ----- quality ------------------------------------------------------------------------------------
def top_lists(model_dir: Path, split: Split, exclude_seen: bool) -> dict[str, Any]:
    """Each precision's ranked lists for every query of the split (indices, scores, seconds)."""
    model = hrnn.TrainedModel.load(model_dir)
    lists: dict[str, Any] = {}
    for precision in PRECISIONS:
        started = time.perf_counter()
        runner = HrnnModel(model=model, engine="engine", precision=precision)
        indices, scores = runner.recommend(split, NUM_RESULTS, exclude_seen=exclude_seen)
        lists[precision] = (indices, scores, time.perf_counter() - started)
    return lists


def overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row, the share of ``a``'s listed items (``≥ 0``) that ``b``'s row lists too."""
    shares = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        listed = x[x >= 0]
        shares[i] = np.isin(listed, y[y >= 0]).mean() if listed.size else 1.0
    return shares


# ----- speed and memory ---------------------------------------------------------------------------
def latency(model_dir: Path, users: list[str], rounds: int) -> dict[str, float]:
    """Median seconds of one ``recommend(user, 25)`` on one thread, per precision."""
    recs = {p: hrnn.Recommender.load(model_dir, precision=p) for p in PRECISIONS}
    before = hrnn.get_num_threads()
    hrnn.set_num_threads(1)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    try:
        for r in range(rounds + 1):  # round 0 warms caches and is dropped
            for precision in PRECISIONS if r % 2 else PRECISIONS[::-1]:
                rec = recs[precision]
                for user in users:
                    started = time.perf_counter()
                    rec.recommend(user, K)
                    if r:
                        times[precision].append(time.perf_counter() - started)
    finally:
        hrnn.set_num_threads(before)
    return {p: statistics.median(t) for p, t in times.items()}


# Loading builds the f32 table first; glibc's malloc may keep the freed block for reuse instead of
# returning it, so the probe reports the growth both as it stands and after malloc_trim(0).
_RSS_PROBE = """
import ctypes, gc, os, sys
import hrnn
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
gc.collect()
before = rss()
rec = hrnn.Recommender.load(sys.argv[1], precision=sys.argv[2])
gc.collect()
loaded = rss()
try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
except (OSError, AttributeError):  # not glibc
    pass
print(loaded - before, rss() - before)
"""


def resident_growth(model_dir: Path, precision: str) -> tuple[int, int]:
    """Bytes a fresh process's resident set grows by while it loads the model: as loaded, and
    after ``malloc_trim(0)`` hands the allocator's free memory back (glibc only)."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(model_dir), precision],
        check=True,
        capture_output=True,
        text=True,
    )
    loaded, trimmed = out.stdout.split()
    return int(loaded), int(trimmed)


def table_bytes(num_items: int, hidden: int, precision: str) -> int:
    """The engine's item-table weights (panels of 16 items, padded)."""
    return -(-num_items // PANEL) * PANEL * hidden * (4 if precision == "fp32" else 2)


# ----- one dataset --------------------------------------------------------------------------------
def measure(dataset: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """Trains (or loads) the dataset's model and measures both precisions on its split."""
    data, test = dataset.load(args.quick)
    split = make_split(data, dataset.protocol, seed=0, test=test)
    settings: dict[str, Any] = {"epochs": 2} if args.quick else dict(dataset.settings)
    model_dir, train_seconds = trained_model(dataset, split, settings, args.cache, args.quick, args.retrain)
    lists = top_lists(model_dir, split, dataset.exclude_seen)
    values = {
        p: metrics(idx, split.relevant, len(split.item_ids), scores=sc) for p, (idx, sc, _) in lists.items()
    }
    shares = overlap(lists["fp32"][0][:, :K], lists["bf16"][0][:, :K])
    identical = np.mean(np.all(lists["fp32"][0][:, :K] == lists["bf16"][0][:, :K], axis=1))

    rec = hrnn.Recommender.load(model_dir)
    # training users: each has a stored state, so every query is a personalized scan
    pool = hrnn.TrainedModel.load(model_dir).user_ids
    rng = np.random.default_rng(0)
    users = [str(u) for u in rng.choice(pool, size=min(args.users, len(pool)), replace=False)]
    seconds = latency(model_dir, users, args.rounds)
    result = {
        "dataset": dataset.name,
        "protocol": dataset.protocol + (", exclude seen" if dataset.exclude_seen else ""),
        "items": rec.num_items,
        "hidden": rec.hidden_dimension,
        "queries": split.num_queries,
        "train_seconds": train_seconds,
        "eval_seconds": {p: lists[p][2] for p in PRECISIONS},
        "overlap_mean": float(shares.mean()),
        "overlap_min": float(shares.min()),
        "overlap_p01": float(np.quantile(shares, 0.01)),
        "identical_lists": float(identical),
        "metrics": values,
        "latency_s": seconds,
        "table_bytes": {p: table_bytes(rec.num_items, rec.hidden_dimension, p) for p in PRECISIONS},
        "rss_growth_bytes": {p: resident_growth(model_dir, p) for p in PRECISIONS},
        "model_dir": str(model_dir),
    }
    logger.info("%s: %s", dataset.name, json.dumps(result, default=float))
    return result


# ----- report -------------------------------------------------------------------------------------
def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}" if n >= 1e6 else f"{n / 1e6:.2f}"


def markdown(results: list[dict[str, Any]]) -> str:
    """The measurements as two markdown tables: quality, then speed and memory."""
    quality = [
        "| model (split) | items | queries | top-25 overlap mean / min | identical lists "
        "| Recall@20 fp32 → bf16 | MRR@20 fp32 → bf16 | MRR@25 fp32 → bf16 | P@5 fp32 → bf16 |",
        "| --- | ---: | ---: | --- | ---: | --- | --- | --- | --- |",
    ]
    speed = [
        "| model | items × H | 1-query latency fp32 / bf16 (1 thread) | fp32 / bf16 "
        "| item table fp32 → bf16 | process growth on load fp32 → bf16 (after malloc_trim) |",
        "| --- | --- | --- | ---: | --- | --- |",
    ]
    for r in results:
        m32, m16 = r["metrics"]["fp32"], r["metrics"]["bf16"]

        def pair(name: str, a: dict[str, float] = m32, b: dict[str, float] = m16) -> str:
            return f"{a[name]:.4f} → {b[name]:.4f} ({b[name] - a[name]:+.4f})"

        quality.append(
            f"| {r['dataset']} ({r['protocol']}) | {r['items']:,} | {r['queries']:,} "
            f"| {r['overlap_mean']:.2%} / {r['overlap_min']:.0%} | {r['identical_lists']:.1%} "
            f"| {pair('recall_at_20')} | {pair('mrr_at_20')} | {pair('mean_reciprocal_rank_at_25')} "
            f"| {pair('precision_at_5')} |"
        )
        lat, table, rss = r["latency_s"], r["table_bytes"], r["rss_growth_bytes"]
        speed.append(
            f"| {r['dataset']} | {r['items']:,} × {r['hidden']} "
            f"| {lat['fp32'] * 1e6:.1f} µs / {lat['bf16'] * 1e6:.1f} µs | {lat['fp32'] / lat['bf16']:.2f}× "
            f"| {_mb(table['fp32'])} → {_mb(table['bf16'])} MB "
            f"| {_mb(rss['fp32'][0])} → {_mb(rss['bf16'][0])} MB "
            f"({_mb(rss['fp32'][1])} → {_mb(rss['bf16'][1])} MB) |"
        )
    return "\n".join([*quality, "", *speed])


def main(argv: list[str] | None = None) -> int:
    """Entry point: measures every dataset present and prints the markdown tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = [d.name for d in DATASETS]
    parser.add_argument("--quick", action="store_true", help="2-epoch models, a smaller synthetic log")
    parser.add_argument("--only", action="append", choices=names, help="this dataset only (repeatable)")
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"trained models (default {CACHE})")
    parser.add_argument("--retrain", action="store_true", help="train even when a cached model exists")
    parser.add_argument("--users", type=int, default=200, help="users timed per round (default 200)")
    parser.add_argument("--rounds", type=int, default=None, help="latency rounds (default 20; 5 quick)")
    parser.add_argument("--json", type=Path, help="also write the raw measurements here")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 5 if args.quick else 20
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = []
    for dataset in DATASETS:
        if args.only and dataset.name not in args.only:
            continue
        missing = [f for f in dataset.files if not f.exists()]
        if missing:
            print(f"skipped {dataset.name}: {missing[0]} not found (set HRNN_DATA)")
            continue
        results.append(measure(dataset, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n", encoding="utf-8")
    if results:
        isa = hrnn.Recommender.load(results[0]["model_dir"]).isa
        print(f"\nhrnn {hrnn.__version__}, engine isa {isa}, {os.cpu_count()} cores")
        print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
