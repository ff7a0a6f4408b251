"""The web source: polls the accountant's endpoint on a schedule, downloads new updates and
hands them to the intake. One thread, asleep between jobs; see docs/web-protocol.md."""

from __future__ import annotations

import errno
import hashlib
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import cast

import schedule

from daemon.bus import EventBus
from daemon.config import Config, Paths
from daemon.events import (
    BackOnline,
    BatchFinished,
    DownloadProgress,
    Offline,
    PollFinished,
    PollStarted,
    SourceFailed,
    UpdateFound,
    UpdateQueued,
    UpdateRejected,
)
from daemon.i18n import _
from daemon.intake import Intake
from daemon.queue import RESUMABLE_PREFIX, Outcome, Queue, State
from daemon.sources import Source
from daemon.web.client import WebClient, WebSettings, discard_part, part_note, utc_now
from daemon.web.credentials import CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import IndexEntry, VerifiedIndex, verify_index
from daemon.web.state import DossierState, StateStore
from daemon.zipstream import ExchangeDigest

log = logging.getLogger(__name__)

ORIGIN = "web"


@dataclass
class PollReport:
    """What one poll did, for the CLI and the tests."""

    changed: bool = False
    found: int = 0
    queued: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    duplicates: int = 0
    failures: list[WebError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Tell whether the poll met no failure and no refused file."""
        return not self.failures and not self.rejected


class WebPoller(Source):
    """Polls the endpoint for every configured dossier; `start`, `stop`, `poll_now`."""

    def __init__(self, config: Config, paths: Paths, queue: Queue, intake: Intake,
                 bus: EventBus, credentials: CredentialStore | None = None,
                 settings: WebSettings | None = None, client: WebClient | None = None,
                 rng: random.Random | None = None,
                 now: Callable[[], datetime] = utc_now) -> None:
        super().__init__()
        self.config = config
        self.paths = paths
        self.queue = queue
        self.intake = intake
        self.bus = bus
        self.settings = settings or WebSettings()
        self.client = client or WebClient(config.web.url, credentials or CredentialStore(),
                                          self.settings, config.web.ca_bundle)
        self.state = StateStore(paths.data / "web")
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._now = now
        self._scheduler = schedule.Scheduler()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._requested = threading.Event()
        self._poll_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failures_in_row = 0
        self._offline = False
        self._reported: dict[str, str] = {}
        self._states: dict[str, tuple[DossierState, VerifiedIndex]] = {}

    # ------------------------------------------------------------------ lifecycle

    @property
    def enabled(self) -> bool:
        """Tell whether an endpoint address is configured."""
        return bool(self.config.web.url)

    def start(self) -> None:
        """Start the polling thread: a first poll now, then every `poll_minutes`."""
        if not self.enabled:
            log.info(_("web source: no [sources.web] url configured, not polling"))
            return
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="web-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop polling; a download in progress stops at its next chunk, keeping its .part."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._scheduler.clear()
        self.client.close()

    def poll_now(self) -> None:
        """Ask the polling thread for a poll as soon as it is free."""
        self._requested.set()
        self._wake.set()

    @property
    def next_poll_in(self) -> float | None:
        """Return the seconds until the next scheduled poll (None when none)."""
        return self._scheduler.idle_seconds

    def _run(self) -> None:
        self._job()  # a first poll at start
        while not self._stop.is_set():
            idle = self._scheduler.idle_seconds
            # Sleep until the next job or a wake-up: no busy loop, no periodic tick.
            self._wake.wait(None if idle is None else max(0.0, idle))
            self._wake.clear()
            if self._stop.is_set():
                break
            if self._requested.is_set():
                self._requested.clear()
                self._job()
            else:
                self._scheduler.run_pending()

    def _job(self) -> None:
        if self.paused:
            # No request at all while paused; resume() asks for a poll at once.
            return
        try:
            report = self.poll_once()
        except Exception:  # a bug must not end polling for good
            log.exception("web poll failed")
            report = PollReport(failures=[WebError(Failure.UNEXPECTED, detail="internal")])
        if not self._stop.is_set():
            self._schedule_after(report)

    def _schedule_after(self, report: PollReport) -> None:
        self._scheduler.clear()
        if not report.failures:
            self._failures_in_row = 0
            interval = self.config.web.poll_minutes * 60
            # schedule's own jitter: each wait is drawn between interval and interval + 10 %.
            self._scheduler.every(interval).to(interval + max(1, interval // 10)).seconds.do(
                self._job)
            return
        self._failures_in_row += 1
        delay = self.backoff_delay(self._failures_in_row, report.failures)
        log.debug("web source: next try in %.1f s", delay)
        # schedule types its interval as int, but it only builds a timedelta from it:
        # sub-second back-off (in tests) works.
        self._scheduler.every(cast(int, delay)).seconds.do(self._job)

    def backoff_delay(self, failures_in_row: int, failures: Sequence[WebError]) -> float:
        """Return the wait before the next try: Retry-After if asked, else exponential."""
        asked = [f.retry_after for f in failures if f.retry_after is not None]
        if asked:
            return min(max(asked), self.settings.retry_after_cap)
        settings = self.settings
        base = min(settings.backoff_cap,
                   settings.backoff_base * 2.0 ** min(failures_in_row - 1, 30))
        spread = base * settings.jitter
        return max(0.0, min(settings.backoff_cap, base + self._rng.uniform(-spread, spread)))

    # ------------------------------------------------------------------ one poll

    def poll_once(self, dossiers: Sequence[str] | None = None) -> PollReport:
        """Look at the endpoint once for these dossiers (all configured ones by default)."""
        with self._poll_lock:
            report = PollReport()
            self.bus.publish(PollStarted(ORIGIN))
            if not self.enabled:
                self._failed(WebError(Failure.NOT_CONFIGURED), report)
            elif self.config.web.problem:
                # Nothing is sent to an address that would leak the password.
                self._failed(WebError(Failure.SETTING, detail=self.config.web.problem), report)
            else:
                numbers = [d.number for d in self.config.dossiers
                           if dossiers is None or d.number in dossiers]
                for number in numbers:
                    if self._poll_dossier(number, report) is Failure.OFFLINE:
                        break  # the endpoint is unreachable: the other dossiers would be too
            if report.queued or report.rejected or report.duplicates:
                self.bus.publish(BatchFinished(ORIGIN, tuple(report.queued),
                                               tuple(report.rejected), report.duplicates))
            self.bus.publish(PollFinished(ORIGIN, report.changed, report.found))
            return report

    def _poll_dossier(self, dossier: str, report: PollReport) -> Failure | None:
        try:
            self._check_dossier(dossier, report)
        except WebError as error:
            self._online(error.code is not Failure.OFFLINE, error.detail)
            self._failed(error, report)
            return error.code
        self._online(True)
        self._reported.pop(dossier, None)
        return None

    def _check_dossier(self, dossier: str, report: PollReport) -> None:
        verified = self._current_index(dossier, report)
        # The firm's signed receipts for what this installation sent: kept, said once.
        from daemon.web.receipts import ReceiptStore, note_receipts

        note_receipts(verified, ReceiptStore(self.paths.data / "receipts"), self.bus,
                      self.queue)
        wanted = self._wanted(dossier, verified.index.files)
        report.found += len(wanted)
        for entry in wanted:
            self._receive(dossier, entry, report)

    def _current_index(self, dossier: str, report: PollReport) -> VerifiedIndex:
        """Return the verified index, fetched conditionally: unchanged costs one 304."""
        state = self._state(dossier)
        fetch = self.client.fetch_index(dossier, state.etag if state.envelope else None)
        if fetch.not_modified:
            return self._still_valid(dossier, state)
        report.changed = True
        verified = verify_index(fetch.body, self.config.keyring(), dossier, self._now())
        signed_sha256 = hashlib.sha256(verified.signed).hexdigest()
        version = verified.index.version
        if version < state.version or (version == state.version
                                       and signed_sha256 != state.signed_sha256):
            raise WebError(Failure.INDEX_ROLLBACK, dossier=dossier,
                           detail=f"version {version} ≤ {state.version}")
        try:
            envelope = fetch.body.decode()
        except UnicodeDecodeError:
            raise WebError(Failure.INDEX_MALFORMED, dossier=dossier, detail="UTF-8") from None
        state = DossierState(version, signed_sha256, fetch.etag, envelope)
        try:
            self.state.save(dossier, state)
        except OSError as exc:
            raise _storage_error(exc, dossier) from None
        self._states[dossier] = (state, verified)
        return verified

    def _state(self, dossier: str) -> DossierState:
        cached = self._states.get(dossier)
        return cached[0] if cached else self.state.load(dossier)

    def _still_valid(self, dossier: str, state: DossierState) -> VerifiedIndex:
        """Return the cached index after a 304, checking its expiry again."""
        cached = self._states.get(dossier)
        if cached is None or cached[0] != state:
            # First poll since start: verify what was kept on disk (keys may have changed).
            verified = verify_index(state.envelope.encode(), self.config.keyring(), dossier,
                                    self._now())
            self._states[dossier] = (state, verified)
            return verified
        verified = cached[1]
        # Re-checked every time: an endpoint frozen on an old index expires here.
        if self._now() >= verified.index.expires_at:
            raise WebError(Failure.INDEX_EXPIRED, dossier=dossier,
                           detail=verified.index.expires_at.isoformat())
        return verified

    def _wanted(self, dossier: str, entries: Sequence[IndexEntry]) -> list[IndexEntry]:
        """Return the indexed files not yet received, oldest first."""
        last = self.queue.last_sequence(dossier)
        newer = [e for e in entries if last is None or e.sequence > last]
        if not newer:
            return []  # the usual case, without reading the queue's items
        known, refused = set(), set()
        for item in self.queue.items(list(State)):
            if item.state is State.REJECTED:
                refused.add(item.sha256)
            elif item.dossier == dossier:
                known.add((item.sequence, item.sha256))
        return [e for e in newer
                if (e.sequence, e.sha256) not in known
                # A file the intake already refused would only be refused again.
                and e.sha256 not in refused]

    def _receive(self, dossier: str, entry: IndexEntry, report: PollReport) -> None:
        limit = self.intake.limits.max_file_size
        if entry.size > limit:
            raise WebError(Failure.TOO_LARGE, dossier=dossier,
                           detail=f"{entry.name}: {entry.size} > {limit}")
        self.bus.publish(UpdateFound(ORIGIN, dossier, entry.name, entry.size))
        part = self.part_path(dossier, entry)
        digest = self._download(dossier, entry, part)
        part_note(part).unlink(missing_ok=True)
        try:
            result = self.intake.import_staged(part, entry.name, digest.hexdigest(),
                                               entry.size, ORIGIN, digest.members)
        except (OSError, sqlite3.Error) as exc:
            discard_part(part)
            raise _storage_error(exc, dossier) from None
        if result.outcome is Outcome.QUEUED and result.item is not None:
            report.queued.append(entry.name)
            log.debug("web: %s queued (item %s)", entry.name, result.item.id)
            self.bus.publish(UpdateQueued(result.item.id, entry.name, dossier, ORIGIN,
                                          result.item.etalon))
        elif result.outcome is Outcome.DUPLICATE:
            report.duplicates += 1
        elif result.rejection is not None:
            report.rejected.append(entry.name)
            reasons = result.rejection.as_dict()
            log.debug("web: %s refused: %s", entry.name, result.rejection.reason())
            self.bus.publish(UpdateRejected(entry.name, ORIGIN, reasons["code"],
                                            reasons["reason_fr"], reasons["reason_en"]))

    def part_path(self, dossier: str, entry: IndexEntry) -> Path:
        """Return where a download of this entry is kept while incomplete."""
        return self.paths.staging / f"{RESUMABLE_PREFIX}web-{dossier}-{entry.name}.part"

    def _download(self, dossier: str, entry: IndexEntry, part: Path) -> ExchangeDigest:
        progress = self._progress_reporter(entry)
        attempts = max(1, self.settings.resume_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return self.client.download(dossier, entry, part, progress, self._stop)
            except WebError as error:
                # A cut connection is resumed at once while it keeps making progress.
                retry = (error.code is Failure.INTERRUPTED and attempt < attempts
                         and part.exists() and not self._stop.is_set())
                if not retry:
                    raise
                log.info(_("web: %s interrupted (%s), resuming"), entry.name, error.detail)
        raise AssertionError("unreachable")  # pragma: no cover

    def _progress_reporter(self, entry: IndexEntry) -> Callable[[int], None]:
        last = 0.0
        interval = self.settings.progress_interval

        def report(received: int) -> None:
            nonlocal last
            now = time.monotonic()
            if received >= entry.size or now - last >= interval:
                last = now
                self.bus.publish(DownloadProgress(ORIGIN, entry.name, received, entry.size))

        return report

    # ------------------------------------------------------------------ reporting

    def _online(self, reached: bool, reason: str = "") -> None:
        """Track the offline state: one Offline when it starts, one BackOnline when it ends."""
        if reached and self._offline:
            self._offline = False
            log.debug("web: the endpoint is reachable again")
            self.bus.publish(BackOnline(ORIGIN))
        elif not reached and not self._offline:
            self._offline = True
            log.debug("web: the endpoint cannot be reached (%s)", reason)
            self.bus.publish(Offline(ORIGIN, reason))

    def _failed(self, error: WebError, report: PollReport) -> None:
        report.failures.append(error)
        if self._stop.is_set() or error.code is Failure.OFFLINE:
            return  # stopping is not a failure; being offline is a state, reported once
        # The same failure poll after poll is said once, until it changes or clears.
        if self._reported.get(error.dossier) == error.code:
            log.debug("web: still failing: %s", error)
            return
        self._reported[error.dossier] = error.code
        log.debug("web: %s", error.message())
        self.bus.publish(SourceFailed(ORIGIN, str(error.code), error.message()))


def _storage_error(exc: Exception, dossier: str) -> WebError:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WebError(Failure.DISK_FULL, dossier=dossier, detail=exc.strerror or exc)
    if isinstance(exc, sqlite3.Error) and "full" in str(exc):
        return WebError(Failure.DISK_FULL, dossier=dossier, detail=exc)
    return WebError(Failure.DISK_ERROR, dossier=dossier, detail=exc)
