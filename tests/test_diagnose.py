"""`passeur diagnose`: the support archive holds what support needs and nothing secret or
personal — checked on every byte of every member, decompressed, and of the zip itself."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from daemon.cli import COMMANDS_WITHOUT_CONFIG
from daemon.context import Context
from daemon.keys import SigningKey
from daemon.logs import LOG_NAME
from daemon.support import redact
from daemon.support.diagnose import PREFIX, build_archive, default_folder, log_members
from tests.faultserver import keyring_env
from tests.helpers import DOSSIER, Home, make_home

USER = "jmartin"
PASSWORD = "Tr0mpette-du-GAEC"
TOKEN = "tok-7c1d9e55a0b34f2e"
URL_PASSWORD = "url-pw-31415"
OTHER_DOSSIER = "8502183"
LINE = "2020-10-27T17:20:21.000+01:00 INFO passeur.web: "


@pytest.fixture(autouse=True)
def _no_secret_left() -> Iterator[None]:
    yield
    redact.forget_secrets()


def read_members(path: Path) -> dict[str, str]:
    """Every member decompressed (and checked against its CRC) as strict UTF-8."""
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def passeur(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, input=stdin,
                          text=True, capture_output=True, timeout=60, check=False)


def test_the_archive_holds_the_parts_and_no_secret_nor_personal_detail(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    user_home = tmp_path / "Users" / USER
    farm = make_home(user_home / "passeur", signing_key)
    config = farm.root / "config.toml"
    config.write_text(config.read_text() + f"""
# the password of the site, noted here by mistake: {PASSWORD}
[[dossiers]]
number = "{OTHER_DOSSIER}"
name = "EARL DU TEST"

[sources.web]
url = "https://gaec:{URL_PASSWORD}@127.0.0.1:8443/echanges/"
""")
    env = farm.env | keyring_env(tmp_path / "xdg") | {
        "HOME": str(user_home), "USER": USER, "LOGNAME": USER}
    # The secrets are stored as a user stores them: with `passeur login`.
    for args, secret in (((DOSSIER, "--user", "gaec"), PASSWORD), ((OTHER_DOSSIER, "--token"),
                                                                     TOKEN)):
        login = passeur(env, "login", *args, "--password-stdin", "--no-check",
                        stdin=secret + "\n")
        assert login.returncode == 0, login.stderr
    update = farm.update(1)
    downloads = user_home / "Téléchargements"
    downloads.mkdir()
    refused = downloads / "8502182-20201027190000.wwz"
    refused.write_bytes(b"not an exchange file")
    imported = passeur(env, "import", str(update), str(refused))
    assert imported.returncode == 1, imported.stderr  # one queued, one refused
    # Log lines written by an older passeur, before any secret was known to it.
    logs = farm.root / "logs"
    logs.mkdir(exist_ok=True)
    (logs / f"{LOG_NAME}.1").write_text(f"{LINE}login with {PASSWORD}\n", "utf-8")
    (logs / LOG_NAME).write_text("".join(f"{LINE}{text}\n" for text in (
        f"GET https://gaec:{URL_PASSWORD}@127.0.0.1:8443/echanges/{DOSSIER}/index.json",
        f"refused with password {PASSWORD}",
        f"Authorization: Bearer {TOKEN}",
        f"the token {TOKEN} alone",
        f"watching {downloads} for {USER}",
        f"{update.name} received and queued",
    )), "utf-8")
    support = tmp_path / "support"

    result = passeur(env, "diagnose", "--out", str(support))

    assert result.returncode == 0, result.stderr
    [archive] = support.iterdir()
    assert archive.name.startswith(PREFIX)
    assert archive.suffix == ".zip"
    assert str(archive) in result.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    members = read_members(archive)
    assert set(members) == {"versions.txt", "config.toml", "status.json", "queue.txt",
                            f"logs/{LOG_NAME}", f"logs/{LOG_NAME}.1"}
    raw = archive.read_bytes()
    for forbidden in (PASSWORD, TOKEN, URL_PASSWORD, str(user_home), USER):
        assert forbidden.encode() not in raw, forbidden
        for name, text in members.items():
            assert forbidden.lower() not in name.lower(), (forbidden, name)
            assert forbidden.lower() not in text.lower(), (forbidden, name)
    # No exchange file, no key, no keyring content: only the texts built for the archive.
    assert "-----BEGIN" not in "".join(members.values())
    assert b"PK\x03\x04" not in b"".join(m.encode() for m in members.values())

    assert members["versions.txt"].startswith("passeur ")
    assert "\nPython 3." in members["versions.txt"]
    assert "  cryptography " in members["versions.txt"]
    config_text = members["config.toml"]
    assert 'url = "https://***@127.0.0.1:8443/echanges/"' in config_text
    assert 'inbox = "~/passeur/inbox"' in config_text
    assert "noted here by mistake: ***" in config_text
    status = json.loads(members["status.json"])
    assert status["config"]["valid"] is True
    assert status["config"]["dossiers"] == [DOSSIER, OTHER_DOSSIER]
    assert status["queue"]["waiting"] == 1
    assert status["queue"]["by_state"] == {"rejected": 1, "waiting": 1}
    assert status["quarantine_notes"] == 1
    assert status["folders"]["logs"]["path"] == "~/passeur/logs"
    assert status["autostart"]["enabled"] is False
    assert status["service"] is None  # none runs
    queue_text = members["queue.txt"]
    assert update.name in queue_text
    assert refused.name in queue_text
    assert "not-zip" in queue_text
    log_text = members[f"logs/{LOG_NAME}"]
    assert "GET https://***@127.0.0.1:8443/echanges/8502182/index.json" in log_text
    assert "refused with password ***" in log_text
    assert "Authorization: ***" in log_text
    assert "watching ~/Téléchargements for " in log_text
    assert f"{update.name} received and queued" in log_text
    assert members[f"logs/{LOG_NAME}.1"].endswith("login with ***\n")


def test_a_configuration_that_is_not_toml_is_shown_redacted_with_why(tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    (root / "config.toml").write_text(
        'language = "fr"\n[sources.web\nurl = "https://gaec:pw-123456@h.example/"\n'
        'token = """\ntok-abcdef123\n"""\nsmtp_password = \'pw-smtp-42\'\nname = "kept"\n')
    archive = build_archive(Context(root), tmp_path / "out")
    members = read_members(archive)
    config = members["config.toml"]
    first = config.splitlines()[0]
    assert first.startswith("# ")
    assert "TOML" in first
    for secret in ("pw-123456", "tok-abcdef123", "pw-smtp-42"):
        assert secret not in "".join(members.values()), secret
    assert 'url = "https://***@h.example/"' in config
    assert 'token = "***"' in config
    assert 'smtp_password = "***"' in config
    assert 'name = "kept"' in config
    status = json.loads(members["status.json"])
    assert status["config"]["valid"] is False
    assert "TOML" in status["config"]["error"]


def test_a_refused_configuration_keeps_its_comments_and_says_which_key(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    home = make_home(tmp_path / "home", signing_key)
    config = home.root / "config.toml"
    config.write_text(config.read_text().replace('language = "fr"', 'language = "de"') + """
[smtp]  # the e-mail account
password = "pw-smtp-777"  # to be moved to the keyring
tokens = [
  "tok-one-111",
  "tok-two-222",
]
""")
    members = read_members(build_archive(Context(home.root), tmp_path / "out"))
    config_text = members["config.toml"]
    assert "language" in config_text.splitlines()[0]
    assert 'password = "***"  # to be moved to the keyring' in config_text
    assert "[smtp]  # the e-mail account" in config_text
    for secret in ("pw-smtp-777", "tok-one-111", "tok-two-222"):
        assert secret not in "".join(members.values()), secret


def test_logs_are_capped_newest_first_at_line_starts(tmp_path: Path) -> None:
    for suffix, tag in (("", "new"), (".1", "mid"), (".2", "old")):
        (tmp_path / f"{LOG_NAME}{suffix}").write_text(
            "".join(f"{tag} line {n:03d}\n" for n in range(50)))  # 650 bytes each
    members = log_members(tmp_path, budget=1000)
    assert list(members) == [f"logs/{LOG_NAME}", f"logs/{LOG_NAME}.1"]
    assert members[f"logs/{LOG_NAME}"].count("\n") == 50
    middle = members[f"logs/{LOG_NAME}.1"]
    assert middle.startswith("mid line ")
    assert middle.endswith("mid line 049\n")
    assert sum(len(text) for text in members.values()) <= 1000


def test_the_archive_goes_to_the_desktop_else_downloads_else_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_home = tmp_path / "user"
    here = tmp_path / "here"
    for folder in (user_home / ".config", here):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(user_home / ".config"))
    monkeypatch.chdir(here)
    assert default_folder() == here
    (user_home / "Downloads").mkdir()
    assert default_folder() == user_home / "Downloads"
    (user_home / "Desktop").mkdir()
    assert default_folder() == user_home / "Desktop"


def test_two_archives_in_one_second_both_stay_and_nothing_half_written_is_left(
    home: Home, tmp_path: Path
) -> None:
    now = datetime(2020, 10, 27, 17, 20, 21).astimezone()
    out = tmp_path / "out"
    first = build_archive(home.context(), out, now)
    second = build_archive(home.context(), out, now)
    assert first.name == f"{PREFIX}20201027-172021.zip"
    assert second.name == f"{PREFIX}20201027-172021-2.zip"
    assert set(os.listdir(out)) == {first.name, second.name}  # no temporary file left
    assert read_members(first).keys() == read_members(second).keys()


def test_an_archive_that_cannot_be_written_is_one_sentence(home: Home, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    result = home.passeur("diagnose", "--out", str(blocked / "inside"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert str(blocked / "inside") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.xfail("diagnose" not in COMMANDS_WITHOUT_CONFIG, strict=True,
                   reason="PENDING in daemon/cli.py (the lead's): 'log' and 'diagnose' in "
                          "COMMANDS_WITHOUT_CONFIG, so that a broken configuration reaches them")
def test_diagnose_and_log_work_with_a_broken_configuration(home: Home, tmp_path: Path) -> None:
    (home.root / "config.toml").write_text('language = "fr"\n[sources.web\ntoken = "tok-9z9z9z"\n')
    (home.root / "logs").mkdir()
    (home.root / "logs" / LOG_NAME).write_text(f"{LINE}the last words\n")
    shown = home.passeur("log")
    assert shown.returncode == 0, shown.stderr
    assert "the last words" in shown.stdout
    result = home.passeur("diagnose", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    [archive] = (tmp_path / "out").iterdir()
    members = read_members(archive)
    assert "TOML" in members["config.toml"].splitlines()[0]
    assert "tok-9z9z9z" not in "".join(members.values())


@pytest.mark.parametrize(("text", "expected"), [
    ("/home/jmartin/passeur/config.toml", "~/passeur/config.toml"),
    ('inbox = "/home/jmartin"', 'inbox = "~"'),
    ("/home/jmartinez/x", "/home/jmartinez/x"),  # another user, another home
    ("JMartin a écrit", "<user> a écrit"),
    ("jmartin.log, jmartin_2, ajmartin", "<user>.log, <user>_2, ajmartin"),
    (r"C:\\Users\\jmartin\\x", r"C:\\Users\\<user>\\x"),
])
def test_personal_details_are_replaced_where_they_stand_as_words(text: str,
                                                                 expected: str) -> None:
    import daemon.i18n

    daemon.i18n.setup("en")
    assert redact.Personal("/home/jmartin", USER).redact(text) == expected


def test_a_short_user_name_is_left_but_the_home_still_goes() -> None:
    assert redact.Personal("/home/jo", "jo").redact("/home/jo/x jo") == "~/x jo"
