"""Recommender.swap: a new model under a live engine — calls in flight finish, states are rebuilt
from the new model plus the logged events it has not learnt from, no event is lost or applied
twice, and a model that fails to load leaves the old one serving."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import hrnn
from hrnn.model_format import read_model_dir, write_model_dir

TINY = Path(__file__).parent / "fixtures" / "tiny_model"
#: After the tiny model's training data (its latest event is at 1_700_193_940).
T1 = 1_800_000_000


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another model over the same items: the tiny model with its cell and states scaled."""
    model = read_model_dir(TINY)
    tensors = dict(model.tensors)
    for name in ("gru.weight_hh", "gru.weight_ih", "output.weight", "users.state"):
        tensors[name] = (tensors[name] * 0.8).astype(np.float32)
    return write_model_dir(tmp_path_factory.mktemp("swap") / "model", tensors, model.meta)


def click(item: str, t: float, event_id: str | None = None) -> dict[str, object]:
    event: dict[str, object] = {"event_type": "click", "sent_at": t, "item_id": item}
    if event_id is not None:
        event["event_id"] = event_id
    return event


def assert_same_states(a: hrnn.Recommender, b: hrnn.Recommender, users: list[str]) -> None:
    for user in users:
        sa, sb = a.state(user), b.state(user)
        assert (sa is None) == (sb is None), user
        if sa is not None and sb is not None:
            np.testing.assert_array_equal(sa[0], sb[0], err_msg=user)
            assert sa[1] == sb[1], user
        assert a.history(user) == b.history(user), user


def test_a_swap_serves_the_new_model_with_every_event_since_its_training(
    tmp_path: Path, retrained: Path
) -> None:
    log = tmp_path / "events.log"
    rec = hrnn.Recommender.load(TINY, event_log=log)
    before = rec.recommend("user0", 10)
    # One event older than the new model's training data (so learnt from), two newer.
    rec.put_events(user_id="user0", session_id="s", events=[click("item3", 1_700_000_000)])
    rec.put_events(user_id="user0", session_id="s", events=[click("item5", T1), click("item6", T1 + 60)])
    report = rec.swap(retrained)
    assert report == hrnn.SwapReport(events_replayed=2, events_before_cutoff=1)
    assert rec.recommend("user0", 10) != before
    assert rec.history("user0")[-2:] == ["item5", "item6"]
    # Exactly what a fresh process on the new model and the same log holds.
    rec.close()
    fresh = hrnn.Recommender.load(retrained, event_log=log)
    assert_same_states(rec, fresh, ["user0", "user1"])
    assert fresh.stats()["events_before_cutoff"] == 1


def test_a_model_that_fails_to_load_leaves_the_old_one_serving(tmp_path: Path) -> None:
    rec = hrnn.Recommender.load(TINY, event_log=tmp_path / "events.log")
    rec.put_events(user_id="user1", session_id="s", events=[click("item2", T1)])
    before = rec.recommend("user1", 10)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{}")
    with pytest.raises((hrnn.ModelFormatError, FileNotFoundError)):
        rec.swap(broken)
    assert rec.recommend("user1", 10) == before
    assert rec.put_events(user_id="user1", session_id="s", events=[click("item4", T1 + 1)]) == 1


def test_a_batch_maps_its_indices_with_the_model_that_answered(retrained: Path) -> None:
    rec = hrnn.Recommender.load(TINY)
    batch = rec.recommend_batch(["user0", "nobody"], 5)
    expected = [[item for item, _ in rec.recommend(u, 5)] for u in ("user0", "nobody")]
    rec.swap(retrained)
    assert batch.item_ids().tolist() == expected
    indices, scores = batch  # still unpacks as a pair
    assert indices.shape == scores.shape == (2, 5)


def test_eight_threads_through_twenty_swaps_lose_nothing(tmp_path: Path, retrained: Path) -> None:
    """8 threads recommend and put events while the model is swapped 20 times: no error, every
    acknowledged event in the log once, and states equal to a fresh load of the final model with
    the same log."""
    log = tmp_path / "events.log"
    rec = hrnn.Recommender.load(TINY, event_log=log)
    users = ["user0", "user1", "user2", "user3", "new-a", "new-b"]
    stop = threading.Event()
    errors: list[BaseException] = []
    sent = [0] * 8

    def worker(w: int) -> None:
        try:
            n = 0
            while not stop.is_set():
                user = users[(w + n) % len(users)]
                events = [
                    click(f"item{(w * 7 + n + j) % 40}", T1 + n, f"w{w}-{n}-{j}") for j in range(1 + n % 3)
                ]
                sent[w] += rec.put_events(user_id=user, session_id=f"s{w}", events=events)
                ranked = rec.recommend(users[n % len(users)], 5)
                assert len(ranked) == 5 and len({item for item, _ in ranked}) == 5
                n += 1
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    models = [retrained, TINY]
    for i in range(20):
        stop.wait(0.02)
        rec.swap(models[i % 2])
    stop.set()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "deadlock"
    assert not errors, errors
    total = sum(sent)
    assert total > 0
    stats = rec.stats()
    assert stats["events_accepted"] == stats["event_log_events"] == total
    rec.close()
    fresh = hrnn.Recommender.load(models[19 % 2], event_log=log)
    assert fresh.stats()["events_replayed"] == total
    assert fresh.stats()["events_replayed_duplicate"] == 0
    assert_same_states(rec, fresh, users)
