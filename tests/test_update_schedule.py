"""The learning-rate schedule and epoch count of UPDATE training (no training here)."""

from __future__ import annotations

from itertools import pairwise

import pytest

pytest.importorskip("torch")

from hrnn.training import TrainingConfig
from hrnn.training._trainer import _WarmupDecay
from hrnn.training._update import update_epochs, update_holdout


def test_the_update_schedule_warms_up_holds_then_decays_to_zero() -> None:
    schedule = _WarmupDecay(200)
    factors = [schedule(t) for t in range(200)]
    assert factors[0] == pytest.approx(0.1)  # 1/10 of the 10 warm-up steps
    assert all(a < b for a, b in pairwise(factors[:10]))
    assert factors[9:101] == [1.0] * 92  # the full rate until half the steps
    assert all(a > b for a, b in pairwise(factors[100:]))
    assert factors[-1] == pytest.approx(1 / 100)
    assert schedule(250) == 0.0  # past the planned steps (an epoch with more windows)
    assert _WarmupDecay(0)(0) == 1.0  # a degenerate plan still takes its one step


def test_an_update_trains_a_tenth_of_the_planned_epochs_and_at_least_two() -> None:
    assert [update_epochs(n) for n in (1, 10, 16, 20, 21, 30, 31, 100)] == [2, 2, 2, 2, 3, 3, 4, 10]


def test_an_update_holds_out_no_validation_events_unless_asked() -> None:
    assert update_holdout(TrainingConfig()).validation_fraction == 0.0
    assert update_holdout(TrainingConfig(validation_fraction=0.2)).validation_fraction == 0.2
    assert update_holdout(TrainingConfig(validation_fraction=0.0)).validation_fraction == 0.0
