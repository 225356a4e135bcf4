"""Parity of the Rust engine with docs/model.md: against the committed fixture (computed by the
numpy reference in tests/reference_model.py) always, and against torch's TrainedModel.score when
torch and the trainer are installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hrnn

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny_model"
RTOL = 1e-5


def assert_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Relative 1e-5 per element, with an absolute floor of 1e-6 of the vector's largest value:
    float32 rounding alone (~1e-7 of the largest value) exceeds 1e-5 relative on elements near 0."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    bound = RTOL * np.abs(want) + 1e-6 * np.abs(want).max()
    excess = float(np.max(np.abs(got - want) - bound))
    assert excess <= 0, f"{what}: max |got - want| = {np.abs(got - want).max():.3e} exceeds the bound"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected_scores.npz") as data:
        return {k: data[k] for k in data.files}


def test_training_users_scores_match_the_reference(expected: dict[str, np.ndarray]) -> None:
    rec = hrnn.Recommender.load(TINY)
    for u in range(4):
        assert_close(rec.scores(f"user{u}"), expected["train_scores"][u], f"user{u}")
        last = rec.state(f"user{u}")[1]
        at = last + float(expected["elapsed"])
        assert_close(rec.scores(f"user{u}", at=at), expected["train_scores_elapsed"][u], f"user{u} at")
        top = rec.recommend(f"user{u}", 10, at=at)
        want = np.argsort(-expected["train_scores_elapsed"][u], kind="stable")[:10]
        assert [i for i, _ in top] == [f"item{j}" for j in want]
        np.testing.assert_allclose([s for _, s in top], expected["train_scores_elapsed"][u][want], rtol=RTOL)


def test_anonymous_session_state_follows_the_cell_equations(expected: dict[str, np.ndarray]) -> None:
    rec = hrnn.Recommender.load(TINY)
    events = [
        {"event_type": str(k), "sent_at": float(t), "item_id": str(i)}
        for i, k, t in zip(
            expected["anon_items"], expected["anon_types"], expected["anon_times"], strict=True
        )
    ]
    # One event per call and all at once give the same state.
    for e in events[:3]:
        rec.put_events(session_id="anon", events=[e])
    rec.put_events(session_id="anon", events=events[3:])
    state, last = rec.state("anon")
    assert last == expected["anon_times"][-1]
    assert_close(state, expected["anon_state"], "anonymous state")
    assert_close(rec.scores("anon"), expected["anon_scores"], "anonymous scores")
    assert_close(rec.scores("anon", at=last + 700), expected["anon_scores_at"], "anonymous scores at")
    assert rec.stats()["events_unknown_item"] == 1


def test_training_user_continues_from_the_stored_state(expected: dict[str, np.ndarray]) -> None:
    rec = hrnn.Recommender.load(TINY)
    events = [
        {"event_type": str(k), "sent_at": float(t), "item_id": str(i)}
        for i, k, t in zip(
            expected["cont_items"], expected["cont_types"], expected["cont_times"], strict=True
        )
    ]
    rec.put_events(user_id="user1", session_id="s", events=events)
    assert_close(rec.state("user1")[0], expected["cont_state"], "continued state")
    assert_close(rec.scores("user1"), expected["cont_scores"], "continued scores")


def _training_available() -> bool:
    try:
        import torch  # noqa: F401

        from hrnn import train  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _training_available(), reason="needs torch and hrnn.train (pip install hrnn[train])")
@pytest.mark.parametrize("ensemble_size", [1, 2])
def test_engine_matches_torch_trained_model(tmp_path: Path, ensemble_size: int) -> None:
    rng = np.random.default_rng(3)
    rows = 1600
    times = 1_600_000_000 + np.cumsum(rng.choice([30, 600, 86_400], size=rows))
    data = hrnn.Interactions.from_arrays(
        [f"user{u}" for u in rng.integers(0, 40, size=rows)],
        [f"item{i}" for i in rng.zipf(1.4, size=rows) % 30],
        times,
        event_type=["buy" if r % 3 == 0 else "click" for r in range(rows)],
    )
    model = hrnn.train(
        data, hidden_dimension=32, bptt=8, epochs=1, seed=0, progress=False, ensemble_size=ensemble_size
    )
    assert len(model.training["members"]) == ensemble_size
    model.save(tmp_path / "model")
    rec = hrnn.Recommender.load(tmp_path / "model", max_events_per_call=100)

    # Stored training users: the engine reads out exactly what torch stored.
    for row, user in enumerate(model.user_ids[:5]):
        np.testing.assert_array_equal(rec.state(user)[0], model.user_states[row])

    # Fresh histories, run by torch (TrainedModel.score) and by the engine (put_events).
    item_ids = model.item_ids
    histories, ats = [], []
    for _ in range(6):
        times = 1_650_000_000 + np.cumsum(rng.choice([10, 600, 7200, 90_000], size=12))
        items = rng.choice(item_ids, size=12)
        types = rng.choice(["click", "buy"], size=12)
        histories.append([(str(i), int(t), str(k)) for i, t, k in zip(items, times, types, strict=True)])
        ats.append(int(times[-1]) + 2500)
    torch_now = model.score(histories)
    torch_later = model.score(histories, at=ats)
    for b, history in enumerate(histories):
        session = f"parity-{b}"
        rec.put_events(
            session_id=session,
            events=[{"event_type": k, "sent_at": t, "item_id": i} for i, t, k in history],
        )
        assert_close(rec.state(session)[0], torch_now.states[b], f"history {b} state")
        assert_close(rec.scores(session), torch_now.scores[b], f"history {b} scores")
        assert_close(rec.scores(session, at=ats[b]), torch_later.scores[b], f"history {b} scores at")
