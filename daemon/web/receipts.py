"""The accountant's signed receipts: what the firm's `collect` took in, read back by the farmer.

The firm publishes each receipt in the dossier's signed index (docs/web-protocol.md); the
farmer's poller hands every verified index to `note_receipts`, which keeps the receipts in
a small store of its own and announces each new one once (ReceiptReceived, the journal).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.errors import Rejected
from daemon.events import ReceiptReceived
from daemon.fsutil import atomic_writer
from daemon.naming import DOSSIER_RE, Kind, parse_name

if TYPE_CHECKING:
    from daemon.bus import EventBus
    from daemon.queue import Queue
    from daemon.web.index import VerifiedIndex

log = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Receipt:
    """The firm received `name` (a farmer's `.wvz`) with this SHA-256, at `received_at`
    (RFC 3339, UTC)."""

    dossier: str
    name: str
    sha256: str
    received_at: str

    def to_dict(self) -> dict[str, str]:
        """Return the receipt as it is written in an index (the dossier is the index's)."""
        return {"name": self.name, "sha256": self.sha256, "received_at": self.received_at}

    @property
    def received(self) -> datetime:
        """Return `received_at` as an aware date-time."""
        return datetime.fromisoformat(self.received_at)


def receipt_time(moment: datetime) -> str:
    """Return the RFC 3339 text of a receipt's time (UTC, to the second)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_receipt(item: object, dossier: str) -> Receipt | None:
    """Return the receipt an index lists, or None when the entry is not a valid one.

    Only canonical `.wvz` names of the index's own dossier are taken: a receipt's name is
    shown to the user and looked up on disk, it may never be another path.
    """
    if not isinstance(item, dict):
        return None
    name, sha256, received_at = (item.get(k) for k in ("name", "sha256", "received_at"))
    if not (isinstance(name, str) and isinstance(sha256, str)
            and isinstance(received_at, str)):
        return None
    try:
        parsed = parse_name(name)
        when = datetime.fromisoformat(received_at)
    except (Rejected, ValueError):
        return None
    if (parsed.kind is not Kind.DOSSIER or parsed.dossier != dossier
            or parsed.canonical != name or not _SHA256_RE.fullmatch(sha256)
            or when.tzinfo is None):
        return None
    return Receipt(dossier, name, sha256, received_at)


class ReceiptStore:
    """The receipts this installation has seen, one small JSON file per dossier."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, dossier: str) -> Path:
        if not DOSSIER_RE.fullmatch(dossier):
            raise ValueError(f"not a dossier number: {dossier!r}")
        return self.folder / f"{dossier}.json"

    def known(self, dossier: str) -> list[Receipt]:
        """Return the dossier's receipts, oldest first (empty when none or unreadable)."""
        try:
            data: Any = json.loads(self._path(dossier).read_bytes())
        except (OSError, ValueError):
            return []
        items = data.get("receipts") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return []
        found = (parse_receipt(item, dossier) for item in items)
        return [receipt for receipt in found if receipt is not None]

    def find(self, dossier: str, name: str) -> Receipt | None:
        """Return the receipt for the file `name`, if the firm confirmed it."""
        return next((r for r in self.known(dossier) if r.name == name), None)

    def add(self, dossier: str, receipts: list[Receipt]) -> list[Receipt]:
        """Keep the receipts not yet known; return those (raises OSError when it cannot)."""
        known = self.known(dossier)
        seen = {(r.name, r.sha256) for r in known}
        new = [r for r in receipts if (r.name, r.sha256) not in seen]
        if new:
            self._write(dossier, [*known, *new])
        return new

    def _write(self, dossier: str, receipts: list[Receipt]) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps({"receipts": [r.to_dict() for r in receipts]}, ensure_ascii=False,
                          indent=1).encode()
        with atomic_writer(self._path(dossier), created=_private) as out:
            out.write(body)


def _private(path: Path) -> None:
    os.chmod(path, 0o600)


def note_receipts(index: VerifiedIndex, store: ReceiptStore, bus: EventBus,
                  queue: Queue | None = None) -> list[Receipt]:
    """Keep the verified index's new receipts, and announce each one once.

    Each new receipt is stored first, then published as ReceiptReceived and written in the
    queue's history (the journal's « Reçu par votre comptable le … »): a crash in between
    loses an announcement, never repeats one. A storage failure is logged and the
    receipts are tried again at the next poll; receiving updates goes on regardless.
    """
    listed = list(index.index.receipts)
    if not listed:
        return []  # the usual poll: nothing read from the disk
    dossier = index.index.dossier
    try:
        new = store.add(dossier, listed)
    except OSError as exc:
        log.warning("web: the receipts of dossier %s cannot be kept (%s)", dossier,
                    exc.strerror or exc)
        return []
    for receipt in new:
        log.info("web: %s received by the accountant at %s", receipt.name,
                 receipt.received_at)
        bus.publish(ReceiptReceived(receipt.dossier, receipt.name, receipt.sha256,
                                    receipt.received_at))
        if queue is not None:
            _log_receipt(queue, receipt)
    return new


def _log_receipt(queue: Queue, receipt: Receipt) -> None:
    import sqlite3

    try:
        queue.log("receipt", dossier=receipt.dossier, file=receipt.name,
                  sha256=receipt.sha256, received_at=receipt.received_at)
    except (OSError, sqlite3.Error) as exc:
        log.warning("web: the receipt of %s cannot be written in the journal (%s)",
                    receipt.name, exc)
