"""What the sending wizard offers for one dossier, gathered by the core in one value.

The tray's *Échanges prestataires – Envoyer* window shows these choices: where the dossier
can go (the USB keys detected now first, the last or configured folder, e-mail and the
accountant's site, each with the reason when it cannot be used), the remembered choices,
the objectives, whether the accounting application is open, and the e-mail size limit.
Everything here is quick to gather; what a send would carry (`Sender.plan`) is asked
separately, in the background, because it reads the dossier's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.send.base import Channel, Documents
from daemon.send.choices import Choices


@dataclass(frozen=True)
class Target:
    """A place a *Répertoire* send can write to: a USB key (`removable`) or a folder."""

    label: str
    path: str
    removable: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return it as the wizard reads it."""
        return {"label": self.label, "path": self.path, "removable": self.removable}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        """Read what `to_json` wrote."""
        return cls(str(data["label"]), str(data["path"]), data.get("removable") is True)


@dataclass(frozen=True)
class SendOptions:
    """The wizard's choices for one dossier; `unavailable` says why a channel cannot be
    used (absent: it can)."""

    dossier: str
    dossier_name: str
    app_name: str
    app_running: bool
    targets: tuple[Target, ...]
    objectives: tuple[str, ...]
    email_max_bytes: int
    unavailable: dict[str, str] = field(default_factory=dict)
    choices: Choices | None = None

    def default_channel(self) -> Channel:
        """Return the channel the wizard opens on: the last one used if it still works,
        else the accountant's site when it is set up, else a folder."""
        if self.choices is not None and str(self.choices.channel) not in self.unavailable:
            return self.choices.channel
        return Channel.WEB if str(Channel.WEB) not in self.unavailable else Channel.FOLDER

    def default_documents(self) -> Documents:
        """Return *Tous les documents* unless the last send said otherwise."""
        return self.choices.documents if self.choices is not None else Documents.ALL

    def to_json(self) -> dict[str, Any]:
        """Return the options as the wizard's input (and the control channel) carry them."""
        return {"dossier": self.dossier, "dossier_name": self.dossier_name,
                "app_name": self.app_name, "app_running": self.app_running,
                "targets": [t.to_json() for t in self.targets],
                "objectives": list(self.objectives), "email_max_bytes": self.email_max_bytes,
                "unavailable": dict(self.unavailable),
                "choices": self.choices.to_json() if self.choices is not None else None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendOptions:
        """Read what `to_json` wrote."""
        return cls(str(data["dossier"]), str(data.get("dossier_name", "")),
                   str(data.get("app_name", "")), data.get("app_running") is True,
                   tuple(Target.from_json(t) for t in data.get("targets", [])),
                   tuple(str(o) for o in data.get("objectives", [])),
                   int(data.get("email_max_bytes", 0)),
                   {str(k): str(v) for k, v in dict(data.get("unavailable") or {}).items()},
                   Choices.from_json(data.get("choices")))


def targets_for(volumes: list[tuple[str, Path]], removable: set[Path]) -> tuple[Target, ...]:
    """Return the *Répertoire* targets, keys first (as `removable_targets` orders them)."""
    return tuple(Target(label, str(path), path in removable) for label, path in volumes)
