"""The HRNN network in torch: the discounted GRU cell, the time-gated read-out and the output layer.

Implements docs/model.md exactly; parameter names map one to one onto the tensors of
docs/format.md (:meth:`HRNN.export_tensors`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn

from hrnn import model_format as fmt
from hrnn._network import kernels

__all__ = ["HRNN"]

# Initial bias of the discount and read-out gates: σ(2) ≈ 0.88, so an untrained cell starts close to
# a plain GRU that keeps most of its state, and the gates learn where to forget.
_GATE_BIAS_INIT = 2.0


class HRNN(nn.Module):
    """Item/event-type embeddings → discounted GRU cell → time-gated read-out → item scores.

    Args:
        num_items: catalogue size ``N``.
        num_event_types: ``K`` (at least 1).
        hidden_dimension: ``H``.
        tie_embeddings: use ``E`` as the output embedding ``O``.
        dropout_embedding: dropout on ``x_t`` in training.
        dropout_hidden: dropout on ``o`` in training.
        cpu_kernels: run the recurrence through hrnn's fused CPU kernel
            (:func:`hrnn._network.kernels.recurrence`) when the state is a float32 CPU tensor; False:
            torch's ops step by step (the same results up to rounding; the only path on GPUs).
    """

    def __init__(
        self,
        num_items: int,
        num_event_types: int,
        hidden_dimension: int,
        *,
        tie_embeddings: bool = False,
        dropout_embedding: float = 0.0,
        dropout_hidden: float = 0.0,
        cpu_kernels: bool = True,
    ) -> None:
        super().__init__()
        h = hidden_dimension
        self.cpu_kernels = cpu_kernels
        self.num_items = num_items
        self.hidden_dimension = h
        self.tie_embeddings = tie_embeddings
        self.item_embedding = nn.Embedding(num_items, h)
        self.event_type_embedding = nn.Embedding(max(num_event_types, 1), h)
        self.discount = nn.Linear(h + 2, h)
        self.gru = nn.GRUCell(h + 2, h)
        self.readout = nn.Linear(2, h)
        self.output_weight = None if tie_embeddings else nn.Parameter(torch.empty(num_items, h))
        self.output_bias = nn.Parameter(torch.zeros(num_items))
        self.dropout_embedding = nn.Dropout(dropout_embedding)
        self.dropout_hidden = nn.Dropout(dropout_hidden)
        self.reset_parameters()

    def reset_parameters(self, item_log_frequency: torch.Tensor | None = None) -> None:
        """Initialises every parameter (called by the constructor).

        Embeddings ~ N(0, 1/H) so that ``x_t`` has unit-scale entries in total; GRU and gate weights
        keep torch's uniform ±1/√H; gate biases start at +2 (gates mostly open); the output bias is
        the centred log item frequency when given (the model starts as the popularity ranking), else 0.

        Args:
            item_log_frequency: optional ``[N]`` log training frequency of each item.
        """
        std = 1.0 / math.sqrt(self.hidden_dimension)
        nn.init.normal_(self.item_embedding.weight, 0.0, std)
        nn.init.normal_(self.event_type_embedding.weight, 0.0, std * 0.1)
        self.gru.reset_parameters()
        self.discount.reset_parameters()
        self.readout.reset_parameters()
        nn.init.constant_(self.discount.bias, _GATE_BIAS_INIT)
        nn.init.constant_(self.readout.bias, _GATE_BIAS_INIT)
        if self.output_weight is not None:
            nn.init.normal_(self.output_weight, 0.0, std)
        with torch.no_grad():
            if item_log_frequency is None:
                self.output_bias.zero_()
            else:
                self.output_bias.copy_(item_log_frequency - item_log_frequency.mean())

    @property
    def output_embedding(self) -> torch.Tensor:
        """``O``: the output item embedding (``E`` when tied)."""
        return self.item_embedding.weight if self.output_weight is None else self.output_weight

    def inputs(self, item: torch.Tensor, event_type: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """``u_t = [E[i_t] + K[k_t]; c_t; s_t]`` (with dropout on ``x_t`` in training).

        Args:
            item: int64 ``[...]`` item indices.
            event_type: int64 ``[...]`` event-type indices; −1 = unknown (contributes zero).
            time: float ``[..., 2]`` ``(c_t, s_t)``.

        Returns:
            ``[..., H + 2]``.
        """
        known = event_type >= 0
        type_vector = self.event_type_embedding(event_type.clamp(min=0)) * known.unsqueeze(-1)
        x = self.dropout_embedding(self.item_embedding(item) + type_vector)
        return torch.cat([x, time.to(x.dtype)], dim=-1)

    def run(
        self,
        item: torch.Tensor,
        event_type: torch.Tensor,
        time: torch.Tensor,
        state: torch.Tensor,
        reset: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Runs the cell over ``T`` time-major steps of ``B`` sequences.

        Args:
            item: int64 ``[T, B]``.
            event_type: int64 ``[T, B]``.
            time: float ``[T, B, 2]``: ``(c_t, s_t)``.
            state: ``[B, H]`` state before the first step.
            reset: optional bool ``[T, B]``: zero the state before this step (a new user starts).

        Returns:
            The states after every step ``[T, B, H]`` and the state after the last step ``[B, H]``.
        """
        u = self.inputs(item, event_type, time)
        # Everything that depends only on u_t is computed for all steps at once.
        discount = torch.sigmoid(F.linear(u, self.discount.weight, self.discount.bias))
        input_gates = F.linear(u, self.gru.weight_ih, self.gru.bias_ih)
        if self.cpu_kernels and u.shape[0] > 0 and kernels.available(input_gates, state):
            keep_np = np.ones(u.shape[:2], dtype=np.bool_) if reset is None else (~reset).cpu().numpy()
            states = kernels.recurrence(
                input_gates, discount, keep_np, state, self.gru.weight_hh, self.gru.bias_hh
            )
            return states, states[-1]
        gi_r, gi_z, gi_n = input_gates.chunk(3, dim=-1)
        keep = None if reset is None else (~reset).unsqueeze(-1).to(u.dtype)
        h = state
        outputs = []
        for t in range(u.shape[0]):
            if keep is not None:
                h = h * keep[t]
            h = discount[t] * h
            gh_r, gh_z, gh_n = F.linear(h, self.gru.weight_hh, self.gru.bias_hh).chunk(3, dim=-1)
            r = torch.sigmoid(gi_r[t] + gh_r)
            z = torch.sigmoid(gi_z[t] + gh_z)
            n = torch.tanh(gi_n[t] + r * gh_n)
            h = n + z * (h - n)  # = (1 − z) ⊙ n + z ⊙ h̃
            outputs.append(h)
        if not outputs:
            return state.new_zeros((0, *state.shape)), state
        return torch.stack(outputs), h

    def read_out(self, state: torch.Tensor, query_time: torch.Tensor) -> torch.Tensor:
        """``o = σ(W_q τ_q + b_q) ⊙ h`` (dropout on ``o`` in training).

        Args:
            state: ``[..., H]``.
            query_time: ``[..., 2]``: ``(c_q, s_q)``.

        Returns:
            ``o``, ``[..., H]``.
        """
        gate = torch.sigmoid(F.linear(query_time.to(state.dtype), self.readout.weight, self.readout.bias))
        return self.dropout_hidden(gate * state)

    def logits(self, o: torch.Tensor) -> torch.Tensor:
        """``O o + b_o`` over the whole catalogue, ``[..., N]``."""
        return F.linear(o, self.output_embedding, self.output_bias)

    def export_tensors(self) -> dict[str, npt.NDArray[np.float32]]:
        """The parameters as float32 numpy arrays under their docs/format.md names."""

        def cpu(t: torch.Tensor) -> npt.NDArray[np.float32]:
            return t.detach().to("cpu", torch.float32).numpy().copy()

        return {
            fmt.ITEM_EMBEDDING: cpu(self.item_embedding.weight),
            fmt.EVENT_TYPE_EMBEDDING: cpu(self.event_type_embedding.weight),
            fmt.DISCOUNT_WEIGHT: cpu(self.discount.weight),
            fmt.DISCOUNT_BIAS: cpu(self.discount.bias),
            fmt.GRU_WEIGHT_IH: cpu(self.gru.weight_ih),
            fmt.GRU_WEIGHT_HH: cpu(self.gru.weight_hh),
            fmt.GRU_BIAS_IH: cpu(self.gru.bias_ih),
            fmt.GRU_BIAS_HH: cpu(self.gru.bias_hh),
            fmt.READOUT_WEIGHT: cpu(self.readout.weight),
            fmt.READOUT_BIAS: cpu(self.readout.bias),
            fmt.OUTPUT_WEIGHT: cpu(self.output_embedding),
            fmt.OUTPUT_BIAS: cpu(self.output_bias),
        }

    @classmethod
    def block_diagonal(cls, members: list[HRNN]) -> HRNN:
        """One HRNN that computes exactly what the ``members`` compute together (docs/model.md).

        Member ``k`` (width ``H_k``) owns the coordinates ``H_0 + … + H_(k−1)`` onwards of every
        ``H``-sized vector (embeddings, gates, state, read-out), so the merged cell is block
        diagonal and its state is the concatenation of the members' states. The output embedding
        is ``[O_0 | … | O_(M−1)] / M`` and the output bias the members' mean, so each logit is the
        mean of the members' logits.

        Args:
            members: trained models over the same items and event types.

        Returns:
            The merged model (untied, no dropout), on the first member's device, in eval mode.
        """
        first = members[0]
        widths = [m.hidden_dimension for m in members]
        h, count = sum(widths), len(members)
        merged = cls(first.num_items, first.event_type_embedding.num_embeddings, h)
        merged.to(first.output_bias.device)
        with torch.no_grad():
            for param in merged.parameters():
                param.zero_()
            begin = 0
            for m, w in zip(members, widths, strict=True):
                own = slice(begin, begin + w)
                merged.item_embedding.weight[:, own] = m.item_embedding.weight
                merged.event_type_embedding.weight[:, own] = m.event_type_embedding.weight
                merged.discount.weight[own, own] = m.discount.weight[:, :w]
                merged.discount.weight[own, h:] = m.discount.weight[:, w:]
                merged.discount.bias[own] = m.discount.bias
                for gate in range(3):  # r, z, n: each gate's rows of the member go into its block
                    rows = slice(gate * h + begin, gate * h + begin + w)
                    member_rows = slice(gate * w, (gate + 1) * w)
                    merged.gru.weight_ih[rows, own] = m.gru.weight_ih[member_rows, :w]
                    merged.gru.weight_ih[rows, h:] = m.gru.weight_ih[member_rows, w:]
                    merged.gru.weight_hh[rows, own] = m.gru.weight_hh[member_rows]
                    merged.gru.bias_ih[rows] = m.gru.bias_ih[member_rows]
                    merged.gru.bias_hh[rows] = m.gru.bias_hh[member_rows]
                merged.readout.weight[own] = m.readout.weight
                merged.readout.bias[own] = m.readout.bias
                assert merged.output_weight is not None
                merged.output_weight[:, own] = m.output_embedding / count
                merged.output_bias.add_(m.output_bias / count)
                begin += w
        return merged.eval()

    @classmethod
    def from_tensors(cls, tensors: dict[str, npt.NDArray[np.float32]]) -> HRNN:
        """Rebuilds an (untied, dropout-free) model from docs/format.md tensors.

        Args:
            tensors: at least the parameter tensors of :meth:`export_tensors`.

        Returns:
            The model on CPU, in eval mode.
        """
        n, h = tensors[fmt.ITEM_EMBEDDING].shape
        k = tensors[fmt.EVENT_TYPE_EMBEDDING].shape[0]
        model = cls(n, k, h)
        with torch.no_grad():
            pairs = {
                fmt.ITEM_EMBEDDING: model.item_embedding.weight,
                fmt.EVENT_TYPE_EMBEDDING: model.event_type_embedding.weight,
                fmt.DISCOUNT_WEIGHT: model.discount.weight,
                fmt.DISCOUNT_BIAS: model.discount.bias,
                fmt.GRU_WEIGHT_IH: model.gru.weight_ih,
                fmt.GRU_WEIGHT_HH: model.gru.weight_hh,
                fmt.GRU_BIAS_IH: model.gru.bias_ih,
                fmt.GRU_BIAS_HH: model.gru.bias_hh,
                fmt.READOUT_WEIGHT: model.readout.weight,
                fmt.READOUT_BIAS: model.readout.bias,
                fmt.OUTPUT_WEIGHT: model.output_embedding,
                fmt.OUTPUT_BIAS: model.output_bias,
            }
            for name, param in pairs.items():
                param.copy_(torch.from_numpy(np.asarray(tensors[name], dtype=np.float32)))
        return model.eval()
