"""Random models that satisfy docs/format.md: fixtures for tests and benchmarks, not public API.

Shipped in the wheel (private) so that benchmarks run against an installed hrnn, too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from hrnn.model_format import (
    DISCOUNT_BIAS,
    DISCOUNT_WEIGHT,
    EVENT_TYPE_EMBEDDING,
    FORMAT_NAME,
    FORMAT_VERSION,
    GRU_BIAS_HH,
    GRU_BIAS_IH,
    GRU_WEIGHT_HH,
    GRU_WEIGHT_IH,
    HISTORY_LIMIT,
    ITEM_EMBEDDING,
    ITEMS_POPULARITY,
    OUTPUT_BIAS,
    OUTPUT_WEIGHT,
    READOUT_BIAS,
    READOUT_WEIGHT,
    USERS_HISTORY_ITEMS,
    USERS_HISTORY_OFFSETS,
    USERS_LAST_TIMESTAMP,
    USERS_SEEN_EVENT_TYPES,
    USERS_SEEN_ITEMS,
    USERS_SEEN_OFFSETS,
    USERS_STATE,
    ModelDir,
    seen_entries,
)

__all__ = ["random_model"]


def random_model(
    num_items: int,
    hidden_dimension: int,
    *,
    num_users: int = 1,
    event_types: Sequence[str] = ("",),
    scale: float = 0.3,
    output_scale: float | None = None,
    seed: int = 0,
) -> ModelDir:
    """A model of random weights that satisfies the contract (for load tests and benchmarks).

    Each training user gets a random state and a one-item history; item ids are ``item0..``,
    user ids ``user0..``. Write it with :func:`write_model_dir`.

    Args:
        num_items: catalogue size ``N``.
        hidden_dimension: ``H``.
        num_users: training users ``U``.
        event_types: the event types (``K`` = their number).
        scale: standard deviation of the weights.
        output_scale: standard deviation of ``output.weight`` (default: ``scale``).
        seed: seed of the random generator.

    Returns:
        The tensors and ``model.json`` object.
    """
    rng = np.random.default_rng(seed)
    h, n, u = hidden_dimension, num_items, num_users

    def weights(*shape: int, std: float = scale) -> npt.NDArray[np.float32]:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    tensors: dict[str, npt.NDArray[Any]] = {
        ITEM_EMBEDDING: weights(n, h),
        EVENT_TYPE_EMBEDDING: weights(len(event_types), h),
        DISCOUNT_WEIGHT: weights(h, h + 2),
        DISCOUNT_BIAS: weights(h),
        GRU_WEIGHT_IH: weights(3 * h, h + 2),
        GRU_WEIGHT_HH: weights(3 * h, h),
        GRU_BIAS_IH: weights(3 * h),
        GRU_BIAS_HH: weights(3 * h),
        READOUT_WEIGHT: weights(h, 2),
        READOUT_BIAS: weights(h),
        OUTPUT_WEIGHT: weights(n, h, std=scale if output_scale is None else output_scale),
        OUTPUT_BIAS: weights(n),
        ITEMS_POPULARITY: rng.integers(0, 1000, n).astype(np.int64),
        USERS_STATE: weights(u, h, std=1.0),
        USERS_LAST_TIMESTAMP: np.full(u, 1_700_000_000, dtype=np.int64),
        USERS_HISTORY_OFFSETS: np.arange(u + 1, dtype=np.int64),
        USERS_HISTORY_ITEMS: rng.integers(0, n, u).astype(np.int32),
    }
    offsets, items, types = seen_entries(
        np.arange(u), tensors[USERS_HISTORY_ITEMS], np.zeros(u, dtype=np.int64), u, len(event_types)
    )
    tensors[USERS_SEEN_OFFSETS], tensors[USERS_SEEN_ITEMS], tensors[USERS_SEEN_EVENT_TYPES] = (
        offsets,
        items,
        types,
    )
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "hyperparameters": {
            "hidden_dimension": h,
            "bptt": 32,
            "recency_mask": True,
            "min_user_history_length_percentile": 0.0,
            "max_user_history_length_percentile": 0.99,
        },
        "training": {"random_seed": seed},
        "session_timeout": 1800,
        "history_limit": HISTORY_LIMIT,
        "item_ids": [f"item{j}" for j in range(n)],
        "event_types": list(event_types),
        "user_ids": [f"user{k}" for k in range(u)],
        "data_summary": {},
        "hrnn_version": "random",
    }
    return ModelDir(tensors=tensors, meta=meta)
