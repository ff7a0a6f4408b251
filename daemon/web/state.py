"""What the web source remembers between polls and restarts, per dossier.

The last verified index (with its ETag, for conditional GETs) and the highest index
version seen, so that a rolled-back index is refused even after a restart.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from daemon.fsutil import atomic_write_bytes


@dataclass(frozen=True)
class DossierState:
    """The endpoint's last verified index for one dossier."""

    version: int = 0
    signed_sha256: str = ""
    etag: str | None = None
    envelope: str = ""


class StateStore:
    """One small JSON file per dossier, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, dossier: str) -> Path:
        return self.folder / f"{dossier}.json"

    def load(self, dossier: str) -> DossierState:
        """Return the remembered state (empty when none or unreadable)."""
        try:
            data = json.loads(self._path(dossier).read_bytes())
            return DossierState(
                version=int(data["version"]), signed_sha256=str(data["signed_sha256"]),
                etag=data.get("etag") if isinstance(data.get("etag"), str) else None,
                envelope=str(data.get("envelope", "")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return DossierState()

    def save(self, dossier: str, state: DossierState) -> None:
        """Remember the state durably."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write_bytes(self._path(dossier),
                           json.dumps(asdict(state), ensure_ascii=False).encode())


@dataclass(frozen=True)
class PartInfo:
    """What a partial download belongs to, kept beside its `.part` file for resuming."""

    url: str
    size: int
    sha256: str
    etag: str | None

    @classmethod
    def load(cls, path: Path) -> PartInfo | None:
        """Read the note beside a partial download; None when missing or unreadable."""
        try:
            data = json.loads(path.read_bytes())
            return cls(str(data["url"]), int(data["size"]), str(data["sha256"]),
                       data["etag"] if isinstance(data.get("etag"), str) else None)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        """Write the note atomically (it must never describe the wrong bytes)."""
        _write_replacing(path, json.dumps(asdict(self)).encode())


def _write_replacing(path: Path, data: bytes) -> None:
    """Write temp → fsync → rename, and leave no temp file behind when the disk is full."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
