"""The training loop: data preparation, user-parallel truncated BPTT, early stopping, export.

Called through :func:`hrnn.train`; runs unchanged on CPU, on CUDA and under torchrun (DDP).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from hrnn._network import kernels
from hrnn._network.model import HRNN
from hrnn.interactions import Interactions
from hrnn.sessions import Sessions
from hrnn.trained_model import TrainedModel
from hrnn.training._batching import (
    EventFeatures,
    balanced_slots,
    build_layout,
    recency_weights,
    shuffle_ties,
)
from hrnn.training._distributed import DistributedContext, resolve_device
from hrnn.training._export import export_model
from hrnn.training._loss import (
    NegativeSampler,
    bpr_max_loss,
    candidate_log_q,
    full_softmax_loss,
    full_softmax_window_loss,
    sampled_softmax_loss,
    sampled_softmax_window_loss,
)
from hrnn.training._windows import EVAL_SLOTS, final_states, states_after, windows
from hrnn.training.config import Hyperparameters, TrainingConfig
from hrnn.training.procedure import DataShape, resolve

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
#: Validation users scored per catalogue-wide logits matrix.
_HOLDOUT_CHUNK = 256


@dataclass(frozen=True)
class TrainingData:
    """Sessionized training data with its validation split and per-event features.

    Attributes:
        interactions: the interactions after selection and the percentile filter.
        selected: the interactions after selection only (every user the model will serve).
        sessions: their sessions.
        features: per-event features; ``weight`` is the training target weight (recency, 0 for
            validation targets).
        train_stop: per user, one past the last *input* event used in training.
        validation_users: users whose latest events are held out.
        validation_start: per user, the first held-out position (= user end when none).
        validation_weight: per event, 1 for held-out targets, else 0.
        half_life: the recency half-life used, in seconds (``None`` when all weights are 1).
        config: the training settings with every automatic (``None``) one resolved for this
            data (:func:`hrnn.training.procedure.resolve`).
        shape: what the automatic settings were resolved from.
    """

    interactions: Interactions
    selected: Interactions
    sessions: Sessions
    features: EventFeatures
    train_stop: npt.NDArray[np.int64]
    validation_users: npt.NDArray[np.int64]
    validation_start: npt.NDArray[np.int64]
    validation_weight: npt.NDArray[np.float32]
    half_life: float | None
    config: TrainingConfig
    shape: DataShape

    @property
    def validation_exclude_seen(self) -> bool:
        """Whether validation excludes each user's earlier items from the ranking."""
        return bool(self.config.validation_exclude_seen)

    @property
    def loss_exclude_seen(self) -> bool:
        """Whether the full softmax leaves out each input's earlier items."""
        return bool(self.config.loss_exclude_seen)

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
    """Selection, percentile filter, minimum check, sessionize, the automatic settings, recency
    weights, validation split.

    Args:
        interactions: the raw interactions.
        hyper: hyperparameters (percentiles, recency mask).
        config: training settings (session timeout, validation split, half-life, seed); ``None``
            settings are resolved for the data (:func:`hrnn.training.procedure.resolve`).
        event_type: keep only this EVENT_TYPE (``Interactions.select``).
        event_value_threshold: keep only rows with EVENT_VALUE ≥ this.

    Returns:
        The prepared data.

    Raises:
        InsufficientDataError: the filtered data is below Personalize's minimum.
    """
    selected = interactions.select(event_type, event_value_threshold)
    data = selected.filter_by_history_length(
        hyper.min_user_history_length_percentile, hyper.max_user_history_length_percentile
    )
    data.check_minimum()
    sessions = data.sessionize(config.session_timeout)
    shape = DataShape.of(sessions)
    config = resolve(config, shape)
    assert config.validation_fraction is not None and config.user_weight_exponent is not None
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
    return TrainingData(
        interactions=data,
        selected=selected,
        sessions=sessions,
        features=EventFeatures.from_sessions(sessions, train_weight),
        train_stop=validation_start - 1,
        validation_users=chosen.astype(np.int64),
        validation_start=validation_start,
        validation_weight=held_out.astype(np.float32),
        half_life=half_life,
        config=config,
        shape=shape,
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
    layout = build_layout(starts, stops, min(EVAL_SLOTS, max(len(starts), 1)), 32)
    state = torch.zeros(layout.num_slots, model.hidden_dimension, device=device)
    reciprocal, hits, count = 0.0, 0, 0
    for batch in windows(layout, features, device):
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
    torch_threads = torch.get_num_threads()
    try:
        data = prepare_data(interactions, hyper, config, event_type, event_value_threshold)
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
                data, hyper, width, member_config, dev, ctx, amp=amp, progress=progress
            )
            members.append(model)
            log.extend({**entry, "member": float(k)} if count > 1 else entry for entry in member_log)
            summaries.append(
                {"seed": member_config.seed, "epochs_trained": len(member_log), "best_epoch": best_epoch}
            )
        model = members[0] if count == 1 else HRNN.block_diagonal(members)
        result = export_model(model, data, hyper, requested, dev, log, summaries)
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
) -> tuple[HRNN, list[dict[str, float]], int]:
    """Trains one model of width ``hidden`` on ``data``.

    Returns:
        The model with the weights to export (the best epoch's weight average), the per-epoch log
        and the best epoch.
    """
    from tqdm.auto import tqdm

    # prepare_data resolved every automatic setting
    assert config.batch_size is not None and config.learning_rate is not None
    assert config.epochs is not None and config.target_window is not None
    assert config.plateau_decay is not None
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
    num_slots = config.batch_size
    extra_count = 0 if full_softmax else config.num_negatives
    log_q = torch.zeros(num_items, device=dev)
    use_amp = amp and dev.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext()
    if ctx.is_main:
        logger.info(
            "training HRNN: %d events, %d users, %d items (%s-like), %d validation users; H=%d, "
            "bptt=%d, %d slots, learning rate %.4g, %s loss%s, up to %d epochs on %s%s",
            len(sessions),
            num_users,
            num_items,
            "rating" if data.shape.kind == "ratings" else "click",
            len(data.validation_users),
            hidden,
            hyper.bptt,
            num_slots,
            config.learning_rate,
            "full-softmax" if full_softmax else config.loss + " (sampled)",
            f" over the next {config.target_window} items" if config.target_window > 1 else "",
            config.epochs,
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
    # one bar for the whole training: epoch, loss, events/s, the last validation metric, and an
    # ETA for the planned epochs (early stopping may end sooner); no bar when stderr is not a TTY
    bar = tqdm(
        total=0,
        disable=True if not (progress and ctx.is_main) else None,
        unit="batch",
        dynamic_ncols=True,
    )
    last_validation = ""
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
        bar.total = bar.n + layout.num_windows * (config.epochs - epoch)
        bar.set_description(f"epoch {epoch + 1}/{config.epochs}", refresh=False)
        for batch in windows(
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
            bar.set_postfix_str(
                f"loss {loss_sum / max(loss_weight, 1):.4f}, {rate:,.0f} events/s{last_validation}",
                refresh=False,
            )
            bar.update(1)
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
            last_validation = f", validation MRR@{HOLDOUT_CUTOFF} {entry['validation_mrr']:.4f}"
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
    bar.close()
    if best_weights is not None:
        model.load_state_dict(best_weights)
    elif averaged is not model:
        model.load_state_dict(averaged.state_dict())
    return model, log, best_epoch
