"""Finding the accounting application on this computer: among the running programs, then
in the usual install folders, so that the set-up window can fill it in by itself."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# The program names of the applications passeur knows, lower case, without ".exe".
KNOWN_PROGRAMS = ("isacompta", "isagri", "isacompta-standin")
# Where their installers put them, per system, and the usual exchange (inbox) folders.
_INSTALL_FOLDERS = {
    "win32": (r"C:\Program Files\ISAGRI", r"C:\Program Files (x86)\ISAGRI", r"C:\ISAGRI"),
    "darwin": ("/Applications",),
    "linux": ("/opt/isagri", "/opt/isacompta", "~/Isacompta"),
}
_INBOX_FOLDERS = ("~/Isacompta/echanges", "~/ISAGRI/Echanges", r"C:\ISAGRI\Echanges")


@dataclass(frozen=True)
class FoundApp:
    """What was found: the program's names, how to start it, its inbox folder."""

    process_names: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    inbox: str = ""

    @property
    def found(self) -> bool:
        """Tell whether anything was found."""
        return bool(self.process_names or self.inbox)


def find_app() -> FoundApp:
    """Look among running programs, then in the usual folders."""
    running = _running()
    command = running or _installed()
    names = (Path(command[0]).stem.lower(),) if command else ()
    inbox = next((str(Path(p).expanduser()) for p in _INBOX_FOLDERS
                  if Path(p).expanduser().is_dir()), "")
    return FoundApp(names, command, inbox)


def _running() -> tuple[str, ...]:
    import psutil

    for proc in psutil.process_iter(["name", "exe", "cmdline"]):
        name = str(proc.info.get("name") or "").lower().removesuffix(".exe")
        if name in KNOWN_PROGRAMS and proc.pid != os.getpid():
            exe = proc.info.get("exe") or proc.info.get("name")
            return (str(exe),)
    return ()


def _installed() -> tuple[str, ...]:
    system = sys.platform if sys.platform in ("win32", "darwin") else "linux"
    for folder in _INSTALL_FOLDERS[system]:
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        for program in KNOWN_PROGRAMS:
            for candidate in (root / program, root / f"{program}.exe",
                              root / "bin" / program):
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return (str(candidate),)
    return ()
