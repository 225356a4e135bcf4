"""An obviously-correct, slow numpy (float64) implementation of docs/model.md, for tests.

Nothing here is optimised: each equation of docs/model.md is one line, in the same notation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


def sigmoid(x: F64) -> F64:
    return 1.0 / (1.0 + np.exp(-x))


def time_features(gap_seconds: float, session_start: bool) -> F64:
    """τ = [ln(1 + max(Δ, 0) / 60); s]."""
    return np.array([np.log1p(max(gap_seconds, 0.0) / 60.0), float(session_start)])


@dataclass
class ReferenceModel:
    """The parameters of docs/format.md, as float64 arrays, and the session timeout."""

    t: dict[str, F64]
    session_timeout: int

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, npt.NDArray[Any]], session_timeout: int) -> ReferenceModel:
        return cls({k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}, session_timeout)

    @property
    def hidden(self) -> int:
        return int(self.t["discount.bias"].shape[0])

    def step(self, h: F64, item: int, event_type: int | None, tau: F64) -> F64:
        """One event: the discount gate, then the GRU update (gate order r, z, n)."""
        t, hd = self.t, self.hidden
        x = t["item_embedding"][item] + (
            t["event_type_embedding"][event_type] if event_type is not None else 0.0
        )
        u = np.concatenate([x, tau])
        d = sigmoid(t["discount.weight"] @ u + t["discount.bias"])
        h_tilde = d * h
        a = t["gru.weight_ih"] @ u + t["gru.bias_ih"]
        g = t["gru.weight_hh"] @ h_tilde + t["gru.bias_hh"]
        r = sigmoid(a[:hd] + g[:hd])
        z = sigmoid(a[hd : 2 * hd] + g[hd : 2 * hd])
        n = np.tanh(a[2 * hd :] + r * g[2 * hd :])
        return (1.0 - z) * n + z * h_tilde

    def run(
        self,
        events: Sequence[tuple[int, float, int | None]],
        h: F64 | None = None,
        last_timestamp: float | None = None,
    ) -> tuple[F64, float | None]:
        """Applies (item, timestamp, event_type) events in order, from ``h`` (default h_0 = 0)."""
        h = np.zeros(self.hidden) if h is None else np.asarray(h, dtype=np.float64)
        for item, when, event_type in events:
            if last_timestamp is None:
                gap, start = 0.0, True
            else:
                gap = when - last_timestamp
                start = gap > self.session_timeout
            h = self.step(h, item, event_type, time_features(gap, start))
            last_timestamp = when if last_timestamp is None else max(last_timestamp, when)
        return h, last_timestamp

    def scores(self, h: F64, elapsed: float = 0.0) -> F64:
        """The readout gate at ``elapsed`` seconds after the last event, then the full softmax."""
        t = self.t
        tau_q = time_features(elapsed, elapsed > self.session_timeout)
        o = sigmoid(t["readout.weight"] @ tau_q + t["readout.bias"]) * h
        logits = t["output.weight"] @ o + t["output.bias"]
        e = np.exp(logits - logits.max())
        return e / e.sum()
