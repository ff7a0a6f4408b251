"""Linux: XDG runtime folder, SO_PEERCRED, xdg-open; the control channel of posix.py."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon.i18n import _
from daemon.platform import posix
from daemon.platform.common import (
    LoginEntry,
    LoginMechanisms,
    StopSignals,
    install_stop_handlers,
)

log = logging.getLogger(__name__)

# struct ucred: pid_t pid; uid_t uid; gid_t gid.
_UCRED = struct.Struct("=iII")
_NO_UID = 0xFFFFFFFF


def has_display() -> bool:
    """Tell whether a graphical session is there to show a tray icon."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_with_system(path: Path) -> bool:
    """Open a file or folder with the user's default program (xdg-open); False on failure."""
    return posix.open_with_opener("xdg-open", path)


def install_signal_handlers(stop: Callable[[], None]) -> StopSignals:
    """Call `stop` on SIGTERM, SIGINT and SIGHUP, logging which signal asked."""
    return install_stop_handlers(stop, posix.STOP_SIGNALS)


def runtime_dir() -> Path:
    """Return the user's private runtime folder: $XDG_RUNTIME_DIR when sound, else /tmp's."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and posix.is_private_dir(Path(xdg)):
        return Path(xdg)
    return posix.fallback_runtime_dir()


def peer_uid(conn: socket.socket) -> int | None:
    """Return the uid of the process at the other end of a connected AF_UNIX socket."""
    try:
        data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, _gid = _UCRED.unpack(data)
    # A socket with no peer reports pid 0 and uid (uid_t)-1: nobody is there.
    if pid == 0 or uid == _NO_UID:
        return None
    return int(uid)


def control_endpoint(data_dir: Path) -> str:
    """Return where the service of the home `data_dir` listens (a socket file)."""
    return posix.endpoint_in(runtime_dir(), data_dir)


def listen(endpoint: str) -> posix.UnixListener:
    """Listen at `endpoint` (see daemon.platform)."""
    return posix.listen(endpoint, peer_uid)


def connect(endpoint: str, timeout: float) -> posix.UnixConnection | None:
    """Connect to the service at `endpoint`; None when nobody listens (see daemon.platform)."""
    return posix.connect(endpoint, timeout, peer_uid)


# ---------------------------------------------------------------------------------------
# Start at login: the XDG autostart entry (desktop sessions), a systemd user unit (headless)

UNIT_NAME = "passeur.service"

# Characters the Desktop Entry specification reserves in Exec: an argument holding one is
# written between double quotes.
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
# Inside double quotes these four take a backslash.
_EXEC_ESCAPED = frozenset("\"`$\\")

DESKTOP_ENTRY = """\
[Desktop Entry]
Type=Application
Version=1.4
Name=passeur
GenericName=Exchanges with your accountant
GenericName[fr]=Échanges avec votre comptable
Comment=Receives your accountant's updates and sends your dossier
Comment[fr]=Reçoit les mises à jour de votre comptable et envoie votre dossier
Exec={exec}
Icon=mail-send-receive
Terminal=false
X-GNOME-Autostart-enabled=true
X-GNOME-Autostart-Delay=5
"""

# Without ProtectSystem= or PrivateTmp=: passeur writes to removable keys under /media,
# to the accounting application's folders and to its socket in the runtime folder, all of
# which a read-only system or a private /tmp would break.
SYSTEMD_UNIT = """\
# Written by `passeur autostart enable --headless`; `passeur autostart disable` removes it.
[Unit]
Description=passeur - dossiers comptables entre vous et votre comptable
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
ExecStart={exec}
# SIGTERM lets passeur finish the file it is writing; nothing is left half-written.
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=on-failure
RestartSec=30
NoNewPrivileges=yes
Nice=5

[Install]
WantedBy=default.target
"""


def config_home() -> Path:
    """Return $XDG_CONFIG_HOME, or ~/.config when it is unset or not absolute."""
    value = os.environ.get("XDG_CONFIG_HOME", "")
    return Path(value) if os.path.isabs(value) else Path.home() / ".config"


def desktop_exec(argv: Sequence[str]) -> str:
    """Quote `argv` for a Desktop Entry's Exec key (quoting, then the string escapes)."""
    words = []
    for arg in argv:
        _refuse_newline(arg)
        word = arg.replace("%", "%%")  # a lone % would start a field code
        if not word or _EXEC_RESERVED.intersection(word):
            word = '"' + "".join("\\" + c if c in _EXEC_ESCAPED else c for c in word) + '"'
        words.append(word)
    # The key file's own escapes come on top: every backslash is written twice.
    return " ".join(words).replace("\\", "\\\\")


def systemd_exec(argv: Sequence[str]) -> str:
    """Quote `argv` for a systemd ExecStart= line (no variable or specifier expansion)."""
    words = []
    for arg in argv:
        _refuse_newline(arg)
        escaped = arg.replace("\\", "\\\\").replace('"', '\\"')
        words.append('"' + escaped.replace("$", "$$").replace("%", "%%") + '"')
    return " ".join(words)


def _refuse_newline(arg: str) -> None:
    if "\n" in arg or "\r" in arg:
        raise ValueError(_("A start-at-login command cannot hold a line break: {arg!r}")
                         .format(arg=arg))


def _read_key_file(path: Path) -> dict[str, dict[str, str]] | None:
    """Read an ini-style file (desktop entry, unit); None when it is absent or unreadable."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, configparser.Error):
        return {}
    return {name: dict(parser[name]) for name in parser.sections()}


def _write_private(path: Path, text: str) -> None:
    from daemon.fsutil import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


class XdgAutostart:
    """$XDG_CONFIG_HOME/autostart/passeur.desktop, run by the desktop session at login."""

    name = "xdg-autostart"

    def __init__(self, config: Path) -> None:
        self.path = config / "autostart" / "passeur.desktop"

    def describe(self) -> str:
        """Name the mechanism for the user."""
        return _("the desktop session's startup applications (XDG autostart)")

    def turned_off_by(self) -> str:
        """Name the tool that turns it off elsewhere."""
        return _("the desktop's startup applications settings")

    def command_line(self, argv: Sequence[str]) -> str:
        """Return the Exec value for `argv`."""
        return desktop_exec(argv)

    def install(self, argv: Sequence[str]) -> None:
        """Write the entry, turned on."""
        _write_private(self.path, DESKTOP_ENTRY.format(exec=desktop_exec(argv)))

    def uninstall(self) -> None:
        """Remove the entry."""
        from daemon.fsutil import fsync_dir

        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            fsync_dir(self.path.parent)

    def entry(self) -> LoginEntry:
        """Read the entry; Hidden=true or X-GNOME-Autostart-enabled=false turn it off."""
        sections = _read_key_file(self.path)
        if sections is None:
            return LoginEntry(self.name, str(self.path), False, False, None)
        keys = sections.get("Desktop Entry", {})
        off = (keys.get("Hidden", "").strip().lower() == "true"
               or keys.get("X-GNOME-Autostart-enabled", "").strip().lower() == "false")
        return LoginEntry(self.name, str(self.path), True, off, keys.get("Exec"))


class SystemdUserUnit:
    """$XDG_CONFIG_HOME/systemd/user/passeur.service, wanted by default.target."""

    name = "systemd-user"

    def __init__(self, config: Path, manager: bool) -> None:
        self.folder = config / "systemd" / "user"
        self.path = self.folder / UNIT_NAME
        self.link = self.folder / "default.target.wants" / UNIT_NAME
        self.manager = manager  # a user manager runs: tell it through systemctl

    def describe(self) -> str:
        """Name the mechanism for the user."""
        return _("a systemd user service (without a desktop)")

    def turned_off_by(self) -> str:
        """Name the tool that turns it off elsewhere."""
        return "systemctl --user disable"  # a command: the same in every language

    def command_line(self, argv: Sequence[str]) -> str:
        """Return the ExecStart value for `argv`."""
        return systemd_exec(argv)

    def install(self, argv: Sequence[str]) -> None:
        """Write the unit and enable it (through systemctl when a user manager runs)."""
        _write_private(self.path, SYSTEMD_UNIT.format(exec=systemd_exec(argv)))
        if self.manager:
            self._systemctl("daemon-reload")
            if self._systemctl("enable", UNIT_NAME):
                return
        self._link()

    def _link(self) -> None:
        """Enable the unit as systemctl would: a link in default.target.wants."""
        from daemon.fsutil import fsync_dir

        self.link.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()
        self.link.symlink_to(self.path)
        fsync_dir(self.link.parent)

    def uninstall(self) -> None:
        """Disable and remove the unit."""
        from daemon.fsutil import fsync_dir

        if self.manager and self.path.exists():
            self._systemctl("disable", UNIT_NAME)
        for path in (self.link, self.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                fsync_dir(path.parent)
        if self.manager:
            self._systemctl("daemon-reload")

    def _systemctl(self, *args: str) -> bool:
        try:
            result = subprocess.run(["systemctl", "--user", *args], capture_output=True,
                                    text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.info("systemctl --user %s: %s", " ".join(args), exc)
            return False
        if result.returncode != 0:
            log.info("systemctl --user %s: %s", " ".join(args), result.stderr.strip())
        return result.returncode == 0

    def entry(self) -> LoginEntry:
        """Read the unit; without its default.target.wants link it is turned off."""
        sections = _read_key_file(self.path)
        if sections is None:
            return LoginEntry(self.name, str(self.path), False, False, None)
        wanted = self.link.exists()  # a dangling link enables nothing
        command = sections.get("Service", {}).get("ExecStart")
        return LoginEntry(self.name, str(self.path), True, not wanted, command)


def user_manager_runs() -> bool:
    """Tell whether this user's systemd manager runs (its private socket is there)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return bool(runtime) and os.path.exists(os.path.join(runtime, "systemd", "private"))


def login_mechanisms(config: Path | None = None,
                     manager: bool | None = None) -> LoginMechanisms:
    """Return Linux's start-at-login mechanisms, writing under `config` ($XDG_CONFIG_HOME)."""
    if config is None:
        config = config_home()
        manager = user_manager_runs() if manager is None else manager
    return LoginMechanisms(desktop=XdgAutostart(config),
                           headless=SystemdUserUnit(config, bool(manager)))
