"""hrnn.train end to end on tiny synthetic data: learning, data preparation, early stopping,
reproducibility, logging/progress, save/load and torch scoring."""

from __future__ import annotations

import copy
import io
import itertools
import logging
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hrnn  # noqa: E402
from hrnn import model_format as fmt  # noqa: E402
from hrnn._network.model import HRNN  # noqa: E402
from hrnn.training import _data, _step, _validation  # noqa: E402
from hrnn.training import _trainer as trainer  # noqa: E402
from hrnn.training import _windows as windows  # noqa: E402
from hrnn.training._batching import build_layout  # noqa: E402
from hrnn.training._distributed import resolve_device  # noqa: E402
from hrnn.training.config import Hyperparameters, TrainingConfig  # noqa: E402

T0 = 1_600_000_000
#: The click-like procedure, spelt out: the cyclic logs below repeat no (user, item) pair, so the
#: automatic settings would treat them as ratings (tests of those rules: test_training_config.py).
NEXT_ITEM: dict[str, Any] = {
    "target_window": 1,
    "loss_exclude_seen": False,
    "user_weight_exponent": 0.0,
    "validation_fraction": 0.1,
}
FAST: dict[str, Any] = {
    "hidden_dimension": 32,
    "epochs": 3,
    "progress": False,
    "learning_rate": 0.05,
    **NEXT_ITEM,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def cyclic_log(users: int = 60, length: int = 20, items: int = 30, seed: int = 0) -> dict[str, np.ndarray]:
    """Each user walks the item cycle i → i+1 from a random start; some gaps start new sessions."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users), length)
    start = rng.integers(0, items, users)
    item = (start[:, None] + np.arange(length)[None, :]).reshape(-1) % items
    gaps = rng.choice([20, 90, 4000], size=(users, length), p=[0.5, 0.4, 0.1])
    timestamp = (T0 + rng.integers(0, 500_000, users)[:, None] + np.cumsum(gaps, axis=1)).reshape(-1)
    event_type = np.where(rng.random(user.size) < 0.8, "click", "buy")
    return {"user": user, "item": item, "timestamp": timestamp, "event_type": event_type}


def interactions(log: dict[str, np.ndarray], order: np.ndarray | None = None) -> hrnn.Interactions:
    idx = np.arange(len(log["user"])) if order is None else order
    return hrnn.Interactions.from_arrays(
        log["user"][idx], log["item"][idx], log["timestamp"][idx], log["event_type"][idx]
    )


@pytest.fixture(scope="module")
def log() -> dict[str, np.ndarray]:
    return cyclic_log()


@pytest.fixture(scope="module")
def model(log: dict[str, np.ndarray]) -> hrnn.TrainedModel:
    torch.set_num_threads(1)
    return hrnn.train(interactions(log), **{**FAST, "epochs": 8})


def test_learns_the_sequential_pattern(model: hrnn.TrainedModel) -> None:
    history = [("4", T0), ("5", T0 + 20), ("6", T0 + 40)]
    scores = model.score([history]).scores
    assert model.item_ids[int(scores[0].argmax())] == "7"
    log_entries = model.training["history"]
    assert log_entries[-1]["loss"] < log_entries[0]["loss"]
    assert max(e["validation_mrr"] for e in log_entries) > 0.5


def test_same_seed_same_weights_on_cpu(log: dict[str, np.ndarray]) -> None:
    a = hrnn.train(interactions(log), **{**FAST, "seed": 3})
    b = hrnn.train(interactions(log), **{**FAST, "seed": 3})
    c = hrnn.train(interactions(log), **{**FAST, "seed": 4})
    for name in fmt.TENSOR_NAMES:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name])
    assert not np.array_equal(a.tensors[fmt.ITEM_EMBEDDING], c.tensors[fmt.ITEM_EMBEDDING])


def test_events_are_consumed_in_time_order_whatever_the_row_order(log: dict[str, np.ndarray]) -> None:
    # Rows in random order: every window still feeds each user's events oldest first, no shuffling.
    shuffled = np.random.default_rng(1).permutation(len(log["user"]))
    data = _data.prepare_data(interactions(log, shuffled), Hyperparameters(), TrainingConfig())
    sessions = data.sessions
    order = np.random.default_rng(2).permutation(sessions.num_users)
    layout = build_layout(data.starts[order], data.train_stop[order], 7, 32)
    user = sessions.user_index
    fed = 0
    for row, reset in zip(layout.position, layout.reset, strict=True):
        valid = row[row >= 0]
        same_user = (user[valid[1:]] == user[valid[:-1]]) & ~reset[1 : valid.size]
        assert np.all(np.diff(valid)[same_user] == 1)
        assert np.all(np.diff(sessions.timestamp[valid])[same_user] >= 0)
        fed += valid.size
    assert fed == int(np.sum(np.maximum(data.train_stop - data.starts, 0)))


def test_final_states_equal_scoring_each_history_alone(
    model: hrnn.TrainedModel, log: dict[str, np.ndarray]
) -> None:
    # The slot-batched pass over all users (a slot moves from user to user) equals running each
    # user on its own from h_0 = 0: nothing leaks between users in evaluation.
    histories = []
    for uid in model.user_ids[:12]:
        rows = np.flatnonzero(log["user"] == int(uid))
        rows = rows[np.argsort(log["timestamp"][rows], kind="stable")]
        histories.append(
            [(str(log["item"][r]), int(log["timestamp"][r]), str(log["event_type"][r])) for r in rows]
        )
    scored = model.score(histories)
    np.testing.assert_allclose(scored.states, model.user_states[:12], rtol=1e-4, atol=1e-5)
    assert scored.scores.shape == (12, len(model.item_ids))
    np.testing.assert_allclose(scored.scores.sum(axis=1), 1.0, rtol=1e-5)


def test_training_slots_do_not_leak_between_users(log: dict[str, np.ndarray]) -> None:
    # One training window where a slot runs user A then user B: B's loss has no gradient w.r.t.
    # the items only A saw, and B's states equal a run of B alone.
    hyper, config = (
        Hyperparameters(hidden_dimension=32),
        TrainingConfig(dropout_embedding=0.0, dropout_hidden=0.0),
    )
    data = _data.prepare_data(interactions(log), hyper, config)
    torch.manual_seed(0)
    net = HRNN(data.sessions.num_items, 2, 32)
    starts, ends = data.starts, data.ends
    layout = build_layout(starts[[0, 1]], ends[[0, 1]] - 1, num_slots=1, bptt=40)
    window = layout.window(0, data.features)
    batch = windows.to_device(window, torch.device("cpu"))
    states, _ = net.run(batch["item"], batch["event_type"], batch["time"], torch.zeros(1, 32), batch["reset"])
    b_first = int(np.flatnonzero(window.reset[:, 0])[1])
    b_steps = int(np.count_nonzero(window.position[:, 0] >= 0)) - b_first
    alone, _ = net.run(
        batch["item"][b_first : b_first + b_steps],
        batch["event_type"][b_first : b_first + b_steps],
        batch["time"][b_first : b_first + b_steps],
        torch.zeros(1, 32),
    )
    torch.testing.assert_close(states[b_first : b_first + b_steps], alone)
    states[b_first : b_first + b_steps].sum().backward()
    a_only = set(window.item[:b_first, 0].tolist()) - set(window.item[b_first:, 0].tolist())
    grad = net.item_embedding.weight.grad
    assert grad is not None and a_only
    assert torch.all(grad[sorted(a_only)] == 0)


def test_preparation_selects_filters_and_checks() -> None:
    log = cyclic_log(users=150)
    data = interactions(log)
    settings = {"epochs": 1, "event_type": "click", "max_user_history_length_percentile": 0.7}
    m = hrnn.train(data, **{**FAST, **settings})
    summary = m.meta["data_summary"]
    rules = [d["rule"] for d in summary["report"]["drops"]]
    assert len(rules) == 2
    assert summary["rows"] < int(np.count_nonzero(log["event_type"] == "click"))
    assert m.hyperparameters["max_user_history_length_percentile"] == 0.7
    with pytest.raises(hrnn.InsufficientDataError):
        hrnn.train(interactions(cyclic_log(users=20)), **FAST)


def test_recency_mask_sets_the_target_weights(log: dict[str, np.ndarray]) -> None:
    data = interactions(log)
    config = TrainingConfig(**{**NEXT_ITEM, "recency_half_life": 3600.0, "validation_fraction": 0.0})
    on = _data.prepare_data(data, Hyperparameters(), config)
    off = _data.prepare_data(data, Hyperparameters(recency_mask=False), config)
    ts = on.sessions.timestamp
    np.testing.assert_allclose(on.features.weight, 0.5 ** ((ts.max() - ts) / 3600.0), rtol=1e-5, atol=1e-30)
    np.testing.assert_array_equal(off.features.weight, np.ones(len(ts)))
    default = _data.prepare_data(data, Hyperparameters(), TrainingConfig(**NEXT_ITEM))
    assert default.half_life == pytest.approx(ts.max() - ts.min())
    # Validation targets are never trained on.
    assert np.all(default.features.weight[default.validation_weight > 0] == 0)


def test_user_weight_exponent_divides_by_history_length(log: dict[str, np.ndarray]) -> None:
    keep = np.ones(len(log["user"]), dtype=bool)
    keep[(log["user"] == 0) & (np.arange(len(keep)) % 20 >= 5)] = False  # user 0: 5 events
    data = interactions({k: v[keep] for k, v in log.items()})
    hyper = Hyperparameters(recency_mask=False)
    flat = _data.prepare_data(data, hyper, TrainingConfig(**{**NEXT_ITEM, "validation_fraction": 0.0}))
    config = TrainingConfig(**{**NEXT_ITEM, "validation_fraction": 0.0, "user_weight_exponent": 1.0})
    equal = _data.prepare_data(data, hyper, config)
    np.testing.assert_array_equal(flat.features.weight, np.ones(len(flat.sessions)))
    # every user has the same total weight over its targets (events 1 … n−1 of n)
    per_user = np.bincount(equal.sessions.user_index, weights=equal.features.weight)
    targets = np.diff(equal.sessions.user_offsets) - 1
    np.testing.assert_allclose(per_user, (targets + 1) / targets, rtol=1e-6)


def test_validation_exclude_seen_is_on_without_repeated_pairs(log: dict[str, np.ndarray]) -> None:
    keep_all = Hyperparameters(max_user_history_length_percentile=1.0)
    assert _data.prepare_data(interactions(log), keep_all, TrainingConfig()).validation_exclude_seen
    repeated = {k: np.concatenate([v, v[:1]]) for k, v in log.items()}  # user 0 sees an item again
    repeated["timestamp"][-1] = log["timestamp"].max() + 10
    data = interactions(repeated)
    assert not _data.prepare_data(data, keep_all, TrainingConfig()).validation_exclude_seen
    forced = TrainingConfig(validation_exclude_seen=True)
    assert _data.prepare_data(data, keep_all, forced).validation_exclude_seen


def test_evaluate_holdout_matches_a_direct_computation(
    model: hrnn.TrainedModel, log: dict[str, np.ndarray]
) -> None:
    data = interactions(log)
    prepared = _data.prepare_data(
        data, Hyperparameters(), TrainingConfig(**{**NEXT_ITEM, "validation_fraction": 0.0})
    )
    sessions, features = prepared.sessions, prepared.features
    assert model.item_ids == list(sessions.item_ids)  # the same item indices
    module = model.module
    users = np.arange(10)
    starts, ends = sessions.user_offsets[users], sessions.user_offsets[users + 1]
    stops = ends - 3
    cpu = torch.device("cpu")
    for exclude in (False, True):
        got = _validation.evaluate_holdout(
            module, features, starts, stops, ends, cpu, cutoff=4, exclude_seen=exclude
        )
        reciprocal, precision = [], []
        for a, b, e in zip(starts, stops, ends, strict=True):
            ids, types = sessions.item_ids, sessions.event_types
            history = [
                (ids[sessions.item_index[p]], int(sessions.timestamp[p]), types[sessions.event_type[p]])
                for p in range(a, b)
            ]
            scores = model.score([history], at=[int(sessions.timestamp[b])]).scores[0].astype(np.float64)
            if exclude:
                scores[sessions.item_index[a:b]] = -np.inf  # the model's item indices are the sessions'
            top = np.argsort(-scores, kind="stable")[:4]
            hit = np.isin(top, sessions.item_index[b:e])
            first = np.flatnonzero(hit)
            reciprocal.append(1.0 / (first[0] + 1) if first.size else 0.0)
            precision.append(hit.sum() / 5.0)
        assert got["users"] == 10
        assert got["mrr"] == pytest.approx(np.mean(reciprocal), abs=1e-9)
        assert got["precision_at_5"] == pytest.approx(np.mean(precision), abs=1e-9)


def test_weight_average_is_what_is_exported(log: dict[str, np.ndarray]) -> None:
    settings = {**FAST, "epochs": 2, "validation_fraction": 0.0}
    raw = hrnn.train(interactions(log), **{**settings, "weight_average_decay": 0.0})
    averaged = hrnn.train(interactions(log), **{**settings, "weight_average_decay": 0.99})
    again = hrnn.train(interactions(log), **{**settings, "weight_average_decay": 0.99})
    for name in fmt.TENSOR_NAMES:
        np.testing.assert_array_equal(averaged.tensors[name], again.tensors[name])
    # same training trajectory, but the export is the average, not the last step's weights
    assert not np.array_equal(raw.tensors[fmt.ITEM_EMBEDDING], averaged.tensors[fmt.ITEM_EMBEDDING])
    assert all(np.isfinite(averaged.tensors[fmt.OUTPUT_WEIGHT]).ravel())


def test_early_stopping_restores_the_best_epoch(
    log: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted = iter([0.1, 0.5, 0.2, 0.3, 0.4, 0.9])
    snapshots: list[dict[str, Any]] = []

    def fake_evaluate(model: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
        snapshots.append(copy.deepcopy(model.state_dict()))
        return {"mrr": next(scripted), "precision_at_5": 0.0, "recall": 0.0, "users": 1.0}

    monkeypatch.setattr(trainer, "evaluate_holdout", fake_evaluate)
    m = hrnn.train(interactions(log), **{**FAST, "epochs": 6, "patience": 3})
    assert m.training["epochs_trained"] == 5  # epochs 3, 4, 5 did not beat epoch 2
    assert m.training["best_epoch"] == 2
    np.testing.assert_array_equal(
        m.tensors[fmt.ITEM_EMBEDDING], snapshots[1]["item_embedding.weight"].numpy()
    )


@pytest.mark.parametrize("settings", [{"full_softmax_max_items": 0}, {"loss": "bpr-max"}])
def test_sampled_losses_train(log: dict[str, np.ndarray], settings: dict[str, Any]) -> None:
    m = hrnn.train(interactions(log), **{**FAST, "num_negatives": 16, **settings})
    entries = m.training["history"]
    assert entries[-1]["loss"] < entries[0]["loss"]
    assert all(np.isfinite(m.tensors[fmt.OUTPUT_WEIGHT]).ravel())


def test_progress_bar_and_throughput_logging(
    log: dict[str, np.ndarray], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    with caplog.at_level(logging.INFO, logger="hrnn"), pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stderr", terminal)
        hrnn.train(interactions(log), **{**FAST, "epochs": 2, "progress": True})
    assert "events/s" in caplog.text
    bar = terminal.getvalue()
    # one bar for the whole run: epoch, loss, events/s, the last validation metric, an ETA
    assert "epoch 2/2" in bar and "loss " in bar and "events/s" in bar
    assert re.search(r"validation MRR@25 0\.\d{4}", bar) and "<" in bar
    # not a terminal (pytest's capture): no bar even with progress on, so logs stay clean
    hrnn.train(interactions(log), **{**FAST, "epochs": 1, "progress": True})
    hrnn.train(interactions(log), **{**FAST, "epochs": 1})
    assert capsys.readouterr().err == ""


def test_device_auto_is_cpu_without_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device: 'cuda' requested but CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="device: expected"):
        resolve_device("tpu-ish")


def test_save_load_round_trip(model: hrnn.TrainedModel, log: dict[str, np.ndarray], tmp_path: Path) -> None:
    path = model.save(tmp_path / "model")
    read = fmt.read_model_dir(path)
    meta = read.meta
    assert meta["format"] == "hrnn-model" and meta["format_version"] == 2
    assert meta["hyperparameters"]["hidden_dimension"] == 32
    assert meta["training"]["epochs"] == 8 and "learning_rate" in meta["training"]
    assert meta["session_timeout"] == 1800 and meta["history_limit"] == 100
    assert sorted(meta["event_types"]) == ["buy", "click"]
    assert meta["data_summary"]["report"]["rows"] == meta["data_summary"]["rows"]
    assert meta["hrnn_version"] == hrnn.__version__
    # Popularity: distinct users per item; histories: each user's items, oldest first.
    pop = read.tensors[fmt.ITEMS_POPULARITY]
    pairs = {(u, i) for u, i in zip(log["user"].tolist(), log["item"].tolist(), strict=True)}
    assert pop.sum() == len(pairs)
    for item_id, count in zip(model.item_ids, pop.tolist(), strict=True):
        assert count == len({u for u, i in pairs if i == int(item_id)})
    offsets, items = read.tensors[fmt.USERS_HISTORY_OFFSETS], read.tensors[fmt.USERS_HISTORY_ITEMS]
    assert np.all(np.diff(offsets) == 20)
    # Seen sets: every distinct (item, event type) of each user's training events.
    seen_offsets = read.tensors[fmt.USERS_SEEN_OFFSETS]
    seen_items, seen_types = read.tensors[fmt.USERS_SEEN_ITEMS], read.tensors[fmt.USERS_SEEN_EVENT_TYPES]
    user_row = {u: r for r, u in enumerate(model.user_ids)}
    for u in ("0", "17"):
        r = user_row[u]
        span = slice(seen_offsets[r], seen_offsets[r + 1])
        pairs = zip(seen_items[span], seen_types[span], strict=True)
        got = {(model.item_ids[i], meta["event_types"][k]) for i, k in pairs}
        mine = log["user"] == int(u)
        want = zip(log["item"][mine].astype(str).tolist(), log["event_type"][mine].tolist(), strict=True)
        assert got == set(want)
    first = [model.item_ids[i] for i in items[offsets[0] : offsets[1]]]
    assert all((int(b) - int(a)) % 30 == 1 for a, b in itertools.pairwise(first))
    loaded = hrnn.TrainedModel.load(path)
    history = [[("3", T0), ("4", T0 + 50)], []]
    np.testing.assert_array_equal(loaded.score(history).scores, model.score(history).scores)


def test_score_reads_out_at_the_query_time(model: hrnn.TrainedModel) -> None:
    history = [("3", T0), ("4", T0 + 50)]
    items = np.array(["3", "4"])
    stamps = np.array([T0, T0 + 50])
    plain = model.score([history, history, (items, stamps)], at=[None, T0 + 50, T0 + 86_400])
    np.testing.assert_array_equal(plain.scores[0], plain.scores[1])  # at = last event ⇔ Δq = 0
    assert not np.allclose(plain.scores[0], plain.scores[2])
    np.testing.assert_array_equal(plain.states[0], plain.states[2])
    with pytest.raises(ValueError, match=r"histories\[0\]\[1\]: unknown item id 'nope'"):
        model.score([[("3", T0), ("nope", T0 + 1)]])
    with pytest.raises(ValueError, match="at: expected 1 query times"):
        model.score([history], at=[1, 2])


def test_unknown_event_type_contributes_nothing(model: hrnn.TrainedModel) -> None:
    a = model.score([[("3", T0, "never-seen")]]).states
    net = model.module
    with torch.no_grad():
        x = net.item_embedding.weight[model.item_ids.index("3")]
        u = torch.cat([x, torch.tensor([0.0, 1.0])])
        d = torch.sigmoid(net.discount(u))
        h = net.gru(u[None], (d * 0)[None])
    np.testing.assert_allclose(a[0], h[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("settings", [{}, {"full_softmax_max_items": 0, "num_negatives": 16}])
def test_target_window_trains_on_the_next_events(
    log: dict[str, np.ndarray], settings: dict[str, Any]
) -> None:
    seen: list[dict[str, torch.Tensor]] = []
    forward = _step.TrainingStep.forward

    def spy(self, batch, *args):  # type: ignore[no-untyped-def]
        seen.append(batch)
        return forward(self, batch, *args)

    base = {**FAST, "epochs": 2, **settings}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_step.TrainingStep, "forward", spy)
        one = hrnn.train(interactions(log), **base)
        assert all("window_target" not in batch for batch in seen)  # target_window=1: the next-item path
        seen.clear()
        m = hrnn.train(interactions(log), **{**base, "target_window": 3, "target_window_decay": 0.5})
    assert seen and all(batch["window_target"].shape[-1] == 3 for batch in seen)
    # the cycle i → i+1: the window's j-th target of an input is its item + j
    batch = seen[0]
    rows = batch["window_weight"] > 0
    ids = np.asarray([int(item) for item in m.item_ids])
    ahead = (ids[batch["window_target"].numpy()] - ids[batch["item"].numpy()][..., None]) % 30
    np.testing.assert_array_equal(
        ahead[rows.numpy()], np.broadcast_to(np.arange(1, 4), ahead.shape)[rows.numpy()]
    )
    assert m.training["target_window"] == 3
    history = m.training["history"]
    assert np.isfinite(history[-1]["loss"]) and history[-1]["loss"] < history[0]["loss"]
    assert not np.array_equal(m.tensors[fmt.ITEM_EMBEDDING], one.tensors[fmt.ITEM_EMBEDDING])


def test_loss_exclude_seen_masks_each_rows_earlier_items(log: dict[str, np.ndarray]) -> None:
    data = interactions(log)
    config = TrainingConfig(loss_exclude_seen=True)
    prepared = _data.prepare_data(data, Hyperparameters(hidden_dimension=32), config)
    assert prepared.loss_exclude_seen
    # auto: on exactly when no (user, item) pair repeats (the cyclic log of 20 steps over 30 items has none)
    assert _data.prepare_data(
        data, Hyperparameters(), TrainingConfig(loss_exclude_seen=None)
    ).loss_exclude_seen
    assert not _data.prepare_data(data, Hyperparameters(), TrainingConfig(**NEXT_ITEM)).loss_exclude_seen
    features, starts = prepared.features, prepared.starts
    user_start = np.repeat(starts, prepared.ends - starts)
    layout = build_layout(starts, prepared.train_stop, 4, 8)
    batches = list(windows.windows(layout, features, torch.device("cpu"), user_start=user_start))
    for index, batch in enumerate(batches):
        window = layout.window(index, features)
        position = window.position.reshape(-1)[batch["rows"].numpy()]
        rows, items = batch["seen_row"].numpy(), batch["seen_item"].numpy()
        for r, p in enumerate(position):
            expected = features.item[user_start[p] : p + 1]
            np.testing.assert_array_equal(np.sort(items[rows == r]), np.sort(expected))
    # the masked logits: earlier items at −∞, the target kept even if it was seen before
    batch = batches[0]
    logits = torch.zeros(int(batch["rows"].numel()), prepared.sessions.num_items)
    target = batch["target"].flatten()[batch["rows"]].unsqueeze(1)
    batch = {**batch, "seen_item": torch.cat([batch["seen_item"][:-1], target[-1]])}
    masked = _step._mask_seen(logits, batch, target, torch.ones(target.shape))
    assert torch.isinf(masked[batch["seen_row"][:-1], batch["seen_item"][:-1]]).all()
    assert torch.isfinite(masked.gather(1, target)).all()
    m = hrnn.train(data, **{**FAST, "epochs": 2, "loss_exclude_seen": True, "target_window": 2})
    assert m.training["loss_exclude_seen_used"]
    assert np.isfinite(m.training["history"][-1]["loss"])


def test_ensemble_members_train_with_their_own_seeds_and_merge(log: dict[str, np.ndarray]) -> None:
    data = interactions(log)
    settings = {**FAST, "epochs": 2, "validation_fraction": 0.0}
    ensemble = hrnn.train(data, **{**settings, "ensemble_size": 2})  # two members of width 32
    members = ensemble.training["members"]
    assert [m["seed"] for m in members] == [0, trainer.member_seed(0, 1)] and members[1]["seed"] != 0
    assert [m["epochs_trained"] for m in members] == [2, 2]
    assert [e["member"] for e in ensemble.training["history"]] == [0.0, 0.0, 1.0, 1.0]
    # Member 0 is exactly the single model with the same seed.
    alone = hrnn.train(data, **settings)  # width 32
    e, a = ensemble.tensors, alone.tensors
    np.testing.assert_array_equal(e[fmt.ITEM_EMBEDDING][:, :32], a[fmt.ITEM_EMBEDDING])
    np.testing.assert_array_equal(e[fmt.GRU_WEIGHT_HH][:32, :32], a[fmt.GRU_WEIGHT_HH][:32])
    np.testing.assert_allclose(e[fmt.OUTPUT_WEIGHT][:, :32], a[fmt.OUTPUT_WEIGHT] / 2, rtol=1e-6)
    np.testing.assert_allclose(e[fmt.USERS_STATE][:, :32], a[fmt.USERS_STATE], rtol=1e-5, atol=1e-6)
    # Member 1 is a different model (its own seed), and the export is one width-64 model.
    assert not np.allclose(e[fmt.ITEM_EMBEDDING][:, 32:], a[fmt.ITEM_EMBEDDING])
    assert e[fmt.USERS_STATE].shape[1] == 64 and ensemble.hidden_dimension == 64
    assert ensemble.training["member_hidden_dimension"] == 32 == alone.training["member_hidden_dimension"]
