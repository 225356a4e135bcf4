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

#: Every tensor of the current format version, in the order of docs/format.md.
#: Their dtypes and shapes are in docs/format.md, checked by the Rust loader
#: (rust/hrnn-core/src/engine/model_dir/), the one validator: the writer calls it too.
TENSOR_NAMES: tuple[str, ...] = (
    ITEM_EMBEDDING,
    EVENT_TYPE_EMBEDDING,
    DISCOUNT_WEIGHT,
    DISCOUNT_BIAS,
    GRU_WEIGHT_IH,
    GRU_WEIGHT_HH,
    GRU_BIAS_IH,
    GRU_BIAS_HH,
    READOUT_WEIGHT,
    READOUT_BIAS,
    OUTPUT_WEIGHT,
    OUTPUT_BIAS,
    ITEMS_POPULARITY,
    USERS_STATE,
    USERS_LAST_TIMESTAMP,
    USERS_HISTORY_OFFSETS,
    USERS_HISTORY_ITEMS,
    USERS_SEEN_OFFSETS,
    USERS_SEEN_ITEMS,
    USERS_SEEN_EVENT_TYPES,
)
#: The tensors format version 1 lacks.
_SINCE_VERSION_2 = (USERS_SEEN_OFFSETS, USERS_SEEN_ITEMS, USERS_SEEN_EVENT_TYPES)


def tensor_names(format_version: int) -> tuple[str, ...]:
    """The tensors of a model directory of ``format_version``."""
    if format_version >= 2:
        return TENSOR_NAMES
    return tuple(name for name in TENSOR_NAMES if name not in _SINCE_VERSION_2)


@dataclass(frozen=True)
class ModelDir:
    """A model directory read back into memory (numpy arrays + the parsed ``model.json``)."""

    tensors: dict[str, npt.NDArray[Any]]
    meta: dict[str, Any]


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
    """Writes a model directory atomically, validated against the contract by the Rust loader.

    The files go into a temporary sibling directory, are fsynced and checked exactly as
    ``Recommender.load`` checks them (an invalid model never reaches ``path``); the sibling then takes the
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

    from hrnn import _hrnn

    target = Path(path)
    if target.is_symlink():
        # replace the directory the link names, not the link (a `current -> v3` layout stays one)
        target = Path(os.path.realpath(target))
    version = meta.get("format_version", FORMAT_VERSION)
    names = tensor_names(version if version in (1, FORMAT_VERSION) else FORMAT_VERSION)
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ModelFormatError(f"{target}/{TENSORS_FILE}: missing tensor(s) {', '.join(missing)}")
    extra = sorted(set(tensors) - set(names))
    if extra:
        raise ModelFormatError(f"{target}/{TENSORS_FILE}: unknown tensor(s) {', '.join(extra)}")
    try:
        text = json.dumps(meta, indent=1, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ModelFormatError(f"{target}/{METADATA_FILE}: not serializable as strict JSON ({e})") from e
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a directory")

    target.parent.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(tensors[name]) for name in names}

    def fill(tmp: Path) -> None:
        _write_file(tmp / TENSORS_FILE, save(arrays, metadata={"format": FORMAT_NAME}))
        _write_file(tmp / METADATA_FILE, text.encode("utf-8"))
        # the one validator of docs/format.md, the Rust loader's, before the model takes `path`'s
        # place (errors name `path`, not the temporary)
        try:
            _hrnn.validate_model_dir(os.fspath(tmp))
        except ModelFormatError as e:
            raise ModelFormatError(str(e).replace(os.fspath(tmp), os.fspath(target))) from None

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
