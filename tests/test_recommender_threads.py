"""Concurrency: every call releases the GIL, and many threads can recommend and put events at
once without deadlock or lost events."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import hrnn
from hrnn import _hrnn
from hrnn._testing import random_model
from hrnn.model_format import write_model_dir

TINY = Path(__file__).parent / "fixtures" / "tiny_model"


@pytest.fixture(scope="module")
def big_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random model large enough that a batch call takes tens of milliseconds."""
    model = random_model(20_000, 32, num_users=1)
    return write_model_dir(tmp_path_factory.mktemp("big") / "model", model.tensors, model.meta)


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An interactions file of 200k rows."""
    rows = 200_000
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 5_000, rows), rng.integers(0, 20_000, rows)
    stamps = 1_700_000_000 + np.sort(rng.integers(0, 10_000_000, rows))
    path = tmp_path_factory.mktemp("csv") / "interactions.csv"
    lines = [
        f"u{u},i{i},{t}" for u, i, t in zip(users.tolist(), items.tolist(), stamps.tolist(), strict=True)
    ]
    path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(lines) + "\n")
    return path


def _calls_overlap(call: Callable[[int], object]) -> bool:
    """Runs ``call(thread)`` in two threads released together by a Barrier; true when the two
    calls' windows overlap.

    The interpreter's switch interval is raised for the duration, so the GIL changes hands only
    when a thread gives it up itself: a call that holds it keeps the other thread out until the
    window has closed (Python code in the window cannot let the other thread in either), and the
    windows cannot overlap. A call that releases it lets the other thread start meanwhile.
    """
    barrier = threading.Barrier(2)
    windows: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            barrier.wait()
            start = time.perf_counter()
            call(thread)
            windows.append((start, time.perf_counter()))
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    (a0, a1), (b0, b1) = windows
    return a0 < b1 and b0 < a1


def test_from_csv_releases_the_gil(big_csv: Path) -> None:
    assert _calls_overlap(lambda _: _hrnn.Interactions.from_csv(str(big_csv)))


def test_sessionize_releases_the_gil(big_csv: Path) -> None:
    interactions = _hrnn.Interactions.from_csv(str(big_csv))

    def sessionize(_: int) -> None:
        for _ in range(3):
            interactions.sessionize(1800)

    assert _calls_overlap(sessionize)


def test_recommend_releases_the_gil(big_model: Path) -> None:
    rec = _hrnn.Recommender.load(str(big_model))

    def recommend(_: int) -> None:
        for _ in range(100):
            rec.recommend("user0", 25)

    assert _calls_overlap(recommend)


def test_recommend_batch_releases_the_gil(big_model: Path) -> None:
    rec = _hrnn.Recommender.load(str(big_model))
    assert _calls_overlap(lambda _: rec.recommend_batch(["user0"] * 64, 25))


def test_put_events_releases_the_gil(big_model: Path) -> None:
    rec = _hrnn.Recommender.load(str(big_model))

    def put_events(thread: int) -> None:
        for i in range(300):
            events = [
                {
                    "event_type": "click",
                    "sent_at": 1_700_100_000 + i,
                    "item_id": f"item{(i + j) % 20_000}",
                    "event_id": f"{i}-{j}",
                }
                for j in range(10)
            ]
            rec.put_events(f"session{thread}", events, user_id=f"user{thread}")

    assert _calls_overlap(put_events)


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
