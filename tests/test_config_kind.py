"""The config file is kind to hand edits: a commented template with every table, any
editor's encoding, unknown keys named with the nearest known one, clear refusals."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from daemon import config_edit
from daemon.config import KNOWN_KEYS, NOTIFICATION_EVENTS, load_config
from daemon.errors import ConfigError
from daemon.keys import SigningKey
from tests.helpers import Home

GOOD = '[app]\nname = "Isacompta é"\n\n[sources.web]\npoll_minutes = 7\n'


def test_the_template_is_commented_in_french_and_has_every_table(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config_edit.ensure_config(path)
    text = path.read_text("utf-8")
    assert "# Réglages de passeur." in text
    for table in ("[[dossiers]]", "[[trusted_keys]]", "[app]", "[sources.web]",
                  "[sources.removable]", "[sources.folders]", "[send]", "[email]",
                  "[notifications]", "[restart]", "[tray]"):
        assert table in text, table
    written = tomllib.loads(text)  # valid TOML as written
    # Every table the config reads is there, every notification kind written out.
    assert set(KNOWN_KEYS[""]) - {"language"} <= {*written, "dossiers", "trusted_keys"}
    assert set(written["notifications"]) == set(NOTIFICATION_EVENTS)
    config = load_config(path)
    assert (config.notes, config.tray_backend) == ((), "auto")


@pytest.mark.parametrize("encoded", [
    b"\xef\xbb\xbf" + GOOD.encode("utf-8"),  # UTF-8 with a BOM (Notepad's "UTF-8 BOM")
    GOOD.encode("utf-16"),  # Notepad's "Unicode"
])
def test_a_bom_or_utf16_is_read(tmp_path: Path, encoded: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(encoded)
    config = load_config(path)
    assert (config.app.name, config.web.poll_minutes, config.notes) == ("Isacompta é", 7, ())


def test_windows_ansi_is_read_with_a_note_and_saved_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(GOOD.encode("cp1252"))
    config = load_config(path)
    assert config.app.name == "Isacompta é"
    assert config.notes == (f"{path} : le fichier n'est pas enregistré en UTF-8 ; il a été "
                            "lu comme un texte Windows (ANSI), et passeur l'enregistrera en "
                            "UTF-8",)
    config_edit.add_dossier(path, "8502182", "GAEC")
    assert "Isacompta é" in path.read_text("utf-8")


def test_an_unknown_key_is_named_with_the_nearest_one_without_refusing_the_file(
        tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[sources.web]\npoll_minute = 5\n\n[[dossiers]]\nnumber = "8502182"\n'
                    'nom = "GAEC"\n\n[sourcs]\n', "utf-8")
    config = load_config(path)
    assert config.web.poll_minutes == 15
    assert config.dossier("8502182") is not None
    assert config.notes == (
        f"{path} : sources.web.poll_minute n'est pas une clé connue : voulez-vous dire "
        "sources.web.poll_minutes ?",
        f"{path} : dossiers.nom n'est pas une clé connue ; elle est ignorée",
        f"{path} : sourcs n'est pas une clé connue : voulez-vous dire sources ?",
    )


def test_the_cli_reports_the_notes_and_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "h"
    root.mkdir()
    (root / "config.toml").write_text("[sources.web]\npoll_minute = 5\n", "utf-8")
    result = Home(root, SigningKey.generate(), root, root).passeur("config")
    assert result.returncode == 0
    assert "voulez-vous dire sources.web.poll_minutes ?" in result.stderr


def test_a_folder_where_the_file_should_be_is_explained(tmp_path: Path) -> None:
    root = tmp_path / "h"
    (root / "config.toml").mkdir(parents=True)
    result = Home(root, SigningKey.generate(), root, root).passeur("queue")
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"{root / 'config.toml'}: c'est un dossier, là où passeur attend son fichier de "
        "réglages : renommez ou supprimez ce dossier")
    assert "Traceback" not in result.stderr


def test_an_unreadable_encoding_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xff\xfe\x00\xd8")  # UTF-16 announced, then a lone surrogate
    with pytest.raises(ConfigError, match="encodage de texte connu"):
        load_config(path)


def test_dossier_add_on_an_existing_number_says_it_renamed(home: Home) -> None:
    first = home.passeur("dossier", "add", "8502182", "GAEC DU GUYON")
    assert first.stdout.strip() == ("Le dossier 8502182 existait déjà : renommé de « GAEC LE "
                                    "GUYON » en « GAEC DU GUYON »")
    again = home.passeur("dossier", "add", "8502182", "GAEC DU GUYON")
    assert again.stdout.strip() == "Le dossier 8502182 existait déjà : mis à jour"
    new = home.passeur("dossier", "add", "9100001", "EARL")
    assert new.stdout.strip() == "Dossier 9100001 ajouté"


def test_renaming_a_dossier_keeps_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config_edit.add_dossier(path, "8502182", "GAEC", str(tmp_path / "dossier"))
    config = config_edit.add_dossier(path, "8502182", "GAEC LE GUYON")
    dossier = config.dossier("8502182")
    assert dossier is not None
    assert dossier.folder == tmp_path / "dossier"


def test_a_refused_edit_names_the_users_file_never_a_temporary_one(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config_edit.ensure_config(path)
    before = path.read_bytes()
    with pytest.raises(ConfigError) as caught:
        config_edit.set_web(path, poll_minutes=99999)
    assert caught.value.path == str(path)
    assert ".check" not in caught.value.message()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_the_window_setters_write_values_that_load(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    config_edit.set_sources(path, removable=False, folders_enabled=True,
                            watch=[str(tmp_path)])
    config_edit.set_notifications(path, {"offline": False})
    config_edit.set_app(path, name="Isacompta", process_names=["isacompta"],
                        inbox=str(tmp_path / "inbox"))
    config = config_edit.set_language(path, "en")
    assert (config.removable, config.watched_folders) == (False, (tmp_path,))
    assert config.notifications["offline"] is False
    assert config.app.process_names == ("isacompta",)
    assert config.language == "en"
    assert config_edit.set_language(path, "").language is None
