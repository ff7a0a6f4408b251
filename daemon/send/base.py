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

# The web upload's parts: PART_SIZE, doubled while a file would make more than MOST_PARTS
# of them, up to LARGEST_PART. Each part costs a request, and a cut costs at most a part:
# a small file goes in 8 MiB parts, a large one in parts of about 1/64 to 1/32 of it. The
# packer hashes the file in parts of that size as it writes it (SendJob.part_sha256).
PART_SIZE = 8 << 20
LARGEST_PART = 64 << 20
MOST_PARTS = 64
# A site that refuses a part as too large (HTTP 413) is sent parts half that size, down to
# this: nginx's own limit when its configuration sets none (client_max_body_size 1m).
SMALLEST_PART = 1 << 20
# Called with (bytes done, bytes total); cheap, may be called often.
Progress = Callable[[int, int], None]


# base64 turns each 57 bytes into a 76-character line and its CRLF.
_B64_IN, _B64_OUT = 57, 78
# Room for the headers, the body and the MIME boundaries of a message.
HEADER_ALLOWANCE = 16 << 10
MB = 1_000_000  # providers and file managers count in decimal megabytes


def email_size(file_size: int) -> int:
    """Return about how many bytes an e-mail carrying a file of `file_size` bytes weighs."""
    return -(-file_size // _B64_IN) * _B64_OUT + HEADER_ALLOWANCE


def part_size_for(size: int) -> int:
    """Return the part size of a web upload of a file of about `size` bytes."""
    part = PART_SIZE
    while part < LARGEST_PART and size > MOST_PARTS * part:
        part *= 2
    return part


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
    # The SHA-256 of each `part_size` bytes of the file, when the packer made them.
    part_sha256: tuple[str, ...] = ()
    part_size: int = PART_SIZE


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
