"""Concurrency: every call releases the GIL, and many threads can recommend and put events at
once without deadlock or lost events."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import hrnn
from hrnn.model_format import random_model, write_model_dir

TINY = Path(__file__).parent / "fixtures" / "tiny_model"


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random model large enough that a batch call takes tens of milliseconds."""
    model = random_model(20_000, 32, num_users=1)
    return write_model_dir(tmp_path_factory.mktemp("big") / "model", model.tensors, model.meta)


def test_the_gil_is_released_during_calls(big_model: Path) -> None:
    """While one thread is inside a Rust call, a pure-Python thread keeps running. If the call held
    the GIL, the counter could not move between the two reads around it."""
    rec = hrnn.Recommender.load(big_model)
    counter = [0]
    stop = threading.Event()
    barrier = threading.Barrier(2)

    def spin() -> None:
        barrier.wait()
        while not stop.is_set():
            counter[0] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    barrier.wait()
    moved = {"recommend_batch": 0, "recommend": 0}
    try:
        for _ in range(5):
            before = counter[0]
            rec.recommend_batch(["user0"] * 64, 25)
            moved["recommend_batch"] += counter[0] - before
            before = counter[0]
            for _ in range(20):
                rec.recommend("user0", 25)
            moved["recommend"] += counter[0] - before
    finally:
        stop.set()
        spinner.join()
    assert moved["recommend_batch"] > 0, moved


def test_eight_threads_mixing_recommend_and_put_events(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    rec = hrnn.Recommender.load(TINY, event_log=log)
    deadline = time.monotonic() + 1.5
    sent = [0] * 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(w: int) -> None:
        try:
            barrier.wait()
            i = 0
            while time.monotonic() < deadline:
                user = f"user{(w + i) % 4}" if i % 3 else f"anon-{w}"
                events = [
                    {
                        "event_type": "click",
                        "sent_at": 1_700_100_000 + i,
                        "item_id": f"item{(w * 7 + i) % 40}",
                        "event_id": f"{w}-{i}-{j}",
                    }
                    for j in range(2)
                ]
                if i % 3:
                    rec.put_events(user_id=user, session_id=f"s{w}", events=events)
                else:
                    rec.put_events(session_id=user, events=events)
                sent[w] += len(events)
                # everything the user has seen is left out (40 items: the list may run short)
                listed = [item for item, _ in rec.recommend(user, 10, exclude_seen=True)]
                assert len(listed) <= 10 and len(set(listed)) == len(listed)
                if i % 10 == 0:
                    rec.recommend_batch(["user0", "user1", f"anon-{w}"], 5)
                i += 1
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "deadlock"
    assert not errors, errors
    stats = rec.stats()
    assert stats["events_accepted"] == sum(sent) > 0
    assert stats["event_log_events"] == sum(sent)
    # Group commit kept every event and the per-user order: a replay gives the same states.
    rec.close()
    again = hrnn.Recommender.load(TINY, event_log=log)
    assert again.stats()["events_replayed"] == sum(sent)
    for user in ["user0", "user1", "user2", "user3", *[f"anon-{w}" for w in range(8)]]:
        a, b = rec.state(user), again.state(user)
        assert a is not None and b is not None
        np.testing.assert_array_equal(a[0], b[0])
        assert rec.history(user) == again.history(user)
