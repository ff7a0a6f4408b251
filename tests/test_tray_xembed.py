"""The tray on a plain X11 (XEmbed) tray, trayer on Xvfb, beyond the xorg backend's tests.

With GTK installed passeur chooses pystray's gtk backend there: the icon docks, a left
click does the most useful thing, a right click opens a real menu. A notification server
that is missing when passeur starts (or crashed at start) is used as soon as it comes.
Screenshots go to $PASSEUR_SHOTS when set.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from daemon.context import Context
from tests.helpers import Home
from tests.xsession import (
    TRAY_HEIGHT,
    XSession,
    desktop_without_notifications,
    gtk_desktop,
    start_tray,
    stop_tray,
    wait_for,
)

QUEUE_TITLE = "Liste des fichiers d'écritures à intégrer"


def drop(folder: Path, *updates: Path) -> None:
    """Put updates in the drop folder and let the tests' source import them."""
    for update in updates:
        shutil.copy(update, folder / update.name)
    (folder / "go").touch()


def gtk_icon(session: XSession) -> str | None:
    """Return the gtk icon's window once it is docked in trayer (inside the panel)."""
    for window in session.windows("--onlyvisible", "--classname", "passeur"):
        x, y, width, _height = session.geometry(window)
        if 16 <= width <= TRAY_HEIGHT and 0 <= y < TRAY_HEIGHT and x > 0:
            return window
    return None


def gtk_menu(session: XSession) -> str | None:
    """Return passeur's open menu: a visible window of its own below the panel."""
    for window in session.windows("--onlyvisible", "--classname", "passeur"):
        _x, y, width, height = session.geometry(window)
        if y >= TRAY_HEIGHT - 2 and height > 100 and width > 100:
            return window
    return None


def press(session: XSession, *keys: str) -> None:
    """Type keys where the keyboard is (an open menu holds it)."""
    for key in keys:
        session.run("xdotool", "key", "--clearmodifiers", key, check=True)


def open_menu(session: XSession) -> str:
    """Right-click the icon; return the menu's window."""
    icon = gtk_icon(session)
    assert icon is not None
    x, y, width, height = session.geometry(icon)
    session.run("xdotool", "mousemove", str(x + width // 2), str(y + height // 2), "click",
                "3", check=True)
    assert wait_for(lambda: gtk_menu(session) is not None, 10), "the menu did not open"
    menu = gtk_menu(session)
    assert menu is not None
    return menu


def test_the_gtk_icon_docks_and_its_menu_opens_on_a_right_click_and_works(
    home: Home, tmp_path: Path, shots: Path
) -> None:
    with gtk_desktop() as x11:
        tray = start_tray(x11, home.root, tmp_path / "drop", icon=gtk_icon)
        try:
            x11.screenshot(shots / "gtk-01-docked.png")
            drop(tmp_path / "drop", home.update())
            queue = Context(home.root).queue
            assert wait_for(lambda: queue.count_pending() == 1, 15)
            # Its notice comes just after the queue has it: closed once it is on screen.
            assert wait_for(lambda: x11.notifications_shown() == 1, 10)
            x11.close_notifications()

            # A right click opens the menu next to the icon, in French (screenshot).
            menu = open_menu(x11)
            icon = gtk_icon(x11)
            assert icon is not None
            ix, _iy, iwidth, _ih = x11.geometry(icon)
            mx, my, mwidth, _mh = x11.geometry(menu)
            assert my >= TRAY_HEIGHT - 2, "below the top panel"
            assert mx <= ix + iwidth, "next to the icon"
            assert ix <= mx + mwidth, "next to the icon"
            x11.screenshot(shots / "gtk-02-menu.png")
            # The entries in the menu's order: Recevoir maintenant, then Mises à jour à
            # intégrer (1)… which opens the queue dialog.
            press(x11, "Down", "Down", "Return")
            dialog = x11.wait_window(QUEUE_TITLE)
            x11.screenshot(shots / "gtk-03-queue-from-the-menu.png")
            x11.keys(dialog, "Escape")
            assert wait_for(lambda: x11.visible_window(QUEUE_TITLE) is None, 10)

            # Escape closes the menu without doing anything.
            open_menu(x11)
            press(x11, "Escape")
            assert wait_for(lambda: gtk_menu(x11) is None, 10)
            assert x11.visible_window(QUEUE_TITLE) is None

            # A left click does the most useful thing now: the waiting update's list.
            icon = gtk_icon(x11)
            assert icon is not None
            x, y, width, height = x11.geometry(icon)
            x11.click(x + width // 2, y + height // 2)
            x11.keys(x11.wait_window(QUEUE_TITLE), "Escape")

            # Quitter, the menu's last entry, stops passeur.
            open_menu(x11)
            press(x11, "Up", "Return")
            assert tray.wait(15) == 0
        finally:
            code, err = stop_tray(tray)
            print(err)  # shown when the test fails
        assert code == 0, err
        assert "tray backend: gtk" in err, err


def test_the_gtk_icon_docks_again_when_the_system_tray_starts_again(
    home: Home, tmp_path: Path, shots: Path
) -> None:
    with gtk_desktop() as x11:
        tray = start_tray(x11, home.root, tmp_path / "drop", icon=gtk_icon)
        try:
            # The panel crashes and the desktop starts it again: the icon comes back by
            # itself, and the service goes on (an update still arrives and is said).
            x11.restart_trayer()
            assert wait_for(lambda: gtk_icon(x11) is not None, 20), "the icon did not dock"
            x11.screenshot(shots / "gtk-04-docked-after-the-tray-restart.png")
            drop(tmp_path / "drop", home.update())
            assert wait_for(lambda: Context(home.root).queue.count_pending() == 1, 15)
            assert tray.poll() is None
        finally:
            code, err = stop_tray(tray)
            print(err)  # shown when the test fails
        assert code == 0, err


def test_a_notification_server_that_comes_after_passeur_is_used_with_its_clicks(
    home: Home, tmp_path: Path, shots: Path
) -> None:
    with desktop_without_notifications() as x11:
        tray = start_tray(x11, home.root, tmp_path / "drop")
        try:
            x11.start_dunst_now()
            drop(tmp_path / "drop", home.update())
            assert wait_for(lambda: x11.notifications_shown() >= 1, 15), \
                "no notification once the server came"
            x11.screenshot(shots / "late-01-notification.png")
            # Its click is reported (desktop-notifier, not plyer): it opens the list.
            dunst = x11.wait_window("Dunst")
            x, y, width, height = x11.geometry(dunst)
            x11.click(x + width // 2, y + height // 2)
            x11.keys(x11.wait_window(QUEUE_TITLE), "Escape")
            shown = x11.notifications_since(set())
            assert [n["body"] for n in shown] == [
                "1 mise à jour reçue pour le dossier 8502182"], shown
        finally:
            code, err = stop_tray(tray)
            print(err)  # shown when the test fails
        assert code == 0, err
        assert "notifications: plyer" in err, err
        assert "notifications: desktop-notifier (a notification server answers now)" in err


def test_a_notification_server_that_starts_again_gets_the_next_notification(
    home: Home, tmp_path: Path
) -> None:
    with desktop_without_notifications() as x11:
        x11.start_dunst_now()
        tray = start_tray(x11, home.root, tmp_path / "drop")
        try:
            drop(tmp_path / "drop", home.update())
            assert wait_for(lambda: x11.notifications_shown() >= 1, 15)
            # The server crashes and the desktop starts it again on the same session bus.
            x11.crash_dunst()
            x11.start_dunst_now()
            drop(tmp_path / "drop", home.update())
            assert wait_for(lambda: x11.notifications_shown() >= 1, 15), \
                "nothing shown by the server that started again"
            assert [n["body"] for n in x11.notifications_since(set())] == [
                "1 mise à jour reçue pour le dossier 8502182"]
        finally:
            code, err = stop_tray(tray)
            print(err)  # shown when the test fails
        assert code == 0, err
        assert "notifications: desktop-notifier" in err, err
