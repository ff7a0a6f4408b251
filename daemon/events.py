"""The fixed set of typed events the core publishes on its bus (documented in docs/events.md).

Front ends (tray, notifications, CLI, log) subscribe to these; they never reach into the
core otherwise. Events are immutable and carry plain data only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Base of every event: when it happened (epoch seconds)."""

    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class ServiceStarted(Event):
    """The service is up and its sources are running."""


@dataclass(frozen=True)
class ServiceStopping(Event):
    """The service is shutting down cleanly."""


@dataclass(frozen=True)
class PollStarted(Event):
    """A source started looking for updates (web poll, key scan, folder scan)."""

    source: str


@dataclass(frozen=True)
class PollFinished(Event):
    """A source finished looking; `changed` is False for a 304 / nothing new."""

    source: str
    changed: bool
    found: int = 0


@dataclass(frozen=True)
class UpdateFound(Event):
    """An update is available at a source and will be fetched."""

    source: str
    dossier: str
    name: str
    size: int


@dataclass(frozen=True)
class DownloadProgress(Event):
    """Bytes received so far for one file."""

    source: str
    name: str
    received: int
    total: int


@dataclass(frozen=True)
class UpdateQueued(Event):
    """A verified update entered the queue."""

    item_id: int
    name: str
    dossier: str
    origin: str
    etalon: bool


@dataclass(frozen=True)
class UpdateRejected(Event):
    """A file was refused and quarantined; reasons in both languages."""

    name: str
    origin: str
    code: str
    reason_fr: str
    reason_en: str


@dataclass(frozen=True)
class BatchFinished(Event):
    """A source finished handing over a batch (for one grouped notification)."""

    origin: str
    queued: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    duplicates: int = 0


@dataclass(frozen=True)
class SourceFailed(Event):
    """A source could not do its job; `code` is stable, `message` is for the user."""

    source: str
    code: str
    message: str


@dataclass(frozen=True)
class Offline(Event):
    """The accountant's endpoint cannot be reached (sent once, until BackOnline)."""

    source: str
    reason: str


@dataclass(frozen=True)
class BackOnline(Event):
    """The endpoint is reachable again."""

    source: str


@dataclass(frozen=True)
class Delivered(Event):
    """An update was handed to the accounting application's inbox."""

    item_id: int
    name: str


@dataclass(frozen=True)
class RestartRequired(Event):
    """Updates wait until the accounting application is restarted."""

    item_ids: tuple[int, ...]
    app_name: str


@dataclass(frozen=True)
class QueueChanged(Event):
    """The number of waiting updates changed."""

    waiting: int


@dataclass(frozen=True)
class PauseChanged(Event):
    """Receiving was paused (until `until`, epoch seconds; None: until resumed) or resumed."""

    paused: bool
    until: float | None = None


@dataclass(frozen=True)
class ShowRequested(Event):
    """Someone asked the running service to show itself (a second `passeur run`)."""


@dataclass(frozen=True)
class SendStarted(Event):
    """Sending a dossier began (packing first, then the channel's transfer)."""

    dossier: str
    name: str
    channel: str


@dataclass(frozen=True)
class SendProgress(Event):
    """How far a send is: `stage` is "pack" or "transfer"; bytes `done` of `total`."""

    dossier: str
    name: str
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class SendFinished(Event):
    """A dossier was sent to the accountant; `where` says where, for the user.

    `ok` is always true since SendFailed exists (fields are never removed).
    """

    dossier: str
    name: str
    channel: str
    ok: bool = True
    message: str = ""
    where: str = ""


@dataclass(frozen=True)
class SendFailed(Event):
    """A send failed or was cancelled; `code` is stable, `message` is for the user.

    `in_window` is the sentence for the tray (« à régler dans Paramètres » rather than a
    command), empty when it is `message`.
    """

    dossier: str
    name: str
    channel: str
    code: str
    message: str
    in_window: str = ""


@dataclass(frozen=True)
class ReceiptReceived(Event):
    """The accountant's side confirmed it received a sent dossier (signed receipt)."""

    dossier: str
    name: str
    sha256: str
    received_at: str


@dataclass(frozen=True)
class ConfigApplied(Event):
    """A changed config file was read and the service now runs with it.

    `dossiers` holds (number, name) pairs; `configured` tells whether anything can be
    received yet (a dossier and the accountant's key).
    """

    configured: bool
    app_name: str
    dossiers: tuple[tuple[str, str], ...] = ()


ALL_EVENTS: tuple[type[Event], ...] = (
    ServiceStarted, ServiceStopping, PollStarted, PollFinished, UpdateFound,
    DownloadProgress, UpdateQueued, UpdateRejected, BatchFinished, SourceFailed, Offline,
    BackOnline, Delivered, RestartRequired, QueueChanged, PauseChanged, ShowRequested,
    SendStarted, SendProgress, SendFinished, SendFailed, ReceiptReceived, ConfigApplied,
)
