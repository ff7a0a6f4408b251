"""A real desktop for the tray tests: Xvfb, trayer as the system tray, dunst on a private
D-Bus session bus, plus the xdotool / ImageMagick helpers that look at it and click.

Also the tray launcher the tests run as a real process (`python -m tests.xsession launch
HOME DROP`): the composition root of `passeur run`, plus a drop-folder source of the
tests' own (updates copied into DROP are imported as one batch, like a real source's
poll), so that updates "arrive" in the running tray through the real intake, queue and
event bus.
"""

from __future__ import annotations

import contextlib
import faulthandler
import importlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from daemon.sources import Source

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_TOOLS = {
    "Xvfb": "xvfb", "trayer": "trayer", "xdotool": "xdotool", "import": "imagemagick",
    "dunst": "dunst", "dunstctl": "dunst", "dbus-run-session": "dbus-daemon",
    "xwininfo": "x11-utils",
}
# The Debian packages the desktop tests need: the tools above, the fonts of the windows
# and of the icon's badge, and Tk for the windows.
DEBIAN_PACKAGES = sorted(set(REQUIRED_TOOLS.values()) | {"fonts-dejavu-core", "libtk8.6"})
TRAY_HEIGHT = 26  # trayer gives icons height - 2: 24-pixel square icons
DUNSTRC = """\
[global]
    monitor = 0
    follow = none
    width = 420
    height = 120
    origin = top-left
    offset = 10x40
    notification_limit = 0
    idle_threshold = 0
    font = DejaVu Sans 10
    format = "<b>%s</b>\\n%b"
    show_indicators = no
    mouse_left_click = do_action, close_current
[urgency_low]
    timeout = 0
[urgency_normal]
    timeout = 0
[urgency_critical]
    timeout = 0
"""


def require_tools() -> None:
    """Fail loudly (never skip) when a tool of the desktop is missing."""
    missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if not shutil.which(tool)})
    try:
        import tkinter  # noqa: F401 - the windows need it
    except ImportError:
        missing.append("libtk8.6 (python3-tk for Debian's own Python)")
    if missing:
        pytest.fail("missing Debian packages for the desktop tests: apt-get install -y "
                    + " ".join(missing))


def wait_for(condition: Callable[[], object], timeout: float = 15.0,
             interval: float = 0.05) -> bool:
    """Poll `condition` until it is true or `timeout` passes; return its last truth."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


@dataclass
class XSession:
    """One virtual desktop with a system tray and a notification server."""

    folder: Path
    dunst_rules: str = ""  # more dunstrc sections (the benchmark stamps notifications)
    display: str = ""
    bus_address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # The pystray backend of the tray under test: trayer's tests are those of the xorg
    # one (with GTK installed, passeur would choose gtk); "" lets passeur choose.
    pystray_backend: str = "xorg"
    # The virtual screen (width x height): larger for pictures of windows at 200 %.
    screen: str = "1024x768"
    trayer: subprocess.Popen[bytes] = field(init=False)

    @property
    def env(self) -> dict[str, str]:
        """Return an environment for programs of this desktop."""
        env = dict(os.environ)
        env.update(DISPLAY=self.display, DBUS_SESSION_BUS_ADDRESS=self.bus_address,
                   PYSTRAY_BACKEND=self.pystray_backend)
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.folder / log_name, "wb") as log:
            process: subprocess.Popen[bytes] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        self.processes.append(process)
        return process

    def start(self) -> None:
        """Start Xvfb, trayer and dunst (on a private session bus)."""
        self._start_xvfb()
        self._start_trayer()
        self._start_dunst()

    def _start_trayer(self) -> None:
        self.trayer = self._spawn(
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
             "--height", str(TRAY_HEIGHT), "--SetDockType", "true", "--transparent", "false",
             "--expand", "true"], "trayer.log")
        assert wait_for(lambda: self.tray_window() is not None, 10), self.log("trayer.log")

    def restart_trayer(self) -> None:
        """Kill the system tray, as a crash would, and start it again."""
        self.trayer.kill()
        self.trayer.wait()
        assert wait_for(lambda: self.tray_window() is None, 10), "trayer did not go"
        self._start_trayer()

    def _start_xvfb(self) -> None:
        read, write = os.pipe()
        process = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{self.screen}x24", "-nolisten",
             "tcp", "-noreset"], pass_fds=(write,), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(write)
        self.processes.append(process)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        assert number, "Xvfb did not start"
        self.display = f":{number}"

    def _start_dunst(self) -> None:
        rc = self.folder / "dunstrc"
        rc.write_text(DUNSTRC + self.dunst_rules, "utf-8")
        address = self.folder / "bus-address"
        # dbus-run-session gives dunst a session bus of its own and ends it with dunst.
        self._spawn(["dbus-run-session", "--", "sh", "-c",
                     f'printf %s "$DBUS_SESSION_BUS_ADDRESS" > "{address}.tmp" && '
                     f'mv "{address}.tmp" "{address}" && exec dunst -config "{rc}"'],
                    "dunst.log")
        assert wait_for(address.exists, 10), self.log("dunst.log")
        self.bus_address = address.read_text("utf-8")
        assert wait_for(lambda: self.dunstctl("is-paused").returncode == 0, 10), \
            self.log("dunst.log")

    def stop(self) -> None:
        """Stop everything this session started, newest first."""
        import psutil

        for process in reversed(self.processes):
            if process.poll() is None:
                # dbus-run-session ends its bus when its child (dunst) ends, not when it is
                # itself terminated: stop the children first.
                with contextlib.suppress(psutil.NoSuchProcess):
                    for child in psutil.Process(process.pid).children():
                        child.terminate()
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self, name: str) -> str:
        """Return a log file of this session."""
        path = self.folder / name
        return path.read_text("utf-8", "replace") if path.exists() else ""

    # ------------------------------------------------------------ looking

    def run(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a desktop tool (xdotool, import, xwininfo…)."""
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              errors="replace",
                              check=check, timeout=30)

    def windows(self, *search: str) -> list[str]:
        """Return the ids of windows found by `xdotool search` with these arguments."""
        result = self.run("xdotool", "search", *search)
        return result.stdout.split()

    def visible_window(self, title: str) -> str | None:
        """Return the id of a mapped window whose title contains `title`."""
        # xdotool matches a regular expression against the raw (not always UTF-8) name:
        # search with the plain ASCII start of the title, then compare the decoded names.
        ascii_start = re.escape(re.split(r"[^ -~]|'", title, maxsplit=1)[0])
        for window in self.windows("--onlyvisible", "--name", ascii_start):
            if title in self.window_name(window):
                return window
        return None

    def wait_window(self, title: str, timeout: float = 15.0) -> str:
        """Wait for a visible window with this title; fail the test if none comes."""
        found: list[str] = []

        def look() -> bool:
            window = self.visible_window(title)
            if window:
                found.append(window)
            return bool(window)

        assert wait_for(look, timeout, 0.1), f"no window titled {title!r}: " + \
            self.run("xdotool", "search", "--name", ".").stdout
        # A window opened by a background program takes the keyboard a moment later.
        wait_for(lambda: self.run("xdotool", "getwindowfocus").stdout.strip() == found[-1],
                 2)
        return found[-1]

    def tray_window(self) -> str | None:
        """Return trayer's panel window."""
        found = self.windows("--classname", "panel")
        return found[0] if found else None

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        """Return x, y, width, height of a window on the screen."""
        values = dict(line.split("=", 1) for line in self.run(
            "xdotool", "getwindowgeometry", "--shell", window, check=True).stdout.split())
        return (int(values["X"]), int(values["Y"]), int(values["WIDTH"]),
                int(values["HEIGHT"]))

    def window_name(self, window: str) -> str:
        """Return a window's title (for the tray icon on X11: its tooltip)."""
        raw = subprocess.run(["xdotool", "getwindowname", window], env=self.env,
                             capture_output=True, check=False, timeout=30).stdout.strip()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            # pystray writes its window name as Latin-1 (an X STRING).
            return raw.decode("latin-1")

    def screenshot(self, path: Path) -> Path:
        """Save the whole screen as a PNG."""
        self.run("import", "-window", "root", str(path), check=True)
        return path

    def click(self, x: int, y: int) -> None:
        """Click the left button at a point of the screen."""
        self.run("xdotool", "mousemove", str(x), str(y), "click", "1", check=True)

    def keys(self, window: str, *keys: str) -> None:
        """Give a window the keyboard focus and type keys on it."""
        self.run("xdotool", "windowfocus", "--sync", window, check=True)
        for key in keys:
            self.run("xdotool", "key", "--clearmodifiers", key, check=True)
            time.sleep(0.1)

    # ------------------------------------------------------------ notifications

    def dunstctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run dunstctl on this session's bus."""
        return self.run("dunstctl", *args)

    def tray_shown(self) -> bool:
        """Tell whether passeur's icon is docked in this desktop's tray."""
        return tray_icon(self) is not None

    def tray_report(self) -> str:
        """Return what a test that found no icon shows: the windows there are."""
        return self.run("xwininfo", "-root", "-tree").stdout

    def notifications_shown(self) -> int:
        """Return how many notifications are on screen or queued."""
        counts = [self.dunstctl("count", what).stdout.strip() for what in ("displayed",
                                                                          "waiting")]
        return sum(int(c) for c in counts if c.isdigit())

    def history(self) -> list[dict[str, object]]:
        """Return the closed notifications (newest first): id, summary, body, appname…"""
        data = json.loads(self.dunstctl("history").stdout or '{"data": [[]]}')
        return [{key: value.get("data", "") for key, value in entry.items()
                 if isinstance(value, dict)} for entry in data["data"][0]]

    def close_notifications(self) -> None:
        """Close every notification on screen (dunst keeps them in its history)."""
        self.dunstctl("close-all")
        assert wait_for(lambda: self.notifications_shown() == 0, 5)

    def notifications_since(self, seen: set[object]) -> list[dict[str, object]]:
        """Close what is on screen and return the notifications not in `seen` (by id)."""
        self.close_notifications()
        return [entry for entry in self.history() if entry.get("id") not in seen]

    def notification_ids(self) -> set[object]:
        """Return the ids of every notification shown so far.

        Those still on screen are closed first: dunst lists only closed ones in its
        history, and one left by an earlier test would otherwise count as new.
        """
        self.close_notifications()
        return {entry.get("id") for entry in self.history()}


@contextlib.contextmanager
def desktop(dunst_rules: str = "", screen: str = "1024x768") -> Iterator[XSession]:
    """Yield a running desktop, stopped afterwards."""
    require_tools()
    with running(lambda folder: XSession(folder, dunst_rules, screen=screen)) as session:
        yield session


S = TypeVar("S", bound=XSession)


@contextlib.contextmanager
def running(make: Callable[[Path], S], prefix: str = "passeur-x-") -> Iterator[S]:
    """Yield the session `make` builds in a fresh folder, started; stop it and remove the
    folder afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    session = make(folder)
    try:
        session.start()
        yield session
    finally:
        session.stop()
        shutil.rmtree(folder, ignore_errors=True)


# A session bus that starts nothing by itself: without the standard service folders, dunst
# is not started when a program asks for the notification server (as on a desktop where
# the server crashed at start, or is not there yet).
BARE_BUS_CONF = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:tmpdir=/tmp</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass
class LateNotificationsSession(XSession):
    """A desktop whose notification server is missing at first: Xvfb, trayer and a bare
    session bus; `start_dunst_now()` brings dunst later."""

    dunst: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start Xvfb, trayer and the bus, without dunst."""
        self._start_xvfb()
        self._start_trayer()
        conf = self.folder / "bus.conf"
        conf.write_text(BARE_BUS_CONF, "utf-8")
        address = self.folder / "bus-address"
        self._spawn(["dbus-run-session", f"--config-file={conf}", "--", "sh", "-c",
                     f'printf %s "$DBUS_SESSION_BUS_ADDRESS" > "{address}.tmp" && '
                     f'mv "{address}.tmp" "{address}" && exec sleep infinity'], "bus.log")
        assert wait_for(address.exists, 10), self.log("bus.log")
        self.bus_address = address.read_text("utf-8")

    def start_dunst_now(self) -> None:
        """Start dunst on the session's bus; wait until it answers."""
        rc = self.folder / "dunstrc"
        rc.write_text(DUNSTRC + self.dunst_rules, "utf-8")
        self.dunst = self._spawn(["dunst", "-config", str(rc)], "dunst.log")
        assert wait_for(lambda: self.dunstctl("is-paused").returncode == 0, 10), \
            self.log("dunst.log")

    def crash_dunst(self) -> None:
        """Kill dunst as a crash would; the session's bus stays."""
        assert self.dunst is not None, "dunst was not started"
        self.dunst.kill()
        self.dunst.wait()


@contextlib.contextmanager
def desktop_without_notifications(pystray_backend: str = "xorg") -> Iterator[
        LateNotificationsSession]:
    """Yield a running desktop without a notification server yet, stopped afterwards."""
    require_tools()
    with running(lambda folder: LateNotificationsSession(
            folder, pystray_backend=pystray_backend)) as session:
        yield session


@contextlib.contextmanager
def gtk_desktop() -> Iterator[XSession]:
    """Yield a trayer desktop where passeur chooses its backend itself (gtk, GTK being
    installed), stopped afterwards."""
    require_tools()
    try:
        # Imported by name: the module's typing stays with the SNI helpers' own import.
        importlib.import_module("gi").require_version("Gtk", "3.0")
    except ImportError:
        pytest.fail("PyGObject is missing in the venv (pip install -e '.[test]')")
    except ValueError:
        pytest.fail("GTK's GObject typelib is missing: apt-get install -y gir1.2-gtk-3.0")
    with running(lambda folder: XSession(folder, pystray_backend="")) as session:
        yield session


# ---------------------------------------------------------------- an SNI host: xfce4-panel

SNI_TOOLS = {"xfce4-panel": "xfce4-panel", "xfconf-query": "xfconf"}
# xfce4-panel's systray plugin is a StatusNotifierItem host (and an XEmbed tray); pystray's
# appindicator backend needs libappindicator's GObject bindings (and PyGObject).
SNI_DEBIAN_PACKAGES = sorted(set(SNI_TOOLS.values()) | {"gir1.2-ayatanaappindicator3-0.1"})
PANEL_HEIGHT = 28
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
LIGHT_PANEL = (0.93, 0.93, 0.93)
DARK_PANEL = (0.16, 0.16, 0.18)
PANEL_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="dark-mode" type="bool" value="{dark}"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="{height}"/>
      <property name="background-style" type="uint" value="1"/>
      <property name="background-rgba" type="array">
        {rgba}
      </property>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
"""


def require_sni_tools() -> None:
    """Fail loudly (never skip) when a part of the SNI desktop is missing."""
    require_tools()
    missing = sorted({pkg for tool, pkg in SNI_TOOLS.items() if not shutil.which(tool)})
    try:
        import gi  # type: ignore[import-untyped]

        gi.require_version("AyatanaAppIndicator3", "0.1")
    except ImportError:
        missing.append("PyGObject in the venv (pip install -e '.[test]')")
    except ValueError:
        missing.append("gir1.2-ayatanaappindicator3-0.1")
    if missing:
        pytest.fail("missing parts of the StatusNotifierItem desktop: " + " ".join(missing))


@dataclass
class MenuNode:
    """One entry of a menu read over D-Bus (com.canonical.dbusmenu)."""

    id: int
    label: str
    enabled: bool
    visible: bool
    separator: bool
    children: list[MenuNode]


@dataclass
class SniSession(XSession):
    """A desktop whose panel is xfce4-panel (pre-seeded: no first-run question), the
    StatusNotifierItem host, with dunst, all on one private session bus."""

    dark: bool = False
    pystray_backend: str = ""  # passeur chooses (appindicator here)
    panel: subprocess.Popen[bytes] | None = None
    _bus: Any = None

    @property
    def env(self) -> dict[str, str]:
        """Return an environment for programs of this desktop (xfconfd, started by the
        bus, reads the panel's configuration from this session's folder)."""
        return super().env | {"XDG_CONFIG_HOME": str(self.folder / "config"),
                              "NO_AT_BRIDGE": "1"}  # no accessibility bus of its own

    def start(self) -> None:
        """Start Xvfb, dunst and its session bus, then the panel."""
        channel = self.folder / "config" / "xfce4" / "xfconf" / "xfce-perchannel-xml"
        channel.mkdir(parents=True)
        rgba = "".join(f'<value type="double" value="{v}"/>'
                       for v in (*(DARK_PANEL if self.dark else LIGHT_PANEL), 1))
        (channel / "xfce4-panel.xml").write_text(PANEL_XML.format(
            dark=str(self.dark).lower(), height=PANEL_HEIGHT, rgba=rgba), "utf-8")
        self._start_xvfb()
        self._start_dunst()
        self.start_panel()

    def start_panel(self) -> None:
        """Start xfce4-panel; wait until its StatusNotifierItem watcher is on the bus."""
        self.panel = self._spawn(["xfce4-panel", "--disable-wm-check"], "panel.log")
        assert wait_for(lambda: self.has_owner(SNI_WATCHER), 20), self.log("panel.log")

    def stop_panel(self) -> None:
        """Kill the panel (as a crash would); wait until its watcher left the bus."""
        assert self.panel is not None
        self.panel.kill()
        self.panel.wait(10)
        assert wait_for(lambda: not self.has_owner(SNI_WATCHER), 10)

    def set_dark(self, dark: bool) -> None:
        """Switch the panel between a light and a dark background, live."""
        self.dark = dark
        argv = ["xfconf-query", "-c", "xfce4-panel", "-p",
                "/panels/panel-1/background-rgba"]
        for value in (*(DARK_PANEL if dark else LIGHT_PANEL), 1):
            argv += ["-t", "double", "-s", str(value)]
        self.run(*argv, check=True)
        self.run("xfconf-query", "-c", "xfce4-panel", "-p", "/panels/dark-mode", "-t",
                 "bool", "-s", str(dark).lower(), check=True)

    def stop(self) -> None:
        """Close the bus connection, then stop everything."""
        if self._bus is not None:
            self._bus.close_sync(None)
            self._bus = None
        super().stop()

    # ------------------------------------------------------------ D-Bus

    def bus(self) -> Any:
        """Return a connection of the tests' own to this session's bus."""
        from gi.repository import Gio  # type: ignore[import-untyped]

        if self._bus is None:
            flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
                     | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
            self._bus = Gio.DBusConnection.new_for_address_sync(self.bus_address, flags,
                                                                None, None)
        return self._bus

    def call(self, dest: str, path: str, interface: str, method: str,
             signature: str | None = None, *args: object) -> Any:
        """Call a D-Bus method; return its unpacked answer (GLib.Error on failure)."""
        from gi.repository import Gio, GLib

        params = GLib.Variant(signature, args) if signature else None
        reply = self.bus().call_sync(dest, path, interface, method, params, None,
                                     Gio.DBusCallFlags.NONE, 5000, None)
        return reply.unpack() if reply is not None else None

    def has_owner(self, name: str) -> bool:
        """Tell whether a name is owned on this session's bus."""
        return bool(self.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                              "org.freedesktop.DBus", "NameHasOwner", "(s)", name)[0])

    def tray_shown(self) -> bool:
        """Tell whether passeur's item is registered with the panel and shown (not
        passive)."""
        item = self.sni_item()
        return item is not None and self.sni_properties(item).get("Status") == "Active"

    def tray_report(self) -> str:
        """Return what a test that found no item shows: the panel's log."""
        return self.log("panel.log")

    def sni_items(self) -> list[str]:
        """Return the items registered with the watcher ("bus-name/object/path")."""
        from gi.repository import GLib

        try:
            (items,) = self.call(SNI_WATCHER, "/StatusNotifierWatcher",
                                 "org.freedesktop.DBus.Properties", "Get", "(ss)",
                                 SNI_WATCHER, "RegisteredStatusNotifierItems")
        except GLib.Error:
            return []
        return list(items)

    def sni_item(self, item_id: str = "passeur") -> tuple[str, str] | None:
        """Return the bus name and object path of the registered item with this id."""
        for item in self.sni_items():
            name, _slash, path = item.partition("/")
            if self.sni_properties((name, "/" + path)).get("Id") == item_id:
                return name, "/" + path
        return None

    def sni_properties(self, item: tuple[str, str]) -> dict[str, Any]:
        """Return the StatusNotifierItem properties of an item."""
        from gi.repository import GLib

        try:
            (props,) = self.call(item[0], item[1], "org.freedesktop.DBus.Properties",
                                 "GetAll", "(s)", "org.kde.StatusNotifierItem")
        except GLib.Error:
            return {}
        return dict(props)

    def menu(self, item: tuple[str, str]) -> list[MenuNode]:
        """Return an item's menu as the host reads it (com.canonical.dbusmenu)."""
        path = self.sni_properties(item)["Menu"]
        _revision, root = self.call(item[0], path, "com.canonical.dbusmenu", "GetLayout",
                                    "(iias)", 0, -1, [])
        return [_menu_node(child) for child in root[2]]

    def activate(self, item: tuple[str, str], node: MenuNode) -> None:
        """Click a menu entry the way a host does."""
        from gi.repository import GLib

        path = self.sni_properties(item)["Menu"]
        self.call(item[0], path, "com.canonical.dbusmenu", "Event", "(isvu)", node.id,
                  "clicked", GLib.Variant("s", ""), 0)


def _menu_node(layout: tuple[int, dict[str, Any], list[Any]]) -> MenuNode:
    number, props, children = layout
    return MenuNode(number, str(props.get("label", "")), bool(props.get("enabled", True)),
                    bool(props.get("visible", True)), props.get("type") == "separator",
                    [_menu_node(child) for child in children])


@contextlib.contextmanager
def sni_desktop(dark: bool = False) -> Iterator[SniSession]:
    """Yield a running desktop with xfce4-panel as the SNI host, stopped afterwards."""
    require_sni_tools()
    with running(lambda folder: SniSession(folder, dark=dark), "passeur-sni-") as session:
        yield session


# ---------------------------------------------------------------- the tray under test


class DropSource(Source):
    """A source of the tests' own: the files put in a folder arrive as one batch.

    A test copies update files into the folder, then creates `go`; the source imports
    them all through the real intake and publishes what a real source publishes.
    """

    def __init__(self, ctx: object, folder: Path) -> None:
        from daemon.context import Context

        assert isinstance(ctx, Context)
        super().__init__()
        self.ctx = ctx
        self.folder = folder
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Watch the folder (the tests' only polling loop: a real source sleeps)."""
        self._thread = threading.Thread(target=self._run, name="drop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)

    def poll_now(self) -> None:
        """Import whatever is in the folder now."""
        (self.folder / "go").touch()

    def _run(self) -> None:
        go = self.folder / "go"
        while not self._stop.wait(0.1):
            if go.exists() and not self.paused:
                go.unlink()
                self._batch()

    def _batch(self) -> None:
        from daemon import events as ev
        from daemon.queue import Outcome

        bus = self.ctx.bus
        bus.publish(ev.PollStarted("drop"))
        queued, rejected, duplicates = [], [], 0
        for path in sorted(self.folder.glob("*.wwz")):
            result = self.ctx.intake.import_path(path, "folder:drop")
            path.unlink()
            if result.outcome is Outcome.QUEUED and result.item is not None:
                queued.append(result.name)
                bus.publish(ev.UpdateQueued(result.item.id, result.name,
                                            result.item.dossier or "", "folder:drop",
                                            result.item.etalon))
            elif result.outcome is Outcome.DUPLICATE:
                duplicates += 1
            else:
                rejected.append(result.name)
        if queued or rejected or duplicates:
            bus.publish(ev.BatchFinished("folder:drop", tuple(queued), tuple(rejected),
                                         duplicates))
        bus.publish(ev.PollFinished("drop", bool(queued or rejected), len(queued)))


def launch(home: Path, drop: Path) -> int:
    """What `passeur run` does, with the drop source: for the tests and the benchmark."""
    from daemon import i18n
    from daemon.context import Context
    from daemon.logs import setup_logging
    from daemon.platform import install_signal_handlers
    from daemon.service import build_service
    from tray.app import run_with_tray

    # A hung launcher shows where each thread is on SIGUSR1 (stop_tray sends it).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    ctx = Context(home)
    i18n.setup(ctx.config.language)
    ctx.paths.ensure()
    setup_logging(ctx.paths.logs)
    logging.getLogger("passeur").info("tray test launcher on %s", os.environ.get("DISPLAY"))
    service = build_service(ctx)
    service.sources.append(DropSource(ctx, drop))
    install_signal_handlers(service.stop)
    stamps = os.environ.get("PASSEUR_TEST_QUEUED_STAMPS")
    if stamps:
        _record_queued_times(ctx, Path(stamps))
    return run_with_tray(ctx, service)


def _record_queued_times(ctx: object, path: Path) -> None:
    """Write when each update was queued (for the notification latency benchmark)."""
    from daemon import events as ev
    from daemon.context import Context

    assert isinstance(ctx, Context)

    def record(event: ev.Event) -> None:
        with path.open("a", encoding="utf-8") as out:
            out.write(f"{event.at:.6f}\n")

    ctx.bus.subscribe("queued-stamps", record, ev.UpdateQueued)


def tray_env(env: dict[str, str], home: Path) -> dict[str, str]:
    """Return the environment of a passeur process in this home, in French."""
    return env | {"PASSEUR_HOME": str(home), "LANG": "fr_FR.UTF-8", "LANGUAGE": "",
                  "LC_ALL": "", "LC_MESSAGES": "", "PYTHONPATH": str(ROOT)}


def launcher_argv(home: Path, drop: Path) -> list[str]:
    """Return the command line of the tests' launcher."""
    return [sys.executable, "-m", "tests.xsession", "launch", str(home), str(drop)]


def start_tray(session: XSession, home: Path, drop: Path | None,
               extra_env: dict[str, str] | None = None,
               icon: Callable[[XSession], str | None] | None = None) -> subprocess.Popen[str]:
    """Start the launcher (or, without a drop folder, the real `passeur run`) on this
    desktop; wait until its icon is shown (found by `icon`, else as the desktop shows
    icons: `session.tray_shown`)."""
    argv = [sys.executable, "-m", "daemon.cli", "run"]
    if drop is not None:
        drop.mkdir(parents=True, exist_ok=True)
        argv = launcher_argv(home, drop)
    env = tray_env(session.env, home) | (extra_env or {})
    process = subprocess.Popen(argv, env=env, cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def shown() -> bool:
        return icon(session) is not None if icon is not None else session.tray_shown()

    docked = wait_for(lambda: shown() or process.poll() is not None, 30)
    if not docked or process.poll() is not None:
        report = session.tray_report()
        process.kill()
        _out, err = process.communicate()
        pytest.fail(f"the tray icon did not appear: {err}\n{report}")
    return process


def tray_icon(session: XSession) -> str | None:
    """Return passeur's icon window once it is docked in the tray (inside the panel)."""
    for window in session.windows("--classname", "passeurSystemTrayIcon"):
        x, y, width, _height = session.geometry(window)
        if width >= 16 and 0 <= y < TRAY_HEIGHT and x > 0:
            return window
    return None


def stop_tray(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Stop the launcher like the session would (SIGTERM); return its code and stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # its threads' stacks, for the failure report
        time.sleep(1)
        process.kill()
        _out, err = process.communicate()
        return -9, err
    return process.returncode, err


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "launch":
        sys.exit(launch(Path(sys.argv[2]), Path(sys.argv[3])))
    print("usage: python -m tests.xsession launch HOME DROP", file=sys.stderr)
    sys.exit(2)
