"""Model files survive faults (docs/format.md, "Durability"): a save killed at any step leaves the
old or the new model; killed saves leave nothing behind after the next one; special files and
implausible sizes are refused without reading them; weights that could overflow f32 are refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import hrnn
from hrnn import model_format as fmt
from hrnn._testing import random_model

posix_only = pytest.mark.skipif(os.name != "posix", reason="fork, FIFOs and /dev/zero are POSIX")

# Kills a forked child at its n-th file-system step of a save (each audit event below is one step:
# a file or directory opened, created, renamed, exchanged through ctypes, locked, removed), for
# n = 1, 2, … until a save completes; after each kill the directory must load, as the old model or
# the new one. Then one more save must leave nothing but the model directory.
CRASH_EVERY_STEP = r"""
import json, os, signal, sys
from pathlib import Path
import hrnn
from hrnn import model_format as fmt
from hrnn._testing import random_model
from safetensors.numpy import save  # imported before forking: no import inside the killed save

STEPS = {"open", "os.rename", "os.replace", "os.mkdir", "os.rmdir", "os.remove", "os.unlink",
         "shutil.rmtree", "ctypes.call_function", "fcntl.flock", "os.scandir", "os.listdir"}
root = Path(sys.argv[1])
target = root / "model"
model = random_model(30, 4, num_users=2)
versions = {v: {**model.meta, "hrnn_version": v} for v in "AB"}
fmt.write_model_dir(target, model.tensors, versions["A"])
runs = []
for n in range(1, 300):
    before = runs[-1]["after"] if runs else "A"
    if before not in versions:
        break
    writing = "B" if before == "A" else "A"
    pid = os.fork()
    if pid == 0:
        steps = 0
        def hook(event, args):
            global steps
            if event in STEPS:
                steps += 1
                if steps == n:
                    os.kill(os.getpid(), signal.SIGKILL)
        sys.addaudithook(hook)
        fmt.write_model_dir(target, model.tensors, versions[writing])
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    try:
        after = fmt.read_model_dir(target).meta["hrnn_version"]
        hrnn.Recommender.load(target)
    except Exception as e:
        after = f"{type(e).__name__}: {e}"
    runs.append({"step": n, "killed": os.WIFSIGNALED(status), "before": before, "writing": writing,
                 "after": after, "entries": len(os.listdir(root))})
    if not os.WIFSIGNALED(status):
        break
fmt.write_model_dir(target, model.tensors, versions["A"])
print(json.dumps({"runs": runs, "left_after_a_save": sorted(os.listdir(root))}))
"""


@posix_only
def test_a_save_killed_at_any_step_leaves_the_old_or_the_new_model(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CRASH_EVERY_STEP, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    runs = report["runs"]
    for run in runs:
        assert run["after"] in (run["before"], run["writing"]), run
    assert not runs[-1]["killed"], "no save completed within 300 steps"
    outcomes = {run["after"] == run["writing"] for run in runs if run["killed"]}
    assert outcomes == {False, True}, "kills both before and after the swap"
    assert max(run["entries"] for run in runs) > 1, "kills left temporaries for the next save to remove"
    assert report["left_after_a_save"] == ["model"]


def test_only_provably_stale_temporaries_are_removed(tmp_path: Path) -> None:
    model = random_model(10, 4)
    target = tmp_path / "model"
    fmt.write_model_dir(target, model.tensors, model.meta)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(finished.stdout)
    stale = tmp_path / f".model.tmp-{dead}-0123456789ab"
    live = tmp_path / f".model.tmp-{os.getpid()}-0123456789ab"  # a save in progress here
    other = tmp_path / ".model.backup"
    for path in (stale, live, other):
        path.mkdir()
        (path / "x").write_bytes(b"x")
    fmt.write_model_dir(target, model.tensors, model.meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", live.name, other.name])


def test_a_save_through_a_symlink_replaces_the_directory_it_names(tmp_path: Path) -> None:
    model = random_model(10, 4)
    fmt.write_model_dir(tmp_path / "v1", model.tensors, model.meta)
    (tmp_path / "current").symlink_to("v1")
    fmt.write_model_dir(tmp_path / "current", model.tensors, {**model.meta, "hrnn_version": "new"})
    assert (tmp_path / "current").is_symlink()
    assert fmt.read_model_dir(tmp_path / "v1").meta["hrnn_version"] == "new"


LOAD_ALL_WAYS = r"""
import sys
import hrnn
from hrnn import model_format as fmt
for load in (hrnn.Recommender.load, fmt.read_model_dir, hrnn.TrainedModel.load):
    try:
        load(sys.argv[1])
        print("loaded")
    except Exception as e:
        print(f"{type(e).__name__}: {e}")
"""


def _load_all_ways(path: Path) -> list[str]:
    """Each loader's outcome, in a subprocess: a hang fails the test by its timeout, and memory is
    capped so that a loader reading without end cannot exhaust the machine."""

    def cap_memory() -> None:  # pragma: no cover - runs in the child
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    done = subprocess.run(
        [sys.executable, "-c", LOAD_ALL_WAYS, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=cap_memory,
    )
    return done.stdout.splitlines()


def _model_dir(tmp_path: Path) -> Path:
    model = random_model(10, 4)
    return fmt.write_model_dir(tmp_path / "model", model.tensors, model.meta)


@posix_only
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = _model_dir(tmp_path)
    for name in (fmt.METADATA_FILE, fmt.TENSORS_FILE):
        file = path / name
        saved = file.read_bytes()
        file.unlink()
        os.mkfifo(file)
        outcomes = _load_all_ways(path)
        assert len(outcomes) == 3, outcomes
        for outcome in outcomes:
            assert outcome.startswith("ModelFormatError: "), outcome
            assert f"{name}: " in outcome and "expected a regular file (or a symlink to one)" in outcome
            assert "found a named pipe (FIFO)" in outcome
        file.unlink()
        file.write_bytes(saved)


@posix_only
def test_a_symlink_to_dev_zero_is_refused_and_to_a_regular_file_loads(tmp_path: Path) -> None:
    path = _model_dir(tmp_path)
    real = tmp_path / "elsewhere.json"
    (path / fmt.METADATA_FILE).rename(real)
    (path / fmt.METADATA_FILE).symlink_to(real)
    assert _load_all_ways(path) == ["loaded"] * 3
    (path / fmt.METADATA_FILE).unlink()
    (path / fmt.METADATA_FILE).symlink_to("/dev/zero")
    for outcome in _load_all_ways(path):
        assert outcome.startswith("ModelFormatError: "), outcome
        assert "model.json: " in outcome and "found a character device" in outcome


def test_sizes_are_checked_before_reading(tmp_path: Path) -> None:
    path = _model_dir(tmp_path)
    tensors = path / fmt.TENSORS_FILE
    size = tensors.stat().st_size
    with open(tensors, "r+b") as f:
        f.truncate(size + (1 << 34))  # sparse: 16 GiB the header does not declare
    for outcome in _load_all_ways(path):
        assert outcome.startswith("ModelFormatError: "), outcome
        assert f"the header declares {size} bytes in all, the file has {size + (1 << 34)} bytes" in outcome
    with open(tensors, "r+b") as f:
        f.truncate(size)
    with open(path / fmt.METADATA_FILE, "r+b") as f:
        f.truncate((64 << 20) + 1)
    for outcome in _load_all_ways(path):
        assert outcome.startswith("ModelFormatError: "), outcome
        assert "model.json: " in outcome and "expected at most 67108864 bytes of JSON" in outcome


@pytest.mark.parametrize(
    ("name", "index", "value", "message"),
    [
        ("output.weight", (3, 1), 3e38, r"output\.weight: value 3e\+?38 at flat index 13, times an input"),
        ("output.bias", (2,), -3e38, r"output\.bias: value -3e\+?38 at flat index 2 lets row 2's logit"),
        ("gru.weight_hh", (1, 1), 1e30, r"gru\.weight_hh: value 1e\+?30 at flat index 5, times an input"),
        ("users.state", (0, 0), 1e20, r"times an input of up to 1\.000e\+?20 \(the state"),
    ],
)
def test_weights_that_can_overflow_f32_are_refused(
    tmp_path: Path, name: str, index: tuple[int, ...], value: float, message: str
) -> None:
    path = _model_dir(tmp_path)
    tensors = load_file(path / fmt.TENSORS_FILE)
    tensors[name][index] = np.float32(value)
    assert np.all(np.isfinite(tensors[name]))
    with pytest.raises(hrnn.ModelFormatError, match=message):
        fmt.write_model_dir(tmp_path / "other", tensors, fmt.read_model_dir(path).meta)
    save_file(tensors, path / fmt.TENSORS_FILE)
    with pytest.raises(hrnn.ModelFormatError, match=r"model\.safetensors: .*" + message):
        hrnn.Recommender.load(path)
    with pytest.raises(hrnn.ModelFormatError, match=r"model\.safetensors: .*" + message):
        fmt.read_model_dir(path)
