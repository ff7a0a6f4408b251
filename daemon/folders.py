"""Watched folders (by default the Downloads folder): an update saved there from an e-mail is
taken once it is complete, through the same intake as every other file.

watchdog reports writes; each one pushes the file's check a short settle delay further, and
the check takes the file only when it ends with a ZIP end record and did not change while
it was copied. What was taken is remembered by (path, size, mtime, tail) in a small file,
so a file already imported is not even read again, after a restart either.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from daemon.bus import EventBus
from daemon.config import Config, Paths
from daemon.events import SourceFailed
from daemon.fsutil import WRITE_EVENTS, atomic_write_bytes
from daemon.i18n import _
from daemon.intake import Batch, Intake
from daemon.naming import ExchangeName
from daemon.removable.handover import (
    Fingerprint,
    Handover,
    Interrupted,
    Offer,
    StorageFailed,
    exchange_name,
    is_update_for,
)
from daemon.sources import Source

log = logging.getLogger(__name__)

SEEN_FILE = "watched-folders.json"
# watchdog's threads otherwise wake up every second to check whether to stop; stopping
# is signalled directly, so they may sleep.
OBSERVER_TIMEOUT_S = 3600.0


class _Forward(FileSystemEventHandler):
    def __init__(self, watcher: FolderWatcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in WRITE_EVENTS or event.is_directory:
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self.watcher.file_touched(Path(os.fsdecode(raw)))


class FolderWatcher(Source):
    """Watches the configured folders and imports the updates saved into them."""

    def __init__(self, config: Config, paths: Paths, intake: Intake, bus: EventBus, *,
                 folders: Sequence[Path] | None = None, settle_s: float = 1.0) -> None:
        super().__init__()
        self.config = config
        self.paths = paths
        self.bus = bus
        self.handover = Handover(intake, bus)
        self.folders = tuple(Path(os.path.abspath(f)) for f in (
            config.watched_folders if folders is None else folders))
        self.settle_s = settle_s
        self.seen_file = paths.data / SEEN_FILE
        self._seen: dict[str, Fingerprint] = {}
        self._due: dict[Path, float] = {}  # file → when to look at it
        self._condition = threading.Condition()
        self._stopping = False
        self._rescan = False
        self._observer: BaseObserver | None = None
        self._watched: set[Path] = set()
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    def start(self) -> None:
        """Watch the folders and take what they already hold."""
        with self._lifecycle:
            if not self.folders:
                log.info(_("watched folders: none configured"))
                return
            if self._thread is not None:
                return
            self._stopping = False
            self._seen = self._load_seen()
            self._observer = Observer(timeout=OBSERVER_TIMEOUT_S)
            self._observer.start()  # before scheduling: a folder that fails fails alone
            self._watch_folders()
            self._rescan = True  # the files saved while the service was not running
            self._thread = threading.Thread(target=self._run, name="folders", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching and wait for the thread; a copy in progress is dropped cleanly."""
        with self._lifecycle:
            with self._condition:
                self._stopping = True
                self._condition.notify_all()
            observer, self._observer = self._observer, None
            if observer is not None and observer.is_alive():
                observer.stop()
                observer.join(timeout)
            if self._thread is not None:
                self._thread.join(timeout)
                self._thread = None
            self._watched.clear()

    def poll_now(self) -> None:
        """Look at every folder again now (also retries folders that did not exist)."""
        with self._condition:
            self._rescan = True
            self._condition.notify_all()

    def file_touched(self, path: Path) -> None:
        """Called by watchdog for a write: look at the file once writing has settled."""
        if path.parent not in self.folders or exchange_name(path.name) is None:
            return
        with self._condition:
            self._due[path] = time.monotonic() + self.settle_s
            self._condition.notify_all()

    # ------------------------------------------------------------------ the thread

    def _watch_folders(self) -> None:
        observer = self._observer
        if observer is None:
            return
        for folder in self.folders:
            if folder in self._watched:
                continue
            if not folder.is_dir():
                log.info(_("watched folder %s does not exist (yet)"), folder)
                continue
            try:
                observer.schedule(_Forward(self), str(folder), recursive=False)
            except OSError as exc:
                log.warning(_("watched folder %s cannot be watched: %s"), folder, exc)
                continue
            self._watched.add(folder)

    def _run(self) -> None:
        while True:
            with self._condition:
                ready = self._wait_for_work()
                if ready is None:
                    return
                rescan, self._rescan = self._rescan, False
            if rescan:
                self._watch_folders()
                ready |= self._scan_folders()
            try:
                self._take(sorted(ready, key=_sequence_order))
            except Exception:  # a bug must not end the watch for good
                log.exception("watched folders: unexpected failure")

    def _wait_for_work(self) -> set[Path] | None:
        """Sleep (lock held) until files are due or a rescan is asked; None when stopping."""
        while not self._stopping:
            if self.paused:
                # Files saved meanwhile stay due; resume() rescans and takes them then.
                self._condition.wait()
                continue
            now = time.monotonic()
            ready = {path for path, due in self._due.items() if due <= now}
            if ready or self._rescan:
                for path in ready:
                    del self._due[path]
                return ready
            # No timer at all while nothing is pending: the idle watcher never wakes up.
            timeout = min(self._due.values()) - now if self._due else None
            self._condition.wait(timeout)
        return None

    def _scan_folders(self) -> set[Path]:
        found: set[Path] = set()
        for folder in self.folders:
            try:
                with os.scandir(folder) as entries:
                    names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
            except OSError as exc:
                log.info(_("watched folder %s cannot be read: %s"), folder, exc)
                continue
            found.update(folder / n for n in names if exchange_name(n) is not None)
            self._forget_missing(folder, names)
        return found

    def _forget_missing(self, folder: Path, names: list[str]) -> None:
        present = {str(folder / n) for n in names}
        for key in [k for k in self._seen if Path(k).parent == folder and k not in present]:
            del self._seen[key]

    def _take(self, files: list[Path]) -> None:
        dossiers = {d.number for d in self.config.dossiers}
        batches: dict[Path, Batch] = {}
        seen_before = dict(self._seen)
        try:
            for path in files:
                name = exchange_name(path.name)
                if name is None or self._stopping:
                    continue
                if not is_update_for(name, dossiers):
                    log.debug("%s is not an update of a dossier kept here; left alone", path)
                    continue
                batch = batches.setdefault(path.parent, Batch(f"folder:{path.parent}"))
                offer = self._offer(path, name, batch)
                if offer is Offer.CHANGED:
                    with self._condition:
                        self._due[path] = time.monotonic() + self.settle_s
                elif offer is Offer.INCOMPLETE:
                    # Looked at again once it has been quiet: complete then, or refused.
                    with self._condition:
                        self._due.setdefault(path, time.monotonic() + self.handover.quiet_s)
        finally:
            for batch in batches.values():
                if batch:
                    self.bus.publish(batch.event())  # the log says it (daemon.logs)
            if self._seen != seen_before:
                self._save_seen()

    def _offer(self, path: Path, name: ExchangeName, batch: Batch) -> Offer | None:
        try:
            return self.handover.offer(path, name, batch.origin, batch, self._seen,
                                       lambda: not self._stopping)
        except Interrupted:
            return None  # stopping: the file is looked at again at the next start
        except StorageFailed as failure:
            # Logged once, by the log's subscriber to SourceFailed (daemon.logs).
            self.bus.publish(SourceFailed(batch.origin, failure.code, failure.message()))
            return None

    # ------------------------------------------------------------------ memory of taken files

    def _load_seen(self) -> dict[str, Fingerprint]:
        try:
            data = json.loads(self.seen_file.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning(_("%s cannot be read (%s): every file is looked at again"), self.seen_file,
                        exc)
            return {}
        seen = {}
        if isinstance(data, dict):
            for key, value in data.items():
                fingerprint = Fingerprint.from_json(value)
                if fingerprint is not None:
                    seen[key] = fingerprint
        return seen

    def _save_seen(self) -> None:
        data = {key: fingerprint.to_json() for key, fingerprint in sorted(self._seen.items())}
        try:
            atomic_write_bytes(self.seen_file, json.dumps(data, indent=0).encode())
        except OSError as exc:
            log.warning(_("%s cannot be written: %s"), self.seen_file, exc)


def _sequence_order(path: Path) -> tuple[str, str, str]:
    """Sort files so that a dossier's updates are offered oldest first."""
    name = exchange_name(path.name)
    if name is None:
        return ("", "", path.name)
    return (name.dossier, name.saved_at.isoformat(), path.name)
