"""Mini-batch windows as tensors, and the forward-only pass over them.

:func:`windows` turns a :class:`~hrnn.training._batching.SlotLayout` into the tensors of each
training step (with, for ``loss_exclude_seen``, each row's earlier items); :func:`states_after`
runs the cell forward over whole user histories (validation, export).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import torch

from hrnn._network.model import HRNN
from hrnn.sessions import Sessions
from hrnn.training._batching import EventFeatures, SlotLayout, Window, build_layout

__all__ = ["EVAL_SLOTS", "final_states", "read_outs", "states_after", "to_device", "windows"]

#: Slots of the forward-only passes (no gradient: wide batches are cheap).
EVAL_SLOTS = 512


def _seen_pairs(
    window: Window, features: EventFeatures, user_start: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(row, item) of every item the user of each training row has had up to its input event.

    Rows are those of ``_to_device`` (``weight > 0``, in flattened time-major order).
    """
    position = window.position.reshape(-1)[np.flatnonzero(window.weight.reshape(-1) > 0)]
    first = user_start[position]
    counts = position - first + 1
    rows = np.repeat(np.arange(position.size, dtype=np.int64), counts)
    within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, features.item[np.repeat(first, counts) + within]


def _seen_ranges(
    window: Window, user_start: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per training row (as :func:`_seen_pairs`), the range ``[start, stop)`` of event positions
    whose items its user has had up to its input event."""
    position = window.position.reshape(-1)[np.flatnonzero(window.weight.reshape(-1) > 0)]
    return user_start[position], position + 1


def to_device(
    window: Window,
    device: torch.device,
    targets_ahead: bool = False,
    seen: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
    seen_ranges: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = None,
) -> dict[str, torch.Tensor]:
    """The window as torch tensors on ``device`` (through pinned memory on CUDA).

    ``targets_ahead`` adds ``window_target`` and ``window_weight`` (a ``target_window`` > 1);
    ``seen`` adds ``seen_row`` and ``seen_item`` (``loss_exclude_seen``), ``seen_ranges`` adds
    ``seen_items``, ``seen_start`` and ``seen_stop`` (the same for the fused kernel).
    """
    arrays: dict[str, np.ndarray] = {
        "item": window.item,
        "event_type": window.event_type,
        "time": window.time,
        "reset": window.reset,
        "target": window.target,
        "target_time": window.target_time,
        "weight": window.weight,
        "rows": np.flatnonzero(window.weight.reshape(-1) > 0),
    }
    if targets_ahead:
        arrays["window_target"] = window.window_target
        arrays["window_weight"] = window.window_weight
    if seen is not None:
        arrays["seen_row"], arrays["seen_item"] = seen
    if seen_ranges is not None:
        arrays["seen_items"], arrays["seen_start"], arrays["seen_stop"] = seen_ranges
    pin = device.type == "cuda"
    out = {}
    for name, array in arrays.items():
        t = torch.from_numpy(np.ascontiguousarray(array))
        if pin:
            t = t.pin_memory()
        out[name] = t.to(device, non_blocking=pin)
    return out


def windows(
    layout: SlotLayout,
    features: EventFeatures,
    device: torch.device,
    target_window: int = 1,
    target_window_decay: float = 1.0,
    user_start: npt.NDArray[np.int64] | None = None,
    seen_as_ranges: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """The layout's windows as tensors; with ``user_start``, each row's earlier items (as pairs,
    or as ranges into ``features.item`` with ``seen_as_ranges``)."""
    for index in range(layout.num_windows):
        window = layout.window(index, features, target_window, target_window_decay)
        seen = ranges = None
        if user_start is not None and seen_as_ranges:
            ranges = (features.item, *_seen_ranges(window, user_start))
        elif user_start is not None:
            seen = _seen_pairs(window, features, user_start)
        yield to_device(window, device, targets_ahead=target_window > 1, seen=seen, seen_ranges=ranges)


def read_outs(
    model: HRNN,
    features: EventFeatures,
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    device: torch.device,
    query_at_target: bool = True,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The read-out ``o`` before each target (an event with ``features.weight > 0``) and the target
    item, window by window, each user run from a zeroed state over ``starts … stops − 1`` as in
    training. The caller sets the model's mode and disables gradients.

    Args:
        query_at_target: read out at the target's own time gap (as training does); False: at
            ``Δq = 0`` (a recommendation right after the last event).
    """
    layout = build_layout(starts, stops, min(EVAL_SLOTS, max(len(starts), 1)), 32)
    state = torch.zeros(layout.num_slots, model.hidden_dimension, device=device)
    for batch in windows(layout, features, device):
        states, state = model.run(batch["item"], batch["event_type"], batch["time"], state, batch["reset"])
        rows = batch["rows"]
        if rows.numel() == 0:
            continue
        query = batch["target_time"].flatten(0, 1)[rows]
        if not query_at_target:
            query = torch.zeros_like(query)
        yield model.read_out(states.flatten(0, 1)[rows], query), batch["target"].flatten()[rows]


@torch.no_grad()
def states_after(
    model: HRNN,
    features: EventFeatures,
    starts: npt.NDArray[np.int64],
    stops: npt.NDArray[np.int64],
    device: torch.device,
) -> np.ndarray:
    """Each range's state after its last input event ``stops − 1`` (zero for an empty range).

    Args:
        model: the network (run in eval mode; its mode is restored).
        features: per-event features.
        starts: first input position of each range (ranges are disjoint, e.g. one per user).
        stops: one past the last input position of each range.
        device: where to run.

    Returns:
        ``[len(starts), H]`` float32.
    """
    was_training = model.training
    model.eval()
    count = len(starts)
    layout = build_layout(starts, stops, min(EVAL_SLOTS, max(count, 1)), 32)
    row_of_last = np.full(len(features.item) + 1, -1, dtype=np.int64)
    nonempty = np.flatnonzero(stops > starts)
    row_of_last[stops[nonempty] - 1] = nonempty
    out = np.zeros((count, model.hidden_dimension), dtype=np.float32)
    state = torch.zeros(layout.num_slots, model.hidden_dimension, device=device)
    for index in range(layout.num_windows):
        window = layout.window(index, features)
        batch = to_device(window, device)
        states, state = model.run(batch["item"], batch["event_type"], batch["time"], state, batch["reset"])
        pos = window.position.reshape(-1)
        rows = np.where(pos >= 0, row_of_last[pos], -1)
        pick = np.flatnonzero(rows >= 0)
        if pick.size:
            picked = states.flatten(0, 1)[torch.from_numpy(pick).to(device)]
            out[rows[pick]] = picked.float().cpu().numpy()
    model.train(was_training)
    return out


@torch.no_grad()
def final_states(
    model: HRNN, features: EventFeatures, sessions: Sessions, device: torch.device
) -> np.ndarray:
    """Each user's state ``h_T`` after their last event (every event is an input), ``[U, H]`` float32."""
    return states_after(model, features, sessions.user_offsets[:-1], sessions.user_offsets[1:], device)
