"""The tray's overall state: every status, the transitions that matter, the words."""

from __future__ import annotations

from datetime import datetime
from functools import reduce as fold

import pytest

from daemon import events as ev
from daemon import i18n
from tray.state import (
    ProblemsSeen,
    QueueSnapshot,
    Status,
    Transfer,
    TrayState,
    reduce,
    status_of,
    tooltip,
)

UNCONFIGURED = ev.ConfigApplied(False, "Isacompta", ())  # nothing to receive yet

T0 = datetime(2026, 3, 2, 14, 5).timestamp()
TODAY = datetime(2026, 3, 2, 18, 0)


def play(*events: ev.Event, start: TrayState | None = None) -> TrayState:
    return fold(reduce, events, start or TrayState())


def held(*ids: int) -> ev.RestartRequired:
    """The service's word: these updates wait for a restart (none: nothing waits)."""
    return ev.RestartRequired(ids, "Isacompta")


def test_a_fresh_state_is_up_to_date() -> None:
    assert TrayState().status is Status.UP_TO_DATE
    assert TrayState().badge == 0


@pytest.mark.parametrize(("events", "expected"), [
    ((UNCONFIGURED,), Status.TO_CONFIGURE),
    ((QueueSnapshot(1), held(7)), Status.RESTART_REQUIRED),
    ((ev.SourceFailed("web", "auth", "Mot de passe refusé"),), Status.ERROR),
    ((ev.PauseChanged(True, None),), Status.PAUSED),
    ((ev.SendStarted("8502182", "8502182-20201027171147.wvz", "web"),), Status.SENDING),
    ((ev.UpdateFound("web", "8502182", "a.wwz", 100),), Status.RECEIVING),
    ((QueueSnapshot(2),), Status.WAITING),
    ((ev.Offline("web", "timeout"),), Status.OFFLINE),
    ((ev.PollFinished("web", False),), Status.UP_TO_DATE),
])
def test_every_status_is_reachable(events: tuple[ev.Event, ...], expected: Status) -> None:
    assert play(*events).status is expected


def test_the_most_urgent_status_wins() -> None:
    # Each event adds a condition more urgent than the ones before it.
    story: list[tuple[ev.Event, Status]] = [
        (ev.Offline("web", "timeout"), Status.OFFLINE),
        (QueueSnapshot(2), Status.WAITING),
        (ev.UpdateFound("usb", "8502182", "b.wwz", 10), Status.RECEIVING),
        (ev.SendStarted("8502182", "x.wvz", "web"), Status.SENDING),
        (ev.PauseChanged(True, None), Status.PAUSED),
        (ev.SourceFailed("usb", "disk-full", "Disque plein"), Status.ERROR),
        (held(4), Status.RESTART_REQUIRED),
        (UNCONFIGURED, Status.TO_CONFIGURE),
    ]
    state = TrayState()
    for event, expected in story:
        state = reduce(state, event)
        assert status_of(state) is expected, event


def test_receiving_shows_progress_then_ends_with_the_file_or_the_poll() -> None:
    state = play(ev.UpdateFound("web", "8502182", "a.wwz", 1000),
                 ev.DownloadProgress("web", "a.wwz", 450, 1000))
    assert state.receiving == Transfer("a.wwz", 450, 1000)
    assert state.receiving.percent == 45
    queued = reduce(state, ev.UpdateQueued(1, "a.wwz", "8502182", "web", False))
    assert queued.receiving is None
    other = reduce(state, ev.UpdateRejected("b.wwz", "web", "c", "fr", "en"))
    assert other.receiving == state.receiving, "another file's refusal ends nothing"
    assert reduce(state, ev.PollFinished("web", True, 1)).receiving is None


def test_the_queue_snapshot_sets_the_badge_and_restart_clears_when_handed_over() -> None:
    state = play(QueueSnapshot(3), held(9, 8))
    assert (state.status, state.badge, state.restart_ids) == (
        Status.RESTART_REQUIRED, 3, (8, 9))
    after = play(QueueSnapshot(0), held(), start=state)
    assert (after.status, after.badge) == (Status.UP_TO_DATE, 0)


def test_restart_required_carries_the_whole_set_held_now() -> None:
    state = play(held(4), held(5, 4))
    assert state.restart_ids == (4, 5)
    assert reduce(state, ev.QueueChanged(1)).restart_ids == (4, 5), "a count says nothing"
    assert reduce(state, QueueSnapshot(1)).restart_ids == (4, 5)
    assert reduce(state, held(5)).restart_ids == (5,)
    assert play(QueueSnapshot(1), held(), start=state).status is Status.WAITING


def test_queue_changed_updates_the_count() -> None:
    assert play(QueueSnapshot(2), ev.QueueChanged(5)).badge == 5
    assert play(QueueSnapshot(2), ev.QueueChanged(0)).status is Status.UP_TO_DATE


def test_offline_and_back_online_per_source() -> None:
    state = play(ev.Offline("web", "a"), ev.Offline("mirror", "b"))
    assert reduce(state, ev.BackOnline("web")).status is Status.OFFLINE
    assert play(ev.BackOnline("web"), ev.BackOnline("mirror"), start=state).status is (
        Status.UP_TO_DATE)


def test_a_problem_stays_until_seen_or_the_source_recovers() -> None:
    failed = play(ev.SourceFailed("web", "auth", "Mot de passe refusé"),
                  ev.SourceFailed("web", "auth", "Mot de passe refusé"))
    assert len(failed.problems) == 1, "the same failure twice is one problem"
    assert reduce(failed, ev.PollFinished("web", False)).status is Status.ERROR
    assert reduce(failed, ProblemsSeen()).status is Status.UP_TO_DATE
    assert reduce(failed, ev.BackOnline("web")).status is Status.UP_TO_DATE
    assert reduce(failed, ev.UpdateQueued(1, "a.wwz", "8502182", "web", False)).status is (
        Status.UP_TO_DATE)
    assert reduce(failed, ev.UpdateQueued(1, "a.wwz", "8502182", "usb:KEY", False)).status \
        is Status.ERROR, "another source's success says nothing about this one"


def test_pause_and_resume() -> None:
    paused = play(QueueSnapshot(2), ev.PauseChanged(True, T0 + 3600))
    assert (paused.status, paused.badge) == (Status.PAUSED, 2)
    resumed = reduce(paused, ev.PauseChanged(False))
    assert (resumed.status, resumed.paused_until) == (Status.WAITING, None)


def test_sending_ends_with_send_finished() -> None:
    state = play(ev.SendStarted("8502182", "x.wvz", "web"))
    assert reduce(state, ev.SendFinished("8502182", "x.wvz", "web", True)).status is (
        Status.UP_TO_DATE)


def test_events_that_do_not_concern_the_icon_change_nothing() -> None:
    state = play(QueueSnapshot(2))
    assert reduce(state, ev.ServiceStarted()) is state
    assert reduce(state, ev.BatchFinished("web", ("a.wwz",))) is state


def test_tooltip_says_it_in_words() -> None:
    state = play(QueueSnapshot(2), ev.PollFinished("web", True, at=T0))
    assert tooltip(state, "Isacompta", TODAY) == (
        "2 mises à jour à intégrer — dernière vérification 14:05")
    assert tooltip(play(QueueSnapshot(1), held(3)), "Isacompta", TODAY) == (
        "Isacompta doit être relancé pour intégrer 1 mise à jour")
    offline = play(QueueSnapshot(1), ev.Offline("web", "x"))
    assert tooltip(offline, "Isacompta", TODAY) == (
        "1 mise à jour à intégrer — Le site du comptable ne répond pas")
    paused = play(QueueSnapshot(1), ev.PauseChanged(True, None))
    assert tooltip(paused, "Isacompta", TODAY) == (
        "En pause jusqu'à reprise — 1 mise à jour à intégrer")
    receiving = play(ev.DownloadProgress("web", "a.wwz", 1, 4))
    assert tooltip(receiving, "Isacompta", TODAY) == "Réception de a.wwz : 25 %"
    assert tooltip(play(UNCONFIGURED), "Isacompta", TODAY) == (
        "passeur n'est pas encore configuré : ouvrez Paramètres")


def test_tooltip_in_english_and_dated_when_not_today() -> None:
    i18n.setup("en")
    state = play(ev.PollFinished("web", False, at=T0))
    assert tooltip(state, "Isacompta", datetime(2026, 3, 3, 9, 0)) == (
        "Up to date — last check 03-02 14:05")
    assert tooltip(play(ev.PauseChanged(True, None)), "Isacompta") == "Paused until resumed"


def test_tooltip_is_never_longer_than_windows_allows() -> None:
    state = play(ev.SourceFailed("web", "x", "très long message " * 20))
    text = tooltip(state, "Isacompta")
    assert len(text) == 127
    assert text.endswith("…")


def test_a_config_applied_again_ends_the_refused_edit_and_sets_what_is_configured() -> None:
    refused = play(ev.SourceFailed("config", "config-invalid", "poll_minutes: 0"),
                   ev.SourceFailed("web", "offline", "down"))
    assert {p.source for p in refused.problems} == {"config", "web"}
    applied = play(ev.ConfigApplied(False, "Isacompta"), start=refused)
    assert [p.source for p in applied.problems] == ["web"]
    assert status_of(applied) is Status.TO_CONFIGURE
    configured = play(ev.ConfigApplied(True, "Isacompta", (("8502182", "GAEC"),)),
                      start=applied)
    assert configured.configured
