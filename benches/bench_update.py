"""UPDATE against FULL training, side by side (issue #15): the daily retrain of docs/operations.md.

The data is cut by time into periods (days by default). The *base* model is trained FULL on every
period but the newest; then, on the whole training data (base periods + the newest):

- ``FULL``: ``hrnn.train`` from scratch;
- ``UPDATE``: ``hrnn.train(init_from=base, training_mode="update")`` (the base's weights, a
  tenth of FULL's epochs over the whole history).

Both are evaluated through the serving engine on the test data that follows (next-item: each test
sequence's events are sent with ``put_events`` one by one and the next one is predicted; MRR@20 and
Recall@20), and their training compared: wall time (side by side in one run, so as noisy as the
machine) and work (targets trained, summed over epochs: what the time would be on a quiet machine,
the new-item fit's read-outs aside). Seeds 0–2.

    python benches/bench_update.py rsc15      # RSC15-100k: train.csv's 6 days, test.csv after them
    python benches/bench_update.py ml         # MovieLens latest-small: newest 5% test, 5% before update
    python benches/bench_update.py rsc15-day-before   # a day earlier: days 1-4 base, 5 update, 6 test

Inside the test suite (``pytest benches/bench_update.py``) it runs once on a small synthetic log
so that the code keeps working.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import hrnn
from hrnn.evaluation import HrnnModel, evaluate_split, make_split

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _subset(data: hrnn.Interactions, mask: np.ndarray) -> hrnn.Interactions:
    columns = data.to_arrays()
    return hrnn.Interactions.from_arrays(**{name: column[mask] for name, column in columns.items()})


def periods(data: hrnn.Interactions, period: int) -> np.ndarray:
    """The period of each row (0 = the oldest)."""
    t = data.columns()["timestamp"]
    return (t - t.min()) // period


def compare(
    train: hrnn.Interactions,
    test: hrnn.Interactions,
    newest: np.ndarray,
    seeds: list[int],
    settings: dict[str, Any],
) -> list[dict[str, float]]:
    """FULL vs UPDATE per seed; ``newest`` marks the training rows of the newest period."""
    base_data = _subset(train, ~newest)
    split = make_split(train, "next-item", test=test)
    rows = []
    for seed in seeds:
        base = hrnn.train(base_data, seed=seed, progress=False, **settings)
        began = time.perf_counter()
        full = hrnn.train(train, seed=seed, progress=False, **settings)
        full_seconds = time.perf_counter() - began
        began = time.perf_counter()
        update = hrnn.train(
            train, seed=seed, progress=False, init_from=base, training_mode="update", **settings
        )
        update_seconds = time.perf_counter() - began
        report = evaluate_split(
            split, models=[HrnnModel(model=full), HrnnModel(model=update)], baselines=(), progress=False
        )
        full_result, update_result = report.results
        row = {
            "seed": seed,
            "full_seconds": full_seconds,
            "update_seconds": update_seconds,
            "full_mrr20": full_result.metrics["mrr_at_20"],
            "update_mrr20": update_result.metrics["mrr_at_20"],
            "full_recall20": full_result.metrics["recall_at_20"],
            "update_recall20": update_result.metrics["recall_at_20"],
            "update_epochs": update.training["update"]["epochs"],
            "full_epochs": full.training["epochs_trained"],
            # training work, independent of the machine's load: targets trained over all epochs
            "full_targets": sum(e["targets"] for e in full.training["history"]),
            "update_targets": sum(e["targets"] for e in update.training["history"]),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict[str, float]]) -> str:
    lines = [
        "| seed | FULL s | UPDATE s | time UPDATE/FULL | epochs FULL/UPDATE | work UPDATE/FULL | "
        "FULL MRR@20 | UPDATE MRR@20 | ratio | FULL R@20 | UPDATE R@20 | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {r['full_seconds']:.1f} | {r['update_seconds']:.1f} | "
            f"{r['update_seconds'] / r['full_seconds']:.0%} | {r['full_epochs']}/{r['update_epochs']} | "
            f"{r['update_targets'] / r['full_targets']:.0%} | {r['full_mrr20']:.4f} | "
            f"{r['update_mrr20']:.4f} | {r['update_mrr20'] / r['full_mrr20']:.1%} | "
            f"{r['full_recall20']:.4f} | {r['update_recall20']:.4f} | "
            f"{r['update_recall20'] / r['full_recall20']:.1%} |"
        )
    mean = statistics.mean
    lines.append(
        f"| mean | | | {mean(r['update_seconds'] / r['full_seconds'] for r in rows):.0%} | | "
        f"{mean(r['update_targets'] / r['full_targets'] for r in rows):.0%} | | | "
        f"{mean(r['update_mrr20'] / r['full_mrr20'] for r in rows):.1%} | | | "
        f"{mean(r['update_recall20'] / r['full_recall20'] for r in rows):.1%} |"
    )
    return "\n".join(lines)


def rsc15(seeds: list[int]) -> list[dict[str, float]]:
    train = hrnn.Interactions.from_csv(DATA / "rsc15-100k" / "train.csv")
    test = hrnn.Interactions.from_csv(DATA / "rsc15-100k" / "test.csv")
    day = periods(train, 86_400)
    return compare(train, test, day == day.max(), seeds, {})


def rsc15_day_before(seeds: list[int]) -> list[dict[str, float]]:
    """The same daily loop one day earlier, a check on settings chosen with :func:`rsc15`: the base
    trains on train.csv's days 1–4, the update adds day 5, and day 6 is the test."""
    data = hrnn.Interactions.from_csv(DATA / "rsc15-100k" / "train.csv")
    day = periods(data, 86_400)
    train = _subset(data, day < day.max())
    return compare(train, _subset(data, day == day.max()), day[day < day.max()] == day.max() - 1, seeds, {})


def movielens(seeds: list[int], share: float = 0.05) -> list[dict[str, float]]:
    """MovieLens latest-small in three periods of time: the base's (all but the newest ``2 × share``
    of the ratings), the update's (the next ``share``) and the test's (the newest ``share``).

    MovieLens has about 12 ratings a day over 22 years, and a day's ratings come from one or two
    users, so a period is a share of the ratings rather than a day: with 5% each, the update adds
    5,000 ratings (Jun 2017 to Feb 2018) and the test has 5,000 (Feb to Sep 2018).
    """
    data = hrnn.Interactions.from_csv(DATA / "ml-latest-small" / "interactions.csv")
    t = data.columns()["timestamp"]
    ordered = np.sort(t)
    cut_test = ordered[int((1 - share) * len(t))]
    cut_new = ordered[int((1 - 2 * share) * len(t))]
    train = _subset(data, t < cut_test)
    newest = train.columns()["timestamp"] >= cut_new
    return compare(train, _subset(data, t >= cut_test), newest, seeds, {})


def test_update_against_full_runs() -> None:
    """The comparison on a small synthetic log (the suite keeps this script working)."""
    from hrnn._demo_data import demo_interactions

    data = demo_interactions(seed=3)
    columns = data.to_arrays()
    t = columns["timestamp"]
    cut_test, cut_new = np.quantile(t, 0.9), np.quantile(t, 0.8)
    train = _subset(data, t <= cut_test)
    test = _subset(data, t > cut_test)
    newest = train.columns()["timestamp"] > cut_new
    rows = compare(train, test, newest, [0], {"epochs": 2})
    assert rows[0]["update_mrr20"] > 0 and rows[0]["full_mrr20"] > 0
    assert "| mean |" in summary(rows)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["rsc15", "rsc15-day-before", "ml"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    run = {"rsc15": rsc15, "rsc15-day-before": rsc15_day_before, "ml": movielens}[args.dataset]
    rows = run(args.seeds)
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
