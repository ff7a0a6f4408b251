"""The always-on service: starts the sources, keeps the queue tidy, stops cleanly on a signal."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Protocol

from daemon import events as ev
from daemon.context import Context
from daemon.delivery import Result
from daemon.i18n import _

log = logging.getLogger(__name__)

# While an update waits for the application to close, look for it this often; otherwise
# the service sleeps until its daily maintenance.
RESTART_WATCH_S = 2.0
MAINTENANCE_S = 24 * 3600.0


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
    """Runs the sources and the restart watch until asked to stop."""

    def __init__(self, ctx: Context, sources: list[Source]) -> None:
        self.ctx = ctx
        self.sources = sources
        self.stopping = threading.Event()
        self.wake = threading.Event()

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
        for source in self.sources:
            source.start()
        bus.publish(ev.ServiceStarted())
        bus.publish(ev.QueueChanged(self.ctx.queue.count_pending()))
        try:
            while not self.stopping.is_set():
                self.wake.wait(self._next_wait())
                self.wake.clear()
                if not self.stopping.is_set():
                    self.hand_over_after_restart()
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
        waiting = self.ctx.queue.pending()
        return RESTART_WATCH_S if any(i.restart_required for i in waiting) else MAINTENANCE_S

    def hand_over_after_restart(self) -> None:
        """Hand over the updates held for a restart once the application is closed.

        The later updates of the same dossiers waited behind them: they go too, in order.
        """
        pending = self.ctx.queue.pending()
        dossiers = {item.dossier for item in pending if item.restart_required}
        held = [item.id for item in pending if item.dossier in dossiers]
        if not held or self.ctx.delivery.watcher.is_running():
            return
        for outcome in self.ctx.delivery.process(held):
            if outcome.result is Result.DELIVERED:
                self.ctx.bus.publish(ev.Delivered(outcome.item.id, outcome.item.name))
        self.ctx.bus.publish(ev.QueueChanged(self.ctx.queue.count_pending()))

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
