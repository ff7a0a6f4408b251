"""*Envoyer le dossier* from the tray: the wizard's model, then the real tray on a real
desktop (Xvfb, trayer, dunst) driven with xdotool — onto a FAT key, by e-mail through
aiosmtpd, by the web through nginx with a cut line — each result checked for real.

The desktop tests run the tray in English (the window titles they look for); the French
words are checked by tests/test_i18n.py once the catalogue has them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import config_edit
from daemon.fsutil import sha256_file
from daemon.keys import SigningKey
from daemon.send.base import Channel, Documents
from daemon.send.choices import Choices, ChoiceStore
from daemon.send.options import SendOptions, Target
from tests.fat import FatImage
from tests.helpers import DOSSIER, DOSSIER_NAME, Home, make_home
from tests.uploads import web_site
from tests.xsession import XSession, desktop, start_tray, stop_tray, tray_icon, wait_for
from tray.send_wizard import PlanFacts, WizardModel

TESTS = Path(__file__).resolve().parent
WIZARD = "Service provider exchanges – Send"
SHOTS = Path(os.environ.get("PASSEUR_SHOTS") or "/tmp/shots/send")

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


# ---------------------------------------------------------------- the model, no display


def options(**changes: object) -> SendOptions:
    values: dict[str, object] = {
        "dossier": DOSSIER, "dossier_name": DOSSIER_NAME, "app_name": "Isacompta",
        "app_running": False,
        "targets": (Target("CLE", "/media/CLE", True), Target("/srv/envois", "/srv/envois")),
        "objectives": ("Envoi pour révision", "Envoi pour bilan"),
        "email_max_bytes": 20_000_000, "unavailable": {}, "choices": None}
    values.update(changes)
    return SendOptions(**values)  # type: ignore[arg-type]


def test_the_wizard_opens_on_the_web_when_it_is_set_up_and_on_the_key_first() -> None:
    model = WizardModel.opening(options())
    assert (model.channel, model.folder, model.documents) == (
        Channel.WEB, "/media/CLE", Documents.ALL)
    assert model.objective == "Envoi pour révision"
    no_web = WizardModel.opening(options(unavailable={"web": "pas de site"}))
    assert no_web.channel is Channel.FOLDER
    no_web.choose_channel(Channel.WEB)
    assert no_web.channel is Channel.FOLDER  # a disabled choice is not taken
    assert no_web.why_not(Channel.WEB) == "pas de site"


def test_remembered_choices_are_the_defaults() -> None:
    remembered = Choices(Channel.EMAIL, None, Documents.CHANGED, "Envoi pour bilan", True)
    model = WizardModel.opening(options(choices=remembered))
    assert (model.channel, model.documents, model.objective, model.inform) == (
        Channel.EMAIL, Documents.CHANGED, "Envoi pour bilan", True)
    assert not model.inform_possible()  # an e-mail send informs by itself
    assert model.request()["inform"] is False


def test_pages_flow_and_the_choices_stay_when_going_back() -> None:
    model = WizardModel.opening(options())
    assert not model.back()
    assert model.page == 0
    model.choose_channel(Channel.FOLDER)
    model.documents = Documents.CHANGED
    assert model.next()
    assert model.last_page
    assert not model.next()
    model.comments = "  Avec les factures de mars "
    assert model.back()
    assert model.page == 0
    assert model.next()
    assert model.request() == {
        "dossier": DOSSIER, "channel": "folder", "folder": "/media/CLE",
        "documents": "changed", "objective": "Envoi pour révision",
        "comments": "Avec les factures de mars", "inform": False}


def test_what_stands_in_the_way_of_terminer() -> None:
    model = WizardModel.opening(options(app_running=True))
    assert "Isacompta" in model.blocker()
    model.app_running = False
    assert model.blocker() == ""
    model.choose_channel(Channel.EMAIL)
    model.plans[Documents.ALL] = PlanFacts(3, 30_000_000)
    assert model.email_too_large()
    assert "e-mail" in model.blocker()
    model.plans[Documents.ALL] = PlanFacts(3, 1_000_000)
    assert not model.email_too_large()
    assert model.blocker() == ""
    # Ledgers that deflate well: judged by the packed size the service estimated.
    model.plans[Documents.ALL] = PlanFacts(3, 30_000_000, packed_bytes=4_000_000)
    assert not model.email_too_large()
    model.documents = Documents.CHANGED
    model.plans[Documents.CHANGED] = PlanFacts(0, 0)
    assert model.blocker() != ""  # nothing changed: nothing to send
    folder = WizardModel.opening(options(targets=(), unavailable={"web": "x"}))
    assert folder.channel is Channel.FOLDER
    assert folder.blocker() != ""
    folder.add_folder("/tmp/ailleurs")
    assert folder.blocker() == ""
    assert folder.targets()[-1].path == "/tmp/ailleurs"


def test_a_disabled_destination_says_what_to_do_in_the_window_the_cli_keeps_its_words(
        tmp_path: Path, signing_key: SigningKey) -> None:
    from daemon import i18n
    from daemon.bus import EventBus
    from daemon.send.base import SendError
    from daemon.send.sender import Sender, SendRequest

    i18n.setup("en")  # the words checked below (the French ones say « Paramètres »)
    home = english_home(tmp_path, signing_key)
    ctx = home.context()
    sender = Sender(ctx.config, ctx.paths, ctx.queue, EventBus())
    reasons = sender.options(DOSSIER).unavailable
    assert set(reasons) == {"web", "email"}
    for reason in reasons.values():
        assert "Settings" in reason, reason
        assert not any(word in reason for word in ("--to", "passeur ", "[")), reason
    # The same refusal, from the command line, still names the flag and the key.
    with pytest.raises(SendError) as refused:
        sender.send(SendRequest(DOSSIER, Channel.WEB))
    assert "--to folder" in refused.value.text
    assert "[sources.web] url" in refused.value.text


def test_the_receipt_notifies_only_when_the_config_asks(tmp_path: Path) -> None:
    from daemon.config import load_config
    from daemon.events import ReceiptReceived
    from tray.notices import NoticePolicy

    receipt = ReceiptReceived(DOSSIER, f"{DOSSIER}-20260301101500.wvz", "ab" * 32,
                              "2026-03-02T09:30:00+00:00")
    config = tmp_path / "config.toml"
    config.write_text("[notifications]\nsent = true\n")
    calm = load_config(config).notifications
    assert calm["receipt"] is False
    assert NoticePolicy(calm).decide(receipt) is None
    config.write_text("[notifications]\nreceipt = true\n")
    asked = load_config(config).notifications
    assert asked["receipt"] is True
    assert asked["sent"] is True
    notice = NoticePolicy(asked).decide(receipt)
    assert notice is not None
    # French by default (tests/conftest.py): the report's own words.
    assert notice.message.startswith("Reçu par votre comptable le 02/03/2026")
    assert receipt.name in notice.message


def test_the_first_pause_after_a_cut_is_a_send_setting(tmp_path: Path) -> None:
    from daemon.config import load_config
    from daemon.errors import ConfigError

    config = tmp_path / "config.toml"
    assert load_config(config).send.retry_seconds == 30
    config.write_text("[send]\nretry_seconds = 1\n")
    loaded = load_config(config)
    assert loaded.send.retry_seconds == 1
    assert loaded.notes == ()
    config.write_text("[send]\nretry_seconds = 0\n")
    with pytest.raises(ConfigError):
        load_config(config)


# ---------------------------------------------------------------- the real tray


@pytest.fixture(scope="module")
def x11() -> Iterator[XSession]:
    with desktop() as session:
        yield session


def english_home(tmp_path: Path, key: SigningKey, app_names: tuple[str, ...] = ()) -> Home:
    home = make_home(tmp_path / "home", key, app_names)
    config = home.root / "config.toml"
    config.write_text(config.read_text().replace('language = "fr"', 'language = "en"'))
    folder = tmp_path / "dossier"
    (folder / "factures").mkdir(parents=True)
    (folder / "grand-livre.txt").write_text("ecriture;512;100,00\n" * 200)
    (folder / "factures" / "mars.pdf").write_bytes(os.urandom(30_000))
    config_edit.add_dossier(config, DOSSIER, DOSSIER_NAME, str(folder))
    return home


def open_wizard(session: XSession) -> str:
    """Click the icon (plain X11: the choices window), take *Send the dossier*."""
    icon = tray_icon(session)
    assert icon is not None
    x, y, width, height = session.geometry(icon)
    session.click(x + width // 2, y + height // 2)
    choices = session.wait_window("passeur")
    # Focus starts on « Receive now »; the next enabled choice is the dossier's send.
    session.keys(choices, "Down", "Return")
    return session.wait_window(WIZARD)


def shot(session: XSession, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    session.screenshot(SHOTS / f"{name}.png")


def history(home: Home, action: str) -> list[dict[str, object]]:
    return [h.detail for h in home.context().queue.history() if h.action == action]


def gone(session: XSession, title: str) -> bool:
    return wait_for(lambda: session.visible_window(title) is None, 10)


@pytest.fixture
def fat_key(tmp_path: Path) -> Iterator[Path]:
    """A FAT image mounted where desktops mount keys (directly under /media)."""
    image = FatImage(tmp_path / "cle.img", label="CLE")
    point = Path("/media") / f"CLE-{uuid.uuid4().hex[:6]}"
    image.mount(point, writable=True)
    try:
        yield point
    finally:
        image.unmount()
        shutil.rmtree(point, ignore_errors=True)


def stand_in_opener(folder: Path) -> tuple[dict[str, str], Path]:
    """Return an environment whose `xdg-open` only writes down what it was asked to open
    (the platform layer opens files with it), and the file it writes to."""
    folder.mkdir(parents=True, exist_ok=True)
    record = folder / "opened.txt"
    opener = folder / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{record}"\nexit 0\n')
    opener.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"}, record


def opened(record: Path) -> list[str]:
    return record.read_text().splitlines() if record.exists() else []


def test_send_onto_the_fat_key_cancel_at_each_page_and_back_keeps_the_comments(
        x11: XSession, tmp_path: Path, signing_key: SigningKey, fat_key: Path) -> None:
    home = english_home(tmp_path, signing_key)
    opener_env, record = stand_in_opener(tmp_path / "opener")
    tray = start_tray(x11, home.root, tmp_path / "drop", opener_env)
    try:
        seen = x11.notification_ids()
        # Annuler on the first page, then on the second: nothing is sent.
        wizard = open_wizard(x11)
        shot(x11, "en-page1-destination")
        x11.keys(wizard, "Escape")
        assert gone(x11, WIZARD)
        wizard = open_wizard(x11)
        x11.keys(wizard, "Return")
        shot(x11, "en-page2-comments")
        x11.keys(wizard, "Escape")
        assert gone(x11, WIZARD)
        assert list(fat_key.glob("*.wvz")) == []
        assert history(home, "sent") == []
        assert history(home, "send_failed") == []

        # The key is the default Répertoire; comments typed, Précédent, Suivant, Terminer.
        wizard = open_wizard(x11)
        x11.keys(wizard, "Return")
        x11.run("xdotool", "type", "--delay", "20", "Avec les factures", check=True)
        x11.keys(wizard, "alt+Left", "alt+Right", "ctrl+Return")
        assert gone(x11, WIZARD)
        assert wait_for(lambda: bool(history(home, "sent")), 30), history(home, "send_failed")
        [sent] = history(home, "sent")
        [name] = [p.name for p in fat_key.glob("*.wvz")]
        assert name == sent["name"]
        assert sha256_file(fat_key / name) == sent["sha256"]
        assert sent["comments"] == "Avec les factures"
        assert sent["channel"] == "folder"
        assert wait_for(lambda: x11.notifications_shown() >= 1, 10)
        shot(x11, "en-notification-key")
        # A click on it (dunst's default action) opens the send's report page.
        assert opened(record) == []
        assert x11.dunstctl("action", "0").returncode == 0
        assert wait_for(lambda: opened(record), 10), x11.log("dunst")
        report = home.root / "data" / "reports" / (Path(str(sent["name"])).stem + ".html")
        assert opened(record) == [str(report)]
        assert str(sent["name"]) in report.read_text("utf-8")
        [notice] = x11.notifications_since(seen)
        assert "You can remove" in str(notice["body"]) or "remove the key" in str(
            notice["body"]).lower(), notice
    finally:
        code, err = stop_tray(tray)
    assert code == 0, err


def test_send_by_email_through_a_real_server(x11: XSession, tmp_path: Path,
                                             signing_key: SigningKey) -> None:
    from tests.faultserver import keyring_env
    from tests.smtpserver import smtp_server

    home = english_home(tmp_path, signing_key)
    keyrings = keyring_env(tmp_path / "xdg")
    with smtp_server(tmp_path / "smtp") as server:
        config_edit.set_email(home.root / "config.toml", smtp_host=server.host,
                              smtp_port=server.port, user="ferme", sender="ferme@example.org",
                              accountant="comptable@cabinet.example", timeout_s=10,
                              ca_bundle=str(server.tls.ca_cert))
        stored = subprocess.run([sys.executable, "-m", "daemon.cli", "email", "login",
                                 "--password-stdin"], input="motdepasse\n", text=True,
                                env={**home.env, **keyrings}, capture_output=True, check=False)
        assert stored.returncode == 0, stored.stderr
        # The last send went by e-mail: the wizard opens on Email.
        ChoiceStore(home.root / "data" / "send").save(DOSSIER, Choices(Channel.EMAIL))
        # 30 MB of ledgers, over the 20 MB an e-mail may weigh, but a small `.wvz`: the
        # wizard judges by the packed size it estimates, and lets it go.
        lines = [f"{n};4010{n % 97:02d};FACTURE {n};{n * 7 % 10_000},00\n" for n in range(20_000)]
        (tmp_path / "dossier" / "grand-livre-detail.txt").write_text(
            "".join(lines) * 42, "utf-8")
        tray = start_tray(x11, home.root, tmp_path / "drop", keyrings)
        try:
            wizard = open_wizard(x11)
            x11.keys(wizard, "Return")
            time.sleep(2.5)  # the counts come from the service in the background
            shot(x11, "en-page1-email-large-ledgers")
            x11.keys(wizard, "ctrl+Return")
            assert gone(x11, WIZARD)
            assert wait_for(lambda: bool(history(home, "sent")), 30), history(
                home, "send_failed")
            [sent] = history(home, "sent")
            [message] = server.received
            attachment = message.attachments()[str(sent["name"])]
            import hashlib

            assert hashlib.sha256(attachment).hexdigest() == sent["sha256"]
        finally:
            code, err = stop_tray(tray)
        assert code == 0, err


def test_nothing_is_packed_while_the_application_runs(x11: XSession, tmp_path: Path,
                                                     signing_key: SigningKey) -> None:
    script = tmp_path / f"app_{uuid.uuid4().hex[:10]}.py"
    shutil.copy(TESTS / "standin_app.py", script)
    home = english_home(tmp_path, signing_key, (script.name,))
    out = tmp_path / "envois"
    out.mkdir()
    ChoiceStore(home.root / "data" / "send").save(DOSSIER, Choices(Channel.FOLDER, out))
    app = subprocess.Popen([sys.executable, str(script), str(home.inbox), str(tmp_path / "t")],
                           stdout=subprocess.PIPE, text=True)
    assert app.stdout is not None
    assert app.stdout.readline().strip() == "ready"
    tray = start_tray(x11, home.root, tmp_path / "drop")
    try:
        wizard = open_wizard(x11)
        x11.keys(wizard, "Return", "ctrl+Return")  # Terminer is refused: the app is open
        shot(x11, "en-application-open")
        assert x11.visible_window(WIZARD) is not None
        assert os.listdir(out) == []
        assert not list((home.root / "data" / "send").glob("staging/*"))
        # *Fermer Isacompta*, just before the first destination in the Tab order.
        x11.keys(wizard, "alt+Left", "shift+Tab")
        shot(x11, "en-close-focused")
        x11.keys(wizard, "Return")
        assert app.wait(15) == 0  # asked to close as a user would: it ended by itself
        # The window sees it closed (the service is asked every 2 s), then Terminer works.
        def finished() -> bool:
            x11.keys(wizard, "ctrl+Return")
            return x11.visible_window(WIZARD) is None

        assert wait_for(finished, 20, 0.5)
        assert wait_for(lambda: bool(history(home, "sent")), 30), history(home, "send_failed")
        assert len(os.listdir(out)) == 1
    finally:
        if app.poll() is None:
            app.kill()
        code, err = stop_tray(tray)
    assert code == 0, err


def test_a_web_send_cut_in_the_middle_resumes_by_itself_with_one_notification(
        x11: XSession, tmp_path: Path, signing_key: SigningKey) -> None:
    from daemon.web.collect import collect

    home = english_home(tmp_path, signing_key)
    (tmp_path / "dossier" / "scans.pdf").write_bytes(os.urandom(17 << 20))  # three parts
    with web_site(home, tmp_path, max_kbps=4000) as (server, keyrings):
        retry_after_one_second(home)
        tray = start_tray(x11, home.root, tmp_path / "drop", keyrings)
        try:
            seen = x11.notification_ids()
            wizard = open_wizard(x11)  # the web is the default once it is set up
            x11.keys(wizard, "Return", "ctrl+Return")
            notes = home.root / "data" / "send" / "web"
            assert wait_for(lambda: any(_acknowledged(n) >= 1 for n in notes.glob("*.json")),
                            60), "no part arrived"
            server.stop()  # the line is cut…
            assert wait_for(lambda: "interrupted" in _log(home), 30), _log(home)
            shot(x11, "en-line-cut")
            server.start(same_port=True)  # …and back: the send goes on by itself
            assert wait_for(lambda: bool(history(home, "sent")), 90), history(
                home, "send_failed")
            assert wait_for(lambda: x11.notifications_shown() >= 1, 10)
            shot(x11, "en-notification-web")
            new = x11.notifications_since(seen)
            assert [str(n["body"]) for n in new] == [
                f"Dossier {DOSSIER} was sent to the accountant"], new
        finally:
            code, err = stop_tray(tray)
        assert code == 0, err
        [sent] = history(home, "sent")
        inbox = tmp_path / "cabinet"
        collected = collect(server.repo, inbox, home.key)
        assert [o.name for o in collected.outcomes] == [sent["name"]]
        assert sha256_file(inbox / str(sent["name"])) == sent["sha256"]


def retry_after_one_second(home: Home) -> None:
    """`[send] retry_seconds = 1`: a cut send tries again after a second, not 30."""
    config = home.root / "config.toml"
    text = config.read_text()
    assert "[send]\n" in text
    config.write_text(text.replace("[send]\n", "[send]\nretry_seconds = 1\n", 1))


def test_annuler_l_envoi_from_the_choices_window_stops_a_web_send_calmly(
        x11: XSession, tmp_path: Path, signing_key: SigningKey) -> None:
    from daemon.web.collect import collect

    home = english_home(tmp_path, signing_key)
    (tmp_path / "dossier" / "scans.pdf").write_bytes(os.urandom(2 << 20))  # minutes at 16 kB/s
    with web_site(home, tmp_path, max_kbps=16) as (server, keyrings):
        retry_after_one_second(home)
        tray = start_tray(x11, home.root, tmp_path / "drop", keyrings)
        try:
            seen = x11.notification_ids()
            wizard = open_wizard(x11)
            x11.keys(wizard, "Return", "ctrl+Return")
            assert gone(x11, WIZARD)
            assert wait_for(lambda: f"Sending {DOSSIER}-" in _log(home), 30), _log(home)
            # While sending, the dossier's entry is greyed: the next choice is the cancel.
            icon = tray_icon(x11)
            assert icon is not None
            x, y, width, height = x11.geometry(icon)
            x11.click(x + width // 2, y + height // 2)
            choices = x11.wait_window("passeur")
            shot(x11, "en-choices-while-sending")
            x11.keys(choices, "Down", "Return")
            assert wait_for(lambda: bool(history(home, "send_failed")), 30), _log(home)
            [failed] = history(home, "send_failed")
            assert failed["code"] == "cancelled"
            assert history(home, "sent") == []
            assert wait_for(lambda: x11.notifications_shown() >= 1, 10)
            shot(x11, "en-notification-cancelled")
            new = x11.notifications_since(seen)
            assert [str(n["body"]) for n in new] == [
                f"The send of dossier {DOSSIER} was cancelled: nothing was sent."], new
        finally:
            code, err = stop_tray(tray)
        assert code == 0, err
        collected = collect(server.repo, tmp_path / "cabinet", home.key)
        assert collected.outcomes == []


def _log(home: Home) -> str:
    return "".join(p.read_text("utf-8", "replace") for p in (home.root / "logs").glob("*.log"))


def _acknowledged(note: Path) -> int:
    try:
        return len(json.loads(note.read_bytes())["parts"])
    except (OSError, ValueError, KeyError):
        return 0
