"""Writing a file onto a USB key: temp → fsync → rename, then read back from the key and
compared, so that "you can remove the key" is only said once it is true."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.fsutil import CHUNK, fsync_dir, temp_name
from daemon.i18n import _
from daemon.presentation import format_size

# Errors that mean "no room left": FUSE drivers such as fusefat answer EPERM instead.
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class KeyWriteError(Exception):
    """Writing to the key failed; nothing is left on it under the file's name."""

    def __init__(self, key: str, detail: str) -> None:
        self.key = key
        self.detail = detail
        super().__init__(f"{key}: {detail}")

    def message(self) -> str:
        """Return the explanation for the user, in the active language."""
        return _("The file could not be written to {key}: {detail}. Nothing was left on the"
                 " key.").format(key=self.key, detail=self.detail)


class KeyFull(KeyWriteError):
    """The key has not enough free room for the file."""

    def __init__(self, key: str, needed: int, free: int) -> None:
        self.needed = needed
        self.free = free
        super().__init__(key, f"{needed} bytes needed, {free} free")

    def message(self) -> str:
        """Return the explanation for the user, in the active language."""
        return _("The USB key {key} is full: the file needs {needed} and only {free} is free."
                 " Nothing was written; free some room on the key or use another one.").format(
            key=self.key, needed=format_size(self.needed), free=format_size(self.free))


class KeyReadBackFailed(KeyWriteError):
    """The copy read back from the key differs from what was written."""

    def message(self) -> str:
        """Return the explanation for the user, in the active language."""
        return _("The copy on {key} does not read back identical to the original: the key may"
                 " be damaged. The faulty copy was removed; try another key.").format(
            key=self.key)


@dataclass(frozen=True)
class KeyWriteResult:
    """A file written to a key, flushed, read back and found identical."""

    path: Path
    size: int
    sha256: str
    key: str

    def message(self) -> str:
        """Return the words telling the user the key can now be removed."""
        return _("{file} was written to {key} and checked: you can remove the key.").format(
            file=self.path.name, key=self.key)


def free_room(folder: Path) -> tuple[int, int]:
    """Return (free bytes, allocation unit) of the file system holding `folder`."""
    if hasattr(os, "statvfs"):
        stats = os.statvfs(folder)
        if stats.f_blocks == 0:  # a driver that does not tell: assume no limit
            return 1 << 62, 1
        return stats.f_bavail * stats.f_frsize, max(stats.f_bsize, 1)
    return shutil.disk_usage(folder).free, 1


def _room_needed(size: int, unit: int) -> int:
    return -(-size // unit) * unit


def write_to_key(source: Path, folder: Path, name: str | None = None, *, key: str = "",
                 progress: Callable[[int, int], None] | None = None) -> KeyWriteResult:
    """Copy `source` into `folder` on a key as `name`, durably, and check it by reading it back.

    Raises KeyFull (nothing written) when the key has no room, KeyWriteError for other
    failures; in every failure no file is left under the final name or a temporary one.
    """
    key = key or str(folder)
    final = folder / (name or source.name)
    size = source.stat().st_size
    free, unit = free_room(folder)
    if _room_needed(size, unit) > free:
        raise KeyFull(key, size, free)
    temp = temp_name(final)
    try:
        sha256 = _write_flushed(source, temp, size, progress)
        os.replace(temp, final)
        fsync_dir(folder)
    except OSError as exc:
        failure = _explain(exc, folder, key, size)
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(failure, KeyFull):
            failure.free = free_room(folder)[0]  # the room the user actually has, now
        raise failure from exc
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    if _read_back(final) != sha256:
        with contextlib.suppress(OSError):
            final.unlink()
        raise KeyReadBackFailed(key, "SHA-256")
    return KeyWriteResult(final, size, sha256, key)


def _write_flushed(source: Path, temp: Path, size: int,
                   progress: Callable[[int, int], None] | None) -> str:
    """Write `source` to `temp` and flush it to the device; return the SHA-256 written."""
    digest = hashlib.sha256()
    written = 0
    with open(source, "rb") as src, open(temp, "xb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
            if progress is not None:
                progress(written, size)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _read_back(path: Path) -> str:
    """Hash the file as the key returns it, not as the page cache remembers it."""
    with open(path, "rb") as handle:
        if hasattr(os, "posix_fadvise"):
            with contextlib.suppress(OSError):
                # The pages are clean after fsync: dropping them makes the read go to the key.
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _explain(exc: OSError, folder: Path, key: str, size: int) -> KeyWriteError:
    """Turn a failed write into what the user can act on: a full key, or the system's words."""
    try:
        free, _unit = free_room(folder)
    except OSError:
        free = -1
    if exc.errno in _FULL_ERRNOS or free == 0:
        return KeyFull(key, size, max(free, 0))
    if exc.errno == errno.EFBIG:
        return KeyWriteError(key, _("the file is too large for the key's file system"))
    return KeyWriteError(key, exc.strerror or str(exc))
