"""One training window's forward pass and loss, as a module so that DDP can wrap it."""

from __future__ import annotations

import math

import torch
from torch import nn

from hrnn._network import kernels
from hrnn._network.model import HRNN
from hrnn.training._loss import (
    bpr_max_loss,
    full_softmax_loss,
    full_softmax_window_loss,
    sampled_softmax_loss,
    sampled_softmax_window_loss,
)
from hrnn.training.config import TrainingConfig

__all__ = ["TrainingStep"]


class TrainingStep(nn.Module):
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
