"""The ``hrnn`` command line: argument parsing, dispatch, and one-line errors."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence

from hrnn import __version__

__all__ = ["build_parser", "main"]


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults in --help and keeps descriptions' line breaks.

    A default is appended only where it says something: not for ``None`` (the help text states the
    rule instead), not for on/off switches, and not where the help already names its default.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default is None or action.nargs == 0 or "default" in text:
            return text
        return super()._get_help_string(action)


_DEBUG_HELP = "show tracebacks and debug logs (before or after the command)"
_QUIET_HELP = "no progress bars or info logs, warnings only (before or after the command)"
_MODEL_DIR_HELP = "model directory written by `hrnn train` (model.safetensors + model.json)"


def _percentile_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-user-history-length-percentile",
        type=float,
        default=0.0,
        help="drop users whose history is shorter than this percentile of lengths [0, 1]",
    )
    parser.add_argument(
        "--max-user-history-length-percentile",
        type=float,
        default=0.99,
        help="drop users whose history is longer than this percentile of lengths [0, 1]",
    )


def _timestamp_unit_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timestamp-unit",
        choices=["s", "ms", "us", "ns"],
        default="s",
        help="unit of the CSV's TIMESTAMP column; other units are converted to whole seconds",
    )


def _training_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("aws-hrnn hyperparameters")
    group.add_argument(
        "--hidden-dimension", type=int, default=None, help="hidden state size [32, 256] (default: 43)"
    )
    group.add_argument(
        "--bptt", type=int, default=None, help="back-propagation-through-time window [2, 32] (default: 32)"
    )
    group.add_argument(
        "--no-recency-mask", dest="recency_mask", action="store_false", default=None,
        help="weight all training targets equally (default: recent ones weigh more)",
    )  # fmt: skip
    group = parser.add_argument_group("featurization and data selection")
    group.add_argument(
        "--min-user-history-length-percentile", type=float, default=None, help="[0, 1] (default: 0.0)"
    )
    group.add_argument(
        "--max-user-history-length-percentile", type=float, default=None, help="[0, 1] (default: 0.99)"
    )
    group.add_argument("--event-type", default=None, help="train only on this EVENT_TYPE (default: all)")
    group.add_argument(
        "--event-value-threshold",
        type=float,
        default=None,
        help="keep rows with EVENT_VALUE >= this (default: every row)",
    )
    group.add_argument(
        "--session-timeout",
        type=int,
        default=None,
        help="seconds of inactivity that end a session (default: 1800)",
    )
    group = parser.add_argument_group("training")
    group.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="maximum epochs (default: chosen from the data's shape: 16 on rating-like data, up to 30 "
        "with early stopping on click-like data; see docs/training.md)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="users trained in parallel per step (default: chosen from the data's size, "
        "clamp(min(E / 1000, E / L), 16, 256) for E events and a longest history of L; see docs/training.md)",
    )
    group.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="Adam learning rate (default: chosen from the batch size, 0.01 * sqrt(batch_size / 16) on "
        "rating-like data, 0.015 * sqrt(batch_size / 16) on click-like data; see docs/training.md)",
    )
    group.add_argument(
        "--threads",
        dest="num_threads",
        type=int,
        default=None,
        help="threads of torch's own ops during training (default: 1 while hrnn's fused CPU "
        "kernels, which use every core, carry the step)",
    )
    group.add_argument("--device", default="auto", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:N'")
    group.add_argument("--seed", type=int, default=0, help="random seed (same seed, same weights on CPU)")
    group.add_argument(
        "--config", default=None, help="Personalize solutionConfig JSON (CreateSolution shape)"
    )
    group.add_argument(
        "--perform-hpo", action="store_true", help="tune hyperparameters with optuna before training"
    )
    group.add_argument(
        "--max-trials",
        type=int,
        default=None,
        help="HPO trials, with --perform-hpo only (default: the config's maxNumberOfTrainingJobs, else 20)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="hrnn",
        description="Session-aware hierarchical recurrent recommender (the aws-hrnn recipe as a library).",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"hrnn {__version__}")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    parser.add_argument("--quiet", action="store_true", help=_QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train on a bundled synthetic log, evaluate, update in real time",
                       formatter_class=_Formatter)  # fmt: skip
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic log and of training")
    p.add_argument(
        "--epochs", type=int, default=8, help="maximum training epochs (keeps the demo under a minute)"
    )
    p.add_argument("--out", default=None, help="also keep the trained model directory here")

    p = sub.add_parser("inspect", help="counts, time range, event types, history-length distribution",
                       formatter_class=_Formatter)  # fmt: skip
    p.add_argument(
        "interactions", help="interactions CSV (USER_ID, ITEM_ID, TIMESTAMP[, EVENT_TYPE, EVENT_VALUE])"
    )
    _percentile_flags(p)
    _timestamp_unit_flag(p)
    p.add_argument(
        "--plot", default=None, metavar="PATH.png", help="write a histogram PNG (needs hrnn[plot])"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser("train", help="train a model and save its directory", formatter_class=_Formatter)
    p.add_argument("interactions", help="interactions CSV")
    p.add_argument("--out", required=True, help="model directory to write (atomically)")
    p.add_argument(
        "--events",
        default=None,
        metavar="LOG",
        help="also train on this event log (rows already in the CSV are left out, anonymous sessions "
        "stitched to their user; see docs/operations.md)",
    )
    p.add_argument(
        "--training-mode",
        default="FULL",
        type=str.upper,
        choices=["FULL", "UPDATE"],
        help="FULL: train from scratch; UPDATE: continue from --init-from's weights (new items fitted "
        "to their occurrences) for a tenth of FULL's epochs over the whole history, at half "
        "the dropout and 1.25x the learning rate, holding out no validation events "
        "(Personalize's trainingMode; docs/operations.md)",
    )
    p.add_argument(
        "--init-from", default=None, metavar="DIR", help="the base model of --training-mode UPDATE"
    )
    p.add_argument(
        "--drop-absent-items",
        action="store_true",
        help="UPDATE: drop the base model's items that the data no longer has (default: keep them)",
    )
    _timestamp_unit_flag(p)
    _training_flags(p)

    p = sub.add_parser("evaluate", help="train and evaluate against baselines (offline metrics)",
                       formatter_class=_Formatter)  # fmt: skip
    p.add_argument("interactions", help="interactions CSV (or the train file of --test)")
    p.add_argument(
        "--protocol", default="holdout-last", help="split",
        choices=["personalize", "holdout-last", "next-item", "global-time"],
    )  # fmt: skip
    p.add_argument("--test", default=None, help="explicit test CSV (next-item protocol, e.g. RSC15)")
    p.add_argument("--baselines", default="popularity,sknn", help="comma-separated baselines ('' for none)")
    p.add_argument("--exclude-seen", action="store_true", help="never recommend items already in a history")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _timestamp_unit_flag(p)
    _training_flags(p)

    p = sub.add_parser("recommend", help="recommendations for one user (GetRecommendations)",
                       formatter_class=_Formatter)  # fmt: skip
    p.add_argument("model_dir", help=_MODEL_DIR_HELP)
    p.add_argument("--user-id", required=True, help="the USER_ID to recommend items for")
    p.add_argument("--item-id", default=None, help="accepted and ignored, as in aws-hrnn")
    p.add_argument("--num-results", type=int, default=25, help="[1, 500]")
    p.add_argument("--exclude-seen", action="store_true", help="drop items in the user's history")
    p.add_argument("--event-log", default=None, help="replay this real-time event log first")
    p.add_argument("--json", action="store_true", help="print Personalize's response JSON")

    p = sub.add_parser("batch-recommend", help="batch inference job: JSON lines in, JSON lines out",
                       formatter_class=_Formatter)  # fmt: skip
    p.add_argument("model_dir", help=_MODEL_DIR_HELP)
    p.add_argument("--input", required=True, help='JSON lines of {"userId": "..."}')
    p.add_argument("--output", required=True, help="JSON lines written here (atomically)")
    p.add_argument("--num-results", type=int, default=25, help="[1, 500]")
    p.add_argument("--event-log", default=None, help="replay this real-time event log first")
    p.add_argument("--chunk-size", type=int, default=4096, help="users scored per batch")

    p = sub.add_parser(
        "put-events", help="replay PutEvents payloads (camelCase JSON lines) into an event log",
        formatter_class=_Formatter,
    )  # fmt: skip
    p.add_argument("model_dir", help=_MODEL_DIR_HELP)
    p.add_argument("--event-log", required=True, help="append-only event log (created if missing)")
    p.add_argument("--input", required=True, help="JSON lines, each a PutEvents request")

    p = sub.add_parser(
        "serve", help="HTTP server the AWS SDKs' personalize-runtime/-events clients talk to",
        formatter_class=_Formatter,
    )  # fmt: skip
    p.add_argument("model_dir", help=_MODEL_DIR_HELP)
    p.add_argument("--event-log", default=None, help="durable PutEvents log (replayed at start)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="TCP port (0: any free one)")
    p.add_argument(
        "--config",
        default=None,
        help="JSON file: filters (ARN -> filter), campaign_arns, credentials for SigV4 (docs/api.md)",
    )
    p.add_argument("--max-connections", type=int, default=64, help="connections served at once")
    p.add_argument("--access-log", action="store_true", help="log one line per request")

    p = sub.add_parser(
        "repair-log",
        help="rewrite a damaged event log with every intact record (the original is kept)",
        formatter_class=_Formatter,
    )
    p.add_argument("event_log", help="the event log (no recommender may hold it open)")
    _global_flags_after_the_command(sub.choices.values())
    return parser


def _global_flags_after_the_command(subparsers: Iterable[argparse.ArgumentParser]) -> None:
    """Accepts ``--debug`` / ``--quiet`` after the subcommand too (``hrnn recommend ... --quiet``).

    ``SUPPRESS`` leaves the attribute unset unless the flag is given, so the top-level parser's
    value (given before the subcommand, or False) is not overwritten.
    """
    for p in subparsers:
        group = p.add_argument_group("output")
        group.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
        group.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help=_QUIET_HELP)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 error, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from hrnn.cli import commands

    handler = commands.HANDLERS[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("hrnn: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        print(f"hrnn {args.command}: error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
