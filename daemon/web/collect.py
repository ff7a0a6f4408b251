"""The accountant's side of uploads: `passeur collect` assembles what farmers uploaded,
verifies it, puts each complete `.wvz` in the firm's inbox and publishes a signed receipt
in the dossier's index (see docs/web-protocol.md, "Uploads" and "Receipts").

Nothing from an upload is trusted before it is checked: the part list's signature by the
farmer key pinned for the dossier, every part's size and SHA-256, the assembled file's,
then the whole exchange file (`verify_exchange`). The file is assembled under a temporary
name in the inbox and renamed only once all of it is right: never a torn or mixed file
under its final name. Nothing is written outside the inbox and the dossier's own folder.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from daemon.errors import Rejected
from daemon.exchange import Limits, verify_exchange
from daemon.fsutil import CHUNK, atomic_writer, exclusive_lock, sha256_file
from daemon.i18n import _
from daemon.keys import KeyFormatError, PublicKey, SigningKey
from daemon.naming import DOSSIER_RE, Kind
from daemon.send.parts import (
    MAX_LIST_SIZE,
    MAX_SIGNATURE_SIZE,
    PART_RE,
    PARTS_NAME,
    SIGNATURE_NAME,
    PartList,
    PartListError,
    upload_folder,
    verify_part_list,
)
from daemon.web.client import utc_now
from daemon.web.index import UPLOAD_FOLDER, Receipt, receipt_time
from daemon.web.publish import DEFAULT_EXPIRY, PublishError, Repository

log = logging.getLogger(__name__)

DEFAULT_ABANDON_SECONDS = 7 * 86400
# The farmer installation keys the firm accepts for a dossier (hidden: never served).
PINS_NAME = ".farmer-keys.json"
LOCK_NAME = ".collect.lock"
_UPLOAD_NAME_RE = re.compile(r"[A-Za-z0-9]{1,20}-[0-9]{14}")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


class Status(enum.StrEnum):
    """What became of one upload folder."""

    COLLECTED = "collected"  # verified, in the inbox, receipt published, folder removed
    DUPLICATE = "duplicate"  # the same file was already in the inbox: receipt, removed
    WAITING = "waiting"  # not complete yet (no signed part list): left for later
    ABANDONED = "abandoned"  # incomplete and untouched for too long: removed
    REFUSED = "refused"  # wrong or untrusted: left in place, with the reason
    FAILED = "failed"  # could not be done here (disk full…): left in place, tried again


@dataclass(frozen=True)
class Collected:
    """The outcome for one upload folder of one dossier."""

    dossier: str
    upload: str
    status: Status
    name: str = ""
    sha256: str = ""
    size: int = 0
    code: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as `passeur collect --json` prints it."""
        return {"dossier": self.dossier, "upload": self.upload, "status": str(self.status),
                "name": self.name, "sha256": self.sha256, "size": self.size,
                "code": self.code, "reason": self.reason}


@dataclass
class CollectReport:
    """Every upload folder looked at, dossier by dossier."""

    outcomes: list[Collected] = field(default_factory=list)

    def by_dossier(self) -> dict[str, list[Collected]]:
        """Return the outcomes grouped by dossier, in order."""
        grouped: dict[str, list[Collected]] = {}
        for outcome in self.outcomes:
            grouped.setdefault(outcome.dossier, []).append(outcome)
        return grouped

    def of(self, status: Status) -> list[Collected]:
        """Return the outcomes with this status."""
        return [o for o in self.outcomes if o.status is status]

    @property
    def ok(self) -> bool:
        """Tell whether nothing was refused and nothing failed."""
        return not self.of(Status.REFUSED) and not self.of(Status.FAILED)


class _Refused(Exception):
    """An upload that is not accepted; `code` is stable, `reason` is the sentence."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


def collect(repo: Path, inbox: Path, key: SigningKey, *,
            abandon_after_s: float = DEFAULT_ABANDON_SECONDS,
            now: Callable[[], datetime] = utc_now,
            expiry: timedelta = DEFAULT_EXPIRY) -> CollectReport:
    """Collect every dossier's complete uploads into `inbox`; remove abandoned ones."""
    report = CollectReport()
    publisher = Repository(repo, key, expiry)
    for dossier, folder in _dossier_folders(repo):
        with exclusive_lock(folder / LOCK_NAME):
            for upload in _upload_folders(folder / UPLOAD_FOLDER):
                report.outcomes.append(_Collector(publisher, dossier, folder, upload, inbox,
                                                  abandon_after_s, now).run())
    return report


def _dossier_folders(repo: Path) -> Iterator[tuple[str, Path]]:
    try:
        entries = sorted(repo.iterdir())
    except OSError:
        return
    for folder in entries:
        if DOSSIER_RE.fullmatch(folder.name) and _is_real_folder(folder) and (
                _is_real_folder(folder / UPLOAD_FOLDER)):
            yield folder.name, folder


def _upload_folders(upload: Path) -> list[Path]:
    try:
        # Hidden names are the server's own (temporary files): never an upload.
        return sorted(p for p in upload.iterdir() if not p.name.startswith("."))
    except OSError:
        return []


def _is_real_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


class _Collector:
    """One upload folder."""

    def __init__(self, publisher: Repository, dossier: str, folder: Path, upload: Path,
                 inbox: Path, abandon_after_s: float, now: Callable[[], datetime]) -> None:
        self.publisher = publisher
        self.dossier = dossier
        self.folder = folder
        self.upload = upload
        self.inbox = inbox
        self.abandon_after_s = abandon_after_s
        self.now = now
        self.name = ""

    def outcome(self, status: Status, **values: Any) -> Collected:
        return Collected(self.dossier, self.upload.name, status, name=self.name, **values)

    def run(self) -> Collected:
        try:
            return self._run()
        except _Refused as refused:
            log.warning("collect: %s/%s refused: %s", self.dossier, self.upload.name,
                        refused.reason)
            return self.outcome(Status.REFUSED, code=refused.code, reason=refused.reason)
        except (OSError, PublishError) as exc:
            reason = _("{upload}: cannot be collected now ({error})").format(
                upload=self.upload.name, error=_os_reason(exc))
            log.warning("collect: %s", reason)
            return self.outcome(Status.FAILED, code=_failure_code(exc), reason=reason)

    def _run(self) -> Collected:
        self._check_folder()
        if not (self._has(SIGNATURE_NAME) and self._has(PARTS_NAME)):
            return self._incomplete()
        parts = self._part_list()
        self.name = parts.name
        farmer = self._farmer_key(parts)
        self._check_contents(parts)
        final = self.inbox / parts.name
        if final.exists():
            if sha256_file(final) != parts.sha256:
                raise _Refused("inbox-conflict", _(
                    "{file}: another file with this name is already in {inbox}: left in "
                    "place").format(file=parts.name, inbox=self.inbox))
            status = Status.DUPLICATE
        else:
            self._assemble(parts, farmer, final)
            status = Status.COLLECTED
        self._pin(farmer, parts.name)
        # The receipt before the folder goes: a crash in between finds the file in the
        # inbox next time, and publishes (or keeps) the receipt then.
        self.publisher.add_receipt(Receipt(self.dossier, parts.name, parts.sha256,
                                           receipt_time(self.now())), self.now())
        shutil.rmtree(self.upload)
        log.info("collect: %s %s (%d bytes)", parts.name, status, parts.size)
        return self.outcome(status, sha256=parts.sha256, size=parts.size)

    # ------------------------------------------------------------ checks

    def _check_folder(self) -> None:
        if not _is_real_folder(self.upload):
            raise _Refused("upload-not-folder", _(
                "{upload}: not an upload folder (a file or a link): left alone").format(
                    upload=self.upload.name))
        prefix = f"{self.dossier}-"
        if not (_UPLOAD_NAME_RE.fullmatch(self.upload.name)
                and self.upload.name.startswith(prefix)):
            raise _Refused("upload-name", _(
                "{upload}: not the upload folder of a file of dossier {dossier}: left "
                "alone").format(upload=self.upload.name, dossier=self.dossier))

    def _has(self, name: str) -> bool:
        try:
            os.lstat(self.upload / name)
        except FileNotFoundError:
            return False
        return True

    def _incomplete(self) -> Collected:
        newest = _newest_change(self.upload)
        if self.now().timestamp() - newest < self.abandon_after_s:
            return self.outcome(Status.WAITING)
        shutil.rmtree(self.upload)
        log.info("collect: abandoned upload %s/%s removed", self.dossier, self.upload.name)
        return self.outcome(Status.ABANDONED)

    def _part_list(self) -> PartList:
        body = self._read_small(PARTS_NAME, MAX_LIST_SIZE)
        signature = self._read_small(SIGNATURE_NAME, MAX_SIGNATURE_SIZE)
        try:
            parts = verify_part_list(body, signature, self.dossier)
        except PartListError as error:
            raise _Refused(str(error.code), _("{upload}: {reason}").format(
                upload=self.upload.name, reason=error.message())) from None
        if upload_folder(parts.name) != self.upload.name:
            raise _Refused("parts-name-unsafe", _(
                "{upload}: the part list names {file}, not this folder's file").format(
                    upload=self.upload.name, file=parts.name))
        return parts

    def _read_small(self, name: str, cap: int) -> bytes:
        with _open_plain(self.upload / name) as handle:
            data = handle.read(cap + 1)
        if len(data) > cap:
            code = "parts-too-large" if name == PARTS_NAME else "parts-signature-bad"
            raise _Refused(code, _("{upload}: {file} is larger than {cap} bytes").format(
                upload=self.upload.name, file=name, cap=cap))
        return data

    def _farmer_key(self, parts: PartList) -> PublicKey:
        key = PublicKey.from_text(parts.public_key)  # checked by verify_part_list
        pinned = self._pinned()
        if pinned and key.key_id not in pinned:
            raise _Refused("farmer-key-changed", _(
                "{file}: signed by another installation (key {key_id}) than the one pinned "
                "for dossier {dossier} ({pinned}): left in place. If the farmer really "
                "changed computers, remove {path} to accept the new key.").format(
                    file=parts.name, key_id=key.key_id, dossier=self.dossier,
                    pinned=", ".join(sorted(pinned)), path=self.folder / PINS_NAME))
        return key

    def _pinned(self) -> dict[str, PublicKey]:
        path = self.folder / PINS_NAME
        try:
            data = json.loads(path.read_bytes())
            keys = {PublicKey.from_text(item["public_key"]) for item in data["keys"]}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, KeyFormatError):
            # An unreadable pin file must not become "first use" again.
            raise _Refused("farmer-keys-unreadable", _(
                "{path}: the farmer keys pinned for dossier {dossier} cannot be read").format(
                    path=path, dossier=self.dossier)) from None
        return {k.key_id: k for k in keys}

    def _pin(self, key: PublicKey, name: str) -> None:
        pinned = self._pinned()
        if key.key_id in pinned:
            return
        path = self.folder / PINS_NAME
        entry = {"public_key": key.text, "key_id": key.key_id,
                 "pinned_at": receipt_time(self.now()), "first_file": name}
        with atomic_writer(path) as out:
            out.write(json.dumps({"keys": [entry]}, indent=1).encode() + b"\n")
        log.info("collect: farmer key %s pinned for dossier %s", key.key_id, self.dossier)

    def _check_contents(self, parts: PartList) -> None:
        expected = set(parts.names())
        present = {p.name for p in self.upload.iterdir() if not p.name.startswith(".")}
        missing = sorted(expected - present)
        if missing:
            raise _Refused("part-missing", _("{file}: part {part} is missing").format(
                file=parts.name, part=missing[0]))
        extra = sorted(present - expected - {PARTS_NAME, SIGNATURE_NAME})
        if extra:
            code = "part-extra" if PART_RE.fullmatch(extra[0]) else "unexpected-file"
            raise _Refused(code, _("{file}: {extra} is not part of the upload").format(
                file=parts.name, extra=extra[0]))
        limit = Limits().max_file_size
        if parts.size > limit:
            raise _Refused("too-large", _("{file}: too large ({size} > {limit})").format(
                file=parts.name, size=parts.size, limit=limit))

    # ------------------------------------------------------------ assembling

    def _assemble(self, parts: PartList, farmer: PublicKey, final: Path) -> None:
        """Write the parts, in order, under a temporary name; rename once all is right."""
        self.inbox.mkdir(mode=0o700, parents=True, exist_ok=True)
        held: list[Path] = []
        with atomic_writer(final, created=held.append) as out:
            whole = hashlib.sha256()
            for number, name in enumerate(parts.names(), start=1):
                self._copy_part(parts, number, name, out, whole)
            if whole.hexdigest() != parts.sha256:
                raise _Refused("file-hash", _(
                    "{file}: the assembled file does not have the fingerprint (SHA-256) of "
                    "its part list").format(file=parts.name))
            out.flush()
            self._verify_exchange(held[0], farmer, parts.name)

    def _copy_part(self, parts: PartList, number: int, name: str, out: BinaryIO,
                   whole: Any) -> None:
        _offset, length = parts.span(number)
        digest = hashlib.sha256()
        with _open_plain(self.upload / name) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size != length:
                raise _Refused("part-size", _(
                    "{file}: {part} has {size} bytes instead of {expected}").format(
                        file=parts.name, part=name, size=size, expected=length))
            left = length
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                digest.update(chunk)
                whole.update(chunk)
                out.write(chunk)
        if left or digest.hexdigest() != parts.parts[number - 1]:
            raise _Refused("part-hash", _(
                "{file}: {part} does not have the fingerprint (SHA-256) of its part "
                "list").format(file=parts.name, part=name))

    def _verify_exchange(self, path: Path, farmer: PublicKey, name: str) -> None:
        try:
            manifest = verify_exchange(path, {farmer.key_id: farmer}, name)
        except Rejected as rejection:
            raise _Refused("exchange-refused", _("{file}: refused: {reason}").format(
                file=name, reason=rejection.reason())) from None
        if manifest.kind is not Kind.DOSSIER or manifest.dossier != self.dossier:
            raise _Refused("exchange-refused", _(
                "{file}: not a dossier sent by the farmer for dossier {dossier}").format(
                    file=name, dossier=self.dossier))


@contextlib.contextmanager
def _open_plain(path: Path) -> Iterator[BinaryIO]:
    """Open a regular file for reading, never through a link (an upload is hostile)."""
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_BINARY)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise _Refused("upload-link", _(
                "{upload}: {file} is a link, not a file: refused").format(
                    upload=path.parent.name, file=path.name)) from None
        raise
    try:
        plain = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not plain:
        os.close(fd)
        raise _Refused("unexpected-file", _(
            "{upload}: {file} is not a plain file: refused").format(
                upload=path.parent.name, file=path.name))
    with os.fdopen(fd, "rb") as handle:
        yield handle


def _newest_change(folder: Path) -> float:
    """Return the latest modification time of a folder and what it holds."""
    newest = os.lstat(folder).st_mtime
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
    return newest


def _os_reason(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)


def _failure_code(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk-full"
    if isinstance(exc, PublishError):
        return "publish-failed"
    return "disk-error"
