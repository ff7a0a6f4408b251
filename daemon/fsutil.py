"""Durable file operations: temp → fsync → rename → fsync the folder, never a half file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20


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
