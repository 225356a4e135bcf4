"""Training losses: full softmax cross-entropy, sampled softmax with logQ correction, BPR-max.

Every loss takes per-target weights ``w`` (recency weights, 0 for padding) and returns
``Σ w·ℓ / Σ w`` — the weights normalised to mean 1 over the batch's targets (docs/model.md). A batch
without targets gives 0 (with zero gradients), which distributed training relies on for padding.

Sampled losses score each target against a shared candidate set: the batch's own targets (in-batch
negatives) followed by ``S`` extra items drawn ∝ popularity^α. Candidates equal to a row's target
item other than its own column ("accidental hits") and padding columns are masked out.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

__all__ = [
    "NegativeSampler",
    "bpr_max_loss",
    "candidate_log_q",
    "full_softmax_loss",
    "full_softmax_window_loss",
    "sampled_softmax_loss",
    "sampled_softmax_window_loss",
    "weighted_mean",
]

_MASKED = -1e9


def weighted_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``Σ w·v / Σ w`` (0 when ``Σ w = 0``)."""
    total = weight.sum()
    return (values * weight).sum() / total.clamp(min=torch.finfo(total.dtype).tiny)


def full_softmax_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy of the softmax over the whole catalogue.

    Args:
        logits: ``[M, N]``.
        target: int64 ``[M]`` target items.
        weight: ``[M]`` target weights.

    Returns:
        The scalar loss.
    """
    return weighted_mean(F.cross_entropy(logits.float(), target, reduction="none"), weight)


def full_softmax_window_loss(
    logits: torch.Tensor, window_target: torch.Tensor, window_weight: torch.Tensor
) -> torch.Tensor:
    """Weighted cross-entropy of each row's softmax against each of its ``W`` window targets.

    ``Σ_{m,j} w_mj · (−ln softmax(logits_m)[t_mj]) / Σ_{m,j} w_mj``: every (row, target) pair is
    one target of :func:`full_softmax_loss` sharing the row's logits (``W = 1`` is that loss).

    Args:
        logits: ``[M, N]``.
        window_target: int64 ``[M, W]`` target items.
        window_weight: ``[M, W]`` their weights (0 where a row has fewer targets).

    Returns:
        The scalar loss.
    """
    log_p = torch.log_softmax(logits.float(), dim=1).gather(1, window_target)
    return weighted_mean(-log_p, window_weight)


class NegativeSampler:
    """Draws extra negatives ∝ popularity^α (with replacement) from a seeded numpy generator.

    Args:
        counts: ``[N]`` item frequency among training targets.
        alpha: the exponent α.
        seed: generator seed.
    """

    def __init__(self, counts: npt.ArrayLike, alpha: float, seed: int) -> None:
        weights = np.power(np.asarray(counts, dtype=np.float64) + 1e-12, alpha)
        weights[np.asarray(counts) <= 0] = 0.0
        if weights.sum() <= 0:
            weights = np.ones_like(weights)
        self.probability = weights / weights.sum()
        self.data_probability = np.asarray(counts, dtype=np.float64) / max(float(np.sum(counts)), 1.0)
        self._cdf = np.cumsum(self.probability)
        self._rng = np.random.default_rng(seed)

    def sample(self, size: int) -> npt.NDArray[np.int64]:
        """``size`` item indices drawn ∝ popularity^α."""
        if size == 0:
            return np.zeros(0, dtype=np.int64)
        u = self._rng.random(size) * self._cdf[-1]
        return np.minimum(np.searchsorted(self._cdf, u, side="right"), len(self._cdf) - 1).astype(np.int64)


def candidate_log_q(
    in_batch: int, extra: int, data_probability: npt.ArrayLike, sample_probability: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """``ln Q(j)`` of each item as a candidate: a mix of in-batch targets and extra samples.

    In-batch targets follow the data distribution ``p_data``, extra samples ``p_α``, so an item's
    expected share of the ``in_batch + extra`` candidates is
    ``Q(j) = (in_batch·p_data(j) + extra·p_α(j)) / (in_batch + extra)``.

    Args:
        in_batch: number of (valid) in-batch targets.
        extra: number of extra negatives.
        data_probability: ``[N]`` target frequency / total.
        sample_probability: ``[N]`` ∝ popularity^α, summing to 1.

    Returns:
        ``[N]`` float32 ``ln Q`` (items that can never be candidates get a finite floor).
    """
    p_data = np.asarray(data_probability, dtype=np.float64)
    p_alpha = np.asarray(sample_probability, dtype=np.float64)
    total = max(in_batch + extra, 1)
    q = (in_batch * p_data + extra * p_alpha) / total
    return np.log(np.maximum(q, 1e-30)).astype(np.float32)


def _candidate_scores(
    o: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    extra: torch.Tensor,
    output_weight: torch.Tensor,
    output_bias: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw logits of every row against the candidates, the candidate items and the column mask."""
    candidates = torch.cat([target, extra])
    logits = (o @ output_weight[candidates].T + output_bias[candidates]).float()
    m = target.shape[0]
    own = torch.zeros(m, candidates.shape[0], dtype=torch.bool, device=o.device)
    own[:, :m] = torch.eye(m, dtype=torch.bool, device=o.device)
    hit = (candidates.unsqueeze(0) == target.unsqueeze(1)) & ~own
    padding = torch.cat([weight <= 0, torch.zeros_like(extra, dtype=torch.bool)])
    masked = hit | (padding.unsqueeze(0) & ~own)
    return logits, candidates, masked


def sampled_softmax_loss(
    o: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    extra: torch.Tensor,
    log_q: torch.Tensor,
    output_weight: torch.Tensor,
    output_bias: torch.Tensor,
) -> torch.Tensor:
    """Sampled softmax cross-entropy with logQ correction over in-batch + extra candidates.

    Row ``m``'s positive is its own in-batch column ``m``; each candidate ``j``'s logit is
    ``O[j]·o + b_o[j] − ln Q(j)``; accidental hits and padding columns are masked.

    Args:
        o: ``[M, H]`` read-out states.
        target: int64 ``[M]`` target items (rows with weight 0 are padding).
        weight: ``[M]`` target weights.
        extra: int64 ``[S]`` extra negatives, shared by every row.
        log_q: ``[N]`` ``ln Q(j)`` (:func:`candidate_log_q`).
        output_weight: ``O``, ``[N, H]``.
        output_bias: ``b_o``, ``[N]``.

    Returns:
        The scalar loss.
    """
    logits, candidates, masked = _candidate_scores(o, target, weight, extra, output_weight, output_bias)
    logits = (logits - log_q[candidates].float()).masked_fill(masked, _MASKED)
    rows = torch.arange(target.shape[0], device=o.device)
    return weighted_mean(F.cross_entropy(logits, rows, reduction="none"), weight)


def sampled_softmax_window_loss(
    o: torch.Tensor,
    target: torch.Tensor,
    window_target: torch.Tensor,
    window_weight: torch.Tensor,
    extra: torch.Tensor,
    log_q: torch.Tensor,
    output_weight: torch.Tensor,
    output_bias: torch.Tensor,
) -> torch.Tensor:
    """Sampled softmax with logQ correction against each of a row's ``W`` window targets.

    The candidates are those of :func:`sampled_softmax_loss` (the rows' next targets, then the
    extra samples); row ``m``'s negatives are every candidate except its own column, columns of
    padding rows and candidates equal to any of its window targets. Each pair ``(m, j)`` loses
    ``−ln(e^{p_mj} / (e^{p_mj} + Σ_neg e^{l_mc}))`` with ``p_mj`` the logQ-corrected logit of
    target ``t_mj``; with ``W = 1`` this is :func:`sampled_softmax_loss`.

    Args:
        o: ``[M, H]`` read-out states.
        target: int64 ``[M]`` next target items (rows with no weight are padding).
        window_target: int64 ``[M, W]`` target items (``window_target[:, 0]`` = ``target``).
        window_weight: ``[M, W]`` their weights.
        extra: int64 ``[S]`` extra negatives.
        log_q: ``[N]`` ``ln Q(j)``.
        output_weight: ``O``, ``[N, H]``.
        output_bias: ``b_o``, ``[N]``.

    Returns:
        The scalar loss.
    """
    logits, candidates, masked = _candidate_scores(
        o, target, window_weight.sum(dim=1), extra, output_weight, output_bias
    )
    logits = logits - log_q[candidates].float()
    m = target.shape[0]
    # The positives are scored separately below, so a row's own column is a negative-only mask too.
    masked[:, :m] |= torch.eye(m, dtype=torch.bool, device=o.device)
    for j in range(window_target.shape[1]):  # W compares of [M, C], not one [M, C, W] tensor
        masked |= (candidates.unsqueeze(0) == window_target[:, j : j + 1]) & (window_weight[:, j : j + 1] > 0)
    negative = torch.logsumexp(logits.masked_fill(masked, _MASKED), dim=1)
    positive = (o.unsqueeze(1) * output_weight[window_target]).sum(dim=-1) + output_bias[window_target]
    positive = positive.float() - log_q[window_target].float()
    return weighted_mean(F.softplus(negative.unsqueeze(1) - positive), window_weight)


def bpr_max_loss(
    o: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    extra: torch.Tensor,
    output_weight: torch.Tensor,
    output_bias: torch.Tensor,
    regularization: float,
) -> torch.Tensor:
    """BPR-max over the in-batch + extra candidates.

    With ``s_j`` the softmax of the negatives' scores ``r_j`` (positive and masked columns
    excluded), the loss of a row with positive score ``r_i`` is
    ``−ln Σ_j s_j σ(r_i − r_j) + λ Σ_j s_j r_j²``.

    Args:
        o: ``[M, H]`` read-out states.
        target: int64 ``[M]`` target items.
        weight: ``[M]`` target weights.
        extra: int64 ``[S]`` extra negatives.
        output_weight: ``O``, ``[N, H]``.
        output_bias: ``b_o``, ``[N]``.
        regularization: ``λ``.

    Returns:
        The scalar loss.
    """
    logits, _, masked = _candidate_scores(o, target, weight, extra, output_weight, output_bias)
    m = target.shape[0]
    rows = torch.arange(m, device=o.device)
    positive = logits[rows, rows]
    negative = masked.clone()
    negative[rows, rows] = True  # exclude the positive itself
    softmax = torch.softmax(logits.masked_fill(negative, _MASKED), dim=1) * (~negative)
    ranking = (softmax * torch.sigmoid(positive.unsqueeze(1) - logits)).sum(dim=1)
    penalty = (softmax * logits.square()).sum(dim=1)
    per_row = -torch.log(ranking + 1e-24) + regularization * penalty
    return weighted_mean(per_row, weight)
