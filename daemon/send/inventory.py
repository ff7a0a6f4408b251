"""What the last successful send of each dossier carried: the base of an incremental send.

One JSON file per dossier in `data_dir/sent/`, rewritten durably (temp → fsync → rename)
only once a send succeeded. A missing or damaged file only means "no previous send": the
next send then carries every document, which is always safe.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from daemon.fsutil import atomic_writer
from daemon.naming import DOSSIER_RE

log = logging.getLogger(__name__)

_FORMAT = 1


@dataclass(frozen=True)
class Document:
    """One document of the dossier folder as a send saw it."""

    path: str  # POSIX, relative to the dossier folder
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class Inventory:
    """Every document of the folder after a send, with that send's sequence and time."""

    documents: tuple[Document, ...]
    sequence: int
    sent_at: str  # ISO 8601 with offset: when the send's snapshot was taken

    @cached_property
    def by_path(self) -> dict[str, Document]:
        """Return the documents by path."""
        return {document.path: document for document in self.documents}

    def to_json(self) -> dict[str, object]:
        """Return the stored form (documents as compact rows)."""
        return {
            "format": _FORMAT,
            "sequence": self.sequence,
            "sent_at": self.sent_at,
            "documents": [[d.path, d.size, d.mtime_ns, d.sha256] for d in self.documents],
        }

    @classmethod
    def from_json(cls, data: object) -> Inventory:
        """Rebuild an inventory from its stored form, raising ValueError when it does not fit."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError("format")
        sequence, sent_at, rows = data.get("sequence"), data.get("sent_at"), data.get("documents")
        if not isinstance(sequence, int) or not isinstance(sent_at, str) or not isinstance(
                rows, list):
            raise ValueError("fields")
        documents = []
        for row in rows:
            if not (isinstance(row, list) and len(row) == 4 and isinstance(row[0], str)
                    and isinstance(row[1], int) and isinstance(row[2], int)
                    and isinstance(row[3], str)):
                raise ValueError(f"document {row!r}")
            documents.append(Document(row[0], row[1], row[2], row[3]))
        return cls(tuple(documents), sequence, sent_at)


class InventoryStore:
    """The inventories of the last successful sends, one file per dossier."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder  # data_dir/"sent"

    def path(self, dossier: str) -> Path:
        """Return the file holding a dossier's inventory."""
        if not DOSSIER_RE.fullmatch(dossier):
            raise ValueError(f"not a dossier number: {dossier!r}")
        return self.folder / f"{dossier}.json"

    def load(self, dossier: str) -> Inventory | None:
        """Return what the last successful send of `dossier` carried, or None."""
        path = self.path(dossier)
        try:
            return Inventory.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # The next send carries everything: slower, never wrong.
            log.warning("ignoring the inventory of the last send %s: %s", path, exc)
            return None

    def commit(self, dossier: str, inventory: Inventory) -> None:
        """Remember `inventory` as the last successful send of `dossier`, durably."""
        path = self.path(dossier)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps(inventory.to_json(), ensure_ascii=False, separators=(",", ":"))
        with atomic_writer(path) as out:
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), 0o600)  # the names of the farmer's documents
            out.write(body.encode("utf-8"))

    def next_sequence(self, dossier: str) -> int:
        """Return the sequence number of the next send: one more than the last success."""
        last = self.load(dossier)
        return 1 if last is None else last.sequence + 1
