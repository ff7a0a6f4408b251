"""`passeur demo` as a newcomer runs it: headless (the README's first command on a machine
without a display), and with the tray on a real desktop (Xvfb, trayer, dunst), where the
restart prompt is answered with the keyboard.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.test_tray_desktop import TrayLook
from tests.xsession import ROOT, XSession, desktop, tray_icon, wait_for
from tray.state import Status

RECEIVED_WEB = "Site du comptable : 1 mise à jour importée"
HELD = "1 mise à jour attend la relance de l'application Isacompta."


def demo_env(base: dict[str, str]) -> dict[str, str]:
    """The environment of a newcomer's shell, in French (no passeur home of the tests')."""
    env = base | {"LANG": "fr_FR.UTF-8", "LANGUAGE": "", "LC_ALL": "", "LC_MESSAGES": "",
                  "PYTHONPATH": str(ROOT)}
    env.pop("PASSEUR_HOME", None)
    return env


def stand_ins(root: Path) -> list[int]:
    """Return the pids of the demo's stand-in application (its script is in the home)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = [str(arg) for arg in proc.info["cmdline"] or []]
        if any(arg.startswith(str(root)) and "isacompta_demo_" in arg for arg in cmdline):
            found.append(proc.pid)
    return found


def published(output: str) -> tuple[str, str]:
    """Return the names of the normal and the étalon update the demo published."""
    normal = re.search(r"^5\. Le comptable publie une mise à jour : (\S+)$", output, re.M)
    etalon = re.search(r"^6\. Le comptable publie une mise à jour avec des dossiers étalons : "
                       r"(\S+)$", output, re.M)
    assert normal, output
    assert etalon, output
    return normal[1], etalon[1]


def test_the_headless_demo_receives_over_the_web_holds_the_etalon_and_hands_over() -> None:
    env = demo_env(dict(os.environ))
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "demo", "--headless"],
                            env=env, cwd=ROOT, text=True, capture_output=True, timeout=60,
                            check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    first = out.splitlines()[0]
    assert first.startswith("Démonstration de passeur dans "), out
    root = Path(first.removeprefix("Démonstration de passeur dans "))
    assert re.search(r"servi sur http://127\.0\.0\.1:\d+/ \(dossier 8502182\)", out), out
    normal, etalon = published(out)
    # Both came from the accountant's site, as the log words it.
    assert out.count(RECEIVED_WEB) == 2, out
    assert f"{normal} reçu et mis en attente\n" in out
    assert f"{etalon} reçu et mis en attente — contient des dossiers étalons" in out
    # The étalon update is held while the application is open, then both are handed over
    # once the demo closed it, in order.
    held = out.index(HELD)
    assert held > out.index(f"{etalon} reçu et mis en attente")
    closes = out.index("La démonstration ferme elle-même Isacompta")
    assert held < closes < out.index(f"{normal} remis à l'application") < out.index(
        f"{etalon} remis à l'application") < out.index(
        "Plus aucune mise à jour n'attend la relance de l'application Isacompta")
    assert "Isacompta doit être relancé pour qu'elle soit intégrée" in out
    # The sending half: the dossier goes by web, the firm collects it, the receipt comes back.
    sends = out.index("9. L'agriculteur envoie le dossier 8502182 à son comptable")
    assert out.index("Plus aucune mise à jour n'attend") < sends
    sent = re.search(r"(8502182-\d{14}\.wvz) envoyé \(le site de votre comptable", out)
    assert sent is not None, out
    assert "Un échange est généré, et envoyé à votre technicien" in out
    assert "10. Le comptable le récupère : 1 dossier vérifié" in out
    assert re.search(sent.group(1) + r" : reçu par votre comptable le \d\d/\d\d/\d{4}", out), out
    assert out.index("11. Le rapport de l'envoi dit maintenant") > sends
    journal = out[out.index("Journal :"):]
    assert f"{etalon} reçu (depuis le site du comptable) — contient des dossiers étalons" in (
        journal)
    assert f"{sent.group(1)} envoyé vers le site de votre comptable" in journal
    assert out.rstrip().endswith("Dossier temporaire supprimé.")
    assert not root.exists()
    assert stand_ins(root) == []


# ---------------------------------------------------------------- with the tray


@pytest.fixture(scope="module")
def x11() -> Iterator[XSession]:
    with desktop() as session:
        yield session


class Demo:
    """`passeur demo` running on the test desktop; its output read line by line."""

    def __init__(self, session: XSession) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "demo"], env=demo_env(session.env),
            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.errors: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.lines),
                             daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.errors),
                             daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join([*self.lines, "--- stderr ---", *self.errors])

    def says(self, start: str, timeout: float = 30.0) -> str:
        """Wait for a line of the demo that starts with `start`; return it."""
        found: list[str] = []

        def look() -> bool:
            found.extend(line for line in list(self.lines) if line.startswith(start))
            return bool(found)

        assert wait_for(look, timeout, 0.1), f"the demo never said {start!r}:\n{self.output}"
        return found[0]

    def stop(self) -> int:
        """SIGTERM, as a session ending would; return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        for reader in self._readers:
            reader.join(5)
        return code


def test_the_demo_with_the_tray_ends_in_the_restart_prompt_and_restarts_the_app(
    x11: XSession, shots: Path
) -> None:
    look = TrayLook(x11, shots)
    seen = x11.notification_ids()
    demo = Demo(x11)
    root: Path | None = None
    try:
        root = Path(demo.says("Démonstration de passeur dans ").removeprefix(
            "Démonstration de passeur dans "))
        assert wait_for(lambda: tray_icon(x11) is not None, 30), demo.output
        look.wait_for(Status.UP_TO_DATE, "demo-01-up-to-date")
        (first_app,) = stand_ins(root)

        # The normal update: one notification, and the badge on the amber icon.
        demo.says("5. Le comptable publie une mise à jour : ")
        bodies: list[str] = []

        def notified(text: str) -> bool:
            # Closed notifications go to dunst's history, where they are read back; one
            # that comes while we look is read at the next look.
            x11.dunstctl("close-all")
            for notification in x11.history():
                if notification.get("id") not in seen:
                    seen.add(notification.get("id"))
                    bodies.append(str(notification["body"]))
            return any(text in body for body in bodies)

        assert wait_for(lambda: x11.notifications_shown() >= 1, 30), demo.output
        x11.screenshot(shots / "demo-02-notification.png")
        assert wait_for(lambda: notified("1 mise à jour reçue pour le dossier 8502182"), 30,
                        0.3), (bodies, demo.output)
        waiting = look.wait_for(Status.WAITING, "demo-02-first-update")
        assert look.badge_pixels(waiting) >= 6, "the badge shows the update waiting"

        # The étalon update: the restart notification and the prompt.
        prompt = x11.wait_window("Relancer Isacompta", 30)
        shot = x11.screenshot(shots / "demo-03-restart-prompt.png")
        assert shot.stat().st_size > 0
        assert x11.visible_window("Relancer Isacompta") == prompt
        icon = tray_icon(x11)
        assert icon is not None, "the icon is in the tray"
        panel = x11.tray_window()
        assert panel is not None
        px, py, pwidth, pheight = x11.geometry(panel)
        ix, iy, iwidth, _height = x11.geometry(icon)
        # The icon sits inside trayer's panel.
        assert px <= ix
        assert ix + iwidth <= px + pwidth
        assert py <= iy < py + pheight
        look.wait_for(Status.RESTART_REQUIRED, "demo-04-restart-required")
        assert wait_for(lambda: notified("Le fichier d'échange contient des dossiers étalons"),
                        15, 0.3), bodies
        assert sum("reçue" in body for body in bodies) == 1, (
            "the étalon update is announced by the restart notification only", bodies)
        assert stand_ins(root) == [first_app], "nothing happens before the user says so"

        # Relancer maintenant: the application is closed, the two updates handed over,
        # and it is started again (it takes them from its inbox as it starts).
        normal, etalon = published("\n".join(demo.lines))
        x11.keys(prompt, "Return")
        integrated = root / "isacompta" / "echanges" / "integrated"
        assert wait_for(lambda: all((integrated / name).exists() for name in (normal, etalon)),
                        30), demo.output
        assert wait_for(lambda: len(stand_ins(root)) == 1 and stand_ins(root) != [first_app],
                        15), demo.output
        assert not psutil.pid_exists(first_app) or psutil.Process(first_app).status() == (
            psutil.STATUS_ZOMBIE)
        demo.says("8. passeur a remis les deux mises à jour à Isacompta")
        look.wait_for(Status.UP_TO_DATE, "demo-05-restarted")
        assert wait_for(lambda: notified("Isacompta a été relancé ; 2 mises à jour remises à "
                                         "Isacompta."), 15, 0.3), bodies

        # The sending half: the demo closes Isacompta, sends the dossier by web, the firm
        # collects it and its receipt comes back.
        demo.says("11. Le rapport de l'envoi dit maintenant")
        assert wait_for(lambda: notified("Dossier 8502182 envoyé à votre comptable"), 15,
                        0.3), bodies
        look.wait_for(Status.UP_TO_DATE, "demo-06-sent")
    finally:
        code = demo.stop()
        print(demo.output)  # shown when the test fails
        if root is not None:
            for pid in stand_ins(root):
                psutil.Process(pid).kill()
    assert code == 0, demo.output
    assert demo.lines[-1] == "Dossier temporaire supprimé.", demo.output
    assert not root.exists(), "the temporary home is removed"
    assert stand_ins(root) == [], "the stand-in application does not outlive the demo"
    shutil.rmtree(root, ignore_errors=True)
