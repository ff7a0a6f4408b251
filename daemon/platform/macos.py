"""macOS: platformdirs' runtime folder, LOCAL_PEERCRED, `open`; the channel of posix.py.

Importable on every system (nothing macOS-only at import), so its logic is tested on Linux.
"""

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

SOL_LOCAL = 0
LOCAL_PEERCRED = 1
XUCRED_VERSION = 0
# struct xucred: u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16].
_XUCRED_HEAD = struct.Struct("=II")
XUCRED_SIZE = 4 + 4 + 2 + 2 + 16 * 4  # the short is padded to align the groups


def has_display() -> bool:
    """Tell whether a graphical session is there: on macOS, always."""
    return True


def open_with_system(path: Path) -> bool:
    """Open a file or folder with the user's default program (`open`); False on failure."""
    return posix.open_with_opener("open", path)


def install_signal_handlers(stop: Callable[[], None]) -> StopSignals:
    """Call `stop` on SIGTERM, SIGINT and SIGHUP, logging which signal asked."""
    return install_stop_handlers(stop, posix.STOP_SIGNALS)


def runtime_dir() -> Path:
    """Return the user's private runtime folder (platformdirs'), created 0700 and checked."""
    import platformdirs

    folder = Path(platformdirs.user_runtime_dir("passeur", appauthor=False))
    folder.parent.mkdir(parents=True, exist_ok=True)
    return posix.private_dir(folder)


def parse_xucred(data: bytes) -> int | None:
    """Return the uid in a struct xucred, None when it is not one this code knows."""
    if len(data) < _XUCRED_HEAD.size:
        return None
    version, uid = _XUCRED_HEAD.unpack_from(data)
    return int(uid) if version == XUCRED_VERSION else None


def peer_uid(conn: socket.socket) -> int | None:
    """Return the uid of the process at the other end of a connected AF_UNIX socket."""
    try:
        data = conn.getsockopt(SOL_LOCAL, LOCAL_PEERCRED, XUCRED_SIZE)
    except OSError:
        return None
    return parse_xucred(data)


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
# Start at login: a LaunchAgent, loaded by launchd in the user's GUI session

AGENT_LABEL = "fr.passeur.agent"


def parse_disabled(text: str, label: str = AGENT_LABEL) -> bool:
    """Tell whether `launchctl print-disabled gui/<uid>` lists `label` as disabled."""
    # Lines read `"fr.passeur.agent" => disabled` (older systems: `=> true`).
    for line in text.splitlines():
        name, arrow, state = line.strip().partition("=>")
        if arrow and name.strip().strip('"') == label:
            return state.strip().rstrip(",") in ("disabled", "true")
    return False


class LaunchAgent:
    """~/Library/LaunchAgents/fr.passeur.agent.plist."""

    name = "launch-agent"

    def __init__(self, home: Path, logs: Path, launchctl: bool) -> None:
        self.path = home / "Library" / "LaunchAgents" / f"{AGENT_LABEL}.plist"
        self.logs = logs
        self.launchctl = launchctl  # talk to launchd (only on a real Mac session)

    def describe(self) -> str:
        """Name the mechanism for the user."""
        return _("a LaunchAgent of the macOS session")

    def turned_off_by(self) -> str:
        """Name the tool that turns it off elsewhere."""
        return _("System Settings, General, Login Items")

    def command_line(self, argv: Sequence[str]) -> str:
        """Return `argv` as a shell would read it (the plist keeps it as a list)."""
        import shlex

        return shlex.join(argv)

    def agent(self, argv: Sequence[str]) -> dict[str, object]:
        """Return the plist's content for `argv`."""
        log_file = str(self.logs / "launchd.log")
        return {
            "Label": AGENT_LABEL,
            "ProgramArguments": list(argv),
            "RunAtLoad": True,
            "KeepAlive": False,  # passeur keeps itself running; a crash loop helps no one
            "ProcessType": "Interactive",
            "StandardOutPath": log_file,
            "StandardErrorPath": log_file,
        }

    def install(self, argv: Sequence[str]) -> None:
        """Write the plist and have launchd take it (it starts at once, then at logins)."""
        import plistlib

        from daemon.fsutil import atomic_write_bytes

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_bytes(self.path, plistlib.dumps(self.agent(argv)))
        if self.launchctl:
            self._launchctl("bootout", f"{self._domain()}/{AGENT_LABEL}")
            self._launchctl("enable", f"{self._domain()}/{AGENT_LABEL}")
            self._launchctl("bootstrap", self._domain(), str(self.path))

    def uninstall(self) -> None:
        """Unload the agent and remove its plist."""
        from daemon.fsutil import fsync_dir

        if self.launchctl and self.path.exists():
            self._launchctl("bootout", f"{self._domain()}/{AGENT_LABEL}")
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            fsync_dir(self.path.parent)

    def entry(self) -> LoginEntry:
        """Read the plist, and launchd's "disabled" list where launchctl is there."""
        import plistlib

        try:
            with open(self.path, "rb") as handle:
                agent = plistlib.load(handle)
        except FileNotFoundError:
            return LoginEntry(self.name, str(self.path), False, False, None)
        except (OSError, plistlib.InvalidFileException, ValueError):
            agent = {}
        argv = agent.get("ProgramArguments") if isinstance(agent, dict) else None
        command = (self.command_line([str(a) for a in argv])
                   if isinstance(argv, list) else None)
        off = False
        if self.launchctl:
            listing = self._launchctl("print-disabled", self._domain())
            off = listing is not None and parse_disabled(listing)
        return LoginEntry(self.name, str(self.path), True, off, command)

    @staticmethod
    def _domain() -> str:
        return f"gui/{os.getuid()}"

    @staticmethod
    def _launchctl(*args: str) -> str | None:
        """Run launchctl; return its output, None when it failed."""
        try:
            result = subprocess.run(["launchctl", *args], capture_output=True, text=True,
                                    timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.info("launchctl %s: %s", " ".join(args), exc)
            return None
        if result.returncode != 0:
            log.info("launchctl %s: %s", " ".join(args), result.stderr.strip())
            return None
        return result.stdout


def login_mechanisms(home: Path | None = None, logs: Path | None = None,
                     launchctl: bool | None = None) -> LoginMechanisms:
    """Return macOS's start-at-login mechanism (the same with or without a tray)."""
    if home is None:
        import shutil

        home = Path.home()
        launchctl = shutil.which("launchctl") is not None if launchctl is None else launchctl
    if logs is None:
        import platformdirs

        logs = Path(platformdirs.user_log_dir("passeur", appauthor=False))
    agent = LaunchAgent(home, logs, bool(launchctl))
    return LoginMechanisms(desktop=agent, headless=agent)
