"""Hyperparameters and training settings: the recipe's names, defaults, ranges and error messages."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest

import hrnn
from hrnn.training.config import Hyperparameters, TrainingConfig
from hrnn.training.procedure import DataShape, resolve


def test_recipe_defaults() -> None:
    h = Hyperparameters()
    assert h.to_dict() == {
        "hidden_dimension": 43,
        "bptt": 32,
        "recency_mask": True,
        "min_user_history_length_percentile": 0.0,
        "max_user_history_length_percentile": 0.99,
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("hidden_dimension", 31, "hidden_dimension: expected a value in [32, 256], found 31"),
        ("hidden_dimension", 257, "hidden_dimension: expected a value in [32, 256], found 257"),
        ("bptt", 1, "bptt: expected a value in [2, 32], found 1"),
        ("bptt", 33, "bptt: expected a value in [2, 32], found 33"),
        (
            "min_user_history_length_percentile",
            -0.1,
            "min_user_history_length_percentile: expected a value in [0.0, 1.0]",
        ),
        (
            "max_user_history_length_percentile",
            1.5,
            "max_user_history_length_percentile: expected a value in [0.0, 1.0]",
        ),
    ],
)
def test_hyperparameter_out_of_range(name: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Hyperparameters(**{name: value})
    # hrnn.train validates before it touches the data (or imports torch).
    with pytest.raises(ValueError, match=re.escape(message)):
        hrnn.train(None, **{name: value})  # type: ignore[arg-type]


def test_percentiles_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="min_user_history_length_percentile: expected a value ≤ max"):
        Hyperparameters(min_user_history_length_percentile=0.9, max_user_history_length_percentile=0.5)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("hidden_dimension", 43.0, "hidden_dimension: expected an int"),
        ("bptt", True, "bptt: expected an int"),
        ("recency_mask", 1, "recency_mask: expected True or False"),
    ],
)
def test_hyperparameter_wrong_type(name: str, value: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Hyperparameters(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("epochs", 0, "epochs: expected a value in [1, 10000]"),
        ("learning_rate", 0.0, "learning_rate: expected a value in (0.0, 10.0]"),
        ("loss", "hinge", "loss: expected one of cross-entropy, bpr-max"),
        ("sample_alpha", 2.0, "sample_alpha: expected a value in [0.0, 1.0]"),
        ("dropout_hidden", 1.0, "dropout_hidden: expected a value in [0.0, 0.999]"),
        ("recency_half_life", 0.0, "recency_half_life: expected a value in (0.0, inf)"),
        ("validation_fraction", 0.7, "validation_fraction: expected a value in [0.0, 0.5]"),
        ("user_weight_exponent", 1.5, "user_weight_exponent: expected a value in [0.0, 1.0]"),
        ("session_timeout", -1, "session_timeout: expected a value in [0, 10000000000]"),
        ("batch_size", 0, "batch_size: expected a value in [1, 65536]"),
        ("target_window", 0, "target_window: expected a value in [1, 1024]"),
        ("target_window_decay", 0.0, "target_window_decay: expected a value in (0.0, 1.0]"),
        ("ensemble_size", 0, "ensemble_size: expected a value in [1, 32]"),
    ],
)
def test_training_setting_out_of_range(name: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainingConfig(**{name: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        hrnn.train(None, **{name: value})  # type: ignore[arg-type]


def test_target_window_needs_cross_entropy() -> None:
    assert TrainingConfig().target_window is None  # automatic
    TrainingConfig(target_window=4, full_softmax_max_items=0)  # sampled softmax: fine
    with pytest.raises(ValueError, match=re.escape("target_window: expected 1 with loss='bpr-max', found 4")):
        TrainingConfig(target_window=4, loss="bpr-max")


def shape(events: int, longest: int = 100, repeats: bool = False) -> DataShape:
    return DataShape(events=events, users=events // 10, longest_user=longest, repeats=repeats)


def test_batch_size_rule() -> None:
    assert shape(1_000).batch_size == 16
    assert shape(66_064, longest=18).batch_size == 66  # RSC15-100k: one slot per 1000 events
    assert shape(87_780, longest=1_349).batch_size == 65  # MovieLens: no slot shorter than a history
    assert shape(10_000_000).batch_size == 256
    assert resolve(TrainingConfig(batch_size=7), shape(10_000_000)).batch_size == 7


def test_automatic_settings_follow_the_kind_of_data() -> None:
    ratings = resolve(TrainingConfig(), shape(80_000, repeats=False))
    clicks = resolve(TrainingConfig(), shape(80_000, repeats=True))
    assert (ratings.target_window, ratings.loss_exclude_seen, ratings.validation_exclude_seen) == (
        16,
        True,
        True,
    )
    assert (ratings.user_weight_exponent, ratings.validation_fraction, ratings.epochs) == (0.5, 0.0, 16)
    assert (clicks.target_window, clicks.loss_exclude_seen, clicks.validation_exclude_seen) == (
        1,
        False,
        False,
    )
    assert (clicks.user_weight_exponent, clicks.validation_fraction, clicks.epochs) == (0.0, 0.1, 30)
    assert ratings.learning_rate == pytest.approx(0.01 * (80 / 16) ** 0.5, rel=1e-4)
    assert clicks.learning_rate == pytest.approx(0.015 * (80 / 16) ** 0.5, rel=1e-4)
    assert (ratings.plateau_decay, clicks.plateau_decay) == (1.0, 0.5)
    # what the user gave stays; a window is only automatic with the cross-entropy loss
    given = resolve(TrainingConfig(target_window=4, epochs=3, learning_rate=0.5), shape(80_000))
    assert (given.target_window, given.epochs, given.learning_rate) == (4, 3, 0.5)
    assert resolve(TrainingConfig(loss="bpr-max"), shape(80_000)).target_window == 1
    assert None not in (getattr(ratings, name) for name in ("batch_size", "loss_exclude_seen"))


def test_train_without_torch_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import hrnn\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n"
        "    hrnn.train(None)\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install "hrnn[train]"' in out
    assert "torch" in out


def test_train_names_an_unknown_setting_before_any_work() -> None:
    with pytest.raises(TypeError, match=r"unknown setting\(s\) 'epoch'.*TrainingConfig \(epochs, "):
        hrnn.train(None, epoch=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config: expected a TrainingConfig, found dict"):
        hrnn.train(None, config={"epochs": 3})  # type: ignore[arg-type]


def test_train_settings_by_keyword_override_the_config_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from hrnn.training import _trainer

    seen: dict[str, Any] = {}

    def fake_fit(interactions: Any, hyper: Hyperparameters, config: TrainingConfig, **kwargs: Any) -> None:
        seen.update(hyper=hyper, config=config)

    monkeypatch.setattr(_trainer, "fit", fake_fit)
    base = TrainingConfig(epochs=7, patience=5)
    hrnn.train(None, config=base, hyperparameters=Hyperparameters(bptt=8), epochs=2, hidden_dimension=64)  # type: ignore[arg-type]
    assert seen["config"] == TrainingConfig(epochs=2, patience=5)
    assert seen["hyper"] == Hyperparameters(bptt=8, hidden_dimension=64)
    with pytest.raises(ValueError, match=r"epochs: expected a value in \[1, 10000\]"):
        hrnn.train(None, config=base, epochs=0)  # type: ignore[arg-type]
