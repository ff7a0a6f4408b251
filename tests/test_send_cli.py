"""`passeur send` and `passeur email login|test`: through daemon.cli.main, and as the real
command (a terminal's progress line, Ctrl-C, the keyring) with aiosmtpd and the stand-in
application."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from daemon import config_edit, i18n
from daemon.cli import main
from daemon.fsutil import sha256_file
from daemon.keys import SigningKey
from daemon.web.collect import collect
from tests.fat import wait_until
from tests.faultserver import keyring_env
from tests.helpers import DOSSIER, DOSSIER_NAME, Home, make_home
from tests.smtpserver import smtp_server
from tests.test_delivery import make_app_home
from tests.uploads import web_site

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@pytest.fixture(autouse=True)
def _english() -> None:
    i18n.setup("en")


def in_english(home: Home) -> Home:
    """Make the home's config ask for English (French checks are marked "FR:")."""
    config = home.root / "config.toml"
    config.write_text(config.read_text().replace('language = "fr"', 'language = "en"'))
    return home


def with_dossier_folder(home: Home, tmp_path: Path) -> tuple[Path, Path]:
    """Give the dossier a folder with documents; return it and a destination folder."""
    folder = tmp_path / "dossier"
    (folder / "factures").mkdir(parents=True)
    (folder / "grand-livre.txt").write_text("ecriture;512;100,00\n" * 100)
    (folder / "factures" / "mars.pdf").write_bytes(os.urandom(20_000))
    config_edit.add_dossier(home.root / "config.toml", DOSSIER, DOSSIER_NAME, str(folder))
    out = tmp_path / "CLE"
    out.mkdir()
    return folder, out


@pytest.fixture
def english_home(tmp_path: Path, signing_key: SigningKey) -> Home:
    return in_english(make_home(tmp_path / "home", signing_key))


def passeur(home: Home, *args: str) -> int:
    return main(["--home", str(home.root), *args])


# ---------------------------------------------------------------- daemon.cli.main


def test_send_to_a_folder_prints_the_report(english_home: Home, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    _folder, out = with_dossier_folder(english_home, tmp_path)

    code = passeur(english_home, "send", DOSSIER, "--to", "folder", str(out),
                   "--comments", "Avec les factures")

    printed = capsys.readouterr()
    assert code == 0, printed.err
    [name] = os.listdir(out)
    lines = printed.out.splitlines()
    assert f"File: {name}" in lines
    assert "Objective of the exchange: Sending for revision" in lines  # [send] objectives[0]
    assert "Comments: Avec les factures" in lines
    assert "Associated documents: All the documents" in lines
    assert lines[-1] == "An exchange was generated and sent to your accountant"
    assert printed.err == ""  # no terminal: no progress line


def test_send_json_and_the_remembered_choices(english_home: Home, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder, out = with_dossier_folder(english_home, tmp_path)
    assert passeur(english_home, "send", DOSSIER, "--to", "folder", str(out),
                   "--objective", "Envoi pour bilan", "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ok"] is True
    assert first["channel"] == "folder"
    assert first["documents"] == 2
    assert first["objective"] == "Envoi pour bilan"
    assert first["mode"] == "all"
    assert Path(first["report_file"]).is_file()
    (folder / "grand-livre.txt").write_text("ecriture;411;5,00\n")

    # The same choices again, only the documents mode said: folder and objective repeat.
    assert passeur(english_home, "send", DOSSIER, "--documents", "changed", "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert second["channel"] == "folder"
    assert second["objective"] == "Envoi pour bilan"
    assert second["mode"] == "changed"
    assert second["documents"] == 1
    assert sorted(os.listdir(out)) == sorted([first["name"], second["name"]])

    assert passeur(english_home, "journal") == 0
    journal = capsys.readouterr().out
    assert f"{second['name']} sent to the folder {out} (1 document, " in journal


def test_send_without_a_destination_asks_for_one(english_home: Home, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with_dossier_folder(english_home, tmp_path)
    assert passeur(english_home, "send", DOSSIER) == 2
    assert capsys.readouterr().err == (
        f"Say where to send dossier {DOSSIER}: --to web, --to folder FOLDER or --to email"
        " (next time, the same choice is the default).\n")


def test_send_usage_and_configuration_errors(english_home: Home, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        passeur(english_home, "send", DOSSIER, "--to", "web", "/tmp")
    assert usage.value.code == 2
    assert "--to web: unexpected /tmp" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        passeur(english_home, "send", DOSSIER, "--to", "pigeon")
    assert usage.value.code == 2
    assert "--to: expected web, folder or email, not pigeon" in capsys.readouterr().err

    assert passeur(english_home, "send", DOSSIER, "--to", "folder", str(tmp_path)) == 3
    assert "passeur dossier add 8502182" in capsys.readouterr().err  # the dossier has no folder
    assert passeur(english_home, "send", "9999999", "--to", "folder", str(tmp_path),
                   "--json") == 3
    refused = json.loads(capsys.readouterr().out)
    assert refused == {"ok": False, "dossier": "9999999", "code": "dossier-unknown",
                       "message": refused["message"]}
    with_dossier_folder(english_home, tmp_path)
    assert passeur(english_home, "send", DOSSIER, "--to", "email") == 3
    assert "E-mail is not set up" in capsys.readouterr().err


def test_send_while_the_application_runs_exits_4(tmp_path: Path, signing_key: SigningKey,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    home, app = make_app_home(tmp_path / "app", signing_key)
    in_english(home)
    _folder, out = with_dossier_folder(home, tmp_path)
    with app.running():
        code = passeur(home, "send", DOSSIER, "--to", "folder", str(out))
    assert code == 4
    assert capsys.readouterr().err == (
        "Close Isacompta before sending the dossier: it could be writing it.\n")
    assert os.listdir(out) == []


# ---------------------------------------------------------------- the real command


def run(home: Home, *args: str, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args],
                          env={**home.env, **(env or {})}, text=True, capture_output=True,
                          input=stdin, timeout=120)


def test_a_terminal_sees_one_progress_line(english_home: Home, tmp_path: Path) -> None:
    _folder, out = with_dossier_folder(english_home, tmp_path)
    main_fd, terminal = pty.openpty()
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(main_fd, 4096)
            except OSError:  # the terminal's other side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    process = subprocess.run([sys.executable, "-m", "daemon.cli", "send", DOSSIER, "--to",
                              "folder", str(out)], env=english_home.env, stderr=terminal,
                             stdout=subprocess.PIPE, text=True, timeout=120)
    os.close(terminal)
    reader.join(10)
    os.close(main_fd)
    assert process.returncode == 0
    shown = b"".join(chunks).decode()
    assert "\r" in shown
    assert "Packing " in shown
    assert "Sending " in shown
    assert "[########################] 100 %" in shown
    assert shown.count("\n") <= 2  # one line rewritten in place, then its end
    assert "An exchange was generated" in process.stdout


def test_ctrl_c_stops_the_send_cleanly(english_home: Home, tmp_path: Path) -> None:
    with_dossier_folder(english_home, tmp_path)
    with socket.socket() as silent:  # an SMTP server that takes the connection, then says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.settimeout(60)
        config_edit.set_email(english_home.root / "config.toml", smtp_host="127.0.0.1",
                              smtp_port=silent.getsockname()[1], sender="ferme@example.org",
                              accountant="comptable@cabinet.example", timeout_s=60)
        process = subprocess.Popen([sys.executable, "-m", "daemon.cli", "send", DOSSIER,
                                    "--to", "email"], env=english_home.env, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        connection, _address = silent.accept()  # packed, and now waiting for the greeting
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _stdout, stderr = process.communicate(timeout=30)
        connection.close()
    assert process.returncode == 130, stderr
    assert "Cancelling" in stderr
    assert "nothing was sent" in stderr
    send = english_home.root / "data" / "send"
    assert list((send / "staging").iterdir()) == []
    assert not (english_home.root / "data" / "sent").exists()
    ctx = english_home.context()
    [failed] = [h for h in ctx.queue.history() if h.action == "send_failed"]
    assert failed.detail["code"] == "cancelled"


def test_passeur_send_killed_mid_upload_resumes_with_the_same_bytes(
        english_home: Home, tmp_path: Path) -> None:
    home = english_home
    folder, _out = with_dossier_folder(home, tmp_path)
    (folder / "scans.pdf").write_bytes(os.urandom(17 << 20))  # three 8 MiB parts
    with web_site(home, tmp_path, max_kbps=8000) as (server, keyrings):  # about 2 s
        argv = [sys.executable, "-m", "daemon.cli", "send", DOSSIER, "--to", "web", "--json"]
        first = subprocess.Popen(argv, env={**home.env, **keyrings}, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        notes = home.root / "data" / "send" / "web"
        wait_until(lambda: any(_acknowledged(note) >= 1 for note in notes.glob("*.json"))
                   or first.poll() is not None, 60, "the first part acknowledged")
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
        assert first.returncode == -signal.SIGKILL
        pending = home.root / "data" / "send" / "pending" / DOSSIER
        [kept] = pending.glob("*.wvz")

        again = run(home, "send", DOSSIER, "--to", "web", "--json", env=keyrings)

        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["name"] == kept.name
        assert report["detail"]["resumed"] is True
        assert not pending.exists()
        inbox = tmp_path / "cabinet"
        collected = collect(server.repo, inbox, home.key)
        assert [o.name for o in collected.outcomes] == [kept.name]
        assert sha256_file(inbox / kept.name) == report["sha256"]
        puts: dict[str, int] = {}
        for path, _status in server.requests("PUT", "/part-"):
            puts[path] = puts.get(path, 0) + 1
        assert len(puts) == 3
        assert sum(puts.values()) <= 4  # at most the part in flight was sent again


def _acknowledged(note: Path) -> int:
    try:
        return len(json.loads(note.read_bytes())["parts"])
    except (OSError, ValueError, KeyError):
        return 0


def test_email_login_then_test_through_a_real_server(english_home: Home,
                                                     tmp_path: Path) -> None:
    keyrings = keyring_env(tmp_path / "xdg")
    with smtp_server(tmp_path / "smtp") as server:
        config_edit.set_email(english_home.root / "config.toml", smtp_host=server.host,
                              smtp_port=server.port, user="ferme", sender="ferme@example.org",
                              accountant="comptable@cabinet.example", timeout_s=10,
                              ca_bundle=str(server.tls.ca_cert))
        missing = run(english_home, "email", "test", env=keyrings)
        assert missing.returncode == 3
        assert "store it with passeur email login" in missing.stderr

        wrong = run(english_home, "email", "login", "--password-stdin", env=keyrings,
                    stdin="pas le bon\n")
        assert wrong.returncode == 0, wrong.stderr
        refused = run(english_home, "email", "test", "--json", env=keyrings)
        assert refused.returncode == 1
        assert json.loads(refused.stdout)["code"] == "email-login-refused"
        assert server.received == []

        stored = run(english_home, "email", "login", "--password-stdin", env=keyrings,
                     stdin="motdepasse\n")
        assert stored.returncode == 0
        assert "motdepasse" not in (english_home.root / "config.toml").read_text()
        tested = run(english_home, "email", "test", env=keyrings)
        assert tested.returncode == 0, tested.stderr
        assert tested.stdout == (f"A test message was sent to ferme@example.org through"
                                 f" 127.0.0.1:{server.port}: e-mail works.\n")
        [message] = server.received
        assert message.recipients == ("ferme@example.org",)

        forgotten = run(english_home, "email", "login", "--remove", env=keyrings)
        assert forgotten.stdout == "The e-mail password of ferme on 127.0.0.1 was forgotten\n"


def test_plain_smtp_is_refused_for_a_server_elsewhere(english_home: Home) -> None:
    config = english_home.root / "config.toml"
    config.write_text(config.read_text() + '\n[email]\nsmtp_host = "smtp.example.org"\n'
                      'security = "none"\n')
    result = run(english_home, "email", "test")
    assert result.returncode == 3
    # The configuration cannot be read, so its `language` is not known: French, the default.
    assert "accepté que pour un serveur sur cet ordinateur (localhost)" in result.stderr


def test_french_words_of_send(tmp_path: Path, signing_key: SigningKey,
                              capsys: pytest.CaptureFixture[str]) -> None:
    # FR: passes once the lead merged daemon/locale/pending/send.po into the catalogue.
    home = make_home(tmp_path / "fr", signing_key)  # language = "fr"
    with_dossier_folder(home, tmp_path)
    assert passeur(home, "send", DOSSIER) == 2
    assert capsys.readouterr().err.startswith(f"Dites où envoyer le dossier {DOSSIER} : ")
