"""The tray under a StatusNotifierItem host: xfce4-panel on Xvfb, on a private D-Bus session.

passeur chooses pystray's appindicator backend there by itself; the tests read the icon
and its menu over D-Bus as the panel does (org.kde.StatusNotifierItem,
com.canonical.dbusmenu), click menu entries the same way, look at the panel in
screenshots, and kill the panel to see the icon come back. Screenshots go to
$PASSEUR_SHOTS when set.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from daemon.context import Context
from daemon.keys import SigningKey
from daemon.web.publish import Repository
from tests.helpers import DOSSIER, Home, make_home
from tests.services import served_home
from tests.test_tray_desktop import configure_app, kill_scripts, start_app, unique_app
from tests.xsession import (
    PANEL_HEIGHT,
    MenuNode,
    SniSession,
    desktop,
    sni_desktop,
    start_tray,
    stop_tray,
    tray_icon,
    wait_for,
)
from tray.icon import BADGE_COLOUR, COLOURS, SIZES
from tray.state import Status

QUEUE_TITLE = "Liste des fichiers d'écritures à intégrer"
Item = tuple[str, str]


@pytest.fixture(scope="module")
def sni() -> Iterator[SniSession]:
    with sni_desktop() as session:
        yield session


def labels(nodes: list[MenuNode]) -> list[str]:
    """Return the visible entries' labels ("-" for a separator)."""
    return ["-" if node.separator else node.label for node in nodes if node.visible]


def entry(nodes: list[MenuNode], label: str) -> MenuNode:
    """Return the visible entry with this label."""
    found = [node for node in nodes if node.visible and node.label == label]
    assert found, f"no entry {label!r} in {labels(nodes)}"
    return found[0]


def panel_pixels(session: SniSession, shots: Path, name: str) -> Image.Image:
    """Take a screenshot; return the panel's strip (kept, enlarged, for looking at it)."""
    screen = Image.open(session.screenshot(shots / f"{name}.png")).convert("RGB")
    strip = screen.crop((0, 0, 160, PANEL_HEIGHT))  # the systray is the only plugin
    strip.resize((strip.width * 4, strip.height * 4), Image.Resampling.NEAREST).save(
        shots / f"{name}-panel.png")
    return strip


def count_colour(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 24) -> int:
    """Count the pixels near a colour."""
    data = image.convert("RGB").tobytes()
    pixels = (data[i:i + 3] for i in range(0, len(data), 3))
    return sum(1 for pixel in pixels
               if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True)))


def shows(session: SniSession, shots: Path, name: str, status: Status, badge: bool) -> bool:
    """Tell whether the panel shows the icon of this status (and a badge, if asked)."""
    strip = panel_pixels(session, shots, name)
    return count_colour(strip, COLOURS[status]) >= 20 and (
        count_colour(strip, BADGE_COLOUR) >= 6) == badge


def drop(folder: Path, *updates: Path) -> None:
    for update in updates:
        shutil.copy(update, folder / update.name)
    (folder / "go").touch()


def test_the_icon_registers_shows_each_state_and_its_menu_works(
    sni: SniSession, home: Home, tmp_path: Path, shots: Path
) -> None:
    tray = start_tray(sni, home.root, tmp_path / "drop")
    try:
        item = sni.sni_item()
        assert item is not None
        props = sni.sni_properties(item)
        assert props["Status"] == "Active"
        assert props["Title"] == "À jour", props
        theme = Path(props["IconThemePath"])
        # The picture at every size hosts ask for, under one name.
        for size in SIZES:
            assert (theme / "hicolor" / f"{size}x{size}" / "apps"
                    / f"{props['IconName']}.png").is_file()
        assert wait_for(lambda: shows(sni, shots, "sni-01-up-to-date", Status.UP_TO_DATE,
                                      False), 10)

        # No default action under SNI: the most useful entry comes first.
        menu = sni.menu(item)
        assert labels(menu)[:3] == ["Recevoir maintenant", "Mises à jour à intégrer (0)…",
                                    "-"]
        assert labels(menu)[-1] == "Quitter"
        assert "Paramètres" in labels(menu)
        assert "Journal" in labels(menu)
        assert not entry(menu, "Mises à jour à intégrer (0)…").enabled

        # An update arrives: the picture, the title and the menu follow.
        drop(tmp_path / "drop", home.update())
        assert wait_for(lambda: labels(sni.menu(item))[0] == "Mises à jour à intégrer (1)…",
                        15), labels(sni.menu(item))
        assert sni.sni_properties(item)["Title"].startswith("1 mise à jour à intégrer")
        assert wait_for(lambda: shows(sni, shots, "sni-02-waiting-light", Status.WAITING,
                                      True), 10)
        sni.set_dark(True)
        assert wait_for(lambda: shows(sni, shots, "sni-03-waiting-dark", Status.WAITING,
                                      True), 10)
        sni.set_dark(False)

        # Clicking the entry over D-Bus opens the queue dialog.
        menu = sni.menu(item)
        sni.activate(item, entry(menu, "Mises à jour à intégrer (1)…"))
        dialog = sni.wait_window(QUEUE_TITLE)
        sni.screenshot(shots / "sni-04-queue-dialog.png")
        sni.keys(dialog, "Escape")
        assert wait_for(lambda: sni.visible_window(QUEUE_TITLE) is None, 10)

        # Pause ▸ 1 heure: the menu then offers Reprendre, the icon is paused.
        pause = entry(sni.menu(item), "Pause")
        sni.activate(item, entry(pause.children, "1 heure"))
        assert wait_for(lambda: "Reprendre" in labels(sni.menu(item)), 10), \
            labels(sni.menu(item))
        assert "Pause" not in labels(sni.menu(item))
        assert wait_for(lambda: shows(sni, shots, "sni-05-paused", Status.PAUSED, True), 10)
        sni.activate(item, entry(sni.menu(item), "Reprendre"))
        assert wait_for(lambda: "Pause" in labels(sni.menu(item)), 10)
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
    assert code == 0, err
    assert "tray backend: appindicator" in err, err


def test_the_icon_comes_back_when_the_panel_restarts(
    sni: SniSession, home: Home, tmp_path: Path, shots: Path
) -> None:
    tray = start_tray(sni, home.root, tmp_path / "drop")
    try:
        assert wait_for(lambda: shows(sni, shots, "sni-06-before-restart", Status.UP_TO_DATE,
                                      False), 10)
        sni.stop_panel()
        assert sni.sni_item() is None
        sni.start_panel()
        assert wait_for(sni.tray_shown, 20), "the icon did not come back"
        assert wait_for(lambda: shows(sni, shots, "sni-07-after-restart", Status.UP_TO_DATE,
                                      False), 10)
        item = sni.sni_item()
        assert item is not None
        assert labels(sni.menu(item))[0] == "Recevoir maintenant"
        assert tray.poll() is None, "the service stopped with the panel"
    finally:
        code, err = stop_tray(tray)
        print(err)
    assert code == 0, err


def test_before_configuration_settings_come_first_with_the_gear_picture(
    sni: SniSession, tmp_path: Path, shots: Path
) -> None:
    root = tmp_path / "empty-home"
    root.mkdir()
    seen = sni.notification_ids()
    tray = start_tray(sni, root, tmp_path / "drop")
    try:
        item = sni.sni_item()
        assert item is not None
        assert labels(sni.menu(item))[0] == "Paramètres"
        assert wait_for(lambda: shows(sni, shots, "sni-08-to-configure", Status.TO_CONFIGURE,
                                      False), 10)
        assert wait_for(lambda: sni.notifications_shown() >= 1, 10)
        shown = sni.notifications_since(seen)
        assert len(shown) == 1, shown
        assert str(shown[0]["body"]).startswith("passeur n'est pas encore configuré")
        assert str(shown[0]["icon_path"]).endswith(f"{Status.TO_CONFIGURE.value}.png"), shown
    finally:
        code, err = stop_tray(tray)
        print(err)
    assert code == 0, err


def test_without_a_menu_the_choices_open_next_to_the_icon_like_a_menu(
    home: Home, tmp_path: Path, shots: Path
) -> None:
    # The plain X11 tray (trayer, pystray's xorg backend): the choices window stands in
    # for the menu and behaves like one.
    with desktop() as x11:
        tray = start_tray(x11, home.root, tmp_path / "drop")
        try:
            icon = tray_icon(x11)
            assert icon is not None
            x, y, width, height = x11.geometry(icon)
            x11.click(x + width // 2, y + height // 2)
            window = x11.wait_window("passeur")
            left, top, w, _h = x11.geometry(window)
            x11.screenshot(shots / "x11-01-choices-next-to-the-icon.png")
            assert top >= y + height - 2, "below the top panel's icon"
            assert left <= x + width <= left + w + 2, "lined up with the icon"
            # Escape closes it, as a menu.
            x11.keys(window, "Escape")
            assert wait_for(lambda: x11.visible_window("passeur") is None, 10)
            # So does a click elsewhere, though this desktop has no window manager to
            # move the focus; nothing is chosen.
            x11.click(x + width // 2, y + height // 2)
            window = x11.wait_window("passeur")
            left, top, w, h = x11.geometry(window)
            x11.click(left + w // 2, top + h + 200)
            assert wait_for(lambda: x11.visible_window("passeur") is None, 10)
            # A click inside (on the status line) leaves it open: Return then takes the
            # choice with the focus, Recevoir maintenant, which looks at the drop folder.
            update = home.update()
            shutil.copy(update, tmp_path / "drop" / update.name)
            x11.click(x + width // 2, y + height // 2)
            window = x11.wait_window("passeur")
            left, top, w, _h = x11.geometry(window)
            x11.click(left + w // 2, top + 16)
            x11.keys(window, "Return")
            queue = Context(home.root).queue
            assert wait_for(lambda: queue.count_pending() == 1, 10)
            assert tray.poll() is None
        finally:
            code, err = stop_tray(tray)
            print(err)
        assert code == 0, err


NOTHING_NEW = "Rien de nouveau chez votre comptable"


def receive_now(session: SniSession, seen: set[object]) -> list[dict[str, object]]:
    """Click *Recevoir maintenant* in the SNI menu; return the notifications it brought."""
    item = session.sni_item()
    assert item is not None
    session.activate(item, entry(session.menu(item), "Recevoir maintenant"))
    assert wait_for(lambda: session.notifications_shown() >= 1, 20), "no notification"
    # Anything else it would say comes at once with the first one: give it a moment.
    wait_for(lambda: session.notifications_shown() >= 2, 1)
    return session.notifications_since(seen)


def bodies(notifications: list[dict[str, object]]) -> list[str]:
    """Return the notifications' texts."""
    return [str(n.get("body", "")) for n in notifications]


def test_receive_now_says_what_the_accountants_site_had(
    sni: SniSession, home: Home, tmp_path: Path
) -> None:
    with served_home(home, tmp_path / "web") as (server, env, _key):
        Repository(server.repo, home.key).refresh(DOSSIER)  # a signed, empty index
        extra = {key: env[key] for key in ("PYTHON_KEYRING_BACKEND", "XDG_DATA_HOME")}
        tray = start_tray(sni, home.root, tmp_path / "drop", extra)
        try:
            seen = sni.notification_ids()
            shown = receive_now(sni, seen)
            assert bodies(shown) == [NOTHING_NEW], shown
            assert str(shown[0]["icon_path"]).endswith(f"{Status.UP_TO_DATE.value}.png")

            # An update published: the usual notification, and no « rien de nouveau ».
            Repository(server.repo, home.key).publish(home.update())
            seen = sni.notification_ids()
            shown = receive_now(sni, seen)
            assert len(shown) == 1, shown
            assert NOTHING_NEW not in bodies(shown), shown
            assert "1 mise à jour reçue pour le dossier" in bodies(shown)[0], shown

            # The site unreachable: a notice that says so, in French, and nothing new.
            server.stop()
            seen = sni.notification_ids()
            shown = receive_now(sni, seen)
            assert len(shown) == 1, shown
            assert bodies(shown)[0].startswith(
                "Le site de votre comptable n’a pas pu être consulté : "), shown
            assert tray.poll() is None
        finally:
            code, err = stop_tray(tray)
            print(err)
        assert code == 0, err


def test_when_a_restart_is_due_the_menu_offers_it_first(
    sni: SniSession, signing_key: SigningKey, tmp_path: Path
) -> None:
    home = make_home(tmp_path / "home", signing_key)
    script = unique_app(tmp_path, "standin_app.py")
    argv = [sys.executable, str(script), str(home.inbox), str(tmp_path / "taken")]
    configure_app(home, script, argv, close_timeout=10)
    app = start_app(argv)
    tray = start_tray(sni, home.root, tmp_path / "drop")
    try:
        drop(tmp_path / "drop", home.update(1, etalon=True))
        prompt = sni.wait_window("Relancer Isacompta")
        sni.keys(prompt, "Escape")  # Plus tard
        assert wait_for(lambda: sni.visible_window("Relancer Isacompta") is None, 10)
        item = sni.sni_item()
        assert item is not None
        menu = sni.menu(item)
        assert labels(menu)[:2] == ["Relancer Isacompta…", "-"], labels(menu)
        assert "Mises à jour à intégrer (1)…" in labels(menu)
        # The entry asks again, as the icon's click would.
        sni.activate(item, entry(menu, "Relancer Isacompta…"))
        sni.keys(sni.wait_window("Relancer Isacompta"), "Escape")
        assert app.poll() is None, "nothing is closed before the user says so"
    finally:
        code, err = stop_tray(tray)
        print(err)
        kill_scripts(script)
    assert code == 0, err
