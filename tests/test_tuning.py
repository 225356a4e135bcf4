"""hrnn.tune: two tiny trials (real training), the trial table, and argument errors."""

from __future__ import annotations

import builtins
import logging
import sys

import numpy as np
import pytest

import hrnn
from hrnn.tuning import DEFAULT_RANGES, _search_space, tune

pytest.importorskip("torch")
pytest.importorskip("optuna")


def tiny_data() -> hrnn.Interactions:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        start = int(rng.integers(0, 20))
        for j in range(22):
            rows.append((f"u{u}", f"i{(start + j) % 20}", 100_000 * u + 60 * j))
    user, item, ts = zip(*rows, strict=True)
    return hrnn.Interactions.from_arrays(list(user), list(item), np.array(ts))


TINY = {"hidden_dimension": (32, 40), "bptt": (2, 8), "epochs": (1, 2), "learning_rate": (0.005, 0.02)}


@pytest.mark.slow  # trains a model per trial
def test_two_trials_find_a_configuration_inside_the_ranges() -> None:
    result = tune(
        tiny_data(),
        objective="mean_reciprocal_rank_at_25",
        max_trials=2,
        ranges=TINY,
        fixed={"validation_fraction": 0.0},
        train_final=True,
    )
    assert len(result.trials) == 2
    assert [t["number"] for t in result.trials] == [0, 1]
    assert result.best_value == max(t["value"] for t in result.trials)
    config = result.best_config
    assert 32 <= config["hidden_dimension"] <= 40 and 2 <= config["bptt"] <= 8
    assert config["recency_mask"] in (True, False)
    assert config["validation_fraction"] == 0.0
    assert "personalize" in result.validation
    assert result.model is not None and result.model.hidden_dimension == config["hidden_dimension"]
    assert len(result.to_pandas()) == 2


def test_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    data = tiny_data()
    with pytest.raises(ValueError, match="objective: expected one of"):
        tune(data, objective="accuracy")
    with pytest.raises(ValueError, match="max_trials: expected at least 1"):
        tune(data, max_trials=0)
    with pytest.raises(ValueError, match=r"ranges\['bptt'\]: expected \(low, high\)"):
        tune(data, ranges={"bptt": (10, 2)})
    real_import = builtins.__import__

    def no_optuna(name: str, *args, **kwargs):
        if name == "optuna":
            raise ImportError("no optuna")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "optuna", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_optuna)
    with pytest.raises(ImportError, match=r'pip install "hrnn\[hpo\]"'):
        tune(data, max_trials=1)


@pytest.mark.slow  # trains a model per trial
def test_given_values_are_held_fixed_and_explicit_ranges_say_what_they_replace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fixed = {"epochs": 5, "hidden_dimension": 64, "validation_fraction": 0.0}
    with caplog.at_level(logging.INFO, logger="hrnn.tuning"):
        space = _search_space({"hidden_dimension": (32, 48)}, fixed)
    assert "epochs" not in space and space["hidden_dimension"] == (32, 48)
    assert set(space) == {"hidden_dimension", "bptt", "recency_mask", "learning_rate"}
    assert fixed == {"epochs": 5, "validation_fraction": 0.0}  # the searched one no longer fixed
    assert "not searching epochs=5 (given)" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "tune: hidden_dimension=64 also given a search range; the search replaces the given value"
    ]
    with pytest.raises(ValueError, match="nothing left to search"):
        _search_space({}, {name: 1 for name in DEFAULT_RANGES})
