"""The model directory contract (docs/format.md, format version 2), written and read in one place.

A model directory holds ``model.json`` (metadata) and ``model.safetensors`` (every tensor). This
module is the Python side of the contract: the tensor names, dtypes and shapes below are the ones
the Rust loader (``rust/hrnn-core/src/engine/model_dir/``) expects. It needs numpy and the
``safetensors`` package, never torch.

``H`` = hidden_dimension, ``N`` = items, ``K`` = event types, ``U`` = training users, ``R`` = total
length of the stored recent histories, ``S`` = total number of seen (item, event type) entries.

=========================== ===== ========== =========================================================
tensor                      dtype shape      meaning
=========================== ===== ========== =========================================================
``item_embedding``          F32   [N, H]     ``E``
``event_type_embedding``    F32   [K, H]     ``K``
``discount.weight``         F32   [H, H+2]   ``W_d``; columns ``0..H``: ``x``, ``H``: ``c``, ``H+1``: ``s``
``discount.bias``           F32   [H]        ``b_d``
``gru.weight_ih``           F32   [3H, H+2]  ``W_ih``, gate order r, z, n
``gru.weight_hh``           F32   [3H, H]    ``W_hh``, gate order r, z, n
``gru.bias_ih``             F32   [3H]       ``b_ih``
``gru.bias_hh``             F32   [3H]       ``b_hh``
``readout.weight``          F32   [H, 2]     ``W_q``; column 0 on ``c_q``, column 1 on ``s_q``
``readout.bias``            F32   [H]        ``b_q``
``output.weight``           F32   [N, H]     ``O`` (in full even when tied)
``output.bias``             F32   [N]        ``b_o``
``items.popularity``        I64   [N]        distinct training users per item
``users.state``             F32   [U, H]     ``h_T`` of each training user
``users.last_timestamp``    I64   [U]        Unix seconds of each user's last training event
``users.history_offsets``   I64   [U+1]      CSR offsets into ``users.history_items``
``users.history_items``     I32   [R]        most recent ≤ ``history_limit`` item indices, oldest first
``users.seen_offsets``      I64   [U+1]      CSR offsets into ``users.seen_*`` (format version 2)
``users.seen_items``        I32   [S]        each user's distinct (item, event type) pairs: the items …
``users.seen_event_types``  I32   [S]        … and event types, sorted by item then type per user
=========================== ===== ========== =========================================================

Format version 1 (hrnn 0.1) lacks the three ``users.seen_*`` tensors; it is still read (the engine
then treats the recent history as what each user has seen).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hrnn.atomic_dir import replace_directory
from hrnn.exceptions import ModelFormatError
from hrnn.model_files import read_metadata_bytes, read_tensor_bytes

__all__ = [
    "DISCOUNT_BIAS",
    "DISCOUNT_WEIGHT",
    "EVENT_TYPE_EMBEDDING",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GRU_BIAS_HH",
    "GRU_BIAS_IH",
    "GRU_WEIGHT_HH",
    "GRU_WEIGHT_IH",
    "HISTORY_LIMIT",
    "ITEMS_POPULARITY",
    "ITEM_EMBEDDING",
    "MAX_ACTIVATION",
    "METADATA_FILE",
    "OUTPUT_BIAS",
    "OUTPUT_WEIGHT",
    "READOUT_BIAS",
    "READOUT_WEIGHT",
    "TENSORS_FILE",
    "TENSOR_NAMES",
    "USERS_HISTORY_ITEMS",
    "USERS_HISTORY_OFFSETS",
    "USERS_LAST_TIMESTAMP",
    "USERS_SEEN_EVENT_TYPES",
    "USERS_SEEN_ITEMS",
    "USERS_SEEN_OFFSETS",
    "USERS_STATE",
    "ModelDir",
    "read_model_dir",
    "seen_entries",
    "tensor_names",
    "write_model_dir",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "hrnn-model"
FORMAT_VERSION = 2
METADATA_FILE = "model.json"
TENSORS_FILE = "model.safetensors"
#: Most recent items stored per training user.
HISTORY_LIMIT = 100
#: Largest magnitude any pre-activation or logit may reach in the worst case (see
#: ``_check_activation_bounds``; rust/hrnn-core/src/engine/model_dir/weight_bounds.rs has the same bound).
MAX_ACTIVATION = 1e18
# Upper bound of the time feature c = ln(1 + Δ/60) for any gap below 2⁶⁴ seconds.
_MAX_TIME_FEATURE = 41.0

ITEM_EMBEDDING = "item_embedding"
EVENT_TYPE_EMBEDDING = "event_type_embedding"
DISCOUNT_WEIGHT = "discount.weight"
DISCOUNT_BIAS = "discount.bias"
GRU_WEIGHT_IH = "gru.weight_ih"
GRU_WEIGHT_HH = "gru.weight_hh"
GRU_BIAS_IH = "gru.bias_ih"
GRU_BIAS_HH = "gru.bias_hh"
READOUT_WEIGHT = "readout.weight"
READOUT_BIAS = "readout.bias"
OUTPUT_WEIGHT = "output.weight"
OUTPUT_BIAS = "output.bias"
ITEMS_POPULARITY = "items.popularity"
USERS_STATE = "users.state"
USERS_LAST_TIMESTAMP = "users.last_timestamp"
USERS_HISTORY_OFFSETS = "users.history_offsets"
USERS_HISTORY_ITEMS = "users.history_items"
USERS_SEEN_OFFSETS = "users.seen_offsets"
USERS_SEEN_ITEMS = "users.seen_items"
USERS_SEEN_EVENT_TYPES = "users.seen_event_types"

# name -> (dtype, shape in symbols); symbols: H, N, K, U, R and the expressions below.
_SPEC: dict[str, tuple[np.dtype[Any], tuple[str, ...]]] = {
    ITEM_EMBEDDING: (np.dtype(np.float32), ("N", "H")),
    EVENT_TYPE_EMBEDDING: (np.dtype(np.float32), ("K", "H")),
    DISCOUNT_WEIGHT: (np.dtype(np.float32), ("H", "H+2")),
    DISCOUNT_BIAS: (np.dtype(np.float32), ("H",)),
    GRU_WEIGHT_IH: (np.dtype(np.float32), ("3H", "H+2")),
    GRU_WEIGHT_HH: (np.dtype(np.float32), ("3H", "H")),
    GRU_BIAS_IH: (np.dtype(np.float32), ("3H",)),
    GRU_BIAS_HH: (np.dtype(np.float32), ("3H",)),
    READOUT_WEIGHT: (np.dtype(np.float32), ("H", "2")),
    READOUT_BIAS: (np.dtype(np.float32), ("H",)),
    OUTPUT_WEIGHT: (np.dtype(np.float32), ("N", "H")),
    OUTPUT_BIAS: (np.dtype(np.float32), ("N",)),
    ITEMS_POPULARITY: (np.dtype(np.int64), ("N",)),
    USERS_STATE: (np.dtype(np.float32), ("U", "H")),
    USERS_LAST_TIMESTAMP: (np.dtype(np.int64), ("U",)),
    USERS_HISTORY_OFFSETS: (np.dtype(np.int64), ("U+1",)),
    USERS_HISTORY_ITEMS: (np.dtype(np.int32), ("R",)),
    USERS_SEEN_OFFSETS: (np.dtype(np.int64), ("U+1",)),
    USERS_SEEN_ITEMS: (np.dtype(np.int32), ("S",)),
    USERS_SEEN_EVENT_TYPES: (np.dtype(np.int32), ("S",)),
}

#: Every tensor of the current format version, in the order of docs/format.md.
TENSOR_NAMES: tuple[str, ...] = tuple(_SPEC)
#: The tensors format version 1 lacks.
_SINCE_VERSION_2 = (USERS_SEEN_OFFSETS, USERS_SEEN_ITEMS, USERS_SEEN_EVENT_TYPES)


def tensor_names(format_version: int) -> tuple[str, ...]:
    """The tensors of a model directory of ``format_version``."""
    if format_version >= 2:
        return TENSOR_NAMES
    return tuple(name for name in TENSOR_NAMES if name not in _SINCE_VERSION_2)


_REQUIRED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "format": str,
    "format_version": int,
    "hyperparameters": dict,
    "training": dict,
    "session_timeout": int,
    "history_limit": int,
    "item_ids": list,
    "event_types": list,
    "user_ids": list,
    "data_summary": dict,
    "hrnn_version": str,
}

_HYPERPARAMETER_FIELDS = (
    "hidden_dimension",
    "bptt",
    "recency_mask",
    "min_user_history_length_percentile",
    "max_user_history_length_percentile",
)


@dataclass(frozen=True)
class ModelDir:
    """A model directory read back into memory (numpy arrays + the parsed ``model.json``)."""

    tensors: dict[str, npt.NDArray[Any]]
    meta: dict[str, Any]


def _dims(tensors: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any], where: str) -> dict[str, int]:
    hyper = meta["hyperparameters"]
    h = hyper.get("hidden_dimension")
    if not isinstance(h, int) or isinstance(h, bool) or h <= 0:
        raise ModelFormatError(
            f"{where}: field hyperparameters.hidden_dimension: expected a positive int, found {h!r}"
        )
    r = tensors[USERS_HISTORY_ITEMS].shape[0] if USERS_HISTORY_ITEMS in tensors else 0
    seen = tensors[USERS_SEEN_ITEMS].shape[0] if USERS_SEEN_ITEMS in tensors else 0
    n, k, u = len(meta["item_ids"]), len(meta["event_types"]), len(meta["user_ids"])
    return {
        "H": h,
        "H+2": h + 2,
        "3H": 3 * h,
        "2": 2,
        "N": n,
        "K": k,
        "U": u,
        "U+1": u + 1,
        "R": int(r),
        "S": int(seen),
    }


def _validate_meta(meta: Mapping[str, Any], where: str) -> None:
    for name, kind in _REQUIRED_FIELDS.items():
        if name not in meta:
            raise ModelFormatError(f"{where}: missing field {name!r}")
        value = meta[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ModelFormatError(f"{where}: field {name!r}: expected {kind}, found {type(value).__name__}")
    if meta["format"] != FORMAT_NAME:
        raise ModelFormatError(f"{where}: field 'format': expected {FORMAT_NAME!r}, found {meta['format']!r}")
    if meta["format_version"] > FORMAT_VERSION or meta["format_version"] < 1:
        raise ModelFormatError(
            f"{where}: field 'format_version': this hrnn reads versions 1..{FORMAT_VERSION}, "
            f"found {meta['format_version']}"
        )
    for name in _HYPERPARAMETER_FIELDS:
        if name not in meta["hyperparameters"]:
            raise ModelFormatError(f"{where}: missing field 'hyperparameters.{name}'")
    for name in ("item_ids", "event_types", "user_ids"):
        ids = meta[name]
        if not all(isinstance(v, str) for v in ids):
            raise ModelFormatError(f"{where}: field {name!r}: expected a list of strings")
        if len(set(ids)) != len(ids):
            raise ModelFormatError(f"{where}: field {name!r}: ids must be distinct")
    if not meta["event_types"]:
        raise ModelFormatError(f"{where}: field 'event_types': expected at least one entry")
    if meta["session_timeout"] < 0:
        raise ModelFormatError(
            f"{where}: field 'session_timeout': expected ≥ 0, found {meta['session_timeout']}"
        )
    if meta["history_limit"] < 0:
        raise ModelFormatError(f"{where}: field 'history_limit': expected ≥ 0, found {meta['history_limit']}")


def _validate_tensors(tensors: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any], where: str) -> None:
    names = tensor_names(meta["format_version"])
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ModelFormatError(f"{where}: missing tensor(s) {', '.join(missing)}")
    dims = _dims(tensors, meta, where)
    for name in names:
        dtype, symbols = _SPEC[name]
        array = tensors[name]
        expected = tuple(dims[s] for s in symbols)
        if array.dtype != dtype:
            raise ModelFormatError(f"{where}: tensor {name}: expected dtype {dtype}, found {array.dtype}")
        if array.shape != expected:
            raise ModelFormatError(
                f"{where}: tensor {name}: expected shape {list(expected)} "
                f"({', '.join(symbols)}), found {list(array.shape)}"
            )
        if dtype == np.float32 and not np.all(np.isfinite(array)):
            raise ModelFormatError(f"{where}: tensor {name}: contains non-finite values")
    _check_activation_bounds(tensors, where)
    n = dims["N"]
    offsets = tensors[USERS_HISTORY_OFFSETS]
    if offsets[0] != 0 or offsets[-1] != dims["R"] or np.any(np.diff(offsets) < 0):
        raise ModelFormatError(
            f"{where}: tensor {USERS_HISTORY_OFFSETS}: expected non-decreasing offsets from 0 to {dims['R']}"
        )
    items = tensors[USERS_HISTORY_ITEMS]
    if items.size and (items.min() < 0 or items.max() >= n):
        raise ModelFormatError(f"{where}: tensor {USERS_HISTORY_ITEMS}: item indices must lie in [0, {n})")
    if np.any(np.diff(offsets) > meta["history_limit"]):
        raise ModelFormatError(
            f"{where}: tensor {USERS_HISTORY_OFFSETS}: a history is longer than history_limit "
            f"({meta['history_limit']})"
        )
    if np.any(tensors[ITEMS_POPULARITY] < 0):
        raise ModelFormatError(f"{where}: tensor {ITEMS_POPULARITY}: counts must be ≥ 0")
    if USERS_SEEN_OFFSETS in names:
        _validate_seen(tensors, dims, where)


def _check_activation_bounds(tensors: Mapping[str, npt.NDArray[Any]], where: str) -> None:
    """Refuses finite weights that can still overflow f32 (a row of 3e38 makes every logit inf).

    Every activation of docs/model.md is bounded: the state by ``max(1, |users.state|)`` (each step
    is a convex combination of ``tanh`` and the gated old state), the readout ``o = σ(..) ⊙ h``
    likewise, the cell input by ``max|E[:, c]| + max|K[:, c]|`` and the time features by
    ``c ≤ 41``, ``s ≤ 1``. So row ``r`` of ``W v + b`` is at most ``|b_r| + Σ_c |W[r, c]| max|v_c|``,
    which must not exceed :data:`MAX_ACTIVATION`.
    """

    def column_max(name: str) -> npt.NDArray[np.float64]:
        array = tensors[name]
        return np.abs(array).max(axis=0, initial=0.0).astype(np.float64)

    state = max(1.0, float(np.abs(tensors[USERS_STATE]).max(initial=0.0)))
    x = column_max(ITEM_EMBEDDING) + column_max(EVENT_TYPE_EMBEDDING)
    if x.size and x.max() > MAX_ACTIVATION:
        c = int(np.argmax(x))
        raise ModelFormatError(
            f"{where}: tensor {ITEM_EMBEDDING}: column {c}: |item_embedding| + |event_type_embedding| "
            f"reaches {x[c]:.3e}; expected at most {MAX_ACTIVATION:.0e} (so f32 arithmetic cannot overflow)"
        )
    cell_input = np.concatenate([x, [_MAX_TIME_FEATURE, 1.0]])
    h = x.size
    cell = "u = [item_embedding + event_type_embedding; c ≤ 41; s ≤ 1]"
    hidden = "the state, |h| ≤ max(1, |users.state|)"
    readout = "o = σ(..) ⊙ h, |o| ≤ max(1, |users.state|)"
    time = np.array([_MAX_TIME_FEATURE, 1.0])
    layers = [
        (DISCOUNT_WEIGHT, DISCOUNT_BIAS, cell_input, "pre-activation", cell),
        (GRU_WEIGHT_IH, GRU_BIAS_IH, cell_input, "pre-activation", cell),
        (GRU_WEIGHT_HH, GRU_BIAS_HH, np.full(h, state), "pre-activation", hidden),
        (READOUT_WEIGHT, READOUT_BIAS, time, "pre-activation", "τ_q = [c ≤ 41; s ≤ 1]"),
        (OUTPUT_WEIGHT, OUTPUT_BIAS, np.full(h, state), "logit", readout),
    ]
    for weight_name, bias_name, bound, output, source in layers:
        weight, bias = tensors[weight_name], tensors[bias_name]
        for start in range(0, weight.shape[0], 1 << 16):  # row blocks: a float64 copy of a block only
            block = np.abs(weight[start : start + (1 << 16)].astype(np.float64)) * bound
            weighted = block.sum(axis=1)
            total = weighted + np.abs(bias[start : start + block.shape[0]].astype(np.float64))
            over = np.flatnonzero(total > MAX_ACTIVATION)
            if not over.size:
                continue
            i = int(over[0])
            r = start + i
            if abs(float(bias[r])) >= weighted[i]:
                tensor, index, value, times = bias_name, r, float(bias[r]), ""
            else:
                c = int(np.argmax(block[i]))
                tensor, index, value = weight_name, r * weight.shape[1] + c, float(weight[r, c])
                times = f", times an input of up to {bound[c]:.3e} ({source}),"
            raise ModelFormatError(
                f"{where}: tensor {tensor}: value {value:g} at flat index {index}{times} lets row {r}'s "
                f"{output} reach ±{total[i]:.3e}; expected at most ±{MAX_ACTIVATION:.0e} so f32 arithmetic "
                "cannot overflow"
            )


def _validate_seen(tensors: Mapping[str, npt.NDArray[Any]], dims: Mapping[str, int], where: str) -> None:
    offsets = tensors[USERS_SEEN_OFFSETS]
    if offsets[0] != 0 or offsets[-1] != dims["S"] or np.any(np.diff(offsets) < 0):
        raise ModelFormatError(
            f"{where}: tensor {USERS_SEEN_OFFSETS}: expected non-decreasing offsets from 0 to {dims['S']}"
        )
    items, types = tensors[USERS_SEEN_ITEMS], tensors[USERS_SEEN_EVENT_TYPES]
    if items.size and (items.min() < 0 or items.max() >= dims["N"]):
        raise ModelFormatError(
            f"{where}: tensor {USERS_SEEN_ITEMS}: item indices must lie in [0, {dims['N']})"
        )
    if types.size and (types.min() < 0 or types.max() >= dims["K"]):
        raise ModelFormatError(
            f"{where}: tensor {USERS_SEEN_EVENT_TYPES}: event-type indices must lie in [0, {dims['K']})"
        )
    # strictly increasing (item, type) within each user: compare neighbours not across a user boundary
    key = items.astype(np.int64) * dims["K"] + types
    inside = np.ones(key.size, dtype=bool)
    inside[offsets[:-1][offsets[:-1] < key.size]] = False
    if key.size > 1 and np.any((np.diff(key) <= 0) & inside[1:]):
        raise ModelFormatError(
            f"{where}: tensor {USERS_SEEN_ITEMS}: each user's (item, event type) entries must be strictly "
            "increasing"
        )


def seen_entries(
    user: npt.ArrayLike, item: npt.ArrayLike, event_type: npt.ArrayLike, num_users: int, num_event_types: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """The ``users.seen_*`` tensors of a log of events: each user's distinct (item, event type) pairs.

    Args:
        user: user (row) index of each event.
        item: item index of each event.
        event_type: event-type index of each event.
        num_users: ``U``.
        num_event_types: ``K``.

    Returns:
        ``(offsets [U+1], items [S], event_types [S])``, sorted by item then type per user.
    """
    items_in = np.asarray(item, dtype=np.int64)
    k, n = max(num_event_types, 1), int(np.max(items_in, initial=0)) + 1
    key = (np.asarray(user, dtype=np.int64) * n + items_in) * k + np.asarray(event_type, dtype=np.int64)
    users, rest = np.divmod(np.unique(key), n * k)
    items, types = np.divmod(rest, k)
    offsets = np.zeros(num_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(users, minlength=num_users), out=offsets[1:])
    return offsets, items.astype(np.int32), types.astype(np.int32)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_model_dir(
    path: str | os.PathLike[str], tensors: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any]
) -> Path:
    """Writes a model directory atomically after validating it against the contract.

    The files go into a temporary sibling directory and are fsynced; the sibling then takes the
    place of ``path`` in one atomic exchange (:mod:`hrnn.atomic_dir`), so a crash at any instant
    leaves the old complete model or the new one at ``path``. Temporaries left by killed saves are
    removed. A symlink at ``path`` is followed: the directory it names is replaced.

    Args:
        path: the model directory to create or replace.
        tensors: every tensor of :data:`TENSOR_NAMES` as numpy arrays of the documented dtype/shape.
        meta: the ``model.json`` object (JSON-serializable).

    Returns:
        The path of the written directory.

    Raises:
        ModelFormatError: a tensor or field that does not match docs/format.md.
        NotADirectoryError: ``path`` exists and is not a directory.
    """
    from safetensors.numpy import save

    target = Path(path)
    if target.is_symlink():
        # replace the directory the link names, not the link (a `current -> v3` layout stays one)
        target = Path(os.path.realpath(target))
    where = f"{target}"
    _validate_meta(meta, where + "/" + METADATA_FILE)
    _validate_tensors(tensors, meta, where + "/" + TENSORS_FILE)
    extra = sorted(set(tensors) - set(tensor_names(meta["format_version"])))
    if extra:
        raise ModelFormatError(f"{where}/{TENSORS_FILE}: unknown tensor(s) {', '.join(extra)}")
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a directory")

    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(tensors[name]) for name in tensor_names(meta["format_version"])}

    def fill(tmp: Path) -> None:
        _write_file(tmp / TENSORS_FILE, save(arrays, metadata={"format": FORMAT_NAME}))
        text = json.dumps(meta, indent=1, ensure_ascii=False, allow_nan=False)
        _write_file(tmp / METADATA_FILE, text.encode("utf-8"))

    replace_directory(target, fill)
    logger.info("wrote model directory %s", target)
    return target


def read_model_dir(path: str | os.PathLike[str]) -> ModelDir:
    """Reads a model directory into numpy arrays, after the Rust loader has validated it.

    Args:
        path: a directory written by :func:`write_model_dir`.

    Returns:
        The tensors and metadata.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ModelFormatError: a file that does not match docs/format.md (names the file and tensor/field),
            or that is not a regular file, or whose size is implausible (checked before reading).
    """
    from safetensors.numpy import load

    from hrnn import _hrnn

    root = Path(path)
    # every check of docs/format.md, once, by the loader Recommender.load uses (Rust)
    _hrnn.validate_model_dir(os.fspath(root))
    meta = json.loads(read_metadata_bytes(root / METADATA_FILE).decode("utf-8"))
    tensors = load(read_tensor_bytes(root / TENSORS_FILE))
    return ModelDir(tensors=dict(tensors), meta=meta)
