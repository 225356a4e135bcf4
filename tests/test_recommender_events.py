"""Recommender.put_events: Personalize's PutEvents — validation, state updates, duplicates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hrnn

TINY = Path(__file__).parent / "fixtures" / "tiny_model"
T0 = 1_700_100_000.0


@pytest.fixture
def rec() -> hrnn.Recommender:
    return hrnn.Recommender.load(TINY)


def click(item: str | None, t: float, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"event_type": "click", "sent_at": t, **extra}
    if item is not None:
        event["item_id"] = item
    return event


def test_an_event_moves_the_state_and_the_next_recommendation(rec: hrnn.Recommender) -> None:
    before = rec.recommend("user0", 40)
    assert rec.put_events(user_id="user0", session_id="s1", events=[click("item7", T0)]) == 1
    after = rec.recommend("user0", 40)
    assert after != before
    assert rec.history("user0")[-1] == "item7"
    state = rec.state("user0")
    assert state is not None and state[1] == T0


def test_anonymous_sessions_get_their_own_state(rec: hrnn.Recommender) -> None:
    assert rec.state("sess-9") is None
    popular = rec.recommend("sess-9", 5)
    rec.put_events(session_id="sess-9", events=[click("item1", T0), click("item2", T0 + 5)])
    assert rec.history("sess-9") == ["item1", "item2"]
    assert rec.recommend("sess-9", 5) != popular
    assert rec.stats()["users_with_events"] == 1


def test_unknown_items_and_itemless_events_are_kept_but_do_not_move_the_state(rec: hrnn.Recommender) -> None:
    before = rec.state("user1")
    accepted = rec.put_events(
        user_id="user1",
        session_id="s",
        events=[click("brand-new-item", T0), click(None, T0 + 1, properties={"page": "home"})],
    )
    assert accepted == 2
    after = rec.state("user1")
    assert before is not None and after is not None
    np.testing.assert_array_equal(before[0], after[0])
    stats = rec.stats()
    assert (stats["events_accepted"], stats["events_unknown_item"], stats["events_without_item"]) == (2, 1, 1)


def test_duplicate_event_ids_are_ignored(rec: hrnn.Recommender) -> None:
    assert rec.put_events(user_id="user2", session_id="s", events=[click("item3", T0, event_id="e1")]) == 1
    state = rec.state("user2")
    events = [click("item3", T0 + 1, event_id="e1"), click("item4", T0 + 2, event_id="e2")]
    assert rec.put_events(user_id="user2", session_id="s", events=events) == 1
    assert rec.history("user2")[-2:] == ["item3", "item4"]
    assert rec.stats()["events_duplicate"] == 1
    assert state is not None


def test_all_fields_are_accepted(rec: hrnn.Recommender) -> None:
    event = {
        "event_type": "buy",
        "sent_at": np.int64(1_700_000_123),
        "item_id": "item8",
        "event_value": 4.5,
        "event_id": "abc",
        "impression": ["item8", "item9"],
        "properties": '{"discount": "yes"}',
    }
    assert rec.put_events(user_id="u-new", session_id="s", events=[event]) == 1


CASES = [
    ({"sent_at": T0}, "events\\[0\\].event_type: required field missing"),
    ({"event_type": "click"}, "events\\[0\\].sent_at: required field missing"),
    ({"event_type": "", "sent_at": T0}, "events\\[0\\].event_type: expected 1–256 characters, found 0"),
    (
        {"event_type": "x" * 257, "sent_at": T0},
        "events\\[0\\].event_type: expected 1–256 characters, found 257",
    ),
    ({"event_type": 3, "sent_at": T0}, "events\\[0\\].event_type: expected a str, found int"),
    ({"event_type": "click", "sent_at": "yesterday"}, "events\\[0\\].sent_at: expected a number, found str"),
    ({"event_type": "click", "sent_at": True}, "events\\[0\\].sent_at: expected a number, found bool"),
    ({"event_type": "click", "sent_at": float("inf")}, "events\\[0\\].sent_at: expected finite Unix seconds"),
    ({"event_type": "click", "sent_at": -5}, "events\\[0\\].sent_at: expected finite Unix seconds"),
    (
        {"event_type": "click", "sent_at": 1.7e12},
        "events\\[0\\].sent_at: .* looks like milliseconds: divide by 1000",
    ),
    ({"event_type": "click", "sent_at": 2.0**64}, "events\\[0\\].sent_at: expected finite Unix seconds"),
    ({"event_type": "click", "sent_at": 1e300}, "events\\[0\\].sent_at: expected finite Unix seconds"),
    (
        {"event_type": "click", "sent_at": T0, "impression": "abc"},
        "events\\[0\\].impression: expected a list",
    ),
    (
        {"event_type": "click", "sent_at": T0, "properties": {"x": float("nan")}},
        "events\\[0\\].properties: expected a str or a dict serializable as strict JSON",
    ),
    (
        {"event_type": "click", "sent_at": datetime(2024, 1, 1)},
        "events\\[0\\].sent_at: expected Unix seconds or a timezone-aware datetime, found a naive",
    ),
    ({"event_type": "click", "sent_at": T0, "item_id": ""}, "events\\[0\\].item_id: expected 1–256"),
    ({"event_type": "click", "sent_at": T0, "event_value": float("nan")}, "events\\[0\\].event_value"),
    ({"event_type": "click", "sent_at": T0, "impression": ["a", 7]}, "events\\[0\\].impression\\[1\\]"),
    ({"event_type": "click", "sent_at": T0, "itemId": "item1"}, "events\\[0\\].itemId: unknown field"),
]


@pytest.mark.parametrize(("event", "message"), CASES)
def test_invalid_events_name_the_index_and_field(
    rec: hrnn.Recommender, event: dict[str, Any], message: str
) -> None:
    with pytest.raises(hrnn.EventError, match=message):
        rec.put_events(user_id="user0", session_id="s", events=[event])


def test_an_invalid_event_rejects_the_whole_call(rec: hrnn.Recommender) -> None:
    before = rec.state("user3")
    with pytest.raises(hrnn.EventError, match=r"^events\[2\]\.sent_at"):
        rec.put_events(
            user_id="user3",
            session_id="s",
            events=[click("item1", T0), click("item2", T0), {"event_type": "click"}],
        )
    with pytest.raises(hrnn.EventError, match=r"events\[1\]\.<event>: expected a dict, found list"):
        rec.put_events(user_id="user3", session_id="s", events=[click("item1", T0), ["not", "a", "dict"]])
    after = rec.state("user3")
    assert before is not None and after is not None
    np.testing.assert_array_equal(before[0], after[0])
    assert rec.stats()["events_accepted"] == 0


def test_invalid_ids_are_value_errors(rec: hrnn.Recommender) -> None:
    with pytest.raises(ValueError, match="session_id: expected 1–256 characters, found 0"):
        rec.put_events(session_id="", events=[click("item1", T0)])
    with pytest.raises(ValueError, match="user_id: expected 1–256 characters, found 300"):
        rec.put_events(user_id="u" * 300, session_id="s", events=[click("item1", T0)])


def test_a_model_without_event_types_uses_its_single_type_for_every_event(tmp_path: Path) -> None:
    """Trained without EVENT_TYPE, the model has the one type "" that every training event used;
    real-time events must still name a type, and each is served as "" (not as an unknown type)."""
    import json
    import shutil
    import sys

    from safetensors.numpy import load_file, save_file

    sys.path.insert(0, str(Path(__file__).parent))
    from reference_model import ReferenceModel

    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    meta = json.loads((model / "model.json").read_text())
    meta["event_types"] = [""]
    (model / "model.json").write_text(json.dumps(meta))
    tensors = load_file(model / "model.safetensors")
    tensors["event_type_embedding"] = tensors["event_type_embedding"][:1].copy()
    save_file(tensors, model / "model.safetensors")
    rec = hrnn.Recommender.load(model)
    rec.put_events(
        session_id="a", events=[click("item4", T0), {**click("item5", T0 + 60), "event_type": "buy"}]
    )
    ref = ReferenceModel.from_tensors(tensors, meta["session_timeout"])
    want, _ = ref.run([(4, T0, 0), (5, T0 + 60, 0)])
    state = rec.state("a")
    assert state is not None
    np.testing.assert_allclose(state[0], want, rtol=1e-5, atol=1e-6)


def test_exclude_seen_leaves_out_everything_the_events_touched_by_type(rec: hrnn.Recommender) -> None:
    # 8 events: more than the fixture's history_limit of 5, so the history forgets the first 3
    events = [click(f"item{j}", T0 + j) for j in range(6)]
    events += [
        {**click("item6", T0 + 6), "event_type": "buy"},
        {**click("item7", T0 + 7), "event_type": "rate"},
    ]
    rec.put_events(user_id="new-user", session_id="s", events=events)
    assert len(rec.history("new-user")) == 5
    listed = {item for item, _ in rec.recommend("new-user", 40, exclude_seen=True)}
    assert listed == {f"item{j}" for j in range(8, 40)}
    only_buys = {item for item, _ in rec.recommend("new-user", 40, exclude_seen=["buy"])}
    assert only_buys == {f"item{j}" for j in range(40)} - {"item6"}
    clicks_and_rates = {item for item, _ in rec.recommend("new-user", 40, exclude_seen=["click", "rate"])}
    assert clicks_and_rates == {f"item{j}" for j in (6, *range(8, 40))}
    assert len(rec.recommend("new-user", 40, exclude_seen=["nothing-like-it"])) == 40
    batch = rec.recommend_batch(["new-user"], 40, exclude_seen=["buy"])
    assert set(rec.item_ids_of(batch.item_indices[0][batch.item_indices[0] >= 0])) == only_buys
    with pytest.raises(TypeError, match="exclude_seen: expected True, False or a list of event types"):
        rec.recommend("new-user", 5, exclude_seen="buy")  # type: ignore[arg-type]


def test_sent_at_may_be_a_timezone_aware_datetime(rec: hrnn.Recommender) -> None:
    when = datetime(2024, 3, 1, 12, 30, tzinfo=UTC)
    rec.put_events(user_id="u-dt", session_id="s", events=[click("item2", when)])  # type: ignore[arg-type]
    state = rec.state("u-dt")
    assert state is not None and state[1] == when.timestamp()
