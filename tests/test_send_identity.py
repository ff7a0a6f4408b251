"""The installation's own key: made once, private, one for every process; `passeur identity`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import cli, i18n
from daemon.keys import SigningKey
from daemon.send.base import SendError
from daemon.send.identity import installation_key, installation_public_key, key_path

ROOT = Path(__file__).resolve().parents[1]


def test_the_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key = installation_key(data)
    path = key_path(data)
    assert path == data / "identity.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert data.stat().st_mode & 0o777 == 0o700
    assert installation_public_key(data) == key.public
    assert installation_key(data).public == key.public
    assert SigningKey.load(path).public == key.public
    # Nothing but the key and the lock beside it: no temporary file left.
    assert sorted(p.name for p in data.iterdir()) == ["identity.key", "identity.lock"]


def test_processes_asking_at_once_for_the_first_time_get_one_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    go = tmp_path / "go"
    script = (
        "import sys, time, pathlib\n"
        "from daemon.send.identity import installation_public_key\n"
        "go = pathlib.Path(sys.argv[2])\n"
        "while not go.exists(): time.sleep(0.001)\n"
        "print(installation_public_key(pathlib.Path(sys.argv[1])).key_id)\n"
    )
    children = [subprocess.Popen([sys.executable, "-c", script, str(data), str(go)],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
                for _ in range(6)]
    go.touch()
    ids = {child.communicate(timeout=60)[0].strip() for child in children}
    assert all(child.returncode == 0 for child in children)
    assert ids == {installation_public_key(data).key_id}


def test_a_damaged_key_is_an_error_never_replaced(tmp_path: Path) -> None:
    i18n.setup("en")
    data = tmp_path / "data"
    data.mkdir()
    key_path(data).write_bytes(b"not a key")
    with pytest.raises(SendError) as failure:
        installation_key(data)
    assert failure.value.code == "identity"
    assert str(key_path(data)) in failure.value.text
    assert "restore it from a backup" in failure.value.text
    assert key_path(data).read_bytes() == b"not a key"


def test_passeur_identity_shows_what_to_read_over_the_phone(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert cli.main(["--home", str(home), "identity", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    key = installation_public_key(home / "data")
    assert shown["public_key"] == key.text
    assert shown["key_id"] == key.key_id
    assert re.fullmatch(r"([0-9a-f]{4} ){7}[0-9a-f]{4}", shown["fingerprint"])
    assert shown["fingerprint"].replace(" ", "").startswith(key.key_id)
    assert cli.main(["--home", str(home), "identity"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == key.text
    assert shown["fingerprint"] in lines[2]


def test_passeur_identity_in_english(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGUAGE", "en")
    assert cli.main(["--home", str(tmp_path / "home"), "identity"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("Key id: ")
    assert lines[2].startswith("Fingerprint: ")


def test_passeur_identity_in_french(tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # FRENCH CHECK: passes once the lead merged daemon/locale/pending/pack.po.
    monkeypatch.setenv("LANGUAGE", "fr")
    assert cli.main(["--home", str(tmp_path / "home"), "identity"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("Identifiant de la clé : ")
    assert lines[2].startswith("Empreinte : ")


def test_an_unreadable_key_fails_the_command_in_words(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGUAGE", "en")
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    key_path(home / "data").write_text("garbage")
    assert cli.main(["--home", str(home), "identity"]) == 1
    captured = capsys.readouterr()
    assert "cannot be read" in captured.err
    assert "Traceback" not in captured.err


def test_a_data_folder_where_no_key_can_be_made_is_an_error_in_words(tmp_path: Path) -> None:
    i18n.setup("en")
    (tmp_path / "not-a-folder").write_text("a file where the data folder should be")
    with pytest.raises(SendError) as failure:
        installation_key(tmp_path / "not-a-folder" / "data")
    assert failure.value.code == "identity"
    assert failure.value.text.startswith("This installation's key cannot be made in ")
