"""The tray menu as plain data, computed from the state by a pure function.

Every command of the tray is here: receiving, the queue, the restart prompt, sending the
dossier (the wizard, or *Annuler l'envoi* while a send goes on), importing, pausing, the
journal, the settings. A thin adapter (tray/backend.py) renders it with pystray where the
backend has menus, with the most useful entry first where it has no default action
(AppIndicator); the choices dialog shows the same entries where it has no menu (plain
X11, pystray's xorg backend).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace

from daemon.i18n import _
from tray.state import Status, TrayState, status_of


class Action(enum.StrEnum):
    """Everything the user can ask from the tray."""

    RECEIVE_NOW = "receive-now"
    OPEN_QUEUE = "open-queue"
    RESTART_APP = "restart-app"  # the prompt: Relancer maintenant / Plus tard
    RESTART_NOW = "restart-now"  # the notification's own button: no second question
    SEND_DOSSIER = "send-dossier"
    CANCEL_SEND = "cancel-send"  # *Annuler l'envoi*, while a send goes on
    OPEN_REPORT = "open-report"  # the end-of-send notification: the report page
    IMPORT_FILE = "import-file"
    PAUSE_HOUR = "pause-hour"
    PAUSE_UNTIL_RESUMED = "pause-until-resumed"
    RESUME = "resume"
    JOURNAL = "journal"
    SETTINGS = "settings"
    QUIT = "quit"


@dataclass(frozen=True)
class Entry:
    """One menu entry: a command, a submenu (children) or a separator (no label)."""

    label: str
    action: Action | None = None
    arg: str = ""
    enabled: bool = True
    default: bool = False
    children: tuple[Entry, ...] = ()

    @property
    def is_separator(self) -> bool:
        """Tell whether this entry is a separator line."""
        return not self.label


SEPARATOR = Entry("")


def primary_action(state: TrayState) -> Action:
    """Return the most useful thing to do now (the default action, or the first entry)."""
    status = status_of(state)
    if status is Status.TO_CONFIGURE:
        return Action.SETTINGS
    if status is Status.RESTART_REQUIRED:
        return Action.RESTART_APP
    if status is Status.ERROR:
        return Action.JOURNAL
    if state.waiting:
        return Action.OPEN_QUEUE
    if status is Status.PAUSED:
        return Action.RESUME
    return Action.RECEIVE_NOW


def build_menu(state: TrayState, app_name: str, dossiers: Sequence[tuple[str, str]],
               has_default_action: bool = True) -> tuple[Entry, ...]:
    """Return the menu for this state.

    `dossiers` are (number, name) pairs for *Envoyer le dossier*. Where the backend has
    no default action (AppIndicator), the most useful entry comes first instead.
    """
    configured = state.configured
    entries = [
        Entry(_("Receive now"), Action.RECEIVE_NOW, enabled=configured),
        Entry(_("Updates to integrate ({n})…").format(n=state.waiting), Action.OPEN_QUEUE,
              enabled=state.waiting > 0),
    ]
    if state.restart_ids:
        entries.append(Entry(_("Restart {app}…").format(app=app_name), Action.RESTART_APP))
    entries += [
        SEPARATOR,
        *_send_menu(dossiers, state),
        Entry(_("Import a file…"), Action.IMPORT_FILE, enabled=configured),
        _pause_entry(state),
        SEPARATOR,
        Entry(_("Journal"), Action.JOURNAL),
        Entry(_("Settings"), Action.SETTINGS),
        SEPARATOR,
        Entry(_("Quit"), Action.QUIT),
    ]
    primary = primary_action(state)
    entries = [replace(e, default=True) if e.action is primary else e for e in entries]
    if not has_default_action:
        entries = _primary_first(entries)
    return tuple(entries)


def _send_menu(dossiers: Sequence[tuple[str, str]], state: TrayState) -> list[Entry]:
    """*Envoyer le dossier ▸ <dossier>* (the wizard), and *Annuler l'envoi* while sending."""
    sending = state.sending is not None
    children = tuple(Entry(f"{number} – {name}" if name else number, Action.SEND_DOSSIER,
                           arg=number, enabled=not sending) for number, name in dossiers)
    entries = [Entry(_("Send the dossier"), children=children,
                     enabled=bool(children) and not sending)]
    if sending:
        entries.append(Entry(_("Cancel the send"), Action.CANCEL_SEND))
    return entries


def _pause_entry(state: TrayState) -> Entry:
    if state.paused:
        return Entry(_("Resume"), Action.RESUME)
    return Entry(_("Pause"), children=(
        Entry(_("For 1 hour"), Action.PAUSE_HOUR),
        Entry(_("Until resumed"), Action.PAUSE_UNTIL_RESUMED),
    ))


def _primary_first(entries: list[Entry]) -> list[Entry]:
    index = next((i for i, e in enumerate(entries) if e.default), None)
    if index is None or index == 0:
        return entries
    primary = entries[index]
    rest = entries[:index] + entries[index + 1:]
    return [primary, SEPARATOR, *rest]


def flatten(entries: Sequence[Entry]) -> list[Entry]:
    """Return the commands of a menu as one list (submenus as "Pause – 1 heure"), for the
    choices dialog; separators are kept, repeated ones dropped."""
    flat: list[Entry] = []
    for entry in entries:
        if entry.is_separator:
            if flat and not flat[-1].is_separator:
                flat.append(entry)
        elif entry.children:
            flat += [replace(child, label=f"{entry.label} – {child.label}",
                             enabled=child.enabled and entry.enabled)
                     for child in entry.children]
        else:
            flat.append(entry)
    while flat and flat[-1].is_separator:
        flat.pop()
    return flat
