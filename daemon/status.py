"""What `passeur status` says: the service's state in one object, built from the bus."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, replace
from typing import Any

from daemon import events as ev

PROBLEMS_KEPT = 5


@dataclass(frozen=True)
class Status:
    """The state of passeur as the user should see it."""

    service: bool  # answered by a running service (False: read from the disk only)
    configured: bool
    waiting: int
    restart_required: int = 0
    paused: bool = False
    paused_until: float | None = None
    last_check: float | None = None
    offline: bool = False
    sending: str = ""  # the name of the .wvz being sent
    problems: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    app_name: str = ""

    @property
    def state(self) -> str:
        """Return one word for the whole: the most important thing first."""
        if not self.configured:
            return "not-configured"
        if self.restart_required:
            return "restart-required"
        if self.problems:
            return "problem"
        if self.sending:
            return "sending"
        if self.paused:
            return "paused"
        if self.offline:
            return "offline"
        return "waiting" if self.waiting else "up-to-date"

    def to_json(self) -> dict[str, Any]:
        """Return the status as `passeur status --json` prints it (docs/cli.md)."""
        data = asdict(self)
        data["state"] = self.state
        data["problems"] = list(self.problems)
        data["sources"] = list(self.sources)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        """Rebuild a status sent over the control channel."""
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        known["problems"] = tuple(known.get("problems", ()))
        known["sources"] = tuple(known.get("sources", ()))
        return cls(**known)


@dataclass(frozen=True)
class _Seen:
    last_check: float | None = None
    offline: frozenset[str] = frozenset()
    sending: str = ""
    problems: tuple[str, ...] = ()


class StatusTracker:
    """Bus subscriber: remembers the last check, connectivity, problems and the send."""

    def __init__(self) -> None:
        self._seen = _Seen()
        self._lock = threading.Lock()

    def on_event(self, event: ev.Event) -> None:
        """Fold one event into what is remembered."""
        with self._lock:
            self._seen = _fold(self._seen, event)

    def seen(self) -> tuple[float | None, bool, str, tuple[str, ...]]:
        """Return the last check, whether offline, the send under way and the problems."""
        with self._lock:
            seen = self._seen
        return seen.last_check, bool(seen.offline), seen.sending, seen.problems

    def clear_problems(self) -> None:
        """The user looked at the problems (the journal): forget them."""
        with self._lock:
            self._seen = replace(self._seen, problems=())


def _fold(seen: _Seen, event: ev.Event) -> _Seen:
    match event:
        case ev.PollFinished(source="web"):
            return replace(seen, last_check=event.at)
        case ev.Offline(source=source):
            return replace(seen, offline=seen.offline | {source})
        case ev.BackOnline(source=source):
            return replace(seen, offline=seen.offline - {source})
        case ev.SourceFailed(message=message):
            return replace(seen, problems=(*seen.problems, message)[-PROBLEMS_KEPT:])
        case ev.SendStarted(name=name):
            return replace(seen, sending=name)
        case ev.SendFinished() | ev.SendFailed():
            return replace(seen, sending="")
    return seen
