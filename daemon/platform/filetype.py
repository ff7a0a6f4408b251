"""Registering the invitation file type (`.passeur`) so that a double-click opens the
set-up window (`passeur setup --gui FILE`): a shared-mime-info type and a desktop entry on
Linux, the user's file associations on Windows; on macOS the bundle's Info.plist declares
it (packaging/passeur.spec)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon.fsutil import atomic_write_bytes

MIME_TYPE = "application/x-passeur-invitation"
SUFFIX = ".passeur"
DESKTOP_NAME = "passeur-setup.desktop"
MIME_PACKAGE = "passeur-invitation.xml"
WINDOWS_PROG_ID = "passeur.invitation"


def open_command(home: str | None) -> list[str]:
    """Return the command that opens an invitation with this installation (the file's
    path comes after it)."""
    from daemon.platform.autostart import launch_command

    # The same program start at login uses (never a PATH lookup), asked for `setup`
    # instead of its final `run`.
    return [*launch_command(home, headless=False)[:-1], "setup", "--gui"]


# ---------------------------------------------------------------- Linux (freedesktop)


def mime_xml() -> str:
    """Return the shared-mime-info package declaring the invitation type."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<mime-info xmlns="http://www.freedesktop.org/standards/shared-mime-info">
  <mime-type type="{MIME_TYPE}">
    <comment>passeur invitation</comment>
    <comment xml:lang="fr">Invitation passeur</comment>
    <glob pattern="*{SUFFIX}"/>
    <sub-class-of type="application/json"/>
  </mime-type>
</mime-info>
"""


def _desktop_quote(arg: str) -> str:
    # The desktop entry's Exec key quotes with double quotes and escapes ", `, $ and \.
    if not any(c in arg for c in ' \t\n"\'\\><~|&;$*?#()`'):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def desktop_entry(command: Sequence[str]) -> str:
    """Return the desktop entry that opens invitations with `command`."""
    exec_line = " ".join(_desktop_quote(arg).replace("%", "%%") for arg in command)
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=passeur\n"
        "Name[fr]=passeur\n"
        "Comment=Set passeur up from your accountant's invitation\n"
        "Comment[fr]=Configurer passeur avec l'invitation de votre comptable\n"
        f"Exec={exec_line} %f\n"
        f"MimeType={MIME_TYPE};\n"
        "NoDisplay=true\n"
        "Terminal=false\n"
        "Categories=Office;Finance;\n"
    )


def register_linux(command: Sequence[str], data_home: Path | None = None) -> list[Path]:
    """Write the type and the desktop entry into the user's data folder, and tell the
    desktop (update-mime-database, update-desktop-database, xdg-mime) when those tools
    exist; return the files written."""
    root = data_home or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share")
    package = root / "mime" / "packages" / MIME_PACKAGE
    entry = root / "applications" / DESKTOP_NAME
    for path, text in ((package, mime_xml()), (entry, desktop_entry(command))):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text.encode("utf-8"))
    for tool in (["update-mime-database", str(root / "mime")],
                 ["update-desktop-database", str(root / "applications")],
                 ["xdg-mime", "default", DESKTOP_NAME, MIME_TYPE]):
        if shutil.which(tool[0]):
            subprocess.run(tool, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=False)
    return [package, entry]


# ---------------------------------------------------------------- Windows


RegistryValue = tuple[str, str, str]  # key under HKEY_CURRENT_USER, value name, data


def windows_registry_values(command: Sequence[str]) -> list[RegistryValue]:
    """Return the per-user file association of `.passeur` (no administrator rights)."""
    classes = r"Software\Classes"
    open_line = subprocess.list2cmdline([*command, "%1"])
    return [
        (rf"{classes}\{SUFFIX}", "", WINDOWS_PROG_ID),
        (rf"{classes}\{SUFFIX}", "Content Type", MIME_TYPE),
        (rf"{classes}\{WINDOWS_PROG_ID}", "", "Invitation passeur"),
        (rf"{classes}\{WINDOWS_PROG_ID}\shell\open\command", "", open_line),
    ]


def register_windows(command: Sequence[str],
                     write: Callable[[str, str, str], None] | None = None) -> list[str]:
    """Write the association (through `write`, the registry by default); return the keys."""
    values = windows_registry_values(command)
    writer = write or _write_registry
    for key, name, data in values:
        writer(key, name, data)
    return sorted({key for key, _name, _data in values})


def _write_registry(key: str, name: str, data: str) -> None:
    from daemon.platform.windows import _winreg

    winreg = _winreg()
    with winreg.CreateKey(winreg.HKEY_CURRENT_USER, key) as handle:
        winreg.SetValueEx(handle, name, 0, winreg.REG_SZ, data)


# ---------------------------------------------------------------- this system


def register(home: str | None) -> list[str]:
    """Register the invitation type for this user on this system; return where."""
    command = open_command(home)
    if sys.platform == "win32":
        return register_windows(command)
    if sys.platform == "darwin":
        return []  # declared by the application bundle's Info.plist
    return [str(path) for path in register_linux(command)]
