"""The tray menu model: entries for each state, the default action, AppIndicator order."""

from __future__ import annotations

import pytest

from daemon import events as ev
from tray.menu import Action, Entry, build_menu, flatten, primary_action
from tray.state import QueueSnapshot, Transfer, TrayState, reduce

UNCONFIGURED = ev.ConfigApplied(False, "Isacompta", ())  # nothing to receive yet

DOSSIERS = [("8502182", "GAEC LE GUYON")]


def labels(entries: tuple[Entry, ...] | list[Entry]) -> list[str]:
    return [e.label or "—" for e in entries]


def by_action(entries: tuple[Entry, ...], action: Action) -> Entry:
    return next(e for e in entries if e.action is action)


def test_the_menu_of_an_idle_tray() -> None:
    entries = build_menu(TrayState(), "Isacompta", DOSSIERS)
    assert labels(entries) == [
        "Recevoir maintenant", "Mises à jour à intégrer (0)…", "—", "Envoyer le dossier",
        "Importer un fichier…", "Pause", "—", "Journal", "Paramètres", "—", "Quitter"]
    assert not by_action(entries, Action.OPEN_QUEUE).enabled
    assert by_action(entries, Action.RECEIVE_NOW).default
    pause = entries[5]
    assert [(c.label, c.action) for c in pause.children] == [
        ("1 heure", Action.PAUSE_HOUR), ("Jusqu'à reprise", Action.PAUSE_UNTIL_RESUMED)]


def test_send_opens_the_wizard_of_each_dossier() -> None:
    send = build_menu(TrayState(), "Isacompta", DOSSIERS)[3]
    assert send.enabled
    assert [(c.label, c.action, c.arg, c.enabled) for c in send.children] == [
        ("8502182 – GAEC LE GUYON", Action.SEND_DOSSIER, "8502182", True)]
    assert Action.CANCEL_SEND not in {e.action for e in flatten([send])}


def test_while_sending_the_menu_offers_to_cancel_and_no_second_send() -> None:
    entries = build_menu(TrayState(sending=Transfer("8502182-20201027172021.wvz", 5, 10)),
                         "Isacompta", DOSSIERS)
    send = entries[3]
    assert (send.label, send.enabled) == ("Envoyer le dossier", False)
    assert (entries[4].label, entries[4].action) == ("Annuler l'envoi", Action.CANCEL_SEND)


def test_no_dossier_no_send() -> None:
    send = build_menu(TrayState(), "Isacompta", [])[3]
    assert (send.label, send.enabled, send.children) == ("Envoyer le dossier", False, ())


def test_waiting_updates_make_the_list_the_default() -> None:
    entries = build_menu(reduce(TrayState(), QueueSnapshot(3)), "Isacompta", DOSSIERS)
    queue = by_action(entries, Action.OPEN_QUEUE)
    assert (queue.label, queue.enabled, queue.default) == (
        "Mises à jour à intégrer (3)…", True, True)
    assert [e for e in entries if e.default] == [queue]


def test_restart_entry_only_when_needed() -> None:
    idle = build_menu(TrayState(), "Isacompta", DOSSIERS)
    assert all(e.action is not Action.RESTART_APP for e in idle)
    held = ev.RestartRequired((5,), "Isacompta")
    needed = build_menu(reduce(reduce(TrayState(), QueueSnapshot(1)), held), "Isacompta",
                        DOSSIERS)
    restart = by_action(needed, Action.RESTART_APP)
    assert (restart.label, restart.default) == ("Relancer Isacompta…", True)


def test_pause_becomes_resume() -> None:
    entries = build_menu(reduce(TrayState(), ev.PauseChanged(True, None)), "Isacompta", DOSSIERS)
    resume = by_action(entries, Action.RESUME)
    assert (resume.label, resume.default) == ("Reprendre", True)
    assert "Pause" not in labels(entries)


def test_unconfigured_tray_points_to_settings() -> None:
    entries = build_menu(reduce(TrayState(), UNCONFIGURED), "Isacompta", DOSSIERS)
    assert by_action(entries, Action.SETTINGS).default
    assert not by_action(entries, Action.RECEIVE_NOW).enabled
    assert not by_action(entries, Action.IMPORT_FILE).enabled


@pytest.mark.parametrize(("state", "expected"), [
    (TrayState(), Action.RECEIVE_NOW),
    (TrayState(waiting=2), Action.OPEN_QUEUE),
    (TrayState(waiting=2, restart_ids=(1,)), Action.RESTART_APP),
    (TrayState(configured=False), Action.SETTINGS),
    (TrayState(paused=True), Action.RESUME),
    (TrayState(paused=True, waiting=1), Action.OPEN_QUEUE),
])
def test_primary_action(state: TrayState, expected: Action) -> None:
    assert primary_action(state) is expected


def test_without_default_action_the_most_useful_entry_comes_first() -> None:
    state = TrayState(waiting=2, restart_ids=(1,))
    entries = build_menu(state, "Isacompta", DOSSIERS, has_default_action=False)
    assert labels(entries)[:3] == ["Relancer Isacompta…", "—", "Recevoir maintenant"]
    assert labels(entries).count("Relancer Isacompta…") == 1
    idle = build_menu(TrayState(), "Isacompta", DOSSIERS, has_default_action=False)
    assert labels(idle) == labels(build_menu(TrayState(), "Isacompta", DOSSIERS))


def test_flatten_for_the_choices_dialog() -> None:
    flat = flatten(build_menu(TrayState(waiting=1), "Isacompta", DOSSIERS))
    assert labels(flat) == [
        "Recevoir maintenant", "Mises à jour à intégrer (1)…", "—",
        "Envoyer le dossier – 8502182 – GAEC LE GUYON", "Importer un fichier…",
        "Pause – 1 heure", "Pause – Jusqu'à reprise", "—", "Journal", "Paramètres", "—",
        "Quitter"]
    assert [e.label for e in flat if e.default] == ["Mises à jour à intégrer (1)…"]
    assert flat[3].enabled


def test_flatten_drops_repeated_and_trailing_separators() -> None:
    sep = Entry("")
    flat = flatten([sep, Entry("A", Action.QUIT), sep, sep, Entry("B", Action.JOURNAL), sep])
    assert labels(flat) == ["A", "—", "B"]
