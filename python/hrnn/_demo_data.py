"""A seeded, session-structured synthetic interaction log, generated on the fly (no download).

It has the structure HRNN is built for: items belong to topics; each user has a few favourite
topics whose mix drifts over time; within a session a user mostly stays on one topic and tends to
move along a topic's item sequence (item k → k+1), and sessions are separated by gaps of days.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hrnn.interactions import Interactions

__all__ = ["demo_interactions", "generate_demo_log", "write_demo_csv"]


def generate_demo_log(
    num_users: int = 400,
    num_items: int = 240,
    num_topics: int = 12,
    seed: int = 7,
) -> dict[str, np.ndarray]:
    """Generates the demo log as columns.

    Args:
        num_users: users in the log.
        num_items: items, split evenly into ``num_topics`` topics.
        num_topics: topics.
        seed: random seed; the same seed gives the same log.

    Returns:
        Columns ``user_id``, ``item_id``, ``timestamp``, ``event_type`` (numpy arrays), in time order.
    """
    if num_items < num_topics or num_topics < 2:
        raise ValueError("num_items: expected at least num_topics items and at least 2 topics")
    rng = np.random.default_rng(seed)
    per_topic = num_items // num_topics
    users, items, times, types = [], [], [], []
    start = 1_704_067_200  # 2024-01-01
    for u in range(num_users):
        favourites = rng.choice(num_topics, size=3, replace=False)
        t = start + int(rng.integers(0, 20 * 86_400))
        num_sessions = int(rng.integers(3, 9))
        for s in range(num_sessions):
            # Interest drifts from the first favourite towards the later ones.
            drift = s / max(1, num_sessions - 1)
            weights = np.array([1.0 - 0.7 * drift, 0.3 + 0.5 * drift, 0.2])
            topic = int(favourites[rng.choice(3, p=weights / weights.sum())])
            position = int(rng.integers(0, per_topic))
            for _ in range(int(rng.integers(3, 11))):
                if rng.random() < 0.1:  # an occasional popular item from anywhere
                    item = int(rng.zipf(2.0) - 1) % num_items
                else:
                    item = topic * per_topic + position
                    position = (
                        position + (1 if rng.random() < 0.7 else int(rng.integers(0, per_topic)))
                    ) % per_topic
                users.append(f"user-{u}")
                items.append(f"item-{item}")
                times.append(t)
                types.append("purchase" if rng.random() < 0.05 else "click")
                t += int(rng.integers(20, 400))
            t += int(rng.integers(86_400, 6 * 86_400))
    order = np.argsort(np.array(times), kind="stable")
    return {
        "user_id": np.array(users)[order],
        "item_id": np.array(items)[order],
        "timestamp": np.array(times, dtype=np.int64)[order],
        "event_type": np.array(types)[order],
    }


def demo_interactions(seed: int = 7) -> Interactions:
    """The demo log as :class:`~hrnn.Interactions`."""
    log = generate_demo_log(seed=seed)
    return Interactions.from_arrays(log["user_id"], log["item_id"], log["timestamp"], log["event_type"])


def write_demo_csv(path: str | os.PathLike[str], seed: int = 7) -> Path:
    """Writes the demo log as a Personalize interactions CSV and returns its path."""
    log = generate_demo_log(seed=seed)
    out = Path(path)
    with out.open("w", encoding="utf-8") as f:
        f.write("USER_ID,ITEM_ID,TIMESTAMP,EVENT_TYPE\n")
        for row in zip(log["user_id"], log["item_id"], log["timestamp"], log["event_type"], strict=True):
            f.write(",".join(map(str, row)) + "\n")
    return out
