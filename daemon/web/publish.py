"""The accountant's side: put signed updates in a repository folder and re-sign its index."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from daemon.errors import Rejected
from daemon.exchange import verify_exchange
from daemon.fsutil import atomic_copy, atomic_write_bytes, exclusive_lock, sha256_file
from daemon.i18n import _
from daemon.keys import SigningKey
from daemon.naming import DOSSIER_RE, Kind
from daemon.web.failures import WebError
from daemon.web.index import (
    INDEX_NAME,
    MAX_RECEIPTS,
    UPLOAD_FOLDER,
    Index,
    IndexEntry,
    Receipt,
    read_envelope_unverified,
    sign_index,
)

DEFAULT_EXPIRY = timedelta(days=7)
LOCK_NAME = ".publish.lock"


class PublishError(Exception):
    """Publishing was refused; the message says why, for the accountant."""


@dataclass(frozen=True)
class Published:
    """The outcome of publishing one file (or refreshing one dossier)."""

    dossier: str
    name: str | None
    added: bool
    index: Index


class Repository:
    """A folder served by a static web server: one sub-folder per dossier."""

    def __init__(self, root: Path, key: SigningKey,
                 expiry: timedelta = DEFAULT_EXPIRY) -> None:
        self.root = root
        self.key = key
        self.expiry = expiry

    def publish(self, file: Path, now: datetime | None = None) -> Published:
        """Add a signed update to its dossier's folder and rewrite the signed index."""
        try:
            manifest = verify_exchange(file, {self.key.public.key_id: self.key.public},
                                       file.name)
        except Rejected as rejection:
            raise PublishError(_("{file}: cannot be published: {reason}").format(
                file=file.name, reason=rejection.reason())) from None
        if manifest.kind is not Kind.UPDATE:
            raise PublishError(_("{file}: only updates for the farmer (.wwz) are published")
                               .format(file=file.name))
        entry = IndexEntry(file.name, manifest.sequence, file.stat().st_size,
                           sha256_file(file), manifest.etalon)
        folder = self._folder(manifest.dossier)
        with _locked(folder):
            entries = self._current_entries(folder, manifest.dossier)
            known = next((e for e in entries if e.name == entry.name), None)
            if known == entry:
                index = self._write_index(folder, manifest.dossier, entries, now)
                return Published(manifest.dossier, entry.name, False, index)
            self._check_fits(entry, known, entries)
            atomic_copy(file, folder / entry.name)
            index = self._write_index(folder, manifest.dossier, (*entries, entry), now)
        return Published(manifest.dossier, entry.name, True, index)

    def refresh(self, dossier: str, now: datetime | None = None) -> Published:
        """Re-sign a dossier's index with a new expiry (and drop files removed by hand)."""
        if not DOSSIER_RE.fullmatch(dossier):
            raise PublishError(_("not a dossier number: {number}").format(number=dossier))
        folder = self._folder(dossier)
        with _locked(folder):
            index = self._write_index(folder, dossier, self._current_entries(folder, dossier),
                                      now)
        return Published(dossier, None, False, index)

    def add_receipt(self, receipt: Receipt, now: datetime | None = None) -> Published:
        """Publish a signed receipt in the dossier's index (once per name and SHA-256).

        The index keeps its files and the most recent MAX_RECEIPTS receipts.
        """
        if not DOSSIER_RE.fullmatch(receipt.dossier):
            raise PublishError(_("not a dossier number: {number}").format(
                number=receipt.dossier))
        folder = self._folder(receipt.dossier)
        with _locked(folder):
            current = self._current_index(folder, receipt.dossier)
            receipts = current.receipts if current else ()
            if current is not None and any(
                    (r.name, r.sha256) == (receipt.name, receipt.sha256) for r in receipts):
                return Published(receipt.dossier, None, False, current)
            receipts = (*receipts, receipt)[-MAX_RECEIPTS:]
            index = self._write_index(folder, receipt.dossier,
                                      self._current_entries(folder, receipt.dossier), now,
                                      receipts)
        return Published(receipt.dossier, None, False, index)

    def dossiers(self) -> list[str]:
        """Return the dossiers that have an index in this repository."""
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{INDEX_NAME}")
                      if DOSSIER_RE.fullmatch(p.parent.name))

    def _folder(self, dossier: str) -> Path:
        folder = self.root / dossier
        (folder / UPLOAD_FOLDER).mkdir(parents=True, exist_ok=True)
        return folder

    def _current_index(self, folder: Path, dossier: str) -> Index | None:
        try:
            data = (folder / INDEX_NAME).read_bytes()
        except FileNotFoundError:
            return None
        try:
            return read_envelope_unverified(data, dossier)
        except WebError as error:
            raise PublishError(_("{path}: the current index cannot be read ({detail})")
                               .format(path=folder / INDEX_NAME, detail=error.detail)) from None

    def _current_entries(self, folder: Path, dossier: str) -> tuple[IndexEntry, ...]:
        current = self._current_index(folder, dossier)
        if current is None:
            return ()
        # A file the accountant removed by hand is no longer offered.
        return tuple(e for e in current.files if (folder / e.name).is_file())

    @staticmethod
    def _check_fits(entry: IndexEntry, known: IndexEntry | None,
                    entries: tuple[IndexEntry, ...]) -> None:
        if known is not None:
            raise PublishError(_("{file}: another file with this name is already published")
                               .format(file=entry.name))
        clash = next((e for e in entries if e.sequence == entry.sequence), None)
        if clash is not None:
            raise PublishError(_("{file}: sequence number {n} is already used by {other}")
                               .format(file=entry.name, n=entry.sequence, other=clash.name))
        latest = max((e.sequence for e in entries), default=None)
        if latest is not None and entry.sequence < latest:
            raise PublishError(_(
                "{file}: sequence number {n} is lower than the latest published ({latest}): "
                "farmers would refuse it").format(file=entry.name, n=entry.sequence,
                                                  latest=latest))

    def _write_index(self, folder: Path, dossier: str, entries: tuple[IndexEntry, ...],
                     now: datetime | None,
                     receipts: tuple[Receipt, ...] | None = None) -> Index:
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        current = self._current_index(folder, dossier)
        if receipts is None:  # a rewrite for the files keeps the receipts already there
            receipts = current.receipts if current else ()
        index = Index(dossier=dossier, version=(current.version + 1) if current else 1,
                      published_at=now, expires_at=now + self.expiry,
                      files=tuple(sorted(entries, key=lambda e: e.sequence)),
                      receipts=receipts)
        path = folder / INDEX_NAME
        previous_mtime = _mtime_seconds(path)
        atomic_write_bytes(path, sign_index(index, self.key))
        _bump_mtime(path, previous_mtime)
        return index


def _mtime_seconds(path: Path) -> int | None:
    try:
        return int(path.stat().st_mtime)
    except FileNotFoundError:
        return None


def _bump_mtime(path: Path, previous: int | None) -> None:
    """Make sure the new index's modification second differs from the old one's.

    Static servers such as nginx derive the ETag from (mtime in seconds, size): two
    indexes of the same size written within one second would share an ETag, and
    clients would keep getting "304 Not Modified" for the older one.
    """
    if previous is None:
        return
    current = path.stat().st_mtime
    if int(current) <= previous:
        stamp = previous + 1
        os.utime(path, (stamp, stamp))


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise publishers working on the same dossier folder (on every system)."""
    with exclusive_lock(folder / LOCK_NAME):
        yield
