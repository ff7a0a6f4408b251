"""The set-up through a running tray (xfce4-panel's StatusNotifierItem host under Xvfb, its
menu read over D-Bus): the first run's wizard opens by itself and, driven with the
invitation, ends « à configurer »; a reload that adds a dossier shows it in the menu."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import config_edit
from daemon.setup.invitation import make_invitation, write_invitation
from daemon.web.publish import Repository
from tests.faultserver import keyring_env
from tests.helpers import DOSSIER, DOSSIER_NAME, Home
from tests.nginx import Nginx, TLSFiles, make_tls
from tests.xsession import (
    ROOT,
    MenuNode,
    SniSession,
    launcher_argv,
    sni_desktop,
    stop_tray,
    tray_env,
    wait_for,
)

SHOTS = Path("/tmp/shots/setup2")
USER, PASSWORD = "gaec", "Mot-de-passe-6190"
OTHER, OTHER_NAME = "9100001", "EARL DES PRÉS"
WIZARD = "Configurer passeur"


@pytest.fixture(scope="module")
def sni() -> Iterator[SniSession]:
    """One desktop with a StatusNotifierItem host for the module."""
    with sni_desktop() as session:
        yield session


def start(session: SniSession, home: Path, drop: Path,
          env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the tray (the tests' launcher); wait until its item is on the panel."""
    drop.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(launcher_argv(home, drop), cwd=ROOT, text=True,
                               env=tray_env(session.env, home) | env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if not wait_for(lambda: session.sni_item() is not None or process.poll() is not None,
                    30) or process.poll() is not None:
        process.kill()
        pytest.fail("the tray did not register its item: " + process.communicate()[1])
    return process


def menu_labels(session: SniSession) -> list[str]:
    """Return the visible entries of passeur's menu, a submenu's as "parent/child"."""
    item = session.sni_item()
    if item is None:
        return []

    def walk(nodes: list[MenuNode], prefix: str) -> Iterator[str]:
        for node in nodes:
            if node.visible and not node.separator:
                yield prefix + node.label
                yield from walk(node.children, f"{prefix}{node.label}/")

    return list(walk(session.menu(item), ""))


def tooltip(session: SniSession) -> str:
    """Return the words of passeur's tooltip."""
    item = session.sni_item()
    if item is None:
        return ""
    value = session.sni_properties(item).get("ToolTip")
    return " ".join(str(part) for part in value[2:]) if value else ""


def shot(session: SniSession, window: str, name: str) -> Path:
    """Save a picture of one window."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    session.run("import", "-window", window, str(path), check=True)
    return path


@pytest.fixture
def tls_firm(tmp_path: Path, home: Home) -> Iterator[tuple[Nginx, TLSFiles]]:
    """The firm's nginx over TLS (a private CA, auth_basic), one update published."""
    tls = make_tls(tmp_path / "tls")
    server = Nginx(tmp_path / "nginx", tls=tls)
    server.add_user(DOSSIER, USER, PASSWORD)
    server.start()
    Repository(server.repo, home.key).publish(home.update(1))
    yield server, tls
    server.stop()


def test_first_run_the_tray_opens_the_wizard_and_ends_to_configure(
        sni: SniSession, tmp_path: Path, home: Home,
        tls_firm: tuple[Nginx, TLSFiles]) -> None:
    server, tls = tls_firm
    root = tmp_path / "farmer"
    root.mkdir()
    # The firm's private CA, as the packaging or the firm's instructions would set it;
    # nothing else: no dossier, no key, « à configurer ».
    (root / "config.toml").write_text(f'[sources.web]\nca_bundle = "{tls.ca_cert}"\n')
    (tmp_path / "mail").mkdir()
    invitation = write_invitation(tmp_path / "mail", home.key, make_invitation(
        home.key, dossier=DOSSIER, name=DOSSIER_NAME, url=server.base_url, user=USER,
        label="Cabinet Dupont", email="comptable@cabinet.example"))
    tray = start(sni, root, tmp_path / "drop", keyring_env(tmp_path / "keyring"))
    try:
        assert menu_labels(sni)[0] == "Paramètres"
        wizard = sni.wait_window(WIZARD, 20)  # opened by the tray itself
        shot(sni, wizard, "fr-tray-first-run-opened")
        sni.keys(wizard, "ctrl+Tab", "alt+i")  # Comptable: Ouvrir un fichier d'invitation…
        chooser = sni.wait_window("Ouvrir un fichier d'invitation")
        sni.run("xdotool", "type", "--delay", "10", str(invitation), check=True)
        sni.keys(chooser, "Return")
        assert wait_for(lambda: sni.visible_window("Ouvrir un fichier d'invitation") is None,
                        10)
        sni.keys(wizard, "alt+p")
        sni.run("xdotool", "type", "--delay", "10", PASSWORD, check=True)
        sni.keys(wizard, "alt+t")
        time.sleep(1.0)  # only for the picture: what follows proves the verdict
        shot(sni, wizard, "fr-tray-first-run-invitation-tested")
        sni.keys(wizard, "ctrl+s")
        assert wait_for(lambda: sni.visible_window(WIZARD) is None, 15)
        # The tray leaves « à configurer », and the service polls the new address at once.
        assert wait_for(lambda: menu_labels(sni)[0] != "Paramètres", 15), menu_labels(sni)
        assert wait_for(lambda: "Mises à jour à intégrer (1)…" in menu_labels(sni), 30), \
            menu_labels(sni)
        assert f"Envoyer le dossier/{DOSSIER} – {DOSSIER_NAME}" in menu_labels(sni)
        assert "configuré" not in tooltip(sni), tooltip(sni)
    finally:
        code, err = stop_tray(tray)
        print(err)  # shown when the test fails
    assert code == 0, err
    for path in root.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_a_dossier_added_while_the_tray_runs_appears_in_its_menu(
        sni: SniSession, tmp_path: Path, home: Home) -> None:
    tray = start(sni, home.root, tmp_path / "drop", {})
    try:
        assert wait_for(lambda: f"Envoyer le dossier/{DOSSIER} – {DOSSIER_NAME}"
                        in menu_labels(sni), 10), menu_labels(sni)
        added = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "dossier", "add", OTHER, OTHER_NAME],
            env=tray_env(sni.env, home.root), cwd=ROOT, text=True, capture_output=True,
            timeout=60, check=False)
        assert added.returncode == 0, added.stderr
        assert wait_for(lambda: f"Envoyer le dossier/{OTHER} – {OTHER_NAME}"
                        in menu_labels(sni), 15), menu_labels(sni)
        config_edit.remove_dossier(home.root / "config.toml", OTHER)
        assert wait_for(lambda: not any(label.startswith(f"Envoyer le dossier/{OTHER}")
                                        for label in menu_labels(sni)), 15), menu_labels(sni)
    finally:
        code, err = stop_tray(tray)
        print(err)
    assert code == 0, err
