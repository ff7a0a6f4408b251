"""The French catalogue is complete, compiled and keeps every placeholder."""

from __future__ import annotations

import gettext
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from daemon import i18n

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "daemon/locale/fr/LC_MESSAGES/passeur.po"
MO = PO.with_suffix(".mo")
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}


def source_messages() -> set[str]:
    found = set()
    for folder in ("daemon", "tray"):
        for _file, _line, message, _comments, _context in extract_from_dir(
            ROOT / folder, keywords=KEYWORDS, comment_tags=()
        ):
            found.add(message if isinstance(message, str) else str(message[0]))
    return found


def catalogue() -> dict[str, str]:
    with open(PO, "rb") as handle:
        catalog = read_po(handle)
    result = {}
    for message in catalog:
        if not message.id:
            continue
        key = message.id if isinstance(message.id, str) else message.id[0]
        value = message.string if isinstance(message.string, str) else str(
            message.string[0]  # type: ignore[index]
        )
        result[key] = value
    return result


def test_every_message_has_a_french_translation() -> None:
    translations = catalogue()
    missing = sorted(m for m in source_messages() if not translations.get(m))
    assert missing == []


def test_compiled_catalogue_matches_the_po_file() -> None:
    with open(MO, "rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for msgid, msgstr in catalogue().items():
        assert compiled.gettext(msgid) == msgstr, msgid


def test_translations_keep_their_placeholders() -> None:
    pattern = re.compile(r"\{[a-z_]+\}|%\([a-z_]+\)[sr]|%[sr]")
    for msgid, msgstr in catalogue().items():
        assert sorted(pattern.findall(msgid)) == sorted(pattern.findall(msgstr)), msgid


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "fr"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LANG": "de_DE.UTF-8"}, "fr"),
        ({"LANGUAGE": "en", "LANG": "fr_FR.UTF-8"}, "en"),
        ({"LC_ALL": "fr_FR.UTF-8", "LANG": "en_GB.UTF-8"}, "fr"),
    ],
)
def test_language_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str
) -> None:
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    for var, value in environment.items():
        monkeypatch.setenv(var, value)
    assert i18n.setup(None) == expected


def _help(env_lang: str) -> str:
    env = {"LANG": env_lang, "PATH": "/usr/bin:/bin", "PASSEUR_HOME": "/nonexistent",
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "daemon.cli", "--help"], env=env, text=True,
                          capture_output=True, check=True, cwd=ROOT).stdout


def test_help_is_french_by_default_and_english_on_request() -> None:
    french = _help("C.UTF-8")
    assert french.startswith("utilisation : passeur")
    assert "afficher le contenu d'un fichier d'échange sans l'importer" in french
    english = _help("en_GB.UTF-8")
    assert english.startswith("usage: passeur")
    assert "show the content of an exchange file without importing it" in english
