"""hrnn's fused CPU kernels of a training step, as torch autograd functions.

On a CPU, torch spends most of a step on two things: the full-softmax cross-entropy over the
catalogue (it materialises the ``[rows, items]`` logits several times and its log-softmax runs at a
few ns per element), and the per-step dispatch of the ~40 small ops of the recurrent cell over
``bptt`` steps, forward and backward. ``hrnn._hrnn`` has both as fused kernels
(``rust/hrnn-core/src/training``): :func:`softmax_cross_entropy` computes the loss and all its
gradients block by block without the logit matrix, :func:`recurrence` runs the cell over a window
and back-propagates through it in one call each way. Everything else of the step (embeddings, the
gates that depend only on the input, the read-out, dropout) stays in torch's autograd.

Both give torch's results up to floating-point summation order (tests/test_training_kernels.py).
They take float32 CPU tensors; :func:`available` says when the trainer may use them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from hrnn import _hrnn

__all__ = ["Exclusions", "available", "recurrence", "softmax_cross_entropy"]

#: ``(items, starts, stops)``: row ``m`` leaves ``items[starts[m]:stops[m]]`` out of its softmax.
Exclusions = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def available(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors: float32, on the CPU."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _SoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        table: torch.Tensor,
        bias: torch.Tensor,
        target_items: npt.NDArray[np.int64],
        target_weights: npt.NDArray[np.float32],
        exclusions: Exclusions | None,
    ) -> torch.Tensor:
        excluded = (None, None, None) if exclusions is None else exclusions
        loss, grad_input, grad_table, grad_bias = _hrnn.softmax_cross_entropy(
            _array(input), _array(table), _array(bias), target_items, target_weights, *excluded
        )
        ctx.save_for_backward(
            torch.from_numpy(grad_input), torch.from_numpy(grad_table), torch.from_numpy(grad_bias)
        )
        return torch.tensor(loss, dtype=torch.float32)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_input, grad_table, grad_bias = ctx.saved_tensors
        return grad_input * grad, grad_table * grad, grad_bias * grad, None, None, None


def softmax_cross_entropy(
    input: torch.Tensor,
    table: torch.Tensor,
    bias: torch.Tensor,
    target_items: npt.ArrayLike,
    target_weights: npt.ArrayLike,
    exclusions: Exclusions | None = None,
) -> torch.Tensor:
    """``Σ w·(lse − logit_target) / Σ w`` of the full softmax of ``table · o + bias`` per row.

    Args:
        input: ``[M, H]`` read-out vectors ``o``.
        table: ``[N, H]`` output item embedding.
        bias: ``[N]`` output bias.
        target_items: int64 ``[M, W]`` target items of each row (any valid index where the weight
            is 0).
        target_weights: float32 ``[M, W]`` their weights (≥ 0).
        exclusions: items left out of each row's softmax (its targets of positive weight stay in).

    Returns:
        The scalar loss (0, with zero gradients, when every weight is 0).
    """
    items = np.ascontiguousarray(target_items, dtype=np.int64)
    weights = np.ascontiguousarray(target_weights, dtype=np.float32)
    if items.ndim == 1:
        items, weights = items[:, None], weights[:, None]
    if exclusions is not None:
        exclusions = tuple(np.ascontiguousarray(a, dtype=np.int64) for a in exclusions)  # type: ignore[assignment]
    loss: torch.Tensor = _SoftmaxCrossEntropy.apply(input, table, bias, items, weights, exclusions)
    return loss


class _Recurrence(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        input_gates: torch.Tensor,
        discount: torch.Tensor,
        keep: npt.NDArray[np.bool_],
        initial: torch.Tensor,
        weight_hh: torch.Tensor,
        bias_hh: torch.Tensor,
    ) -> torch.Tensor:
        save = any(ctx.needs_input_grad)
        states_np, saved = _hrnn.recurrence_forward(
            _array(input_gates),
            _array(discount),
            keep,
            _array(initial),
            _array(weight_hh),
            _array(bias_hh),
            save,
        )
        states = torch.from_numpy(states_np)
        if save:
            ctx.keep = keep
            ctx.save_for_backward(discount, initial, weight_hh, bias_hh, states, torch.from_numpy(saved))
        return states

    @staticmethod
    def backward(ctx: Any, grad_states: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        discount, initial, weight_hh, bias_hh, states, saved = ctx.saved_tensors
        grad_gates, grad_discount, grad_weight, grad_bias = _hrnn.recurrence_backward(
            _array(discount),
            ctx.keep,
            _array(initial),
            _array(weight_hh),
            _array(bias_hh),
            states.numpy(),
            saved.numpy(),
            _array(grad_states),
        )
        return (
            torch.from_numpy(grad_gates),
            torch.from_numpy(grad_discount),
            None,
            None,
            torch.from_numpy(grad_weight),
            torch.from_numpy(grad_bias),
        )


def recurrence(
    input_gates: torch.Tensor,
    discount: torch.Tensor,
    keep: npt.ArrayLike,
    initial: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor,
) -> torch.Tensor:
    """The cell's states after every step of a window (docs/model.md; ``HRNN.run``'s loop).

    The gradient flows to ``input_gates``, ``discount``, ``weight_hh`` and ``bias_hh``, not to
    ``initial`` (training detaches the state carried from the previous window).

    Args:
        input_gates: ``[T, B, 3H]``: ``W_ih u_t + b_ih`` (gate order r, z, n).
        discount: ``[T, B, H]``: ``d_t``.
        keep: bool ``[T, B]``: False where a slot starts a new user (its state is zeroed first).
        initial: ``[B, H]``: the state before the first step.
        weight_hh: ``[3H, H]``.
        bias_hh: ``[3H]``.

    Returns:
        ``[T, B, H]``.
    """
    keep_np = np.ascontiguousarray(keep, dtype=np.bool_)
    states: torch.Tensor = _Recurrence.apply(input_gates, discount, keep_np, initial, weight_hh, bias_hh)
    return states
