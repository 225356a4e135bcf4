"""UPDATE training (Personalize's ``trainingMode="UPDATE"``): continue from a trained model.

A daily retrain without starting over. Given the base model and the whole interaction history
(yesterday's data plus what was served since, ``Interactions.with_event_log``):

- the recipe's hyperparameters are the base model's (a different explicit value is an error);
- the network starts from the base's weights: the cell as it is, each known item's embedding,
  output row and bias by item id, each known event type's embedding by name; items and event
  types the base never saw start from a fresh initialisation (seeded as a FULL training seeds
  them; a new item's bias is its centred log frequency, shifted to the base's centring);
- it then trains over the whole history for a short schedule — :func:`update_epochs` of the
  epochs a FULL training would plan (an eighth, at least 2), unless ``epochs`` is given — with
  the usual validation and early stopping, and recomputes every user's state;
- items of the base absent from the new data are kept (their rows copied from the base, with the
  base's popularity counts) unless ``keep_absent_items=False``.

Why the whole history and not only the users with new events: measured on RSC15-100k (base on
days 1–5, the update adds day 6, test.csv after it, seed 0, MRR@20 through the engine), training
only the newest day's users gave 0.348 at best (the base alone: 0.345), forgetting what the older
days taught; four epochs over everything gave 0.364 against a FULL retrain's 0.371, in an eighth
of its time (``benches/bench_update.py``).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from hrnn import model_format as fmt
from hrnn._network.model import HRNN
from hrnn.sessions import Sessions
from hrnn.trained_model import TrainedModel
from hrnn.training.config import Hyperparameters

__all__ = ["Base", "base_hyperparameters", "load_base", "update_epochs"]

logger = logging.getLogger(__name__)

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
    """The epochs of an UPDATE whose FULL training would plan ``full_epochs``: an eighth, at least 2."""
    return max(2, math.ceil(full_epochs / 8))


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
