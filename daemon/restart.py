"""Restarting the accounting application for updates that need it (*dossiers étalons*).

Ask the application to close gracefully, wait, hand the held updates to its inbox, start
it again with the configured command, and report how it went. Nothing is ever killed
unless the user explicitly confirmed it (`AppRestarter.force_close`). The platform
quirks of "close gracefully" live here and nowhere else: SIGTERM on Linux and macOS, a
window close request (WM_CLOSE, sent by `taskkill` without `/F`) on Windows.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.app import AppWatcher
from daemon.config import AppConfig
from daemon.delivery import Delivery, InboxNotConfigured
from daemon.errors import ConfigError
from daemon.i18n import _, ngettext
from daemon.queue import Item, Queue, State

log = logging.getLogger(__name__)

# A reminder more often than hourly would nag: "Plus tard" means at least an hour.
MIN_REMIND_MINUTES = 60
# A freshly started application that dies within this time did not really start.
START_CHECK_S = 1.0
# After a confirmed kill, how long the process gets to disappear.
KILL_WAIT_S = 10.0


@dataclass(frozen=True)
class RestartSettings:
    """The `[restart]` table: reminder delay and how long a graceful close may take."""

    remind_after_minutes: int = MIN_REMIND_MINUTES
    close_timeout_seconds: int = 60

    @classmethod
    def load(cls, path: Path) -> RestartSettings:
        """Read `[restart]` from the config file (defaults when absent); raise ConfigError."""
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            return cls()
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(path, None, str(exc)) from None
        table = data.get("restart", {})
        if not isinstance(table, dict):
            raise ConfigError(path, "restart", _("expected a table [{key}]").format(
                key="restart"))
        remind = _whole_number(path, table, "remind_after_minutes", MIN_REMIND_MINUTES)
        if not MIN_REMIND_MINUTES <= remind <= 7 * 24 * 60:
            raise ConfigError(path, "restart.remind_after_minutes",
                              _("expected minutes between 60 and 10080"))
        timeout = _whole_number(path, table, "close_timeout_seconds", 60)
        if not 1 <= timeout <= 3600:
            raise ConfigError(path, "restart.close_timeout_seconds",
                              _("expected seconds between 1 and 3600"))
        return cls(remind, timeout)


def _whole_number(path: Path, table: dict[str, Any], name: str, default: int) -> int:
    value = table.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(path, f"restart.{name}", _("expected a whole number"))
    return value


def items_for_restart(pending: Sequence[Item]) -> list[Item]:
    """Return the waiting items a restart hands over: every item of a dossier that holds
    an update needing a restart, in integration order (later ones wait behind it)."""
    dossiers = {item.dossier for item in pending if item.etalon or item.restart_required}
    return [item for item in pending if item.dossier in dossiers]


def mark_restart_required(queue: Queue, watcher: AppWatcher) -> tuple[int, ...]:
    """Flag waiting étalon updates while the application runs; return every flagged id.

    Flagged items are handed over as soon as the application closes, whoever closes it
    (the service's restart watch does it when the user closes the application by hand).
    The process list is only read when an unflagged étalon update waits.
    """
    pending = queue.pending()
    unflagged = [item for item in pending if item.etalon and not item.restart_required]
    if unflagged and watcher.is_running():
        for item in unflagged:
            queue.set_restart_required(item.id, True)
        pending = queue.pending()
    return tuple(item.id for item in pending if item.restart_required)


class RestartOutcome(enum.StrEnum):
    """How a restart went."""

    RESTARTED = "restarted"  # closed, updates handed over, started again
    CLOSED = "closed"  # closed and updates handed over; no command to start it again
    STILL_RUNNING = "still-running"  # did not close in time: only the user may force it
    START_FAILED = "start-failed"  # updates handed over, but it could not be started
    NO_INBOX = "no-inbox"  # closed, but the inbox folder is not configured


@dataclass(frozen=True)
class RestartReport:
    """What a restart did, for the message the user reads."""

    outcome: RestartOutcome
    delivered: tuple[Item, ...] = ()
    waiting: tuple[Item, ...] = ()
    pids: tuple[int, ...] = ()
    detail: str = ""
    process: subprocess.Popen[bytes] | None = field(default=None, compare=False, repr=False)


def ask_to_close(pid: int) -> None:
    """Ask one process to close the way a user would (it may ask to save, or refuse)."""
    if sys.platform == "win32":
        # taskkill without /F posts WM_CLOSE to the process's windows: a graceful request.
        subprocess.run(["taskkill", "/PID", str(pid)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        os.kill(pid, signal.SIGTERM)


def wait_for_exit(pids: Iterable[int], timeout: float) -> tuple[int, ...]:
    """Wait until these processes end or `timeout` passes; return those still running."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    deadline = time.monotonic() + timeout
    while True:
        # A process that ended but whose parent has not collected it yet (a zombie) is gone
        # for us; psutil alone would wait for its parent.
        procs = [proc for proc in procs if _is_alive(proc)]
        left = deadline - time.monotonic()
        if not procs or left <= 0:
            return tuple(proc.pid for proc in procs)
        psutil.wait_procs(procs, timeout=min(0.2, left))


def _is_alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def launch(command: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start the application detached from passeur, so that it outlives it."""
    options: dict[str, Any] = {}
    if sys.platform == "win32":
        options["creationflags"] = (subprocess.CREATE_NEW_PROCESS_GROUP
                                    | subprocess.DETACHED_PROCESS)
    else:
        options["start_new_session"] = True
    process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               close_fds=True, **options)
    # Reap it whenever it ends, so that a closed application leaves no zombie behind.
    threading.Thread(target=process.wait, name="app-reaper", daemon=True).start()
    return process


class AppRestarter:
    """Closes the application gracefully, hands the held updates over, starts it again."""

    def __init__(self, delivery: Delivery, app: AppConfig, settings: RestartSettings) -> None:
        self.delivery = delivery
        self.queue = delivery.queue
        self.app = app
        self.settings = settings
        self.watcher = delivery.watcher

    def held_items(self) -> list[Item]:
        """Return the waiting items a restart would hand over."""
        return items_for_restart(self.queue.pending())

    def restart(self) -> RestartReport:
        """Ask the application to close, wait for it, then hand over and start it again.

        When it does not close in time, nothing is forced: the report says STILL_RUNNING
        and only `force_close`, after the user confirmed, goes further.
        """
        held = self.held_items()
        pids = self.watcher.running_pids()
        for pid in pids:
            try:
                ask_to_close(pid)
            except ProcessLookupError:
                continue
        remaining = wait_for_exit(pids, self.settings.close_timeout_seconds)
        if remaining:
            log.info("%s did not close within %d s (pids %s)", self.app.name,
                     self.settings.close_timeout_seconds, remaining)
            return RestartReport(RestartOutcome.STILL_RUNNING,
                                 waiting=tuple(held), pids=remaining)
        return self._hand_over_and_start(held)

    def force_close(self, pids: Iterable[int]) -> RestartReport:
        """Kill the application (only after the user explicitly confirmed), then go on."""
        import psutil

        held = self.held_items()
        pids = tuple(pids)
        for pid in pids:
            try:
                psutil.Process(pid).kill()
            except psutil.NoSuchProcess:
                continue
        remaining = wait_for_exit(pids, KILL_WAIT_S)
        if remaining:
            return RestartReport(RestartOutcome.STILL_RUNNING,
                                 waiting=tuple(held), pids=remaining)
        return self._hand_over_and_start(held)

    def _hand_over_and_start(self, held: list[Item]) -> RestartReport:
        try:
            if held:
                self.delivery.process([item.id for item in held])
        except InboxNotConfigured:
            return RestartReport(RestartOutcome.NO_INBOX, waiting=tuple(held))
        # The service's restart watch may have handed some over first: ask the queue.
        delivered, waiting = self._split(held)
        if not self.app.command:
            return RestartReport(RestartOutcome.CLOSED, delivered, waiting)
        try:
            process = launch(self.app.command)
        except OSError as exc:
            return RestartReport(RestartOutcome.START_FAILED, delivered, waiting,
                                 detail=exc.strerror or str(exc))
        try:
            code = process.wait(START_CHECK_S)
        except subprocess.TimeoutExpired:
            return RestartReport(RestartOutcome.RESTARTED, delivered, waiting,
                                 pids=(process.pid,), process=process)
        return RestartReport(RestartOutcome.START_FAILED, delivered, waiting,
                             detail=_("it ended at once (code {code})").format(code=code))

    def _split(self, held: list[Item]) -> tuple[tuple[Item, ...], tuple[Item, ...]]:
        delivered: list[Item] = []
        waiting: list[Item] = []
        for item in held:
            now = self.queue.get(item.id)
            (delivered if now is not None and now.state is State.DELIVERED
             else waiting).append(item)
        return tuple(delivered), tuple(waiting)


def describe_report(report: RestartReport, app_name: str) -> str:
    """Return what a restart did, in words."""
    count = len(report.delivered)
    handed = ngettext("{n} update handed to {app}", "{n} updates handed to {app}",
                      count).format(n=count, app=app_name)
    match report.outcome:
        case RestartOutcome.RESTARTED:
            return _("{app} was restarted; {handed}.").format(app=app_name, handed=handed)
        case RestartOutcome.CLOSED:
            return _("{app} was closed; {handed}. Start it again to integrate them.").format(
                app=app_name, handed=handed)
        case RestartOutcome.START_FAILED:
            return _("{handed}, but {app} could not be started again ({reason}): start it "
                     "yourself.").format(handed=handed, app=app_name, reason=report.detail)
        case RestartOutcome.NO_INBOX:
            return _("{app} was closed, but its inbox folder is not configured ([app] inbox): "
                     "the updates still wait.").format(app=app_name)
        case RestartOutcome.STILL_RUNNING:
            return _("{app} did not close: the updates still wait.").format(app=app_name)
    return ""  # pragma: no cover - every outcome is handled above


def seconds_until_reminder(settings: RestartSettings) -> float:
    """Return the delay before "Plus tard" asks again (never less than an hour)."""
    return max(MIN_REMIND_MINUTES, settings.remind_after_minutes) * 60.0
