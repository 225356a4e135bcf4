"""DDP: the unchanged trainer under two CPU processes with gloo (what torchrun sets up), training a
two-member ensemble (each member's steps all-reduced across the ranks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from hrnn import model_format as fmt

pytestmark = pytest.mark.slow  # trains in two processes

WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    import hrnn

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    # Users of very different lengths, so the ranks' shards differ and need zero-weight padding.
    lengths = rng.integers(2, 60, 70)
    user = np.repeat(np.arange(70), lengths)
    item = (rng.integers(0, 25, 70)[user] + np.concatenate([np.arange(n) for n in lengths])) % 25
    ts = 1_600_000_000 + np.concatenate([np.cumsum(rng.integers(10, 500, n)) for n in lengths])
    data = hrnn.Interactions.from_arrays(user, item, ts)
    model = hrnn.train(
        data, hidden_dimension=32, epochs=1, batch_size=3, bptt=8, device="cpu", progress=False,
        max_user_history_length_percentile=1.0, validation_fraction=0.0, ensemble_size=2,
    )
    model.save(sys.argv[1])
    print(json.dumps(model.training["history"][0]))
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_train_one_model(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path / f"model{rank}")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs: list[dict[str, float]] = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("distributed training hung (ranks out of step?)")
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    models = [fmt.read_model_dir(tmp_path / f"model{rank}") for rank in range(2)]
    # Gradients were all-reduced every step: both ranks end with the same weights.
    for name in fmt.TENSOR_NAMES:
        np.testing.assert_allclose(models[0].tensors[name], models[1].tensors[name], rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(models[0].tensors[fmt.OUTPUT_WEIGHT]))
    assert models[0].tensors[fmt.USERS_STATE].shape[1] == 64  # two members of width 32
    assert [m["epochs_trained"] for m in models[0].meta["training"]["members"]] == [1, 1]
    assert len(models[0].meta["user_ids"]) == 70
    # Users were sharded: each rank trained on part of the targets, together on all of them, and
    # both ranks took the same number of optimizer steps (the shorter shard padded).
    summary = models[0].meta["data_summary"]
    total = summary["rows"] - summary["users"]
    targets = [o["targets"] for o in outputs]
    assert sum(targets) == total and 0 < min(targets) < total
    assert outputs[0]["optimizer_steps"] == outputs[1]["optimizer_steps"]
