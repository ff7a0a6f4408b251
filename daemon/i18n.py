"""Language selection and gettext for every user-visible string (French by default)."""

from __future__ import annotations

import gettext
import os
from pathlib import Path

DOMAIN = "passeur"
LOCALE_DIR = Path(__file__).with_name("locale")
SUPPORTED = ("fr", "en")

# Message ids are written in English; the French catalogue is the default translation.
_translation: gettext.NullTranslations = gettext.NullTranslations()
_language = "en"


def language_from_environment() -> str:
    """Return "en" when the environment asks for English, else the default "fr"."""
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            return "en" if value.lower().startswith("en") else "fr"
    return "fr"


def setup(language: str | None = None) -> str:
    """Activate `language` ("fr"/"en"), or the environment's choice when None; return it."""
    global _translation, _language
    lang = language if language in SUPPORTED else language_from_environment()
    if lang == "en":
        _translation = gettext.NullTranslations()
    else:
        _translation = gettext.translation(DOMAIN, LOCALE_DIR, languages=[lang], fallback=True)
    _language = lang
    _translate_argparse()
    return lang


def current_language() -> str:
    """Return the active language code."""
    return _language


def _(message: str) -> str:
    """Translate `message` into the active language."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """Translate a message whose form depends on the count `n`."""
    return _translation.ngettext(singular, plural, n)


def in_language(language: str, message: str) -> str:
    """Translate `message` into a given language, whatever the active one is."""
    if language == "en":
        return message
    return gettext.translation(
        DOMAIN, LOCALE_DIR, languages=[language], fallback=True
    ).gettext(message)


def _translate_argparse() -> None:
    # argparse looks its own strings ("usage: ", "options", ...) up through module-level
    # gettext functions bound at import time; our catalogue carries their French forms.
    import argparse

    argparse._ = _  # type: ignore[attr-defined]
    argparse.ngettext = ngettext  # type: ignore[attr-defined]
