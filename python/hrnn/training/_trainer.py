"""The training loop: ensemble members, epochs of user-parallel truncated BPTT, early stopping.

Called through :func:`hrnn.train`; runs unchanged on CPU, on CUDA and under torchrun (DDP). Data
preparation is :mod:`._data`, the step :mod:`._step`, validation :mod:`._validation`, the export
:mod:`._export`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hrnn._network.model import HRNN
from hrnn.interactions import Interactions
from hrnn.trained_model import TrainedModel
from hrnn.training._batching import EventFeatures, SlotLayout, balanced_slots, build_layout, shuffle_ties
from hrnn.training._data import TrainingData, prepare_data
from hrnn.training._distributed import DistributedContext, resolve_device
from hrnn.training._export import export_model
from hrnn.training._loss import NegativeSampler, candidate_log_q
from hrnn.training._step import TrainingStep
from hrnn.training._update import (
    Base,
    fit_new_items,
    full_dropout,
    update_config,
    update_epochs,
    update_holdout,
)
from hrnn.training._validation import HOLDOUT_CUTOFF, evaluate_holdout
from hrnn.training._windows import windows
from hrnn.training.config import Hyperparameters, TrainingConfig

__all__ = ["fit", "member_seed"]

logger = logging.getLogger(__name__)


def fit(
    interactions: Interactions,
    hyper: Hyperparameters,
    config: TrainingConfig,
    *,
    event_type: str | None = None,
    event_value_threshold: float | None = None,
    device: str | torch.device = "auto",
    amp: bool = False,
    progress: bool = True,
    base: Base | None = None,
    keep_absent_items: bool = True,
) -> TrainedModel:
    """Trains an HRNN (the body of :func:`hrnn.train`; see there for the arguments).

    With ``config.ensemble_size = M > 1`` it trains ``M`` members of width ``hidden_dimension`` one
    after the other (member ``k`` with seed :func:`member_seed`) and exports their
    :meth:`HRNN.block_diagonal` merge, of width ``M × hidden_dimension``. With ``base``, an UPDATE
    (:mod:`hrnn.training._update`): the base's weights, new items fitted, a short schedule.
    """
    dev = resolve_device(device)
    ctx = DistributedContext.from_environment(dev)
    torch_threads = torch.get_num_threads()
    try:
        prepared = config if base is None else update_holdout(config)
        data = prepare_data(interactions, hyper, prepared, event_type, event_value_threshold)
        update: dict[str, Any] = {}
        if base is not None:
            if config.ensemble_size > 1:
                raise ValueError("ensemble_size: UPDATE training continues a single model; expected 1")
            newer = int((data.sessions.timestamp > base.cutoff).sum())
            if newer == 0:
                raise ValueError(
                    "training_mode='update': no events after the base model's training cut-off "
                    f"{base.cutoff} ({base.source}); nothing to update"
                )
            if config.epochs is None:
                assert data.config.epochs is not None
                data = replace(data, config=replace(data.config, epochs=update_epochs(data.config.epochs)))
            full = full_dropout(base, data.config)
            data = replace(data, config=update_config(full, config, data.config))
            update = {
                "mode": "update",
                "base": base.source,
                "base_cutoff": base.cutoff,
                "events_after_cutoff": newer,
                "epochs": data.config.epochs,
                "learning_rate": data.config.learning_rate,
                "dropout": {
                    "dropout_embedding": data.config.dropout_embedding,
                    "dropout_hidden": data.config.dropout_hidden,
                },
                "full_dropout": full,
            }
            if ctx.is_main:
                logger.info(
                    "UPDATE from %s: %d events after its cut-off %d; %d epochs over the whole history",
                    base.source,
                    newer,
                    base.cutoff,
                    data.config.epochs,
                )
        torch.set_num_threads(_torch_threads(data, config, dev, torch_threads))
        requested, config = config, data.config
        count = config.ensemble_size
        width = hyper.hidden_dimension
        members: list[HRNN] = []
        log: list[dict[str, float]] = []
        summaries: list[dict[str, int]] = []
        for k in range(count):
            member_config = replace(config, seed=member_seed(config.seed, k))
            if count > 1 and ctx.is_main:
                logger.info("ensemble member %d of %d (seed %d)", k + 1, count, member_config.seed)
            model, member_log, best_epoch = _fit_member(
                data,
                hyper,
                width,
                member_config,
                dev,
                ctx,
                amp=amp,
                progress=progress,
                base=base,
                update=update,
            )
            members.append(model)
            log.extend({**entry, "member": float(k)} if count > 1 else entry for entry in member_log)
            summaries.append(
                {"seed": member_config.seed, "epochs_trained": len(member_log), "best_epoch": best_epoch}
            )
        model = members[0] if count == 1 else HRNN.block_diagonal(members)
        result = export_model(model, data, hyper, requested, dev, log, summaries)
        if base is not None:
            kept = 0
            if keep_absent_items:
                result, kept = base.keep_absent_items(result)
            result.meta["training"]["update"] = {**update, "absent_items_kept": kept}
    except BaseException:
        ctx.close(completed=False)
        raise
    finally:
        torch.set_num_threads(torch_threads)
    ctx.close()
    return result


def _torch_threads(data: TrainingData, config: TrainingConfig, dev: torch.device, current: int) -> int:
    """Threads for torch's own ops during training.

    ``config.num_threads`` when given. Otherwise, when the fused kernels carry the step (CPU, full
    softmax), torch's remaining ops are small and run on 1 thread: more would spin-wait at every
    op's barrier, which on shared cores turns into waiting for the other process (an epoch then
    takes many times longer); the kernels themselves use hrnn's threads (``hrnn.set_num_threads``).
    """
    if data.config.num_threads is not None:
        return data.config.num_threads
    fused = config.cpu_kernels and dev.type == "cpu" and config.loss == "cross-entropy"
    if fused and data.sessions.num_items <= config.full_softmax_max_items:
        return 1
    return current


def member_seed(seed: int, member: int) -> int:
    """The seed of ensemble member ``member``: ``seed`` itself for member 0 (so an ensemble of one
    is the plain model), a distinct derived seed for the others."""
    if member == 0:
        return seed
    return int(np.random.SeedSequence([seed, member]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _fit_member(
    data: TrainingData,
    hyper: Hyperparameters,
    hidden: int,
    config: TrainingConfig,
    dev: torch.device,
    ctx: DistributedContext,
    *,
    amp: bool,
    progress: bool,
    base: Base | None = None,
    update: dict[str, Any] | None = None,
) -> tuple[HRNN, list[dict[str, float]], int]:
    """Trains one model of width ``hidden`` on ``data`` (from ``base``'s weights when given).

    Returns:
        The model with the weights to export (the best epoch's weight average), the per-epoch log
        and the best epoch.
    """
    from tqdm.auto import tqdm

    # prepare_data resolved every automatic setting
    assert config.epochs is not None and config.learning_rate is not None
    assert config.plateau_decay is not None
    model = _new_model(data, hidden, config, dev)
    if base is not None:
        started = base.warm_start(model, data.sessions)
        new = base.new_items(data.sessions)
        if new.any():
            started["new_item_occurrences_fitted"] = fit_new_items(model, data, new, dev, config.seed)
        if update is not None:
            update.update(started)
        if ctx.is_main:
            logger.info(
                "warm start: %d known items from the base, %d new items and %d new event types "
                "initialised fresh",
                started["known_items"],
                started["new_items"],
                started["new_event_types"],
            )
    full_softmax = config.loss == "cross-entropy" and data.sessions.num_items <= config.full_softmax_max_items
    schedule = None
    if base is not None:
        # UPDATE: a short warm-up, then a linear decay to zero over the planned steps
        steps = config.epochs * _epoch_layout(data, hyper, config, dev, ctx, 0)[0].num_windows
        schedule = _WarmupDecay(steps)
    optimization = _Optimization(
        model, data, config, dev, ctx, full_softmax=full_softmax, amp=amp, schedule=schedule
    )
    if ctx.is_main:
        _log_start(data, hyper, hidden, config, dev, ctx, full_softmax)
    seen_start = None
    if full_softmax and data.loss_exclude_seen:
        seen_start = np.repeat(data.starts, data.ends - data.starts).astype(np.int64)
    log: list[dict[str, float]] = []
    stopping = _EarlyStopping(config.patience, config.plateau_decay)
    # one bar for the whole training: epoch, loss, events/s, the last validation metric, and an
    # ETA for the planned epochs (early stopping may end sooner); no bar when stderr is not a TTY
    bar = tqdm(
        total=0, disable=True if not (progress and ctx.is_main) else None, unit="batch", dynamic_ncols=True
    )
    last_validation = ""
    for epoch in range(config.epochs):
        entry = _train_epoch(
            optimization, data, hyper, config, dev, ctx, epoch, seen_start, bar, last_validation
        )
        # an UPDATE runs its whole schedule and keeps its last weights: its validation users' held-out
        # events may be part of what the base learnt, so validation is only reported, once, at the end
        last = epoch == config.epochs - 1
        if len(data.validation_users) and (schedule is None or last):
            entry.update(_validate(optimization.averaged, data, dev, ctx))
            last_validation = f", validation MRR@{HOLDOUT_CUTOFF} {entry['validation_mrr']:.4f}"
        log.append(entry)
        if ctx.is_main:
            _log_epoch(entry)
        if schedule is None and stopping.should_stop(entry, optimization.averaged, optimization.optimizer):
            if ctx.is_main:
                logger.info("early stopping after epoch %d; best epoch %d", epoch + 1, stopping.best_epoch)
            break
    bar.close()
    if stopping.best_weights is not None:
        model.load_state_dict(stopping.best_weights)
    elif optimization.averaged is not model:
        model.load_state_dict(optimization.averaged.state_dict())
    return model, log, stopping.best_epoch if schedule is None else len(log)


def _new_model(data: TrainingData, hidden: int, config: TrainingConfig, dev: torch.device) -> HRNN:
    """A freshly initialised network (seeded by ``config.seed``) on ``dev``."""
    sessions = data.sessions
    # prepare_data resolved the automatic dropouts
    assert config.dropout_embedding is not None and config.dropout_hidden is not None
    torch.manual_seed(config.seed)
    model = HRNN(
        sessions.num_items,
        len(sessions.event_types),
        hidden,
        tie_embeddings=config.tie_embeddings,
        dropout_embedding=config.dropout_embedding,
        dropout_hidden=config.dropout_hidden,
        cpu_kernels=config.cpu_kernels,
    )
    model.reset_parameters(torch.from_numpy(np.log1p(_item_counts(data))).float())
    return model.to(dev)


def _item_counts(data: TrainingData) -> npt.NDArray[np.float64]:
    sessions = data.sessions
    return np.bincount(sessions.item_index, minlength=sessions.num_items).astype(np.float64)


class _Optimization:
    """The optimizer step of one member: negatives, forward (DDP-wrapped under torchrun), backward,
    clipping, Adam, and the moving average of the weights.

    ``averaged`` holds the exponential moving average of the weights over optimizer steps: it is what
    is validated and exported (the raw weights only keep training). It is ``model`` itself when the
    average is off.
    """

    def __init__(
        self,
        model: HRNN,
        data: TrainingData,
        config: TrainingConfig,
        dev: torch.device,
        ctx: DistributedContext,
        *,
        full_softmax: bool,
        amp: bool,
        schedule: _WarmupDecay | None = None,
    ) -> None:
        self.model = model
        self.schedule = schedule
        self.config = config
        self.full_softmax = full_softmax
        self.fused = config.cpu_kernels and dev.type == "cpu"
        step: nn.Module = TrainingStep(model, config, full_softmax, fused=self.fused)
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            step = DistributedDataParallel(step, device_ids=[dev.index] if dev.type == "cuda" else None)
        self.step = step
        assert config.learning_rate is not None  # resolved by prepare_data
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.sampler = NegativeSampler(
            _item_counts(data), config.sample_alpha, config.seed * 1009 + ctx.rank + 17
        )
        self.extra_count = 0 if full_softmax else config.num_negatives
        self.log_q = torch.zeros(data.sessions.num_items, device=dev)
        self.dev = dev
        use_amp = amp and dev.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
        self.averaged = copy.deepcopy(model) if config.weight_average_decay > 0 else model
        self.raw_params: list[torch.Tensor] = list(model.parameters())
        self.avg_params: list[torch.Tensor] = list(self.averaged.parameters())
        self.steps_done = 0

    def run(self, batch: dict[str, torch.Tensor], state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a window; returns its loss and the carried state."""
        extra = torch.from_numpy(self.sampler.sample(self.extra_count)).to(self.dev)
        if not self.full_softmax:
            in_batch = int(batch["rows"].numel())
            self.log_q = torch.from_numpy(
                candidate_log_q(
                    in_batch, self.extra_count, self.sampler.data_probability, self.sampler.probability
                )
            ).to(self.dev)
        with self.autocast:
            loss, state = self.step(batch, state.detach(), extra, self.log_q)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.schedule is not None:
            assert self.config.learning_rate is not None
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.learning_rate * self.schedule(self.steps_done)
        if self.config.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self._update_average()
        return loss, state

    def _update_average(self) -> None:
        if self.averaged is not self.model:
            # warm-up: the average starts close to the latest weights, (1 + t) / (10 + t)
            t = self.steps_done
            decay = min(self.config.weight_average_decay, (1 + t) / (10 + t))
            with torch.no_grad():
                torch._foreach_lerp_(self.avg_params, self.raw_params, 1.0 - decay)
        self.steps_done += 1


def _epoch_layout(
    data: TrainingData,
    hyper: Hyperparameters,
    config: TrainingConfig,
    dev: torch.device,
    ctx: DistributedContext,
    epoch: int,
) -> tuple[SlotLayout, EventFeatures]:
    """This rank's users of the epoch in slots, and the epoch's event features (ties shuffled)."""
    assert config.batch_size is not None
    sessions, features, starts = data.sessions, data.features, data.starts
    order = np.random.default_rng([config.seed, 2, epoch]).permutation(sessions.num_users)
    if config.shuffle_ties:
        perm = shuffle_ties(
            sessions.user_index,
            sessions.timestamp,
            features.weight,
            np.random.default_rng([config.seed, 3, epoch]),
        )
        features = features.permuted(perm)
    mine = order[ctx.rank :: ctx.world_size]
    num_slots = config.batch_size
    slot = balanced_slots(
        data.train_stop[mine] - starts[mine], num_slots, np.random.default_rng([config.seed, 4, epoch])
    )
    layout = build_layout(starts[mine], data.train_stop[mine], num_slots, hyper.bptt, slot=slot)
    return layout.padded_to(ctx.max_int(layout.num_windows, dev)), features


def _train_epoch(
    optimization: _Optimization,
    data: TrainingData,
    hyper: Hyperparameters,
    config: TrainingConfig,
    dev: torch.device,
    ctx: DistributedContext,
    epoch: int,
    seen_start: npt.NDArray[np.int64] | None,
    bar: Any,
    last_validation: str,
) -> dict[str, float]:
    """One pass over this rank's users; returns the epoch's log entry (without validation).

    ``last_validation`` ends the progress bar's text (the previous epoch's validation metric).
    """
    assert config.epochs is not None and config.target_window is not None and config.batch_size is not None
    layout, epoch_features = _epoch_layout(data, hyper, config, dev, ctx, epoch)
    optimization.model.train()
    state = torch.zeros(config.batch_size, optimization.model.hidden_dimension, device=dev)
    began = time.perf_counter()
    loss_sum, events = 0.0, 0
    bar.total = bar.n + layout.num_windows * (config.epochs - epoch)
    bar.set_description(f"epoch {epoch + 1}/{config.epochs}", refresh=False)
    for batch in windows(
        layout,
        epoch_features,
        dev,
        config.target_window,
        config.target_window_decay,
        seen_start,
        seen_as_ranges=optimization.fused,
    ):
        loss, state = optimization.run(batch, state)
        n = int(batch["rows"].numel())
        if n:
            loss_sum += float(loss.detach().item()) * n
            events += n
        rate = events / max(time.perf_counter() - began, 1e-9)
        bar.set_postfix_str(
            f"loss {loss_sum / max(events, 1):.4f}, {rate:,.0f} events/s{last_validation}", refresh=False
        )
        bar.update(1)
    seconds = time.perf_counter() - began
    return {
        "epoch": float(epoch + 1),
        "loss": loss_sum / max(events, 1),
        "events_per_second": events / max(seconds, 1e-9),
        "targets": float(events),
        "optimizer_steps": float(layout.num_windows),
        "seconds": seconds,
    }


def _validate(
    model: HRNN, data: TrainingData, dev: torch.device, ctx: DistributedContext
) -> dict[str, float]:
    """The hold-out metrics of the validation users, as ``validation_*`` log entries (the MRR that
    drives early stopping is rank 0's on every rank)."""
    users = data.validation_users
    began = time.perf_counter()
    metrics = evaluate_holdout(
        model,
        data.features,
        data.starts[users],
        data.validation_start[users],
        data.ends[users],
        dev,
        exclude_seen=data.validation_exclude_seen,
    )
    return {
        "validation_mrr": ctx.broadcast_float(metrics["mrr"], dev),
        "validation_precision_at_5": metrics["precision_at_5"],
        "validation_recall": metrics["recall"],
        "validation_seconds": time.perf_counter() - began,
    }


class _WarmupDecay:
    """The learning-rate factor of an UPDATE's step ``t`` of ``steps``: a linear warm-up over the
    first 5% (the optimizer's moments start from zero on weights that are already trained), the full
    rate until half the steps, then a linear decay to zero, so that the update ends on a settled
    model however few its epochs. Holding the rate for the first half learns more in a short
    schedule than decaying from the start (RSC15-100k, 3 epochs at 1.5× the rate, seeds 0–2, Recall@20
    as a share of FULL's: 98.2% against 97.9%)."""

    def __init__(self, steps: int) -> None:
        self.steps = max(steps, 1)
        self.warmup = max(self.steps // 20, 1)
        self.hold = self.steps // 2

    def __call__(self, t: int) -> float:
        decay = max(0.0, 1.0 - max(t - self.hold, 0) / (self.steps - self.hold))
        return min(1.0, (t + 1) / self.warmup) * decay


class _EarlyStopping:
    """Keeps the best epoch's weights by validation MRR, decays the learning rate after each epoch
    without improvement and stops after ``patience`` of them. Without validation every epoch is the
    best and nothing stops early."""

    def __init__(self, patience: int, plateau_decay: float) -> None:
        self.patience = patience
        self.plateau_decay = plateau_decay
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.best_weights: dict[str, Any] | None = None
        self.stale = 0

    def should_stop(self, entry: dict[str, float], averaged: HRNN, optimizer: torch.optim.Optimizer) -> bool:
        """Records the epoch ``entry``; True when training should stop."""
        epoch = int(entry["epoch"])
        if "validation_mrr" not in entry:
            self.best_epoch = epoch
            return False
        if entry["validation_mrr"] > self.best_metric:
            self.best_metric, self.best_epoch, self.stale = entry["validation_mrr"], epoch, 0
            self.best_weights = copy.deepcopy(averaged.state_dict())
            return False
        self.stale += 1
        for group in optimizer.param_groups:
            group["lr"] *= self.plateau_decay
        return self.stale >= self.patience


def _log_start(
    data: TrainingData,
    hyper: Hyperparameters,
    hidden: int,
    config: TrainingConfig,
    dev: torch.device,
    ctx: DistributedContext,
    full_softmax: bool,
) -> None:
    assert config.learning_rate is not None and config.target_window is not None
    sessions = data.sessions
    logger.info(
        "training HRNN: %d events, %d users, %d items (%s-like), %d validation users; H=%d, "
        "bptt=%d, %d slots, learning rate %.4g, %s loss%s, up to %d epochs on %s%s",
        len(sessions),
        sessions.num_users,
        sessions.num_items,
        "rating" if data.shape.kind == "ratings" else "click",
        len(data.validation_users),
        hidden,
        hyper.bptt,
        config.batch_size,
        config.learning_rate,
        "full-softmax" if full_softmax else config.loss + " (sampled)",
        f" over the next {config.target_window} items" if config.target_window > 1 else "",
        config.epochs,
        dev,
        f", {ctx.world_size} ranks" if ctx.enabled else "",
    )


def _log_epoch(entry: dict[str, float]) -> None:
    validation = ""
    if "validation_mrr" in entry:
        validation = (
            f", validation MRR@{HOLDOUT_CUTOFF} {entry['validation_mrr']:.4f} "
            f"P@5 {entry['validation_precision_at_5']:.4f} "
            f"Recall@{HOLDOUT_CUTOFF} {entry['validation_recall']:.4f}"
        )
    logger.info(
        "epoch %d: loss %.4f, %.0f events/s, %.1f s%s",
        int(entry["epoch"]),
        entry["loss"],
        entry["events_per_second"],
        entry["seconds"],
        validation,
    )
