"""Losses against direct, loop-by-loop computations (values and gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hrnn.training._loss import (  # noqa: E402
    NegativeSampler,
    bpr_max_loss,
    candidate_log_q,
    full_softmax_loss,
    full_softmax_window_loss,
    sampled_softmax_loss,
    sampled_softmax_window_loss,
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def problem(seed: int = 0):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    n, h, m = 12, 5, 6
    o = torch.randn(m, h, generator=gen, dtype=torch.float64, requires_grad=True)
    weight_matrix = torch.randn(n, h, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([3, 5, 3, 0, 11, 7])
    weight = torch.tensor([1.0, 0.5, 2.0, 0.0, 1.5, 1.0], dtype=torch.float64)  # row 3 is padding
    extra = torch.tensor([5, 9, 1, 3])
    log_q = torch.log(torch.rand(n, generator=gen, dtype=torch.float64) + 0.1)
    return o, weight_matrix, bias, target, weight, extra, log_q


def direct_sampled(o, w, b, target, weight, extra, log_q, kind, reg=0.0):  # type: ignore[no-untyped-def]
    """Row by row: candidates = valid in-batch targets (other than the row's own item) + extras."""
    total, norm = 0.0, 0.0
    m = len(target)
    for r in range(m):
        if weight[r] == 0:
            continue
        pos_score = o[r] @ w[target[r]] + b[target[r]]
        negatives = [int(target[c]) for c in range(m) if c != r and weight[c] > 0 and target[c] != target[r]]
        negatives += [int(j) for j in extra if j != target[r]]
        neg_scores = torch.stack([o[r] @ w[j] + b[j] for j in negatives])
        if kind == "softmax":
            pos = pos_score - log_q[target[r]]
            neg = neg_scores - log_q[torch.tensor(negatives)]
            loss = -pos + torch.logsumexp(torch.cat([pos.view(1), neg]), 0)
        else:
            s = torch.softmax(neg_scores, 0)
            loss = (
                -torch.log((s * torch.sigmoid(pos_score - neg_scores)).sum())
                + reg * (s * neg_scores**2).sum()
            )
        total = total + weight[r] * loss
        norm += float(weight[r])
    return total / norm


@pytest.mark.parametrize("kind", ["softmax", "bpr-max"])
def test_sampled_losses_and_gradients_match_a_direct_computation(kind: str) -> None:
    o, w, b, target, weight, extra, log_q = problem()
    if kind == "softmax":
        loss = sampled_softmax_loss(o, target, weight, extra, log_q, w, b)
    else:
        loss = bpr_max_loss(o, target, weight, extra, w, b, regularization=0.3)
    grads = torch.autograd.grad(loss, [o, w, b])
    direct = direct_sampled(o, w, b, target, weight, extra, log_q, kind, reg=0.3)
    direct_grads = torch.autograd.grad(direct, [o, w, b])
    torch.testing.assert_close(loss.double(), direct, rtol=1e-6, atol=1e-9)
    for got, want in zip(grads, direct_grads, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-8)


def test_full_softmax_is_weighted_cross_entropy() -> None:
    o, w, b, target, weight, _, _ = problem(1)
    logits = o @ w.T + b
    loss = full_softmax_loss(logits, target, weight)
    per_row = [-(torch.log_softmax(logits[r], 0)[target[r]]) for r in range(len(target))]
    want = sum(weight[r] * per_row[r] for r in range(len(target))) / weight.sum()
    torch.testing.assert_close(loss.double(), want)
    # Weights are normalised to mean 1 over the batch: scaling them changes nothing.
    torch.testing.assert_close(full_softmax_loss(logits, target, weight * 7.0), loss)


def test_batch_without_targets_gives_zero_loss_and_zero_gradients() -> None:
    o, w, b, target, _, extra, log_q = problem(2)
    zero = torch.zeros(len(target), dtype=torch.float64)
    loss = sampled_softmax_loss(o, target, zero, extra, log_q, w, b)
    assert loss.item() == 0.0
    grads = torch.autograd.grad(loss, [o, w, b])
    assert all(torch.all(g == 0) for g in grads)
    assert full_softmax_loss(o @ w.T + b, target, zero).item() == 0.0


def test_log_q_mixes_in_batch_and_popularity_samples() -> None:
    p_data = np.array([0.5, 0.3, 0.2, 0.0])
    p_alpha = np.array([0.4, 0.3, 0.2, 0.1])
    got = candidate_log_q(30, 10, p_data, p_alpha)
    want = np.log((30 * p_data + 10 * p_alpha) / 40)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_negative_sampler_follows_popularity_to_the_alpha() -> None:
    counts = np.array([100, 25, 0, 1])
    sampler = NegativeSampler(counts, alpha=0.5, seed=3)
    np.testing.assert_allclose(sampler.probability, np.array([10, 5, 0, 1]) / 16)
    draws = sampler.sample(40_000)
    share = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(share, sampler.probability, atol=0.01)
    assert share[2] == 0
    again = NegativeSampler(counts, alpha=0.5, seed=3).sample(100)
    np.testing.assert_array_equal(again, draws[:100])
    assert math.isclose(sampler.data_probability.sum(), 1.0)


def window_problem(seed: int = 3):  # type: ignore[no-untyped-def]
    o, w, b, target, weight, extra, log_q = problem(seed)
    window_target = torch.stack(
        [target, torch.tensor([4, 3, 8, 0, 2, 7]), torch.tensor([9, 6, 3, 0, 5, 1])], 1
    )
    window_weight = torch.stack(
        [weight, torch.tensor([0.5, 1.0, 0.0, 0.0, 0.7, 0.2]), torch.tensor([0.25, 0.0, 0.0, 0.0, 0.3, 0.9])],
        1,
    ).double()
    return o, w, b, target, window_target, window_weight, extra, log_q


def test_full_softmax_window_is_cross_entropy_of_every_pair() -> None:
    o, w, b, target, window_target, window_weight, _, _ = window_problem()
    logits = o @ w.T + b
    loss = full_softmax_window_loss(logits, window_target, window_weight)
    total, norm = 0.0, 0.0
    for r in range(len(target)):
        for j in range(window_target.shape[1]):
            total = total - window_weight[r, j] * torch.log_softmax(logits[r], 0)[window_target[r, j]]
            norm += float(window_weight[r, j])
    torch.testing.assert_close(loss.double(), total / norm)
    # a window of one is the next-item loss
    one = full_softmax_window_loss(logits, target.unsqueeze(1), window_weight[:, :1])
    torch.testing.assert_close(one, full_softmax_loss(logits, target, window_weight[:, 0]))


def test_sampled_softmax_window_matches_a_direct_computation() -> None:
    o, w, b, target, window_target, window_weight, extra, log_q = window_problem()
    loss = sampled_softmax_window_loss(o, target, window_target, window_weight, extra, log_q, w, b)
    grads = torch.autograd.grad(loss, [o, w, b])
    m = len(target)
    total, norm = 0.0, 0.0
    for r in range(m):
        if window_weight[r].sum() == 0:
            continue
        mine = {int(t) for t, v in zip(window_target[r], window_weight[r], strict=True) if v > 0}
        negatives = [int(target[c]) for c in range(m) if c != r and window_weight[c].sum() > 0]
        negatives = [j for j in negatives + [int(j) for j in extra] if j not in mine]
        neg = torch.stack([o[r] @ w[j] + b[j] - log_q[j] for j in negatives])
        for j in range(window_target.shape[1]):
            if window_weight[r, j] == 0:
                continue
            t = window_target[r, j]
            pos = o[r] @ w[t] + b[t] - log_q[t]
            total = total + window_weight[r, j] * (-pos + torch.logsumexp(torch.cat([pos.view(1), neg]), 0))
            norm += float(window_weight[r, j])
    direct = total / norm
    torch.testing.assert_close(loss.double(), direct, rtol=1e-6, atol=1e-9)
    for got, want in zip(grads, torch.autograd.grad(direct, [o, w, b]), strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-8)
    # a window of one is the sampled next-item loss
    one = sampled_softmax_window_loss(
        o, target, target.unsqueeze(1), window_weight[:, :1], extra, log_q, w, b
    )
    torch.testing.assert_close(one, sampled_softmax_loss(o, target, window_weight[:, 0], extra, log_q, w, b))
