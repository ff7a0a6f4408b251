"""The set-up wizard and the *Paramètres* window on a real X display (Xvfb), driven with
xdotool as a user would: the keyboard only."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import config_edit
from daemon.config import load_config
from daemon.setup.invitation import make_invitation, write_invitation
from daemon.web.credentials import CredentialStore
from daemon.web.publish import Repository
from tests.faultserver import configure_web, file_keyring, keyring_env
from tests.helpers import DOSSIER, DOSSIER_NAME, Home, make_home
from tests.nginx import Nginx, TLSFiles, make_tls
from tests.smtpserver import smtp_server
from tests.xsession import XSession, desktop, wait_for

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path("/tmp/shots/setup2")
USER, PASSWORD = "gaec", "Mot-de-passe-5274"
UNKNOWN = "9100001"  # an account on the server, but nothing published for it


@pytest.fixture(scope="module")
def session() -> Iterator[XSession]:
    """One virtual desktop for the module's windows, large enough for them at 200 %."""
    with desktop(screen="2560x1600") as running:
        yield running


class Window:
    """A `python -m tray.dialogs KIND` process on the desktop."""

    def __init__(self, session: XSession, env: dict[str, str], kind: str,
                 data: dict[str, Any], title: str) -> None:
        self.session = session
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tray.dialogs", kind], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env=session.env | env | {"PYTHONPATH": str(ROOT)})
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(data))
        self.process.stdin.close()
        self.process.stdin = None  # communicate() then only reads
        self.id = session.wait_window(title)

    def keys(self, *keys: str) -> None:
        """Press keys in the window."""
        self.session.keys(self.id, *keys)

    def type(self, text: str) -> None:
        """Type text into the focused field."""
        self.session.run("xdotool", "type", "--delay", "20", text, check=True)

    def shot(self, name: str) -> Path:
        """Save a picture of the window."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        self.session.run("import", "-window", self.id, str(path), check=True)
        return path

    def answer(self) -> dict[str, Any]:
        """Wait for the window to close and return its answer."""
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, err
        answer = json.loads(out.strip().splitlines()[-1])
        assert isinstance(answer, dict), out
        return answer


def farmer_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh farmer's home and an environment with a file keyring outside it."""
    root = tmp_path / "farmer"
    root.mkdir()
    return root, {"PASSEUR_HOME": str(root)} | keyring_env(tmp_path / "keyring")


def window_data(root: Path, invitation: Path | None = None, language: str = "fr") -> dict[
        str, Any]:
    """What the tray opens the windows with."""
    return {"language": language, "config": str(root / "config.toml"), "home": str(root),
            "invitation": str(invitation) if invitation else ""}


@pytest.fixture
def tls_firm(tmp_path: Path, home: Home) -> Iterator[tuple[Nginx, TLSFiles]]:
    """The firm's nginx over TLS (a private CA), the dossier published."""
    tls = make_tls(tmp_path / "tls")
    server = Nginx(tmp_path / "nginx", tls=tls)
    server.add_user(DOSSIER, USER, PASSWORD)
    server.add_user(UNKNOWN, USER, PASSWORD)
    server.start()
    Repository(server.repo, home.key).publish(home.update(1))
    yield server, tls
    server.stop()


def invitation_for(home: Home, folder: Path, url: str, dossier: str = DOSSIER) -> Path:
    """Write the firm's invitation."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_invitation(folder, home.key, make_invitation(
        home.key, dossier=dossier, name=DOSSIER_NAME, url=url, user=USER,
        label="Cabinet Dupont", email="comptable@cabinet.example"))


def test_first_run_from_the_invitation_to_a_working_configuration(
        session: XSession, tmp_path: Path, home: Home,
        tls_firm: tuple[Nginx, TLSFiles]) -> None:
    server, tls = tls_firm
    root, env = farmer_env(tmp_path)
    # The firm's private CA, as the packaging or the firm's instructions would set it.
    (root / "config.toml").write_text(f'[sources.web]\nca_bundle = "{tls.ca_cert}"\n')
    invitation = invitation_for(home, tmp_path / "mail", server.base_url)
    window = Window(session, env, "setup", window_data(root, invitation),
                    "Configurer passeur")
    window.type(PASSWORD)  # the only field left empty: it has the keyboard
    window.keys("alt+t")
    time.sleep(1.0)  # only for the picture: the verdict is asserted from the answer
    window.shot("fr-first-run-connection-good")
    window.keys("ctrl+s")
    answer = window.answer()
    assert answer == {"saved": True, "verdicts": ["good"]}

    config = load_config(root / "config.toml")
    assert [(d.number, d.name) for d in config.dossiers] == [(DOSSIER, DOSSIER_NAME)]
    assert [t.key for t in config.trusted_keys] == [home.key.public]
    assert (config.web.url, config.web.ca_bundle) == (server.base_url, tls.ca_cert)
    stored = CredentialStore(file_keyring(tmp_path / "keyring" / "python_keyring"
                                          / "keyring_pass.cfg")).get(DOSSIER)
    assert stored is not None
    assert (stored.user, stored.secret) == (USER, PASSWORD)
    for path in root.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong-password", "credentials-refused"),
    ("unknown-ca", "certificate-not-trusted"),
    ("unknown-dossier", "dossier-unknown"),
])
def test_the_connection_tests_verdicts(session: XSession, tmp_path: Path, home: Home,
                                       tls_firm: tuple[Nginx, TLSFiles], case: str,
                                       expected: str) -> None:
    server, tls = tls_firm
    root, env = farmer_env(tmp_path)
    if case != "unknown-ca":
        (root / "config.toml").write_text(f'[sources.web]\nca_bundle = "{tls.ca_cert}"\n')
    invitation = invitation_for(home, tmp_path / "mail", server.base_url,
                                UNKNOWN if case == "unknown-dossier" else DOSSIER)
    window = Window(session, env, "setup", window_data(root, invitation),
                    "Configurer passeur")
    window.type("wrong" if case == "wrong-password" else PASSWORD)
    window.keys("alt+t")
    time.sleep(1.0)  # only for the picture
    window.shot(f"fr-verdict-{case}")
    window.keys("Escape")
    assert window.answer() == {"saved": False, "verdicts": [expected]}
    assert not (root / "config.toml").exists() or load_config(root / "config.toml").dossiers == ()


def test_settings_change_the_poll_interval_and_a_watched_folder(
        session: XSession, tmp_path: Path, home: Home) -> None:
    configure_web(home, "https://echanges.cabinet.example/passeur/")
    watched = tmp_path / "Echanges reçus"
    watched.mkdir()
    window = Window(session, keyring_env(tmp_path / "keyring"), "settings",
                    window_data(home.root), "Paramètres — passeur")
    window.keys(*["ctrl+Tab"] * 4)  # Dossier, Comptable, E-mail, Logiciel → Sources
    window.keys("alt+m")
    window.type("5")
    window.keys("alt+o")
    window.type(str(watched))
    window.keys("Return")
    window.shot("fr-settings-sources-changed")
    window.keys("ctrl+s")
    assert window.answer() == {"saved": True, "verdicts": []}
    config = load_config(home.root / "config.toml")
    assert config.web.poll_minutes == 5
    assert config.watched_folders == (watched,)
    assert [d.number for d in config.dossiers] == [DOSSIER]  # the rest is kept


def test_the_test_message_goes_through_starttls_and_auth(session: XSession, tmp_path: Path,
                                                        home: Home) -> None:
    with smtp_server(tmp_path / "smtp", users={"ferme": "Secret-smtp-8841"}) as server:
        config_edit.set_email(home.root / "config.toml", smtp_host=server.host,
                              smtp_port=server.port, security="starttls", user="ferme",
                              sender="ferme@example.org",
                              ca_bundle=str(server.tls.ca_cert))
        window = Window(session, keyring_env(tmp_path / "keyring"), "settings",
                        window_data(home.root), "Paramètres — passeur")
        window.keys("ctrl+Tab", "ctrl+Tab")  # Dossier, Comptable → E-mail
        window.keys("alt+p")
        window.type("Secret-smtp-8841")  # typed, not yet saved: the test uses it
        window.keys("alt+e")
        assert wait_for(lambda: server.received, 20), "no test message arrived"
        window.shot("fr-settings-email-test-sent")
        window.keys("Escape")
        assert window.answer() == {"saved": False, "verdicts": []}
        received = server.received
        counters = server.counters
    assert [r.recipients for r in received] == [("ferme@example.org",)]
    assert (counters.starttls, counters.auth) == (1, 1)
    assert "passeur" in str(received[0].message.get("Subject"))


PAGES = ("dossier", "accountant", "email", "app", "sources", "notifications")


@pytest.mark.parametrize("language", ["fr", "en"])
def test_every_page_pictured(session: XSession, tmp_path: Path, language: str,
                             signing_key: Any) -> None:
    home = make_home(tmp_path / "home", signing_key)
    configure_web(home, "https://echanges.cabinet.example/passeur/")
    title = "Paramètres — passeur" if language == "fr" else "Settings — passeur"
    window = Window(session, keyring_env(tmp_path / "keyring"), "settings",
                    window_data(home.root, language=language), title)
    shots = []
    for index, page in enumerate(PAGES):
        time.sleep(0.3)  # the page is drawn
        shots.append(window.shot(f"{language}-{index + 1}-{page}"))
        window.keys("ctrl+Tab")
    window.keys("Escape")
    assert window.answer() == {"saved": False, "verdicts": []}
    assert all(path.stat().st_size > 0 for path in shots)


@pytest.mark.parametrize(("language", "scale"), [("fr", 1), ("en", 1), ("fr", 2), ("en", 2)])
def test_every_page_of_the_first_run_wizard_pictured(session: XSession, tmp_path: Path,
                                                     language: str, scale: int) -> None:
    root, env = farmer_env(tmp_path)
    title = "Configurer passeur" if language == "fr" else "Set up passeur"
    # What the tray opens at first run (tray/app.py: daemon.setup.plan.window_data).
    window = Window(session, env | {"GDK_SCALE": str(scale)}, "setup",
                    window_data(root, language=language), title)
    shots, sizes = [], []
    for index, page in enumerate(PAGES):
        time.sleep(0.3)  # the page is drawn
        shots.append(window.shot(f"first-run-{language}-x{scale}-{index + 1}-{page}"))
        sizes.append(session.geometry(window.id)[2:])
        window.keys("ctrl+Tab")
    window.keys("Escape")
    assert window.answer() == {"saved": False, "verdicts": []}
    width, height = sizes[0]
    # The common look scales every window: about twice as large at GDK_SCALE=2 (the text
    # and the fields; some margins stay as they are), whole on a screen that holds it, and
    # the pages share one size: none is cut by a window sized for another page.
    assert width > 600 * scale, sizes
    assert height > 380 * scale, sizes
    assert len(set(sizes)) == 1, sizes
