"""Quality report of hrnn.train with its DEFAULT settings on the shared data (not a test).

Usage::

    python benches/quality_hrnn.py rsc15        # RSC15-100k next-item protocol
    python benches/quality_hrnn.py movielens    # MovieLens latest-small, newest 10% per user held out
    python benches/quality_hrnn.py all
    python benches/quality_hrnn.py rsc15 --set epochs=5 --set learning_rate=0.02   # try a setting
    # the rating settings of docs/training.md, on one line:
    python benches/quality_hrnn.py movielens --set hidden_dimension=256 --set ensemble_size=4
        --set target_window=16 --set loss_exclude_seen=True --set user_weight_exponent=0.5
        --set validation_fraction=0 --set epochs=14

Protocols (as /work/shared/data/README.md states them):

- RSC15: train on train.csv; for each test session predict each event from the events before it in
  its session; full-catalogue ranking with conservative ties (a tie ranks ahead of the target);
  Recall@20 and MRR@20 over all predictions. Reported both at ``Δq = 0`` (``at=None``: the
  recommendation is made right after the last event — the primary figure, no peeking at the next
  event's time) and at the target's own time gap (as the model trains).
- MovieLens: per user the newest 10% of interactions (time rank ``r / n > 0.9``, ties in file order)
  are held out; the model trains on the rest; each user gets 25 recommendations at ``Δq = 0``,
  excluding the items the user rated in training; MRR@25, P@5 and NDCG@25 as Personalize defines them.

Runs on one torch thread (the machine's 2 cores are shared; tiny ops run faster on one thread).
Skips cleanly when the shared data folder is absent.
"""

from __future__ import annotations

import argparse
import ast
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _train(data: Any, overrides: dict[str, Any]) -> tuple[Any, float, float]:
    import hrnn

    wall, cpu = time.perf_counter(), _cpu_seconds()
    model = hrnn.train(data, progress=False, **overrides)
    return model, time.perf_counter() - wall, _cpu_seconds() - cpu


def rsc15(overrides: dict[str, Any]) -> dict[str, float]:
    """RSC15-100k next-item protocol; returns the metrics and training time."""
    import hrnn
    from hrnn.training._batching import EventFeatures
    from hrnn.training._validation import evaluate

    train = hrnn.Interactions.from_csv(DATA / "rsc15-100k" / "train.csv")
    test = hrnn.Interactions.from_csv(DATA / "rsc15-100k" / "test.csv")
    model, wall, cpu = _train(train, overrides)

    sessions = test.sessionize(model.session_timeout)
    index = {item: i for i, item in enumerate(model.item_ids)}
    mapped = np.asarray([index.get(item, -1) for item in sessions.item_ids], dtype=np.int64)
    item = mapped[sessions.item_index]
    features = EventFeatures.from_sessions(sessions)
    unknown_targets = int(np.count_nonzero((item < 0) & ~sessions.session_start))
    weight = np.where(item >= 0, 1.0, 0.0).astype(np.float32)  # unknown targets: counted as misses below
    features = EventFeatures(
        np.maximum(item, 0), features.event_type * 0, features.time, features.user_end, weight
    )
    starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
    import torch

    result: dict[str, float] = {"train_wall_s": wall, "train_cpu_s": cpu}
    for name, at_target in (("dq0", False), ("dq_target", True)):
        m = evaluate(
            model.module, features, starts, ends - 1, torch.device("cpu"), 20, query_at_target=at_target
        )
        total = m["targets"] + unknown_targets
        result[f"recall_at_20_{name}"] = m["recall"] * m["targets"] / total
        result[f"mrr_at_20_{name}"] = m["mrr"] * m["targets"] / total
    result["predictions"] = float(m["targets"] + unknown_targets)
    result["epochs_trained"] = float(model.training["epochs_trained"])
    result["best_epoch"] = float(model.training["best_epoch"])
    return result


def movielens(overrides: dict[str, Any]) -> dict[str, float]:
    """MovieLens latest-small, newest 10% per user held out, 25 recommendations excluding seen items."""
    import hrnn

    data = hrnn.Interactions.from_csv(DATA / "ml-latest-small" / "interactions.csv")
    sessions = data.sessionize()
    starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
    lengths = ends - starts
    user = sessions.user_index
    rank = np.arange(len(sessions)) - starts[user] + 1
    held = (rank / lengths[user] > 0.9) & (lengths[user] >= 2)
    train_rows = np.zeros(len(data), dtype=bool)
    train_rows[sessions.row[~held]] = True
    train = data.subset(train_rows, "holdout-last")
    model, wall, cpu = _train(train, overrides)

    item_ids = np.asarray(data.item_ids)
    index = {item: i for i, item in enumerate(model.item_ids)}
    to_model = np.asarray([index.get(item, -1) for item in data.item_ids], dtype=np.int64)
    known = {u: i for i, u in enumerate(model.user_ids)}
    states = np.zeros((sessions.num_users, model.hidden_dimension), dtype=np.float32)
    unknown_users, histories = [], []
    for u, uid in enumerate(data.user_ids):
        if uid in known:
            states[u] = model.user_states[known[uid]]
        else:
            positions = np.arange(starts[u], ends[u])[~held[starts[u] : ends[u]]]
            unknown_users.append(u)
            # Items only these (filtered-out) users rated are not in the catalogue: skip them.
            histories.append(
                [
                    (item_ids[sessions.item_index[p]], int(sessions.timestamp[p]))
                    for p in positions
                    if item_ids[sessions.item_index[p]] in index
                ]
            )
    if unknown_users:
        states[unknown_users] = model.score(histories).states
    import torch

    module = model.module
    with torch.no_grad():
        o = module.read_out(torch.from_numpy(states), torch.zeros(len(states), 2))
        scores = module.logits(o).numpy()
    mrr, p5, ndcg, users = 0.0, 0.0, 0.0, 0
    gains = 1.0 / np.log2(np.arange(2, 27))
    for u in range(sessions.num_users):
        events = np.arange(starts[u], ends[u])
        targets = to_model[sessions.item_index[events[held[events]]]]
        if targets.size == 0:
            continue
        seen = to_model[sessions.item_index[events[~held[events]]]]
        row = scores[u].copy()
        row[seen[seen >= 0]] = -np.inf
        top = np.argsort(-row, kind="stable")[:25]
        relevant = np.isin(top, targets[targets >= 0])
        hits = np.flatnonzero(relevant)
        mrr += 1.0 / (hits[0] + 1) if hits.size else 0.0
        p5 += relevant[:5].sum() / 5.0
        ideal = gains[: min(np.unique(sessions.item_index[events[held[events]]]).size, 25)].sum()
        ndcg += float(gains[hits].sum()) / ideal
        users += 1
    return {
        "train_wall_s": wall,
        "train_cpu_s": cpu,
        "mrr_at_25": mrr / users,
        "precision_at_5": p5 / users,
        "ndcg_at_25": ndcg / users,
        "users": float(users),
        "epochs_trained": float(model.training["epochs_trained"]),
        "best_epoch": float(model.training["best_epoch"]),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints one line per metric."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["rsc15", "movielens", "all"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a train() argument")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found")
        return 0
    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    runs = {"rsc15": rsc15, "movielens": movielens}
    for name in ["rsc15", "movielens"] if args.dataset == "all" else [args.dataset]:
        metrics = runs[name](overrides)
        print(f"== {name} {overrides or '(defaults)'}")
        for key, value in metrics.items():
            print(f"{name}.{key} = {value:.4f}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
