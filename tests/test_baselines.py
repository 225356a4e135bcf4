"""Popularity and session-kNN baselines (the kNN scored in Rust) on tiny, hand-checkable data."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

import hrnn
from hrnn import _hrnn
from hrnn.evaluation import Popularity, SessionKnn, make_baseline, make_split


def sessions_data() -> hrnn.Interactions:
    """Training sessions a→b→c (×3), a→d (×1), x→y (×2); test sessions a→?, x→?."""
    rows = []
    t = 0
    for s, seq in enumerate([["a", "b", "c"]] * 3 + [["a", "d"]] + [["x", "y"]] * 2):
        for item in seq:
            t += 10
            rows.append((f"s{s}", item, t))
    user, item, ts = zip(*rows, strict=True)
    return hrnn.Interactions.from_arrays(list(user), list(item), np.array(ts))


def test_popularity_counts_distinct_users() -> None:
    data = hrnn.Interactions.from_arrays(
        ["u1", "u1", "u1", "u2", "u3", "u3"], ["a", "a", "a", "b", "b", "c"], np.arange(6)
    )
    model = Popularity().fit(data)
    split = make_split(data, "next-item", test=data)
    idx, scores = model.recommend(split, 3)
    names = [split.item_ids[i] for i in idx[0]]
    assert names == ["b", "a", "c"]  # b: 2 users; a: 1 user (3 events); c: 1 user, later
    assert scores[0].tolist() == [2.0, 1.0, 1.0]
    idx, _ = model.recommend(split, 3, exclude_seen=True)
    # query 0 of u1 has seen "a": it is dropped and the list backfilled (shorter: catalogue of 3)
    assert [split.item_ids[i] for i in idx[0] if i >= 0] == ["b", "c"]


def test_sknn_recommends_what_similar_sessions_did_next() -> None:
    train = sessions_data()
    test = hrnn.Interactions.from_arrays(
        ["t1", "t1", "t2", "t2"], ["a", "b", "x", "y"], np.array([1, 2, 3, 4])
    )
    split = make_split(train, "next-item", test=test)
    model = SessionKnn(popularity_backfill=0.0).fit(train)
    idx, scores = model.recommend(split, 4)
    first = [split.item_ids[i] for i in idx[0][:3]]
    assert first[0] == "a" and set(first[1:]) == {"b", "c"}  # a's neighbours: 3× a→b→c, 1× a→d
    assert split.item_ids[idx[1][0]] in {"x", "y"}
    assert "a" not in [split.item_ids[i] for i in idx[1][:2]]
    assert np.all(np.diff(scores, axis=1) <= 0)
    idx, _ = model.recommend(split, 4, exclude_seen=True)
    assert "a" not in [split.item_ids[i] for i in idx[0] if i >= 0]


def test_sknn_beats_popularity_on_sequential_data() -> None:
    rng = np.random.default_rng(0)
    rows, t = [], 0
    for s in range(300):  # each session walks a chain i -> i+1 -> ...
        start = int(rng.integers(0, 40))
        for j in range(4):
            t += 5
            rows.append((f"s{s}", f"i{(start + j) % 40}", t))
    user, item, ts = zip(*rows, strict=True)
    data = hrnn.Interactions.from_arrays(list(user), list(item), np.array(ts))
    c = data.columns()
    late = c["timestamp"] > np.quantile(c["timestamp"], 0.8)
    is_test = np.isin(c["user"], np.unique(c["user"][late]))
    report = hrnn.evaluation.evaluate_split(
        make_split(data.subset(~is_test), "next-item", test=data.subset(is_test)),
        baselines=("popularity", "sknn"),
    )
    assert report["sknn"].metrics["recall_at_20"] > 0.9
    assert report["sknn"].metrics["mrr_at_20"] > 2 * report["popularity"].metrics["mrr_at_20"]


def test_errors() -> None:
    data = sessions_data()
    split = make_split(data, "next-item", test=data)
    with pytest.raises(RuntimeError, match="call fit"):
        SessionKnn().recommend(split, 5)
    with pytest.raises(RuntimeError, match="call fit"):
        Popularity().recommend(split, 5)
    with pytest.raises(ValueError, match="neighbours: expected at least 1"):
        SessionKnn(neighbours=0).fit(data).recommend(split, 5)
    with pytest.raises(ValueError, match="position_decay: expected a positive number"):
        SessionKnn(position_decay=-1.0).fit(data).recommend(split, 5)
    with pytest.raises(ValueError, match="baselines: expected names"):
        make_baseline("random")
    other = make_split(
        hrnn.Interactions.from_arrays(["a", "a"], ["p", "q"], np.array([1, 2])),
        "next-item",
        test=hrnn.Interactions.from_arrays(["b", "b"], ["p", "q"], np.array([3, 4])),
    )
    with pytest.raises(ValueError, match="catalogue this sknn baseline was fitted on"):
        SessionKnn().fit(data).recommend(other, 5)
    with pytest.raises(ValueError, match="items: expected item indices below num_items"):
        _hrnn.SessionKnnIndex(np.array([0, 1]), np.array([7], dtype=np.uint32), np.array([0]), 3)
    with pytest.raises(ValueError, match="session_offsets: expected CSR offsets"):
        _hrnn.SessionKnnIndex(np.array([0, 5]), np.array([1], dtype=np.uint32), np.array([0]), 3)


def test_sknn_releases_the_gil() -> None:
    rng = np.random.default_rng(1)
    n_items, n_events = 3000, 200_000
    offsets = np.arange(0, n_events + 1, 20, dtype=np.int64)
    index = _hrnn.SessionKnnIndex(
        offsets, rng.integers(0, n_items, n_events).astype(np.uint32), np.arange(n_events), n_items
    )
    queries = 300
    hist_items = rng.integers(0, n_items, queries * 5).astype(np.int64)
    hist_offsets = np.arange(0, queries * 5 + 1, 5, dtype=np.int64)
    kwargs = dict(
        exclude_seen=False,
        neighbours=100,
        sample_size=500,
        context_length=5,
        position_decay=1.0,
        recency_half_life=math.inf,
        neighbour_position_decay=4.0,
        idf=True,
        popularity_backfill=0.0,
    )
    barrier = threading.Barrier(2)
    windows: list[tuple[float, float]] = []

    def work() -> None:
        barrier.wait()
        start = time.perf_counter()
        index.recommend(hist_offsets, hist_items, np.zeros(queries, dtype=np.int64), 20, **kwargs)
        windows.append((start, time.perf_counter()))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (a0, a1), (b0, b1) = windows
    assert a0 < b1 and b0 < a1  # the two calls ran at the same time
