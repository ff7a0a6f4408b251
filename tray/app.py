"""The tray front end: the icon on the main thread, the service on another, events in,
the user's choices out through the core's public API.

`run_with_tray(ctx, service)` is what `passeur run` calls when a display exists. The
service starts first, in the background; then the icon. Without a usable tray (no
display, no system tray, a backend error) the service simply goes on headless, and the
log says why. Quitter, SIGTERM and SIGINT all end in `service.stop()`; the icon follows
the service's `ServiceStopping`.
"""

from __future__ import annotations

import functools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon import events as ev
from daemon import i18n, platform
from daemon.context import Context
from daemon.core import ReceivingPaused
from daemon.delivery import InboxNotConfigured, Result
from daemon.errors import Rejected
from daemon.i18n import _, ngettext
from daemon.naming import parse_name
from daemon.presentation import describe_activity, format_datetime
from daemon.queue import HistoryEntry, Line, Outcome
from daemon.restart import (
    MIN_REMIND_MINUTES,
    RestartOutcome,
    RestartReport,
    describe_report,
    seconds_until_reminder,
)
from daemon.service import Service
from tray.backend import (
    TrayIcon,
    backend_name,
    choose_backend,
    load_pystray,
    wait_for_x11_tray,
)
from tray.icon import draw_icon
from tray.menu import Action, Entry, build_menu, flatten, primary_action
from tray.notices import (
    Notice,
    NoticePolicy,
    etalon_message,
    first_run_notice,
    nothing_new_notice,
    receive_failed_notice,
)
from tray.notifier import LogNotifier, Notifier, choose_notifier
from tray.state import (
    ProblemsSeen,
    QueueSnapshot,
    Status,
    TrayState,
    clock,
    reduce,
    tooltip,
)
from tray.ui import DialogBusy, Dialogs

log = logging.getLogger(__name__)

PAUSE_HOUR_S = 3600.0
# How long the icon waits for the service to be up (it is quick unless the disk is slow).
SERVICE_START_WAIT_S = 10.0
JOURNAL_LINES = 200
# Events after which the number of waiting updates is read again. Which of them wait for
# a restart is the service's decision: the tray follows its RestartRequired.
QUEUE_EVENTS = (ev.ServiceStarted, ev.UpdateQueued, ev.BatchFinished, ev.Delivered,
                ev.QueueChanged)


def run_with_tray(ctx: Context, service: Service) -> int:
    """Run the service with the tray icon until Quitter or a signal; return the exit code.

    Raises what `service.run()` raises (AlreadyRunning) once everything has stopped.
    """
    front = TrayFrontEnd(ctx, service)
    front.start_notifier()
    front.start_service()
    if front.wait_until_service_ready():
        try:
            icon = front.make_icon()
        except Exception as exc:  # no display, no tray, or a backend that fails to start
            log.warning(_("The tray icon cannot be shown ({reason}): passeur runs without "
                          "it").format(reason=str(exc) or type(exc).__name__))
        else:
            front.run_icon(icon)
    return front.finish()


class TrayFrontEnd:
    """Holds the tray state and turns events and clicks into pictures, words and commands."""

    def __init__(self, ctx: Context, service: Service) -> None:
        self.ctx = ctx
        self.service = service
        self.core = service.core
        config = ctx.config
        self.app_name = config.app.name
        self.dossiers = [(d.number, d.name) for d in config.dossiers]
        self.policy = NoticePolicy(config.notifications)
        self.restart_settings = self.core.restart_settings()
        self.dialogs = Dialogs(i18n.current_language())
        self.state = TrayState(configured=config.can_receive)
        self.notifier: Notifier = LogNotifier()
        self.icon: TrayIcon | None = None
        self._lock = threading.RLock()
        self._render_lock = threading.Lock()
        self._restarting = threading.Lock()
        self._shown: tuple[Any, ...] | None = None
        self._busy: set[str] = set()
        self._reminder: threading.Timer | None = None
        self._prompted: set[int] = set()
        self._announced: set[str] = set()
        self._etalons: set[str] = set()  # étalon updates queued whose batch is not finished
        self._last_prompt = -math.inf
        self._unseen: Action | None = None
        self._ready = threading.Event()
        self._service_thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._last_sent = ""  # the file of the last send, whose report a click opens
        # *Recevoir maintenant* answers a failed look itself: "armed" at the click, then
        # "polling" from the web poll's start to its end (seen on the bus thread).
        self._asked_poll = ""
        ctx.bus.subscribe("tray", self.on_event)

    # ------------------------------------------------------------ lifecycle

    def start_notifier(self) -> None:
        """Find how to show notifications, before the first event can need it."""
        self.notifier = choose_notifier("passeur", self._icon_file)
        log.info("notifications: %s", self.notifier.name)

    def start_service(self) -> None:
        """Run the service on a background thread."""
        self._service_thread = threading.Thread(target=self._serve, name="service")
        self._service_thread.start()

    def _serve(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:  # handed to the main thread, raised by finish()
            self._failure = exc
        finally:
            self._ready.set()
            self._stop_icon()

    def wait_until_service_ready(self) -> bool:
        """Wait for the service to be up; False when it ended instead (already running)."""
        self._ready.wait(SERVICE_START_WAIT_S)
        thread = self._service_thread
        return thread is not None and thread.is_alive()

    def make_icon(self) -> TrayIcon:
        """Create the icon (raises when no tray can show it)."""
        pystray = self._load_backend()
        if backend_name(pystray) == "xorg":
            wait_for_x11_tray()
        with self._lock:
            state = self.state
        icon = TrayIcon(pystray, functools.partial(draw_icon, state.status, state.badge),
                        tooltip(state, self.app_name), self.perform, self.default_action)
        log.info("tray icon: pystray %s backend (menu: %s, default action: %s, "
                 "notifications: %s)", icon.backend, icon.has_menu, icon.has_default_action,
                 icon.capabilities.notification)
        return icon

    def _load_backend(self) -> Any:
        """Import pystray with the best backend here; one named in the configuration that
        cannot work falls back to passeur's own choice."""
        wanted = self.ctx.config.tray_backend
        choice = choose_backend(wanted)
        log.info("tray backend: %s (%s)", choice.backend or "pystray's own", choice.reason)
        try:
            return load_pystray(choice.backend)
        except Exception as exc:  # a missing library, no display…
            if wanted == "auto":
                raise
            log.warning("the tray backend %s of the configuration cannot be used (%s): "
                        "passeur chooses one itself", wanted, exc)
        choice = choose_backend("auto")
        log.info("tray backend: %s (%s)", choice.backend or "pystray's own", choice.reason)
        return load_pystray(choice.backend)

    def run_icon(self, icon: TrayIcon) -> None:
        """Show the icon and run its loop on this (main) thread until the service stops."""
        self.icon = icon
        if self.service.stopping.is_set():
            return
        icon.run(setup=self._icon_started)
        if not self.service.stopping.is_set():
            # The loop ended on its own: the desktop session is gone (logout, X closed).
            log.info("the tray icon's loop ended: passeur stops with the desktop session")
            self.service.stop()

    def _icon_started(self) -> None:
        with self._render_lock:
            self._shown = None
        self.render()
        if not self.state.configured:
            self._tell(first_run_notice())
            self._in_background("settings", self._settings)  # first run: the wizard
        if self.service.stopping.is_set():  # a stop that came while the icon was starting
            self._stop_icon()

    def _icon_file(self, status: Status | None) -> Path | None:
        """Return a picture file of the icon (for notifications), written on first use."""
        status = status or Status.UP_TO_DATE
        path = self.ctx.paths.data / "icons" / f"{status.value}.png"
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                draw_icon(status, 0, 64).save(path)
        except OSError:
            return None
        return path

    def _stop_icon(self) -> None:
        icon = self.icon
        if icon is not None:
            icon.stop()

    def finish(self) -> int:
        """Wait for the service to end, release everything; raise the service's failure."""
        thread = self._service_thread
        # Joined in slices so that a signal reaches its handler on every platform.
        while thread is not None and thread.is_alive():
            thread.join(60)
        if self._reminder is not None:
            self._reminder.cancel()
        self.dialogs.close_all()
        self.notifier.close()
        if self._failure is not None:
            raise self._failure
        return 0

    # ------------------------------------------------------------ events in

    def on_event(self, event: ev.Event) -> None:
        """Bus subscriber: fold the event into the state, notify, refresh the icon."""
        if isinstance(event, ev.ServiceStarted):
            self._ready.set()
        if isinstance(event, ev.ServiceStopping):
            self._stop_icon()
            return
        if isinstance(event, ev.ShowRequested):
            self._show_yourself()
        if isinstance(event, ev.ConfigApplied):
            self._follow_config(event)
        self.feed(event)
        if isinstance(event, QUEUE_EVENTS):
            self.refresh_queue()
        if isinstance(event, ev.RestartRequired):
            self._follow_restart(event.item_ids)
        if isinstance(event, ev.UpdateQueued) and event.etalon:
            with self._lock:
                self._etalons.add(event.name)
        if isinstance(event, ev.SendFinished | ev.SendFailed | ev.ReceiptReceived) and \
                event.name:
            self._last_sent = event.name
        notice = self.policy.decide(event, paused=self.state.paused)
        said_by_answer = self._said_by_receive_answer(event, notice)
        if notice is not None and not said_by_answer and not self._said_by_restart_notice(
                event):
            self.notify(notice)
        if isinstance(event, ev.BatchFinished):
            with self._lock:
                self._etalons -= set(event.queued)

    def _follow_config(self, event: ev.ConfigApplied) -> None:
        """The service runs with a changed config: the menu's dossiers, the application's
        name and the notification choices follow it (the state follows `configured`)."""
        preferences = dict(self.ctx.config.notifications)  # the config just applied
        restart_settings = self.core.restart_settings()
        with self._lock:
            self.app_name = event.app_name
            self.dossiers = [(number, name) for number, name in event.dossiers]
            # What the policy remembers (what was already said) is kept.
            self.policy.preferences = preferences
            self.restart_settings = restart_settings

    def _said_by_receive_answer(self, event: ev.Event, notice: Notice | None) -> bool:
        """Tell whether the web poll asked by *Recevoir maintenant* is under way and this is
        its failure: the click's own answer names it (one notification, not two); the
        policy still counts it as said, so that later polls do not repeat it."""
        from daemon.web.poller import ORIGIN

        with self._lock:
            if isinstance(event, ev.PollStarted) and event.source == ORIGIN and \
                    self._asked_poll == "armed":
                self._asked_poll = "polling"
            polling = self._asked_poll == "polling"
            if isinstance(event, ev.PollFinished) and event.source == ORIGIN and polling:
                self._asked_poll = ""
        return polling and notice is not None and notice.kind in ("offline", "problem") \
            and isinstance(event, ev.Offline | ev.SourceFailed) and event.source == ORIGIN

    def _said_by_restart_notice(self, event: ev.Event) -> bool:
        """Tell whether a batch only brought updates held for a restart: the restart notice
        says it instead of the "received" one."""
        if not isinstance(event, ev.BatchFinished) or event.rejected or not event.queued:
            return False
        queued = set(event.queued)
        with self._lock:
            announced, self._announced = self._announced, set()
            only_etalons = queued <= self._etalons
        if not only_etalons or queued <= announced:
            return only_etalons
        # The service's RestartRequired for these may still be on its way: ask the service
        # for its decision now, so that the "received" notice is not shown before it.
        try:
            held = {item.name for item in map(self.ctx.queue.get, self.core.announce_held())
                    if item is not None}
        except (sqlite3.Error, OSError) as exc:
            log.warning("cannot read the queue: %s", exc)
            return False
        return queued <= held

    def feed(self, event: ev.Event) -> None:
        """Change the state and show it."""
        with self._lock:
            self.state = reduce(self.state, event)
        self.render()

    def refresh_queue(self) -> None:
        """Read the number of waiting updates again (for the badge)."""
        try:
            waiting = self.ctx.queue.count_pending()
        except (sqlite3.Error, OSError) as exc:
            log.warning("cannot read the queue: %s", exc)
            return
        self.feed(QueueSnapshot(waiting))

    def render(self) -> None:
        """Show the state on the icon: picture, tooltip, menu (only what changed)."""
        icon = self.icon
        if icon is None:
            return
        # One render at a time, so that an older picture never lands after a newer one. Not
        # the state lock: the icon's loop thread takes that one, and an update waits for
        # the loop.
        with self._render_lock:
            with self._lock:
                state = self.state
            status, badge = state.status, state.badge
            title = tooltip(state, self.app_name)
            entries = build_menu(state, self.app_name, self.dossiers, icon.has_default_action)
            shown, self._shown = self._shown, (status, badge, title, entries)
            if shown == self._shown:
                return
            picture = shown is None or shown[:2] != (status, badge)
            icon.update(functools.partial(draw_icon, status, badge) if picture else None,
                        title if shown is None or shown[2] != title else None,
                        entries if shown is None or shown[3] != entries else None)

    # ------------------------------------------------------------ words out

    def notify(self, notice: Notice) -> None:
        """Show a notice; where clicks are not reported, the icon's click will open it."""
        if not self.notifier.reports_clicks and notice.target is not None:
            self._unseen = notice.target
        self.notifier.show(notice, self.perform)

    def say(self, text: str, target: Action | None = Action.JOURNAL) -> None:
        """Tell the user how something went: a notification, or a window without one."""
        log.info("%s", text.replace("\n", " "))
        if isinstance(self.notifier, LogNotifier):
            self._in_background("message", lambda: self._ask(
                "message", {"title": "passeur", "message": text}))
            return
        self.notify(Notice("outcome", "passeur", text, target))

    # ------------------------------------------------------------ clicks in

    def default_action(self) -> None:
        """A click on the icon: what the last notification was about, or the choices."""
        target, self._unseen = self._unseen, None
        if target is not None:
            self.perform(target)
        elif self.icon is not None and not self.icon.has_menu:
            self._in_background("choices", self._choices)
        else:
            with self._lock:
                self.perform(primary_action(self.state))

    def perform(self, action: Action, arg: str = "") -> None:
        """Do what the user chose, away from the icon's thread (windows take time)."""
        handlers: dict[Action, Callable[[], object]] = {
            Action.RECEIVE_NOW: self._receive_now,
            Action.OPEN_QUEUE: self._open_queue,
            Action.RESTART_APP: self._prompt_restart,
            Action.RESTART_NOW: self._restart_from_notification,
            Action.SEND_DOSSIER: lambda: self._send_wizard(arg),
            Action.CANCEL_SEND: self._cancel_send,
            Action.OPEN_REPORT: self._open_report,
            Action.IMPORT_FILE: self._import_files,
            Action.PAUSE_HOUR: lambda: self.core.pause(PAUSE_HOUR_S),
            Action.PAUSE_UNTIL_RESUMED: lambda: self.core.pause(None),
            Action.RESUME: self.core.resume,
            Action.JOURNAL: self._journal,
            Action.SETTINGS: self._settings,
            Action.QUIT: self.service.stop,
        }
        self._in_background(str(action), handlers[action])

    def _in_background(self, name: str, work: Callable[[], object]) -> None:
        with self._lock:
            if name in self._busy:
                return  # already being done (a double click, a second notification click)
            self._busy.add(name)

        def run() -> None:
            try:
                work()
            except Exception:
                log.exception("tray action %s failed", name)
            finally:
                with self._lock:
                    self._busy.discard(name)

        threading.Thread(target=run, name=f"tray-{name}", daemon=True).start()

    def _ask(self, kind: str, data: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.dialogs.ask(kind, data)
        except DialogBusy:
            return None

    # ------------------------------------------------------------ the actions

    def _choices(self) -> None:
        with self._lock:
            state = self.state
        entries = flatten(build_menu(state, self.app_name, self.dossiers))
        icon = self.icon
        answer = self._ask("choices", {
            "status": tooltip(state, self.app_name),
            "entries": [_entry_json(entry) for entry in entries],
            # Where the icon is, so that the choices open next to it, like a menu.
            "anchor": icon.screen_area() if icon is not None else None,
        })
        if answer and answer.get("action"):
            self.perform(Action(answer["action"]), str(answer.get("arg", "")))

    def _show_yourself(self) -> None:
        """A second `passeur run` asked: the choices where there is no menu, else the
        status in a notification."""
        icon = self.icon
        if icon is not None and not icon.has_menu:
            self._in_background("choices", self._choices)
            return
        with self._lock:
            state = self.state
        self.say(_("passeur is running: {status}").format(
            status=tooltip(state, self.app_name)), None)

    def _receive_now(self) -> None:
        if not self.core.sources:
            self.say(_("No source of updates is configured yet: add the accountant's web "
                       "address in Settings, or import a file."), Action.SETTINGS)
            return
        from daemon.web.poller import WebPoller

        try:
            if not any(isinstance(source, WebPoller) for source in self.core.sources):
                self.core.receive_now()
                self.say(_("USB keys and watched folders are being looked at again"), None)
                return
            with self._lock:
                self._asked_poll = "armed"
            try:
                report = self.core.receive()  # waits for the accountant's site
            except BaseException:
                with self._lock:
                    if self._asked_poll == "armed":  # no poll started
                        self._asked_poll = ""
                raise
        except ReceivingPaused:
            self.say(_("Receiving is paused: resume it to look for updates."), Action.RESUME)
            return
        # Updates found are announced by the batch's own notification; a failure is said
        # here (the poll's own failure notices are held back for it); else nothing new.
        if report.failures:
            self._tell(receive_failed_notice([f.message() for f in report.failures]))
        elif not (report.queued or report.rejected):
            self._tell(nothing_new_notice())

    def _tell(self, notice: Notice) -> None:
        """Show a notice; without a notification server, in a window (as `say` does)."""
        if isinstance(self.notifier, LogNotifier):
            self.say(notice.message, notice.target)
        else:
            log.info("%s", notice.message.replace("\n", " "))
            self.notify(notice)

    def _open_queue(self) -> None:
        lines = self.ctx.queue.listing()
        if not lines:
            self.say(_("No update waiting to be integrated"), None)
            return
        manifests = self.ctx.queue.manifest_texts()
        answer = self._ask("queue", {
            "items": [_queue_row(line, manifests.get(line.id)) for line in lines]})
        if answer is not None:
            self._apply_queue_choices([int(i) for i in answer.get("process", [])],
                                      [int(i) for i in answer.get("delete", [])])

    def _apply_queue_choices(self, process: list[int], delete: list[int]) -> None:
        """*Supprimer* first (it may free the way for later updates), then *Traiter*."""
        problems = [_("Item {id} is not waiting in the queue").format(id=deleted.id)
                    for deleted in self.core.delete(delete) if deleted.name is None]
        if process:
            try:
                handed = self.core.process(process)
            except InboxNotConfigured:
                handed = []
                problems.append(_("The application's inbox folder is not configured ([app] "
                                  "inbox in {path})").format(path=self.ctx.config_path))
            problems += [text.format(file=one.name) for one in handed
                         if (text := _not_handed_words().get(one.result))]
        if problems:
            self.say("\n".join(problems))

    def _import_files(self) -> None:
        answer = self._ask("import", {"folder": str(_downloads())})
        paths = [Path(p) for p in (answer or {}).get("paths", [])]
        if not paths:
            return
        results = self.core.import_files(paths)
        if all(one.outcome is Outcome.DUPLICATE for one in results):
            self.say(ngettext("This file was already received", "These files were already "
                              "received", len(results)), None)

    # ------------------------------------------------------------ sending

    def _send_wizard(self, dossier: str) -> None:
        """*Envoyer le dossier*: the wizard, then the send on a worker thread."""
        from daemon.send.base import SendError

        try:
            options = self.core.send_options(dossier)
        except SendError as error:
            self.say(error.text)
            return
        answer = self._ask("send", {"options": options.to_json(),
                                    "data_folder": str(self.ctx.paths.data),
                                    "help": str(_sending_help())})
        request = (answer or {}).get("request")
        if isinstance(request, dict):
            self._in_background("sending", lambda: self._send(request))

    def _send(self, request_json: dict[str, Any]) -> None:
        """Send through the core; the bus tells the icon, the notices and the journal.

        A web send cut by the line resumes by itself (Core.send with `resume`)."""
        from daemon.send.base import SendError
        from daemon.send.sender import SendRequest

        self.render()
        try:
            self.core.send(SendRequest.from_json(request_json), resume=True)
        except SendError as error:
            log.info("send of dossier %s: %s", request_json.get("dossier"), error.code)
        finally:
            self.render()

    def _cancel_send(self) -> None:
        """*Annuler l'envoi*: the sends under way stop and leave nothing behind."""
        self.core.cancel_sends()

    def _open_report(self) -> None:
        """A click on the end-of-send notification: the report (*rapport*) page."""
        name = self._last_sent
        path = self.core.sender().report_path(name) if name else None
        if path is None or not path.is_file() or not platform.open_with_system(path):
            self._journal()

    def _journal(self) -> None:
        with self._lock:
            problems = [f"{clock(p.at)}  {p.message}" for p in reversed(self.state.problems)]
        lines = [_journal_line(entry) for entry in self.core.journal(JOURNAL_LINES)]
        self.core.problems_seen()
        self.feed(ProblemsSeen())
        self._ask("journal", {"problems": problems, "lines": lines})

    def _settings(self) -> None:
        """*Paramètres*: the settings window (the set-up wizard while « à configurer »);
        the service applies what it saves by itself, and its ConfigApplied updates the
        tray."""
        from daemon.setup.plan import window_data

        kind = "settings" if self.state.configured else "setup"
        self._ask(kind, window_data(self.ctx.paths))

    # ------------------------------------------------------------ the restart prompt

    def _follow_restart(self, held: tuple[int, ...]) -> None:
        """Follow the service's RestartRequired: prompt once for new updates held for a
        restart; drop the prompt once they were handed over."""
        with self._lock:
            if not held:
                if self._prompted:
                    self._prompted.clear()
                    self._cancel_reminder()
                    self.dialogs.close("restart")
                return
            new = set(held) - self._prompted
            self._prompted |= new
            due = time.monotonic() - self._last_prompt >= MIN_REMIND_MINUTES * 60
        if not new:
            return
        notice = self.policy.restart_notice(self.app_name, len(held))
        if notice is not None:
            with self._lock:
                self._announced |= {i.name for i in map(self.ctx.queue.get, new) if i}
            self.notify(notice)
        if due:
            self.perform(Action.RESTART_APP)
        else:
            self._schedule_reminder()

    def _prompt_restart(self) -> None:
        """*Relancer maintenant* / *Plus tard*."""
        with self._lock:
            self._last_prompt = time.monotonic()
            self._cancel_reminder()
        held = self.core.restart_items()
        answer = self._ask("restart", {
            "app": self.app_name,
            "message": etalon_message(),
            "names": [item.name for item in held],
        })
        if answer is not None and answer.get("choice") == "now":
            self._restart_now()
        elif self.state.restart_ids and not self._restarting.locked():
            # "Plus tard", or the window was closed (not by a restart under way).
            self._schedule_reminder()

    def _restart_from_notification(self) -> None:
        self.dialogs.close("restart")  # the question is answered
        self._restart_now()

    def _restart_now(self) -> None:
        # One restart at a time, whether asked from the prompt or from the notification.
        if not self._restarting.acquire(blocking=False):
            return
        try:
            self._restart_now_once()
        finally:
            self._restarting.release()

    def _restart_now_once(self) -> None:
        report = self.core.restart_app()
        if report.outcome is RestartOutcome.STILL_RUNNING:
            seconds = self.restart_settings.close_timeout_seconds
            answer = self._ask("confirm", {
                "title": _("{app} does not close").format(app=self.app_name),
                "message": ngettext(
                    "{app} did not close within {n} second: it may be waiting for you (a "
                    "question, unsaved work). Force it to close? Work not saved in {app} "
                    "would be lost.",
                    "{app} did not close within {n} seconds: it may be waiting for you (a "
                    "question, unsaved work). Force it to close? Work not saved in {app} "
                    "would be lost.", seconds).format(app=self.app_name, n=seconds),
                "yes": _("Force it to close"),
                "no": _("Leave it open"),
            })
            if not (answer and answer.get("yes")):
                self.say(_("{app} was left open: the updates still wait. Close {app} "
                           "yourself and they will be handed over at once.").format(
                               app=self.app_name), Action.RESTART_APP)
                self._schedule_reminder()
                return
            report = self.core.restart_app(force_pids=report.pids)
        self._after_restart(report)

    def _after_restart(self, report: RestartReport) -> None:
        self.say(describe_report(report, self.app_name))
        if report.outcome is RestartOutcome.STILL_RUNNING:
            self._schedule_reminder()

    def _schedule_reminder(self) -> None:
        with self._lock:
            self._cancel_reminder()
            self._reminder = _timer(seconds_until_reminder(self.restart_settings),
                                    self._remind)

    def _cancel_reminder(self) -> None:
        if self._reminder is not None:
            self._reminder.cancel()
            self._reminder = None

    def _remind(self) -> None:
        with self._lock:
            self._reminder = None
            held = self.state.restart_ids
        if held:
            notice = self.policy.restart_notice(self.app_name, len(held))
            if notice is not None:
                self.notify(notice)
            self.perform(Action.RESTART_APP)


# ---------------------------------------------------------------- helpers


def _timer(seconds: float, action: Callable[[], None]) -> threading.Timer:
    # One sleeping thread per timer: no periodic wake-up while waiting.
    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


def _sending_help() -> Path:
    """Return the documentation of sending (Aide in the wizard)."""
    from tray.ui import PROJECT_ROOT

    return PROJECT_ROOT / "docs" / "sending.md"


def _downloads() -> Path:
    import platformdirs

    return Path(platformdirs.user_downloads_dir())


def _entry_json(entry: Entry) -> dict[str, Any]:
    return {"label": entry.label, "action": str(entry.action) if entry.action else "",
            "arg": entry.arg, "enabled": entry.enabled and entry.action is not None,
            "default": entry.default, "separator": entry.is_separator}


def _local_time(iso: str) -> str:
    return format_datetime(datetime.fromisoformat(iso).astimezone())


def _not_handed_words() -> dict[Result, str]:
    """Return what *Traiter* says of an update it did not hand over, as `passeur process`."""
    return {
        Result.HELD: _("{file}: waits for the previous update of the dossier"),
        Result.ALTERED: _("{file}: not handed over: its copy in the queue is no longer the "
                          "file that was verified (changed on disk); delete it from the list "
                          "and import the update again"),
    }


def _queue_row(line: Line, manifest: str | None) -> dict[str, Any]:
    """One row of the queue dialog; the dialog reads the manifest when the row is selected."""
    try:
        # The creation date as the accountant's software wrote it in the file name, like
        # the content below it (not converted to this computer's time zone).
        created = format_datetime(parse_name(line.name).saved_at)
    except Rejected:
        created = _local_time(line.created)
    return {"id": line.id, "name": line.name, "etalon": line.etalon, "created": created,
            "manifest": manifest}


def _journal_line(entry: HistoryEntry) -> str:
    return f"{_local_time(entry.at)}  {describe_activity(entry.action, entry.detail)}"
