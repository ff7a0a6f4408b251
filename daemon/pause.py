"""The pause of receiving, kept on disk so that a timed pause survives a restart of passeur."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.fsutil import atomic_write_bytes
from daemon.i18n import _


@dataclass(frozen=True)
class PauseState:
    """Whether receiving is paused, and until when (epoch seconds; None: until resumed)."""

    paused: bool = False
    until: float | None = None

    def expired(self, now: float) -> bool:
        """Tell whether a timed pause is over at `now`."""
        return self.paused and self.until is not None and self.until <= now

    def to_json(self) -> dict[str, Any]:
        """Return the state as stored and as the control channel sends it."""
        return {"paused": self.paused, "until": self.until}

    @classmethod
    def from_json(cls, data: object) -> PauseState:
        """Read what `to_json` wrote; anything unreadable is "not paused"."""
        if not isinstance(data, dict) or data.get("paused") is not True:
            return cls()
        until = data.get("until")
        if isinstance(until, bool) or not isinstance(until, int | float | None):
            return cls()
        return cls(True, None if until is None else float(until))


class PauseStore:
    """Reads and writes the pause file (`pause.json` in the data folder)."""

    def __init__(self, path: Path, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._now = now

    def load(self) -> PauseState:
        """Return the saved pause; an expired timed pause is forgotten."""
        try:
            state = PauseState.from_json(json.loads(self.path.read_bytes()))
        except (OSError, ValueError):
            return PauseState()
        if state.expired(self._now()):
            self.save(PauseState())
            return PauseState()
        return state

    def save(self, state: PauseState) -> None:
        """Keep the pause durably (no file at all when not paused)."""
        if not state.paused:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            return
        atomic_write_bytes(self.path, json.dumps(state.to_json()).encode())


def describe_pause(state: PauseState) -> str:
    """Return the pause in words: « Réception en pause jusqu'à … »."""
    from datetime import datetime

    from daemon.presentation import format_datetime

    if not state.paused:
        return _("Receiving is on")
    if state.until is None:
        return _("Receiving is paused until you resume it")
    until = format_datetime(datetime.fromtimestamp(state.until).astimezone())
    return _("Receiving is paused until {time}").format(time=until)
