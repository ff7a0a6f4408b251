"""The tray on a real desktop: Xvfb, trayer as the system tray, dunst for notifications.

The tray runs as a real process (tests/xsession.py's launcher: `passeur run`'s own
composition plus a drop-folder source); we look at it with screenshots and xdotool, and
read the notifications back from dunst. Screenshots go to $PASSEUR_SHOTS when set.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from PIL import Image

from daemon.context import Context
from daemon.keys import SigningKey
from daemon.queue import State
from tests.helpers import Home, make_home
from tests.xsession import (
    ROOT,
    XSession,
    desktop,
    launcher_argv,
    start_tray,
    stop_tray,
    tray_env,
    tray_icon,
    wait_for,
)
from tray.icon import BADGE_COLOUR, COLOURS
from tray.state import Status

TESTS = Path(__file__).resolve().parent
QUEUE_TITLE = "Liste des fichiers d'écritures à intégrer"


@pytest.fixture(scope="module")
def x11() -> Iterator[XSession]:
    if importlib.util.find_spec("desktop_notifier") is None:
        pytest.fail("desktop-notifier is missing (a dependency of passeur: notification clicks)")
    with desktop() as session:
        yield session


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a[:3], b[:3], strict=True))


class TrayLook:
    """What the screen shows of passeur's icon."""

    def __init__(self, session: XSession, shots: Path) -> None:
        self.session = session
        self.shots = shots

    def picture(self, name: str) -> Image.Image:
        found: list[str] = []

        def docked() -> bool:
            window = tray_icon(self.session)
            found.extend([window] if window else [])
            return window is not None

        # The panel may be laying its icons out again (another program's icon left).
        assert wait_for(docked, 5), "the icon left the tray"
        x, y, width, height = self.session.geometry(found[-1])
        screen = Image.open(self.session.screenshot(self.shots / f"{name}.png")).convert("RGB")
        icon = screen.crop((x, y, x + width, y + height))
        icon.resize((width * 8, height * 8), Image.Resampling.NEAREST).save(
            self.shots / f"{name}-icon.png")
        return icon

    def status_colour(self, icon: Image.Image) -> tuple[int, ...]:
        value = icon.getpixel((icon.width // 2, round(icon.height * 0.14)))
        assert isinstance(value, tuple)
        return value

    def shows(self, status: Status, name: str) -> bool:
        return near(self.status_colour(self.picture(name)), COLOURS[status], 30)

    def badge_pixels(self, icon: Image.Image) -> int:
        corner = icon.crop((icon.width // 2, icon.height // 2, icon.width, icon.height))
        count = 0
        for y in range(corner.height):
            for x in range(corner.width):
                value = corner.getpixel((x, y))
                assert isinstance(value, tuple)
                count += near(value, BADGE_COLOUR, 50)
        return count

    def wait_for(self, status: Status, name: str, timeout: float = 15.0) -> Image.Image:
        assert wait_for(lambda: self.shows(status, name), timeout, 0.2), (
            f"the icon never showed {status}: {self.status_colour(self.picture(name))}")
        return self.picture(name)

    def tooltip(self) -> str:
        window = tray_icon(self.session)
        assert window is not None
        return self.session.window_name(window)


def drop(home: Home, folder: Path, *updates: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for update in updates:
        shutil.copy(update, folder / update.name)
    (folder / "go").touch()


def unique_app(tmp_path: Path, source: str) -> Path:
    script = tmp_path / f"app_{uuid.uuid4().hex[:10]}.py"
    shutil.copy(TESTS / source, script)
    return script


def configure_app(home: Home, script: Path, command: list[str], close_timeout: int) -> None:
    config = home.root / "config.toml"
    text = config.read_text("utf-8").replace(
        "process_names = []", f'process_names = ["{script.name}"]\ncommand = ['
        + ", ".join(f'"{part}"' for part in command) + "]")
    config.write_text(text + f"\n[restart]\nclose_timeout_seconds = {close_timeout}\n",
                      "utf-8")


def start_app(argv: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def kill_scripts(script: Path) -> None:
    for proc in psutil.process_iter(["cmdline"]):
        if any(script.name in str(arg) for arg in proc.info["cmdline"] or []):
            proc.kill()


def test_updates_arrive_icon_notification_and_the_queue_dialog(
    x11: XSession, home: Home, tmp_path: Path, shots: Path
) -> None:
    look = TrayLook(x11, shots)
    seen = x11.notification_ids()
    tray = start_tray(x11, home.root, tmp_path / "drop")
    try:
        first = look.wait_for(Status.UP_TO_DATE, "01-up-to-date")
        assert look.badge_pixels(first) == 0
        assert look.tooltip() == "À jour"

        updates = [home.update() for _ in range(3)]
        drop(home, tmp_path / "drop", *updates)
        waiting = look.wait_for(Status.WAITING, "02-three-waiting")
        assert look.badge_pixels(waiting) >= 6, "the badge shows the count"
        assert wait_for(lambda: look.tooltip().startswith(
            "3 mises à jour à intégrer - dernière vérification "), 5), look.tooltip()

        # One notification for the batch, not three; its click opens the list.
        assert wait_for(lambda: x11.notifications_shown() >= 1, 10)
        x11.screenshot(shots / "03-notification.png")
        dunst = x11.wait_window("Dunst")
        x, y, width, height = x11.geometry(dunst)
        x11.click(x + width // 2, y + height // 2)
        dialog = x11.wait_window(QUEUE_TITLE)
        x11.screenshot(shots / "04-queue-dialog.png")
        shown = x11.notifications_since(seen)
        assert [(n["appname"], n["body"]) for n in shown] == [
            ("passeur", "3 mises à jour reçues pour le dossier 8502182")]

        # The second file: Traiter unticked, Supprimer ticked; OK.
        x11.keys(dialog, "Down", "space", "Delete")
        x11.screenshot(shots / "05-queue-dialog-choices.png")
        x11.keys(dialog, "Return")
        ctx = Context(home.root)
        assert wait_for(lambda: ctx.queue.count_pending() == 0, 10)
        assert sorted(p.name for p in home.inbox.iterdir()) == sorted(
            [updates[0].name, updates[2].name])
        # Supprimer keeps the file in the trash (so does Traiter, once handed over).
        assert any(p.name.endswith(f"-2-{updates[1].name}") for p in ctx.paths.trash.iterdir())
        states = [ctx.queue.get(i + 1).state for i in range(3)]  # type: ignore[union-attr]
        assert states == [State.DELIVERED, State.DELETED, State.DELIVERED]
        look.wait_for(Status.UP_TO_DATE, "06-all-handled")
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
    assert code == 0, err
    assert "passeur s'arrête" in err
    assert "notifications: desktop-notifier" in err


def test_a_click_on_the_icon_opens_the_choices_and_they_work(
    x11: XSession, home: Home, tmp_path: Path, shots: Path
) -> None:
    look = TrayLook(x11, shots)
    tray = start_tray(x11, home.root, tmp_path / "drop")
    ctx = Context(home.root)

    def choose(*keys: str) -> None:
        window = tray_icon(x11)
        assert window is not None
        x, y, width, height = x11.geometry(window)
        x11.click(x + width // 2, y + height // 2)
        x11.keys(x11.wait_window("passeur"), *keys)

    try:
        drop(home, tmp_path / "drop", home.update())
        look.wait_for(Status.WAITING, "10-one-waiting")
        x11.close_notifications()
        # The most useful choice has the focus: Return opens the list. Annuler: nothing.
        choose()
        x11.screenshot(shots / "11-choices.png")
        x11.keys(x11.wait_window("passeur"), "Return")
        x11.keys(x11.wait_window(QUEUE_TITLE), "Escape")
        assert wait_for(lambda: x11.visible_window(QUEUE_TITLE) is None, 5)
        assert ctx.queue.count_pending() == 1
        # Recevoir maintenant (the first choice): the source looks at once.
        later = home.update()
        shutil.copy(later, tmp_path / "drop" / later.name)
        choose("Home", "Return")
        assert wait_for(lambda: ctx.queue.count_pending() == 2, 10)
        # Pause – 1 heure (after Envoyer le dossier and Importer), then Reprendre (which
        # takes the place of the pause choices).
        choose("Home", "Down", "Down", "Down", "Down", "Return")
        look.wait_for(Status.PAUSED, "12-paused")
        choose("Home", "Down", "Down", "Down", "Down", "Return")
        look.wait_for(Status.WAITING, "13-resumed")
        # Journal (third from the end).
        choose("End", "Up", "Up", "Return")
        journal = x11.wait_window("Journal")
        x11.screenshot(shots / "14-journal.png")
        x11.keys(journal, "Escape")
        # Quitter (the last choice) stops passeur.
        choose("End", "Return")
        assert tray.wait(15) == 0
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
    assert code == 0, err


def test_an_icon_the_tray_lets_go_asks_to_be_docked_again(
    x11: XSession, home: Home, tmp_path: Path
) -> None:
    tray = start_tray(x11, home.root, tmp_path / "drop")
    try:
        icon = tray_icon(x11)
        assert icon is not None
        root = x11.run("xdotool", "search", "--maxdepth", "0", "--name", ".*").stdout.split()
        # What a busy tray sometimes does: the icon back on the root window, undocked.
        x11.run("xdotool", "windowreparent", icon, root[0] if root else "0", check=True)
        # (Asked again at once: too fast to see it undocked.)
        assert wait_for(lambda: tray_icon(x11) is not None, 10), "the icon stayed undocked"
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
    assert code == 0, err
    assert "the system tray let the icon go: asking it again" in err


def test_passeur_run_on_an_unconfigured_home_shows_how_to_configure(
    x11: XSession, tmp_path: Path, shots: Path
) -> None:
    seen = x11.notification_ids()
    root = tmp_path / "fresh"
    tray = start_tray(x11, root, None)  # the real `passeur run`
    try:
        TrayLook(x11, shots).wait_for(Status.TO_CONFIGURE, "20-to-configure")
        assert wait_for(lambda: x11.notifications_shown() >= 1, 10)
        bodies = [n["body"] for n in x11.notifications_since(seen)]
        # (The sources may have their own say about a fresh machine, e.g. a missing folder.)
        assert bodies.count("passeur n'est pas encore configuré : ouvrez les Paramètres pour "
                            "ajouter votre dossier et la clé de votre comptable.") == 1, bodies
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
    assert code == 0, err


@pytest.fixture
def app_home(tmp_path: Path, signing_key: SigningKey) -> Iterator[tuple[Home, Path, Path]]:
    home = make_home(tmp_path / "home", signing_key)
    script = unique_app(tmp_path, "standin_app.py")
    taken = tmp_path / "taken"
    yield home, script, taken
    kill_scripts(script)


def test_restart_now_closes_the_application_hands_over_and_starts_it_again(
    x11: XSession, app_home: tuple[Home, Path, Path], tmp_path: Path, shots: Path
) -> None:
    home, script, taken = app_home
    argv = [sys.executable, str(script), str(home.inbox), str(taken)]
    configure_app(home, script, argv, close_timeout=10)
    app = start_app(argv)
    seen = x11.notification_ids()
    tray = start_tray(x11, home.root, tmp_path / "drop")
    look = TrayLook(x11, shots)
    try:
        etalon = home.update(1, etalon=True)
        drop(home, tmp_path / "drop", etalon)
        prompt = x11.wait_window("Relancer Isacompta")
        look.wait_for(Status.RESTART_REQUIRED, "30-restart-required")
        x11.screenshot(shots / "31-restart-prompt.png")
        assert app.poll() is None, "nothing happens before the user says so"
        x11.keys(prompt, "Return")  # Relancer maintenant
        assert app.wait(15) is not None
        journal = taken / "journal.txt"
        assert wait_for(lambda: journal.exists() and etalon.name in journal.read_text(), 15)
        ctx = Context(home.root)
        running = ctx.delivery.watcher.running_pids()
        assert len(running) == 1
        assert running != [app.pid]
        look.wait_for(Status.UP_TO_DATE, "32-restarted")
        assert wait_for(lambda: x11.notifications_shown() >= 2, 10)
        bodies = [str(n["body"]) for n in x11.notifications_since(seen)]
        assert "Isacompta a été relancé ; 1 mise à jour remise à Isacompta." in bodies
        assert any(b.startswith("Le fichier d'échange contient des dossiers étalons : "
                                "l'application va être arrêtée.") for b in bodies)
        # The service held it: the restart notification says it, not a "received" one.
        assert not any("reçue" in b for b in bodies), bodies
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
    assert code == 0, err


def test_an_application_that_will_not_close_is_left_open_when_the_user_says_so(
    x11: XSession, app_home: tuple[Home, Path, Path], tmp_path: Path, shots: Path
) -> None:
    home, script, taken = app_home
    stubborn = unique_app(tmp_path, "stubborn_app.py")
    argv = [sys.executable, str(script), str(home.inbox), str(taken)]
    configure_app(home, stubborn, argv, close_timeout=1)
    app = start_app([sys.executable, str(stubborn), str(home.inbox), str(taken)])
    tray = start_tray(x11, home.root, tmp_path / "drop")
    look = TrayLook(x11, shots)
    try:
        etalon = home.update(1, etalon=True)
        drop(home, tmp_path / "drop", etalon)
        x11.keys(x11.wait_window("Relancer Isacompta"), "Return")
        question = x11.wait_window("Isacompta ne se ferme pas")
        x11.screenshot(shots / "40-will-not-close.png")
        assert app.poll() is None
        x11.keys(question, "Return")  # the default answer: leave it open
        assert wait_for(lambda: x11.visible_window("ne se ferme pas") is None, 5)
        ctx = Context(home.root)
        assert app.poll() is None, "nothing was killed"
        assert [i.name for i in ctx.queue.pending()] == [etalon.name]
        assert not (home.inbox / etalon.name).exists()
        look.wait_for(Status.RESTART_REQUIRED, "41-still-waiting")
        # The user closes it by hand: the update is handed over at once, the state goes.
        app.kill()
        app.wait(5)
        assert wait_for(lambda: (home.inbox / etalon.name).exists(), 15)
        look.wait_for(Status.UP_TO_DATE, "42-closed-by-hand")
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
        if app.poll() is None:
            app.kill()
    assert code == 0, err


def test_without_a_usable_display_the_service_runs_headless(home: Home, tmp_path: Path) -> None:
    drop_folder = tmp_path / "drop"
    drop_folder.mkdir()
    env = tray_env(dict(os.environ), home.root) | {"DISPLAY": ":987"}  # nobody there
    env.pop("DBUS_SESSION_BUS_ADDRESS", None)
    process = subprocess.Popen(launcher_argv(home.root, drop_folder), env=env, cwd=ROOT,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = home.root / "logs" / "passeur.log"
    try:
        assert wait_for(lambda: log.exists() and "ne peut pas être affichée" in log.read_text(),
                        15), log.read_text() if log.exists() else ""
        drop(home, drop_folder, home.update())
        ctx = Context(home.root)
        assert wait_for(lambda: ctx.queue.count_pending() == 1, 10), "the service still works"
    finally:
        code, err = stop_tray(process)
        print(err)
    assert code == 0, err


def test_the_cli_acts_through_the_tray_s_service_and_the_icon_follows_at_once(
    x11: XSession, home: Home, tmp_path: Path, shots: Path
) -> None:
    look = TrayLook(x11, shots)
    tray = start_tray(x11, home.root, tmp_path / "drop")
    env = tray_env(x11.env, home.root)

    def passeur(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, cwd=ROOT,
                              text=True, capture_output=True, timeout=60, check=False)

    try:
        look.wait_for(Status.UP_TO_DATE, "control-01-up-to-date")
        updates = [home.update() for _ in range(3)]
        drop(home, tmp_path / "drop", *updates)
        look.wait_for(Status.WAITING, "control-02-three-waiting")
        assert wait_for(lambda: look.tooltip().startswith("3 mises à jour"), 5), look.tooltip()

        # A fourth from the terminal: the service imports it, the badge says 4.
        fourth = home.update()
        assert passeur("import", str(fourth)).returncode == 0
        assert wait_for(lambda: look.tooltip().startswith("4 mises à jour"), 10), look.tooltip()
        look.picture("control-03-four-waiting")

        handed = passeur("queue", "process", "--all")
        assert handed.returncode == 0, handed.stderr
        done = look.wait_for(Status.UP_TO_DATE, "control-04-all-handed")
        assert look.badge_pixels(done) == 0
        assert look.tooltip().startswith("À jour"), look.tooltip()

        # A second `passeur run` asks this one to show itself, and ends at once: this tray
        # (XEmbed, no menu) opens its choices.
        second = passeur("run")
        assert second.returncode == 0, second.stderr
        assert "passeur est déjà lancé : à jour" in second.stdout
        choices = x11.wait_window("passeur")
        x11.screenshot(shots / "control-05-show-yourself.png")
        x11.keys(choices, "Escape")
    finally:
        code, err = stop_tray(tray)
        print(err)
    assert code == 0, err
    log = (home.root / "logs" / "passeur.log").read_text("utf-8")
    assert log.count("remis à l'application") == 4, "one Delivered per update, no duplicate"
