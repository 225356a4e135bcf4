"""The console script: --help everywhere, `hrnn inspect`, one-line errors, solutionConfig parsing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hrnn._demo_data import write_demo_csv
from hrnn.solution_config import load_solution_config, parse_solution_config

COMMANDS = ["demo", "inspect", "train", "evaluate", "recommend", "batch-recommend", "put-events"]


def hrnn_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs the installed console script (falls back to ``python -m hrnn``)."""
    exe = shutil.which("hrnn", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "hrnn"]
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"hrnn {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_defaults(command):
    out = hrnn_cli(command, "--help").stdout
    assert "usage: hrnn " + command in out
    if command == "train":
        assert "[32, 256]" in out and "[2, 32]" in out
        assert "--no-recency-mask" in out and "--perform-hpo" in out and "--config" in out


def one_line(text: str) -> str:
    """Help text with argparse's wrapping undone."""
    return " ".join(text.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_help_states_each_default_once_and_never_none(command):
    out = one_line(hrnn_cli(command, "--help").stdout)
    assert "(default: None)" not in out and "(default: False)" not in out
    assert not re.search(r"\(default[^)]*\) \(default", out)  # e.g. "(default 43) (default: None)"


def test_train_help_states_the_rules_behind_automatic_defaults():
    out = one_line(hrnn_cli("train", "--help").stdout)
    assert "[32, 256] (default: 43)" in out and "[2, 32] (default: 32)" in out
    assert "maximum epochs (default: chosen from the data's shape" in out
    assert "(default: chosen from the data's size, clamp(min(E / 1000, E / L), 16, 256)" in out
    assert "Adam learning rate (default: chosen from the batch size" in out
    assert out.count("see docs/training.md") == 3


def test_recommend_help_describes_every_argument():
    out = one_line(hrnn_cli("recommend", "--help").stdout)
    assert "model_dir model directory written by `hrnn train`" in out
    assert "--user-id USER_ID the USER_ID to recommend items for" in out


def test_debug_and_quiet_work_after_the_command_too(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu,a,soon\n")
    after = hrnn_cli("inspect", str(bad), "--debug", check=False)
    assert after.returncode == 1 and "Traceback" in after.stderr
    quiet = hrnn_cli("inspect", str(write_demo_csv(tmp_path / "demo.csv")), "--quiet")
    assert "rows 14,432" in quiet.stdout


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "hrnn", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("hrnn ")


def test_inspect_prints_distribution_and_cuts(tmp_path):
    csv = write_demo_csv(tmp_path / "demo.csv")
    out = hrnn_cli("inspect", str(csv), "--max-user-history-length-percentile", "0.9").stdout
    assert "rows 14,432" in out and "users 400" in out and "items 240" in out
    assert "event types: click" in out
    assert "histogram" in out and "max cut" in out
    assert "0.99" in out and "keep" in out
    summary = json.loads(hrnn_cli("inspect", str(csv), "--json").stdout)
    assert summary["rows"] == 14_432
    cut = summary["chosen_cut"]
    assert cut["keeps_users"] <= 400 and cut["max_length"] >= cut["min_length"]
    percentiles = [c["percentile"] for c in summary["history_length"]["percentiles"]]
    assert percentiles[0] == 0.0 and percentiles[-1] == 1.0


def test_inspect_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    csv = write_demo_csv(tmp_path / "demo.csv")
    png = tmp_path / "hist.png"
    hrnn_cli("inspect", str(csv), "--plot", str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_are_one_line_and_exit_nonzero(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu,a,soon\n")
    result = hrnn_cli("inspect", str(bad), check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SchemaError" in lines[0] and "line 2" in lines[0] and "soon" in lines[0]
    assert "Traceback" not in result.stderr
    missing = hrnn_cli("inspect", str(tmp_path / "missing.csv"), check=False)
    assert missing.returncode == 1 and "FileNotFoundError" in missing.stderr
    debug = hrnn_cli("--debug", "inspect", str(bad), check=False)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    usage = hrnn_cli("inspect", check=False)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_inspect_millisecond_timestamps_say_so_and_convert_on_request(tmp_path):
    csv = tmp_path / "ms.csv"
    csv.write_text("USER_ID,ITEM_ID,TIMESTAMP\nu,a,1700000000000\nu,b,1700000060000\nv,a,1700000120000\n")
    result = hrnn_cli("inspect", str(csv), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SchemaError" in lines[0] and "line 2, column TIMESTAMP" in lines[0], lines
    assert "as milliseconds it is 2023-11-14 22:13:20 UTC" in lines[0] and "--timestamp-unit ms" in lines[0]
    out = hrnn_cli("inspect", str(csv), "--timestamp-unit", "ms").stdout
    assert "time 2023-11-14 22:13:20 UTC .. 2023-11-14 22:15:20 UTC" in out
    assert "--timestamp-unit" in hrnn_cli("train", "--help").stdout
    assert "--timestamp-unit" in hrnn_cli("evaluate", "--help").stdout


def test_inspect_time_range_never_crashes_on_an_unrepresentable_date():
    from hrnn.cli.inspect_data import _utc

    assert _utc(1_700_000_000) == "2023-11-14 22:13:20 UTC"
    assert _utc(1_700_000_000_000) == "1700000000000 (Unix seconds, not a representable date)"


def test_solution_config_maps_personalize_json(tmp_path):
    document = {
        "performHPO": "true",
        "eventType": "click",
        "solutionConfig": {
            "eventValueThreshold": "0.5",
            "algorithmHyperParameters": {"hidden_dimension": "55", "bptt": "16", "recency_mask": "false"},
            "featureTransformationParameters": {
                "min_user_history_length_percentile": "0.05",
                "max_user_history_length_percentile": "0.95",
            },
            "hpoConfig": {
                "hpoObjective": {"type": "Maximize", "metricName": "precision_at_25"},
                "hpoResourceConfig": {"maxNumberOfTrainingJobs": "8", "maxParallelTrainingJobs": "2"},
                "algorithmHyperParameterRanges": {
                    "integerHyperParameterRanges": [
                        {"name": "hidden_dimension", "minValue": 32, "maxValue": 64}
                    ],
                    "categoricalHyperParameterRanges": [
                        {"name": "recency_mask", "values": ["true", "false"]}
                    ],
                },
            },
        },
    }
    config = parse_solution_config(document)
    assert config.perform_hpo is True
    assert config.train_kwargs == {
        "event_type": "click",
        "event_value_threshold": 0.5,
        "hidden_dimension": 55,
        "bptt": 16,
        "recency_mask": False,
        "min_user_history_length_percentile": 0.05,
        "max_user_history_length_percentile": 0.95,
    }
    assert config.tune_kwargs == {
        "objective": "precision_at_25",
        "max_trials": 8,
        "parallel_trials": 2,
        "ranges": {"hidden_dimension": (32, 64), "recency_mask": [True, False]},
    }
    path = tmp_path / "solution.json"
    path.write_text(json.dumps(document["solutionConfig"]))
    assert load_solution_config(path).train_kwargs["hidden_dimension"] == 55


def test_solution_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"algorithmHyperParameters\.hidden_dimension: expected an integer"):
        parse_solution_config({"algorithmHyperParameters": {"hidden_dimension": "4.5"}})
    with pytest.raises(ValueError, match=r"algorithmHyperParameters\.dropout: unknown parameter"):
        parse_solution_config({"algorithmHyperParameters": {"dropout": "0.1"}})
    with pytest.raises(ValueError, match="recency_mask: expected true or false"):
        parse_solution_config({"algorithmHyperParameters": {"recency_mask": "maybe"}})
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: line 1: invalid JSON"):
        load_solution_config(path)


def test_solution_config_rejects_misspelt_and_unknown_keys(caplog):
    with pytest.raises(
        ValueError,
        match=r"solution config: unknown key 'featureTransformationHyperParameters' "
        r"\(did you mean 'featureTransformationParameters'\?\)",
    ):
        parse_solution_config({"featureTransformationHyperParameters": {"bptt": "8"}})
    with pytest.raises(ValueError, match=r"solutionConfig: unknown key 'algorithmHyperParameter' \(did you"):
        parse_solution_config({"solutionConfig": {"algorithmHyperParameter": {"bptt": "8"}}})
    with pytest.raises(
        ValueError, match=r"solution config: unknown key 'performHpo' \(did you mean 'performHPO'"
    ):
        parse_solution_config({"performHpo": "true", "solutionConfig": {}})
    with pytest.raises(ValueError, match=r"hpoResourceConfig: unknown key 'maxNumberOfTrainingJob'"):
        parse_solution_config({"hpoConfig": {"hpoResourceConfig": {"maxNumberOfTrainingJob": "3"}}})
    ranges = {"integerHyperParameterRanges": [{"name": "hidden_dim", "minValue": 32, "maxValue": 64}]}
    with pytest.raises(ValueError, match=r"integerHyperParameterRanges: unknown hyperparameter 'hidden_dim'"):
        parse_solution_config({"hpoConfig": {"algorithmHyperParameterRanges": ranges}})
    request = {"name": "s", "recipeArn": "arn:aws:personalize:::recipe/aws-hrnn", "solutionConfig": {}}
    with caplog.at_level("WARNING", logger="hrnn.solution_config"):
        assert parse_solution_config(request).train_kwargs == {}
    assert "ignoring name, recipeArn" in caplog.text


def test_cli_rejects_flags_it_would_ignore(tmp_path):
    csv = write_demo_csv(tmp_path / "demo.csv")
    hpo = hrnn_cli("evaluate", str(csv), "--perform-hpo", check=False)
    assert hpo.returncode == 1 and "evaluate does not tune" in hpo.stderr
    trials = hrnn_cli("train", str(csv), "--out", str(tmp_path / "m"), "--max-trials", "3", check=False)
    assert trials.returncode == 1 and "--max-trials needs --perform-hpo" in trials.stderr
    config = tmp_path / "solution.json"
    config.write_text(json.dumps({"featureTransformationHyperParameters": {}}))
    typo = hrnn_cli("train", str(csv), "--out", str(tmp_path / "m"), "--config", str(config), check=False)
    assert typo.returncode == 1 and "unknown key 'featureTransformationHyperParameters'" in typo.stderr
    assert not (tmp_path / "m").exists()
