"""The handlers of the ``hrnn`` subcommands (argument → library call → output)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from hrnn.cli import inspect_data, serve, serving

logger = logging.getLogger("hrnn.cli")

_TRAIN_FLAGS = (
    "hidden_dimension",
    "bptt",
    "recency_mask",
    "min_user_history_length_percentile",
    "max_user_history_length_percentile",
    "event_type",
    "event_value_threshold",
    "session_timeout",
    "epochs",
    "batch_size",
    "learning_rate",
    "num_threads",
)


def training_kwargs(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Train and tune keyword arguments from --config and the flags (flags win), and perform_hpo."""
    from hrnn.solution_config import SolutionConfig, load_solution_config

    config = load_solution_config(args.config) if args.config else SolutionConfig()
    kwargs = dict(config.train_kwargs)
    for name in _TRAIN_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
    kwargs["device"] = args.device
    kwargs["seed"] = args.seed
    kwargs["progress"] = not args.quiet
    tune = dict(config.tune_kwargs)
    if getattr(args, "max_trials", None) is not None:
        tune["max_trials"] = args.max_trials
    perform_hpo = bool(args.perform_hpo or config.perform_hpo)
    if not perform_hpo:
        if args.max_trials is not None:
            raise ValueError("--max-trials needs --perform-hpo (or performHPO in --config)")
        if config.tune_kwargs:
            logger.warning("--config: ignoring hpoConfig: performHPO is not true and --perform-hpo not given")
    return kwargs, tune, perform_hpo


def cmd_train(args: argparse.Namespace) -> int:
    """`hrnn train`: optional HPO, then training; writes the model directory (rank 0 only)."""
    import hrnn

    data = hrnn.Interactions.from_csv(args.interactions, args.timestamp_unit)
    if args.events is not None:
        before = len(data)
        data = data.with_event_log(args.events)
        print(f"{len(data) - before} rows added from the event log {args.events} ({len(data)} in all)")
    kwargs, tune_kwargs, perform_hpo = training_kwargs(args)
    if args.training_mode == "UPDATE" or args.init_from is not None:
        if perform_hpo:
            raise ValueError(
                "--perform-hpo: an UPDATE keeps the base model's hyperparameters; tune with FULL"
            )
        kwargs.update(
            init_from=args.init_from,
            training_mode=args.training_mode,
            keep_absent_items=not args.drop_absent_items,
        )
    if perform_hpo:
        fixed = {k: v for k, v in kwargs.items() if k not in {"device", "seed", "progress"}}
        result = hrnn.tune(data, fixed=fixed, seed=kwargs["seed"], **tune_kwargs)
        print(result)
        kwargs.update(result.best_config)
    began = time.perf_counter()
    model = hrnn.train(data, **kwargs)
    seconds = time.perf_counter() - began
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun every rank holds the same weights; rank 0 writes them
    print(training_summary(model.training, seconds))
    path = model.save(args.out)
    print(f"model written to {path}")
    return 0


def training_summary(training: dict[str, Any], seconds: float) -> str:
    """One line: the training time, epochs and the best epoch's validation metrics."""
    history = training.get("history", [])
    best = int(training.get("best_epoch", 0))
    line = f"trained in {seconds:.1f} s: {int(training.get('epochs_trained', len(history)))} epochs"
    chosen = [e for e in history if int(e.get("epoch", 0)) == best and "validation_mrr" in e]
    if chosen:
        e = chosen[0]
        line += (
            f", best epoch {best}: validation MRR@25 {e['validation_mrr']:.4f}, "
            f"P@5 {e['validation_precision_at_5']:.4f}"
        )
    else:
        line += " (no validation split: the last epoch's weights)"
    return line


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`hrnn evaluate`: the evaluation report (model vs baselines) as a table or JSON."""
    import hrnn

    data = hrnn.Interactions.from_csv(args.interactions, args.timestamp_unit)
    test = hrnn.Interactions.from_csv(args.test, args.timestamp_unit) if args.test else None
    kwargs, _, perform_hpo = training_kwargs(args)
    if perform_hpo:
        raise ValueError(
            "evaluate does not tune: run `hrnn train --perform-hpo` on the training data, then pass "
            "the chosen settings as flags (--perform-hpo / performHPO would be ignored here)"
        )
    baselines = tuple(b for b in args.baselines.split(",") if b)
    seed = kwargs.pop("seed")
    kwargs.pop("progress")
    report = hrnn.evaluate(
        data, protocol=args.protocol, test=test, config=kwargs, baselines=baselines, seed=seed,
        exclude_seen=args.exclude_seen, progress=not args.quiet,
    )  # fmt: skip
    print(report.to_json() if args.json else report)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """`hrnn demo`: the embedded default job."""
    from hrnn.cli.demo import run_demo

    return run_demo(seed=args.seed, epochs=args.epochs, out=args.out, progress=not args.quiet)


def _inspect(args: argparse.Namespace) -> int:
    return inspect_data.run(args)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "inspect": _inspect,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "recommend": serving.cmd_recommend,
    "batch-recommend": serving.cmd_batch_recommend,
    "put-events": serving.cmd_put_events,
    "repair-log": serving.cmd_repair_log,
    "serve": serve.cmd_serve,
}


def dumps(value: Any) -> str:
    """Compact JSON for one output line."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
