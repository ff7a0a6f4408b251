"""The tray's one overall state, computed from events by pure functions.

`reduce(state, event)` folds the core's events (daemon/events.py) and a few facts only
the front end knows (the inputs below: a queue snapshot, pause, configuration, a send it
started) into an immutable `TrayState`; `status_of(state)` picks the one status the icon
shows, and `tooltip(state, app_name)` says it in words. No I/O, no clock reads: every
time comes from the events themselves, so that the tests can replay any story.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from daemon import events as ev
from daemon.i18n import _, current_language, ngettext

# Windows cuts tooltips at 127 characters; every platform reads a short one better.
TOOLTIP_MAX = 127


class Status(enum.Enum):
    """What the icon shows, most urgent first."""

    TO_CONFIGURE = "to-configure"
    RESTART_REQUIRED = "restart-required"
    ERROR = "error"
    PAUSED = "paused"
    SENDING = "sending"
    RECEIVING = "receiving"
    WAITING = "waiting"
    OFFLINE = "offline"
    UP_TO_DATE = "up-to-date"


# ---------------------------------------------------------------- front-end inputs


@dataclass(frozen=True)
class QueueSnapshot(ev.Event):
    """The queue as read after a change: how many updates wait.

    Which of them wait for a restart is the service's decision, told by RestartRequired.
    """

    waiting: int


@dataclass(frozen=True)
class ProblemsSeen(ev.Event):
    """The user looked at the problems (opened the journal): they need no more attention."""


# ---------------------------------------------------------------- the state


@dataclass(frozen=True)
class Transfer:
    """A file being received or sent."""

    name: str
    done: int = 0
    total: int = 0
    waiting: bool = False  # a send cut by the line, waiting to go on by itself

    @property
    def percent(self) -> int | None:
        """Return the progress in percent (None when the size is unknown)."""
        if self.total <= 0:
            return None
        return max(0, min(100, self.done * 100 // self.total))


@dataclass(frozen=True)
class Problem:
    """A failure that needs the user's attention (wrong password, disk full…)."""

    source: str
    code: str
    message: str
    at: float


@dataclass(frozen=True)
class TrayState:
    """Everything the icon, tooltip and menu are computed from."""

    configured: bool = True
    waiting: int = 0
    restart_ids: tuple[int, ...] = ()
    receiving: Transfer | None = None
    sending: Transfer | None = None
    offline: frozenset[str] = frozenset()
    problems: tuple[Problem, ...] = ()
    paused: bool = False
    paused_until: float | None = None
    last_check: float | None = None

    @property
    def status(self) -> Status:
        """Return the one status the icon shows."""
        return status_of(self)

    @property
    def badge(self) -> int:
        """Return the number shown on the icon (0: none)."""
        return self.waiting if self.configured else 0


def status_of(state: TrayState) -> Status:
    """Pick the most urgent status: what the user should know or do first."""
    if not state.configured:
        return Status.TO_CONFIGURE
    if state.restart_ids:
        return Status.RESTART_REQUIRED
    if state.problems:
        return Status.ERROR
    if state.paused:
        return Status.PAUSED
    if state.sending is not None:
        return Status.SENDING
    if state.receiving is not None:
        return Status.RECEIVING
    if state.waiting:
        return Status.WAITING
    if state.offline:
        return Status.OFFLINE
    return Status.UP_TO_DATE


def reduce(state: TrayState, event: ev.Event) -> TrayState:
    """Return the state after `event` (events that change nothing return `state`)."""
    for step in _STEPS:
        result = step(state, event)
        if result is not None:
            return result
    return state


def _inputs(state: TrayState, event: ev.Event) -> TrayState | None:
    match event:
        case QueueSnapshot(waiting=waiting):
            return replace(state, waiting=waiting)
        case ev.ConfigApplied(configured=configured):
            # A config that loads again ends the refusal of the previous hand edit.
            return replace(state, configured=configured,
                           problems=_without_source(state.problems, "config"))
        case ev.PauseChanged(paused=paused, until=until):
            return replace(state, paused=paused, paused_until=until if paused else None)
        case ProblemsSeen():
            return replace(state, problems=())
    return None


def _queue(state: TrayState, event: ev.Event) -> TrayState | None:
    match event:
        case ev.QueueChanged(waiting=waiting):
            return replace(state, waiting=waiting)
        case ev.RestartRequired(item_ids=ids):
            # The event carries the whole set held now; empty once they were handed over.
            return replace(state, restart_ids=tuple(sorted(set(ids))))
        case ev.UpdateQueued(name=name, origin=origin):
            # A source that delivers again has recovered from whatever failed before.
            return replace(state, receiving=_finished(state.receiving, name),
                           problems=_without_source(state.problems, origin))
        case ev.UpdateRejected(name=name):
            return replace(state, receiving=_finished(state.receiving, name))
    return None


def _transfers(state: TrayState, event: ev.Event) -> TrayState | None:
    match event:
        case ev.UpdateFound(name=name, size=size):
            return replace(state, receiving=Transfer(name, 0, size))
        case ev.DownloadProgress(name=name, received=received, total=total):
            return replace(state, receiving=Transfer(name, received, total))
        case ev.PollFinished():
            return replace(state, receiving=None, last_check=event.at)
        case ev.SendStarted(name=name):
            return replace(state, sending=Transfer(name))
        case ev.SendProgress(name=name, stage="transfer", done=done, total=total):
            return replace(state, sending=Transfer(name, done, total))
        case ev.SendProgress(name=name, stage="waiting") if state.sending is not None:
            return replace(state, sending=replace(state.sending, waiting=True))
        case ev.SendFinished() | ev.SendFailed():
            return replace(state, sending=None)
    return None


def _connectivity(state: TrayState, event: ev.Event) -> TrayState | None:
    match event:
        case ev.Offline(source=source):
            return replace(state, offline=state.offline | {source})
        case ev.BackOnline(source=source):
            return replace(state, offline=state.offline - {source},
                           problems=_without_source(state.problems, source))
        case ev.SourceFailed(source=source, code=code, message=message):
            kept = tuple(p for p in state.problems if (p.source, p.code) != (source, code))
            return replace(state, problems=(*kept, Problem(source, code, message, event.at)))
    return None


_STEPS = (_inputs, _queue, _transfers, _connectivity)


def _finished(transfer: Transfer | None, name: str) -> Transfer | None:
    return None if transfer is not None and transfer.name == name else transfer


def _without_source(problems: tuple[Problem, ...], source: str) -> tuple[Problem, ...]:
    return tuple(p for p in problems if p.source != source)


# ---------------------------------------------------------------- words


def clock(epoch: float, today: datetime | None = None) -> str:
    """Return a time as the user reads it: "14:05" today, else with the day."""
    moment = datetime.fromtimestamp(epoch)
    reference = today or datetime.now()
    if moment.date() == reference.date():
        return moment.strftime("%H:%M")
    return moment.strftime("%d/%m %H:%M" if current_language() == "fr" else "%m-%d %H:%M")


def waiting_words(count: int) -> str:
    """Return "2 mises à jour à intégrer"."""
    return ngettext("{n} update to integrate", "{n} updates to integrate", count).format(
        n=count)


def headline(state: TrayState, app_name: str, today: datetime | None = None) -> str:
    """Return the status in one sentence."""
    status = status_of(state)
    if status is Status.TO_CONFIGURE:
        return _("passeur is not configured yet: open Settings")
    if status is Status.RESTART_REQUIRED:
        count = len(state.restart_ids)
        return ngettext("{app} must be restarted to integrate {n} update",
                        "{app} must be restarted to integrate {n} updates",
                        count).format(app=app_name, n=count)
    if status is Status.ERROR:
        return _("Needs attention: {message}").format(message=state.problems[-1].message)
    if status is Status.PAUSED:
        if state.paused_until is None:
            return _("Paused until resumed")
        return _("Paused until {time}").format(time=clock(state.paused_until, today))
    if status is Status.SENDING and state.sending is not None and state.sending.waiting:
        return _("Sending {file}: the line was cut, it goes on by itself when it is "
                 "back").format(file=state.sending.name)
    if status is Status.SENDING and state.sending is not None:
        return _transfer_words(state.sending, _("Sending {file}"),
                               _("Sending {file}: {percent} %"))
    if status is Status.RECEIVING and state.receiving is not None:
        return _transfer_words(state.receiving, _("Receiving {file}"),
                               _("Receiving {file}: {percent} %"))
    if status is Status.WAITING:
        return waiting_words(state.waiting)
    if status is Status.OFFLINE:
        return _("The accountant's site cannot be reached")
    return _("Up to date")


def _transfer_words(transfer: Transfer, plain: str, with_percent: str) -> str:
    percent = transfer.percent
    if percent is None:
        return plain.format(file=transfer.name)
    return with_percent.format(file=transfer.name, percent=percent)


def tooltip(state: TrayState, app_name: str, today: datetime | None = None) -> str:
    """Return the tooltip: "2 mises à jour à intégrer — dernière vérification 14:05"."""
    parts = [headline(state, app_name, today)]
    status = status_of(state)
    if state.waiting and status not in (Status.WAITING, Status.RESTART_REQUIRED,
                                        Status.TO_CONFIGURE):
        parts.append(waiting_words(state.waiting))
    if state.offline and status not in (Status.OFFLINE, Status.TO_CONFIGURE):
        parts.append(_("The accountant's site cannot be reached"))
    if state.last_check is not None and status is not Status.TO_CONFIGURE:
        parts.append(_("last check {time}").format(time=clock(state.last_check, today)))
    text = " — ".join(parts)
    return text if len(text) <= TOOLTIP_MAX else text[:TOOLTIP_MAX - 1] + "…"
