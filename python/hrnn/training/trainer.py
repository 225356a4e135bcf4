"""The training loop: data preparation, user-parallel truncated BPTT, early stopping, export.

Called through :func:`hrnn.train`; runs unchanged on CPU, on CUDA and under torchrun (DDP).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hrnn import model_format as fmt
from hrnn.interactions import Interactions
from hrnn.sessions import Sessions
from hrnn.trained_model import TrainedModel
from hrnn.training import kernels
from hrnn.training.batching import (
    EventFeatures,
    SlotLayout,
    Window,
    balanced_slots,
    build_layout,
    recency_weights,
    shuffle_ties,
)
from hrnn.training.config import Hyperparameters, TrainingConfig
from hrnn.training.distributed import DistributedContext, resolve_device
from hrnn.training.loss import (
    NegativeSampler,
    bpr_max_loss,
    candidate_log_q,
    full_softmax_loss,
    full_softmax_window_loss,
    sampled_softmax_loss,
    sampled_softmax_window_loss,
)
from hrnn.training.model import HRNN

__all__ = [
    "TrainingData",
    "evaluate",
    "evaluate_holdout",
    "final_states",
    "fit",
    "prepare_data",
    "states_after",
]

logger = logging.getLogger(__name__)

#: Cut-off of the next-item metrics of :func:`evaluate` (MRR@20, Recall@20).
VALIDATION_CUTOFF = 20
#: Cut-off of the hold-out metrics of :func:`evaluate_holdout`, which drive early stopping (MRR@25,
#: Recall@25; plus P@5): Personalize's list length.
HOLDOUT_CUTOFF = 25
_EVAL_SLOTS = 512
#: Validation users scored per catalogue-wide logits matrix.
_HOLDOUT_CHUNK = 256


@dataclass(frozen=True)
class TrainingData:
    """Sessionized training data with its validation split and per-event features.

    Attributes:
        interactions: the interactions after selection and the percentile filter.
        sessions: their sessions.
        features: per-event features; ``weight`` is the training target weight (recency, 0 for
            validation targets).
        train_stop: per user, one past the last *input* event used in training.
        validation_users: users whose latest events are held out.
        validation_start: per user, the first held-out position (= user end when none).
        validation_weight: per event, 1 for held-out targets, else 0.
        half_life: the recency half-life used, in seconds (``None`` when all weights are 1).
        validation_exclude_seen: whether validation excludes each user's earlier items from the
            ranking (``config.validation_exclude_seen`` resolved against the data).
        loss_exclude_seen: whether the full softmax leaves out each input's earlier items
            (``config.loss_exclude_seen`` resolved against the data).
    """

    interactions: Interactions
    sessions: Sessions
    features: EventFeatures
    train_stop: npt.NDArray[np.int64]
    validation_users: npt.NDArray[np.int64]
    validation_start: npt.NDArray[np.int64]
    validation_weight: npt.NDArray[np.float32]
    half_life: float | None
    validation_exclude_seen: bool = False
    loss_exclude_seen: bool = False

    @property
    def starts(self) -> npt.NDArray[np.int64]:
        """First event position of each user."""
        return self.sessions.user_offsets[:-1]

    @property
    def ends(self) -> npt.NDArray[np.int64]:
        """One past the last event position of each user."""
        return self.sessions.user_offsets[1:]


def prepare_data(
    interactions: Interactions,
    hyper: Hyperparameters,
    config: TrainingConfig,
    event_type: str | None = None,
    event_value_threshold: float | None = None,
) -> TrainingData:
    """Selection, percentile filter, minimum check, sessionize, recency weights, validation split.

    Args:
        interactions: the raw interactions.
        hyper: hyperparameters (percentiles, recency mask).
        config: training settings (session timeout, validation split, half-life, seed).
        event_type: keep only this EVENT_TYPE (``Interactions.select``).
        event_value_threshold: keep only rows with EVENT_VALUE ≥ this.

    Returns:
        The prepared data.

    Raises:
        InsufficientDataError: the filtered data is below Personalize's minimum.
    """
    data = interactions.select(event_type, event_value_threshold)
    data = data.filter_by_history_length(
        hyper.min_user_history_length_percentile, hyper.max_user_history_length_percentile
    )
    data.check_minimum()
    sessions = data.sessionize(config.session_timeout)
    ts = sessions.timestamp
    end_time, span = int(ts.max()), int(ts.max() - ts.min())
    half_life = config.recency_half_life
    if half_life is None:
        half_life = float(span) if span > 0 else None
    weight = recency_weights(ts, end_time, half_life, hyper.recency_mask)
    if not hyper.recency_mask:
        half_life = None

    starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
    lengths = ends - starts
    validation_start = ends.copy()
    num_validation = 0
    if config.validation_fraction > 0:
        # Small data gets at least 200 users (a third at most): fewer make early stopping a coin toss.
        wanted = max(
            round(config.validation_fraction * sessions.num_users), min(200, sessions.num_users // 3)
        )
        num_validation = min(config.validation_max_users, wanted)
    eligible = np.flatnonzero(lengths >= 2)
    rng = np.random.default_rng([config.seed, 1])
    if num_validation >= 1 and eligible.size >= 2:
        chosen = np.sort(rng.choice(eligible, size=min(num_validation, eligible.size - 1), replace=False))
    else:
        chosen = np.zeros(0, dtype=np.int64)
    held = np.clip(np.floor(config.validation_holdout * lengths[chosen]).astype(np.int64), 1, None)
    held = np.minimum(held, lengths[chosen] - 1)
    validation_start[chosen] = ends[chosen] - held
    counts = validation_start - starts  # training events per user
    user_of_event = sessions.user_index
    position_in_user = np.arange(len(sessions), dtype=np.int64) - starts[user_of_event]
    held_out = position_in_user >= counts[user_of_event]
    if config.user_weight_exponent > 0:
        # n_u ** −p per target (n_u = the user's training targets), so long histories dominate less
        targets = np.maximum(counts - 1, 1).astype(np.float64)
        weight = weight * np.power(targets, -config.user_weight_exponent)[user_of_event]
    train_weight = np.where(held_out, 0.0, weight).astype(np.float32)
    # on when no user interacts with an item twice (e.g. ratings), where recommending an
    # already-seen item is useless and evaluation excludes them
    pairs = sessions.user_index.astype(np.int64) * max(sessions.num_items, 1) + sessions.item_index
    no_repeats = bool(np.unique(pairs).size == len(sessions))
    exclude_seen = no_repeats if config.validation_exclude_seen is None else config.validation_exclude_seen
    loss_exclude_seen = no_repeats if config.loss_exclude_seen is None else config.loss_exclude_seen
    return TrainingData(
        interactions=data,
        sessions=sessions,
        features=EventFeatures.from_sessions(sessions, train_weight),
        train_stop=validation_start - 1,
        validation_users=chosen.astype(np.int64),
        validation_start=validation_start,
        validation_weight=held_out.astype(np.float32),
        half_life=half_life,
        validation_exclude_seen=exclude_seen,
        loss_exclude_seen=loss_exclude_seen,
    )


class _TrainingStep(nn.Module):
    """One window's forward pass and loss (a module so that DDP can wrap it).

    ``fused``: the full softmax runs through :func:`kernels.softmax_cross_entropy` (CPU) instead of
    torch's logits and cross-entropy.
    """

    def __init__(self, model: HRNN, config: TrainingConfig, full_softmax: bool, fused: bool = False) -> None:
        super().__init__()
        self.model = model
        self.config = config
        self.full_softmax = full_softmax
        self.fused = fused and full_softmax

    def forward(
        self, batch: dict[str, torch.Tensor], state: torch.Tensor, extra: torch.Tensor, log_q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        states, last = model.run(batch["item"], batch["event_type"], batch["time"], state, batch["reset"])
        rows = batch["rows"]
        o = model.read_out(states.flatten(0, 1)[rows], batch["target_time"].flatten(0, 1)[rows])
        target = batch["target"].flatten()[rows]
        weight = batch["weight"].flatten()[rows]
        if self.fused:
            loss = _fused_softmax_loss(model, o, batch, target, weight)
        elif "window_target" in batch:
            window_target = batch["window_target"].flatten(0, 1)[rows]
            window_weight = batch["window_weight"].flatten(0, 1)[rows]
            if self.full_softmax:
                logits = _mask_seen(model.logits(o), batch, window_target, window_weight)
                loss = full_softmax_window_loss(logits, window_target, window_weight)
            else:
                loss = sampled_softmax_window_loss(
                    o,
                    target,
                    window_target,
                    window_weight,
                    extra,
                    log_q,
                    model.output_embedding,
                    model.output_bias,
                )
        elif self.full_softmax:
            logits = _mask_seen(model.logits(o), batch, target.unsqueeze(1), weight.unsqueeze(1))
            loss = full_softmax_loss(logits, target, weight)
        elif self.config.loss == "bpr-max":
            loss = bpr_max_loss(
                o,
                target,
                weight,
                extra,
                model.output_embedding,
                model.output_bias,
                self.config.bpr_max_regularization,
            )
        else:
            loss = sampled_softmax_loss(
                o, target, weight, extra, log_q, model.output_embedding, model.output_bias
            )
        return loss, last


def _fused_softmax_loss(
    model: HRNN, o: torch.Tensor, batch: dict[str, torch.Tensor], target: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """The full-softmax loss of the read-out ``o`` through the fused CPU kernel."""
    rows = batch["rows"]
    if "window_target" in batch:
        items = batch["window_target"].flatten(0, 1)[rows]
        weights = batch["window_weight"].flatten(0, 1)[rows]
    else:
        items, weights = target.unsqueeze(1), weight.unsqueeze(1)
    exclusions = None
    if "seen_start" in batch:
        exclusions = (batch["seen_items"].numpy(), batch["seen_start"].numpy(), batch["seen_stop"].numpy())
    return kernels.softmax_cross_entropy(
        o, model.output_embedding, model.output_bias, items.numpy(), weights.numpy(), exclusions
    )


def _mask_seen(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``logits`` with each row's earlier items (``seen_row``/``seen_item``) at −∞, its targets of
    positive weight kept."""
    if "seen_row" not in batch:
        return logits
    mask = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
    mask[batch["seen_row"], batch["seen_item"]] = True
    row, column = (weights > 0).nonzero(as_tuple=True)
    mask[row, targets[row, column]] = False
    return logits.float().masked_fill(mask, -math.inf)


def _seen_pairs(
    window: Window, features: EventFeatures, user_start: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(row, item) of every item the user of each training row has had up to its input event.

    Rows are those of ``_to_device`` (``weight > 0``, in flattened time-major order).
    """
    position = window.position.reshape(-1)[np.flatnonzero(window.weight.reshape(-1) > 0)]
    first = user_start[position]
    counts = position - first + 1
    rows = np.repeat(np.arange(position.size, dtype=np.int64), counts)
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, features.item[np.repeat(first, counts) + within]


def _seen_ranges(
    window: Window, user_start: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per training row (as :func:`_seen_pairs`), the range ``[start, stop)`` of event positions
    whose items its user has had up to its input event."""
    position = window.position.reshape(-1)[np.flatnonzero(window.weight.reshape(-1) > 0)]
    return user_start[position], position + 1


def _to_device(
    window: Window,
    device: torch.device,
    targets_ahead: bool = False,
    seen: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
    seen_ranges: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
) -> dict[str, torch.Tensor]:
    """The window as torch tensors on ``device`` (through pinned memory on CUDA).

    ``targets_ahead`` adds ``window_target`` and ``window_weight`` (a ``target_window`` > 1);
    ``seen`` adds ``seen_row`` and ``seen_item`` (``loss_exclude_seen``), ``seen_ranges`` adds
    ``seen_items``, ``seen_start`` and ``seen_stop`` (the same for the fused kernel).
    """
    arrays: dict[str, np.ndarray] = {
        "item": window.item,
        "event_type": window.event_type,
        "time": window.time,
        "reset": window.reset,
        "target": window.target,
        "target_time": window.target_time,
        "weight": window.weight,
        "rows": np.flatnonzero(window.weight.reshape(-1) > 0),
    }
    if targets_ahead:
        arrays["window_target"] = window.window_target
        arrays["window_weight"] = window.window_weight
    if seen is not None:
        arrays["seen_row"], arrays["seen_item"] = seen
    if seen_ranges is not None:
        arrays["seen_items"], arrays["seen_start"], arrays["seen_stop"] = seen_ranges
    pin = device.type == "cuda"
    out = {}
    for name, array in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(array))
        if pin:
            t = t.pin_memory()
        out[name] = t.to(device, non_blocking=pin)
    return out


def _windows(
    layout: SlotLayout,
    features: EventFeatures,
    device: torch.device,
    target_window: int = 1,
    target_window_decay: float = 1.0,
    user_start: npt.NDArray[np.int64] | None = None,
    seen_as_ranges: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """The layout's windows as tensors; with ``user_start``, each row's earlier items (as pairs,
    or as ranges into ``features.item`` with ``seen_as_ranges``)."""
    for index in range(layout.num_windows):
        window = layout.window(index, features, target_window, target_window_decay)
        seen = ranges = None
        if user_start is not None and seen_as_ranges:
            ranges = (features.item, *_seen_ranges(window, user_start))
        elif user_start is not None:
            seen = _seen_pairs(window, features, user_start)
        yield _to_device(window, device, targets_ahead=target_window > 1, seen=seen, seen_ranges=ranges)


@torch.no_grad()
def evaluate(
    model: HRNN,
    features: EventFeatures,
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    device: torch.device,
    cutoff: int = VALIDATION_CUTOFF,
    query_at_target: bool = True,
) -> dict[str, float]:
    """Next-item metrics of targets with ``features.weight > 0`` (full catalogue, conservative ties).

    Each target is predicted from the events before it of its own user only: every user starts from a
    zeroed state, exactly as in training.

    Args:
        model: the network (evaluated in eval mode; its mode is restored).
        features: per-event features whose ``weight`` marks the evaluated targets.
        starts: first input position of each evaluated user.
        stops: one past the last input position of each evaluated user.
        device: where to run.
        cutoff: ``k`` of MRR@k and Recall@k.
        query_at_target: read out at the target's own time gap (as in training); False: at
            ``Δq = 0`` (``at=None``, a recommendation right after the last event).

    Returns:
        ``{"mrr": …, "recall": …, "targets": …}``.
    """
    was_training = model.training
    model.eval()
    layout = build_layout(starts, stops, min(_EVAL_SLOTS, max(len(starts), 1)), 32)
    state = torch.zeros(layout.num_slots, model.hidden_dimension, device=device)
    reciprocal, hits, count = 0.0, 0, 0
    for batch in _windows(layout, features, device):
        states, state = model.run(batch["item"], batch["event_type"], batch["time"], state, batch["reset"])
        rows = batch["rows"]
        if rows.numel() == 0:
            continue
        query = batch["target_time"].flatten(0, 1)[rows]
        o = model.read_out(states.flatten(0, 1)[rows], query if query_at_target else torch.zeros_like(query))
        logits = model.logits(o).float()
        target = batch["target"].flatten()[rows]
        target_logit = logits.gather(1, target.unsqueeze(1))
        rank = (logits >= target_logit).sum(dim=1)  # conservative: ties rank ahead of the target
        top = rank <= cutoff
        reciprocal += float((top.double() / rank.double()).sum().item())
        hits += int(top.sum().item())
        count += int(rows.numel())
    model.train(was_training)
    if count == 0:
        return {"mrr": 0.0, "recall": 0.0, "targets": 0.0}
    return {"mrr": reciprocal / count, "recall": hits / count, "targets": float(count)}


@torch.no_grad()
def states_after(
    model: HRNN,
    features: EventFeatures,
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    device: torch.device,
) -> np.ndarray:
    """Each range's state after its last input event ``stops − 1`` (zero for an empty range).

    Args:
        model: the network (run in eval mode; its mode is restored).
        features: per-event features.
        starts: first input position of each range (ranges are disjoint, e.g. one per user).
        stops: one past the last input position of each range.
        device: where to run.

    Returns:
        ``[len(starts), H]`` float32.
    """
    was_training = model.training
    model.eval()
    count = len(starts)
    layout = build_layout(starts, stops, min(_EVAL_SLOTS, max(count, 1)), 32)
    row_of_last = np.full(len(features.item) + 1, -1, dtype=np.int64)
    nonempty = np.flatnonzero(stops > starts)
    row_of_last[stops[nonempty] - 1] = nonempty
    out = np.zeros((count, model.hidden_dimension), dtype=np.float32)
    state = torch.zeros(layout.num_slots, model.hidden_dimension, device=device)
    for index in range(layout.num_windows):
        window = layout.window(index, features)
        batch = _to_device(window, device)
        states, state = model.run(batch["item"], batch["event_type"], batch["time"], state, batch["reset"])
        pos = window.position.reshape(-1)
        rows = np.where(pos >= 0, row_of_last[pos], -1)
        pick = np.flatnonzero(rows >= 0)
        if pick.size:
            picked = states.flatten(0, 1)[torch.from_numpy(pick).to(device)]
            out[rows[pick]] = picked.float().cpu().numpy()
    model.train(was_training)
    return out


@torch.no_grad()
def final_states(
    model: HRNN, features: EventFeatures, sessions: Sessions, device: torch.device
) -> np.ndarray:
    """Each user's state ``h_T`` after their last event (every event is an input), ``[U, H]`` float32."""
    return states_after(model, features, sessions.user_offsets[:-1], sessions.user_offsets[1:], device)


@torch.no_grad()
def evaluate_holdout(
    model: HRNN,
    features: EventFeatures,
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    ends: npt.NDArray[np.int64],
    device: torch.device,
    cutoff: int = HOLDOUT_CUTOFF,
    exclude_seen: bool = False,
) -> dict[str, float]:
    """Hold-out metrics: each user's held-out events ``[stop, end)`` as one set of relevant items.

    The protocol of ``hrnn.evaluate(protocol="holdout-last")``: one list of ``cutoff`` items per
    user, scored from the state after the user's last input event ``stop − 1``, read out at the
    first held-out event's time gap (``at`` = its time); with ``exclude_seen`` the items of events
    ``[start, stop)`` are removed from the list. Metrics as Personalize defines them: MRR@cutoff
    (reciprocal rank of the first relevant item), P@5, and Recall@cutoff (share of the distinct
    held-out items in the list), averaged over users.

    Args:
        model: the network (evaluated in eval mode; its mode is restored).
        features: per-event features of the sessions.
        starts: first position of each user.
        stops: first held-out position of each user (``starts < stops < ends``).
        ends: one past each user's last held-out position.
        device: where to run.
        cutoff: list length.
        exclude_seen: drop the items of each user's input events from the list.

    Returns:
        ``{"mrr": …, "precision_at_5": …, "recall": …, "users": …}``.
    """
    count = len(starts)
    if count == 0:
        return {"mrr": 0.0, "precision_at_5": 0.0, "recall": 0.0, "users": 0.0}
    was_training = model.training
    model.eval()
    states = states_after(model, features, starts, stops, device)
    k = min(cutoff, model.num_items)
    reciprocal, precision, recall = 0.0, 0.0, 0.0
    for lo in range(0, count, _HOLDOUT_CHUNK):
        hi = min(count, lo + _HOLDOUT_CHUNK)
        query = torch.from_numpy(features.time[stops[lo:hi]]).to(device)
        o = model.read_out(torch.from_numpy(states[lo:hi]).to(device), query)
        logits = model.logits(o).float()
        if exclude_seen:
            lengths = stops[lo:hi] - starts[lo:hi]
            rows = np.repeat(np.arange(hi - lo), lengths)
            first = np.repeat(starts[lo:hi] - (np.cumsum(lengths) - lengths), lengths)
            cols = features.item[first + np.arange(int(lengths.sum()))]
            logits[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = -math.inf
        top = torch.topk(logits, k, dim=1).indices.cpu().numpy()
        for row, user in enumerate(range(lo, hi)):
            relevant = np.unique(features.item[stops[user] : ends[user]])
            hit = np.isin(top[row], relevant)
            first = np.flatnonzero(hit)
            reciprocal += 1.0 / (first[0] + 1) if first.size else 0.0
            precision += float(hit[:5].sum()) / 5.0
            recall += float(hit.sum()) / relevant.size
    model.train(was_training)
    return {
        "mrr": reciprocal / count,
        "precision_at_5": precision / count,
        "recall": recall / count,
        "users": float(count),
    }


def _recent_histories(sessions: Sessions, limit: int) -> tuple[np.ndarray, np.ndarray]:
    starts, ends = sessions.user_offsets[:-1], sessions.user_offsets[1:]
    keep = np.minimum(ends - starts, limit)
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(keep, out=offsets[1:])
    first = ends - keep
    within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], keep)
    items = sessions.item_index[np.repeat(first, keep) + within].astype(np.int32)
    return offsets, items


def _export(
    model: HRNN,
    data: TrainingData,
    hyper: Hyperparameters,
    config: TrainingConfig,
    device: torch.device,
    log: list[dict[str, float]],
    members: list[dict[str, int]],
) -> TrainedModel:
    from hrnn import __version__

    sessions = data.sessions
    features = data.features.with_weight(np.zeros(len(sessions), dtype=np.float32))
    tensors: dict[str, Any] = model.export_tensors()
    num_items = sessions.num_items
    pairs = np.unique(sessions.user_index * num_items + sessions.item_index.astype(np.int64))
    tensors[fmt.ITEMS_POPULARITY] = np.bincount(pairs % num_items, minlength=num_items).astype(np.int64)
    tensors[fmt.USERS_STATE] = final_states(model, features, sessions, device)
    ends = sessions.user_offsets[1:]
    tensors[fmt.USERS_LAST_TIMESTAMP] = sessions.timestamp[ends - 1].astype(np.int64)
    offsets, items = _recent_histories(sessions, fmt.HISTORY_LIMIT)
    tensors[fmt.USERS_HISTORY_OFFSETS] = offsets
    tensors[fmt.USERS_HISTORY_ITEMS] = items
    (
        tensors[fmt.USERS_SEEN_OFFSETS],
        tensors[fmt.USERS_SEEN_ITEMS],
        tensors[fmt.USERS_SEEN_EVENT_TYPES],
    ) = fmt.seen_entries(
        sessions.user_index,
        sessions.item_index,
        sessions.event_type,
        sessions.num_users,
        len(sessions.event_types),
    )
    training = config.to_dict()
    training.update(
        {
            "resolved_batch_size": config.resolved_batch_size(len(sessions)),
            "recency_half_life_used": data.half_life,
            "validation_exclude_seen_used": data.validation_exclude_seen,
            "loss_exclude_seen_used": data.loss_exclude_seen,
            # member 0's figures (the whole model's when ensemble_size = 1); every member's in
            # ``members``; ``history`` entries carry a ``member`` index when there are several
            "member_hidden_dimension": hyper.hidden_dimension,
            "epochs_trained": members[0]["epochs_trained"],
            "best_epoch": members[0]["best_epoch"],
            "members": members,
            "history": log,
        }
    )
    ts = sessions.timestamp
    meta = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        # the exported cell's width: ensemble_size × hidden_dimension for an ensemble
        "hyperparameters": {**hyper.to_dict(), "hidden_dimension": model.hidden_dimension},
        "training": training,
        "session_timeout": config.session_timeout,
        "history_limit": fmt.HISTORY_LIMIT,
        "item_ids": list(sessions.item_ids),
        "event_types": list(sessions.event_types),
        "user_ids": list(sessions.user_ids),
        "data_summary": {
            "rows": len(sessions),
            "users": sessions.num_users,
            "items": num_items,
            "sessions": sessions.num_sessions,
            "time_range": [int(ts.min()), int(ts.max())],
            "validation_users": len(data.validation_users),
            "report": data.interactions.report().to_dict(),
        },
        "hrnn_version": __version__,
    }
    return TrainedModel(tensors, meta)


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
) -> TrainedModel:
    """Trains an HRNN (the body of :func:`hrnn.train`; see there for the arguments).

    With ``config.ensemble_size = M > 1`` it trains ``M`` members of width ``hidden_dimension`` one
    after the other (member ``k`` with seed :func:`member_seed`) and exports their
    :meth:`HRNN.block_diagonal` merge, of width ``M × hidden_dimension``.
    """
    dev = resolve_device(device)
    ctx = DistributedContext.from_environment(dev)
    try:
        data = prepare_data(interactions, hyper, config, event_type, event_value_threshold)
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
                data, hyper, width, member_config, dev, ctx, amp=amp, progress=progress
            )
            members.append(model)
            log.extend({**entry, "member": float(k)} if count > 1 else entry for entry in member_log)
            summaries.append(
                {"seed": member_config.seed, "epochs_trained": len(member_log), "best_epoch": best_epoch}
            )
        model = members[0] if count == 1 else HRNN.block_diagonal(members)
        result = _export(model, data, hyper, config, dev, log, summaries)
    except BaseException:
        ctx.close(completed=False)
        raise
    ctx.close()
    return result


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
) -> tuple[HRNN, list[dict[str, float]], int]:
    """Trains one model of width ``hidden`` on ``data``.

    Returns:
        The model with the weights to export (the best epoch's weight average), the per-epoch log
        and the best epoch.
    """
    from tqdm.auto import tqdm

    sessions, features = data.sessions, data.features
    num_items, num_users = sessions.num_items, sessions.num_users
    torch.manual_seed(config.seed)
    model = HRNN(
        num_items,
        len(sessions.event_types),
        hidden,
        tie_embeddings=config.tie_embeddings,
        dropout_embedding=config.dropout_embedding,
        dropout_hidden=config.dropout_hidden,
        cpu_kernels=config.cpu_kernels,
    )
    counts = np.bincount(sessions.item_index, minlength=num_items).astype(np.float64)
    model.reset_parameters(torch.from_numpy(np.log1p(counts)).float())
    model.to(dev)
    full_softmax = config.loss == "cross-entropy" and num_items <= config.full_softmax_max_items
    fused = config.cpu_kernels and dev.type == "cpu"
    step: nn.Module = _TrainingStep(model, config, full_softmax, fused=fused)
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        step = DistributedDataParallel(step, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    sampler = NegativeSampler(counts, config.sample_alpha, config.seed * 1009 + ctx.rank + 17)
    num_slots = config.resolved_batch_size(len(sessions))
    extra_count = 0 if full_softmax else config.num_negatives
    log_q = torch.zeros(num_items, device=dev)
    use_amp = amp and dev.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
    if ctx.is_main:
        logger.info(
            "training HRNN: %d events, %d users, %d items, %d validation users; H=%d, bptt=%d, "
            "%d slots, %s loss on %s%s",
            len(sessions),
            num_users,
            num_items,
            len(data.validation_users),
            hidden,
            hyper.bptt,
            num_slots,
            "full-softmax" if full_softmax else config.loss + " (sampled)",
            dev,
            f", {ctx.world_size} ranks" if ctx.enabled else "",
        )

    starts = data.starts
    seen_start = None
    if full_softmax and data.loss_exclude_seen:
        seen_start = np.repeat(starts, data.ends - starts).astype(np.int64)
    log: list[dict[str, float]] = []
    best_metric, best_epoch, best_weights, stale = -math.inf, 0, None, 0
    # ``averaged`` holds the exponential moving average of the weights over optimizer steps: it
    # is what is validated and exported (the raw weights only keep training)
    averaged = copy.deepcopy(model) if config.weight_average_decay > 0 else model
    raw_params: list[torch.Tensor] = list(model.parameters())
    avg_params: list[torch.Tensor] = list(averaged.parameters())
    steps_done = 0
    for epoch in range(config.epochs):
        order = np.random.default_rng([config.seed, 2, epoch]).permutation(num_users)
        epoch_features = features
        if config.shuffle_ties:
            perm = shuffle_ties(
                sessions.user_index,
                sessions.timestamp,
                features.weight,
                np.random.default_rng([config.seed, 3, epoch]),
            )
            epoch_features = features.permuted(perm)
        mine = order[ctx.rank :: ctx.world_size]
        slot = balanced_slots(
            data.train_stop[mine] - starts[mine], num_slots, np.random.default_rng([config.seed, 4, epoch])
        )
        layout = build_layout(starts[mine], data.train_stop[mine], num_slots, hyper.bptt, slot=slot)
        layout = layout.padded_to(ctx.max_int(layout.num_windows, dev))
        model.train()
        state = torch.zeros(num_slots, hidden, device=dev)
        began = time.perf_counter()
        loss_sum, loss_weight, events = 0.0, 0, 0
        bar = tqdm(
            total=layout.num_windows,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (progress and ctx.is_main),
            leave=False,
            unit="batch",
        )
        for batch in _windows(
            layout,
            epoch_features,
            dev,
            config.target_window,
            config.target_window_decay,
            seen_start,
            seen_as_ranges=fused,
        ):
            extra_np = sampler.sample(extra_count)
            extra = torch.from_numpy(extra_np).to(dev)
            if not full_softmax:
                in_batch = int(batch["rows"].numel())
                log_q = torch.from_numpy(
                    candidate_log_q(in_batch, extra_count, sampler.data_probability, sampler.probability)
                ).to(dev)
            with autocast:
                loss, state = step(batch, state.detach(), extra, log_q)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            if averaged is not model:
                # warm-up: the average starts close to the latest weights, (1 + t) / (10 + t)
                decay = min(config.weight_average_decay, (1 + steps_done) / (10 + steps_done))
                with torch.no_grad():
                    torch._foreach_lerp_(avg_params, raw_params, 1.0 - decay)
            steps_done += 1
            n = int(batch["rows"].numel())
            if n:
                loss_sum += float(loss.detach().item()) * n
                loss_weight += n
                events += n
            rate = events / max(time.perf_counter() - began, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(loss_weight, 1):.4f}", events_s=f"{rate:.0f}")
        bar.close()
        seconds = time.perf_counter() - began
        entry: dict[str, float] = {
            "epoch": float(epoch + 1),
            "loss": loss_sum / max(loss_weight, 1),
            "events_per_second": events / max(seconds, 1e-9),
            "targets": float(events),
            "optimizer_steps": float(layout.num_windows),
            "seconds": seconds,
        }
        if len(data.validation_users):
            users = data.validation_users
            validation_began = time.perf_counter()
            metrics = evaluate_holdout(
                averaged,
                features,
                starts[users],
                data.validation_start[users],
                data.ends[users],
                dev,
                exclude_seen=data.validation_exclude_seen,
            )
            entry["validation_mrr"] = ctx.broadcast_float(metrics["mrr"], dev)
            entry["validation_precision_at_5"] = metrics["precision_at_5"]
            entry["validation_recall"] = metrics["recall"]
            entry["validation_seconds"] = time.perf_counter() - validation_began
        log.append(entry)
        if ctx.is_main:
            logger.info(
                "epoch %d: loss %.4f, %.0f events/s, %.1f s%s",
                epoch + 1,
                entry["loss"],
                entry["events_per_second"],
                seconds,
                f", validation MRR@{HOLDOUT_CUTOFF} {entry['validation_mrr']:.4f} "
                f"P@5 {entry['validation_precision_at_5']:.4f} "
                f"Recall@{HOLDOUT_CUTOFF} {entry['validation_recall']:.4f}"
                if "validation_mrr" in entry
                else "",
            )
        if "validation_mrr" not in entry:
            best_epoch = epoch + 1
            continue
        if entry["validation_mrr"] > best_metric:
            best_metric, best_epoch, stale = entry["validation_mrr"], epoch + 1, 0
            best_weights = copy.deepcopy(averaged.state_dict())
        else:
            stale += 1
            for group in optimizer.param_groups:
                group["lr"] *= config.plateau_decay
            if stale >= config.patience:
                if ctx.is_main:
                    logger.info("early stopping after epoch %d; best epoch %d", epoch + 1, best_epoch)
                break
    if best_weights is not None:
        model.load_state_dict(best_weights)
    elif averaged is not model:
        model.load_state_dict(averaged.state_dict())
    return model, log, best_epoch
