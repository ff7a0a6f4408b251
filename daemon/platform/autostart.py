"""Start at login, common to the three systems: the command, the user's wish, the drift check.

Each system's module provides `login_mechanisms(...)` (see common.LoginMechanisms) that
writes into the folders (or registry) it is given; this module decides what to write and
remembers what the user asked for, in `autostart.json` of the data folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.i18n import _
from daemon.platform.common import LoginEntry, LoginMechanism, LoginMechanisms

if TYPE_CHECKING:
    from daemon.config import Paths

WISH_FILE = "autostart.json"


def launch_command(home: str | os.PathLike[str] | None, headless: bool,
                   executable: str | None = None, frozen: bool | None = None,
                   platform: str = sys.platform) -> list[str]:
    """Return the command that starts *this* installation's service, never a PATH lookup.

    Frozen (PyInstaller): the executable itself; else the interpreter in use (a venv's, if
    any) with `-m daemon`. `--home` is added when the home is relocated, as login does not
    carry $PASSEUR_HOME.
    """
    executable = executable or sys.executable
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    if platform == "win32":
        from daemon.platform.windows import windowless

        executable = windowless(executable)
    argv = [executable] if frozen else [executable, "-m", "daemon"]
    if home:
        argv += ["--home", os.fspath(Path(home).expanduser().absolute())]
    argv.append("run")
    if headless:
        argv.append("--headless")
    return argv


def relocated_home(option: str | None) -> str | None:
    """Return the home given by --home or $PASSEUR_HOME, None for the default folders."""
    return option or os.environ.get("PASSEUR_HOME") or None


def mechanisms_for_this_system(paths: Paths) -> LoginMechanisms:
    """Return this system's start-at-login mechanisms, on the user's real folders."""
    if sys.platform == "win32":
        from daemon.platform import windows

        return windows.login_mechanisms()
    if sys.platform == "darwin":
        from daemon.platform import macos

        return macos.login_mechanisms(logs=paths.logs)
    from daemon.platform import linux

    return linux.login_mechanisms()


# ---------------------------------------------------------------------------------------
# The user's wish


@dataclass(frozen=True)
class Wish:
    """What the user last asked for, and the last drift already told."""

    wanted: bool
    headless: bool
    when: str  # ISO 8601, UTC
    said: str | None = None  # "gone" or "off" once told; None while all is well

    @classmethod
    def now(cls, wanted: bool, headless: bool) -> Wish:
        """Return a wish made now."""
        return cls(wanted, headless, datetime.now(UTC).isoformat(timespec="seconds"))


def wish_path(paths: Paths) -> Path:
    """Return the file that records the wish."""
    return paths.data / WISH_FILE


def read_wish(paths: Paths) -> Wish | None:
    """Return the recorded wish; None when none was ever made (or the file is unreadable)."""
    try:
        raw: Any = json.loads(wish_path(paths).read_text(encoding="utf-8"))
        return Wish(wanted=bool(raw["wanted"]), headless=bool(raw.get("headless", False)),
                    when=str(raw.get("when", "")),
                    said=raw.get("said") if raw.get("said") in ("gone", "off") else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_wish(paths: Paths, wish: Wish) -> None:
    """Record the wish durably."""
    from daemon.fsutil import atomic_write_bytes

    paths.data.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write_bytes(wish_path(paths), json.dumps(asdict(wish), indent=2).encode() + b"\n")


# ---------------------------------------------------------------------------------------
# enable / disable / status


def enable(paths: Paths, mechanisms: LoginMechanisms, argv: Sequence[str],
           headless: bool) -> LoginEntry:
    """Write the entry that runs `argv` at login and remove the other mechanism's.

    Only one of them may start passeur: two would fight over the single instance.
    """
    chosen = mechanisms.pick(headless)
    for other in mechanisms.others(chosen):
        other.uninstall()
    chosen.install(argv)
    write_wish(paths, Wish.now(True, headless))
    return chosen.entry()


def disable(paths: Paths, mechanisms: LoginMechanisms) -> None:
    """Remove every start-at-login entry of passeur and record that the user wants none."""
    for mechanism in (mechanisms.desktop, *mechanisms.others(mechanisms.desktop)):
        mechanism.uninstall()
    previous = read_wish(paths)
    write_wish(paths, Wish.now(False, previous.headless if previous else False))


@dataclass(frozen=True)
class Status:
    """Start at login as it is now, for `passeur autostart status`."""

    enabled: bool
    mechanism: str | None
    description: str | None
    location: str | None
    command: str | None
    expected_command: str
    wanted: bool | None
    turned_off_elsewhere: bool
    turned_off_by: str | None

    @property
    def outdated(self) -> bool:
        """Tell whether the written command is not the one of this installation."""
        return self.command is not None and self.command != self.expected_command

    def as_json(self) -> dict[str, object]:
        """Return the documented JSON form (docs/platforms.md)."""
        return {
            "enabled": self.enabled,
            "mechanism": self.mechanism,
            "location": self.location,
            "command": self.command,
            "expected_command": self.expected_command,
            "outdated": self.outdated,
            "wanted": self.wanted,
            "turned_off_elsewhere": self.turned_off_elsewhere,
        }


def status(paths: Paths, mechanisms: LoginMechanisms,
           home: str | os.PathLike[str] | None) -> Status:
    """Read where start at login stands, against the recorded wish.

    `home` is the relocated home (or None), for the command this installation would write.
    """
    wish = read_wish(paths)
    chosen = _active(mechanisms, wish)
    headless = chosen is mechanisms.headless and chosen is not mechanisms.desktop
    if wish is not None and mechanisms.headless is mechanisms.desktop:
        headless = wish.headless  # one mechanism for both: the wish tells which command
    argv_if_enabled = launch_command(home, headless)
    entry = chosen.entry()
    off_elsewhere = bool(wish and wish.wanted and not entry.enabled)
    return Status(
        enabled=entry.enabled,
        mechanism=chosen.name if entry.present or off_elsewhere else None,
        description=chosen.describe(),
        location=entry.location if entry.present or off_elsewhere else None,
        command=entry.command_line,
        expected_command=chosen.command_line(argv_if_enabled),
        wanted=wish.wanted if wish else None,
        turned_off_elsewhere=off_elsewhere,
        turned_off_by=chosen.turned_off_by() if off_elsewhere and entry.present else None,
    )


def _active(mechanisms: LoginMechanisms, wish: Wish | None) -> LoginMechanism:
    """Return the mechanism that holds (or should hold) passeur's entry."""
    if wish is not None and wish.wanted:
        return mechanisms.pick(wish.headless)
    for mechanism in (mechanisms.desktop, *mechanisms.others(mechanisms.desktop)):
        if mechanism.entry().present:
            return mechanism
    return mechanisms.pick(wish.headless if wish else False)


# ---------------------------------------------------------------------------------------
# The drift check, at every start


def drift(paths: Paths, mechanisms: LoginMechanisms | None = None) -> str | None:
    """Return a sentence when start at login, asked for, was turned off elsewhere.

    Said once per change: the answer is remembered in the wish, and comes again only after
    start at login was back on (or the user asked again) and then went off once more.
    """
    wish = read_wish(paths)
    if wish is None or not wish.wanted:
        return None
    if mechanisms is None:
        mechanisms = mechanisms_for_this_system(paths)
    mechanism = mechanisms.pick(wish.headless)
    entry = mechanism.entry()
    problem = None if entry.enabled else ("off" if entry.present else "gone")
    if problem == wish.said:
        return None
    write_wish(paths, replace(wish, said=problem))
    if problem == "off":
        return _("Start at login was turned off outside passeur ({tool}). To turn it back "
                 "on: « passeur autostart enable ».").format(tool=mechanism.turned_off_by())
    if problem == "gone":
        return _("Start at login is off: {location} was removed outside passeur. To turn it "
                 "back on: « passeur autostart enable ».").format(location=entry.location)
    return None


def summary(paths: Paths, home: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Return `passeur autostart status --json` for this system (for `passeur diagnose`)."""
    return status(paths, mechanisms_for_this_system(paths), relocated_home(
        os.fspath(home) if home is not None else None)).as_json()
