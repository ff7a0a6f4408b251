"""The always-on service: starts the sources, keeps the queue tidy, stops cleanly on a signal."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from daemon import events as ev
from daemon.context import Context
from daemon.core import Core
from daemon.errors import ConfigError
from daemon.i18n import _
from daemon.sources import Source

if TYPE_CHECKING:
    from daemon.clock import ClockWatch
    from daemon.config import Config
    from daemon.control.server import ControlServer
    from daemon.setup.watch import ConfigWatch

log = logging.getLogger(__name__)

# While an update waits for the application to close, look for it this often.
RESTART_WATCH_S = 2.0
# The service looks at the clocks this often to notice a sleep or a clock change (the
# only periodic wake-up of an idle service).
CLOCK_LOOK_S = 60.0
# After these events the service reads the queue again: an update may now wait for a
# restart, or no longer (its own RestartRequired does not wake it, so it cannot loop).
QUEUE_EVENTS: tuple[type[ev.Event], ...] = (ev.UpdateQueued, ev.BatchFinished, ev.Delivered,
                                            ev.QueueChanged)


class AlreadyRunning(Exception):
    """Another passeur service already uses this home."""


class Service:
    """Runs the sources, the restart watch and the control channel until asked to stop.

    What the user can do goes through `core` (daemon.core.Core); the service only keeps
    time: it follows the application's closing while updates wait for a restart, lifts a
    timed pause when it ends, and looks for updates once after a sleep, a clock change or
    the network's return.
    """

    def __init__(self, ctx: Context, core: Core, clocks: ClockWatch | None = None,
                 source_factory: Callable[[Context], list[Source]] | None = None) -> None:
        self.ctx = ctx
        self._clocks = clocks
        self.core = core
        # Builds the sources again when the config changes; None: the sources were given
        # (tests, the demo) and stay as they are.
        self.source_factory = source_factory
        self._built = list(core.sources) if source_factory is not None else []
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.control: ControlServer | None = None
        self._config_watch: ConfigWatch | None = None
        self._config_refused: str | None = None  # the last refusal said, said only once
        # What the sources were built from: a front end may have read the file into the
        # context already, which must not hide the change from the service.
        self._applied: Config | None = None
        core.on_timers_changed = self.wake.set

    @property
    def sources(self) -> list[Source]:
        """Return the running sources (a new list after a change of the config)."""
        return self.core.sources

    def run(self) -> None:
        """Run until `stop()` is called (from a signal handler or another thread).

        Raises AlreadyRunning when another service uses this home.
        """
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
        from daemon.clock import ClockWatch

        bus = self.ctx.bus
        self._maintenance()
        self.core.serve()
        bus.subscribe("service", lambda event: self.wake.set(), *QUEUE_EVENTS)
        paused = self.core.pause_state().paused  # a pause of an earlier run goes on
        for source in self.sources:
            if paused:
                source.pause()
            source.start()
        self.control = self._open_control_channel()
        self._watch_config()
        bus.publish(ev.ServiceStarted())
        bus.publish(ev.QueueChanged(self.ctx.queue.count_pending()))
        self._check_start_at_login()
        clocks = self._clocks or ClockWatch()
        try:
            woken = True  # the first pass reads the queue
            while not self.stopping.is_set():
                # The queue is read after an event or while the application's closing is
                # watched, never for the minute's look at the clocks alone.
                if self._config_watch is not None and self._config_watch.changed():
                    self.apply_config()
                if woken or self.core.held:
                    self.follow_restart()
                self.core.pause_state()  # lifts a timed pause that is over
                self._after_clock_events(clocks.look())
                woken = self.wake.wait(self._next_wait())
                self.wake.clear()
        finally:
            bus.publish(ev.ServiceStopping())
            if self._config_watch is not None:
                self._config_watch.stop()
            if self.control is not None:
                self.control.close()
            for source in reversed(self.sources):
                source.stop()
            bus.close()

    def _watch_config(self) -> None:
        from daemon.setup.watch import ConfigWatch

        self._applied = self.ctx.config
        for note in self._applied.notes:
            log.warning("%s", note)
        self._config_watch = ConfigWatch(self.ctx.config_path, self.wake.set)
        self._config_watch.start()
        # The file may have changed between its first reading and the watch's start (a
        # `passeur dossier add` right after `passeur run`): no event will say so.
        self.apply_config()

    def apply_config(self) -> bool:
        """Read the changed config file and run with it: the sources it asks for are built
        again. A file that does not load leaves the last good configuration running, and
        is reported once (log and notification) with the key that is wrong. Return whether
        the new configuration was taken."""
        from daemon.config import load_config

        try:
            config = load_config(self.ctx.config_path)
        except ConfigError as exc:
            message = exc.message()
            if message != self._config_refused:
                self._config_refused = message
                log.warning(_("The settings file was changed but cannot be used; passeur "
                              "goes on with the previous settings: {reason}").format(
                                  reason=message))
                self.ctx.bus.publish(ev.SourceFailed("config", "config-invalid", message))
            return False
        refused, self._config_refused = self._config_refused, None
        if config == (self._applied or self.ctx.config):
            if refused is not None:
                self._announce_config(config)  # the bad edit was undone: its refusal ends
            return False
        for note in config.notes:
            log.warning("%s", note)
        # The very config checked above: a second reading could find the next edit.
        self._applied = self.ctx.reload_config(config)
        if self.source_factory is not None:
            self._replace_sources(self.source_factory(self.ctx))
        log.info(_("The settings were read again and apply now"))
        self._announce_config(config)
        self.wake.set()
        return True

    def _announce_config(self, config: Config) -> None:
        # Once, after the sources were rebuilt: front ends follow the new names and
        # dossiers (the tray's menu) without reading the file themselves.
        self.ctx.bus.publish(ev.ConfigApplied(
            configured=config.can_receive,
            app_name=config.app.name,
            dossiers=tuple((d.number, d.name) for d in config.dossiers)))

    def _replace_sources(self, sources: list[Source]) -> None:
        # Sources added to the service by hand (not the factory's) go on as they are.
        others = [s for s in self.core.sources if not any(s is b for b in self._built)]
        for source in reversed(self._built):
            source.stop()
        paused = self.core.pause_state().paused
        for source in sources:
            if paused:
                source.pause()
            source.start()
        self._built = sources
        self.core.sources = [*sources, *others]

    def _open_control_channel(self) -> ControlServer | None:
        from daemon.control.server import ControlServer

        try:
            server = ControlServer(self.ctx, self.core)
            server.start()
        except OSError as exc:
            # The service works without it; the CLI then does the work itself.
            log.warning(_("The local control channel cannot be opened ({reason})").format(
                reason=exc.strerror or exc))
            return None
        return server

    def _check_start_at_login(self) -> None:
        """Say once when start at login, which the user asked for, was turned off elsewhere
        (a file removed, Task Manager's Startup tab)."""
        from daemon.platform import autostart

        try:
            turned_off = autostart.drift(self.ctx.paths)
        except OSError as exc:
            log.debug("start at login cannot be checked: %s", exc)
            return
        if turned_off:
            self.ctx.bus.publish(ev.SourceFailed("autostart", "autostart-off", turned_off))

    def _after_clock_events(self, seen: list[str]) -> None:
        if not seen or self.core.pause_state().paused:
            return
        log.info("%s: looking for updates", ", ".join(seen))
        for source in self.sources:
            source.poll_now()

    def _maintenance(self) -> None:
        removed = self.ctx.queue.recover()
        if removed:
            log.info("removed %d leftover file(s) of an interrupted run", len(removed))
        self.ctx.delivery.purge_trash()

    def _next_wait(self) -> float:
        waits = [CLOCK_LOOK_S]
        if self.core.held:
            waits.append(RESTART_WATCH_S)
        pause_left = self.core.seconds_until_pause_ends()
        if pause_left is not None:
            waits.append(pause_left)
        return min(waits)

    def follow_restart(self) -> None:
        """Flag what waits for a restart, hand it over once the application is closed, and
        announce every change of that set (at start, on arrivals, after deliveries)."""
        try:
            self.core.announce_held()
            if self.core.held and self.core.hand_over_after_restart():
                self.core.announce_held()
        except (sqlite3.Error, OSError) as exc:
            # A busy or failing disk: the next wake-up tries again.
            log.warning("cannot read the queue: %s", exc)

    def stop(self) -> None:
        """Ask the service to stop; safe from signal handlers and other threads.

        Only flags are set here: the run loop stops the sources, so that a signal handler
        never waits for a download to reach its next chunk.
        """
        self.stopping.set()
        self.wake.set()


def build_sources(ctx: Context) -> list[Source]:
    """Return the sources the configuration asks for, not yet started."""
    from daemon.folders import FolderWatcher
    from daemon.removable import RemovableSource
    from daemon.web.poller import WebPoller

    sources: list[Source] = []
    if ctx.config.web.url:
        sources.append(WebPoller(ctx.config, ctx.paths, ctx.queue, ctx.intake, ctx.bus))
    if ctx.config.removable:
        sources.append(RemovableSource(ctx.config, ctx.paths, ctx.intake, ctx.bus))
    if ctx.config.watched_folders:
        sources.append(FolderWatcher(ctx.config, ctx.paths, ctx.intake, ctx.bus))
    return sources


def build_service(ctx: Context, sources: list[Source] | None = None) -> Service:
    """Compose the service: the one place that decides which sources run."""
    from daemon.logs import log_event

    ctx.bus.subscribe("log", log_event)
    core = Core(ctx, build_sources(ctx) if sources is None else sources)
    return Service(ctx, core, source_factory=build_sources if sources is None else None)
