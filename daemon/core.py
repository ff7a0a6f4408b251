"""The core API: the one way front ends act on passeur (the tray, the CLI, the control channel).

Every action of a user goes through `Core`, and the core publishes the domain events it
causes itself, once, whoever asked (`Delivered`, `QueueChanged`, `PauseChanged`, …): the
front ends only call the API and follow the bus. The same `Core` serves the running
service (with its sources) and a CLI command that runs without a service (no sources).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from daemon import events as ev
from daemon.context import Context
from daemon.i18n import _, current_language
from daemon.pause import PauseState, PauseStore
from daemon.sources import Source
from daemon.status import Status, StatusTracker

if TYPE_CHECKING:
    from daemon.bus import EventBus
    from daemon.delivery import Result
    from daemon.queue import HistoryEntry, Item, Outcome
    from daemon.restart import RestartReport, RestartSettings
    from daemon.send.base import Documents, SendError
    from daemon.send.options import SendOptions
    from daemon.send.pack import Plan
    from daemon.send.sender import Sender, SendReport, SendRequest
    from daemon.web.poller import PollReport

log = logging.getLogger(__name__)


class ReceivingPaused(Exception):
    """*Recevoir* was asked while receiving is paused: resume first."""

    def __init__(self, state: PauseState) -> None:
        self.state = state
        super().__init__("paused")


@dataclass(frozen=True)
class Handed:
    """What *Traiter* did with one update."""

    id: int
    name: str
    result: Result

    def to_json(self) -> dict[str, Any]:
        """Return it as `passeur queue process --json` prints it."""
        return {"id": self.id, "file": self.name, "result": str(self.result)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Handed:
        """Rebuild it from the control channel."""
        from daemon.delivery import Result

        return cls(int(data["id"]), str(data["file"]), Result(data["result"]))


@dataclass(frozen=True)
class Deleted:
    """What *Supprimer* did with one item: its name, or None when it was not waiting."""

    id: int
    name: str | None

    def to_json(self) -> dict[str, Any]:
        """Return it for the control channel."""
        return {"id": self.id, "file": self.name}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Deleted:
        """Rebuild it from the control channel."""
        name = data.get("file")
        return cls(int(data["id"]), str(name) if name is not None else None)


@dataclass(frozen=True)
class Imported:
    """What became of one file offered by hand; `refusal` holds the code and both reasons."""

    name: str
    outcome: Outcome
    item_id: int | None = None
    refusal: dict[str, str] | None = None

    def reason(self) -> str:
        """Return the refusal's reason in the active language."""
        if self.refusal is None:
            return ""
        return self.refusal["reason_fr" if current_language() == "fr" else "reason_en"]

    def to_json(self) -> dict[str, Any]:
        """Return the result as documented for `passeur import --json`."""
        result: dict[str, Any] = {"file": self.name, "outcome": str(self.outcome)}
        if self.item_id is not None:
            result["id"] = self.item_id
        if self.refusal is not None:
            result.update(self.refusal)
        return result

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Imported:
        """Rebuild it from the control channel."""
        from daemon.queue import Outcome

        refusal: dict[str, str] | None = {
            k: str(data[k]) for k in ("code", "detail", "reason_fr", "reason_en") if k in data
        } or None
        item_id = data.get("id")
        return cls(str(data["file"]), Outcome(data["outcome"]),
                   int(item_id) if item_id is not None else None, refusal)


class CoreAPI(Protocol):
    """What the CLI calls, on the local core or on the running service's (RemoteCore)."""

    def status(self) -> Status:
        """Return the state of passeur."""

    def import_files(self, paths: Iterable[Path]) -> list[Imported]:
        """Verify files offered by hand and queue them."""

    def process(self, ids: Sequence[int] | None = None) -> list[Handed]:
        """*Traiter*."""

    def delete(self, ids: Iterable[int]) -> list[Deleted]:
        """*Supprimer*."""

    def pause(self, seconds: float | None = None) -> PauseState:
        """Pause receiving."""

    def resume(self) -> PauseState:
        """Receive again."""


def poll_report_json(report: PollReport) -> dict[str, Any]:
    """Return what one look at the web endpoint did, as `passeur receive --json` prints it."""
    return {
        "changed": report.changed, "found": report.found, "queued": list(report.queued),
        "rejected": list(report.rejected), "duplicates": report.duplicates,
        "failures": [{"code": str(f.code), "dossier": f.dossier, "message": f.message()}
                     for f in report.failures],
    }


class Core:
    """Status, receive, import, *Traiter*, *Supprimer*, pause, restart, send, the journal."""

    def __init__(self, ctx: Context, sources: Sequence[Source] = (),
                 now: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.bus = ctx.bus
        self.sources = list(sources)
        self.tracker = StatusTracker()
        self._now = now
        self._pause_store = PauseStore(ctx.paths.data / "pause.json", now)
        self._pause = self._pause_store.load()  # a timed pause survives a restart
        self._pause_lock = threading.Lock()
        self._held: tuple[int, ...] = ()  # the ids last announced by RestartRequired
        self._held_lock = threading.Lock()
        self._sends: set[threading.Event] = set()  # the cancels of the sends under way
        self._sends_lock = threading.Lock()
        self._inbox_missing_said = False
        self._in_service = False
        self._following_receipts = False
        # The service's loop sleeps until something is due: it is told when that changed
        # (a pause with an end, updates held for a restart).
        self.on_timers_changed: Callable[[], None] = lambda: None

    # ------------------------------------------------------------ status

    def status(self) -> Status:
        """Return the state: waiting updates, last check, pause, problems."""
        last_check, offline, sending, problems = self.tracker.seen()
        pause = self.pause_state()
        config = self.ctx.config
        return Status(
            service=self._in_service,
            configured=config.can_receive,
            waiting=self.ctx.queue.count_pending(),
            restart_required=len(self._held),
            paused=pause.paused, paused_until=pause.until,
            last_check=last_check, offline=offline, sending=sending,
            problems=problems, sources=tuple(type(s).__name__ for s in self.sources),
            app_name=config.app.name,
        )

    def serve(self) -> None:
        """Follow the bus for the status (the running service calls it once)."""
        self._in_service = True
        self.bus.subscribe("core-status", self.tracker.on_event)
        self._follow_receipts()

    def problems_seen(self) -> None:
        """The user opened the journal: the problems need no more attention."""
        self.tracker.clear_problems()

    # ------------------------------------------------------------ receiving

    def receive_now(self) -> None:
        """*Recevoir*: every source looks for updates now (raises ReceivingPaused)."""
        pause = self.pause_state()
        if pause.paused:
            raise ReceivingPaused(pause)
        for source in self.sources:
            source.poll_now()

    def receive(self, dossiers: Sequence[str] | None = None) -> PollReport:
        """*Recevoir* and wait for the web endpoint's answer (the other sources look too);
        raises ReceivingPaused. Without a service, a poller of its own looks once."""
        from daemon.web.poller import WebPoller

        pause = self.pause_state()
        if pause.paused:
            raise ReceivingPaused(pause)
        self._follow_receipts()
        web = next((s for s in self.sources if isinstance(s, WebPoller)), None)
        for source in self.sources:
            if source is not web:
                source.poll_now()
        if web is not None:
            return web.poll_once(dossiers)
        self.ctx.paths.ensure()
        poller = WebPoller(self.ctx.config, self.ctx.paths, self.ctx.queue, self.ctx.intake,
                           self.bus)
        try:
            return poller.poll_once(dossiers)
        finally:
            poller.stop()

    def import_files(self, paths: Iterable[Path]) -> list[Imported]:
        """Verify files offered by hand and queue them; one batch event for them all."""
        from daemon.intake import Batch
        from daemon.queue import Outcome

        batch = Batch("manual")
        results = []
        for path in paths:
            result = self.ctx.intake.import_path(path, "manual")
            batch.add(result, self.bus)
            item_id = (result.item.id if result.item is not None
                       and result.outcome is not Outcome.REJECTED else None)
            refusal = ({k: str(v) for k, v in result.rejection.as_dict().items()}
                       if result.rejection is not None else None)
            results.append(Imported(result.name, result.outcome, item_id, refusal))
        if batch:
            self.bus.publish(batch.event())
        return results

    # ------------------------------------------------------------ the queue

    def process(self, ids: Sequence[int] | None = None) -> list[Handed]:
        """*Traiter*: hand waiting updates (all when `ids` is None) to the application.

        Raises InboxNotConfigured when the configuration does not say where.
        """
        outcomes = self.ctx.delivery.process(None if ids is None else list(ids))
        return self._after_delivery([Handed(o.item.id, o.item.name, o.result)
                                     for o in outcomes])

    def _after_delivery(self, handed: list[Handed]) -> list[Handed]:
        from daemon.delivery import Result

        for one in handed:
            if one.result is Result.DELIVERED:
                self.bus.publish(ev.Delivered(one.id, one.name))
        self._queue_changed()
        return handed

    def delete(self, ids: Iterable[int]) -> list[Deleted]:
        """*Supprimer*: move updates to the trash (kept 30 days)."""
        results = []
        for item_id in ids:
            item = self.ctx.delivery.delete(item_id)
            results.append(Deleted(item_id, item.name if item is not None else None))
        self._queue_changed()
        return results

    def _queue_changed(self) -> None:
        try:
            self.bus.publish(ev.QueueChanged(self.ctx.queue.count_pending()))
        except (sqlite3.Error, OSError) as exc:
            log.warning("cannot read the queue: %s", exc)

    def journal(self, limit: int = 50) -> list[HistoryEntry]:
        """Return the recent activity, newest first."""
        return self.ctx.queue.history(limit)

    # ------------------------------------------------------------ pause

    def pause_state(self) -> PauseState:
        """Return the pause as it is now (a timed pause that is over is lifted here)."""
        with self._pause_lock:
            pause = self._pause
        if pause.expired(self._now()):
            self.resume()
            return PauseState()
        return pause

    def pause(self, seconds: float | None = None) -> PauseState:
        """Pause receiving for `seconds`, or until `resume()` when None."""
        until = None if seconds is None else self._now() + seconds
        return self._set_pause(PauseState(True, until))

    def resume(self) -> PauseState:
        """Receive again; what arrived during the pause is taken at once."""
        return self._set_pause(PauseState())

    def _set_pause(self, state: PauseState) -> PauseState:
        with self._pause_lock:
            changed, self._pause = self._pause != state, state
            try:
                self._pause_store.save(state)
            except OSError as exc:
                log.warning(_("The pause cannot be kept on the disk ({reason})").format(
                    reason=exc.strerror or exc))
        for source in self.sources:
            source.pause() if state.paused else source.resume()
        if changed:
            self.bus.publish(ev.PauseChanged(state.paused, state.until))
            self.on_timers_changed()
        return state

    def seconds_until_pause_ends(self) -> float | None:
        """Return how long a timed pause still lasts (None: no timed pause)."""
        with self._pause_lock:
            pause = self._pause
        if not pause.paused or pause.until is None:
            return None
        return max(0.0, pause.until - self._now())

    # ------------------------------------------------------------ restart

    @property
    def held(self) -> tuple[int, ...]:
        """Return the updates held for a restart, as last announced."""
        return self._held

    def announce_held(self) -> tuple[int, ...]:
        """Flag waiting étalon updates while the application runs; publish RestartRequired
        when the set of held updates changed (empty: nothing waits for a restart any more);
        return the held ids. A front end may call it to have the decision at once."""
        from daemon.restart import mark_restart_required

        with self._held_lock:
            held = mark_restart_required(self.ctx.queue, self.ctx.delivery.watcher)
            if held != self._held:
                self._held = held
                self.bus.publish(ev.RestartRequired(held, self.ctx.config.app.name))
                self.on_timers_changed()
        return held

    def hand_over_after_restart(self) -> bool:
        """Hand over the updates held for a restart once the application is closed; tell
        whether anything was handed over.

        The later updates of the same dossiers waited behind them: they go too, in order.
        """
        from daemon.delivery import InboxNotConfigured, Result

        pending = self.ctx.queue.pending()
        dossiers = {item.dossier for item in pending if item.restart_required}
        held = [item.id for item in pending if item.dossier in dossiers]
        if not held or self.ctx.delivery.watcher.is_running():
            return False
        try:
            handed = self.process(held)
        except InboxNotConfigured:
            # Said once: the restart watch would otherwise repeat it every few seconds.
            if not self._inbox_missing_said:
                self._inbox_missing_said = True
                log.warning(_("The application's inbox folder is not configured ([app] inbox "
                              "in {path})").format(path=self.ctx.config_path))
            return False
        return any(one.result is Result.DELIVERED for one in handed)

    def restart_settings(self) -> RestartSettings:
        """Return the `[restart]` settings as the configuration says them now."""
        from daemon.errors import ConfigError
        from daemon.restart import RestartSettings

        try:
            return RestartSettings.load(self.ctx.config_path)
        except ConfigError as exc:
            log.warning("%s", exc.message())
            return RestartSettings()

    def restart_items(self) -> list[Item]:
        """Return the waiting updates a restart would hand over, in order."""
        from daemon.restart import items_for_restart

        return items_for_restart(self.ctx.queue.pending())

    def restart_app(self, force_pids: Sequence[int] | None = None) -> RestartReport:
        """*Relancer maintenant*: close the application gracefully (or, with `force_pids`,
        after the user's explicit consent, kill those), hand the held updates over and
        start it again."""
        from daemon.restart import AppRestarter, RestartOutcome

        restarter = AppRestarter(self.ctx.delivery, self.ctx.config.app,
                                 self.restart_settings())
        report = (restarter.restart() if force_pids is None
                  else restarter.force_close(force_pids))
        for item in report.delivered:
            self.bus.publish(ev.Delivered(item.id, item.name))
        if report.outcome is not RestartOutcome.STILL_RUNNING:
            with contextlib.suppress(sqlite3.Error):
                self.ctx.queue.log("restarted", app=self.ctx.config.app.name,
                                   outcome=str(report.outcome),
                                   delivered=len(report.delivered))
        self._queue_changed()
        return report

    # ------------------------------------------------------------ sending

    def send(self, request: SendRequest, cancel: threading.Event | None = None,
             resume: bool = False) -> SendReport:
        """Send a dossier to the accountant (raises SendError); the events say how it goes.

        With `resume`, a web send cut by the line or a sleeping computer waits for the line
        (trying again after a growing pause, at once when the site answers a poll again)
        and goes on from the part it reached, until it is done or `cancel` is set.
        """
        cancel = cancel or threading.Event()
        with self._sends_lock:
            self._sends.add(cancel)
        try:
            if not resume:
                return self.sender().send(request, cancel)
            waiter = _LineWaiter(self.bus, cancel)
            try:
                return self.sender().send(request, cancel, waiter.wait)
            finally:
                waiter.close()
        finally:
            with self._sends_lock:
                self._sends.discard(cancel)

    def cancel_sends(self) -> int:
        """*Annuler l'envoi*: stop every send under way, whichever front end started it
        (the tray's wizard, `passeur send` through the service); return how many."""
        with self._sends_lock:
            sends = list(self._sends)
        for cancel in sends:
            cancel.set()
        return len(sends)

    def send_options(self, dossier: str) -> SendOptions:
        """Return what the sending wizard offers for `dossier` (raises SendError)."""
        return self.sender().options(dossier)

    def send_plan(self, dossier: str, documents: Documents) -> Plan:
        """Return what a send of `dossier` would carry now (raises SendError)."""
        return self.sender().plan(dossier, documents)

    def close_app_for_send(self) -> tuple[int, ...]:
        """Ask the accounting application to close, as a user would, so that the dossier
        can be packed; wait as for a restart; return the processes still running (never
        forced: the user decides what to do with an application that stays open)."""
        from daemon.restart import ask_to_close, wait_for_exit

        pids = self.ctx.delivery.watcher.running_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                ask_to_close(pid)
        remaining = wait_for_exit(pids, self.restart_settings().close_timeout_seconds)
        if not remaining:
            # Updates held for a restart may go now that it is closed.
            self.hand_over_after_restart()
        return remaining

    def sender(self) -> Sender:
        """Return what sends dossiers (its plan and remembered choices serve the wizard)."""
        from daemon.send.sender import sender_from_context

        return sender_from_context(self.ctx)

    def _follow_receipts(self) -> None:
        """Add « Reçu par votre comptable » to a send's report when its receipt comes."""
        if self._following_receipts:
            return
        self._following_receipts = True
        self.bus.subscribe("core-receipts", self._on_receipt, ev.ReceiptReceived)

    def _on_receipt(self, event: ev.Event) -> None:
        from daemon.send.report import add_receipt_to_report
        from daemon.web.index import Receipt

        assert isinstance(event, ev.ReceiptReceived)
        try:
            add_receipt_to_report(self.ctx.paths, Receipt(event.dossier, event.name,
                                                          event.sha256, event.received_at))
        except OSError as exc:
            log.warning("the report of %s cannot be updated: %s", event.name, exc)


# How long a cut web send waits before it tries again: growing, then every few minutes.
CUT_WAITS_S = (5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0)


class _LineWaiter:
    """Waits, after a web send was cut, until it is worth trying again: a growing pause,
    cut short when the site answers a poll again (BackOnline) or the user cancels."""

    def __init__(self, bus: EventBus, cancel: threading.Event) -> None:
        self.bus = bus
        self.cancel = cancel
        self.cuts = 0
        self._back = threading.Event()
        self._name = f"send-line-{id(self)}"
        bus.subscribe(self._name, lambda _event: self._back.set(), ev.BackOnline)

    def wait(self, error: SendError) -> bool:
        """Block until it is time to try again; False when the user cancelled."""
        wait = CUT_WAITS_S[min(self.cuts, len(CUT_WAITS_S) - 1)]
        self.cuts += 1
        if self.cuts == 1:
            log.info(_("The connection was lost while sending: the send will go on by itself"
                       " as soon as the line is back."))
        self._back.clear()
        deadline = time.monotonic() + wait
        while not self.cancel.is_set() and not self._back.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.cancel.wait(min(left, 0.5))
        return not self.cancel.is_set()

    def close(self) -> None:
        """Stop following the bus."""
        self.bus.unsubscribe(self._name)
