"""Compares builds of `examples/batch_peak` side by side, for a machine other jobs share.

Usage: python scripts/ab_batch_peak.py REPS THREADS BINARY [BINARY ...]

Each repetition runs every binary once (`BINARY 6 THREADS`: 6 rounds of the 256-user batch),
in a fresh random order, so load from other processes falls on all of them alike. Prints, per
binary, its per-run medians (ms, sorted), their median and each run's fastest round. A binary
is any executable path, e.g. a copy of `target/release/examples/batch_peak` built at each
commit, or a wrapper script that sets an environment variable first.
"""

from __future__ import annotations

import random
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"batch: median ([0-9.]+) ms \(min ([0-9.]+)")


def run_once(binary: str, threads: str) -> tuple[float, float]:
    """One run's median and fastest round, in ms."""
    out = subprocess.run([binary, "6", threads], capture_output=True, text=True, check=True)
    found = LINE.search(out.stdout)
    if found is None:
        raise SystemExit(f"{binary}: no 'batch: median' line in its output:\n{out.stdout}")
    return float(found.group(1)), float(found.group(2))


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    reps, threads, binaries = int(argv[0]), argv[1], argv[2:]
    runs: dict[str, list[tuple[float, float]]] = {b: [] for b in binaries}
    for _ in range(reps):
        for binary in random.sample(binaries, len(binaries)):
            runs[binary].append(run_once(binary, threads))
    width = max(len(b) for b in binaries)
    for binary, results in runs.items():
        medians = sorted(r[0] for r in results)
        fastest = min(r[1] for r in results)
        print(
            f"{binary:{width}}  median of medians {statistics.median(medians):6.2f}  "
            f"fastest round {fastest:6.2f}  medians {' '.join(f'{m:.1f}' for m in medians)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
