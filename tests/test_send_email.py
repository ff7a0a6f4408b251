"""*Email*: the `.wvz` attached, sent through a real aiosmtpd with STARTTLS (or implicit TLS)
and AUTH, verified TLS; refusals are clear and send nothing; the information e-mail."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from daemon import i18n
from daemon.config import EmailConfig
from daemon.send.base import Channel, Documents, SendError, SendJob, email_size
from daemon.send.email import (
    EmailDestination,
    Mailer,
    SmtpPasswords,
    dossier_message,
    send_information,
    trial_message,
)
from daemon.send.report import SendReport
from tests.faultserver import file_keyring
from tests.helpers import PARIS
from tests.smtpserver import SmtpServer, smtp_server

# Said by aiosmtpd for the test servers made without STARTTLS on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

NAME = "8502182-20201027171147.wvz"
FARMER, ACCOUNTANT = "ferme@example.org", "comptable@cabinet.example"


@pytest.fixture(autouse=True)
def _english() -> None:
    # French checks are marked "FR:" and pass once the lead merged daemon/locale/pending.
    i18n.setup("en")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SmtpServer]:
    with smtp_server(tmp_path / "smtp") as running:
        yield running


@pytest.fixture
def passwords(tmp_path: Path) -> SmtpPasswords:
    store = SmtpPasswords(file_keyring(tmp_path / "keyring.cfg"))
    store.set("ferme", "127.0.0.1", "motdepasse")
    return store


def settings_for(server: SmtpServer, **changes: object) -> EmailConfig:
    settings = EmailConfig(smtp_host=server.host, smtp_port=server.port, security="starttls",
                           user="ferme", sender=FARMER, accountant=ACCOUNTANT, timeout_s=10,
                           ca_bundle=server.tls.ca_cert)
    return replace(settings, **changes)  # type: ignore[arg-type]


def make_job(tmp_path: Path, size: int = 300_000) -> SendJob:
    path = tmp_path / "staging" / NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return SendJob("8502182", "GAEC LE GUYON", path, NAME, size,
                   hashlib.sha256(path.read_bytes()).hexdigest(),
                   objective="Envoi pour révision", comments="Factures de mars <incluses>")


def send(destination: EmailDestination, job: SendJob,
         cancel: threading.Event | None = None) -> list[tuple[int, int]]:
    seen: list[tuple[int, int]] = []
    destination.check(job.size)
    destination.send(job, lambda done, total: seen.append((done, total)),
                     cancel or threading.Event())
    return seen


# ---------------------------------------------------------------- the dossier arrives


def test_the_dossier_arrives_attached_byte_identical_over_starttls(
        server: SmtpServer, passwords: SmtpPasswords, tmp_path: Path) -> None:
    job = make_job(tmp_path)
    destination = EmailDestination(settings_for(server), passwords, max_mb=20)

    progress = send(destination, job)

    [message] = server.received
    assert message.sender == FARMER
    assert message.recipients == (ACCOUNTANT,)
    assert message.attachments() == {NAME: job.file.read_bytes()}
    part = next(message.message.iter_attachments())
    assert part.get_content_type() == "application/octet-stream"
    text = message.text()
    assert "8502182 - GAEC LE GUYON" in text
    assert NAME in text
    assert "Objective of the exchange: Envoi pour révision" in text
    assert "Comments: Factures de mars <incluses>" in text
    assert message.message["Subject"] == f"Dossier 8502182 - GAEC LE GUYON: {NAME}"
    assert server.counters.starttls == 1
    assert server.counters.auth == 1
    assert progress[-1][0] == progress[-1][1] == len(message.data)
    assert len(progress) > 3  # the DATA went in chunks, each one told


def test_the_dossier_arrives_over_implicit_tls(tmp_path: Path,
                                               passwords: SmtpPasswords) -> None:
    with smtp_server(tmp_path / "smtp", implicit_tls=True) as server:
        job = make_job(tmp_path)
        settings = settings_for(server, security="tls")
        send(EmailDestination(settings, passwords), job)
        [message] = server.received
        assert message.attachments() == {NAME: job.file.read_bytes()}
        assert server.counters.starttls == 0
        assert server.counters.auth == 1


def test_the_estimate_is_never_below_the_real_message(tmp_path: Path) -> None:
    settings = EmailConfig(smtp_host="127.0.0.1", sender=FARMER, accountant=ACCOUNTANT)
    for size in (0, 1, 56, 57, 58, 100_000, 1_234_567):
        job = make_job(tmp_path, size)
        real = len(dossier_message(settings, job, ACCOUNTANT).as_bytes())
        assert real <= email_size(size) <= real + 20_000


# ---------------------------------------------------------------- refusals send nothing


def test_a_refused_login_is_clear_and_sends_nothing(server: SmtpServer, tmp_path: Path) -> None:
    wrong = SmtpPasswords(file_keyring(tmp_path / "keyring.cfg"))
    wrong.set("ferme", "127.0.0.1", "pas le bon")
    destination = EmailDestination(settings_for(server), wrong)

    with pytest.raises(SendError) as caught:
        send(destination, make_job(tmp_path))

    assert caught.value.code == "email-login-refused"
    assert caught.value.text.startswith(
        f"The e-mail server 127.0.0.1:{server.port} refused the login ferme (535")
    assert "nothing was sent" in caught.value.text
    assert "passeur email login" in caught.value.text
    assert server.counters.auth >= 1  # smtplib tries each mechanism the server offers
    assert server.counters.mail == server.counters.data == 0
    assert server.received == []


def test_an_oversized_dossier_is_refused_before_connecting(server: SmtpServer,
                                                          passwords: SmtpPasswords,
                                                          tmp_path: Path) -> None:
    job = make_job(tmp_path, 1_600_000)  # about 2.2 MB once encoded
    destination = EmailDestination(settings_for(server), passwords, max_mb=2)

    with pytest.raises(SendError) as caught:
        destination.check(job.size)

    assert caught.value.code == "email-too-large"
    assert caught.value.text == (
        "The dossier makes an e-mail of 2.2 MB, more than the 2.0 MB that mail servers"
        " commonly accept ([send] email_max_mb): it was not sent. Send it on a USB key"
        " (--to folder) or through your accountant's site (--to web) instead.")
    assert server.counters.ehlo == 0  # not even a connection
    # And were check skipped, send itself refuses before a byte leaves.
    with pytest.raises(SendError) as again:
        destination.send(job, lambda done, total: None, threading.Event())
    assert again.value.code == "email-too-large"
    assert server.counters.ehlo == 0


def test_a_refused_recipient_is_clear_and_sends_nothing(tmp_path: Path,
                                                       passwords: SmtpPasswords) -> None:
    with smtp_server(tmp_path / "smtp", refused=frozenset({ACCOUNTANT})) as server:
        destination = EmailDestination(settings_for(server), passwords)
        with pytest.raises(SendError) as caught:
            send(destination, make_job(tmp_path))
        assert caught.value.code == "email-recipient-refused"
        assert caught.value.text.startswith(
            f"The e-mail server refused the address {ACCOUNTANT} (550 5.1.1")
        assert server.counters.data == 0
        assert server.received == []


def test_a_certificate_that_is_not_trusted_stops_before_the_password(
        server: SmtpServer, passwords: SmtpPasswords, tmp_path: Path) -> None:
    destination = EmailDestination(settings_for(server, ca_bundle=None), passwords)
    with pytest.raises(SendError) as caught:
        send(destination, make_job(tmp_path))
    assert caught.value.code == "email-certificate"
    assert "could not prove who it is" in caught.value.text
    assert server.counters.auth == 0
    assert server.received == []


def test_a_server_without_starttls_gets_no_password(tmp_path: Path,
                                                   passwords: SmtpPasswords) -> None:
    with smtp_server(tmp_path / "smtp", starttls=False) as server:
        with pytest.raises(SendError) as caught:
            send(EmailDestination(settings_for(server), passwords), make_job(tmp_path))
        assert caught.value.code == "email-no-starttls"
        assert 'set security = "tls"' in caught.value.text
        assert server.counters.auth == 0
        assert server.counters.mail == 0


def test_a_server_that_never_answers_is_a_timeout(tmp_path: Path,
                                                  passwords: SmtpPasswords) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        settings = EmailConfig(smtp_host="127.0.0.1", smtp_port=silent.getsockname()[1],
                               user="ferme", sender=FARMER, accountant=ACCOUNTANT,
                               timeout_s=1)
        with pytest.raises(SendError) as caught:
            send(EmailDestination(settings, passwords), make_job(tmp_path))
    assert caught.value.code == "email-timeout"
    assert caught.value.text.startswith("The e-mail server 127.0.0.1:")
    assert "did not answer in time: nothing was sent" in caught.value.text


def test_a_closed_port_is_unreachable(tmp_path: Path, passwords: SmtpPasswords) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]  # bound, not listening: connections are refused
        settings = EmailConfig(smtp_host="127.0.0.1", smtp_port=port, user="ferme",
                               sender=FARMER, accountant=ACCOUNTANT, timeout_s=5)
        with pytest.raises(SendError) as caught:
            send(EmailDestination(settings, passwords), make_job(tmp_path))
    assert caught.value.code == "email-unreachable"
    assert "cannot be reached" in caught.value.text


def test_cancelling_mid_message_sends_nothing(server: SmtpServer, passwords: SmtpPasswords,
                                              tmp_path: Path) -> None:
    job = make_job(tmp_path, 3_000_000)
    cancel = threading.Event()
    destination = EmailDestination(settings_for(server), passwords)

    def progress(done: int, total: int) -> None:
        if done > total // 3:
            cancel.set()
            threading.Event().wait(0.5)  # the watchdog cuts the connection meanwhile

    destination.check(job.size)
    with pytest.raises(SendError) as caught:
        destination.send(job, progress, cancel)
    assert caught.value.code == "cancelled"
    assert server.counters.data == 1  # DATA had begun: the server dropped the half message
    assert server.received == []


def test_e_mail_not_set_up_or_without_password_is_said_before_anything(
        passwords: SmtpPasswords, tmp_path: Path) -> None:
    empty = SmtpPasswords(file_keyring(tmp_path / "empty.cfg"))
    with pytest.raises(SendError) as caught:
        EmailDestination(EmailConfig(), empty).check(100)
    assert caught.value.code == "email-not-configured"
    settings = EmailConfig(smtp_host="127.0.0.1", user="ferme", sender=FARMER,
                           accountant=ACCOUNTANT)
    with pytest.raises(SendError) as caught:
        EmailDestination(settings, empty).check(100)
    assert caught.value.code == "email-login-missing"
    assert caught.value.text == ("No password is stored for the e-mail account ferme on"
                                 " 127.0.0.1: store it with passeur email login.")
    with pytest.raises(SendError) as caught:
        EmailDestination(replace(settings, accountant=""), passwords).check(100)
    assert caught.value.code == "email-no-recipient"


# ---------------------------------------------------------------- information and test


def make_report(channel: Channel = Channel.WEB) -> SendReport:
    start = datetime(2020, 10, 27, 17, 11, 47, tzinfo=PARIS)
    return SendReport("8502182", "GAEC LE GUYON", NAME, channel,
                      "the accountant's web site (echanges.cabinet.example)", 2_345_678,
                      "ab" * 32, 12, 9_000_000, Documents.CHANGED, ("vieux.pdf",),
                      "Envoi pour révision", "Avec les factures", start,
                      start + timedelta(seconds=65))


def test_the_information_e_mail_names_the_dossier_file_size_objective_and_comments(
        server: SmtpServer, passwords: SmtpPasswords) -> None:
    address = send_information(settings_for(server), make_report(), passwords)

    assert address == ACCOUNTANT
    [message] = server.received
    assert message.recipients == (ACCOUNTANT,)
    assert message.attachments() == {}
    assert message.message["Subject"] == f"Dossier 8502182 - GAEC LE GUYON sent: {NAME}"
    text = message.text()
    assert (f"Dossier 8502182 - GAEC LE GUYON was sent to you (Web synchronisation with your"
            f" accountant): file {NAME}, 2.3 MB.") in text
    assert "Objective of the exchange: Envoi pour révision" in text
    assert "Comments: Avec les factures" in text


def test_the_trial_message_goes_to_the_farmer(server: SmtpServer,
                                              passwords: SmtpPasswords) -> None:
    settings = settings_for(server)
    size = Mailer(settings, passwords).deliver(trial_message(settings))
    [message] = server.received
    assert message.recipients == (FARMER,)
    assert size == len(message.data)
