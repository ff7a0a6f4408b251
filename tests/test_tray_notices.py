"""Notification policy: one per batch, preferences, pause, no storms."""

from __future__ import annotations

from daemon import events as ev
from daemon.config import NOTIFICATION_EVENTS
from tray.menu import Action
from tray.notices import NoticePolicy

ALL_ON = dict.fromkeys(NOTIFICATION_EVENTS, True)
NAMES = ("8502182-20201027172121.wwz", "8502182-20201027172221.wwz",
         "8502182-20201027172321.wwz")


def batch(policy: NoticePolicy, names: tuple[str, ...] = NAMES, dossier: str = "8502182",
          rejected: tuple[str, ...] = (), paused: bool = False) -> list[str]:
    said = []
    events: list[ev.Event] = [ev.UpdateQueued(i, n, dossier, "web", False)
                              for i, n in enumerate(names)]
    events.append(ev.BatchFinished("web", names, rejected))
    for event in events:
        notice = policy.decide(event, paused)
        if notice is not None:
            said.append(notice.message)
    return said


def test_one_notification_per_batch_not_per_file() -> None:
    assert batch(NoticePolicy(ALL_ON)) == ["3 mises à jour reçues pour le dossier 8502182"]


def test_a_batch_with_refused_files_says_both_in_one_notification() -> None:
    policy = NoticePolicy(ALL_ON)
    said = batch(policy, NAMES[:1], rejected=("x.wwz", "y.wwz"))
    assert said == ["1 mise à jour reçue pour le dossier 8502182\n"
                    "2 fichiers refusés (voir le journal)"]
    notice = policy.decide(ev.BatchFinished("usb:KEY", (), ("z.wwz",)))
    assert notice is not None
    assert notice.target is Action.JOURNAL


def test_updates_of_several_dossiers() -> None:
    policy = NoticePolicy(ALL_ON)
    policy.decide(ev.UpdateQueued(1, "8502182-20201027172121.wwz", "8502182", "web", False))
    notice = policy.decide(ev.BatchFinished("web", ("8502182-20201027172121.wwz",
                                                    "1234567-20201027172121.wwz")))
    assert notice is not None
    assert notice.message == "2 mises à jour reçues pour 2 dossiers"
    assert notice.target is Action.OPEN_QUEUE


def test_preferences_silence_their_kind_only() -> None:
    policy = NoticePolicy(ALL_ON | {"received": False})
    assert batch(policy) == []
    assert batch(policy, NAMES[:1], rejected=("x.wwz",)) == [
        "1 fichier refusé (voir le journal)"]
    assert policy.decide(ev.Offline("web", "timeout")) is not None
    assert NoticePolicy(ALL_ON | {"offline": False}).decide(ev.Offline("web", "x")) is None
    assert NoticePolicy(ALL_ON | {"restart_required": False}).restart_notice(
        "Isacompta", 1) is None


def test_nothing_while_paused_except_restart_required() -> None:
    policy = NoticePolicy(ALL_ON)
    assert batch(policy, paused=True) == []
    assert policy.decide(ev.Offline("web", "timeout"), paused=True) is None
    restart = policy.restart_notice("Isacompta", 2)
    assert restart is not None
    assert restart.kind == "restart_required"
    assert restart.target is Action.RESTART_APP
    assert restart.message.startswith(
        "Le fichier d'échange contient des dossiers étalons : l'application va être arrêtée. "
        "Vous devrez la relancer pour que le fichier d'échange soit intégré.")
    assert restart.message.endswith(
        "2 mises à jour attendent la relance de l'application Isacompta.")
    assert [(b.label, b.action) for b in restart.buttons] == [
        ("Relancer maintenant", Action.RESTART_NOW)]


def test_offline_is_said_once_until_back_online() -> None:
    policy = NoticePolicy(ALL_ON)
    said = [policy.decide(ev.Offline("web", "timeout")) for _ in range(5)]
    assert sum(n is not None for n in said) == 1
    assert policy.decide(ev.BackOnline("web")) is None, "coming back is shown by the icon"
    assert policy.decide(ev.Offline("web", "timeout")) is not None


def test_a_failure_is_said_once_per_source_and_code() -> None:
    policy = NoticePolicy(ALL_ON)
    first = policy.decide(ev.SourceFailed("web", "auth", "Mot de passe refusé"))
    assert first is not None
    assert first.message == "Mot de passe refusé"
    assert policy.decide(ev.SourceFailed("web", "auth", "Mot de passe refusé")) is None
    assert policy.decide(ev.SourceFailed("web", "disk-full", "Disque plein")) is not None
    assert policy.decide(ev.SourceFailed("usb:KEY", "auth", "x")) is not None
    policy.decide(ev.BackOnline("web"))
    assert policy.decide(ev.SourceFailed("web", "auth", "Mot de passe refusé")) is not None


def test_a_silent_poll_says_nothing() -> None:
    policy = NoticePolicy(ALL_ON)
    for event in (ev.ServiceStarted(), ev.PollStarted("web"), ev.PollFinished("web", False),
                  ev.QueueChanged(3), ev.Delivered(1, "a.wwz"), ev.BatchFinished("web")):
        assert policy.decide(event) is None


def test_sent_dossiers() -> None:
    policy = NoticePolicy(ALL_ON)
    ok = policy.decide(ev.SendFinished("8502182", "8502182-20201027171147.wvz", "web", True))
    assert ok is not None
    assert ok.message == "Dossier 8502182 envoyé à votre comptable"
    failed = policy.decide(ev.SendFinished("8502182", "x.wvz", "web", False, "délai dépassé"))
    assert failed is not None
    assert failed.message == "Le dossier 8502182 n'a pas pu être envoyé : délai dépassé"
    assert NoticePolicy(ALL_ON | {"sent": False}).decide(
        ev.SendFinished("8502182", "x.wvz", "web", True)) is None


def test_a_failed_send_is_told_in_the_words_of_a_window() -> None:
    policy = NoticePolicy(ALL_ON)
    notice = policy.decide(ev.SendFailed(
        "8502182", "", "email", "email-not-configured", "… voir passeur config.",
        "La messagerie n'est pas encore réglée : … dans Paramètres ▸ Messagerie."))
    assert notice is not None
    assert notice.message.endswith("dans Paramètres ▸ Messagerie.")
    plain = policy.decide(ev.SendFailed("8502182", "x.wvz", "web", "timeout", "délai dépassé"))
    assert plain is not None
    assert plain.message == "délai dépassé"
