"""The accounting application as seen from outside: is it running (psutil)?"""

from __future__ import annotations

import os
from collections.abc import Iterable

from daemon.config import AppConfig


def _names_of(info: dict[str, object]) -> Iterable[str]:
    name = info.get("name")
    if isinstance(name, str):
        yield name
    exe = info.get("exe")
    if isinstance(exe, str) and exe:
        yield os.path.basename(exe)
    cmdline = info.get("cmdline")
    if isinstance(cmdline, list) and cmdline:
        # Interpreted programs show up as "python"/"java": their script names the app,
        # right after the interpreter or after its options ("java -jar app.jar",
        # "python -X utf8 app.py": an option's value may come first).
        arguments = [str(arg) for arg in cmdline]
        plain = [arg for arg in arguments[1:] if not arg.startswith("-")][:2]
        yield from (os.path.basename(arg) for arg in [*arguments[:2], *plain])


def _normalise(name: str) -> str:
    name = name.lower()
    return name[:-4] if name.endswith(".exe") else name


class AppWatcher:
    """Finds the configured application among running processes."""

    def __init__(self, app: AppConfig) -> None:
        self.app = app
        self._wanted = {_normalise(name) for name in app.process_names}

    def running_pids(self) -> list[int]:
        """Return the process ids of the running application (empty when closed)."""
        if not self._wanted:
            return []
        import psutil

        found = []
        for proc in psutil.process_iter(["name", "exe", "cmdline"]):
            if proc.pid == os.getpid():
                continue
            if any(_normalise(n) in self._wanted for n in _names_of(proc.info)):
                found.append(proc.pid)
        return found

    def is_running(self) -> bool:
        """Tell whether the application is open."""
        return bool(self.running_pids())
