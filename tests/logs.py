"""Small synthetic interaction logs for tests (tests never need ../shared)."""

from __future__ import annotations

import numpy as np


def synthetic_log(
    num_users: int = 60, num_items: int = 40, events_per_user: int = 30, seed: int = 0
) -> dict[str, np.ndarray]:
    """A small session-structured log: per user, bursts of events separated by long gaps."""
    rng = np.random.default_rng(seed)
    users, items, times = [], [], []
    for u in range(num_users):
        t = int(rng.integers(1_600_000_000, 1_600_100_000))
        for _ in range(events_per_user):
            t += int(rng.choice([30, 120, 600, 86_400]))
            users.append(f"user{u}")
            items.append(f"item{int(rng.zipf(1.5)) % num_items}")
            times.append(t)
    return {
        "user_id": np.array(users),
        "item_id": np.array(items),
        "timestamp": np.array(times, dtype=np.int64),
    }
