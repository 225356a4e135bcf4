"""Validation metrics of the network during training: next-item (:func:`evaluate`) and hold-out
(:func:`evaluate_holdout`, which drives early stopping)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from hrnn._network.model import HRNN
from hrnn.evaluation.metrics import (
    conservative_ranks,
    first_hit_ranks,
    precision_at,
    recall_at,
    reciprocal_rank_at,
)
from hrnn.training._batching import EventFeatures
from hrnn.training._windows import read_outs, states_after

__all__ = ["HOLDOUT_CUTOFF", "VALIDATION_CUTOFF", "evaluate", "evaluate_holdout"]

#: Cut-off of the next-item metrics of :func:`evaluate` (MRR@20, Recall@20).
VALIDATION_CUTOFF = 20
#: Cut-off of the hold-out metrics of :func:`evaluate_holdout`, which drive early stopping (MRR@25,
#: Recall@25; plus P@5): Personalize's list length.
HOLDOUT_CUTOFF = 25
#: Validation users scored per catalogue-wide logits matrix.
_HOLDOUT_CHUNK = 256


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
    reciprocal, hits, count = 0.0, 0, 0
    for o, target in read_outs(model, features, starts, stops, device, query_at_target):
        logits = model.logits(o).float()
        target_logit = logits.gather(1, target.unsqueeze(1))
        # conservative: ties rank ahead of the target (the rule of hrnn.evaluation.metrics)
        rank = (logits >= target_logit).sum(dim=1).cpu().numpy().astype(np.int64)
        reciprocal += float(reciprocal_rank_at(rank, cutoff).sum())
        hits += int((rank <= cutoff).sum())
        count += int(target.numel())
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
    held-out items in the list), averaged over users, computed by the functions of
    :mod:`hrnn.evaluation.metrics` with its conservative tie rule (the report's evaluator).

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
    # one more item than the cut-off, with scores: the report's conservative tie rule (a relevant
    # item tied with others ranks behind them, hence outside the list when tied with its last item)
    k = min(cutoff + 1, model.num_items)
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
        top = torch.topk(logits, k, dim=1)
        scores = top.values.double().cpu().numpy()
        listed = np.where(np.isfinite(scores), top.indices.cpu().numpy(), -1)  # excluded: not listed
        hits, num_relevant = conservative_ranks(
            listed, _held_out_items(features, stops[lo:hi], ends[lo:hi]), scores
        )
        reciprocal += float(reciprocal_rank_at(first_hit_ranks(hits), cutoff).sum())
        precision += float(precision_at(hits[:, :cutoff], 5).sum())  # a list of `cutoff` items
        recall += float(recall_at(hits, num_relevant, cutoff).sum())
    model.train(was_training)
    return {
        "mrr": reciprocal / count,
        "precision_at_5": precision / count,
        "recall": recall / count,
        "users": float(count),
    }


def _held_out_items(
    features: EventFeatures, stops: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The items of each user's held-out events ``[stop, end)``, as CSR ``(offsets, items)``."""
    lengths = ends - stops
    offsets = np.zeros(len(stops) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    positions = np.repeat(stops - offsets[:-1], lengths) + np.arange(int(offsets[-1]))
    return offsets, features.item[positions].astype(np.int64)
