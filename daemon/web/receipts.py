"""The accountant's signed receipts: what the firm's `collect` took in, read back by the farmer.

The firm publishes each receipt in the dossier's signed index (docs/web-protocol.md); the
farmer's poller hands every verified index to `note_receipts`, which keeps the receipts in
a small store of its own and announces each new one once (ReceiptReceived, the journal).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.events import ReceiptReceived
from daemon.fsutil import atomic_writer
from daemon.naming import DOSSIER_RE
from daemon.web.index import Receipt, VerifiedIndex, parse_receipt

if TYPE_CHECKING:
    from daemon.bus import EventBus
    from daemon.queue import Queue

log = logging.getLogger(__name__)

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
