"""The calling side of tray/dialogs.py: one short process per window, one window per kind."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# The folder that holds the `tray` and `daemon` packages, for the dialog processes.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DialogBusy(Exception):
    """A window of this kind is already open."""


class Dialogs:
    """Opens windows in their own processes and returns the user's answers."""

    def __init__(self, language: str) -> None:
        self.language = language
        self._open: dict[str, subprocess.Popen[str]] = {}
        self._lock = threading.Lock()
        self._closing = False

    def ask(self, kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """Show a window and wait for it; return the answer (None: cancelled or closed).

        Raises DialogBusy when a window of this kind is already open.
        """
        process = self._start(kind)
        try:
            out, err = process.communicate(json.dumps({"language": self.language, **data},
                                                      ensure_ascii=False))
        finally:
            with self._lock:
                self._open.pop(kind, None)
        if process.returncode != 0:
            if not self._closing and process.returncode > 0:
                log.warning("the %s window failed (%s): %s", kind, process.returncode,
                            err.strip()[-2000:])
            return None
        lines = out.strip().splitlines()
        answer = json.loads(lines[-1]) if lines else None
        return answer if isinstance(answer, dict) else None

    def _start(self, kind: str) -> subprocess.Popen[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        with self._lock:
            if self._closing:
                raise DialogBusy(kind)
            running = self._open.get(kind)
            if running is not None and running.poll() is None:
                raise DialogBusy(kind)
            process = subprocess.Popen(
                [sys.executable, "-m", "tray.dialogs", kind], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                env=env, cwd=PROJECT_ROOT)
            self._open[kind] = process
        return process

    def is_open(self, kind: str) -> bool:
        """Tell whether a window of this kind is open."""
        with self._lock:
            process = self._open.get(kind)
        return process is not None and process.poll() is None

    def close(self, kind: str) -> None:
        """Close the window of this kind, if open (its caller gets None)."""
        with self._lock:
            process = self._open.get(kind)
        if process is not None and process.poll() is None:
            process.terminate()

    def close_all(self) -> None:
        """Close every open window and open no more (passeur is stopping)."""
        with self._lock:
            self._closing = True
            processes = list(self._open.values())
        for process in processes:
            if process.poll() is None:
                process.terminate()
