"""hrnn.set_num_threads: the thread count changes how work is spread, never the answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import hrnn
from hrnn._testing import random_model
from hrnn.model_format import write_model_dir
from logs import synthetic_log


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = hrnn.get_num_threads()
    yield
    hrnn.set_num_threads(before)


@pytest.fixture(scope="module")
def large_catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Over 32k items, so a single query's scan is split into parallel chunks."""
    model = random_model(70_001, 8, num_users=5, output_scale=0.5, seed=4)
    return write_model_dir(tmp_path_factory.mktemp("large") / "model", model.tensors, model.meta)


def test_set_and_get(restore_threads: None) -> None:
    hrnn.set_num_threads(1)
    assert hrnn.get_num_threads() == 1
    hrnn.set_num_threads(3)
    assert hrnn.get_num_threads() == 3
    for bad in (0, -2):
        with pytest.raises(ValueError, match="at least 1 thread"):
            hrnn.set_num_threads(bad)
    with pytest.raises(TypeError):
        hrnn.set_num_threads(1.5)  # type: ignore[arg-type]
    assert hrnn.get_num_threads() == 3


def test_recommendations_do_not_depend_on_the_thread_count(
    large_catalogue: Path, restore_threads: None
) -> None:
    answers = []
    for threads in (1, 2, 3):
        hrnn.set_num_threads(threads)
        rec = hrnn.Recommender.load(large_catalogue)
        single = [rec.recommend(f"user{u}", 40) for u in range(5)]
        filtered = rec.recommend("user1", 10, exclude_items=[i for i, _ in single[1][:5]])
        included = rec.recommend("user2", 5, include_items=["item3", "item70000", "item35000"])
        batch = rec.recommend_batch([f"user{u}" for u in range(5)], 40)
        answers.append((single, filtered, included, batch.item_indices.tolist(), batch.scores.tolist()))
    assert answers[0] == answers[1] == answers[2]
    single, filtered, _, batch_items, _ = answers[0]
    # Scores are a softmax over the whole catalogue, best first; exclusions hold.
    assert all(s[i][1] >= s[i + 1][1] for s in single for i in range(39))
    assert not {i for i, _ in single[1][:5]} & {i for i, _ in filtered}
    assert [[f"item{j}" for j in row] for row in batch_items] == [[i for i, _ in s] for s in single]
    full = rec.scores("user3")
    assert full is not None
    np.testing.assert_allclose(full.sum(), 1.0, rtol=1e-5)
    np.testing.assert_allclose([s for _, s in single[3][:5]], np.sort(full)[::-1][:5], rtol=1e-5)


def test_loading_does_not_depend_on_the_thread_count(tmp_path: Path, restore_threads: None) -> None:
    # ~3 MB: several read batches, each cut into blocks parsed in parallel.
    log = synthetic_log(num_users=3_000, num_items=800, events_per_user=50, seed=9)
    path = tmp_path / "log.csv"
    lines = (f"{u},{i},{t}" for u, i, t in zip(log["user_id"], log["item_id"], log["timestamp"], strict=True))
    path.write_text("USER_ID,ITEM_ID,TIMESTAMP\n" + "\n".join(lines) + "\n")
    loaded = []
    for threads in (1, 2):
        hrnn.set_num_threads(threads)
        data = hrnn.Interactions.from_csv(path).filter_by_history_length(0.1, 0.9)
        sessions = data.sessionize(600)
        loaded.append((data.to_arrays(), sessions.item_index.tolist(), sessions.session_id.tolist()))
    (a, *rest), (b, *rest_b) = loaded
    assert rest == rest_b
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
