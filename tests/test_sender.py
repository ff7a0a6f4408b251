"""The send orchestrator with its real parts: the packer, a folder, a real aiosmtpd, the
stand-in accounting application, SQLite on disk; events, report, history and choices."""

from __future__ import annotations

import hashlib
import html
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon import config_edit, i18n
from daemon.bus import EventBus
from daemon.events import (
    Event,
    ReceiptReceived,
    SendFailed,
    SendFinished,
    SendProgress,
    SendStarted,
)
from daemon.exchange import verify_exchange
from daemon.presentation import describe_activity
from daemon.send.base import Channel, Destination, Documents, Progress, SendError, SendJob, Sent
from daemon.send.email import SmtpPasswords
from daemon.send.folder import FolderDestination
from daemon.send.identity import installation_public_key
from daemon.send.report import add_receipt_to_report, load_report, report_path
from daemon.send.sender import Sender, SendReport, SendRequest
from daemon.web.collect import collect
from daemon.web.credentials import BASIC, Credential, CredentialStore
from daemon.web.index import Receipt
from daemon.web.publish import Repository
from daemon.web.receipts import ReceiptStore
from tests.fat import wait_until
from tests.faultserver import Recorder, configure_web, file_keyring
from tests.faultserver import make_rig as make_poller
from tests.helpers import DOSSIER, DOSSIER_NAME, Home
from tests.nginx import Nginx
from tests.smtpserver import SmtpServer, smtp_server
from tests.test_delivery import App, make_app_home

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SEND_EVENTS = (SendStarted, SendProgress, SendFinished, SendFailed)


@pytest.fixture(autouse=True)
def _english() -> None:
    i18n.setup("en")  # French checks are marked "FR:"


@dataclass
class Rig:
    """A home with a dossier folder, a Sender on it, and the events it published."""

    home: Home
    folder: Path  # the dossier's folder
    out: Path  # a *Répertoire* to send to
    bus: EventBus
    events: Recorder
    sender: Sender

    def events_of_sends(self) -> list[Event]:
        """Return the send events, once every one published so far is recorded."""
        self.bus.close()  # delivers what is queued, then stops the subscriber threads
        return [e for e in self.events.events if isinstance(e, SEND_EVENTS)]

    def send(self, **changes: object) -> SendReport:
        request = SendRequest(DOSSIER, **{"channel": Channel.FOLDER,  # type: ignore[arg-type]
                                          "folder": self.out, **changes})
        return self.sender.send(request)


def write_documents(folder: Path, documents: dict[str, bytes]) -> None:
    for name, data in documents.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


DOCUMENTS = {"grand-livre.txt": b"ecriture;512;100,00\n" * 2000,
             "factures/mars.pdf": os.urandom(50_000),
             "photos/silo.jpg": os.urandom(30_000)}


def make_rig(home: Home, tmp_path: Path, sender_args: dict[str, object] | None = None,
             ) -> Rig:
    folder = tmp_path / "dossier"
    folder.mkdir()
    write_documents(folder, DOCUMENTS)
    config_edit.add_dossier(home.root / "config.toml", DOSSIER, DOSSIER_NAME, str(folder))
    out = tmp_path / "sortie"
    out.mkdir()
    ctx = home.context()
    bus = EventBus()
    events = Recorder()
    bus.subscribe("test", events)
    sender = Sender(ctx.config, ctx.paths, ctx.queue, bus, **(sender_args or {}))  # type: ignore[arg-type]
    return Rig(home, folder, out, bus, events, sender)


@pytest.fixture
def rig(home: Home, tmp_path: Path) -> Iterator[Rig]:
    made = make_rig(home, tmp_path)
    yield made
    made.bus.close()


def staging_left(home: Home) -> list[Path]:
    send = home.root / "data" / "send"
    return [p for sub in ("staging", "pending") if (send / sub).exists()
            for p in (send / sub).iterdir()]


# ---------------------------------------------------------------- a whole send


def test_a_folder_send_packs_reports_and_remembers(rig: Rig) -> None:
    comments = 'Les factures <de mars> & "avril"'
    report = rig.sender.send(SendRequest(DOSSIER, Channel.FOLDER, rig.out, Documents.ALL,
                                         "Envoi pour révision", comments))

    sent = rig.out / report.name
    key = installation_public_key(rig.home.root / "data")
    manifest = verify_exchange(sent, {key.key_id: key}, report.name)
    assert manifest.dossier == DOSSIER
    assert manifest.sequence == 1
    assert manifest.objective == "Envoi pour révision"
    assert manifest.comments == comments
    assert report.documents == 3
    assert report.mode is Documents.ALL
    assert report.deleted == ()
    assert report.documents_bytes == sum(len(d) for d in DOCUMENTS.values())
    assert report.size == sent.stat().st_size
    assert report.where == f"the folder {rig.out}"
    assert staging_left(rig.home) == []

    events = rig.events_of_sends()
    kinds = [type(e) for e in events]
    assert kinds.count(SendStarted) == 1
    assert kinds.count(SendFinished) == 1
    assert SendFailed not in kinds
    assert kinds[0] is SendStarted
    assert kinds[-1] is SendFinished
    stages = [e.stage for e in events if isinstance(e, SendProgress)]
    assert stages[0] == "pack"
    assert stages[-1] == "transfer"
    assert stages == sorted(stages, key=["pack", "transfer"].index)  # pack, then transfer
    assert {e.name for e in events if isinstance(e, SEND_EVENTS)} == {report.name}
    finished = events[-1]
    assert isinstance(finished, SendFinished)
    assert finished.ok
    assert finished.where == report.where
    assert finished.message == f"{report.name} was sent to the folder {rig.out}."

    [entry] = [h for h in rig.home.context().queue.history() if h.action == "sent"]
    assert entry.detail["name"] == report.name
    assert entry.detail["documents"] == 3
    assert describe_activity("sent", entry.detail).startswith(
        f"{report.name} sent to the folder {rig.out} (3 documents, ")

    page = report_path(rig.home.context().paths, report.name)
    assert page == rig.home.root / "data" / "reports" / (report.name[:-4] + ".html")
    text = page.read_text("utf-8")
    assert html.escape(comments) in text
    assert comments not in text
    assert "An exchange was generated and sent to your accountant" in text
    assert '<html lang="en">' in text
    assert "<script" not in text
    assert "http" not in text.replace("http-equiv", "")
    assert load_report(rig.home.context().paths, report.name) == report

    choices = rig.sender.choices(DOSSIER)
    assert choices is not None
    assert (choices.channel, choices.folder, choices.objective) == (
        Channel.FOLDER, rig.out, "Envoi pour révision")


def test_only_the_changed_documents_and_the_deleted_ones(rig: Rig) -> None:
    rig.send()
    (rig.folder / "grand-livre.txt").write_bytes(b"ecriture;411;5,00\n" * 10)
    (rig.folder / "photos" / "silo.jpg").unlink()
    (rig.folder / "nouveau.txt").write_bytes(b"nouveau")

    report = rig.send(documents=Documents.CHANGED)

    key = installation_public_key(rig.home.root / "data")
    manifest = verify_exchange(rig.out / report.name, {key.key_id: key}, report.name)
    assert sorted(f.path for f in manifest.files) == [
        "associated_documents/grand-livre.txt", "associated_documents/nouveau.txt"]
    assert report.deleted == ("photos/silo.jpg",)
    assert report.documents == 2
    assert manifest.sequence == 2
    assert manifest.delta_only
    assert "Deleted documents: photos/silo.jpg" in report.lines()


def test_two_sends_in_the_same_second_make_two_names(rig: Rig) -> None:
    first, second = rig.send(), rig.send()
    assert first.name != second.name
    assert sorted(os.listdir(rig.out)) == sorted([first.name, second.name])


# ---------------------------------------------------------------- refusals


def test_with_the_application_running_no_pack_starts(tmp_path: Path, signing_key: object,
                                                     ) -> None:
    home, app = make_app_home(tmp_path / "app", signing_key)  # type: ignore[arg-type]
    rig = make_rig(home, tmp_path)
    with app.running(), pytest.raises(SendError) as caught:
        rig.send()
    assert caught.value.code == "app-running"
    assert caught.value.text == (
        "Close Isacompta before sending the dossier: it could be writing it.")
    events = rig.events_of_sends()
    assert [type(e) for e in events] == [SendFailed]  # no SendStarted: nothing was packed
    assert isinstance(events[0], SendFailed)
    assert events[0].code == "app-running"
    assert os.listdir(rig.out) == []
    assert staging_left(home) == []
    assert not (home.root / "data" / "sent").exists()  # no inventory committed
    [entry] = [h for h in home.context().queue.history() if h.action == "send_failed"]
    assert describe_activity("send_failed", entry.detail) == (
        "Dossier 8502182 not sent (Folder): Close Isacompta before sending the dossier: it"
        " could be writing it.")
    assert isinstance(app, App)


class _Held:
    """A folder destination that waits to be released before it writes (a long send)."""

    channel = Channel.FOLDER

    def __init__(self, inner: Destination) -> None:
        self.inner = inner
        self.writing = threading.Event()
        self.release = threading.Event()

    def check(self, job_size: int) -> None:
        self.inner.check(job_size)

    def send(self, job: SendJob, progress: Progress, cancel: threading.Event) -> Sent:
        self.writing.set()
        assert self.release.wait(30)
        return self.inner.send(job, progress, cancel)


def test_a_second_send_of_the_same_dossier_at_once_is_refused(home: Home,
                                                              tmp_path: Path) -> None:
    held: list[_Held] = []

    def destination(request: SendRequest) -> Destination:
        assert request.folder is not None
        held.append(_Held(FolderDestination(request.folder)))
        return held[-1]

    rig = make_rig(home, tmp_path, {"destinations": {Channel.FOLDER: destination}})
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(rig.send()))
    first.start()
    wait_until(lambda: bool(held) and held[0].writing.is_set(), 30, "the first send writing")

    with pytest.raises(SendError) as caught:
        rig.send()  # the same dossier while the first is being written
    # A second Sender (another window, another process) is refused the same way.
    ctx = home.context()
    with pytest.raises(SendError) as again:
        Sender(ctx.config, ctx.paths, ctx.queue, EventBus()).send(
            SendRequest(DOSSIER, Channel.FOLDER, rig.out))

    held[0].release.set()
    first.join(30)
    assert caught.value.code == again.value.code == "already-sending"
    assert caught.value.text == ("Dossier 8502182 is already being sent (from another window"
                                 " or command): wait for that send to end.")
    assert len(results) == 1
    assert len(os.listdir(rig.out)) == 1
    events = rig.events_of_sends()
    assert [type(e) for e in events].count(SendFinished) == 1
    assert [e.code for e in events if isinstance(e, SendFailed)] == ["already-sending"]


def test_an_unconfigured_dossier_points_to_dossier_add(home: Home, tmp_path: Path) -> None:
    ctx = home.context()
    sender = Sender(ctx.config, ctx.paths, ctx.queue, EventBus())
    with pytest.raises(SendError) as caught:
        sender.send(SendRequest("9999999", Channel.FOLDER, tmp_path))
    assert caught.value.code == "dossier-unknown"
    with pytest.raises(SendError) as caught:
        sender.send(SendRequest(DOSSIER, Channel.FOLDER, tmp_path))  # configured, no folder
    assert caught.value.code == "dossier-no-folder"
    assert caught.value.text == ('Dossier 8502182 has no folder to send: give it with passeur'
                                 ' dossier add 8502182 "GAEC LE GUYON" --folder FOLDER.')


def test_a_refusal_says_what_to_do_both_on_the_command_line_and_in_a_window(
        rig: Rig) -> None:
    with pytest.raises(SendError) as caught:
        rig.send(channel=Channel.EMAIL)  # e-mail not set up
    failed = [e for e in rig.events_of_sends() if isinstance(e, SendFailed)]
    assert [e.code for e in failed] == ["email-not-configured"]
    assert failed[0].message == caught.value.text
    assert "passeur config" in failed[0].message
    assert failed[0].in_window == ("E-mail is not set up yet: give the sending server and"
                                   " your address in Settings ▸ E-mail.")


def test_a_destination_that_refuses_the_size_leaves_nothing(home: Home,
                                                            tmp_path: Path) -> None:
    config_edit.set_email(home.root / "config.toml", smtp_host="127.0.0.1", smtp_port=9,
                          sender="ferme@example.org", accountant="comptable@cabinet.example")
    config_edit.set_send(home.root / "config.toml", email_max_mb=1)
    rig = make_rig(home, tmp_path)
    write_documents(rig.folder, {"scan.pdf": os.urandom(1_500_000)})
    with pytest.raises(SendError) as caught:
        rig.send(channel=Channel.EMAIL)
    assert caught.value.code == "email-too-large"
    events = rig.events_of_sends()
    assert [type(e) for e in events if not isinstance(e, SendProgress)] == [
        SendStarted, SendFailed]  # packed, then refused before a byte left
    assert staging_left(home) == []
    assert not (home.root / "data" / "sent").exists()
    assert rig.sender.choices(DOSSIER) is None  # only a success is remembered


def test_a_cancelled_send_leaves_nothing(rig: Rig) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(SendError) as caught:
        rig.sender.send(SendRequest(DOSSIER, Channel.FOLDER, rig.out), cancel)
    assert caught.value.code == "cancelled"
    assert os.listdir(rig.out) == []
    assert staging_left(rig.home) == []
    assert [type(e) for e in rig.events_of_sends()][-1] is SendFailed


# ---------------------------------------------------------------- e-mail, information


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with smtp_server(tmp_path / "smtp") as server:
        yield server


def email_rig(home: Home, tmp_path: Path, server: SmtpServer) -> Rig:
    config_edit.set_email(home.root / "config.toml", smtp_host=server.host,
                          smtp_port=server.port, user="ferme", sender="ferme@example.org",
                          accountant="comptable@cabinet.example", timeout_s=10,
                          ca_bundle=str(server.tls.ca_cert))
    passwords = SmtpPasswords(file_keyring(tmp_path / "keyring.cfg"))
    passwords.set("ferme", server.host, "motdepasse")
    return make_rig(home, tmp_path, {"smtp_passwords": passwords})


def test_an_e_mail_send_carries_the_very_bytes_packed(home: Home, tmp_path: Path,
                                                     smtp: SmtpServer) -> None:
    rig = email_rig(home, tmp_path, smtp)
    report = rig.send(channel=Channel.EMAIL, objective="Envoi pour bilan")
    [message] = smtp.received
    [(name, data)] = message.attachments().items()
    assert name == report.name
    assert hashlib.sha256(data).hexdigest() == report.sha256
    assert report.where == "comptable@cabinet.example"
    assert report.inform == ""
    assert staging_left(home) == []


def test_the_information_e_mail_follows_a_folder_send(home: Home, tmp_path: Path,
                                                      smtp: SmtpServer) -> None:
    rig = email_rig(home, tmp_path, smtp)
    report = rig.send(inform=True, objective="Envoi pour révision", comments="Bonne journée")
    [message] = smtp.received
    assert message.attachments() == {}
    assert report.name in message.text()
    assert "Bonne journée" in message.text()
    assert report.inform == "sent"
    assert report.inform_message == "comptable@cabinet.example"
    page = report_path(home.context().paths, report.name).read_text("utf-8")
    assert "sent to comptable@cabinet.example" in page


def test_a_failed_information_e_mail_does_not_undo_the_send(home: Home, tmp_path: Path,
                                                            smtp: SmtpServer) -> None:
    rig = email_rig(home, tmp_path, smtp)
    config_edit.set_email(home.root / "config.toml", accountant="personne@cabinet.example")
    wrong = SmtpPasswords(file_keyring(tmp_path / "keyring.cfg"))
    wrong.set("ferme", smtp.host, "pas le bon")
    ctx = home.context()
    rig.sender = Sender(ctx.config, ctx.paths, ctx.queue, rig.bus, smtp_passwords=wrong)

    report = rig.send(inform=True)

    assert (rig.out / report.name).exists()
    assert report.inform == "failed"
    assert "refused the login ferme" in report.inform_message
    finished = [e for e in rig.events_of_sends() if isinstance(e, SendFinished)]
    assert len(finished) == 1
    assert "The information e-mail could not be sent: " in finished[0].message
    assert [h.action for h in ctx.queue.history()][:2] == ["inform_failed", "sent"]


# ---------------------------------------------------------------- a web send left pending


class _FlakyWeb:
    """Stands in for the web destination (tested against nginx by its own tests): the first
    upload is cut, the next one takes the file and says which bytes it got."""

    channel = Channel.WEB

    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    def check(self, job_size: int) -> None:
        pass

    def send(self, job: SendJob, progress: Progress, cancel: threading.Event) -> Sent:
        self.log.append((job.name, hashlib.sha256(job.file.read_bytes()).hexdigest()))
        if len(self.log) == 1:
            raise SendError("interrupted", "The connection was lost.")
        return Sent("the accountant's web site (test)")


def test_a_cut_web_send_is_resumed_with_the_same_bytes(home: Home, tmp_path: Path) -> None:
    uploads: list[tuple[str, str]] = []
    rig = make_rig(home, tmp_path, {"destinations": {Channel.WEB: lambda r: _FlakyWeb(uploads)}})
    request = SendRequest(DOSSIER, Channel.WEB, objective="Envoi pour révision")
    with pytest.raises(SendError):
        rig.sender.send(request)
    pending = home.root / "data" / "send" / "pending" / DOSSIER
    assert (pending / uploads[0][0]).exists()  # kept for the next try

    report = rig.sender.send(request)

    assert uploads[1] == uploads[0]  # the very same file, name and bytes
    assert report.name == uploads[0][0]
    assert report.detail["resumed"] is True
    assert not pending.exists()
    started = [e.name for e in rig.events_of_sends() if isinstance(e, SendStarted)]
    assert started == [uploads[0][0]] * 2


def test_a_dossier_changed_since_the_cut_is_packed_again(home: Home, tmp_path: Path) -> None:
    uploads: list[tuple[str, str]] = []
    rig = make_rig(home, tmp_path, {"destinations": {Channel.WEB: lambda r: _FlakyWeb(uploads)}})
    request = SendRequest(DOSSIER, Channel.WEB)
    with pytest.raises(SendError):
        rig.sender.send(request)
    (rig.folder / "grand-livre.txt").write_bytes(b"ecriture;601;12,00\n")

    report = rig.sender.send(request)

    assert uploads[1][1] != uploads[0][1]
    assert report.detail["resumed"] is False
    pending = home.root / "data" / "send" / "pending" / DOSSIER
    assert not pending.exists()


# ---------------------------------------------------------------- the whole web way


def test_a_web_send_through_nginx_is_collected_and_its_receipt_reaches_the_report(
        home: Home, tmp_path: Path) -> None:
    user, password = "gaec-le-guyon", "mot de passe"
    server = Nginx(tmp_path / "nginx")
    server.add_user(DOSSIER, user, password)
    Repository(server.repo, home.key).refresh(DOSSIER)
    server.start()
    try:
        configure_web(home, server.base_url)
        store = CredentialStore(file_keyring(tmp_path / "keyring.cfg"))
        store.set(DOSSIER, Credential(BASIC, password, user))
        rig = make_rig(home, tmp_path, {"credentials": store})

        report = rig.sender.send(SendRequest(DOSSIER, Channel.WEB,
                                             objective="Envoi pour révision"))

        assert report.where == "the accountant's web site (127.0.0.1)"
        paths = home.context().paths
        assert "Not yet received by your accountant" in report_path(
            paths, report.name).read_text("utf-8")
        assert staging_left(home) == []  # sent: nothing kept pending
        inbox = tmp_path / "cabinet"
        collected = collect(server.repo, inbox, home.key)
        assert [o.name for o in collected.outcomes] == [report.name]
        assert hashlib.sha256((inbox / report.name).read_bytes()).hexdigest() == report.sha256

        poller = make_poller(home, credentials=store)
        try:
            assert poller.poll().ok
            poller.events.wait_for(ReceiptReceived)
        finally:
            poller.close()
        receipt = ReceiptStore(paths.data / "receipts").find(DOSSIER, report.name)
        assert receipt is not None
        page = add_receipt_to_report(paths, receipt)
        assert page is not None
        assert "Received by your accountant on " in page.read_text("utf-8")
    finally:
        server.stop()


# ---------------------------------------------------------------- the receipt


def test_the_receipt_is_added_to_the_report(rig: Rig) -> None:
    report = rig.send()
    paths = rig.home.context().paths
    wrong = Receipt(DOSSIER, report.name, "0" * 64, "2020-10-28T08:00:00Z")
    assert add_receipt_to_report(paths, wrong) is None  # other bytes: the report stays
    assert "Received by your accountant" not in report_path(paths, report.name).read_text()

    page = add_receipt_to_report(paths, Receipt(DOSSIER, report.name, report.sha256,
                                                "2020-10-28T08:00:00Z"))

    assert page == report_path(paths, report.name)
    text = page.read_text("utf-8")
    assert "Received by your accountant on 2020-10-28 " in text
    reread = load_report(paths, report.name)
    assert reread is not None
    assert reread.received_at == "2020-10-28T08:00:00Z"
    data = json.loads(page.with_suffix(".json").read_text("utf-8"))
    assert data["received_at"] == "2020-10-28T08:00:00Z"
    assert not [p for p in page.parent.iterdir() if p.name.endswith(".part")]


def test_french_words_of_the_report() -> None:
    # FR: passes once the lead merged daemon/locale/pending/send.po into the catalogue.
    fr = i18n.in_language
    assert fr("fr", "An exchange was generated and sent to your accountant") == (
        "Un échange est généré, et envoyé à votre technicien")
    assert fr("fr", "Received by your accountant on {when}") == (
        "Reçu par votre comptable le {when}")
    assert fr("fr", "Sending for revision") == "Envoi pour révision"
    assert fr("fr", "Close {app} before sending the dossier: it could be writing it.") == (
        "Fermez {app} avant d'envoyer le dossier : il pourrait être en train de l'écrire.")



def test_annuler_l_envoi_stops_a_send_whichever_front_end_started_it(
        home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    from daemon.core import Core

    backend = file_keyring(tmp_path / "kr.cfg")
    monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
    CredentialStore(backend).set(DOSSIER, Credential(BASIC, "secret", "gaec"))
    make_rig(home, tmp_path)
    configure_web(home, "http://127.0.0.1:9/passeur/")  # nobody listens: the line is down
    core = Core(home.context())
    seen = Recorder()
    core.bus.subscribe("test", seen, SendProgress)
    ended: list[str] = []

    def sent_through_the_control_channel() -> None:
        # As `passeur send` through the service: its own cancel, which the tray never sees.
        try:
            core.send(SendRequest(DOSSIER, Channel.WEB), threading.Event(), resume=True)
        except SendError as error:
            ended.append(error.code)

    send = threading.Thread(target=sent_through_the_control_channel)
    send.start()
    try:
        wait_until(lambda: any(getattr(e, "stage", "") == "waiting" for e in seen.events),
                   30, "the send waits for the line")
        assert core.cancel_sends() == 1  # the tray's *Annuler l'envoi*
        send.join(30)
        assert ended == ["cancelled"]
        assert core.cancel_sends() == 0
    finally:
        core.cancel_sends()
        send.join(30)
        core.bus.close()
