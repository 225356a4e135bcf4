"""The console script end to end on small data: train → recommend → batch → put-events → recommend.

Runs the real ``hrnn`` executable in subprocesses and checks outputs and exit codes, bad inputs too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hrnn._demo_data import write_demo_csv
from test_cli_inspect import hrnn_cli

pytest.importorskip("torch")

# the tests marked slow train a model (the module fixture, HPO, evaluate, demo): `-m "not slow"` skips them


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    csv = write_demo_csv(root / "demo.csv")
    out = root / "model"
    result = hrnn_cli(
        "--quiet", "train", str(csv), "--out", str(out), "--epochs", "2", "--hidden-dimension", "32",
        "--bptt", "8", "--no-recency-mask", "--max-user-history-length-percentile", "1.0",
    )  # fmt: skip
    assert "model written to" in result.stdout
    summary = r"trained in [0-9.]+ s: 2 epochs, best epoch [12]: validation MRR@25 0\.\d{4}"
    assert re.search(summary, result.stdout)
    assert (out / "model.safetensors").exists() and (out / "model.json").exists()
    meta = json.loads((out / "model.json").read_text())
    assert meta["hyperparameters"]["hidden_dimension"] == 32 and meta["hyperparameters"]["bptt"] == 8
    assert meta["hyperparameters"]["recency_mask"] is False
    return out


@pytest.mark.slow
def test_recommend_prints_personalize_response(model_dir):
    response = json.loads(hrnn_cli("recommend", str(model_dir), "--user-id", "user-3", "--json").stdout)
    items = response["itemList"]
    assert len(items) == 25 and response["recommendationId"].startswith("RID-")
    scores = [entry["score"] for entry in items]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    assert response["personalized"] is True
    text = hrnn_cli("recommend", str(model_dir), "--user-id", "nobody", "--num-results", "3").stdout
    note, *ranked = text.strip().splitlines()
    assert len(ranked) == 3 and "unknown to the model: the popularity list" in note
    unknown = json.loads(hrnn_cli("recommend", str(model_dir), "--user-id", "nobody", "--json").stdout)
    assert unknown["personalized"] is False


@pytest.mark.slow
def test_recommend_accepts_quiet_after_the_command(model_dir):
    quiet = hrnn_cli("recommend", str(model_dir), "--user-id", "user-3", "--json", "--quiet")
    loud = hrnn_cli("--quiet", "recommend", str(model_dir), "--user-id", "user-3", "--json")
    assert json.loads(quiet.stdout)["itemList"] == json.loads(loud.stdout)["itemList"]
    assert quiet.stderr == ""


@pytest.mark.slow
def test_recommend_rejects_bad_num_results(model_dir):
    result = hrnn_cli("recommend", str(model_dir), "--user-id", "user-3", "--num-results", "501", check=False)
    assert result.returncode == 1 and "num_results" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_batch_recommend_fills_errors_and_goes_on(model_dir, tmp_path):
    lines = [
        '{"userId": "user-1"}',
        "not json",
        '{"userId": ""}',
        '{"userId": "nobody"}',
        "",
        '{"userId": "user-2"}',
    ]
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["--input", str(source), "--output", str(out), "--num-results", "5", "--chunk-size", "2"]
    result = hrnn_cli("--quiet", "batch-recommend", str(model_dir), *args)
    assert "5 lines: 3 recommended, 2 with errors" in result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 5
    assert records[0]["input"] == {"userId": "user-1"} and records[0]["error"] is None
    assert len(records[0]["output"]["recommendedItems"]) == 5 and len(records[0]["output"]["scores"]) == 5
    assert "line 2" in records[1]["error"] and records[1]["output"] is None
    assert "userId" in records[2]["error"]
    assert records[3]["error"] is None  # unknown user: popularity, not an error
    assert records[4]["input"]["userId"] == "user-2"


@pytest.mark.slow
def test_put_events_then_recommend_reflects_them(model_dir, tmp_path):
    log = tmp_path / "events.log"
    before = json.loads(
        hrnn_cli("recommend", str(model_dir), "--user-id", "user-5", "--json", "--event-log", str(log)).stdout
    )
    events = [
        {"eventType": "click", "sentAt": 1_800_000_000 + k, "itemId": f"item-{200 + k}", "eventId": f"e{k}"}
        for k in range(4)
    ]
    requests = tmp_path / "events.jsonl"
    requests.write_text(
        json.dumps({"trackingId": "t", "userId": "user-5", "sessionId": "s1", "eventList": events}) + "\n"
        + json.dumps({"sessionId": "s2", "eventList": [{"eventType": "", "sentAt": 1}]}) + "\n"
    )  # fmt: skip
    result = hrnn_cli(
        "put-events", str(model_dir), "--event-log", str(log), "--input", str(requests), check=False
    )
    assert result.returncode == 1  # the second request is invalid, and said so
    assert (
        "4 events accepted" in result.stdout and "line 2" in result.stderr and "event_type" in result.stderr
    )
    after = json.loads(
        hrnn_cli("recommend", str(model_dir), "--user-id", "user-5", "--json", "--event-log", str(log)).stdout
    )
    assert [i["itemId"] for i in after["itemList"]] != [i["itemId"] for i in before["itemList"]]
    # Replaying the same request is idempotent (event ids already seen are ignored).
    requests.write_text(json.dumps({"userId": "user-5", "sessionId": "s1", "eventList": events}) + "\n")
    replay = hrnn_cli("put-events", str(model_dir), "--event-log", str(log), "--input", str(requests))
    assert "0 events accepted" in replay.stdout and "4 repeats dropped" in replay.stdout
    again = json.loads(
        hrnn_cli("recommend", str(model_dir), "--user-id", "user-5", "--json", "--event-log", str(log)).stdout
    )
    assert [i["itemId"] for i in again["itemList"]] == [i["itemId"] for i in after["itemList"]]


@pytest.mark.slow
def test_put_events_takes_iso_times_drops_repeats_and_reports_unknown_items(model_dir, tmp_path):
    """Without eventIds, the same event sent twice is recorded once (Personalize's rule: same
    time and properties); ISO-8601 ``sentAt`` is accepted; unknown items are reported apart."""
    log = tmp_path / "events.log"
    requests = tmp_path / "events.jsonl"
    events = [
        {
            "eventType": "click",
            "sentAt": "2027-01-15T10:00:00Z",
            "itemId": "item-3",
            "recommendationId": "RID-1",
        },
        {"eventType": "click", "sentAt": "2027-01-15T10:00:05+00:00", "itemId": "no-such-item"},
        {"eventType": "click", "sentAt": 1_800_000_000, "itemId": "item-4", "properties": '{"page": 2}'},
    ]
    requests.write_text(json.dumps({"userId": "user-5", "sessionId": "s1", "eventList": events}) + "\n")
    first = hrnn_cli("put-events", str(model_dir), "--event-log", str(log), "--input", str(requests))
    assert "3 events accepted" in first.stdout and "1 for items the model does not know" in first.stdout
    second = hrnn_cli("put-events", str(model_dir), "--event-log", str(log), "--input", str(requests))
    assert "0 events accepted" in second.stdout and "3 repeats dropped" in second.stdout
    bad = [{"eventType": "click", "sentAt": "last tuesday", "itemId": "item-3"}]
    requests.write_text(json.dumps({"userId": "user-5", "sessionId": "s1", "eventList": bad}) + "\n")
    third = hrnn_cli(
        "put-events", str(model_dir), "--event-log", str(log), "--input", str(requests), check=False
    )
    assert third.returncode == 1 and "sentAt: expected Unix seconds or an ISO-8601 time" in third.stderr


def test_train_rejects_out_of_range_hyperparameters(tmp_path):
    csv = write_demo_csv(tmp_path / "demo.csv")
    result = hrnn_cli("train", str(csv), "--out", str(tmp_path / "m"), "--hidden-dimension", "8", check=False)
    assert result.returncode == 1 and "hidden_dimension" in result.stderr and "[32, 256]" in result.stderr
    assert not (tmp_path / "m").exists()


def test_train_accepts_a_personalize_solution_config(tmp_path):
    csv = write_demo_csv(tmp_path / "demo.csv")
    config = tmp_path / "solution.json"
    config.write_text(
        json.dumps({"solutionConfig": {"algorithmHyperParameters": {"hidden_dimension": "300"}}})
    )
    result = hrnn_cli("train", str(csv), "--out", str(tmp_path / "m"), "--config", str(config), check=False)
    assert result.returncode == 1 and "hidden_dimension" in result.stderr


@pytest.mark.slow
def test_epochs_flag_is_held_fixed_under_perform_hpo(tmp_path):
    pytest.importorskip("optuna")
    csv = write_demo_csv(tmp_path / "demo.csv")
    args = ["--out", str(tmp_path / "m"), "--epochs", "1", "--hidden-dimension", "32", "--perform-hpo"]
    result = hrnn_cli("train", str(csv), *args, "--max-trials", "1")
    assert "not searching epochs=1, hidden_dimension=32 (given)" in result.stderr
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["hyperparameters"]["hidden_dimension"] == 32
    assert re.search(r"trained in [0-9.]+ s: 1 epochs", result.stdout)


@pytest.mark.slow
def test_evaluate_prints_a_json_report(tmp_path):
    csv = write_demo_csv(tmp_path / "demo.csv")
    args = ["--protocol", "holdout-last", "--epochs", "1", "--baselines", "popularity", "--exclude-seen"]
    report = json.loads(hrnn_cli("--quiet", "evaluate", str(csv), *args, "--json").stdout)
    assert "mean_reciprocal_rank_at_25" in json.dumps(report) and "popularity" in json.dumps(report)


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo-model"
    text = hrnn_cli("--quiet", "demo", "--epochs", "1", "--out", str(out)).stdout
    assert "synthetic log" in text and "popularity" in text and "MRR@25" in text  # the report table
    assert "recommendations after the events" in text and "changed without retraining" in text
    assert (out / "model.safetensors").exists()
