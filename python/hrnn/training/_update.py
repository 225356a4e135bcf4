"""UPDATE training (Personalize's ``trainingMode="UPDATE"``): continue from a trained model.

A daily retrain without starting over. Given the base model and the whole interaction history
(yesterday's data plus what was served since, ``Interactions.with_event_log``):

- the recipe's hyperparameters are the base model's (a different explicit value is an error);
- the network starts from the base's weights: the cell as it is, each known item's embedding,
  output row and bias by item id, each known event type's embedding by name; event types the
  base never saw start from a fresh initialisation (seeded as a FULL training seeds them);
- the items the base never saw get rows fitted to their occurrences (:func:`fit_new_items`: the
  softmax likelihood under the base's network, everything else frozen), not random ones: on
  RSC15-100k a random start left the newest day's items at MRR@20 0.126 on the test targets that
  are new items (FULL: 0.206–0.216), the fitted start at 0.185–0.189 (seeds 0–2);
- it then trains over the whole history for a short schedule — :func:`update_epochs` of the
  epochs a FULL training would plan (a tenth, at least 2), unless ``epochs`` is given — at half
  the FULL training's dropout and 1.25× its learning rate (:func:`update_config`, unless given),
  with a warm-up, the full rate for half the steps and a linear decay to zero, and keeps the last
  weights. No early stopping, so no events are held out for validation (:func:`update_holdout`:
  they would select nothing, and the base may have learnt them); every user's state is recomputed;
- items of the base absent from the new data are kept (their rows copied from the base, with the
  base's popularity counts) unless ``keep_absent_items=False``.

Why the whole history and not only the users with new events: measured on RSC15-100k (base on
days 1–5, the update adds day 6, test.csv after it, seed 0, MRR@20 through the engine), training
only the newest day's users gave 0.348 at best (the base alone: 0.345), forgetting what the older
days taught; four epochs over everything gave 0.364 against a FULL retrain's 0.371. Weighting the
newest day's targets 2× or 3× did not help (it lowered the older items' MRR); more epochs do
(eight: 99–100% of FULL, at about half its time). ``benches/bench_update.py`` has the table.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from hrnn import model_format as fmt
from hrnn._network.model import HRNN
from hrnn.sessions import Sessions
from hrnn.trained_model import TrainedModel
from hrnn.training._windows import read_outs
from hrnn.training.config import Hyperparameters, TrainingConfig

if TYPE_CHECKING:
    from hrnn.training._data import TrainingData

__all__ = [
    "Base",
    "base_hyperparameters",
    "fit_new_items",
    "full_dropout",
    "load_base",
    "update_config",
    "update_epochs",
    "update_holdout",
]

logger = logging.getLogger(__name__)

#: Occurrences of a new item :func:`fit_new_items` reads (its earliest ones, weighted up to all).
_FIT_OCCURRENCES = 64
#: Training positions :func:`fit_new_items` samples for the rest of the softmax (the denominator).
_FIT_NEGATIVES = 2048
#: Cap on sampled positions × new items (the fit's score matrix).
_FIT_CELLS = 1 << 24
#: L2 weight of the fit, in occurrences.
_FIT_L2 = 0.3
#: L-BFGS iterations of the fit.
_FIT_STEPS = 100

#: An UPDATE's automatic dropout, as a fraction of the FULL training's: the base is trained, and at
#: its full dropout a short schedule mostly spends itself undoing the noise (RSC15-100k, 4 epochs,
#: seeds 0–2, MRR@20 as a share of FULL's: 97.8% at the full dropout, 98.9% at half, 98.9% at a
#: quarter, 98.4% without; ``benches/bench_update.py`` at half: 98.9%, Recall@20 98.1%).
_HALF = 0.5

#: An UPDATE's epochs, as a fraction of those a FULL training plans: 1/10 (3 of 30 on click-like
#: data, 2 of 16 on rating-like data). RSC15-100k, seeds 0–2, at this module's other settings:
#: 3 epochs reach 99.0% of FULL's MRR@20 and 98.1% of its Recall@20 in 23% of its time (an
#: eighth, 4 epochs at the earlier settings: 98.9% and 98.1% in 30%).
_EPOCH_SHARE = 10

#: An UPDATE's automatic learning rate, as a multiple of a FULL training's: a short schedule gains
#: from larger steps (RSC15-100k, 3 epochs, Recall@20 as a share of FULL's: 97.4% at 1×, 97.9% at
#: 1.5×, 98.1% at 1.25× with the held rate of ``_WarmupDecay``; 2× and 3× no better).
_LEARNING_RATE = 1.25

#: The recipe's hyperparameters an UPDATE must share with its base.
_SHARED = ("hidden_dimension", "bptt", "recency_mask")


class Base:
    """The model an UPDATE continues from."""

    def __init__(self, model: TrainedModel, source: str) -> None:
        members = model.training.get("members", [])
        if len(members) > 1:
            raise ValueError(
                f"init_from: {source} is an ensemble of {len(members)} members; UPDATE training "
                "continues a single model (train the ensemble with training_mode='full')"
            )
        self.model = model
        self.source = source
        self.item_row = {item: j for j, item in enumerate(model.item_ids)}
        self.type_row = {t: k for k, t in enumerate(model.event_types)}
        time_range = model.meta.get("data_summary", {}).get("time_range")
        last = model.tensors[fmt.USERS_LAST_TIMESTAMP]
        self.cutoff = int(time_range[1]) if time_range else int(last.max()) if last.size else 0

    def new_items(self, sessions: Sessions) -> npt.NDArray[np.bool_]:
        """Whether each of ``sessions``' items is one the base never saw."""
        return np.asarray([item not in self.item_row for item in sessions.item_ids], dtype=np.bool_)

    def warm_start(self, model: HRNN, sessions: Sessions) -> dict[str, int]:
        """Copies the base's weights into ``model`` (built for ``sessions``' items and types)."""
        t = self.model.tensors
        with torch.no_grad():
            for name, module in (("discount", model.discount), ("readout", model.readout)):
                module.weight.copy_(torch.from_numpy(t[f"{name}.weight"]))
                module.bias.copy_(torch.from_numpy(t[f"{name}.bias"]))
            model.gru.weight_ih.copy_(torch.from_numpy(t[fmt.GRU_WEIGHT_IH]))
            model.gru.weight_hh.copy_(torch.from_numpy(t[fmt.GRU_WEIGHT_HH]))
            model.gru.bias_ih.copy_(torch.from_numpy(t[fmt.GRU_BIAS_IH]))
            model.gru.bias_hh.copy_(torch.from_numpy(t[fmt.GRU_BIAS_HH]))
            new_rows = np.asarray([self.item_row.get(i, -1) for i in sessions.item_ids], dtype=np.int64)
            known = new_rows >= 0
            mine = torch.from_numpy(np.flatnonzero(known))
            theirs = torch.from_numpy(new_rows[known])
            device = model.output_bias.device
            mine, theirs = mine.to(device), theirs.to(device)
            base_embedding = torch.from_numpy(t[fmt.ITEM_EMBEDDING]).to(device)
            model.item_embedding.weight[mine] = base_embedding[theirs]
            if model.output_weight is not None:
                model.output_weight[mine] = torch.from_numpy(t[fmt.OUTPUT_WEIGHT]).to(device)[theirs]
            base_bias = torch.from_numpy(t[fmt.OUTPUT_BIAS]).to(device)
            if known.any() and not known.all():
                # new items: their fresh (centred log-frequency) bias, moved to the base's centring
                shift = base_bias[theirs].mean() - model.output_bias[mine].mean()
                model.output_bias.add_(shift)
            model.output_bias[mine] = base_bias[theirs]
            type_rows = [
                (k, self.type_row[e]) for k, e in enumerate(sessions.event_types) if e in self.type_row
            ]
            for k, row in type_rows:
                model.event_type_embedding.weight[k] = torch.from_numpy(t[fmt.EVENT_TYPE_EMBEDDING][row])
        return {
            "known_items": int(known.sum()),
            "new_items": int((~known).sum()),
            "new_event_types": len(sessions.event_types) - len(type_rows),
        }

    def keep_absent_items(self, trained: TrainedModel) -> tuple[TrainedModel, int]:
        """``trained`` with the base's items it lacks appended (rows and popularity from the base)."""
        present = set(trained.item_ids)
        absent = [j for j, item in enumerate(self.model.item_ids) if item not in present]
        if not absent:
            return trained, 0
        rows = np.asarray(absent, dtype=np.int64)
        base, tensors = self.model.tensors, dict(trained.tensors)
        for name in (fmt.ITEM_EMBEDDING, fmt.OUTPUT_WEIGHT, fmt.OUTPUT_BIAS, fmt.ITEMS_POPULARITY):
            tensors[name] = np.concatenate([tensors[name], base[name][rows]]).astype(tensors[name].dtype)
        meta = dict(trained.meta)
        meta["item_ids"] = [*trained.item_ids, *(self.model.item_ids[j] for j in absent)]
        return TrainedModel(tensors, meta), len(absent)


def update_epochs(full_epochs: int) -> int:
    """The epochs of an UPDATE whose FULL training would plan ``full_epochs``: a tenth, at least 2."""
    return max(2, math.ceil(full_epochs / _EPOCH_SHARE))


def update_holdout(requested: TrainingConfig) -> TrainingConfig:
    """``requested`` with an automatic ``validation_fraction`` set to 0: an UPDATE keeps its last
    weights, so held-out events would select nothing, and a report on them would be biased (the
    base may have learnt them); trained on instead, they help (RSC15-100k, 3 epochs: Recall@20
    97.4% of FULL's against 97.2%). An explicit value is kept and reported once, at the end."""
    if requested.validation_fraction is not None:
        return requested
    return replace(requested, validation_fraction=0.0)


#: The dropout settings an UPDATE halves when they are automatic.
_DROPOUTS = ("dropout_embedding", "dropout_hidden")


def full_dropout(base: Base, resolved: TrainingConfig) -> dict[str, float]:
    """The dropout of the FULL training ``base`` descends from: its own, or for a base that is an
    UPDATE itself what that UPDATE recorded (so a chain of daily updates does not halve it again
    each day); ``resolved``'s value where the base records none."""
    trained = base.model.training
    recorded = trained.get("update", {}).get("full_dropout", {})
    return {name: float(recorded.get(name, trained.get(name, getattr(resolved, name)))) for name in _DROPOUTS}


def update_config(
    full: dict[str, float], requested: TrainingConfig, resolved: TrainingConfig
) -> TrainingConfig:
    """``resolved`` with the UPDATE's automatic settings: each automatic (``None`` in ``requested``)
    dropout half ``full``'s (:func:`full_dropout` of the base), an automatic learning rate 1.25× a
    FULL training's; explicit values are kept."""
    changes: dict[str, Any] = {
        name: _HALF * full[name] for name in _DROPOUTS if getattr(requested, name) is None
    }
    if requested.learning_rate is None and resolved.learning_rate is not None:
        changes["learning_rate"] = round(_LEARNING_RATE * resolved.learning_rate, 6)
    return replace(resolved, **changes)


def load_base(init_from: str | os.PathLike[str] | TrainedModel) -> Base:
    """The base model of an UPDATE, from a model directory or a :class:`TrainedModel`."""
    if isinstance(init_from, TrainedModel):
        return Base(init_from, "the given model")
    if not isinstance(init_from, str | os.PathLike):
        raise TypeError(
            f"init_from: expected a model directory or a TrainedModel, found {type(init_from).__name__}"
        )
    return Base(TrainedModel.load(init_from), os.fspath(init_from))


def base_hyperparameters(base: Base, hyper: Hyperparameters, explicit: set[str]) -> Hyperparameters:
    """``hyper`` with the recipe's shared hyperparameters taken from the base; an explicit value
    that differs from the base's is an error (an UPDATE cannot change the network's shape)."""
    theirs: dict[str, Any] = base.model.hyperparameters
    if "member_hidden_dimension" in base.model.training:
        theirs = {**theirs, "hidden_dimension": base.model.training["member_hidden_dimension"]}
    changes: dict[str, Any] = {}
    for name in _SHARED:
        if name not in theirs:
            continue
        if name in explicit and getattr(hyper, name) != theirs[name]:
            raise ValueError(
                f"{name}: UPDATE training keeps the base model's value {theirs[name]!r} "
                f"({base.source}), found {getattr(hyper, name)!r}; use training_mode='full' to change it"
            )
        changes[name] = theirs[name]
    return replace(hyper, **changes)


@torch.no_grad()
def _read_outs(
    model: HRNN,
    data: TrainingData,
    positions: npt.NDArray[np.int64],
    known: torch.Tensor,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The network's read-out before each of ``positions`` (as training computes it), the target item
    there, and the log-sum-exp of the ``known`` items' logits at that read-out."""
    features = data.features
    weight = np.zeros_like(features.weight)
    weight[positions] = 1.0
    users = np.unique(np.searchsorted(data.starts, positions, side="right") - 1)
    outs, targets, rest = [], [], []
    with_weight = replace(features, weight=weight)
    for o, target in read_outs(model, with_weight, data.starts[users], data.ends[users], device):
        o = o.float()
        outs.append(o)
        targets.append(target)
        rest.append(torch.logsumexp(model.logits(o)[:, known].float(), dim=1))
    if not outs:
        empty = torch.zeros(0, device=device)
        return empty.reshape(0, model.hidden_dimension), empty.long(), empty
    return torch.cat(outs), torch.cat(targets), torch.cat(rest)


def fit_new_items(
    model: HRNN, data: TrainingData, new: npt.NDArray[np.bool_], device: torch.device, seed: int
) -> int:
    """Initialises the rows of the items the base never saw from what the base predicts before them.

    A random row leaves a new item unrecommendable until the short UPDATE schedule has taught it
    from scratch. Instead, with the base's network fixed, each new item's output row ``O[j]`` and
    bias ``b[j]`` are fitted by maximum likelihood of the full softmax, as training would fit them
    with everything else frozen: the item's occurrences as a target pull its score up at the
    read-outs that precede them, and a uniform sample of all training positions stands for the
    softmax's denominator everywhere else, which pushes it down. The known items' logits are fixed
    (the other new items are left out of each other's denominators), so the problem is convex and
    separate per item; an L2 prior (worth 0.3 occurrences) keeps the rarest items near zero and their
    bias near its fresh value. It reads at most 64 occurrences per item (weighted up to the item's
    count) and 2,048 sampled positions, a fraction of one epoch. With tied embeddings the fitted row
    is also the item's input embedding, as for every known item.

    Returns:
        How many occurrences the fit read.
    """
    features = data.features
    item = features.item
    eligible = data.validation_weight == 0  # a held-out target must not leak into the fit
    eligible[data.starts[data.starts < len(item)]] = False  # a first event has no read-out before it
    occurrences = np.flatnonzero(new[item] & eligible)
    if len(occurrences) == 0:
        return 0
    was_training = model.training
    model.eval()
    known = torch.from_numpy(~new).to(device)
    # the earliest _FIT_OCCURRENCES occurrences of each new item, weighted up to its count
    occurrences = occurrences[np.argsort(item[occurrences], kind="stable")]
    order = np.arange(len(occurrences)) - np.searchsorted(item[occurrences], item[occurrences], side="left")
    counts = np.bincount(item[occurrences], minlength=len(new))
    occurrences = occurrences[order < _FIT_OCCURRENCES]
    o_pos, target, rest_pos = _read_outs(model, data, occurrences, known, device)
    # a uniform sample of the other training positions: the denominator
    others = np.flatnonzero(~new[item] & eligible)
    rows, slot = torch.unique(target, return_inverse=True)
    budget = max(64, min(_FIT_NEGATIVES, _FIT_CELLS // max(len(rows), 1)))
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(others, size=min(budget, len(others)), replace=False))
    o_neg, _, rest_neg = _read_outs(model, data, sample, known, device)
    model.train(was_training)
    used = torch.bincount(slot, minlength=len(rows)).float()
    positive_weight = (torch.from_numpy(counts).to(device)[rows].float() / used)[slot]
    negative_weight = len(others) / max(len(sample), 1)
    out = model.output_embedding
    w = torch.zeros(len(rows), model.hidden_dimension, device=device)
    b0 = model.output_bias.detach()[rows].float().clone()
    b = b0.clone()
    optimizer = torch.optim.LBFGS([w, b], max_iter=_FIT_STEPS, line_search_fn="strong_wolfe")
    softplus, sigmoid = torch.nn.functional.softplus, torch.sigmoid

    @torch.no_grad()
    def objective() -> torch.Tensor:
        # the loss and its gradient by hand: autograd's bookkeeping cost more than the arithmetic
        gap = rest_pos - ((o_pos * w[slot]).sum(dim=1) + b[slot])  # the occurrence's -log p = softplus(gap)
        z = o_neg @ w.T + b - rest_neg[:, None]  # another position's push: softplus(z)
        loss = (positive_weight * softplus(gap)).sum() + negative_weight * softplus(z).sum()
        loss += _FIT_L2 * ((w * w).sum() + ((b - b0) ** 2).sum())
        d_logit = -positive_weight * sigmoid(gap)
        d_z = negative_weight * sigmoid(z)
        w.grad = (d_z.T @ o_neg).index_add_(0, slot, d_logit[:, None] * o_pos) + 2 * _FIT_L2 * w
        b.grad = d_z.sum(dim=0).index_add_(0, slot, d_logit) + 2 * _FIT_L2 * (b - b0)
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        out[rows] = w.detach().to(out.dtype)
        model.output_bias[rows] = b.detach().to(model.output_bias.dtype)
    return len(occurrences)
