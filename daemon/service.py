"""The always-on service: starts the sources, keeps the queue tidy, stops cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from daemon import events as ev
from daemon.context import Context
from daemon.delivery import InboxNotConfigured, Result
from daemon.i18n import _
from daemon.restart import mark_restart_required

log = logging.getLogger(__name__)

# While an update waits for the application to close, look for it this often; otherwise
# the service sleeps until its daily maintenance.
RESTART_WATCH_S = 2.0
MAINTENANCE_S = 24 * 3600.0
# After these events the service reads the queue again: an update may now wait for a
# restart, or no longer (its own RestartRequired does not wake it, so it cannot loop).
QUEUE_EVENTS: tuple[type[ev.Event], ...] = (ev.UpdateQueued, ev.BatchFinished, ev.Delivered,
                                            ev.QueueChanged)


class Source(Protocol):
    """A long-running source of updates (web endpoint, removable drives, folders)."""

    def start(self) -> None:
        """Start the source's own thread."""

    def stop(self) -> None:
        """Stop the thread and wait for it; nothing is left half-written."""

    def poll_now(self) -> None:
        """Look for updates as soon as possible (the tray's *Recevoir*)."""


class AlreadyRunning(Exception):
    """Another passeur service already uses this home."""


class Service:
    """Runs the sources and the restart watch until asked to stop.

    The service decides which waiting updates need a restart of the application (an
    étalon update while it runs) and publishes `RestartRequired` each time that set
    changes, so that the log and every front end follow the same decision.
    """

    def __init__(self, ctx: Context, sources: list[Source]) -> None:
        self.ctx = ctx
        self.sources = sources
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.held: tuple[int, ...] = ()  # the ids last announced by RestartRequired
        self._inbox_missing_said = False
        self._held_lock = threading.Lock()  # the service's loop and a front end may both ask

    def run(self) -> None:
        """Run until `stop()` is called (from a signal handler or another thread)."""
        from filelock import FileLock, Timeout

        lock = FileLock(self.ctx.paths.data / "service.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise AlreadyRunning from None
        try:
            self._serve()
        finally:
            lock.release()

    def _serve(self) -> None:
        bus = self.ctx.bus
        self._maintenance()
        bus.subscribe("service", lambda event: self.wake.set(), *QUEUE_EVENTS)
        for source in self.sources:
            source.start()
        bus.publish(ev.ServiceStarted())
        bus.publish(ev.QueueChanged(self.ctx.queue.count_pending()))
        try:
            while not self.stopping.is_set():
                self.follow_restart()
                self.wake.wait(self._next_wait())
                self.wake.clear()
        finally:
            bus.publish(ev.ServiceStopping())
            for source in reversed(self.sources):
                source.stop()
            bus.close()

    def _maintenance(self) -> None:
        removed = self.ctx.queue.recover()
        if removed:
            log.info("removed %d leftover file(s) of an interrupted run", len(removed))
        self.ctx.delivery.purge_trash()

    def _next_wait(self) -> float:
        return RESTART_WATCH_S if self.held else MAINTENANCE_S

    def follow_restart(self) -> None:
        """Flag what waits for a restart, hand it over once the application is closed, and
        announce every change of that set (at start, on arrivals, after deliveries)."""
        try:
            self.announce_held()
            if self.held and self.hand_over_after_restart():
                self.announce_held()
        except (sqlite3.Error, OSError) as exc:
            # A busy or failing disk: the next wake-up tries again.
            log.warning("cannot read the queue: %s", exc)

    def announce_held(self) -> tuple[int, ...]:
        """Flag waiting étalon updates while the application runs; publish RestartRequired
        when the set of held updates changed (empty: nothing waits for a restart any more);
        return the held ids. A front end may call it to have the decision at once."""
        with self._held_lock:
            held = mark_restart_required(self.ctx.queue, self.ctx.delivery.watcher)
            if held != self.held:
                self.held = held
                self.ctx.bus.publish(ev.RestartRequired(held, self.ctx.config.app.name))
                # The loop watches for the application's closing only while something is
                # held: let it know when a front end's call changed that.
                self.wake.set()
        return held

    def hand_over_after_restart(self) -> bool:
        """Hand over the updates held for a restart once the application is closed; tell
        whether anything was handed over.

        The later updates of the same dossiers waited behind them: they go too, in order.
        """
        pending = self.ctx.queue.pending()
        dossiers = {item.dossier for item in pending if item.restart_required}
        held = [item.id for item in pending if item.dossier in dossiers]
        if not held or self.ctx.delivery.watcher.is_running():
            return False
        try:
            outcomes = self.ctx.delivery.process(held)
        except InboxNotConfigured:
            # Said once: the restart watch would otherwise repeat it every few seconds.
            if not self._inbox_missing_said:
                self._inbox_missing_said = True
                log.warning(_("The application's inbox folder is not configured ([app] inbox "
                              "in {path})").format(path=self.ctx.config_path))
            return False
        delivered = False
        for outcome in outcomes:
            if outcome.result is Result.DELIVERED:
                delivered = True
                self.ctx.bus.publish(ev.Delivered(outcome.item.id, outcome.item.name))
        self.ctx.bus.publish(ev.QueueChanged(self.ctx.queue.count_pending()))
        return delivered

    def stop(self) -> None:
        """Ask the service to stop; safe from signal handlers and other threads.

        Only flags are set here: the run loop stops the sources, so that a signal handler
        never waits for a download to reach its next chunk.
        """
        self.stopping.set()
        self.wake.set()


def install_signal_handlers(stop: Callable[[], None]) -> None:
    """Stop cleanly on SIGTERM and SIGINT (and Ctrl+Break on Windows)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info(_("Stop requested (signal {n})").format(n=signum))
        stop()

    for name in ("SIGTERM", "SIGINT", "SIGBREAK", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, handler)


def build_service(ctx: Context) -> Service:
    """Compose the service from the context: one place decides which sources run."""
    from daemon.logs import log_event

    ctx.bus.subscribe("log", log_event)
    return Service(ctx, ctx.build_sources())
