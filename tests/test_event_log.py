"""The event log: durable replay after a restart, torn-tail recovery, and reading it back as
training interactions."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import hrnn

TINY = Path(__file__).parent / "fixtures" / "tiny_model"
T0 = 1_700_100_000


def fill(log: Path) -> hrnn.Recommender:
    rec = hrnn.Recommender.load(TINY, event_log=log)
    rec.put_events(
        user_id="user0",
        session_id="s1",
        events=[{"event_type": "click", "sent_at": T0 + i * 700, "item_id": f"item{i}"} for i in range(5)],
    )
    rec.put_events(
        session_id="anon",
        events=[
            {
                "event_type": "buy",
                "sent_at": T0 + 10.5,
                "item_id": "item9",
                "event_value": 2.0,
                "event_id": "x",
            },
            {"event_type": "view", "sent_at": T0 + 20, "item_id": "not-in-model"},
            {"event_type": "view", "sent_at": T0 + 30},
        ],
    )
    return rec


def test_a_restarted_process_replays_to_the_same_state(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    first = fill(log)
    again = hrnn.Recommender.load(TINY, event_log=log)
    for user in ("user0", "anon", "user1"):
        a, b = first.state(user), again.state(user)
        assert a is not None and b is not None
        np.testing.assert_array_equal(a[0], b[0])
        assert first.history(user) == again.history(user)
        assert first.recommend(user, 10) == again.recommend(user, 10)
    assert again.stats()["events_replayed"] == 8
    assert again.stats()["event_log_records"] == 8
    # Event ids survive the restart: a replayed id is still a duplicate.
    assert (
        again.put_events(session_id="anon", events=[{"event_type": "buy", "sent_at": T0, "event_id": "x"}])
        == 0
    )


def test_a_torn_last_record_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "events.log"
    fill(log)
    full = log.read_bytes()
    log.write_bytes(full[:-7])  # a crash in the middle of the last record
    with caplog.at_level(logging.WARNING, logger="hrnn.recommender"):
        rec = hrnn.Recommender.load(TINY, event_log=log)
    assert "dropped a torn last record" in caplog.text
    assert rec.stats()["events_replayed"] == 7
    assert rec.stats()["event_log_dropped_bytes"] > 0
    # The file was cut back to its intact prefix and new events append cleanly after it.
    rec.put_events(
        session_id="anon", events=[{"event_type": "click", "sent_at": T0 + 99, "item_id": "item3"}]
    )
    assert hrnn.Recommender.load(TINY, event_log=log).stats()["events_replayed"] == 8


def test_corruption_before_the_last_record_is_an_error(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    fill(log)
    data = bytearray(log.read_bytes())
    data[40] ^= 0xFF  # inside the first record's payload
    log.write_bytes(bytes(data))
    with pytest.raises(OSError, match="checksum mismatch"):
        hrnn.Recommender.load(TINY, event_log=log)
    log.write_bytes(b"this is not an event log")
    with pytest.raises(OSError, match="not an hrnn event log"):
        hrnn.Recommender.load(TINY, event_log=log)


def test_the_log_is_training_input(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    fill(log)
    data = hrnn.Interactions.from_event_log(log)
    assert len(data) == 7  # the item-less event is skipped
    frame = data.columns()
    users = np.asarray(data.user_ids)[frame["user"]]
    assert list(users) == ["user0"] * 5 + ["anon"] * 2
    assert list(np.asarray(data.item_ids)[frame["item"]][-2:]) == ["item9", "not-in-model"]
    assert list(frame["timestamp"][-2:]) == [T0 + 10, T0 + 20]
    assert frame["event_value"][5] == 2.0 and np.isnan(frame["event_value"][0])
    assert list(np.asarray(data.event_types)[frame["event_type"]][4:6]) == ["click", "buy"]
    with pytest.raises(FileNotFoundError):
        hrnn.Interactions.from_event_log(tmp_path / "missing.log")
