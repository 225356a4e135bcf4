"""Recommender.recommend / recommend_batch / history: Personalize's GetRecommendations semantics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hrnn

TINY = Path(__file__).parent / "fixtures" / "tiny_model"


@pytest.fixture(scope="module")
def rec() -> hrnn.Recommender:
    return hrnn.Recommender.load(TINY)


def test_recommend_returns_ids_and_scores_best_first(rec: hrnn.Recommender) -> None:
    top = rec.recommend("user2")
    assert len(top) == 25
    ids, scores = zip(*top, strict=True)
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == 25
    assert list(scores) == sorted(scores, reverse=True)
    full = rec.scores("user2")
    assert full is not None and abs(float(full.sum()) - 1.0) < 1e-5
    assert list(ids) == [rec.item_ids[j] for j in np.argsort(-full, kind="stable")[:25]]
    assert len(rec.recommend("user2", 500)) == 40  # capped at the catalogue
    # item_id is accepted and ignored.
    assert rec.recommend("user2", 5, item_id="item3") == rec.recommend("user2", 5)


@pytest.mark.parametrize("bad", [0, -1, 501])
def test_num_results_out_of_range_is_a_value_error(rec: hrnn.Recommender, bad: int) -> None:
    with pytest.raises(ValueError, match=f"num_results: expected 1–500, found {bad}"):
        rec.recommend("user0", bad)
    with pytest.raises(ValueError, match="num_results"):
        rec.recommend_batch(["user0"], bad)


def test_bad_arguments(rec: hrnn.Recommender) -> None:
    with pytest.raises(TypeError, match="num_results: expected an int"):
        rec.recommend("user0", 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at: expected finite"):
        rec.recommend("user0", at=float("nan"))
    with pytest.raises(TypeError, match="exclude_items: expected a list"):
        rec.recommend("user0", exclude_items="item1")


def test_the_common_call_and_the_checked_route_agree(rec: hrnn.Recommender) -> None:
    """Plain str/int/bool arguments go straight to the engine; numpy scalars (and True passed as a
    count) take the checked route. Both give the same list, a picklable ``Recommendations``."""
    import pickle

    for exclude in (False, True):
        plain = rec.recommend("user3", 7, exclude_seen=exclude)
        checked = rec.recommend(np.str_("user3"), np.int64(7), exclude_seen=np.bool_(exclude))
        assert plain == checked and len(plain) == 7
        assert type(plain) is type(checked) and isinstance(plain, hrnn.Recommendations)
    with pytest.raises(TypeError, match="num_results: expected an int, found bool"):
        rec.recommend("user3", True)  # type: ignore[arg-type]
    for top in (rec.recommend("user3", 3), rec.recommend("never-seen", 3)):
        again = pickle.loads(pickle.dumps(top))
        assert again == top and again.personalized is top.personalized
        assert repr(top).startswith("Recommendations([") and "personalized=" in repr(top)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.recommend(None), "user_id: expected a str, found NoneType"),
        (lambda r: r.recommend(12), "user_id: expected a str, found int"),
        (lambda r: r.recommend_batch("abc"), "user_ids: expected a list of ids, found a single str"),
        (lambda r: r.recommend_batch(["user0", 3]), r"user_ids\[1\]: expected a str, found int"),
        (lambda r: r.recommend("user0", exclude_items=[1]), r"exclude_items\[0\]: expected a str"),
        (lambda r: r.history(7), "user_id: expected a str"),
        (lambda r: r.state(b"user0"), "user_id: expected a str, found bytes"),
        (lambda r: r.scores("user0", at="now"), "at: expected Unix seconds"),
        (lambda r: r.put_events(session_id=5, events=[]), "session_id: expected a str"),
        (lambda r: r.put_events(user_id=5, session_id="s", events=[]), "user_id: expected a str"),
        (lambda r: r.put_events(session_id="s", events="abc"), "events: expected a list of event dicts"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_argument(
    rec: hrnn.Recommender, call: Any, message: str
) -> None:
    """Nothing is coerced: None or 12 is not silently the user "None" or "12"."""
    with pytest.raises(TypeError, match=message):
        call(rec)


def test_exclusions_and_inclusions(rec: hrnn.Recommender) -> None:
    seen = rec.history("user3")
    assert len(seen) == 5 and set(seen) <= set(rec.item_ids)  # history_limit = 5
    kept = rec.recommend("user3", 40, exclude_seen=True)
    assert len(kept) == 40 - len(set(seen)) and not set(seen) & {i for i, _ in kept}
    full = rec.scores("user3")
    assert full is not None
    top = rec.recommend("user3", 3, exclude_items=["item0", "item1", "no-such-item"])
    assert not {"item0", "item1"} & {i for i, _ in top}
    only = rec.recommend("user3", 10, include_items=["item5", "item9", "item5", "unknown"])
    assert sorted(i for i, _ in only) == ["item5", "item9"]
    for item, score in only:
        assert score == pytest.approx(float(full[rec.item_ids.index(item)]), rel=1e-5)
    assert rec.recommend("user3", 10, include_items=["item5"], exclude_items=["item5"]) == []


def test_at_discounts_by_elapsed_time(rec: hrnn.Recommender) -> None:
    state = rec.state("user0")
    assert state is not None
    last = state[1]
    assert last is not None
    now = rec.scores("user0")
    assert np.array_equal(rec.scores("user0", at=last), now)  # Δq = 0 is the same as None
    later = rec.scores("user0", at=last + 10 * 86_400)
    assert later is not None and not np.allclose(later, now)
    assert rec.recommend("user0", 3, at=last + 10 * 86_400)[0][1] == pytest.approx(
        float(later.max()), rel=1e-6
    )


def test_unknown_users_get_the_popularity_list(rec: hrnn.Recommender) -> None:
    from safetensors.numpy import load_file

    popularity = load_file(TINY / "model.safetensors")["items.popularity"]
    top = rec.recommend("never-seen", 5)
    assert top.personalized is False and rec.recommend("user0", 5).personalized is True
    order = np.lexsort((np.arange(40), -popularity))[:5]
    assert [i for i, _ in top] == [f"item{j}" for j in order]
    assert [s for _, s in top] == pytest.approx(list(popularity[order] / popularity.sum()))
    assert rec.recommend("never-seen", 3, exclude_items=[top[0][0]])[0][0] == top[1][0]
    assert rec.history("never-seen") == [] and rec.state("never-seen") is None
    assert rec.scores("never-seen") is None


def test_batch_matches_single_queries(rec: hrnn.Recommender) -> None:
    users = ["user0", "user1", "stranger", "user2", "user3", "user0", "user1"]
    batch = rec.recommend_batch(users, 7, exclude_seen=True)
    assert batch.item_indices.shape == batch.scores.shape == (7, 7)
    assert batch.item_indices.dtype == np.int64 and batch.scores.dtype == np.float32
    ids = rec.item_ids_of(batch.item_indices)
    for row, user in enumerate(users):
        single = rec.recommend(user, 7, exclude_seen=True)
        assert list(ids[row]) == [i for i, _ in single]
        np.testing.assert_allclose(batch.scores[row], [s for _, s in single], rtol=1e-6)


def test_batch_pads_rows_with_too_few_items(rec: hrnn.Recommender) -> None:
    batch = rec.recommend_batch(["user1"], 40, exclude_items=["item0", "item1"])
    assert list(batch.item_indices[0, -2:]) == [-1, -1] and list(batch.scores[0, -2:]) == [0, 0]
    assert list(rec.item_ids_of(batch.item_indices)[0, -2:]) == [None, None]
    with pytest.raises(ValueError, match="item_indices"):
        rec.item_ids_of([40])


@settings(max_examples=40, deadline=None)
@given(
    user=st.sampled_from(["user0", "user1", "user2", "user3"]),
    k=st.integers(1, 40),
    exclude=st.lists(st.integers(0, 39), max_size=10),
    elapsed=st.one_of(st.none(), st.floats(0, 1e7)),
)
def test_top_k_is_the_prefix_of_the_sorted_full_scores(
    rec: hrnn.Recommender, user: str, k: int, exclude: list[int], elapsed: float | None
) -> None:
    state = rec.state(user)
    assert state is not None and state[1] is not None
    at = None if elapsed is None else state[1] + elapsed
    full = rec.scores(user, at=at)
    assert full is not None
    allowed = [j for j in np.argsort(-full, kind="stable") if j not in set(exclude)]
    got = rec.recommend(user, k, exclude_items=[f"item{j}" for j in exclude], at=at)
    assert len(got) == min(k, len(allowed))
    for (item, score), j in zip(got, allowed, strict=False):
        # Equal scores may come in either order; otherwise the same item.
        assert item == f"item{j}" or score == pytest.approx(float(full[j]), rel=1e-6)
        assert score == pytest.approx(float(full[rec.item_ids.index(item)]), rel=1e-5)
