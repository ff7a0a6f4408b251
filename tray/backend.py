"""The thin pystray adapter: chooses the backend, shows the icon, renders the menu model,
reports clicks. This is the desktop-specific module: every backend quirk is handled here
and nowhere else.

Choosing the backend (Linux; Windows and macOS have one each, with a menu and a default
action): pystray offers three, which differ in what they can do (`Capabilities`).

- `appindicator` (StatusNotifierItem over D-Bus) where an SNI host runs, i.e. where the
  `org.kde.StatusNotifierWatcher` name has an owner on the session bus: GNOME with the
  AppIndicator extension, KDE Plasma, Xfce, Cinnamon, MATE. A real menu, but no default
  action (a click opens the menu): the most useful entry comes first.
- `gtk` (a GtkStatusIcon, XEmbed) on a plain X11 tray when GTK is available: a menu on the
  right click and a default action on the left one.
- `xorg` last (no GTK): no menu, so the default action opens the choices window.

At login the panel may come up after passeur: the choice waits for a host first.
`[tray] backend` in the configuration overrides the choice for the odd desktop (then
pystray's own PYSTRAY_BACKEND environment variable, if set).

Quirks handled here:

- appindicator gives the host a file path as icon name (one size, scaled by the host,
  and removed before the new one is shown): `_sni_icon_class` writes each picture at
  every size hosts ask for (16 to 64 px) into an icon theme folder of its own and gives
  the host that folder (IconThemePath) and the picture's name, so the host takes the
  size it draws and a change is one name switch (no flicker). The status text goes in
  the title and the icon's accessible description (SNI has no tooltip in
  libappindicator). When the panel restarts, libappindicator registers the icon again.
- gtk names the icon's window after the program (GLib's prgname, the starting script's
  name by default): `_name_the_program` names it "passeur" before GTK starts;
- xorg has no menu (`HAS_MENU` false): the default action opens the choices dialog;
- xorg drops transparency (black corners): the icon is flattened on a neutral grey;
- xorg cannot dock when no system tray runs yet: we wait for one, then give up; a tray
  that lets the icon go again (back to the root window) is asked again;
- pystray 0.19.5's xorg icon never asks X for button presses (clicks are lost), asks to
  be docked again at every picture change (the tray re-embeds it and may lose its
  picture), stretches the picture to its window, and does not flush its X connection
  after drawing or renaming (the change waits for the next X event; a plain flush is not
  always enough with python-xlib's threads, a round trip is). `_x11_icon_class` fixes
  these; it draws the picture in the loop's own thread at the window's exact size, so
  that we never talk to X from another thread.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from PIL import Image

from tray.icon import SIZES, on_background
from tray.menu import Action, Entry

log = logging.getLogger(__name__)

OnAction = Callable[[Action, str], None]
Picture = Callable[[int], Image.Image]  # draws the icon at a given size in pixels
# A panel colour for backends without transparency: between light and dark themes.
FLAT_BACKGROUND = (128, 128, 128)
# At login the panel may come up after passeur: how long to wait for a system tray.
TRAY_WAIT_S = 30.0
# How long to keep asking an X11 tray to take the icon.
DOCK_WAIT_S = 10.0
# The size handed to backends that scale the picture themselves.
DEFAULT_SIZE = 64
# The backends a user may name in `[tray] backend` ("auto" lets passeur choose).
LINUX_BACKENDS = ("appindicator", "gtk", "xorg")
SNI_WATCHER = "org.kde.StatusNotifierWatcher"


class NoTray(Exception):
    """No system tray to show the icon in."""


@dataclass(frozen=True)
class Capabilities:
    """What the chosen backend can do (pystray's HAS_* flags), read once."""

    menu: bool
    default_action: bool
    notification: bool


@dataclass(frozen=True)
class Choice:
    """The backend chosen and why, for the log ("" lets pystray take its only one)."""

    backend: str
    reason: str


def choose_backend(override: str = "auto", timeout: float = TRAY_WAIT_S) -> Choice:
    """Choose the pystray backend that gives the best experience on this desktop.

    Waits up to `timeout` for a tray host on Linux (the panel may start after passeur);
    raises NoTray when none comes.
    """
    if not sys.platform.startswith("linux"):
        return Choice("", "the only backend of this system")
    if override != "auto":
        return Choice(override, "[tray] backend in the configuration")
    # pystray's own override, for a session that sets it.
    named = os.environ.get("PYSTRAY_BACKEND", "")
    if named:
        return Choice(named, "PYSTRAY_BACKEND in the environment")
    deadline = time.monotonic() + timeout
    while True:
        choice = _choose_now()
        if choice is not None:
            return choice
        # A panel may come later; a display that cannot be opened, without a session bus
        # for an SNI host either, will not: passeur goes on without its icon at once.
        if time.monotonic() >= deadline or not (x11_display_opens() or session_bus_present()):
            raise NoTray("no system tray: neither a StatusNotifierItem host on the session "
                         f"bus nor an X11 tray on {os.environ.get('DISPLAY', '')!r}")
        time.sleep(0.5)


def _choose_now() -> Choice | None:
    if sni_host_present():
        if _typelib("AyatanaAppIndicator3", "0.1") or _typelib("AppIndicator3", "0.1"):
            return Choice("appindicator", f"{SNI_WATCHER} is on the session bus")
        log.info("a StatusNotifierItem host runs, but libappindicator's GObject bindings "
                 "are not installed")
    if x11_tray_present():
        if _typelib("Gtk", "3.0"):
            return Choice("gtk", "an X11 system tray runs and GTK is available")
        return Choice("xorg", "an X11 system tray runs (GTK is not available)")
    return None


def _typelib(namespace: str, version: str) -> bool:
    """Tell whether PyGObject and a GObject typelib are there (without loading it)."""
    try:
        import gi  # type: ignore[import-untyped]

        gi.require_version(namespace, version)
    except (ImportError, ValueError):
        return False
    return True


def sni_host_present() -> bool:
    """Tell whether a StatusNotifierItem watcher owns its name on the session bus."""
    try:
        from gi.repository import Gio, GLib  # type: ignore[import-untyped]
    except ImportError:
        return False
    try:
        bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
        reply = bus.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus",
                              "org.freedesktop.DBus", "NameHasOwner",
                              GLib.Variant("(s)", (SNI_WATCHER,)), None,
                              Gio.DBusCallFlags.NONE, 2000, None)
    except GLib.Error as exc:  # no session bus
        log.debug("no session bus: %s", exc.message)
        return False
    return bool(reply.unpack()[0])


def session_bus_present() -> bool:
    """Tell whether a D-Bus session bus answers (where an SNI host would be)."""
    try:
        from gi.repository import Gio, GLib
    except ImportError:
        return False
    try:
        Gio.bus_get_sync(Gio.BusType.SESSION, None)
    except GLib.Error:
        return False
    return True


def x11_display_opens() -> bool:
    """Tell whether the X display can be opened at all."""
    try:
        import Xlib.display  # type: ignore[import-untyped]

        Xlib.display.Display().close()
    except Exception:  # no display, no X server (python-xlib raises several kinds)
        return False
    return True


def x11_tray_present() -> bool:
    """Tell whether an X11 system tray owns its selection now."""
    try:
        import Xlib.display
        import Xlib.error  # type: ignore[import-untyped]

        display = Xlib.display.Display()
    except Exception:  # no display, no X server (python-xlib raises several kinds)
        return False
    try:
        selection = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
        return bool(display.get_selection_owner(selection) != 0)  # X.NONE
    finally:
        display.close()


def load_pystray(backend: str = "") -> Any:
    """Import pystray with this backend ("" for its own choice); raises when it cannot work
    here (no display, a missing library). Returns an object with Icon, Menu and MenuItem."""
    if not backend:
        import pystray

        return pystray
    if backend not in LINUX_BACKENDS:
        raise ImportError(f"unknown tray backend {backend!r}")
    if backend == "gtk":
        _name_the_program()
    # pystray chooses its backend when first imported: name ours for that import only.
    saved = os.environ.get("PYSTRAY_BACKEND")
    os.environ["PYSTRAY_BACKEND"] = backend
    try:
        import pystray

        module = importlib.import_module(f"pystray._{backend}")
    finally:
        if saved is None:
            os.environ.pop("PYSTRAY_BACKEND", None)
        else:
            os.environ["PYSTRAY_BACKEND"] = saved
    return SimpleNamespace(Icon=module.Icon, Menu=pystray.Menu, MenuItem=pystray.MenuItem)


def _name_the_program() -> None:
    """Name the program "passeur" for GTK before GTK starts: its icon's window is then of
    class passeur (not the launcher script's name) for trays and window rules."""
    try:
        from gi.repository import GLib
    except ImportError:
        return  # pystray's import will say what is missing
    if GLib.get_prgname() in (None, "", os.path.basename(sys.argv[0])):
        GLib.set_prgname("passeur")


def capabilities(pystray: Any) -> Capabilities:
    """Return what the backend's icon class can do."""
    icon = pystray.Icon
    return Capabilities(bool(icon.HAS_MENU), bool(icon.HAS_DEFAULT_ACTION),
                        bool(icon.HAS_NOTIFICATION))


def backend_name(pystray: Any) -> str:
    """Return the backend pystray chose ("xorg", "gtk", "appindicator", "win32"…)."""
    return str(pystray.Icon.__module__).rsplit("._", 1)[-1]


def wait_for_x11_tray(timeout: float = TRAY_WAIT_S) -> None:
    """Wait until an X11 system tray owns its selection; raise NoTray after `timeout`."""
    deadline = time.monotonic() + timeout
    while not x11_tray_present():
        if time.monotonic() >= deadline:
            raise NoTray(f"no system tray on {os.environ.get('DISPLAY', '')!r}")
        time.sleep(0.5)


def x11_title(title: str) -> str:
    """Return a title pystray's X11 backend can write (a Latin-1 X STRING)."""
    for wide, narrow in (("—", "-"), ("–", "-"), ("…", "..."), ("’", "'")):
        title = title.replace(wide, narrow)
    return title.encode("latin-1", "replace").decode("latin-1")


class TrayIcon:
    """One pystray icon; `update()` may be called from any thread."""

    def __init__(self, pystray: Any, picture: Picture, title: str,
                 on_action: OnAction, on_default: Callable[[], None]) -> None:
        self.pystray = pystray
        self.backend = backend_name(pystray)
        self.x11 = self.backend == "xorg"
        self.sni = self.backend == "appindicator"
        self.capabilities = capabilities(pystray)
        self.on_action = on_action
        self.on_default = on_default
        self._lock = threading.Lock()
        self._running = False
        self._stopped = False
        self._docking: threading.Thread | None = None
        if self.x11:
            self.icon = _x11_icon_class(pystray)(
                "passeur", on_background(picture(DEFAULT_SIZE), FLAT_BACKGROUND),
                x11_title(title), menu=self._render([]))
            self.icon.painter = picture
            self.icon.undocked = self._dock_again
        elif self.sni:
            self.icon = _sni_icon_class(pystray)("passeur", picture, title,
                                                 menu=self._render([]))
        else:
            self.icon = pystray.Icon("passeur", picture(DEFAULT_SIZE), title,
                                     menu=self._render([]))
        self.has_menu = self.capabilities.menu
        self.has_default_action = self.capabilities.default_action

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

    def update(self, picture: Picture | None = None, title: str | None = None,
               entries: Sequence[Entry] | None = None) -> None:
        """Change the picture, the tooltip and/or the menu (ignored unless running).

        Some backends hand the change to their loop and wait for it: before the loop runs
        or after it ended, that wait would never end.
        """
        with self._lock:
            if not self._running:
                return
            if picture is not None:
                if self.x11:
                    self.icon.painter = picture
                    self.icon.icon = on_background(picture(DEFAULT_SIZE), FLAT_BACKGROUND)
                elif self.sni:
                    self.icon.show_picture(picture)
                else:
                    self.icon.icon = picture(DEFAULT_SIZE)
            if title is not None:
                self.icon.title = x11_title(title) if self.x11 else title
            if entries is not None and self.has_menu:
                self.icon.menu = self._render(entries)

    def screen_area(self) -> tuple[int, int, int, int] | None:
        """Return the icon's x, y, width and height on the screen (X11 only), else None."""
        if not self.x11:
            return None
        import Xlib.display

        # A connection of its own: the loop's connection belongs to the loop's thread.
        display = Xlib.display.Display()
        try:
            window = display.create_resource_object("window", self.icon._window.id)
            geometry = window.get_geometry()
            where = window.translate_coords(display.screen().root, 0, 0)
            return (-where.x, -where.y, geometry.width, geometry.height)
        except Exception as exc:  # the window went away (python-xlib raises several kinds)
            log.debug("the icon's place is unknown: %s", exc)
            return None
        finally:
            display.close()

    def run(self, setup: Callable[[], None]) -> None:
        """Show the icon and run the backend's loop on this (main) thread until stopped."""

        def started(icon: Any) -> None:
            with self._lock:
                stopped = self._stopped
                if not stopped:
                    icon.visible = True
                    self._running = True
            if stopped:  # stop() came while the loop was starting
                icon.stop()
                return
            if self.x11:
                self._wait_until_docked()
            setup()

        self.icon.run(setup=started)
        with self._lock:
            # However the loop ended (stop, or the X connection closed), nothing may be
            # handed to it any more: it would wait for an answer forever.
            self._running = False
            self._stopped = True

    def _dock_again(self) -> None:
        """Keep asking the tray to take the icon back, from a thread of its own (the X
        loop reports the icon let go and must not wait); one such thread at a time."""
        if self._docking is not None and self._docking.is_alive():
            return
        self._docking = threading.Thread(target=self._wait_until_docked, name="tray-dock",
                                         daemon=True)
        self._docking.start()

    def _wait_until_docked(self) -> None:
        deadline = time.monotonic() + DOCK_WAIT_S
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
                self.icon._check_docked()
                if self.icon.docked:
                    return
            time.sleep(0.25)
        log.warning("the system tray did not take the icon")

    def stop(self) -> None:
        """End the loop (from any thread but the loop's own); later calls do nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            running, self._running = self._running, False
        if running:
            self.icon.stop()


def _x11_icon_class(pystray: Any) -> Any:
    """Return pystray's X11 icon class with its clicks, docking, sizing and flushing fixed."""
    import Xlib.X  # type: ignore[import-untyped]

    base = pystray.Icon

    class X11Icon(base):  # type: ignore[misc, valid-type]
        painter: Picture | None = None
        undocked: Callable[[], None] | None = None  # called in the loop's thread
        docked = False
        _icon_data: Any

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._results: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
            self._dispatch_lock = threading.Lock()
            self._poker: Any = None
            super().__init__(*args, **kwargs)
            self._window.change_attributes(
                event_mask=Xlib.X.ExposureMask | Xlib.X.StructureNotifyMask
                | Xlib.X.ButtonPressMask)
            self._message_handlers[Xlib.X.ReparentNotify] = self._on_reparent

        def _on_reparent(self, event: Any) -> None:
            """Report the icon let go by the tray (back on the root window).

            A tray busy with another icon leaving can drop one it has just embedded, and
            pystray never asks again: the icon would stay an invisible 1x1 window. The
            tray may also still be letting go when a first new request comes: the owner
            keeps asking for a while, as at start.
            """
            if (self.visible and self.undocked is not None and event.window == self._window
                    and event.parent == self._display.screen().root):
                log.info("the system tray let the icon go: asking it again")
                self.undocked()

        def _rewrite_implementation(self, *methods: Any) -> None:
            """Run these methods in the loop's thread, asked over a second connection.

            pystray asks its loop through the loop's own connection from the calling
            thread; python-xlib then sometimes loses a flush or a reply between the two
            threads (a tooltip never shown, a loop that never ends). Here only the loop's
            thread uses its connection; other threads wake it through their own.
            """
            handlers = {}
            for method in (*methods, self._check_docked):
                atom = self._display.intern_atom(f"_PASSEUR_{method.__name__.upper()}")
                handlers[atom] = method
                setattr(self, method.__name__, self._dispatcher(method, atom))

            def on_client_message(event: Any) -> None:
                method = handlers.get(event.client_type)
                if method is None:
                    return
                try:
                    method()
                except Exception as exc:  # handed back to the waiting thread
                    self._results.put(exc)
                else:
                    self._results.put(None)

            self._message_handlers[Xlib.X.ClientMessage] = on_client_message

        def _dispatcher(self, method: Callable[[], None], atom: int) -> Callable[[], None]:
            def inner() -> None:
                if threading.current_thread() is getattr(self, "_thread", None):
                    method()
                    return
                with self._dispatch_lock:
                    self._poke(atom)
                    error = self._results.get()
                if error is not None:
                    raise error

            return inner

        def _check_docked(self) -> None:
            """Ask to be docked again while the tray has not embedded the window.

            A tray busy with another icon leaving may miss the first request, and pystray
            never asks again.
            """
            root = self._display.screen().root
            self.docked = self._window.query_tree().parent.id != root.id
            if not self.docked:
                self._systray_manager = None
                self._dock_window()
                self._display.sync()

        def _poke(self, atom: int) -> None:
            import Xlib.display
            import Xlib.protocol.event  # type: ignore[import-untyped]

            if self._poker is None:
                self._poker = Xlib.display.Display(self._display.get_display_name())
            window = self._poker.create_resource_object("window", self._window.id)
            window.send_event(Xlib.protocol.event.ClientMessage(
                window=window, client_type=atom, data=(32, (0, 0, 0, 0, 0))),
                event_mask=Xlib.X.NoEventMask)
            self._poker.sync()

        def _update_icon(self) -> None:
            # Runs in the loop's thread. Dock only when not docked yet: a second request
            # makes the tray embed the window again.
            if not self._systray_manager:
                self._dock_window()
            self._icon_data = None
            self._draw()
            self._display.sync()
            self._icon_valid = True

        def _assert_icon_data(self, width: int, height: int) -> None:
            if self._icon_data and self._icon_data.size == (width, height):
                return
            painter = self.painter
            if painter is None:
                super()._assert_icon_data(width, height)
                return
            # Drawn for the window's size (centred when it is not square), not stretched.
            side = max(1, min(width, height))
            canvas = Image.new("RGB", (width, height), FLAT_BACKGROUND)
            canvas.paste(on_background(painter(side), FLAT_BACKGROUND),
                         ((width - side) // 2, (height - side) // 2))
            # python-xlib's put_pil_image calls the old name of tobytes.
            setattr(canvas, "tostring", canvas.tobytes)  # noqa: B010
            self._icon_data = canvas

        def _update_title(self) -> None:
            super()._update_title()
            self._display.sync()

        def _show(self) -> None:
            super()._show()
            self._display.sync()

        def _hide(self) -> None:
            super()._hide()
            self._display.sync()

        def _stop(self) -> None:
            # The loop ends when X reports the window destroyed: make sure X got the request.
            self._window.destroy()
            self._display.sync()

        def _on_expose(self, event: Any) -> None:
            super()._on_expose(event)
            self._display.sync()

    return X11Icon


def picture_name(picture: Picture) -> str:
    """Return a name for a picture in the icon theme: the same pictures, the same name."""
    digest = hashlib.sha256(picture(DEFAULT_SIZE).tobytes()).hexdigest()[:16]
    return f"passeur-{digest}"


class IconTheme:
    """A private icon theme folder: each picture at every size, under a name of its own.

    Pictures are never rewritten or removed while the icon runs (a host may still be
    reading the previous one); the folder goes when the icon ends.
    """

    INDEX = "[Icon Theme]\nName=hicolor\nDirectories={dirs}\n\n{sections}"

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="passeur-icons-"))  # 0700
        dirs = [f"{size}x{size}/apps" for size in SIZES]
        sections = "".join(f"[{d}]\nSize={size}\nContext=Applications\nType=Fixed\n\n"
                           for d, size in zip(dirs, SIZES, strict=True))
        theme = self.path / "hicolor"
        theme.mkdir()
        (theme / "index.theme").write_text(self.INDEX.format(dirs=",".join(dirs),
                                                             sections=sections), "utf-8")

    def add(self, picture: Picture) -> str:
        """Write the picture at every size (once) and return its icon name."""
        name = picture_name(picture)
        for size in SIZES:
            folder = self.path / "hicolor" / f"{size}x{size}" / "apps"
            target = folder / f"{name}.png"
            if not target.exists():
                folder.mkdir(parents=True, exist_ok=True)
                partial = folder / f".{name}.png.part"
                picture(size).save(partial, "PNG")
                partial.replace(target)  # a host never reads half a picture
        return name

    def remove(self) -> None:
        """Remove the folder."""
        shutil.rmtree(self.path, ignore_errors=True)


def _sni_icon_class(pystray: Any) -> Any:
    """Return pystray's AppIndicator icon class, showing named pictures from a theme."""
    from pystray._util.gtk import mainloop

    base = pystray.Icon
    indicator = sys.modules[base.__module__].AppIndicator  # Ayatana's or Canonical's

    class SniIcon(base):  # type: ignore[misc, valid-type]
        _appindicator: Any

        def __init__(self, name: str, picture: Picture, title: str, **kwargs: Any) -> None:
            self._theme = IconTheme()
            self._icon_name = self._theme.add(picture)
            super().__init__(name, picture(DEFAULT_SIZE), title, **kwargs)
            self._appindicator.set_icon_theme_path(str(self._theme.path))

        def show_picture(self, picture: Picture) -> None:
            """Show another picture (from any thread): written first, then switched to."""
            self._icon_name = self._theme.add(picture)
            self._switch_icon()

        @mainloop  # type: ignore[untyped-decorator]
        def _switch_icon(self) -> None:
            self._appindicator.set_icon_full(self._icon_name, self.title)

        @mainloop  # type: ignore[untyped-decorator]
        def _update_icon(self) -> None:
            self._switch_icon()

        @mainloop  # type: ignore[untyped-decorator]
        def _update_title(self) -> None:
            self._appindicator.set_title(self.title)
            # Hosts that read no title say the status with the icon's description.
            self._appindicator.set_icon_full(self._icon_name, self.title)

        @mainloop  # type: ignore[untyped-decorator]
        def _show(self) -> None:
            # pystray's own would give the host its picture file's path.
            self._appindicator.set_icon_full(self._icon_name, self.title)
            self._appindicator.set_menu(self._menu_handle or self._create_default_menu())
            self._appindicator.set_title(self.title)
            self._appindicator.set_status(indicator.IndicatorStatus.ACTIVE)

        def _finalize(self) -> None:
            super()._finalize()
            self._theme.remove()

    return SniIcon
