"""`hrnn inspect`: what is in an interactions file, and what each history-length cut would keep.

The recipe asks users to review user history lengths "using a histogram or similar tool" before
choosing ``min/max_user_history_length_percentile``; this prints that review.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

import numpy as np

from hrnn.interactions import Interactions

PERCENTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def _utc(ts: int) -> str:
    # The reader only accepts 1970..2199 (docs/format.md), but this must not crash on any int.
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts} (Unix seconds, not a representable date)"


def summarize(data: Interactions, min_percentile: float, max_percentile: float) -> dict[str, Any]:
    """Counts, time range, event types and the history-length distribution, as a dict."""
    columns = data.columns()
    lengths = data.history_lengths().astype(np.int64)
    event_counts = np.bincount(columns["event_type"], minlength=len(data.event_types))
    cuts = []
    for p in PERCENTILES:
        length = float(np.quantile(lengths, p))
        as_min = lengths >= length
        as_max = lengths <= length
        cuts.append(
            {
                "percentile": p,
                "history_length": length,
                "as_min_keeps_users": int(as_min.sum()),
                "as_min_keeps_interactions": int(lengths[as_min].sum()),
                "as_max_keeps_users": int(as_max.sum()),
                "as_max_keeps_interactions": int(lengths[as_max].sum()),
            }
        )
    lo, hi = data.history_length_bounds(min_percentile, max_percentile)
    kept = (lengths >= lo) & (lengths <= hi)
    return {
        "source": data.report().source,
        "rows": len(data),
        "users": data.num_users,
        "items": data.num_items,
        "first_timestamp": int(columns["timestamp"].min()),
        "last_timestamp": int(columns["timestamp"].max()),
        "event_types": (
            {t: int(c) for t, c in zip(data.event_types, event_counts, strict=True)}
            if data.has_event_type
            else {}
        ),
        "ignored_columns": data.ignored_columns,
        "history_length": {
            "mean": float(lengths.mean()),
            "median": float(np.median(lengths)),
            "max": int(lengths.max()),
            "percentiles": cuts,
        },
        "chosen_cut": {
            "min_user_history_length_percentile": min_percentile,
            "max_user_history_length_percentile": max_percentile,
            "min_length": lo,
            "max_length": hi,
            "keeps_users": int(kept.sum()),
            "keeps_interactions": int(lengths[kept].sum()),
        },
    }


def _histogram_lines(lengths: np.ndarray, lo: float, hi: float, width: int = 40) -> list[str]:
    edges = np.unique(np.round(np.geomspace(1, max(2, lengths.max() + 1), num=16)).astype(np.int64))
    counts, _ = np.histogram(lengths, bins=edges)
    top = max(1, counts.max())
    lines = []
    for left, right, count in zip(edges[:-1], edges[1:], counts, strict=True):
        marks = []
        if left <= lo < right:
            marks.append("min cut")
        if left <= hi < right:
            marks.append("max cut")
        bar = "#" * round(width * count / top)
        suffix = f"  <- {', '.join(marks)}" if marks else ""
        lines.append(f"  [{left:>7}, {right:>7})  {count:>8}  {bar}{suffix}")
    return lines


def render(summary: dict[str, Any], lengths: np.ndarray) -> str:
    """The summary as text, with a log-scale histogram of history lengths."""
    s = summary
    out = [
        f"{s['source']}",
        f"  rows {s['rows']:,}   users {s['users']:,}   items {s['items']:,}",
        f"  time {_utc(s['first_timestamp'])} .. {_utc(s['last_timestamp'])}",
    ]
    if s["event_types"]:
        out.append("  event types: " + ", ".join(f"{t} ({c:,})" for t, c in s["event_types"].items()))
    if s["ignored_columns"]:
        out.append("  columns ignored: " + ", ".join(s["ignored_columns"]))
    h = s["history_length"]
    out.append(f"\nuser history length: mean {h['mean']:.1f}, median {h['median']:.1f}, max {h['max']:,}")
    out.append("  percentile  length   as min cut keeps users / rows    as max cut keeps users / rows")
    for c in h["percentiles"]:
        out.append(
            f"  {c['percentile']:>10.2f}  {c['history_length']:>6.1f}   "
            f"{c['as_min_keeps_users']:>12,} / {c['as_min_keeps_interactions']:<14,}  "
            f"{c['as_max_keeps_users']:>12,} / {c['as_max_keeps_interactions']:,}"
        )
    cut = s["chosen_cut"]
    out.append("\nhistogram (log-scale length bins; users per bin):")
    out.extend(_histogram_lines(lengths, cut["min_length"], cut["max_length"]))
    out.append(
        f"\nwith min/max_user_history_length_percentile = {cut['min_user_history_length_percentile']}"
        f" / {cut['max_user_history_length_percentile']}: "
        f"lengths {cut['min_length']:.1f} .. {cut['max_length']:.1f}"
        f" keep {cut['keeps_users']:,} users and {cut['keeps_interactions']:,} interactions"
    )
    return "\n".join(out)


def plot(lengths: np.ndarray, lo: float, hi: float, path: str) -> None:
    """Writes a PNG histogram of history lengths (log-scale) with the cuts marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError('--plot needs matplotlib: pip install "hrnn[plot]"') from error
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.geomspace(1, max(2, lengths.max() + 1), num=40)
    ax.hist(lengths, bins=bins.tolist(), color="#4c72b0")
    ax.set_xscale("log")
    ax.set_xlabel("user history length (interactions, log scale)")
    ax.set_ylabel("users")
    ax.axvline(lo, color="#c44e52", linestyle="--", label=f"min cut ({lo:.1f})")
    ax.axvline(hi, color="#dd8452", linestyle="--", label=f"max cut ({hi:.1f})")
    ax.legend()
    ax.set_title("User history lengths")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """`hrnn inspect`: prints the summary (text or JSON) and optionally writes the histogram PNG."""
    data = Interactions.from_csv(args.interactions, args.timestamp_unit)
    summary = summarize(
        data, args.min_user_history_length_percentile, args.max_user_history_length_percentile
    )
    lengths = data.history_lengths().astype(np.int64)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(render(summary, lengths))
    if args.plot:
        cut = summary["chosen_cut"]
        plot(lengths, cut["min_length"], cut["max_length"], args.plot)
        if not args.json:
            print(f"\nhistogram written to {args.plot}")
    return 0
