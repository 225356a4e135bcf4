"""The GPU check of the training code (not a test): the same training on CPU and on CUDA, side by side.

Usage (from the repository root, with ``hrnn[train]`` installed)::

    python benches/gpu_check.py                      # both datasets, 3 epochs each, CPU and CUDA
    python benches/gpu_check.py --epochs 2 --out gpu_check.json
    python benches/gpu_check.py --quality            # also the full default RSC15 run on CUDA

For RSC15-100k (train.csv) and MovieLens latest-small it trains a fixed number of epochs (no early
stopping, same seed) on each device — CPU always, CUDA when present, plus CUDA with bfloat16
autocast (``amp=True``) — and reports, per epoch, the training loss and events/s, then the ratio of
CUDA to CPU throughput and the largest relative gap between the two loss curves (the same model and
data on two devices should give loss curves within a few percent: they differ only by floating-point
summation order and, with ``amp``, bfloat16 rounding). ``--quality`` adds
``benches/quality_hrnn.py rsc15`` with the defaults on CUDA (Recall@20 / MRR@20 to compare with the
CPU figures in docs/training.md).

Writes everything as JSON to ``--out`` (default ``$OUT/gpu_check.json`` when ``$OUT`` is set, else
``gpu_check.json``) and prints a markdown table. Skips cleanly when the shared data is absent; runs
CPU only (and says so) without CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = {
    "rsc15": DATA / "rsc15-100k" / "train.csv",
    "movielens": DATA / "ml-latest-small" / "interactions.csv",
}


def _run(data: Any, device: str, amp: bool, epochs: int) -> dict[str, Any]:
    import hrnn

    began = time.perf_counter()
    model = hrnn.train(data, device=device, amp=amp, epochs=epochs, patience=epochs, seed=0, progress=False)
    history = model.training["history"]
    return {
        "device": device,
        "amp": amp,
        "seconds": time.perf_counter() - began,
        "loss": [float(e["loss"]) for e in history],
        "events_per_second": [float(e["events_per_second"]) for e in history],
    }


def _summary(name: str, runs: list[dict[str, Any]]) -> list[str]:
    cpu = runs[0]
    rows = []
    for run in runs:
        label = run["device"] + (" + bf16 autocast" if run["amp"] else "")
        speed = max(run["events_per_second"])
        gap = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(run["loss"], cpu["loss"], strict=True))
        losses = " → ".join(f"{x:.4f}" for x in run["loss"])
        rows.append(
            f"| {name} | {label} | {losses} | {speed:,.0f} | {speed / max(cpu['events_per_second']):.1f}× "
            f"| {gap:.2%} | {run['seconds']:.1f} |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=sorted(DATASETS))
    parser.add_argument("--quality", action="store_true", help="also the default RSC15 quality run on CUDA")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or Path(os.environ.get("OUT", ".")) / "gpu_check.json"
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found")
        return 0
    import torch

    import hrnn

    cuda = torch.cuda.is_available()
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if cuda else None,
        "cpu_threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "runs": {},
    }
    if not cuda:
        print("no CUDA device: CPU runs only")
    table = [
        "| data | device | loss per epoch | best events/s | vs CPU | loss gap to CPU | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in args.datasets:
        data = hrnn.Interactions.from_csv(DATASETS[name])
        settings = [("cpu", False)] + ([("cuda", False), ("cuda", True)] if cuda else [])
        runs = [_run(data, device, amp, args.epochs) for device, amp in settings]
        report["runs"][name] = runs
        table += _summary(name, runs)
        out.write_text(json.dumps(report, indent=2))  # after each dataset: nothing is lost on a timeout
    if args.quality and cuda:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import quality_hrnn

        report["rsc15_quality_cuda"] = quality_hrnn.rsc15({"device": "cuda"})
    out.write_text(json.dumps(report, indent=2))
    print("\n".join(table))
    if "rsc15_quality_cuda" in report:
        q = report["rsc15_quality_cuda"]
        print(
            f"\nRSC15 on CUDA, defaults: Recall@20 {q['recall_at_20_dq0']:.4f}, "
            f"MRR@20 {q['mrr_at_20_dq0']:.4f}, {q['train_wall_s']:.0f} s"
        )
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
