"""scripts/build-wheels.sh: a portable (manylinux2014, abi3) wheel that installs and scores with numpy alone.

Slow (a release build when the cache is cold, and a fresh venv): ``pytest -m slow`` runs only these,
``-m "not slow"`` skips them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hrnn._testing import random_model
from hrnn.model_format import write_model_dir

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the clean venv, where only hrnn's wheel and numpy are installed. (Writing a model
# needs safetensors, so the test process writes it and the clean venv only loads and scores it.)
SCORE_A_TINY_MODEL = """
import sys
import hrnn
rec = hrnn.Recommender.load(sys.argv[1])
items = rec.recommend("user0", num_results=5)
assert "torch" not in sys.modules and "safetensors" not in sys.modules
print(hrnn.__file__)
print(len(items), items[0][0].startswith("item"))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cargo") is None, reason="needs a Rust toolchain (cargo) on PATH")
def test_portable_wheel_installs_into_a_clean_venv_and_scores(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")  # to write the model the clean venv scores
    out = tmp_path / "dist"
    build = subprocess.run(
        ["bash", str(ROOT / "scripts/build-wheels.sh"), str(out)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    wheels = sorted(out.glob("hrnn-*.whl"))
    assert len(wheels) == 1 and (out / wheels[0].name).exists()
    tags = wheels[0].name.removesuffix(".whl").split("-")[2:]
    assert tags[:2] == ["cp311", "abi3"] and tags[2].startswith("manylinux2014_"), wheels[0].name
    assert list(out.glob("hrnn-*.tar.gz")), "no sdist"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    numpy = subprocess.run([*pip, "numpy>=1.26"], capture_output=True, text=True, timeout=900)
    if numpy.returncode != 0:
        pytest.skip(f"no package index reachable for numpy: {numpy.stderr.strip()[-300:]}")
    subprocess.run([*pip, "--no-index", "--no-deps", str(wheels[0])], check=True, timeout=300)
    model = random_model(50, 8, num_users=2, seed=1)
    model_dir = write_model_dir(tmp_path / "model", model.tensors, model.meta)
    scored = subprocess.run(
        [python, "-c", SCORE_A_TINY_MODEL, str(model_dir)], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    where, result = scored.stdout.splitlines()
    assert where.startswith(str(venv)) and result == "5 True"
