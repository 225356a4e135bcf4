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
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
