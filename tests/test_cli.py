"""The `passeur` command line, run as a real process in a relocated home."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.keys import PublicKey, SigningKey
from tests.helpers import DOSSIER, Home


def test_keygen_writes_a_private_key_only_the_owner_can_read(home: Home, tmp_path: Path) -> None:
    target = tmp_path / "cabinet.pem"
    result = home.passeur("keygen", "--out", str(target), check=True)
    public = PublicKey.from_text(result.stdout.strip())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert SigningKey.load(target).public == public
    again = home.passeur("keygen", "--out", str(target))
    assert again.returncode == 1
    assert "existe déjà" in again.stderr
    assert SigningKey.load(target).public == public


def test_pack_then_show_gives_the_content_of_the_exchange(home: Home, tmp_path: Path) -> None:
    key_file = tmp_path / "k.pem"
    home.key.save(key_file)
    (tmp_path / "tva.xml").write_text("<tva/>")
    (tmp_path / "ecritures.xml").write_text("<e/>")
    packed = home.passeur(
        "pack", "--key", str(key_file), "--dossier", DOSSIER, "--name", "GAEC LE GUYON",
        "--fiscal-year", "2020-01-01:2020-12-31", "--sequence", "4", "--etalon",
        "--delta-only", "--date", "2020-10-27T17:20:21+01:00", "--out", str(tmp_path),
        f"vat_declaration={tmp_path / 'tva.xml'}", str(tmp_path / "ecritures.xml"), check=True,
    )
    path = Path(packed.stdout.strip())
    assert path.name == "8502182-20201027172021.wwz"
    shown = home.passeur("show", str(path), check=True).stdout.splitlines()
    assert shown[:5] == [
        "Dossier 8502182 - GAEC LE GUYON",
        "Fichier d'échange généré le 27/10/2020 17:20:21",
        "Comptabilité générale",
        "Exercice comptable du 01/01/2020 au 31/12/2020",
        "Modules",
    ]
    assert "  - Déclaration TVA (1 fichier)" in shown
    assert "Intégrer seulement les écritures ajoutées, modifiées, supprimées : oui" in shown
    assert "Contient des dossiers étalons : l'application devra être relancée" in shown
    as_json = json.loads(home.passeur("show", "--json", str(path), check=True).stdout)
    assert as_json["sequence"] == 4
    assert as_json["etalon"] is True
    assert home.passeur("queue", "--json", check=True).stdout.strip() == "[]"


def test_import_exit_code_and_one_reason_per_refused_file(home: Home, tmp_path: Path) -> None:
    good = home.update(1)
    bad = tmp_path / "8502182-20201027172021.wwz"
    bad.write_bytes(b"not a zip at all")
    result = home.passeur("import", str(good), str(bad))
    assert result.returncode == 1
    assert result.stdout.strip() == f"{good.name} : mis en attente"
    assert result.stderr.strip() == (
        f"{bad.name} : refusé : ce n'est pas un fichier d'échange (pas une archive ZIP)"
    )
    again = home.passeur("import", "--json", str(good))
    assert again.returncode == 0
    assert json.loads(again.stdout)[0]["outcome"] == "duplicate"


def test_english_when_the_config_says_so(home: Home) -> None:
    config = home.root / "config.toml"
    config.write_text(config.read_text().replace('language = "fr"', 'language = "en"'))
    result = home.passeur("queue")
    assert result.stdout.strip() == "No update waiting to be integrated"


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[sources.web]\npoll_minutes = 'often'\n", "sources.web.poll_minutes",
         "un nombre entier attendu"),
        ("[sources.web]\npoll_minutes = 0\n", "sources.web.poll_minutes",
         "un nombre de minutes entre 1 et 1440 attendu"),
        ("[sources.web]\nurl = 'ftp://x'\n", "sources.web.url", "https://"),
        ("[[dossiers]]\nnumber = '85 02'\n", "dossiers[0].number", "numéro de dossier"),
        ("[[trusted_keys]]\npublic_key = 'rsa:xyz'\n", "trusted_keys[0].public_key",
         "ed25519:"),
        ("[notifications]\nreceved = true\n", "notifications.receved", "received"),
        ("language = 'de'\n", "language", '"fr" ou "en"'),
        ("app = 3\n", "app", "une table [app] attendue"),
    ],
)
def test_a_wrong_config_names_the_file_the_key_and_what_was_expected(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    root = tmp_path / "h"
    root.mkdir()
    (root / "config.toml").write_text(text)
    result = Home(root, SigningKey.generate(), root, root).passeur("queue")
    assert result.returncode == 3
    assert result.stderr.startswith(f"{root / 'config.toml'} : clé « {key} » : ")
    assert expected in result.stderr


def test_a_config_that_is_not_toml_is_explained(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[app\nname=")
    result = Home(tmp_path, SigningKey.generate(), tmp_path, tmp_path).passeur("config")
    assert result.returncode == 3
    assert "ce n'est pas du TOML valide" in result.stderr


def test_trust_and_dossier_commands_edit_the_config_keeping_comments(home: Home) -> None:
    config = home.root / "config.toml"
    config.write_text("# my own note\n" + config.read_text())
    other = SigningKey.generate().public
    home.passeur("trust", "add", other.text, "--label", "Nouveau cabinet", check=True)
    home.passeur("dossier", "add", "7700001", "EARL DES PRES", "--folder", "/srv/d", check=True)
    listed = home.passeur("trust", "list", check=True).stdout
    assert other.key_id in listed
    assert "Nouveau cabinet" in listed
    assert "7700001  EARL DES PRES  /srv/d" in home.passeur("dossier", check=True).stdout
    assert config.read_text().startswith("# my own note\n")
    home.passeur("trust", "remove", other.key_id, check=True)
    home.passeur("dossier", "remove", "7700001", check=True)
    assert other.key_id not in home.passeur("trust", "list", check=True).stdout
    assert "7700001" not in home.passeur("dossier", "list", check=True).stdout
    missing = home.passeur("dossier", "remove", "7700001")
    assert missing.returncode == 1
    bad = home.passeur("trust", "add", "ed25519:short")
    assert bad.returncode == 1


def test_home_option_and_environment_relocate_everything(home: Home, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    env = dict(home.env)
    del env["PASSEUR_HOME"]
    result = home.passeur("--home", str(other), "config", "--json", check=True)
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["config_file"] == str(other / "config.toml")
    assert data["config_exists"] is False
    assert all(value.startswith(str(other)) for value in data["folders"].values())
    data = json.loads(home.passeur("config", "--json", check=True).stdout)
    assert data["folders"]["spool"] == str(home.root / "data" / "spool")
    assert data["dossiers"][0]["number"] == DOSSIER


def test_usage_errors_exit_2_in_french(home: Home) -> None:
    result = home.passeur("import")
    assert result.returncode == 2
    assert "les arguments suivants sont requis" in result.stderr


def test_queue_process_json_is_pure_json(home: Home) -> None:
    update = home.update(1)
    home.passeur("import", str(update), check=True)
    result = home.passeur("queue", "process", "--all", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"id": 1, "file": update.name, "result": "delivered"}]


@pytest.mark.parametrize("command", [("journal",), ("queue", "--all"), ("config",),
                                     ("trust", "list")])
def test_a_reader_that_goes_away_is_the_end_not_a_traceback(home: Home,
                                                             command: tuple[str, ...]) -> None:
    # `passeur journal | head -1`: the reader has gone before passeur writes.
    assert home.passeur("import", str(home.update(1))).returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "daemon.cli", *command], env=home.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()
    _out, err = process.communicate(timeout=30)
    assert "Traceback" not in err
    assert process.returncode == 0, err


def test_import_of_a_missing_file_or_a_folder_is_an_error_of_the_command(
        home: Home, tmp_path: Path) -> None:
    for offered in (tmp_path / "8502182-20201027172021.wwz", tmp_path):
        result = home.passeur("import", str(offered))
        assert result.returncode == 2, result.stderr
        assert str(offered) in result.stderr
    queue = home.passeur("queue", "--all", "--json")
    assert json.loads(queue.stdout) == [], "no refused row for a mistyped name"


def test_what_is_not_a_plain_file_is_refused_before_anything_is_read(
        home: Home, tmp_path: Path) -> None:
    import os

    from daemon.context import Context
    from daemon.queue import Outcome

    fifo = tmp_path / "8502182-20201027172021.wwz"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer for ever
    device = tmp_path / "8502182-20201027172022.wwz"
    device.symlink_to("/dev/zero")  # would be copied up to the size cap
    sparse = tmp_path / "8502182-20201027172023.wwz"
    with open(sparse, "wb") as handle:
        handle.truncate(9 << 30)  # 9 GiB that take no room: refused by their size alone
    intake = Context(home.root).intake
    for offered, code in ((fifo, "not-a-file"), (device, "not-a-file"),
                          (sparse, "too-large")):
        result = intake.import_path(offered, "manual")
        assert result.outcome is Outcome.REJECTED
        assert result.rejection is not None
        assert str(result.rejection.code) == code, (offered, result.rejection)
    staging = Context(home.root).paths.staging
    assert not any(staging.iterdir()), "nothing was copied"
