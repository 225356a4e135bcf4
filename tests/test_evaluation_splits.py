"""Temporal splits: what trains, what is queried, and that nothing leaks."""

from __future__ import annotations

import numpy as np
import pytest

import hrnn
from hrnn.evaluation import make_split


def tiny(users: int = 30, seed: int = 0) -> hrnn.Interactions:
    """Users with 20–40 events; two sessions each (an hour-long gap in the middle)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, int]] = []
    for u in range(users):
        n = int(rng.integers(20, 41))
        t = 1_000_000 + u * 50
        for j in range(n):
            t += 60 if j != n // 2 else 7200
            rows.append((f"u{u}", f"i{int(rng.integers(0, 25))}", t))
    order = rng.permutation(len(rows))  # input order must not matter
    user, item, ts = zip(*(rows[i] for i in order), strict=True)
    return hrnn.Interactions.from_arrays(list(user), list(item), np.array(ts))


def events(data: hrnn.Interactions) -> set[tuple[str, str, int]]:
    c = data.columns()
    return {
        (data.user_ids[u], data.item_ids[i], int(t))
        for u, i, t in zip(c["user"], c["item"], c["timestamp"], strict=True)
    }


def test_holdout_last_holds_out_the_newest_tenth_per_user() -> None:
    data = tiny()
    split = make_split(data, "holdout-last")
    lengths = dict(zip(data.user_ids, data.history_lengths().tolist(), strict=True))
    assert split.num_queries == data.num_users
    assert split.known_user.all()
    train_events = events(split.train)
    c = split.train.columns()
    newest_train = {}
    for u, t in zip(c["user"], c["timestamp"], strict=True):
        uid = split.train.user_ids[u]
        newest_train[uid] = max(newest_train.get(uid, 0), int(t))
    offsets, _ = split.relevant
    for q in range(split.num_queries):
        uid = split.user_ids[int(split.query_user[q])]
        n = lengths[uid]
        held = n - int(np.floor(0.9 * n + 1e-9))
        # distinct targets can be fewer than held-out events when an item repeats
        assert 1 <= offsets[q + 1] - offsets[q] <= held
        assert split.query_time[q] >= newest_train[uid]
    assert len(train_events) + sum(n - int(np.floor(0.9 * n + 1e-9)) for n in lengths.values()) == len(data)
    assert split.query_context_length.sum() == 0


def test_personalize_holds_out_whole_users_with_context() -> None:
    data = tiny(users=40)
    split = make_split(data, "personalize", seed=3)
    assert split.num_queries == 4  # 10% of 40 users
    assert not split.known_user.any()
    assert not set(split.user_ids) & set(split.train.user_ids)
    for q in range(split.num_queries):
        u = int(split.query_user[q])
        ctx = slice(int(split.context_offsets[u]), int(split.context_offsets[u + 1]))
        # context is the oldest 90%, strictly before (or at) the first target
        assert split.query_context_length[q] == ctx.stop - ctx.start >= 18
        assert split.context_timestamp[ctx].max() <= split.query_time[q]
    # another seed, other users; same seed, same users
    assert make_split(data, "personalize", seed=3).user_ids == split.user_ids
    assert make_split(data, "personalize", seed=4).user_ids != split.user_ids


def test_next_item_predicts_each_event_of_the_last_session() -> None:
    data = tiny(users=10)
    split = make_split(data, "next-item")
    assert split.known_user.all()
    for q in range(split.num_queries):
        u = int(split.query_user[q])
        start = int(split.context_offsets[u])
        j = int(split.query_context_length[q])
        # target = the context event right after the visible prefix
        assert split.target_item[split.target_offsets[q]] == split.context_item[start + j]
        assert split.query_time[q] == split.context_timestamp[start + j]
    offsets, items = split.histories()
    assert offsets[-1] == len(items)
    # the query's history ends with its visible context
    assert items[offsets[1] - 1] == split.context_item[0]


def test_explicit_test_file_pair() -> None:
    train = tiny(users=10)
    test = hrnn.Interactions.from_arrays(
        ["s1", "s1", "s1", "s2"], ["i1", "i2", "new", "i3"], np.array([1, 2, 3, 4])
    )
    split = make_split(train, "next-item", test=test)
    assert split.num_queries == 2  # s2 has one event: nothing to predict
    assert split.user_ids == ["s1"] and not split.known_user[0]
    # an item missing from training is a target outside the catalogue, and -1 in histories
    assert split.target_item[-1] >= split.num_items
    assert split.item_ids[int(split.target_item[-1])] == "new"


def test_global_time_cut() -> None:
    data = tiny()
    cut = 1_000_000 + 1500
    split = make_split(data, "global-time", cut_time=cut)
    assert split.train.columns()["timestamp"].max() <= cut
    assert (split.query_time > cut).all()


def test_errors() -> None:
    data = tiny(users=5)
    with pytest.raises(ValueError, match="protocol: expected one of"):
        make_split(data, "random")
    with pytest.raises(ValueError, match=r"fraction: expected a number in \(0, 1\)"):
        make_split(data, "holdout-last", fraction=1.5)
    with pytest.raises(ValueError, match="test: an explicit test set needs protocol='next-item'"):
        make_split(data, "holdout-last", test=data)
