"""Durable file operations: temp → fsync → rename → fsync the folder, never a half file."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from daemon.errors import N_

CHUNK = 1 << 20

# temp_name() ends every temporary file with ".<pid>.<8 hex digits>.part".
_TEMP_SUFFIX = re.compile(r"\.(\d+)\.[0-9a-f]{8}\.part$")


# watchdog's names of the events that mean "the file's content may have changed"; the
# others (opened, closed without writing) are reads, passeur's own among them.
WRITE_EVENTS = frozenset({"created", "modified", "closed", "moved"})


def is_disk_full(exc: BaseException) -> bool:
    """Tell whether an error means the disk (or the user's quota) is full, including
    SQLite's ways of saying it (a full disk often shows as its "disk I/O error")."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    import sqlite3

    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError):
        text = str(exc).lower()
        return "disk is full" in text or "disk i/o error" in text
    return False


# Why a file cannot be read, in words of the catalogue (the system's are in English).
_OS_ERROR_WORDS = {
    errno.ENOENT: N_("the file does not exist"),
    errno.EACCES: N_("access denied"),
    errno.EPERM: N_("access denied"),
    errno.EISDIR: N_("this is a folder, not a file"),
    errno.ENAMETOOLONG: N_("the name is too long"),
    errno.ELOOP: N_("a link that leads nowhere"),
    errno.EIO: N_("the disk or the key cannot be read (input/output error)"),
    errno.ENXIO: N_("the device is not there"),
    errno.ENODEV: N_("the device is not there"),
}


def os_error_words(exc: OSError) -> str:
    """Return why an operation on a file failed, as a message of the catalogue (to be
    translated where it is shown: a Rejected's detail is)."""
    return _OS_ERROR_WORDS.get(exc.errno or 0, N_("a read error"))


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
def atomic_writer(final: Path,
                  created: Callable[[Path], None] | None = None,
                  *, sync: bool = True, private: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file that becomes `final` only once fully written and flushed.

    `created` is called with the temporary file's path once that name is on the disk,
    before anything is written to it. `sync=False` skips every flush to the disk: the
    rename is still atomic (never a half file under `final`), but a power cut may bring
    the previous version back (for notes rewritten often, made durable now and then).
    `private` makes the file readable by the user alone (mode 0600) from its creation.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    out = open_private(tmp) if private else open(tmp, "xb")  # noqa: SIM115 - closed below
    try:
        if created is not None:
            if sync:
                fsync_dir(final.parent)
            created(tmp)
        yield out
        out.flush()
        if sync:
            os.fsync(out.fileno())
        out.close()
        os.replace(tmp, final)
        if sync:
            fsync_dir(final.parent)
    except BaseException:
        # On a full disk close() fails again flushing its buffer; the temp file must
        # still go, and the first error is the one worth reporting.
        with contextlib.suppress(OSError):
            out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(final: Path, data: bytes, *, private: bool = False) -> None:
    """Write `data` to `final` atomically and durably (mode 0600 with `private`)."""
    with atomic_writer(final, private=private) as out:
        out.write(data)


_OPEN_FLAGS = {"xb": os.O_CREAT | os.O_EXCL, "wb": os.O_CREAT | os.O_TRUNC,
               "ab": os.O_CREAT | os.O_APPEND}


def open_private(path: Path, mode: str = "xb") -> BinaryIO:
    """Open `path` for writing ("xb", "wb" or "ab") as a file only the user may read:
    created with mode 0600, never more open even for a moment (whatever the umask)."""
    flags = (os.O_WRONLY | _OPEN_FLAGS[mode] | getattr(os, "O_BINARY", 0)
             | getattr(os, "O_CLOEXEC", 0))
    fd = os.open(path, flags, 0o600)
    try:
        return os.fdopen(fd, "ab" if mode == "ab" else "wb")
    except BaseException:
        os.close(fd)
        raise


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


class Digest(Protocol):
    """What copy_hashing needs of a hash: hashlib's SHA-256, or one that does more."""

    def update(self, data: bytes, /) -> None:
        """Take the next bytes."""

    def hexdigest(self) -> str:
        """Return the hash of everything taken."""


WRITEBACK_STEP = 32 << 20


class Writeback:
    """Starts writing a large file to disk while it is still being written.

    One fsync of a whole 1 GB file at the end would stall for seconds: asking the kernel
    to write each finished stretch right away overlaps that work with receiving and
    hashing, and the final fsync has little left to wait for.
    """

    def __init__(self, fd: int, offset: int = 0) -> None:
        self._fd = fd
        self._start = offset  # of the first byte not yet sent on its way to the disk
        self._end = offset

    def wrote(self, count: int) -> None:
        """Account for `count` more bytes written; send each full stretch to the disk."""
        self._end += count
        if self._end - self._start >= WRITEBACK_STEP:
            start_writeback(self._fd, self._start, self._end - self._start)
            self._start = self._end


if hasattr(os, "posix_fadvise"):

    def start_writeback(fd: int, offset: int, length: int) -> None:
        """Have the kernel start writing this range to disk, without waiting for it."""
        # On Linux, "don't need" starts the writeback of dirty pages and then lets the kernel
        # drop them once written: a large download does not push the user's other files
        # out of the cache either. An error here shows again at the final fsync.
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
else:

    def start_writeback(fd: int, offset: int, length: int) -> None:
        """Nothing to do here on this system: the final fsync writes everything."""


def copy_hashing(
    src: BinaryIO,
    final: Path,
    limit: int | None = None,
    progress: Callable[[int], None] | None = None,
    digest: Digest | None = None,
) -> tuple[str, int]:
    """Copy a stream to `final` atomically, returning (SHA-256 hex, size).

    Raises OverflowError as soon as more than `limit` bytes arrive. `digest` is fed the
    bytes instead of a plain SHA-256 when given.
    """
    digest = digest or hashlib.sha256()
    size = 0
    # Private: what is copied is someone's accounts. Reads stop one byte past the limit,
    # whatever the source claims or holds.
    with atomic_writer(final, private=True) as out:
        writeback = Writeback(out.fileno())
        while chunk := src.read(CHUNK if limit is None else min(CHUNK, limit + 1 - size)):
            size += len(chunk)
            if limit is not None and size > limit:
                raise OverflowError(size)
            out.write(chunk)
            digest.update(chunk)
            writeback.wrote(len(chunk))
            if progress is not None:
                progress(size)
    return digest.hexdigest(), size


class _Hashing:
    """A writer that hashes what it writes on the way."""

    def __init__(self, out: BinaryIO, digest: Digest) -> None:
        self._out = out
        self._digest = digest

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        return self._out.write(data)

    def flush(self) -> None:
        self._out.flush()


class CopyRefused(Exception):
    """The file to copy is not the one expected: a link, not a plain file, or other bytes."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"{path}: {why}")


def atomic_copy(src: Path, final: Path,
                created: Callable[[Path], None] | None = None, *,
                sha256: str | None = None, follow_links: bool = True) -> None:
    """Copy a file to `final` atomically and durably (`created`: see atomic_writer).

    With `sha256`, `final` appears only if the bytes copied have that SHA-256, checked as
    they go by (no second read); without `follow_links`, a link is not followed. Either
    refusal raises CopyRefused and leaves nothing behind.
    """
    if sha256 is None and follow_links:
        with open(src, "rb") as source, atomic_writer(final, created) as out:
            shutil.copyfileobj(source, out, CHUNK)
        return
    try:
        fd = open_quietly(src, follow_links=follow_links)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CopyRefused(src, "a link") from None
        raise
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CopyRefused(src, "not a plain file")
        digest = hashlib.sha256()
        with atomic_writer(final, created) as out:
            shutil.copyfileobj(source, _Hashing(out, digest), CHUNK)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise CopyRefused(src, f"SHA-256 {digest.hexdigest()[:16]}… ≠ {sha256[:16]}…")


class PartDigests:
    """The SHA-256 of each `part_size` bytes of a stream (the web upload's parts), fed as
    the bytes are written: a part is then never read again to be hashed."""

    def __init__(self, part_size: int) -> None:
        self.part_size = part_size
        self._digests: list[str] = []
        self._current = hashlib.sha256()
        self._filled = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Hash the next bytes of the stream."""
        view = memoryview(data)
        while view:
            take = min(len(view), self.part_size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.part_size:
                self._digests.append(self._current.hexdigest())
                self._current, self._filled = hashlib.sha256(), 0

    def hexdigests(self) -> tuple[str, ...]:
        """Return every part's digest, the last (shorter) part included."""
        tail = (self._current.hexdigest(),) if self._filled else ()
        return (*self._digests, *tail)


def open_quietly(path: Path, follow_links: bool = False) -> int:
    """Open a file read-only without blocking on a FIFO or touching its access time, and
    (unless `follow_links`) without following a link; return the descriptor."""
    flags = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NONBLOCK", 0))
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    noatime = getattr(os, "O_NOATIME", 0)
    if noatime:
        try:
            return os.open(path, flags | noatime)
        except PermissionError:
            pass  # O_NOATIME is only allowed to the file's owner
    return os.open(path, flags)


def sha256_file(path: Path) -> str:
    """Return the SHA-256 of a file, read in large chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def private_temp_dir(parent: Path) -> Path:
    """Create a folder only the user can read, under `parent`."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent))


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed, 0600), shared by every process.

    Blocks until the lock is free. The lock is the system's own (flock, LockFileEx through
    `filelock`) and goes with the open file, so a process that dies (even by kill -9)
    releases it.
    """
    import filelock

    path.parent.mkdir(parents=True, exist_ok=True)
    # preserve_lock_file: the file stays, and filelock never falls back to a marker file
    # that a killed process would leave behind, locked for ever.
    with filelock.FileLock(path, mode=0o600, preserve_lock_file=True):
        yield
