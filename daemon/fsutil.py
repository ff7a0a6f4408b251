"""Durable file operations: temp → fsync → rename → fsync the folder, never a half file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20

# temp_name() ends every temporary file with ".<pid>.<8 hex digits>.part".
_TEMP_SUFFIX = re.compile(r"\.(\d+)\.[0-9a-f]{8}\.part$")


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries to disk so that a rename in it survives a crash."""
    if os.name == "nt":  # Windows cannot open folders; NTFS journals renames itself.
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    """Return a hidden temporary name beside `final`, recognisable by the `.part` suffix."""
    return final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}.part")


def temp_writer_pid(path: Path) -> int | None:
    """Return the id of the process that created a temp_name() file (None for other names)."""
    match = _TEMP_SUFFIX.search(path.name)
    return int(match.group(1)) if match else None


def is_orphan_temp(path: Path) -> bool:
    """Tell whether `path` is a temp_name() file whose writing process has ended."""
    pid = temp_writer_pid(path)
    if pid is None:
        return False
    import psutil

    return not psutil.pid_exists(pid)


@contextlib.contextmanager
def atomic_writer(final: Path) -> Iterator[BinaryIO]:
    """Open a temporary file that becomes `final` only once fully written and flushed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    out = open(tmp, "xb")  # noqa: SIM115 - closed below on every path
    try:
        yield out
        out.flush()
        os.fsync(out.fileno())
        out.close()
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        # On a full disk close() fails again flushing its buffer; the temp file must
        # still go, and the first error is the one worth reporting.
        with contextlib.suppress(OSError):
            out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write `data` to `final` atomically and durably."""
    with atomic_writer(final) as out:
        out.write(data)


def durable_move(src: Path, final: Path) -> None:
    """Move an already-flushed file to `final` on the same file system, durably."""
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, final)
    fsync_dir(final.parent)
    if src.parent != final.parent:
        fsync_dir(src.parent)


def durable_link(src: Path, final: Path) -> None:
    """Give `src` a second name `final` (a hard link, else a copy), durably and atomically."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        os.link(src, tmp)
    except OSError:
        # No hard links here (some file systems): a full copy keeps the same promise.
        atomic_copy(src, final)
        return
    try:
        os.replace(tmp, final)
    finally:
        # rename() does nothing when both names are already links to the same file: the
        # temporary name would stay behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(final.parent)


def copy_hashing(
    src: BinaryIO,
    final: Path,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, int]:
    """Copy a stream to `final` atomically, returning (SHA-256 hex, size).

    Raises OverflowError as soon as more than `limit` bytes arrive.
    """
    digest = hashlib.sha256()
    size = 0
    with atomic_writer(final) as out:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise OverflowError(size)
            digest.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress(size)
    return digest.hexdigest(), size


def atomic_copy(src: Path, final: Path) -> None:
    """Copy a file to `final` atomically and durably."""
    with open(src, "rb") as source, atomic_writer(final) as out:
        shutil.copyfileobj(source, out, CHUNK)


def sha256_file(path: Path) -> str:
    """Return the SHA-256 of a file, read in large chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def private_temp_dir(parent: Path) -> Path:
    """Create a folder only the user can read, under `parent`."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent))


if sys.platform == "win32":
    import msvcrt

    def _lock_descriptor(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue  # LK_LOCK gives up after about ten seconds: keep waiting
else:
    import fcntl

    def _lock_descriptor(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed), shared by every process.

    Blocks until the lock is free. The lock goes with the open file, so a process that
    dies (even by kill -9) releases it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock_descriptor(fd)
        yield
    finally:
        os.close(fd)
