"""The removable-drive source: when a key is plugged in, take the updates it carries.

One thread, asleep in the platform detector until the mounted volumes change. A new volume
is scanned (its root and one level down) for updates of the configured dossiers; each
complete one is copied while hashing, verified by the intake and queued; one BatchFinished
per key tells the front ends what happened. Nothing on the key is written, renamed, deleted
or run, and every handle on it is closed as soon as its file is copied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from daemon.bus import EventBus
from daemon.config import Config, Paths
from daemon.events import PollFinished, PollStarted, SourceFailed
from daemon.i18n import _
from daemon.intake import Batch, Intake
from daemon.naming import ExchangeName, Kind
from daemon.removable.handover import (
    Fingerprint,
    Handover,
    Interrupted,
    Offer,
    StorageFailed,
    exchange_name,
)
from daemon.removable.monitors import platform_monitor
from daemon.removable.volumes import Volume, VolumeMonitor
from daemon.sources import Source

log = logging.getLogger(__name__)

# Folders of a key that hold the system's or another program's files, not the user's.
_SYSTEM_FOLDERS = frozenset(name.casefold() for name in (
    "System Volume Information", "$RECYCLE.BIN", "RECYCLER", "LOST.DIR", "lost+found",
    "Android", "DCIM",
))


def list_exchange_files(root: Path) -> list[tuple[Path, ExchangeName]]:
    """Return the exchange files in `root` and its folders one level down (no links followed)."""
    found: list[tuple[Path, ExchangeName]] = []
    folders = _scan_folder(root, found)
    for folder in folders:
        _scan_folder(folder, found)
    return found


def _scan_folder(folder: Path, found: list[tuple[Path, ExchangeName]]) -> list[Path]:
    subfolders: list[Path] = []
    try:
        with os.scandir(folder) as entries:  # closed at once: the key must stay ejectable
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith((".", "$")) and (
                            entry.name.casefold() not in _SYSTEM_FOLDERS):
                        subfolders.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    name = exchange_name(entry.name)
                    if name is not None:
                        found.append((Path(entry.path), name))
    except OSError as exc:
        log.info(_("cannot list %s: %s"), folder, exc)
    return subfolders


@dataclass
class _Session:
    """One insertion of one volume: what was taken from it, what still waits to be complete."""

    volume: Volume
    batch: Batch
    seen: dict[str, Fingerprint] = field(default_factory=dict)
    waiting: dict[Path, float] = field(default_factory=dict)  # incomplete file → give-up time
    retry_at: float | None = None
    told: set[Path] = field(default_factory=set)  # foreign files already logged
    started: bool = False  # PollStarted sent, PollFinished owed


class RemovableSource(Source):
    """Imports the updates found on removable drives as they are plugged in."""

    def __init__(self, config: Config, paths: Paths, intake: Intake, bus: EventBus, *,
                 media_roots: Sequence[Path] | None = None,
                 monitor_factory: Callable[[], VolumeMonitor] | None = None,
                 settle_s: float = 1.0, incomplete_wait_s: float = 120.0) -> None:
        super().__init__()
        self.config = config
        self.paths = paths
        self.bus = bus
        self.handover = Handover(intake, bus)
        self.settle_s = settle_s
        self.incomplete_wait_s = incomplete_wait_s
        self._monitor_factory = monitor_factory or (lambda: platform_monitor(media_roots))
        self._monitor: VolumeMonitor | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._rescan = threading.Event()
        self._sessions: dict[tuple[Path, int], _Session] = {}
        self._lifecycle = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Tell whether the configuration asks for removable drives."""
        return self.config.removable

    def start(self) -> None:
        """Start watching for removable drives (the drives already there are scanned too)."""
        with self._lifecycle:
            if not self.enabled:
                log.info(_("removable drives: switched off in the configuration"))
                return
            if self._thread is not None:
                return
            try:
                self._monitor = self._monitor_factory()
            except OSError as exc:
                log.warning(_("removable drives cannot be watched: %s"), exc)
                self.bus.publish(SourceFailed("usb", "unavailable", str(exc)))
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="removable", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop and wait for the thread; a copy in progress is dropped, leaving nothing behind."""
        with self._lifecycle:
            self._stopping.set()
            thread, monitor = self._thread, self._monitor
            if monitor is not None:
                monitor.wake()
            if thread is not None:
                thread.join(timeout)
            self._thread = None

    def poll_now(self) -> None:
        """Look at the mounted drives again now (files copied onto a key since it came)."""
        self._rescan.set()
        monitor = self._monitor
        if monitor is not None:
            monitor.wake()

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        monitor = self._monitor
        assert monitor is not None
        try:
            while not self._stopping.is_set():
                try:
                    self._sync(monitor)
                except Exception:  # a bug must not end the watch for good
                    log.exception("removable drives: unexpected failure")
                if self._stopping.is_set():
                    break
                monitor.wait(self._next_timeout())
        finally:
            for session in self._sessions.values():
                self._finish(session)
            self._sessions.clear()
            monitor.close()
            self._monitor = None

    def _next_timeout(self) -> float | None:
        """Return how long to sleep: forever, unless a file on a key waits to be complete."""
        due = [s.retry_at for s in self._sessions.values() if s.retry_at is not None]
        return None if not due else max(0.0, min(due) - time.monotonic())

    def _sync(self, monitor: VolumeMonitor) -> None:
        current = {(v.mount_point, v.device): v for v in monitor.volumes()}
        for key in [k for k in self._sessions if k not in current]:
            session = self._sessions.pop(key)
            log.info(_("removable drive %s removed"), session.volume.name)
            self._finish(session)
        if self.paused:
            # A key plugged in meanwhile stays unknown: resume() rescans and takes it then.
            return
        rescan = self._rescan.is_set()
        self._rescan.clear()
        now = time.monotonic()
        for key, volume in current.items():
            if self._stopping.is_set():
                return
            known = self._sessions.get(key)
            if known is None:
                log.info(_("removable drive %s mounted at %s"), volume.name, volume.mount_point)
                session = self._sessions[key] = _Session(volume, Batch(volume.origin))
                self._scan(session)
            elif rescan or (known.retry_at is not None and known.retry_at <= now):
                self._scan(known)

    def _scan(self, session: _Session) -> None:
        volume = session.volume
        wanted = self._wanted(session, list_exchange_files(volume.mount_point))
        if wanted and not session.started:
            session.started = True
            self.bus.publish(PollStarted(volume.origin))
        still_there = self._presence(volume)
        for path, name in wanted:
            try:
                offer = self.handover.offer(path, name, volume.origin, session.batch,
                                            session.seen, still_there)
            except Interrupted:
                log.info(_("%s: %s interrupted (drive removed or service stopping); it will "
                           "be taken when the drive comes back"), volume.origin, path.name)
                if volume.is_present():  # a hiccup, not a removal: try again shortly
                    session.retry_at = time.monotonic() + self.settle_s
                return
            except StorageFailed as failure:
                # Logged once, by the log's subscriber to SourceFailed (daemon.logs).
                self.bus.publish(SourceFailed(volume.origin, failure.code, failure.message()))
                return
            self._note_offer(session, path, offer)
        self._plan_retry(session)

    def _wanted(self, session: _Session, files: list[tuple[Path, ExchangeName]],
                ) -> list[tuple[Path, ExchangeName]]:
        """Keep the updates of the configured dossiers, oldest first (sequence order)."""
        dossiers = {d.number for d in self.config.dossiers}
        wanted = []
        for path, name in files:
            if name.kind is Kind.UPDATE and name.dossier in dossiers:
                wanted.append((path, name))
            elif path not in session.told:
                session.told.add(path)
                what = (_("a dossier sent to the accountant") if name.kind is Kind.DOSSIER
                        else _("for dossier {number}, not kept on this computer").format(
                            number=name.dossier))
                log.info(_("%s: %s is %s; left on the drive"), session.volume.origin,
                         path.name, what)
        wanted.sort(key=lambda item: (item[1].dossier, item[1].saved_at, item[0].name))
        return wanted

    def _presence(self, volume: Volume) -> Callable[[], bool]:
        def still_there() -> bool:
            return not self._stopping.is_set() and volume.is_present()

        return still_there

    def _note_offer(self, session: _Session, path: Path, offer: Offer) -> None:
        if offer in (Offer.INCOMPLETE, Offer.CHANGED):
            if path not in session.waiting:
                log.info(_("%s: %s is not complete yet; waiting"), session.volume.origin,
                         path.name)
            session.waiting.setdefault(path, time.monotonic() + self.incomplete_wait_s)
        else:
            session.waiting.pop(path, None)

    def _plan_retry(self, session: _Session) -> None:
        now = time.monotonic()
        for path, give_up in list(session.waiting.items()):
            if give_up <= now:
                log.warning(_("%s: %s stayed incomplete; left on the drive"),
                            session.volume.origin, path.name)
                del session.waiting[path]
        if session.waiting:
            session.retry_at = now + self.settle_s
            return
        session.retry_at = None
        self._finish(session)

    def _finish(self, session: _Session) -> None:
        """Publish what a volume gave since its last batch (one event per key)."""
        batch = session.batch
        if batch:
            self.bus.publish(batch.event())  # the log says it (daemon.logs.log_event)
        if session.started:
            self.bus.publish(PollFinished(session.volume.origin, bool(batch),
                                          len(batch.queued)))
        session.batch = Batch(session.volume.origin)
        session.started = False
