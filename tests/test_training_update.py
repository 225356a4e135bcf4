"""UPDATE training (``training_mode="update"``): continuing from a base model, new items, kept
items, matching hyperparameters, and every user's state recomputed from the whole history."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import hrnn
from hrnn import model_format as fmt
from hrnn._demo_data import demo_interactions
from hrnn.training import Hyperparameters, TrainingConfig
from hrnn.training._data import prepare_data
from hrnn.training._update import Base, full_dropout, update_config

pytestmark = pytest.mark.slow  # each test trains


def _subset(data: hrnn.Interactions, mask: np.ndarray) -> hrnn.Interactions:
    return hrnn.Interactions.from_arrays(**{k: v[mask] for k, v in data.to_arrays().items()})


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The demo log: a base model on its older 85%, and the whole log with one new item added."""
    data = demo_interactions(seed=5)
    columns = data.to_arrays()
    t = columns["timestamp"]
    cut = int(np.quantile(t, 0.85))
    old = _subset(data, t <= cut)
    base = hrnn.train(old, epochs=2, seed=0, progress=False)
    path = base.save(tmp_path_factory.mktemp("update") / "base")
    # the newest rows plus a brand-new item, clicked by a user after the cut
    newest_user = columns["user_id"][t > cut][0]
    extra = {
        "user_id": np.asarray([newest_user] * 3, dtype=object),
        "item_id": np.asarray(["brand-new", "item-1", "brand-new"], dtype=object),
        "timestamp": np.asarray([t.max() + 60, t.max() + 120, t.max() + 180]),
    }
    whole = hrnn.Interactions.from_arrays(**{k: np.concatenate([columns[k], extra[k]]) for k in extra})
    return {"base": base, "path": path, "whole": whole, "cut": cut, "old": old}


def test_an_update_continues_from_the_base_and_serves_every_user(days: dict[str, object]) -> None:
    base, whole = days["base"], days["whole"]
    assert isinstance(base, hrnn.TrainedModel) and isinstance(whole, hrnn.Interactions)
    updated = hrnn.train(whole, init_from=days["path"], training_mode="UPDATE", epochs=1, progress=False)
    # the automatic schedule: a tenth of the 30 epochs a FULL training plans on click data
    automatic = hrnn.train(whole, init_from=days["path"], training_mode="update", progress=False)
    assert automatic.training["update"]["epochs"] == automatic.training["epochs"] == 3
    # ... at 1.25x a FULL training's automatic learning rate, holding out nothing for validation
    full_rate = prepare_data(whole, Hyperparameters(), TrainingConfig()).config.learning_rate
    assert automatic.training["learning_rate"] == automatic.training["update"]["learning_rate"]
    assert automatic.training["learning_rate"] == pytest.approx(1.25 * full_rate, rel=1e-4)
    assert automatic.training["validation_fraction"] == 0.0
    assert not any("validation_mrr" in entry for entry in automatic.training["history"])
    # ... at half the base's dropout (automatic), recorded with the FULL dropout it halves
    assert (automatic.training["dropout_embedding"], automatic.training["dropout_hidden"]) == (0.1, 0.2)
    assert {"dropout_embedding", "dropout_hidden"} <= set(automatic.training["automatic"])
    assert automatic.training["update"]["full_dropout"] == {"dropout_embedding": 0.2, "dropout_hidden": 0.4}
    info = updated.training["update"]
    newer = int((whole.columns()["timestamp"] > int(days["cut"])).sum())  # type: ignore[call-overload]
    # (the percentile filter keeps the heaviest users out of training, new events or not)
    assert 0.8 * newer < info["events_after_cutoff"] <= newer
    assert info["epochs"] == 1  # given; the automatic UPDATE schedule is a tenth of FULL's
    assert info["new_items"] == 1 and info["known_items"] == base.tensors[fmt.ITEM_EMBEDDING].shape[0]
    assert updated.hyperparameters["hidden_dimension"] == base.hyperparameters["hidden_dimension"]
    # Every user of the whole history has a state (the inactive ones recomputed, not copied).
    assert set(updated.user_ids) == set(base.user_ids) | set(whole.user_ids)
    assert "brand-new" in updated.item_ids
    row = updated.user_ids.index(base.user_ids[0])
    assert not np.array_equal(updated.user_states[row], base.user_states[0])
    # Known items moved on from the base's weights (a warm start, not a copy and not a restart).
    known = [updated.item_ids.index(i) for i in base.item_ids[:20]]
    before = base.tensors[fmt.ITEM_EMBEDDING][:20]
    after = updated.tensors[fmt.ITEM_EMBEDDING][known]
    assert 0 < np.abs(after - before).max() < 0.5 * np.abs(before).max()


def test_absent_items_are_kept_unless_asked_and_hyperparameters_must_match(days: dict[str, object]) -> None:
    base, old = days["base"], days["old"]
    assert isinstance(base, hrnn.TrainedModel) and isinstance(old, hrnn.Interactions)
    gone = base.item_ids[-1]
    columns = old.to_arrays()
    keep = columns["item_id"] != gone
    # one event after the cut so there is something to update
    later = {k: np.concatenate([v[keep], v[:1]]) for k, v in columns.items()}
    later["timestamp"][-1] = int(days["cut"]) + 3600  # type: ignore[call-overload]
    data = hrnn.Interactions.from_arrays(**later)
    kept = hrnn.train(data, init_from=base, training_mode="update", epochs=1, progress=False)
    assert gone in kept.item_ids and kept.training["update"]["absent_items_kept"] == 1
    j, k = kept.item_ids.index(gone), base.item_ids.index(gone)
    np.testing.assert_array_equal(kept.tensors[fmt.OUTPUT_WEIGHT][j], base.tensors[fmt.OUTPUT_WEIGHT][k])
    dropped = hrnn.train(
        data, init_from=base, training_mode="update", keep_absent_items=False, epochs=1, progress=False
    )
    assert gone not in dropped.item_ids
    with pytest.raises(ValueError, match="hidden_dimension: UPDATE training keeps the base model's value 43"):
        hrnn.train(data, init_from=base, training_mode="update", hidden_dimension=64, progress=False)
    with pytest.raises(ValueError, match="init_from"):
        hrnn.train(data, training_mode="update", progress=False)
    with pytest.raises(ValueError, match="init_from"):
        hrnn.train(data, init_from=base, progress=False)
    with pytest.raises(ValueError, match="no events after the base model's training cut-off"):
        hrnn.train(old, init_from=base, training_mode="update", epochs=1, progress=False)


def test_update_from_the_command_line_then_swap(days: dict[str, object], tmp_path: Path) -> None:
    whole = days["whole"]
    assert isinstance(whole, hrnn.Interactions)
    csv = tmp_path / "whole.csv"
    frame = whole.to_arrays()
    lines = ["USER_ID,ITEM_ID,TIMESTAMP"] + [
        f"{u},{i},{t}" for u, i, t in zip(frame["user_id"], frame["item_id"], frame["timestamp"], strict=True)
    ]
    csv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "updated"
    done = subprocess.run(
        [sys.executable, "-m", "hrnn", "--quiet", "train", str(csv), "--out", str(out), "--epochs", "1",
         "--init-from", str(days["path"]), "--training-mode", "update"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = json.loads((out / "model.json").read_text())
    assert meta["training"]["update"]["mode"] == "update"
    log = tmp_path / "events.log"
    with hrnn.Recommender.load(days["path"], event_log=log) as rec:  # type: ignore[arg-type]
        event = {
            "event_type": "click",
            "sent_at": int(whole.columns()["timestamp"].max()) + 999,
            "item_id": "item-2",
        }
        rec.put_events(user_id="someone", session_id="s", events=[event])
        report = rec.swap(out)
        assert report.events_replayed == 1
        assert rec.recommend("someone", 3).personalized
        assert "brand-new" in rec.item_ids


def test_a_new_item_starts_where_its_occurrences_put_it(days: dict[str, object]) -> None:
    """A new item's row is fitted to what the base predicts before it (and against everything else),
    so it is recommended after the item that leads to it — not everywhere, and not at random."""
    base, old = days["base"], days["old"]
    assert isinstance(base, hrnn.TrainedModel) and isinstance(old, hrnn.Interactions)
    columns = old.to_arrays()
    start = int(columns["timestamp"].max()) + 3600
    lead, other = base.item_ids[10], base.item_ids[11]
    users = [f"newcomer-{k}" for k in range(40)]
    extra = {
        "user_id": np.repeat(np.asarray(users, dtype=object), 2),
        "item_id": np.asarray([lead, "fresh"] * len(users), dtype=object),
        "timestamp": start + np.arange(2 * len(users)) * 60,
    }
    data = hrnn.Interactions.from_arrays(**{k: np.concatenate([columns[k], extra[k]]) for k in extra})
    # a learning rate of ~0: what the model recommends is the warm start itself
    started = hrnn.train(
        data, init_from=base, training_mode="update", epochs=1, learning_rate=1e-12, progress=False
    )
    assert started.training["update"]["new_items"] == 1
    assert started.training["update"]["new_item_occurrences_fitted"] > 0
    fresh = started.item_ids.index("fresh")
    scored = started.score([[(lead, start)], [(other, start)]], at=[start + 60, start + 60]).scores
    rank_after_lead = int((scored[0] > scored[0, fresh]).sum())
    rank_after_other = int((scored[1] > scored[1, fresh]).sum())
    assert rank_after_lead < 3, rank_after_lead
    assert rank_after_other > rank_after_lead + 10, (rank_after_lead, rank_after_other)


def test_an_update_halves_the_full_trainings_dropout_once(days: dict[str, object]) -> None:
    base = days["base"]
    assert isinstance(base, hrnn.TrainedModel)
    automatic = TrainingConfig()
    full = TrainingConfig(dropout_embedding=0.2, dropout_hidden=0.4, learning_rate=0.02)
    halved = update_config(full_dropout(Base(base, "base"), full), automatic, full)
    assert (halved.dropout_embedding, halved.dropout_hidden, halved.learning_rate) == (0.1, 0.2, 0.025)
    # a value the user gives is kept
    given = TrainingConfig(dropout_hidden=0.3, learning_rate=0.02)
    resolved = replace(full, dropout_hidden=0.3)
    kept = update_config(full_dropout(Base(base, "base"), full), given, resolved)
    assert (kept.dropout_embedding, kept.dropout_hidden, kept.learning_rate) == (0.1, 0.3, 0.02)
    # a base that is an UPDATE itself: half the FULL training's it descends from, not half again
    meta = copy.deepcopy(base.meta)
    meta["training"].update(
        dropout_embedding=0.1,
        dropout_hidden=0.2,
        update={"full_dropout": {"dropout_embedding": 0.2, "dropout_hidden": 0.4}},
    )
    chained_base = Base(hrnn.TrainedModel(base.tensors, meta), "updated")
    chained = update_config(full_dropout(chained_base, full), automatic, full)
    assert (chained.dropout_embedding, chained.dropout_hidden) == (0.1, 0.2)
    # a base trained FULL with its own dropout: half of that
    meta = copy.deepcopy(base.meta)
    meta["training"].update(dropout_embedding=0.3, dropout_hidden=0.5)
    own_base = Base(hrnn.TrainedModel(base.tensors, meta), "own")
    own = update_config(full_dropout(own_base, full), automatic, full)
    assert (own.dropout_embedding, own.dropout_hidden) == (0.15, 0.25)
