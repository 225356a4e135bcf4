"""Runs the benchmarks for real and prints each group's timings as ratios to hrnn's.

Usage: python benches/ratios.py [pytest args, e.g. -k sessionize]
Each line also shows the benchmark's numeric ``extra_info`` (e.g. events/s of a training epoch).
Environment: HRNN_BENCH_ROWS (default 10,000,000) sets the synthetic log size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "bench.json"
        command = [
            sys.executable, "-m", "pytest", str(here), "-q", "-p", "no:cacheprovider",
            "--benchmark-enable", "--benchmark-only", f"--benchmark-json={report}", *argv,
        ]  # fmt: skip
        code = subprocess.call(command)
        if not report.exists():
            return code or 1
        data = json.loads(report.read_text())
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    extra: dict[str, dict[str, float]] = {}
    for bench in data["benchmarks"]:
        groups[bench["group"] or bench["name"]].append((bench["name"], bench["stats"]["median"]))
        extra[bench["name"]] = bench.get("extra_info") or {}
    print("\nmedian times; ratio = competitor time / hrnn time (higher is better for hrnn)")
    for group, entries in groups.items():
        base = next((t for name, t in entries if "hrnn" in name), None)
        print(f"\n[{group}]")
        for name, median in sorted(entries, key=lambda e: e[1]):
            ratio = f"{median / base:6.2f}x" if base else "   n/a"
            details = "  ".join(
                f"{key} {value:,.4g}" for key, value in extra[name].items() if isinstance(value, int | float)
            )
            print(f"  {name:45s} {median * 1e3:10.3f} ms   {ratio}   {details}")
    spread_table(data["benchmarks"])
    return code


def spread_table(benchmarks: list[dict[str, object]]) -> None:
    """The scoring-spread benchmark as one table: models × engines (median µs), hrnn fp32 over
    the read floor, onnxruntime over hrnn fp32, and the spread of hrnn fp32 across the models."""
    cells: dict[str, dict[str, float]] = defaultdict(dict)
    overlap: dict[str, float] = {}
    for bench in benchmarks:
        info = bench.get("extra_info") or {}
        assert isinstance(info, dict)
        if "spread_model" in info:
            stats = bench["stats"]
            assert isinstance(stats, dict)
            cells[info["spread_model"]][info["spread_engine"]] = float(stats["median"]) * 1e6
            if "top25_overlap_with_fp32" in info:
                overlap[info["spread_model"]] = float(info["top25_overlap_with_fp32"])
    if not cells:
        return
    engines = ["hrnn fp32", "hrnn bf16", "onnxruntime", "read floor"]
    print("\n[scoring spread: 1 user, top-25, 1 thread; median µs]")
    header = "".join(f"{e:>13s}" for e in engines)
    print(f"  {'model':34s}{header}   hrnn/floor   ort/hrnn   bf16 overlap")
    for model, row in cells.items():
        values = "".join(f"{row.get(e, float('nan')):13.1f}" for e in engines)
        hrnn_t, floor, ort = row.get("hrnn fp32"), row.get("read floor"), row.get("onnxruntime")
        per_floor = f"{hrnn_t / floor:10.2f}x" if hrnn_t and floor else "       n/a"
        vs_ort = f"{ort / hrnn_t:8.2f}x" if hrnn_t and ort else "     n/a"
        print(f"  {model:34s}{values}   {per_floor}   {vs_ort}   {overlap.get(model, float('nan')):8.3f}")
    # catalogues differ in size, so the spread compares each model's time with its own read floor
    per_floor = [
        row["hrnn fp32"] / row["read floor"]
        for row in cells.values()
        if {"hrnn fp32", "read floor"} <= set(row)
    ]
    if len(per_floor) > 1:
        print(
            f"  hrnn fp32 / read floor across the models: {min(per_floor):.2f}x to {max(per_floor):.2f}x "
            f"(spread {max(per_floor) / min(per_floor):.2f})"
        )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
