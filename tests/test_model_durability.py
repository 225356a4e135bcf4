"""Model files survive faults (docs/format.md, "Durability"): special files and implausible sizes
are refused without reading them; weights that could overflow f32 are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import hrnn
from hrnn import model_format as fmt

posix_only = pytest.mark.skipif(os.name != "posix", reason="fork, FIFOs and /dev/zero are POSIX")

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
    model = fmt.random_model(10, 4)
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
