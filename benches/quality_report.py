"""Quality report on the shared data: HRNN against popularity and session-kNN (issue #5).

Run: ``.venv/bin/python benches/quality_report.py [--no-model] [--only ml|rsc15|reference]
[--out DIR] [--config JSON]``. Skips cleanly when /work/shared/data (or ``$HRNN_DATA``) is absent.
Not collected by pytest (the name matches neither ``test_*`` nor ``bench_*``).

Sections:
- reference: popularity-count + holdout-last on MovieLens latest-small, against the README's
  reference numbers (the metric definitions check).
- ml: MovieLens latest-small, holdout-last, items already rated excluded (users never re-rate).
- ml-personalize: MovieLens latest-small, the GetSolutionMetrics split (context via put_events).
- rsc15: RSC15-100k explicit train/test pair, next-item, full-catalogue conservative ranking.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hrnn
from hrnn.evaluation import Popularity, SessionKnn, evaluate_split, make_split
from hrnn.evaluation._hrnn_model import HrnnModel

DATA = Path(os.environ.get("HRNN_DATA", "/work/shared/data"))

README_POPULARITY = {
    "mean_reciprocal_rank_at_25": 0.0627,
    "precision_at_5": 0.0205,
    "precision_at_10": 0.0155,
    "precision_at_25": 0.0147,
    "normalized_discounted_cumulative_gain_at_5": 0.0240,
    "normalized_discounted_cumulative_gain_at_10": 0.0247,
    "normalized_discounted_cumulative_gain_at_25": 0.0352,
    "coverage": 0.0026,
}

#: session-kNN settings for MovieLens (user histories, not sessions), tuned on a holdout-last
#: split nested inside the MovieLens training part (never on its test targets).
ML_SKNN = {"position_decay": 5.0, "context_length": 10, "session_timeout": 1800}


def reference() -> dict[str, Any]:
    data = hrnn.Interactions.from_csv(DATA / "ml-latest-small/interactions.csv")
    split = make_split(data, "holdout-last")
    report = evaluate_split(split, baselines=(Popularity(),))
    got = report["popularity"].metrics
    print(report)
    print("\nREADME popularity reference vs measured (conservative ties):")
    for name, want in README_POPULARITY.items():
        print(f"  {name:45s} README {want:.4f}  measured {got[name]:.4f}  diff {got[name] - want:+.4f}")
    return report.to_dict()


def run(
    name: str,
    split_args: dict[str, Any],
    exclude_seen: bool,
    sknn: dict[str, Any],
    model: bool,
    config: dict[str, Any],
) -> dict[str, Any]:
    split = make_split(**split_args)
    models = [HrnnModel(config, progress=False)] if model else []
    report = evaluate_split(
        split, models=models, baselines=(Popularity(), SessionKnn(**sknn)), exclude_seen=exclude_seen
    )
    print(f"\n== {name}\n{report}")
    return report.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-model", action="store_true", help="baselines only (no torch training)")
    parser.add_argument("--only", choices=["reference", "ml", "ml-personalize", "rsc15"], action="append")
    parser.add_argument("--config", type=json.loads, default={}, help="hrnn.train keyword arguments (JSON)")
    parser.add_argument("--out", type=Path, help="write one JSON report per section here")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (set HRNN_DATA)")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sections = args.only or ["reference", "ml", "ml-personalize", "rsc15"]
    model = not args.no_model
    results: dict[str, Any] = {}
    if "reference" in sections:
        results["reference"] = reference()
    if {"ml", "ml-personalize"} & set(sections):
        ml = hrnn.Interactions.from_csv(DATA / "ml-latest-small/interactions.csv")
        if "ml" in sections:
            results["ml"] = run(
                "MovieLens latest-small, holdout-last, exclude seen",
                {"interactions": ml, "protocol": "holdout-last"},
                True,
                ML_SKNN,
                model,
                args.config,
            )
        if "ml-personalize" in sections:
            results["ml-personalize"] = run(
                "MovieLens latest-small, personalize split, exclude seen",
                {"interactions": ml, "protocol": "personalize"},
                True,
                ML_SKNN,
                model,
                args.config,
            )
    if "rsc15" in sections:
        train = hrnn.Interactions.from_csv(DATA / "rsc15-100k/train.csv")
        test = hrnn.Interactions.from_csv(DATA / "rsc15-100k/test.csv")
        results["rsc15"] = run(
            "RSC15-100k, next-item (explicit test file)",
            {"interactions": train, "protocol": "next-item", "test": test},
            False,
            {},
            model,
            args.config,
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, result in results.items():
            (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
