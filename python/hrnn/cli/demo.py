"""``hrnn demo``: the embedded default job, end to end on a bundled synthetic log.

Trains on CPU (or GPU) in well under a minute, evaluates against popularity on a temporal
hold-out, then shows one user's recommendations changing after a few real-time events.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hrnn._demo_data import demo_interactions

__all__ = ["run_demo"]


def _show(title: str, items: list[tuple[str, float]], highlight: set[str] | None = None) -> None:
    print(title)
    for rank, (item, score) in enumerate(items, 1):
        mark = "  *" if highlight and item in highlight else ""
        print(f"  {rank:>2}. {item:<10} {score:.4f}{mark}")


def run_demo(seed: int = 7, epochs: int | None = None, out: str | None = None, progress: bool = True) -> int:
    """Runs the demo; returns 0. See the module docstring."""
    import hrnn
    from hrnn.recommender import Recommender

    data = demo_interactions(seed)
    sessions = data.sessionize()
    print(
        f"synthetic log: {len(data):,} interactions, {data.num_users} users, {data.num_items} items, "
        f"{sessions.num_sessions:,} sessions (seed {seed})\n"
    )
    config: dict[str, Any] = {"epochs": epochs} if epochs else {}

    print("1) evaluation: per user, the newest 10% of interactions held out; 25 recommendations each")
    started = time.perf_counter()
    report = hrnn.evaluate(
        data, protocol="holdout-last", config=config, baselines=("popularity",), seed=seed, progress=progress
    )
    print(report)
    print(f"   ({time.perf_counter() - started:.1f} s)\n")

    print("2) training on all interactions")
    started = time.perf_counter()
    model = hrnn.train(data, seed=seed, progress=progress, **config)
    print(f"   trained in {time.perf_counter() - started:.1f} s\n")
    workdir = Path(tempfile.mkdtemp(prefix="hrnn-demo-"))
    try:
        model_dir = model.save(workdir / "model")
        rec = Recommender.load(model_dir, event_log=workdir / "events.log")
        user = data.user_ids[0]
        history = rec.history(user)
        print(f"3) user {user!r}: last items {history[-5:]}")
        before = rec.recommend(user, num_results=10, exclude_seen=True)
        _show("   recommendations now:", before)
        # The user turns to a topic they have not seen: three clicks along its item sequence.
        seen = set(history)
        fresh = [f"item-{i}" for i in range(data.num_items) if f"item-{i}" not in seen]
        start = fresh[len(fresh) // 2] if fresh else data.item_ids[0]
        base = int(start.split("-")[1])
        clicks = [f"item-{(base + k) % data.num_items}" for k in range(3)]
        now = int(data.columns()["timestamp"].max()) + 86_400
        rec.put_events(
            user_id=user,
            session_id="demo-session",
            events=[
                {"event_type": "click", "sent_at": now + 60 * k, "item_id": item}
                for k, item in enumerate(clicks)
            ],
        )
        print(f"\n   real-time events (PutEvents): clicks on {clicks}")
        after = rec.recommend(user, num_results=10, exclude_seen=True)
        changed = {item for item, _ in after} - {item for item, _ in before}
        _show("   recommendations after the events (* = new in the list):", after, changed)
        print(f"\n   {len(changed)} of 10 recommendations changed without retraining; stats: {rec.stats()}")
        if out:
            shutil.copytree(model_dir, out, dirs_exist_ok=True)
            print(f"\nmodel directory kept at {out}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
