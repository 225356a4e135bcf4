"""Reads the two files of a model directory without trusting them (the Python twin of
``rust/hrnn-core/src/engine/model_dir/files.rs``).

A path inside a model directory can name anything: a FIFO (an ``open`` that blocks forever), a
symlink to ``/dev/zero`` (a read that never ends), a sparse file of terabytes. So each file is
opened without blocking, must be a regular file after following symlinks, and its size is checked
before anything is read: ``model.json`` against :data:`MAX_METADATA_BYTES`, the tensor file against
the size its own safetensors header declares (read first, itself capped at
:data:`MAX_HEADER_BYTES`).
"""

from __future__ import annotations

import json
import os
import stat
import struct
from pathlib import Path

from hrnn.exceptions import ModelFormatError

__all__ = ["MAX_HEADER_BYTES", "MAX_METADATA_BYTES", "read_metadata_bytes", "read_tensor_bytes"]

#: Largest ``model.json`` read (a catalogue of 10⁶ ids is ~20 MB of JSON).
MAX_METADATA_BYTES = 64 << 20
#: Largest safetensors header read (the safetensors library's own limit).
MAX_HEADER_BYTES = 100 << 20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"  # pragma: no cover


def _not_regular(path: Path, mode: int) -> ModelFormatError:
    return ModelFormatError(f"{path}: expected a regular file (or a symlink to one), found {_kind(mode)}")


def _open_regular(path: Path) -> tuple[int, int]:
    """An fd of ``path`` (symlinks followed) and its size, when it is a regular file."""
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing (not a model directory written by hrnn?)") from None
    if not stat.S_ISREG(before.st_mode):
        raise _not_regular(path, before.st_mode)
    # O_NONBLOCK: a FIFO swapped in after the check above cannot block the open either.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _not_regular(path, st.st_mode)
    return fd, st.st_size


def _read_exactly(fd: int, size: int, path: Path) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            raise ModelFormatError(
                f"{path}: expected {size} bytes, read {size - left} (the file changed while being read)"
            )
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_metadata_bytes(path: Path) -> bytes:
    """The whole of ``model.json`` at ``path``.

    Raises:
        FileNotFoundError: the file is missing.
        ModelFormatError: not a regular file, or larger than :data:`MAX_METADATA_BYTES`.
    """
    fd, size = _open_regular(path)
    try:
        if size > MAX_METADATA_BYTES:
            raise ModelFormatError(
                f"{path}: expected at most {MAX_METADATA_BYTES} bytes of JSON, found a file of {size} bytes"
            )
        return _read_exactly(fd, size, path)
    finally:
        os.close(fd)


def _data_end(header: bytes) -> int:
    value = json.loads(header)
    if not isinstance(value, dict):
        raise ValueError("header is not a JSON object")
    end = 0
    for name, entry in value.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise ValueError(f"tensor {name!r}: expected data_offsets [begin, end]")
        end = max(end, offsets[1])
    return end


def read_tensor_bytes(path: Path) -> bytes:
    """The whole of ``model.safetensors`` at ``path``, once its size matches what its header declares.

    Raises:
        FileNotFoundError: the file is missing.
        ModelFormatError: not a regular file, or a header that is too large or disagrees with the
            file's size.
    """
    fd, size = _open_regular(path)

    def invalid(message: str) -> ModelFormatError:
        return ModelFormatError(f"{path}: not a valid safetensors file ({message})")

    try:
        if size < 8:
            raise invalid(f"expected at least the 8-byte header length, found a file of {size} bytes")
        (header_len,) = struct.unpack("<Q", _read_exactly(fd, 8, path))
        if header_len > MAX_HEADER_BYTES or header_len > size - 8:
            raise invalid(
                f"the header length is {header_len} bytes, the file has {size} bytes "
                f"(header limit {MAX_HEADER_BYTES})"
            )
        header = _read_exactly(fd, header_len, path)
        try:
            declared = 8 + header_len + _data_end(header)
        except (ValueError, UnicodeDecodeError) as e:
            raise invalid(str(e)) from e
        if declared != size:
            raise invalid(f"the header declares {declared} bytes in all, the file has {size} bytes")
        return struct.pack("<Q", header_len) + header + _read_exactly(fd, size - 8 - header_len, path)
    finally:
        os.close(fd)
