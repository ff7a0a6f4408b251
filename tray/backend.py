"""The thin pystray adapter: shows the icon, renders the menu model, reports clicks.

pystray picks its backend on import (appindicator, gtk or xorg on Linux; win32; darwin)
and raises when there is no display; the caller then runs headless. Backend quirks are
handled here and nowhere else:

- xorg has no menu (`HAS_MENU` false): the default action opens the choices dialog;
- xorg never asks X for button presses (pystray 0.19.5), so clicks would be lost: the
  icon window's event mask gets ButtonPressMask;
- xorg drops transparency (black corners): the icon is flattened on a neutral grey;
- xorg cannot dock when no system tray runs yet: we wait for one, then give up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from tray.icon import on_background
from tray.menu import Action, Entry

log = logging.getLogger(__name__)

OnAction = Callable[[Action, str], None]
# A panel colour for backends without transparency: between light and dark themes.
FLAT_BACKGROUND = (128, 128, 128)
# At login the panel may come up after passeur: how long to wait for a system tray.
TRAY_WAIT_S = 30.0


class NoTray(Exception):
    """No system tray to show the icon in."""


def load_pystray() -> Any:
    """Import pystray (raises when no backend works here, e.g. without a display)."""
    import pystray

    return pystray


def backend_name(pystray: Any) -> str:
    """Return the backend pystray chose ("xorg", "gtk", "appindicator", "win32"…)."""
    return str(pystray.Icon.__module__).rsplit("._", 1)[-1]


def wait_for_x11_tray(timeout: float = TRAY_WAIT_S) -> None:
    """Wait until an X11 system tray owns its selection; raise NoTray after `timeout`."""
    import Xlib.display  # type: ignore[import-untyped]

    display = Xlib.display.Display()
    try:
        selection = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
        deadline = time.monotonic() + timeout
        while display.get_selection_owner(selection) == 0:  # X.NONE
            if time.monotonic() >= deadline:
                raise NoTray(f"no system tray on {display.get_display_name()}")
            time.sleep(0.5)
    finally:
        display.close()


class TrayIcon:
    """One pystray icon; `update()` may be called from any thread."""

    def __init__(self, pystray: Any, image: Image.Image, title: str,
                 on_action: OnAction, on_default: Callable[[], None]) -> None:
        self.pystray = pystray
        self.backend = backend_name(pystray)
        self.on_action = on_action
        self.on_default = on_default
        self.icon = pystray.Icon("passeur", self._prepare(image), self._title(title),
                                 menu=self._render([]))
        self._lock = threading.Lock()
        self._running = False
        self.has_menu = bool(self.icon.HAS_MENU)
        self.has_default_action = bool(self.icon.HAS_DEFAULT_ACTION)
        if self.backend == "xorg":
            self._listen_to_clicks()

    def _listen_to_clicks(self) -> None:
        import Xlib.X  # type: ignore[import-untyped]

        window = self.icon._window  # the backend's own window: no public way to reach it
        window.change_attributes(event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask
                                 | Xlib.X.ButtonPressMask)

    @property
    def size(self) -> int:
        """Return the pixel size to draw the icon at (the docked window's on X11)."""
        if self.backend == "xorg" and self._running:
            geometry = self.icon._window.get_geometry()
            side = min(geometry.width, geometry.height)
            if side >= 16:
                return int(side)
        return 64

    def _title(self, title: str) -> str:
        if self.backend == "xorg":
            # X11 window names are Latin-1 here (pystray writes WM_NAME as STRING).
            for wide, narrow in (("—", "-"), ("–", "-"), ("…", "..."), ("’", "'")):
                title = title.replace(wide, narrow)
            return title.encode("latin-1", "replace").decode("latin-1")
        return title

    def _prepare(self, image: Image.Image) -> Image.Image:
        if self.backend == "xorg":
            return on_background(image, FLAT_BACKGROUND)
        return image

    def _render(self, entries: Sequence[Entry]) -> Any:
        pystray = self.pystray
        # A hidden first item takes the default action (a left click) on every backend; the
        # visible entries are only drawn where the backend has menus.
        default = pystray.MenuItem("passeur", self._default_clicked, default=True,
                                   visible=False)
        return pystray.Menu(default, *(self._item(entry) for entry in entries))

    def _default_clicked(self, icon: Any, item: Any) -> None:
        self.on_default()

    def _item(self, entry: Entry) -> Any:
        pystray = self.pystray
        if entry.is_separator:
            return pystray.Menu.SEPARATOR
        if entry.children:
            return pystray.MenuItem(entry.label, pystray.Menu(
                *(self._item(child) for child in entry.children)), enabled=entry.enabled)
        action, arg = entry.action, entry.arg

        def clicked(icon: Any, item: Any) -> None:
            if action is not None:
                self.on_action(action, arg)

        return pystray.MenuItem(entry.label, clicked, enabled=entry.enabled,
                                default=entry.default)

    def update(self, image: Image.Image | None = None, title: str | None = None,
               entries: Sequence[Entry] | None = None) -> None:
        """Change the picture, the tooltip and/or the menu (ignored unless running).

        Some backends hand the change to their loop and wait for it: before the loop runs
        or after it ended, that wait would never end.
        """
        with self._lock:
            if not self._running:
                return
            if image is not None:
                self.icon.icon = self._prepare(image)
            if title is not None:
                self.icon.title = self._title(title)
            if entries is not None and self.has_menu:
                self.icon.menu = self._render(entries)

    def run(self, setup: Callable[[], None]) -> None:
        """Show the icon and run the backend's loop on this (main) thread until stopped."""

        def started(icon: Any) -> None:
            with self._lock:
                icon.visible = True
                self._running = True
            setup()

        self.icon.run(setup=started)

    def stop(self) -> None:
        """End the loop (from any thread but the loop's own)."""
        with self._lock:
            self._running = False
            self.icon.stop()
