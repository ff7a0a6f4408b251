"""A consistent snapshot of the dossier folder: every member is one real state of its file.

Listing: the folder is walked without following symbolic links. A link (or a Windows
junction) is not carried, nor a FIFO, socket or device: they are left out with a log line
and named in the result (`Listing.skipped`), because a link may lead out of the dossier
or round in a loop and a FIFO would block the reader. The applications' own temporary
and lock files are left out silently (see `is_ignored`): they are not documents, they
change on their own and they would make the send fail for nothing.

Reading: each file is opened once, its state (size, modification and change times,
inode and device) taken from the open file before its content is read and from its name
after (so that a file replaced by a rename is caught too). When anything moved, or
fewer bytes came than the size said, the member is taken back and the file read again
later, at most `MAX_READS` times, then the send fails with `file-changing` naming it.
When the file was modified within `DOUBT_NS` of the read (time stamps are coarse: a
write in the same tick leaves them unchanged, and FAT keeps two-second steps), it is read
a second time and must give the same SHA-256.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import io
import logging
import os
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from daemon.errors import encodable
from daemon.fsutil import temp_writer_pid
from daemon.i18n import _
from daemon.send.base import SendError
from daemon.zipwrite import MemberPipeline, SourceReadError, Ticket

log = logging.getLogger(__name__)

MAX_READS = 3
DOUBT_NS = 3_000_000_000
# Windows' "being used by another process" and "part of the file is locked".
_SHARING_VIOLATION, _LOCK_VIOLATION = 32, 33
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})
# Windows reparse points that lead elsewhere (others, such as OneDrive's cloud files,
# are documents like any other).
_LINK_TAGS = frozenset({0xA000000C, 0xA0000003})  # symbolic link, junction


def is_ignored(name: str) -> bool:
    """Tell whether a file name is an application's temporary or lock file, not a document.

    `~$x.docx` (Microsoft Office's owner file), `.~lock.x.odt#` (LibreOffice's lock),
    `*.tmp` (Office's and others' temporary copies), passeur's own `.….part` temporary
    files, and the file managers' `Thumbs.db`, `desktop.ini`, `.DS_Store`.
    """
    lower = name.lower()
    return (name.startswith("~$") or (name.startswith(".~lock.") and name.endswith("#"))
            or lower.endswith(".tmp") or lower in _IGNORED_NAMES
            or (name.endswith(".part") and temp_writer_pid(Path(name)) is not None))


# Tuples rather than dataclasses: a listing makes one of each per document, and the
# unchanged check of 10,000 documents must stay well under half a second.


class FileState(NamedTuple):
    """What tells two states of a file apart without reading it."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, status: os.stat_result) -> FileState:
        """Take the state from a stat result."""
        return cls(status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino,
                   status.st_dev)

    def recent(self, moment_ns: int) -> bool:
        """Tell whether the file was changed too close to `moment_ns` for its time stamps
        to prove that it did not change since (or is dated in the future)."""
        return max(self.mtime_ns, self.ctime_ns) >= moment_ns - DOUBT_NS


class Entry(NamedTuple):
    """A document found in the folder."""

    path: str  # POSIX, relative to the dossier folder
    file: str  # where it is on this computer
    state: FileState


@dataclass(frozen=True)
class Listing:
    """The documents of a folder, sorted by path, and what was left out and why."""

    entries: tuple[Entry, ...]
    skipped: tuple[str, ...]  # links and special files, not carried


def scan(folder: Path, exclude: tuple[Path, ...] = ()) -> Listing:
    """List the documents of `folder` (see the module's docstring for what is left out).

    Raises SendError "folder-missing" when `folder` is not a folder, "unreadable" when
    one of its subfolders cannot be listed. Folders in `exclude` are not entered.
    """
    if not folder.is_dir():
        raise SendError("folder-missing", _(
            "The dossier's folder {folder} cannot be found: check that it still exists "
            "(and that its disk or key is connected).").format(folder=folder))
    excluded = {os.path.normcase(os.path.abspath(path)) for path in exclude}
    entries: list[Entry] = []
    skipped: list[str] = []
    pending: list[tuple[Path, str]] = [(folder, "")]
    while pending:
        directory, prefix = pending.pop()
        for item in _list(directory, prefix):
            relative = prefix + item.name
            kind = _kind(item)
            if kind == "dir":
                if os.path.normcase(os.path.abspath(item.path)) not in excluded:
                    pending.append((Path(item.path), relative + "/"))
            elif kind == "file":
                if not is_ignored(item.name):
                    state = _state(item)
                    if state is not None:
                        entries.append(Entry(relative, item.path, state))
            elif kind is not None:
                log.warning("not sending %s: %s", encodable(relative), kind)
                skipped.append(relative)
    entries.sort(key=lambda entry: entry.path)
    return Listing(tuple(entries), tuple(sorted(skipped)))


def _list(directory: Path, prefix: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as items:
            return list(items)
    except FileNotFoundError:
        return []  # removed while the folder was walked: nothing of it to send
    except OSError as exc:
        raise SendError("unreadable", _("The folder {path} cannot be read: {reason}.").format(
            path=encodable(prefix.rstrip("/") or str(directory)), reason=os_reason(exc))) from None


def _kind(item: os.DirEntry[str]) -> str | None:
    """Return "dir", "file", what a skipped entry is, or None when it vanished."""
    try:
        if item.is_symlink() or _is_windows_link(item):
            return "symbolic link"
        if item.is_dir(follow_symlinks=False):
            return "dir"
        if item.is_file(follow_symlinks=False):
            return "file"
        return "not a regular file"
    except FileNotFoundError:
        return None


def _is_windows_link(item: os.DirEntry[str]) -> bool:
    if sys.platform != "win32":
        return False
    return getattr(item.stat(follow_symlinks=False), "st_reparse_tag", 0) in _LINK_TAGS


def _state(item: os.DirEntry[str]) -> FileState | None:
    try:
        return FileState.of(item.stat(follow_symlinks=False))
    except FileNotFoundError:
        return None


def os_reason(exc: OSError) -> str:
    """Say in words why a file could not be read."""
    winerror = getattr(exc, "winerror", None)
    if winerror == _SHARING_VIOLATION:
        return _("it is open in another application; close it and send again")
    if winerror == _LOCK_VIOLATION:
        return _("another application has locked part of it; close it and send again")
    if isinstance(exc, PermissionError):
        return _("access denied")
    if exc.errno == errno.EIO:
        return _("the disk could not read it (input/output error)")
    return exc.strerror or str(exc)


def unreadable(path: str, exc: OSError) -> SendError:
    """Return the failure for a document that cannot be read."""
    return SendError("unreadable", _("The document {path} cannot be read: {reason}.").format(
        path=encodable(path), reason=os_reason(exc)))


class Change(enum.Enum):
    """Why a read did not give a consistent member."""

    CHANGED = "changed"  # moved while it was read: read it again
    VANISHED = "vanished"  # gone before it could be opened: not a document any more


@dataclass(frozen=True)
class Taken:
    """A document read consistently: its member (still to be kept or dropped) and state."""

    ticket: Ticket
    state: FileState


def take(pipeline: MemberPipeline, entry: Entry, name: str) -> Taken | Change:
    """Read one document into `pipeline` as member `name`, checking that it held still.

    Returns the member's ticket (for the caller to keep or drop) with the state it was
    read in, or why it must be read again; raises SendError "unreadable".
    """
    started = time.time_ns()
    try:
        handle = _open(entry.file)
    except FileNotFoundError:
        return Change.VANISHED
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since it was listed
            return Change.CHANGED
        raise unreadable(entry.path, exc) from None
    with handle:
        before = os.fstat(handle.fileno())
        if not stat.S_ISREG(before.st_mode):
            return Change.CHANGED
        try:
            ticket = pipeline.add(name, handle, before.st_mtime, before.st_size)
        except SourceReadError as exc:
            raise unreadable(entry.path, exc.error) from None
    state = FileState.of(before)
    # The name still leads to the same inode (else it was replaced), whose state is then
    # the open file's own.
    if not (ticket.size == state.size and _state_by_name(entry) == state
            and (not state.recent(started) or _reads_the_same(entry.file, state, ticket))):
        pipeline.drop(ticket)
        return Change.CHANGED
    return Taken(ticket, state)


def _open(path: str) -> io.BufferedReader:
    # No following of a link put there since the listing; no blocking on a FIFO.
    flags = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_NONBLOCK", 0))
    return open(os.open(path, flags), "rb")


def _state_by_name(entry: Entry) -> FileState | None:
    try:
        return FileState.of(os.stat(entry.file, follow_symlinks=False))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise unreadable(entry.path, exc) from None


def _reads_the_same(path: str, state: FileState, ticket: Ticket) -> bool:
    """Read a recently modified file again: the same bytes in the same state, or not."""
    try:
        with _open(path) as handle:
            if FileState.of(os.fstat(handle.fileno())) != state:
                return False
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            if FileState.of(os.fstat(handle.fileno())) != state:
                return False
    except OSError:
        return False  # the next read says what is wrong, if anything still is
    return digest == ticket.sha256 and _state_by_name_quiet(path) == state


def _state_by_name_quiet(path: str) -> FileState | None:
    try:
        return FileState.of(os.stat(path, follow_symlinks=False))
    except OSError:
        return None
