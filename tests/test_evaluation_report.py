"""hrnn.evaluate / evaluate_split: the report table and JSON, with a stub model standing in."""

from __future__ import annotations

import io
import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest

import hrnn
from hrnn.evaluation import EvaluationReport, evaluate_split, make_split
from hrnn.evaluation.splits import Split


def chain_data(users: int = 40) -> hrnn.Interactions:
    """Each user walks items i, i+1, i+2, … (mod 30), one event a minute, a 2-hour break after 15."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(users):
        start = int(rng.integers(0, 30))
        for j in range(25):
            rows.append((f"u{u}", f"i{(start + j) % 30}", 100_000 * u + 60 * j + 7200 * (j >= 15)))
    user, item, ts = zip(*rows, strict=True)
    return hrnn.Interactions.from_arrays(list(user), list(item), np.array(ts))


class Oracle:
    """A stub 'model' that knows the answers: it proves the pipeline wires targets through."""

    name = "oracle"

    def __init__(self) -> None:
        self.fitted_on = 0

    def fit(self, train: hrnn.Interactions) -> Oracle:
        self.fitted_on = len(train)
        return self

    def recommend(self, split: Split, num_results: int, *, exclude_seen: bool = False):
        indices = np.full((split.num_queries, num_results), -1, dtype=np.int64)
        for q in range(split.num_queries):
            targets = split.target_item[split.target_offsets[q] : split.target_offsets[q + 1]]
            targets = targets[targets < split.num_items][:num_results]
            indices[q, : len(targets)] = targets
        scores = np.where(indices >= 0, 1.0 - np.arange(num_results) / 100, -np.inf)
        return indices, scores


def test_report_table_and_json(tmp_path) -> None:
    split = make_split(chain_data(), "holdout-last")
    oracle = Oracle()
    report = evaluate_split(split, models=[oracle], baselines=("popularity", "sknn"), seed=7)
    assert [r.name for r in report.results] == ["oracle", "popularity", "sknn"]
    assert oracle.fitted_on == len(split.train)
    assert report["oracle"].metrics["mean_reciprocal_rank_at_25"] == pytest.approx(1.0)
    assert report["oracle"].metrics["normalized_discounted_cumulative_gain_at_25"] == pytest.approx(1.0)
    assert (
        report["sknn"].metrics["mean_reciprocal_rank_at_25"]
        > report["popularity"].metrics["mean_reciprocal_rank_at_25"]
    )
    text = str(report)
    assert "holdout-last" in text and "MRR@25" in text and "oracle" in text and "sknn" in text
    saved = report.to_json(tmp_path / "report.json")
    loaded = json.loads((tmp_path / "report.json").read_text())
    assert json.loads(saved) == loaded
    assert EvaluationReport.from_dict(loaded) == report
    assert loaded["seed"] == 7 and loaded["num_queries"] == split.num_queries
    with pytest.raises(KeyError, match="no result named"):
        report["missing"]


def test_evaluate_with_a_given_model_and_no_model() -> None:
    data = chain_data()
    report = hrnn.evaluate(data, protocol="personalize", model=Oracle(), baselines=("popularity",))
    assert report.protocol == "personalize"
    assert report["oracle"].metrics["precision_at_5"] > report["popularity"].metrics["precision_at_5"]
    only_baselines = hrnn.evaluate(data, protocol="next-item", model=False, baselines=("sknn",))
    assert [r.name for r in only_baselines.results] == ["sknn"]
    # chains are deterministic: the next item follows from the last one
    assert only_baselines["sknn"].metrics["recall_at_20"] > 0.9
    assert not math.isnan(only_baselines["sknn"].fit_seconds)


def test_import_hrnn_does_not_import_torch_or_optuna() -> None:
    code = (
        "import sys, hrnn, hrnn.evaluation; hrnn.evaluate; "
        "print('torch' in sys.modules, 'optuna' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


class Terminal(io.StringIO):
    """A stderr stand-in that says it is a terminal (tqdm draws its bar only on one)."""

    def isatty(self) -> bool:
        return True


def test_progress_is_on_by_default_yet_writes_no_bar_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hrnn.evaluation"):
        hrnn.evaluate(chain_data(), protocol="holdout-last", model=Oracle(), baselines=("popularity",))
    assert capsys.readouterr().err == ""  # captured stderr is not a TTY: no bar, not even a blank one
    done = [r.getMessage() for r in caplog.records if " done: " in r.getMessage()]
    assert [line.split(" done")[0] for line in done] == ["evaluate: oracle", "evaluate: popularity"]
    assert "MRR@25 1.0000" in done[0]


def test_progress_bar_on_a_terminal_and_progress_false_silences_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tqdm")
    shown = {}
    for progress in (True, False):
        terminal = Terminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        hrnn.evaluate(chain_data(), model=Oracle(), baselines=("popularity",), progress=progress)
        shown[progress] = terminal.getvalue()
    assert "evaluate" in shown[True] and "model" in shown[True]
    assert shown[False] == ""


def test_training_inside_evaluate_writes_no_bar_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("torch")
    report = hrnn.evaluate(
        chain_data(users=60),
        protocol="holdout-last",
        config={"epochs": 1, "hidden_dimension": 32},
        baselines=(),
    )
    assert [r.name for r in report.results] == ["hrnn"]
    err = capsys.readouterr().err
    assert "batch/s" not in err and "epoch 1/1" not in err and "\r" not in err
