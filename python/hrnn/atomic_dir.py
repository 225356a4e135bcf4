"""Replacing a directory so that a crash at any instant leaves the old one or the new one.

:func:`replace_directory` builds the new content in a temporary sibling
``.<name>.tmp-<pid>-<random>``, fsyncs its files and itself, then swaps it with the target in
**one** atomic operation: ``renameat2(RENAME_EXCHANGE)`` on Linux (3.15+, through ctypes),
``renamex_np(RENAME_SWAP)`` on macOS. After the swap the sibling holds the old content and is
removed. There is no instant at which the target is missing or partial: before the swap it is the
old directory, after it the new one (a first save, with nothing to replace, is one ``rename``).

Why not the alternatives:

* rename the old directory away, then the new one in (what hrnn 0.2 did): a crash between the two
  renames leaves no directory at all;
* make the target a symlink to ``.<name>.v<N>`` and swap the link with ``os.replace``: atomic and
  portable across POSIX, but it changes what the target *is* (copies, ``rsync``, backups and
  Windows see a link), and the first save over a directory written by an older hrnn could not be
  atomic anyway (a directory cannot be replaced by a link in one rename).

Where neither exchange call exists or the filesystem refuses it (Windows, some network
filesystems), the two renames are the fallback; docs/format.md says so.

Leftovers: a save killed before the swap leaves the new content in its temporary sibling, one
killed after it leaves the old content there. Each save removes such siblings first, but only
provably stale ones: the name must match the pattern, the pid in it must not be a live process,
and (where ``flock`` exists) the directory must not be locked — every save holds an exclusive
``flock`` on its temporary directory until it is done, and the kernel drops it when the process
dies, so a save in progress elsewhere (another container, a reused pid) is never touched.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import re
import shutil
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["fsync_dir", "remove_stale_temporaries", "replace_directory", "temporary_pattern"]

logger = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS sys/stdio.h
# renameat2 syscall numbers, for a libc without the wrapper (glibc < 2.28, some musl)
_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "ppc64le": 357, "s390x": 347}


def fsync_dir(path: Path) -> None:
    """Makes the entries of directory ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - filesystems without directory fsync
        pass
    finally:
        os.close(fd)


def temporary_pattern(target: Path) -> re.Pattern[str]:
    """The names of :func:`replace_directory`'s temporary siblings of ``target`` (group 1: pid)."""
    return re.compile(rf"\.{re.escape(target.name)}\.tmp-(\d+)-[0-9a-f]{{12}}")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _lock(path: Path) -> int | None:
    """An fd of directory ``path`` holding an exclusive, non-blocking flock; None if it is held
    elsewhere (raises nothing where flock does not exist: returns an unlocked fd)."""
    fd = os.open(path, os.O_RDONLY)
    if fcntl is None:  # pragma: no cover - Windows
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale_temporaries(target: Path) -> int:
    """Removes the temporary siblings of ``target`` left by killed saves; returns how many.

    A sibling is stale when its name matches :func:`temporary_pattern`, its pid is not alive and
    no process holds its lock.
    """
    pattern = temporary_pattern(target)
    removed = 0
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return 0
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or _pid_alive(int(match[1])) or entry.is_symlink():
            continue
        path = Path(entry.path)
        try:
            fd = _lock(path)
        except OSError:  # removed meanwhile, or not a directory
            continue
        if fd is None:
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        removed += 1
        logger.info("removed %s, left by a save that did not finish", path)
    return removed


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swaps the directory entries ``a`` and ``b``; False where that is unsupported."""
    libc = _libc()
    if libc is None:  # pragma: no cover
        return False
    src, dst = os.fsencode(a), os.fsencode(b)
    if sys.platform.startswith("linux"):
        call: Callable[[], int]
        if hasattr(libc, "renameat2"):
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int

            def call() -> int:
                return int(fn(_AT_FDCWD, src, _AT_FDCWD, dst, _RENAME_EXCHANGE))

        elif platform.machine() in _SYS_RENAMEAT2:  # pragma: no cover - old glibc
            number = _SYS_RENAMEAT2[platform.machine()]
            syscall = libc.syscall
            syscall.restype = ctypes.c_long

            def call() -> int:
                return int(
                    syscall(
                        ctypes.c_long(number),
                        ctypes.c_int(_AT_FDCWD),
                        ctypes.c_char_p(src),
                        ctypes.c_int(_AT_FDCWD),
                        ctypes.c_char_p(dst),
                        ctypes.c_uint(_RENAME_EXCHANGE),
                    )
                )

        else:  # pragma: no cover
            return False
    elif sys.platform == "darwin" and hasattr(libc, "renamex_np"):  # pragma: no cover - macOS
        fn = libc.renamex_np
        fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        fn.restype = ctypes.c_int

        def call() -> int:
            return int(fn(src, dst, _RENAME_SWAP))

    else:  # pragma: no cover - Windows and others
        return False
    if call() == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # the kernel or this filesystem has no exchange
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def replace_directory(target: Path, fill: Callable[[Path], None]) -> None:
    """Creates or replaces directory ``target`` with what ``fill`` writes into an empty directory.

    ``fill`` must write (and fsync) its files; this fsyncs the directories around the swap. If
    ``fill`` raises, ``target`` is untouched and the temporary directory is removed.

    Args:
        target: the directory to create or replace (its parent must exist).
        fill: writes the new content into the directory it is given.
    """
    remove_stale_temporaries(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    lock = _lock(tmp)  # fresh and private: nobody else can hold it
    try:
        fill(tmp)
        fsync_dir(tmp)
        fsync_dir(target.parent)  # the temporary's entry is durable before it is swapped in
        if not os.path.lexists(target):
            os.rename(tmp, target)
        elif not _exchange(tmp, target):
            _replace_in_two_renames(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    # after the swap the temporary holds the old content
    shutil.rmtree(tmp, ignore_errors=True)


def _replace_in_two_renames(tmp: Path, target: Path) -> None:
    """The fallback without an exchange call: not atomic (a crash between the renames leaves the
    old content under a temporary name and nothing at ``target``)."""
    aside = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(aside, target)
        raise
    os.rename(aside, tmp)  # so the caller removes the old content where it expects it
