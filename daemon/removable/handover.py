"""Taking exchange files from a key or a watched folder: which files, when they are complete,
copied once while hashing, then handed to the intake. Shared by both file sources."""

from __future__ import annotations

import enum
import errno
import hashlib
import logging
import os
import sqlite3
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from daemon.bus import EventBus
from daemon.errors import Code, Rejected
from daemon.events import BatchFinished, DownloadProgress
from daemon.exchange import new_digest
from daemon.fsutil import (
    CHUNK,
    Writeback,
    open_private,
    open_quietly,
    os_error_words,
    temp_name,
)
from daemon.i18n import _, ngettext
from daemon.intake import Batch, Intake, IntakeResult
from daemon.naming import ExchangeName, Kind, parse_offered_name
from daemon.queue import Outcome
from daemon.zipstream import ExchangeDigest

log = logging.getLogger(__name__)

_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_SIZE = 22
_ZIP64_LOCATOR_SIZE = 20
# The end record, its longest comment and the ZIP64 locator just before it.
TAIL_SIZE = _EOCD_SIZE + 0xFFFF + _ZIP64_LOCATOR_SIZE
PROGRESS_INTERVAL_S = 0.5
# A file without a ZIP end record is taken to be still written while it changed within
# this long; after that it is complete, only not an exchange file (or a damaged one), and
# is handed to the intake to be refused once, with its reason, like any other bad file.
QUIET_S = 60.0

def exchange_name(filename: str) -> ExchangeName | None:
    """Return the exchange name a file carries (any case, with a ' (1)' copy suffix), or None."""
    try:
        return parse_offered_name(filename)
    except Rejected:
        return None


def has_zip_end(tail: bytes, size: int) -> bool:
    """Tell whether `tail`, the last bytes of a `size`-byte file, ends with a valid ZIP end record.

    A file still being written (appended, or preallocated and filled) has no such record
    at its very end, so this is the cheap "is the copy finished?" test.
    """
    start = size - len(tail)
    index = tail.rfind(_EOCD_SIGNATURE)
    while index >= 0:
        if index + _EOCD_SIZE <= len(tail):
            (disk, cd_disk, _here, _total, cd_size, cd_offset,
             comment) = struct.unpack_from("<HHHHIIH", tail, index + 4)
            end_matches = index + _EOCD_SIZE + comment == len(tail)
            zip64 = cd_offset == 0xFFFFFFFF or cd_size == 0xFFFFFFFF
            inside = zip64 or cd_offset + cd_size <= start + index
            if end_matches and disk == 0 and cd_disk == 0 and inside:
                return True
        index = tail.rfind(_EOCD_SIGNATURE, 0, index)
    return False


@dataclass(frozen=True)
class Fingerprint:
    """What identifies one state of a file without reading it all (the tail holds the CRCs)."""

    size: int
    mtime_ns: int
    tail_sha256: str

    def to_json(self) -> list[object]:
        """Return the fingerprint as a JSON list."""
        return [self.size, self.mtime_ns, self.tail_sha256]

    @classmethod
    def from_json(cls, value: object) -> Fingerprint | None:
        """Rebuild a fingerprint saved by to_json(); None when it does not fit."""
        if (isinstance(value, list) and len(value) == 3 and isinstance(value[0], int)
                and isinstance(value[1], int) and isinstance(value[2], str)):
            return cls(value[0], value[1], value[2])
        return None


class Offer(enum.Enum):
    """What became of one file offered by a source."""

    TAKEN = "taken"  # handed to the intake (queued, duplicate or refused)
    SEEN = "seen"  # this very file was already taken
    INCOMPLETE = "incomplete"  # no ZIP end record yet: still being written
    CHANGED = "changed"  # it changed while being copied: try again later
    VANISHED = "vanished"  # gone, or not a regular file


class Interrupted(Exception):
    """The volume went away (or the source is stopping) while a file was being copied."""


class StorageFailed(Exception):
    """The computer's own disk or queue refused the copy (full disk, database error)."""

    def __init__(self, origin: str, cause: Exception) -> None:
        self.origin = origin
        self.cause = cause
        self.full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)
        super().__init__(f"{origin}: {cause}")

    @property
    def code(self) -> str:
        """Return the stable code used in SourceFailed events."""
        return "disk-full" if self.full else "disk-error"

    def message(self) -> str:
        """Return the explanation for the user."""
        if self.full:
            return _("Updates cannot be copied from {origin}: this computer's disk is full"
                     ).format(origin=origin_words(self.origin))
        return _("Updates cannot be copied from {origin}: {error}").format(
            origin=origin_words(self.origin), error=self.cause)


class _ReadFailed(Exception):
    def __init__(self, cause: OSError) -> None:
        self.cause = cause
        super().__init__(str(cause))


def _read_tail(fd: int, size: int) -> bytes:
    """Read the last bytes of a file that may hold its ZIP end record."""
    length = min(size, TAIL_SIZE)
    os.lseek(fd, size - length, os.SEEK_SET)  # os.pread does not exist on Windows
    parts: list[bytes] = []
    while length > 0 and (part := os.read(fd, length)):
        parts.append(part)
        length -= len(part)
    return b"".join(parts)


class Handover:
    """Copies complete exchange files into staging while hashing, and queues them."""

    def __init__(self, intake: Intake, bus: EventBus, quiet_s: float = QUIET_S) -> None:
        self.intake = intake
        self.bus = bus
        self.quiet_s = quiet_s

    def offer(self, path: Path, name: ExchangeName, origin: str, batch: Batch,
              seen: dict[str, Fingerprint], still_there: Callable[[], bool]) -> Offer:
        """Take `path` if it is complete and not yet seen; `still_there` is asked between chunks.

        Raises Interrupted when `still_there()` turns false mid-copy (nothing is left
        behind) and StorageFailed when the local disk or the queue fails.
        """
        try:
            fd = open_quietly(path)
        except FileNotFoundError:
            return Offer.VANISHED
        except OSError as exc:
            if not still_there():
                raise Interrupted(str(path)) from exc
            if exc.errno == errno.ELOOP:  # a symbolic link: never followed
                return Offer.VANISHED
            return self._unreadable(path, name, origin, batch, seen, exc)
        try:
            taken = self._copy_if_new(fd, path, name, origin, batch, seen, still_there)
        except _ReadFailed as failure:
            return self._unreadable(path, name, origin, batch, seen, failure.cause)
        finally:
            os.close(fd)  # before verifying: the key must be free to eject at once
        if not isinstance(taken, tuple):
            return taken
        staged, digest, fingerprint = taken
        try:
            result = self.intake.import_staged(staged, name.canonical, digest.hexdigest(),
                                               fingerprint.size, origin, digest.members)
        except (OSError, sqlite3.Error) as exc:
            staged.unlink(missing_ok=True)
            raise StorageFailed(origin, exc) from exc
        seen[str(path)] = fingerprint
        self._report(result, origin, batch)
        return Offer.TAKEN

    def _copy_if_new(self, fd: int, path: Path, name: ExchangeName, origin: str, batch: Batch,
                     seen: dict[str, Fingerprint], still_there: Callable[[], bool],
                     ) -> Offer | tuple[Path, ExchangeDigest, Fingerprint]:
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                return Offer.VANISHED
            tail = _read_tail(fd, before.st_size)
        except OSError as exc:
            if not still_there():
                raise Interrupted(str(path)) from exc
            raise _ReadFailed(exc) from exc
        if not has_zip_end(tail, before.st_size) and self._changed_lately(before):
            return Offer.INCOMPLETE
        fingerprint = Fingerprint(before.st_size, before.st_mtime_ns,
                                  hashlib.sha256(tail).hexdigest())
        if seen.get(str(path)) == fingerprint:
            return Offer.SEEN
        limit = self.intake.limits.max_file_size
        if before.st_size > limit:
            # Not even copied: reading gigabytes off a key to refuse them helps nobody.
            self._refuse(name, origin, batch, Rejected(Code.TOO_LARGE, f"> {limit}"))
            seen[str(path)] = fingerprint
            return Offer.TAKEN
        copied = self._copy(fd, path, before, name, origin, still_there)
        if copied is None:
            return Offer.CHANGED
        staged, digest = copied
        return staged, digest, fingerprint

    def _changed_lately(self, info: os.stat_result) -> bool:
        """Tell whether the file was written within the quiet time (mtime, or ctime for a
        file copied with its old modification time kept)."""
        latest = max(info.st_mtime_ns, info.st_ctime_ns) / 1e9
        return time.time() - latest < self.quiet_s

    def _unreadable(self, path: Path, name: ExchangeName, origin: str, batch: Batch,
                    seen: dict[str, Fingerprint], error: OSError) -> Offer:
        """Refuse a file that cannot be read, once (until its size or time changes)."""
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            return Offer.VANISHED
        fingerprint = Fingerprint(info.st_size, info.st_mtime_ns, "unreadable")
        if seen.get(str(path)) == fingerprint:
            return Offer.SEEN
        self._refuse(name, origin, batch, Rejected(Code.UNREADABLE, os_error_words(error)))
        seen[str(path)] = fingerprint
        return Offer.TAKEN

    def _copy(self, fd: int, path: Path, before: os.stat_result, name: ExchangeName,
              origin: str, still_there: Callable[[], bool],
              ) -> tuple[Path, ExchangeDigest] | None:
        """Copy to staging while hashing (whole and member by member); None when the file
        changed meanwhile."""
        staging = self.intake.paths.staging
        try:
            staging.mkdir(parents=True, exist_ok=True)
            staged = temp_name(staging / name.canonical)
            out = open_private(staged)
        except OSError as exc:
            raise StorageFailed(origin, exc) from exc
        try:
            digest, size = self._pump(fd, out, path, name, origin, before.st_size, still_there)
            if size != before.st_size or _changed(fd, path, before):
                log.info(_("%s changed while it was copied: taken again later"), path)
                out.close()
                staged.unlink(missing_ok=True)
                return None
            try:
                out.flush()
                os.fsync(out.fileno())
                out.close()
            except OSError as exc:
                raise StorageFailed(origin, exc) from exc
        except BaseException:
            out.close()
            staged.unlink(missing_ok=True)
            raise
        return staged, digest

    def _pump(self, fd: int, out: BinaryIO, path: Path, name: ExchangeName, origin: str,
              total: int, still_there: Callable[[], bool]) -> tuple[ExchangeDigest, int]:
        os.lseek(fd, 0, os.SEEK_SET)
        digest = new_digest(self.intake.limits)
        writeback = Writeback(out.fileno())
        received = 0
        last_report = 0.0
        while True:
            if not still_there():
                raise Interrupted(str(path))
            try:
                chunk = os.read(fd, CHUNK)
            except OSError as exc:
                if not still_there():
                    raise Interrupted(str(path)) from exc
                raise _ReadFailed(exc) from exc
            if not chunk:
                return digest, received
            try:
                out.write(chunk)
            except OSError as exc:
                raise StorageFailed(origin, exc) from exc
            digest.update(chunk)
            writeback.wrote(len(chunk))
            received += len(chunk)
            now = time.monotonic()
            if total > CHUNK and now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                self.bus.publish(DownloadProgress(origin, name.canonical, received, total))

    def _report(self, result: IntakeResult, origin: str, batch: Batch) -> None:
        if result.outcome is Outcome.QUEUED and result.item is not None:
            log.debug("%s: %s queued (item %s)", origin, result.name, result.item.id)
        elif result.outcome is Outcome.DUPLICATE:
            log.info(_("%s: %s was already received"), origin, result.name)
        elif result.rejection is not None:
            log.debug("%s: %s refused: %s", origin, result.name,
                      result.rejection.reason_in("en"))
        batch.add(result, self.bus)

    def _refuse(self, name: ExchangeName, origin: str, batch: Batch,
                rejection: Rejected) -> None:
        """Record a file refused before it could be copied (unreadable, too large)."""
        try:
            self.intake.queue.record_rejection(name.canonical, origin, rejection)
        except sqlite3.Error as exc:
            raise StorageFailed(origin, exc) from exc
        log.debug("%s: %s refused: %s", origin, name.canonical, rejection.reason_in("en"))
        batch.refused(name.canonical, rejection, self.bus)


def _changed(fd: int, path: Path, before: os.stat_result) -> bool:
    """Tell whether the file grew, shrank or was rewritten while it was being copied."""
    try:
        now = os.fstat(fd)
        named = os.stat(path, follow_symlinks=False)
    except OSError:
        return True
    same = (now.st_size, now.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    return not same or (named.st_size, named.st_mtime_ns) != (before.st_size,
                                                                before.st_mtime_ns)


def is_update_for(name: ExchangeName, dossiers: set[str]) -> bool:
    """Tell whether a named file is an update (.wwz) of one of these dossiers."""
    return name.kind is Kind.UPDATE and name.dossier in dossiers


def origin_words(origin: str) -> str:
    """Return a source's origin (`usb:CLE`, `folder:/home/…`) in words."""
    kind, _sep, where = origin.partition(":")
    if kind == "usb":
        return _("USB key {label}").format(label=where)
    if kind == "folder":
        return _("folder {folder}").format(folder=where)
    return origin


def batch_summary(imported: int, refused: int, duplicates: int) -> str:
    """Return "2 updates imported, 1 refused" (each count with its own plural form)."""
    parts: list[str] = []
    if imported:
        parts.append(ngettext("{n} update imported", "{n} updates imported",
                              imported).format(n=imported))
    if refused:
        parts.append((ngettext("{n} refused", "{n} refused", refused) if parts else
                      ngettext("{n} update refused", "{n} updates refused", refused)
                      ).format(n=refused))
    if duplicates:
        parts.append((ngettext("{n} already received", "{n} already received", duplicates)
                      if parts else
                      ngettext("{n} update already received", "{n} updates already received",
                               duplicates)).format(n=duplicates))
    if not parts:
        return _("nothing new")
    return ", ".join(parts)


def describe_batch(event: BatchFinished) -> str:
    """Word a batch for the user: "USB key CLE (E:): 2 updates imported, 1 refused"."""
    summary = batch_summary(len(event.queued), len(event.rejected), event.duplicates)
    kind, _sep, where = event.origin.partition(":")
    if kind == "usb":
        return _("USB key {label}: {summary}").format(label=where, summary=summary)
    if kind == "folder":
        return _("Folder {folder}: {summary}").format(folder=where, summary=summary)
    if kind == "web":
        return _("Accountant's site: {summary}").format(summary=summary)
    if kind == "manual":  # passeur import, Importer…: never the bare word in a sentence
        return _("Imported by hand: {summary}").format(summary=summary)
    return _("{origin}: {summary}").format(origin=event.origin, summary=summary)
