"""The one way in for every received file: copy privately, verify strictly, queue or quarantine."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from daemon.config import Config, Paths
from daemon.errors import N_, Code, Rejected, encodable
from daemon.events import BatchFinished, UpdateQueued, UpdateRejected
from daemon.exchange import Limits, new_digest, verify_exchange
from daemon.fsutil import (
    atomic_write_bytes,
    copy_hashing,
    durable_move,
    is_disk_full,
    is_orphan_temp,
    open_quietly,
    os_error_words,
    temp_name,
)
from daemon.naming import Kind, parse_offered_name
from daemon.queue import Item, Outcome, Queue
from daemon.zipstream import MemberHash

if TYPE_CHECKING:
    from daemon.bus import EventBus


@dataclass(frozen=True)
class IntakeResult:
    """What became of one offered file."""

    name: str
    outcome: Outcome
    item: Item | None = None
    rejection: Rejected | None = None

    def to_json(self) -> dict[str, object]:
        """Return the result as documented for `passeur import --json`."""
        result: dict[str, object] = {"file": self.name, "outcome": str(self.outcome)}
        if self.item is not None and self.outcome is not Outcome.REJECTED:
            result["id"] = self.item.id
        if self.rejection is not None:
            result.update(self.rejection.as_dict())
        return result


@dataclass
class Batch:
    """What one source handed over in one go, for one grouped notification."""

    origin: str
    queued: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    duplicates: int = 0

    def __bool__(self) -> bool:
        return bool(self.queued or self.rejected or self.duplicates)

    def add(self, result: IntakeResult, bus: EventBus) -> None:
        """Count one offered file; announce it when it was queued or refused."""
        if result.outcome is Outcome.QUEUED and result.item is not None:
            self.queued.append(result.name)
            bus.publish(UpdateQueued(result.item.id, result.name, result.item.dossier or "",
                                     self.origin, result.item.etalon))
        elif result.outcome is Outcome.DUPLICATE:
            self.duplicates += 1
        elif result.rejection is not None:
            self.refused(result.name, result.rejection, bus)

    def refused(self, filename: str, rejection: Rejected, bus: EventBus) -> None:
        """Count and announce a refused file."""
        self.rejected.append(filename)
        reasons = rejection.as_dict()
        bus.publish(UpdateRejected(filename, self.origin, reasons["code"], reasons["reason_fr"],
                                   reasons["reason_en"]))

    def event(self) -> BatchFinished:
        """Return the BatchFinished event for this batch."""
        return BatchFinished(self.origin, tuple(self.queued), tuple(self.rejected),
                             self.duplicates)


class Intake:
    """Verifies offered files and queues them; never modifies or deletes the original."""

    def __init__(self, config: Config, paths: Paths, queue: Queue,
                 limits: Limits = Limits()) -> None:  # noqa: B008 - immutable
        self.config = config
        self.paths = paths
        self.queue = queue
        self.limits = limits
        self._cleaned = False

    def import_path(self, path: Path, origin: str) -> IntakeResult:
        """Import a file by path (a key, a watched folder, the command line)."""
        # A name that is not UTF-8 (a FAT key written with another code page) decodes to
        # lone surrogates, which neither the database nor a JSON note can hold.
        name, origin = encodable(path.name), encodable(origin)
        try:
            source = self._open_plain_file(path)
        except Rejected as rejection:
            item = self.queue.record_rejection(name, origin, rejection)
            return IntakeResult(name, Outcome.REJECTED, item, rejection)
        with source:
            return self.import_stream(source, name, origin)

    def _open_plain_file(self, path: Path) -> BinaryIO:
        """Open what is offered, refusing before anything is read what is not a plain file
        (a FIFO would wait for ever, a link to a device never ends) or is over the limit
        (a sparse file claims gigabytes it does not hold). The user offered the path: a
        link to a plain file is followed."""
        try:
            fd = open_quietly(path, follow_links=True)
        except OSError as exc:
            raise Rejected(Code.UNREADABLE, os_error_words(exc)) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise Rejected(Code.NOT_A_FILE, _file_kind(info.st_mode))
            if info.st_size > self.limits.max_file_size:
                raise Rejected(Code.TOO_LARGE, f"{info.st_size} > {self.limits.max_file_size}")
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def import_stream(self, source: BinaryIO, name: str, origin: str) -> IntakeResult:
        """Import a file from an open stream, known to the user as `name`."""
        name, origin = encodable(name), encodable(origin)
        self.paths.staging.mkdir(parents=True, exist_ok=True)
        self._remove_dead_copies()
        staged = temp_name(self.paths.staging / _local_name(name))
        try:
            digest = new_digest(self.limits)
            sha256, size = copy_hashing(source, staged, limit=self.limits.max_file_size,
                                        digest=digest)
        except OverflowError:
            rejection = Rejected(Code.TOO_LARGE, f"> {self.limits.max_file_size}")
        except OSError as exc:
            if is_disk_full(exc):
                raise  # this computer's fault, not the file's: nothing is recorded
            rejection = Rejected(Code.UNREADABLE, os_error_words(exc))
        else:
            return self.import_staged(staged, name, sha256, size, origin, digest.members)
        # The copy failed part-way: nothing was staged, only the reason is kept.
        return self._reject(staged, name, origin, rejection, None)

    def _remove_dead_copies(self) -> None:
        """Remove, once per run, the staging copies of runs that were killed (an import
        interrupted by kill -9 leaves a copy as large as the file it was given)."""
        if self._cleaned:
            return
        self._cleaned = True
        try:
            leftovers = [path for path in self.paths.staging.iterdir() if is_orphan_temp(path)]
            for path in leftovers:
                path.unlink(missing_ok=True)
        except OSError:
            pass  # the service's start looks again (Queue.recover)

    def import_staged(self, staged: Path, name: str, sha256: str, size: int,
                      origin: str, hashed: Mapping[int, MemberHash] | None = None,
                      ) -> IntakeResult:
        """Import a private copy already in the staging folder, whose hash is known.

        Sources that write their own copy while hashing (downloads) use this to avoid
        copying the file a second time; `hashed` holds the member hashes their
        ExchangeDigest took on the way. The staged file is consumed in every case.
        """
        name, origin = encodable(name), encodable(origin)
        self._remove_dead_copies()
        try:
            parse_offered_name(name)
            return self._verify_and_queue(staged, name, sha256, size, origin, hashed)
        except Rejected as rejection:
            return self._reject(staged, name, origin, rejection, sha256)
        finally:
            staged.unlink(missing_ok=True)

    def _verify_and_queue(self, staged: Path, name: str, sha256: str, size: int,
                          origin: str, hashed: Mapping[int, MemberHash] | None,
                          ) -> IntakeResult:
        manifest = verify_exchange(staged, self.config.keyring(), name, self.limits, hashed)
        if manifest.kind is not Kind.UPDATE:
            raise Rejected(Code.WRONG_KIND, name)
        if self.config.dossier(manifest.dossier) is None:
            raise Rejected(Code.DOSSIER_UNKNOWN, manifest.dossier)
        outcome, item = self.queue.enqueue(staged, manifest, sha256, size, origin)
        return IntakeResult(name, outcome, item)

    def _reject(self, staged: Path, name: str, origin: str, rejection: Rejected,
                sha256: str | None) -> IntakeResult:
        quarantined = self._quarantine(staged, name, origin, rejection, sha256)
        item = self.queue.record_rejection(name, origin, rejection, sha256, quarantined)
        return IntakeResult(name, Outcome.REJECTED, item, rejection)

    def _quarantine(self, staged: Path, name: str, origin: str, rejection: Rejected,
                    sha256: str | None) -> str | None:
        """Keep our private copy of a refused file beside a note saying why."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        final = self.paths.quarantine / f"{stamp}-{_local_name(name)}"
        note = {"file": name, "origin": origin, "sha256": sha256, "at": stamp,
                **rejection.as_dict()}
        atomic_write_bytes(final.with_name(final.name + ".reason.json"),
                           json.dumps(note, ensure_ascii=False, indent=1).encode(),
                           private=True)
        if not staged.exists():
            return None
        durable_move(staged, final)
        return final.name


# Our own names for an offered file (staging copy, quarantine copy and its note) add about
# 40 characters to this: well within the 255 bytes a file name may have.
_LOCAL_NAME_LENGTH = 120


def _local_name(name: str) -> str:
    """Return a short, portable name for our copies of a file offered as `name` (which may be
    any length and hold any character: it is only a hint for whoever looks at the folder)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_"
                   for c in os.path.basename(name))
    return safe.lstrip(".")[:_LOCAL_NAME_LENGTH] or "file"


def _file_kind(mode: int) -> str:
    """Return what a path that is not a plain file is (a message, said in each language)."""
    if stat.S_ISFIFO(mode):
        return N_("a pipe (FIFO)")
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return N_("a device")
    if stat.S_ISDIR(mode):
        return N_("a folder")
    if stat.S_ISSOCK(mode):
        return N_("a socket")
    return N_("something else")
