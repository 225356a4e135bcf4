"""Distributed data parallel support: the trainer runs unchanged under ``torchrun``.

Under ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` > 1 in the environment) the trainer joins the
process group — NCCL on GPU, gloo on CPU — shards users across ranks, and pads every rank to the
same number of windows with zero-weight windows, so all ranks do the same number of optimizer
steps (a rank that ran out of data would otherwise leave the others waiting in an all-reduce).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "resolve_device"]

logger = logging.getLogger(__name__)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else is passed to ``torch.device``.

    Under torchrun on GPU, ``"auto"`` and ``"cuda"`` pick the rank's ``LOCAL_RANK`` device.

    Raises:
        ValueError: an unknown device string, or CUDA requested but not available.
    """
    if isinstance(device, str) and device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', found {device!r}") from e
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} requested but CUDA is not available")
        if resolved.index is None:
            resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return resolved


@dataclass
class DistributedContext:
    """This process's place in the (possibly single-process) training job."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that shows progress and logs."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> DistributedContext:
        """Joins the process group when launched by torchrun (``WORLD_SIZE`` > 1), else single process.

        Args:
            device: the training device (decides NCCL vs gloo).

        Returns:
            The context; call :meth:`close` when training ends.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        owns = False
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend=backend)
            owns = True
            logger.info("joined process group: backend %s, world size %d", backend, dist.get_world_size())
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), owns_group=owns)

    def max_int(self, value: int, device: torch.device) -> int:
        """The maximum of ``value`` over all ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.int64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's ``value`` on every rank (keeps early-stopping decisions identical)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(t, src=0)
        return float(t.item())

    def close(self, completed: bool = True) -> None:
        """Leaves the process group if this context created it.

        Args:
            completed: training finished normally; only then wait for the other ranks (after a
                failure they may never arrive).
        """
        if self.owns_group and dist.is_initialized():
            if completed:
                dist.barrier()
            dist.destroy_process_group()
