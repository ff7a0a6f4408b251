"""The always-on service as a real process: clean stop, single instance, restart watch."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from daemon import events as ev
from daemon.bus import EventBus
from daemon.keys import SigningKey
from tests.helpers import Home, make_home
from tests.services import _STARTED, served_home, start_service, stop, wait_for

DEMO_APP = Path(__file__).resolve().parent.parent / "daemon" / "demo_app.py"
STANDIN_APP = Path(__file__).resolve().parent / "standin_app.py"


def test_service_stops_cleanly_on_sigterm_and_sigint(home: Home) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        process = start_service(home)
        process.send_signal(signum)
        _out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err
        assert "passeur s'arrête" in err


def test_a_second_run_asks_the_running_service_to_show_itself(home: Home) -> None:
    process = start_service(home)
    try:
        second = home.passeur("run", "--headless", timeout=15)
        assert second.returncode == 0, second.stderr
        assert "passeur est déjà lancé : à jour" in second.stdout
        assert process.poll() is None, "the running service goes on"
    finally:
        assert stop(process)[0] == 0


def test_an_unconfigured_home_says_how_to_configure(tmp_path: Path) -> None:
    home = Home(tmp_path, SigningKey.generate(), tmp_path, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run"], env=home.env | {"DISPLAY": ""},
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _STARTED.append(process)
    time.sleep(1.5)
    code, err = stop(process)
    assert code == 0
    assert "Pas d'affichage" in err
    assert "passeur dossier add" in err


def test_updates_held_for_a_restart_are_handed_over_when_the_app_closes(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    home = make_home(tmp_path / "home", signing_key, app_names=("demo_app.py",))
    app = subprocess.Popen([sys.executable, str(DEMO_APP), str(tmp_path / "app-inbox")])
    try:
        etalon = home.update(1, etalon=True)
        later = home.update(2)
        home.passeur("import", str(etalon), str(later), check=True)
        home.passeur("queue", "process", "--all")
        listed = home.passeur("queue", "--json", check=True).stdout
        assert '"restart_required": true' in listed
        assert not (home.inbox / etalon.name).exists()
        service = start_service(home)
        time.sleep(1)
        assert not (home.inbox / etalon.name).exists(), "handed over while the app runs"
        app.terminate()
        app.wait(10)
        delivered = wait_for(lambda: (home.inbox / later.name).exists())
        code, err = stop(service)
        assert delivered, err
        assert (home.inbox / etalon.name).exists()
        assert code == 0, err
        # Announced at start (flagged by `queue process`), then no more once handed over.
        said = err.index("1 mise à jour attend la relance de l'application Isacompta.")
        handed = err.index(f"{etalon.name} remis à l'application")
        assert said < handed < err.index("Plus aucune mise à jour n'attend la relance de "
                                         "l'application Isacompta"), err
    finally:
        app.kill()


def test_a_slow_or_failing_subscriber_never_blocks_the_publisher() -> None:
    bus = EventBus()
    release = threading.Event()
    seen: list[ev.Event] = []
    bus.subscribe("slow", lambda event: release.wait(10))
    bus.subscribe("broken", lambda event: 1 / 0)
    bus.subscribe("fast", seen.append, ev.QueueChanged)
    started = time.monotonic()
    for waiting in range(100):
        bus.publish(ev.QueueChanged(waiting))
        bus.publish(ev.ServiceStarted())
    assert time.monotonic() - started < 1.0
    assert wait_for(lambda: len(seen) == 100, 5)
    assert [e.waiting for e in seen if isinstance(e, ev.QueueChanged)] == list(range(100))
    release.set()
    bus.close()


@pytest.mark.parametrize("event_type", ev.ALL_EVENTS)
def test_events_are_immutable(event_type: type[ev.Event]) -> None:
    import dataclasses

    assert dataclasses.is_dataclass(event_type)
    assert event_type.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_the_service_receives_what_the_accountant_publishes(home: Home, tmp_path: Path) -> None:
    with served_home(home, tmp_path) as (server, env, key_file):
        update = home.update(1, etalon=True)
        published = home.passeur("publish", "--repo", str(server.repo), "--key", str(key_file),
                                 str(update))
        assert published.returncode == 0, published.stderr
        service = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--headless"],
                                   env=env, text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        _STARTED.append(service)
        queued = wait_for(lambda: update.name in home.passeur("queue").stdout, 30)
        code, err = stop(service)
        assert queued, err
        assert code == 0, err
        assert f"{update.name} reçu et mis en attente — contient des dossiers étalons" in err
        assert "secret" not in err
        assert "secret" not in (home.root / "logs" / "passeur.log").read_text()


def test_the_service_announces_an_etalon_held_while_the_app_runs_not_a_normal_update(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    from daemon.context import Context
    from daemon.logs import describe_event
    from daemon.service import build_service

    # A stand-in application under a name of its own: no other test's process is taken
    # for it.
    script = tmp_path / f"app_{uuid.uuid4().hex[:10]}.py"
    shutil.copy(STANDIN_APP, script)
    home = make_home(tmp_path / "home", signing_key, app_names=(script.name,))
    downloads = tmp_path / "Téléchargements"
    downloads.mkdir()
    config = home.root / "config.toml"
    config.write_text(config.read_text("utf-8").replace(
        "watch = []", f'watch = ["{downloads}"]'), "utf-8")
    app = subprocess.Popen([sys.executable, str(script), str(home.inbox), str(tmp_path / "taken")],
                           stdout=subprocess.PIPE, text=True)
    assert app.stdout is not None
    assert app.stdout.readline().strip() == "ready"
    ctx = Context(home.root)
    events: list[ev.Event] = []
    ctx.bus.subscribe("test", events.append)
    service = build_service(ctx)
    thread = threading.Thread(target=service.run, name="service-under-test")
    thread.start()

    def seen(kind: type[ev.Event]) -> list[ev.Event]:
        return [e for e in list(events) if isinstance(e, kind)]

    try:
        assert wait_for(lambda: bool(seen(ev.ServiceStarted)))
        normal = home.update(1)
        shutil.copy(normal, downloads / normal.name)
        assert wait_for(lambda: any(normal.name in e.queued  # type: ignore[attr-defined]
                                    for e in seen(ev.BatchFinished)))
        etalon = home.update(2, etalon=True)
        shutil.copy(etalon, downloads / etalon.name)
        assert wait_for(lambda: bool(seen(ev.RestartRequired))), events
        (normal_id, etalon_id) = (e.item_id for e in seen(ev.UpdateQueued))  # type: ignore[attr-defined]
        (held,) = seen(ev.RestartRequired)
        assert isinstance(held, ev.RestartRequired)
        assert (held.item_ids, held.app_name) == ((etalon_id,), "Isacompta")
        assert events.index(held) > events.index(seen(ev.UpdateQueued)[1]), (
            "nothing was announced for the normal update")
        assert describe_event(held) == ("1 mise à jour attend la relance de l'application "
                                        "Isacompta.")
        assert not any((home.inbox / u.name).exists() for u in (normal, etalon))
        # The user closes the application: both are handed over, in order, and the service
        # says that nothing waits for a restart any more.
        app.terminate()
        app.wait(10)
        assert wait_for(lambda: len(seen(ev.RestartRequired)) == 2), events
        assert [e.item_ids for e in seen(ev.RestartRequired)] == [  # type: ignore[attr-defined]
            (etalon_id,), ()]
        assert [e.item_id for e in seen(ev.Delivered)] == [  # type: ignore[attr-defined]
            normal_id, etalon_id]
        assert (home.inbox / normal.name).exists()
        assert (home.inbox / etalon.name).exists()
    finally:
        service.stop()
        thread.join(15)
        if app.poll() is None:
            app.kill()
            app.wait(10)
    assert not thread.is_alive()
