"""Which events become a notification, and what it says: calm by design.

One notification per batch, never per file; the user's per-event preferences
(`[notifications]`); nothing while paused except the restart prompt; an offline endpoint
or a failing source is said once, then only the icon shows it. The policy is plain logic
(no I/O) so that every rule is tested without a notification server.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from daemon import events as ev
from daemon.errors import Rejected
from daemon.i18n import _, ngettext
from daemon.naming import parse_name
from daemon.presentation import describe_receipt
from tray.menu import Action
from tray.state import Status


def etalon_message() -> str:
    """Return the accounting application's own words for an update with dossiers étalons."""
    return _("The exchange file contains dossiers étalons: the application will be stopped. "
             "You will have to start it again for the exchange file to be integrated.")


@dataclass(frozen=True)
class Button:
    """A button on a notification (where the platform shows them)."""

    label: str
    action: Action


@dataclass(frozen=True)
class Notice:
    """One notification: its preference key, words, and what a click opens."""

    kind: str
    title: str
    message: str
    target: Action | None = None
    buttons: tuple[Button, ...] = ()
    status: Status | None = None  # whose icon the notification shows


def first_run_notice() -> Notice:
    """Return the notice shown when passeur starts unconfigured (with the gear picture)."""
    return Notice("outcome", "passeur", _(
        "passeur is not configured yet: open Settings to add your dossier and your "
        "accountant's key."), Action.SETTINGS, status=Status.TO_CONFIGURE)


def nothing_new_notice() -> Notice:
    """Return the calm answer to *Recevoir maintenant* when the accountant had nothing new."""
    return Notice("outcome", "passeur", _("Nothing new from your accountant"),
                  status=Status.UP_TO_DATE)


def receive_failed_notice(reasons: list[str]) -> Notice:
    """Return the answer to *Recevoir maintenant* when the accountant's site could not be
    read (the reasons are already in plain words)."""
    return Notice("outcome", "passeur", _(
        "The accountant's site could not be checked: {reasons}").format(
            reasons="; ".join(reasons)), Action.JOURNAL, status=Status.ERROR)


class NoticePolicy:
    """Turns events into at most one notice each, remembering what was already said."""

    def __init__(self, preferences: Mapping[str, bool]) -> None:
        self.preferences = dict(preferences)
        self._dossier_of: dict[str, str] = {}
        self._offline: set[str] = set()
        self._failures: set[tuple[str, str]] = set()

    def wants(self, kind: str) -> bool:
        """Tell whether the user wants notifications of this kind (unknown kinds: yes)."""
        return self.preferences.get(kind, True)

    def decide(self, event: ev.Event, paused: bool = False) -> Notice | None:
        """Return the notice for this event, or None; pause silences all but restarts."""
        notice = self._notice_for(event)
        if notice is None or not self.wants(notice.kind):
            return None
        if paused and notice.kind != "restart_required":
            return None
        return notice

    def _notice_for(self, event: ev.Event) -> Notice | None:
        match event:
            case ev.UpdateQueued(name=name, dossier=dossier):
                self._dossier_of[name] = dossier
            case ev.BatchFinished():
                return self._batch(event)
            case ev.Offline(source=source) if source not in self._offline:
                self._offline.add(source)
                return Notice("offline", "passeur", _(
                    "The accountant's site cannot be reached; passeur will try again by "
                    "itself."), Action.JOURNAL, status=Status.OFFLINE)
            case ev.BackOnline(source=source):
                self._offline.discard(source)
                self._failures = {f for f in self._failures if f[0] != source}
            case ev.SourceFailed(source=source, code=code, message=message):
                if (source, code) not in self._failures:
                    self._failures.add((source, code))
                    return Notice("problem", _("passeur needs your attention"), message,
                                  Action.JOURNAL, status=Status.ERROR)
            case ev.SendFinished() | ev.SendFailed() | ev.ReceiptReceived():
                return self._send_notice(event)
        return None

    def _send_notice(self, event: ev.Event) -> Notice | None:
        """The one notification at the end of a send; a receipt only when asked for."""
        match event:
            case ev.SendFinished(dossier=dossier, ok=False, message=message):
                # Older producers said a failure this way (SendFailed exists since).
                return Notice("sent", "passeur", _(
                    "Dossier {number} could not be sent: {reason}").format(
                        number=dossier, reason=message), Action.JOURNAL, status=Status.ERROR)
            case ev.SendFinished(dossier=dossier, channel="folder", message=message):
                return Notice("sent", _("Dossier {number} sent").format(number=dossier),
                              message, Action.OPEN_REPORT, status=Status.UP_TO_DATE)
            case ev.SendFinished(dossier=dossier):
                return Notice("sent", "passeur", _(
                    "Dossier {number} was sent to the accountant").format(number=dossier),
                    Action.OPEN_REPORT, status=Status.UP_TO_DATE)
            case ev.SendFailed(dossier=dossier, code="cancelled"):
                return Notice("sent", "passeur", _(
                    "The send of dossier {number} was cancelled: nothing was sent.").format(
                        number=dossier), Action.JOURNAL)
            case ev.SendFailed(dossier=dossier, message=message, in_window=in_window):
                return Notice("sent", _("Dossier {number} not sent").format(number=dossier),
                              in_window or message, Action.JOURNAL, status=Status.ERROR)
            case ev.ReceiptReceived(name=name, received_at=when) if self.preferences.get(
                    "receipt", False):
                # Calm by default: the journal and the report say it; a notification
                # only for a user who asked for one (`[notifications] receipt = true`).
                return Notice("receipt", "passeur", describe_receipt(name, when),
                              Action.OPEN_REPORT)
        return None

    def _batch(self, event: ev.BatchFinished) -> Notice | None:
        lines = []
        if event.queued and self.wants("received"):
            lines.append(self._received_words(event.queued))
        if event.rejected and self.wants("rejected"):
            count = len(event.rejected)
            lines.append(ngettext("{n} file refused (see the journal)",
                                  "{n} files refused (see the journal)", count).format(n=count))
        for name in event.queued:
            self._dossier_of.pop(name, None)
        if not lines:
            return None
        kind = "received" if event.queued and self.wants("received") else "rejected"
        target = Action.OPEN_QUEUE if kind == "received" else Action.JOURNAL
        status = Status.WAITING if kind == "received" else Status.ERROR
        return Notice(kind, "passeur", "\n".join(lines), target, status=status)

    def _received_words(self, names: tuple[str, ...]) -> str:
        dossiers = Counter(self._dossier(name) for name in names)
        count = len(names)
        if len(dossiers) == 1:
            (dossier,) = dossiers
            return ngettext("{n} update received for dossier {number}",
                            "{n} updates received for dossier {number}", count).format(
                                n=count, number=dossier)
        return ngettext("{n} update received for {k} dossiers",
                        "{n} updates received for {k} dossiers", count).format(
                            n=count, k=len(dossiers))

    def _dossier(self, name: str) -> str:
        known = self._dossier_of.get(name)
        if known is not None:
            return known
        with contextlib.suppress(Rejected):
            return parse_name(name).dossier
        return "?"

    def restart_notice(self, app_name: str, count: int) -> Notice | None:
        """Return the notice that an update waits for a restart (shown even when paused)."""
        if not self.wants("restart_required"):
            return None
        message = etalon_message() + "\n" + ngettext(
            "{n} update waits for {app} to be restarted.",
            "{n} updates wait for {app} to be restarted.", count).format(n=count, app=app_name)
        return Notice("restart_required", _("Restart {app}").format(app=app_name), message,
                      Action.RESTART_APP, (Button(_("Restart now"), Action.RESTART_NOW),),
                      Status.RESTART_REQUIRED)

    def outcome_notice(self, message: str) -> Notice:
        """Return the notice saying how something the user asked for went (always shown)."""
        return Notice("outcome", "passeur", message, Action.JOURNAL)
