"""The time feature ``c`` of docs/model.md (numpy only)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["log_minutes"]


def log_minutes(gap_seconds: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """The time feature ``c = ln(1 + max(Δt, 0) / 60)`` of docs/model.md.

    Args:
        gap_seconds: time gaps in seconds.

    Returns:
        ``c`` as float32, same shape.
    """
    gap = np.maximum(np.asarray(gap_seconds, dtype=np.float64), 0.0)
    return np.log1p(gap / 60.0).astype(np.float32)
