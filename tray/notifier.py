"""Showing notifications: desktop-notifier where the platform reports clicks, plyer as the
fallback, the log when there is no notification server at all.

desktop-notifier talks to the notification server over D-Bus on Linux (and to the native
centres on Windows and macOS) and tells us when the user clicks a notification or one of
its buttons; it runs on a private asyncio loop in one thread that sleeps between
notifications. plyer can only show them, so with it a click on the tray icon opens what
the last notification was about (see tray/app.py).

At login the notification server may come after passeur, or crash as it starts: plyer
then shows the notices only until the server answers; desktop-notifier is asked again at
each later notice (`Reconnecting`), so that clicks are reported again from then on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from tray.menu import Action
from tray.notices import Notice
from tray.state import Status

log = logging.getLogger(__name__)

OnAction = Callable[[Action], None]
IconFor = Callable[[Status | None], Path | None]  # the picture file for a notification
# How long to wait for the notification server to answer before falling back.
CONNECT_TIMEOUT_S = 5.0
# After a failed try, how long the fallback waits before asking desktop-notifier again
# (at the next notice): a burst of notices does not wait for the bus each time.
RETRY_AFTER_S = 2.0


class Notifier(Protocol):
    """Something that shows notices."""

    name: str
    reports_clicks: bool

    def show(self, notice: Notice, on_action: OnAction) -> None:
        """Show one notice; `on_action` is called with what the user clicked, if known."""

    def close(self) -> None:
        """Release what the notifier holds."""


class DesktopNotifier:
    """desktop-notifier on its own event loop thread: reports clicks and buttons."""

    name = "desktop-notifier"
    reports_clicks = True

    def __init__(self, app_name: str, icon_for: IconFor) -> None:
        from desktop_notifier import DesktopNotifier as Backend
        from desktop_notifier import Icon

        self.icon_for = icon_for
        icon = icon_for(None)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="notifier",
                                        daemon=True)
        self._thread.start()
        self._backend = Backend(app_name=app_name,
                                app_icon=Icon(path=icon) if icon is not None else None)

    def _run(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def check(self) -> None:
        """Raise when no notification server answers (so that the caller falls back)."""
        capabilities = self._run(self._backend.get_capabilities()).result(CONNECT_TIMEOUT_S)
        if not capabilities:
            raise RuntimeError("no notification server")

    def show(self, notice: Notice, on_action: OnAction) -> None:
        """Send the notice; clicks come back on the notifier thread."""
        from desktop_notifier import Button, Icon

        def clicked(action: Action | None) -> Callable[[], None]:
            def call() -> None:
                if action is not None:
                    on_action(action)
            return call

        buttons = [Button(title=b.label, on_pressed=clicked(b.action)) for b in notice.buttons]
        picture = self.icon_for(notice.status)
        future = self._run(self._backend.send(
            title=notice.title, message=notice.message, buttons=buttons,
            icon=Icon(path=picture) if picture is not None else None,
            on_clicked=clicked(notice.target)))
        future.add_done_callback(_log_failure)

    def close(self) -> None:
        """Stop the loop thread."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2)


def _log_failure(future: Future[Any]) -> None:
    error = future.exception()
    if error is not None:
        log.warning("notification not shown: %s", error)


class PlyerNotifier:
    """plyer: shows notifications everywhere, but never says when one is clicked."""

    name = "plyer"
    reports_clicks = False

    def __init__(self, app_name: str, icon_for: IconFor) -> None:
        from plyer import notification

        self._notification = notification
        self.app_name = app_name
        self.icon_for = icon_for

    def show(self, notice: Notice, on_action: OnAction) -> None:
        """Show the notice (clicks are not reported)."""
        picture = self.icon_for(notice.status)
        try:
            self._notification.notify(title=notice.title, message=notice.message,
                                      app_name=self.app_name,
                                      app_icon=str(picture) if picture else "", timeout=10)
        except Exception as exc:  # plyer raises whatever its platform backend raises
            log.warning("notification not shown (%s): %s — %s", exc, notice.title,
                        notice.message)

    def close(self) -> None:
        """Nothing to release."""


class LogNotifier:
    """No notification server: notices go to the log only."""

    name = "log"
    reports_clicks = False

    def show(self, notice: Notice, on_action: OnAction) -> None:
        """Log the notice."""
        log.info("%s: %s", notice.title, notice.message.replace("\n", " "))

    def close(self) -> None:
        """Nothing to release."""


class Reconnecting:
    """plyer while no notification server answers desktop-notifier; desktop-notifier again
    (clicks reported) from the first later notice that finds one."""

    name = "plyer"
    reports_clicks = False

    def __init__(self, app_name: str, icon_for: IconFor, fallback: PlyerNotifier) -> None:
        self.app_name = app_name
        self.icon_for = icon_for
        self.fallback = fallback
        self._desktop: DesktopNotifier | None = None
        self._lock = threading.Lock()
        self._next_try = 0.0  # the first notice asks at once

    def show(self, notice: Notice, on_action: OnAction) -> None:
        """Show the notice with desktop-notifier if a server answers now, else with plyer."""
        with self._lock:
            desktop = self._desktop or self._try_desktop()
        if desktop is not None:
            desktop.show(notice, on_action)
        else:
            self.fallback.show(notice, on_action)

    def _try_desktop(self) -> DesktopNotifier | None:
        if time.monotonic() < self._next_try:
            return None
        self._next_try = time.monotonic() + RETRY_AFTER_S
        desktop = connect_desktop(self.app_name, self.icon_for)
        if desktop is not None:
            log.info("notifications: desktop-notifier (a notification server answers now)")
            self._desktop = desktop
            self.name, self.reports_clicks = desktop.name, desktop.reports_clicks
        return desktop

    def close(self) -> None:
        """Release what the notifier in use holds."""
        with self._lock:
            if self._desktop is not None:
                self._desktop.close()
        self.fallback.close()


def connect_desktop(app_name: str, icon_for: IconFor) -> DesktopNotifier | None:
    """Return desktop-notifier when a notification server answers it, else None."""
    desktop = DesktopNotifier(app_name, icon_for)
    try:
        desktop.check()
    except Exception as exc:  # no session bus, no server, a timeout…
        desktop.close()
        log.info("no notification server answers (%s)", exc or type(exc).__name__)
        return None
    return desktop


def choose_notifier(app_name: str, icon_for: IconFor) -> Notifier:
    """Return the best notifier this session offers, saying which one in the log."""
    try:
        desktop = connect_desktop(app_name, icon_for)
    except ImportError as exc:
        log.info("desktop-notifier is not installed (%s): notification clicks will not be "
                 "reported", exc)
        installed = False
    else:
        if desktop is not None:
            return desktop
        installed = True
    try:
        fallback = PlyerNotifier(app_name, icon_for)
    except ImportError as exc:
        log.info("plyer is not installed (%s): notifications go to the log", exc)
        return LogNotifier()
    # A server that comes later (or starts again after a crash) is used when it answers.
    return Reconnecting(app_name, icon_for, fallback) if installed else fallback
