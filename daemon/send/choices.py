"""The choices of the last successful send of each dossier, offered again as the defaults.

`passeur send 8502182` then repeats the last channel, folder, documents mode, objective and
information e-mail; the tray's wizard opens on them. Kept in one small JSON file in the
data folder (private, written atomically); comments are never remembered: they are about
one send.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.fsutil import atomic_write_bytes, exclusive_lock
from daemon.send.base import Channel, Documents

FILE_NAME = "choices.json"


@dataclass(frozen=True)
class Choices:
    """What the user chose for a dossier's last successful send."""

    channel: Channel
    folder: Path | None = None  # the *Répertoire*, for a folder send
    documents: Documents = Documents.ALL
    objective: str = ""
    inform: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the choices as stored."""
        return {"channel": str(self.channel),
                "folder": str(self.folder) if self.folder else None,
                "documents": str(self.documents), "objective": self.objective,
                "inform": self.inform}

    @classmethod
    def from_json(cls, data: object) -> Choices | None:
        """Read what `to_json` wrote; None when it is not that (a damaged file is forgotten)."""
        if not isinstance(data, dict):
            return None
        try:
            folder = data.get("folder")
            return cls(Channel(data["channel"]),
                       Path(folder) if isinstance(folder, str) and folder else None,
                       Documents(data.get("documents", Documents.ALL)),
                       str(data.get("objective") or ""), data.get("inform") is True)
        except (KeyError, ValueError, TypeError):
            return None


class ChoiceStore:
    """The remembered choices of every dossier, in `<folder>/choices.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / FILE_NAME

    def load(self, dossier: str) -> Choices | None:
        """Return the dossier's remembered choices, if any."""
        return Choices.from_json(self._read().get(dossier))

    def save(self, dossier: str, choices: Choices) -> None:
        """Remember the choices of a dossier's successful send."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Two processes may each finish a send of a different dossier: one at a time reads,
        # changes and writes the file, so that neither loses the other's choices.
        with exclusive_lock(self.folder / (FILE_NAME + ".lock")):
            data = self._read()
            data[dossier] = choices.to_json()
            text = json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True)
            atomic_write_bytes(self.path, text.encode("utf-8"))
        with contextlib.suppress(OSError):
            self.path.chmod(0o600)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
