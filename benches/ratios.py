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
    """The scoring-spread benchmark as one table: models × engines (median µs over rounds that
    time every engine in turn), hrnn fp32 over the read floor and onnxruntime over hrnn fp32 (the
    medians of the ratios within each round), and the spread of hrnn fp32 / floor across models."""
    rows: dict[str, dict[str, object]] = {}
    for bench in benchmarks:
        info = bench.get("extra_info") or {}
        assert isinstance(info, dict)
        if "spread_median_us" in info:
            rows[str(info["spread_model"])] = info
    if not rows:
        return
    engines = ["hrnn fp32", "hrnn bf16", "onnxruntime", "read floor", "call, no scan"]
    print("\n[scoring spread: 1 user, top-25, 1 thread; median µs, engines timed in turn]")
    header = "".join(f"{e:>14s}" for e in engines)
    print(f"  {'model':34s}{'items':>8s}{header}   hrnn/floor   scan/floor   ort/hrnn   bf16 overlap")
    for model, info in rows.items():
        medians, paired = info["spread_median_us"], info["spread_paired"]
        assert isinstance(medians, dict) and isinstance(paired, dict)
        values = "".join(f"{medians.get(e, float('nan')):14.1f}" for e in engines)
        overlap = info.get("top25_overlap_with_fp32", float("nan"))
        scan = paired.get("scan / read floor", float("nan"))
        print(
            f"  {model:34s}{info['spread_items']:8d}{values}   {paired['hrnn fp32 / read floor']:10.2f}x"
            f"   {scan:10.2f}x   {paired['onnxruntime / hrnn fp32']:8.2f}x   {overlap:8.3f}"
        )
    # Catalogues differ in size, so the spread compares each model's time with its own read floor;
    # small catalogues (a few µs of scan) measure the fixed cost of a call, so they are apart.
    for ratio in ("hrnn fp32 / read floor", "scan / read floor"):
        for label, keep in (("all models", lambda n: True), ("models of ≥ 50k items", lambda n: n >= 50_000)):
            ratios = [
                info["spread_paired"].get(ratio, float("nan"))  # type: ignore[union-attr]
                for info in rows.values()
                if keep(int(info["spread_items"]))  # type: ignore[call-overload]
            ]
            if len(ratios) > 1:
                print(
                    f"  {ratio}, {label}: {min(ratios):.2f}x to {max(ratios):.2f}x "
                    f"(spread {max(ratios) / min(ratios):.2f})"
                )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
