"""What every destination of a send shares: the job, the outcome, the failure, the interface.

A send is: pack the dossier folder into a signed `.wvz` (daemon.send.pack), then hand that
file to one destination (web, folder or USB key, e-mail). Each destination is a small
module implementing `Destination`; the orchestrator (daemon.send.sender) publishes the
events (SendStarted, SendProgress, SendFinished, SendFailed) — destinations only report
progress through the callback they are given.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# The web upload's part size; the packer hashes the file in parts of this size as it
# writes it (SendJob.part_sha256).
PART_SIZE = 8 << 20
# Called with (bytes done, bytes total); cheap, may be called often.
Progress = Callable[[int, int], None]


class Channel(enum.StrEnum):
    """The three ways of the manual's *Choix de la destination*."""

    WEB = "web"  # Synchronisation Web avec votre comptable
    FOLDER = "folder"  # Répertoire (a folder or a USB key)
    EMAIL = "email"  # Email


class Documents(enum.StrEnum):
    """*Joindre les documents associés*."""

    ALL = "all"  # Tous les documents
    CHANGED = "changed"  # Les documents modifiés ou ajoutés


@dataclass(frozen=True)
class SendJob:
    """One packed `.wvz` on its way to a destination, with what the user chose."""

    dossier: str
    dossier_name: str
    file: Path  # the packed .wvz, complete and fsync'd
    name: str  # its canonical name, <dossier>-<YYYYMMDDHHMMSS>.wvz
    size: int
    sha256: str
    objective: str = ""
    comments: str = ""
    documents: Documents = Documents.ALL
    # The SHA-256 of each PART_SIZE bytes of the file, when the packer made them.
    part_sha256: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sent:
    """What a destination did: `where` in the user's words (« la clé CLE (E:) », an
    address), and plain details kept in the report and the journal."""

    where: str
    detail: dict[str, Any] = field(default_factory=dict)
    # For a removable key: « Vous pouvez retirer la clé … », shown to the user at the end.
    remove_hint: str = ""


class SendError(Exception):
    """A send that cannot be done or did not complete; `code` is stable (docs/cli.md),
    `text` is the user's sentence in the active language. Nothing is left half-written.

    `in_window` is the same sentence for the tray's windows when what to do differs there
    (« à régler dans Paramètres » rather than a command or a configuration key); it is
    written next to `text`, where the refusal is decided, and defaults to it.
    """

    def __init__(self, code: str, text: str, in_window: str = "") -> None:
        self.code = code
        self.text = text
        self.in_window = in_window or text
        super().__init__(f"{code}: {text}")

    def message(self) -> str:
        """Return the sentence for the user."""
        return self.text


class Destination(Protocol):
    """One way of sending a packed dossier."""

    channel: Channel

    def check(self, job_size: int) -> None:
        """Raise SendError when this destination cannot take a file of `job_size` bytes
        (not configured, too large for e-mail, a key too small).

        The orchestrator calls it twice: with 0 before packing (can it take a send at
        all?), then with the packed file's exact size before a byte is transferred.
        """

    def send(self, job: SendJob, progress: Progress, cancel: threading.Event) -> Sent:
        """Transfer the job's file; raise SendError (code "cancelled" when `cancel` was set)."""
