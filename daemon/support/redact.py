"""Keeping secrets out of every log line, and personal details out of the support archive.

Three kinds of secret are blanked out as `***`: the values registered at run time (a
password or token read from the keyring: `register_secret`), the `user:password@` part of
any URL, and what follows `Authorization:`, `Bearer`, `password=`, `token=` and the like.
`SecretFilter` applies that to every record of the handlers it is installed on, exception
texts included. The support archive also replaces the home folder by `~` and the user's
name by `<utilisateur>` (`Personal`), and blanks the values of secret-looking keys of the
configuration file (`redact_config`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

from daemon.i18n import _

MASK = "***"
# Shorter values are not blanked out in texts: a two-letter "secret" would blank every such
# pair of letters of every line and make the log unreadable.
MIN_SECRET_LENGTH = 4
# A user name shorter than this is not replaced on its own (the home folder still is).
MIN_USER_LENGTH = 3

_lock = threading.Lock()
# Longest first, so that a secret containing another is blanked out whole. The tuple is
# replaced, never changed: readers (every log record) need no lock.
_secrets: tuple[str, ...] = ()

# scheme://userinfo@ — the userinfo runs to the last "@" before the path.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/?#]+@")

# Each pattern keeps its first group (the key, the header, the word) and blanks the second.
# A pattern runs only when the line holds its trigger (a substring test is far cheaper than
# a regular expression that finds nothing), and the key=value one only looks at words
# followed by "=", checking the word afterwards: scanning every word for a secret's name
# inside it cost ten times more.
_NAMES = r"(?:password|passwd|passphrase|pwd|token|secret|api[_-]?key)"
_QUOTED_OR_WORD = r"(?:\"[^\"\r\n]*\"|'[^'\r\n]*'|[^\s&;,\"'<>]+)"
_SECRET_WORD = re.compile(rf"(?i)pass|[\w.-]*{_NAMES}[\w-]*")
_PATTERNS: list[tuple[tuple[str, ...], re.Pattern[str], bool]] = [
    # Authorization: Basic …  /  Proxy-Authorization=…  (the value runs to the line's end)
    (("authorization",),
     re.compile(r"(?i)(\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)([^\s\"'][^\r\n\"']*)"),
     False),
    # Bearer <token>, when what follows looks like a token rather than an English word
    (("bearer",), re.compile(r"(?i)(\bbearer\s+)([A-Za-z0-9._~+/=-]{8,})"), False),
    # password=…, token=…, smtp_password = "…" (query strings, forms, TOML, env)
    (("=",), re.compile(rf"(?<![\w.-])([\w.-]+)(\s*=\s*)({_QUOTED_OR_WORD})"), True),
    # "password": "…" (JSON, Python reprs)
    ((":",),
     re.compile(rf"(?i)([\"'][\w.-]*{_NAMES}[\w-]*[\"']\s*:\s*)(\"(?:[^\"\\\r\n]|\\.)*\"|'[^'\r\n]*')"),
     False),
]
# Every secret the patterns blank out sits next to one of these words (lower case).
_TRIGGERS = ("authorization", "bearer", "pass", "pwd", "token", "secret", "api")


# A configuration key whose value is a secret, whatever its table.
_SECRET_KEY = re.compile(
    r"(?i)password|passwd|passphrase|^pass$|^pwd$|token|secret|api[_-]?key|credential"
    r"|private[_-]?key|authorization|^auth$|cookie"
)


def register_secret(value: str | None) -> None:
    """Blank `value` (and its URL- and JSON-escaped forms) out of every log line from now on.

    Called whenever a password or token is read from the keyring or typed by the user.
    """
    global _secrets
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1]}
    with _lock:
        merged = set(_secrets) | {form for form in forms if len(form) >= MIN_SECRET_LENGTH}
        _secrets = tuple(sorted(merged, key=len, reverse=True))
    # A command that never set the log up prints its warnings through logging's last
    # resort handler: once a secret is known, that one is guarded too.
    if logging.lastResort is not None:
        install_filter(logging.lastResort)


def forget_secrets() -> None:
    """Forget every registered secret (for tests: each starts from a clean process state)."""
    global _secrets
    with _lock:
        _secrets = ()


def redact_secrets(text: str) -> str:
    """Return `text` with registered secrets, URL passwords and auth values replaced by ***."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(rf"\1{MASK}@", text)
    # Most lines hold none of the words the patterns start from: a substring test is ten
    # times cheaper than running the patterns to find nothing.
    lower = text.lower()
    if any(word in lower for word in _TRIGGERS):
        for triggers, pattern, named in _PATTERNS:
            if any(trigger in lower for trigger in triggers):
                text = pattern.sub(_keep_named_key if named else _keep_key, text)
    return text


def _keep_key(match: re.Match[str]) -> str:
    return _masked(match.group(0), match.group(1), match.group(2))


def _keep_named_key(match: re.Match[str]) -> str:
    if not _SECRET_WORD.fullmatch(match.group(1)):
        return match.group(0)
    return _masked(match.group(0), match.group(1) + match.group(2), match.group(3))


def _masked(whole: str, key: str, value: str) -> str:
    if value.strip("\"'") == MASK:
        return whole
    quote_char = value[0] if value[:1] in ("'", '"') else ""
    return f"{key}{quote_char}{MASK}{quote_char}"


class SecretFilter(logging.Filter):
    """Blanks secrets out of a record's message, arguments, exception and stack texts."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place (once, whatever the number of handlers); keep it."""
        if getattr(record, "passeur_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a wrong format string: keep everything it was given, redacted
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = redact_secrets(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        setattr(record, "passeur_redacted", True)  # noqa: B010 - not a LogRecord field
        return True


_FORMATTER = logging.Formatter()
_FILTER = SecretFilter()


def install_filter(handler: logging.Handler) -> None:
    """Put the secret filter on `handler` (once)."""
    if _FILTER not in handler.filters:
        handler.addFilter(_FILTER)


# ---------------------------------------------------------------- the support archive


@dataclass(frozen=True)
class Personal:
    """The user's home folder and name, replaced in the support archive by `~` and a word."""

    home: str
    user: str

    @classmethod
    def of_this_user(cls) -> Personal:
        """Return the details of the user running this process."""
        import getpass

        try:
            user = getpass.getuser()
        except (OSError, KeyError, ImportError):  # no name in the environment nor in passwd
            user = ""
        try:
            home = str(Path.home())
        except (RuntimeError, KeyError):  # no home to be found: the user name still goes
            home = ""
        return cls(home, user)

    def redact(self, text: str) -> str:
        """Return `text` with the home folder replaced by ~ and the user name by a word."""
        # Windows paths are written in any case: C:\Users\JMartin is c:\users\jmartin.
        flags = re.IGNORECASE if os.name == "nt" else 0
        for home in self._home_forms():
            # The home itself, not /home/jmartinez when the home is /home/jmartin.
            text = re.sub(re.escape(home) + r"(?![\w.-])", "~", text, flags=flags)
        if len(self.user) >= MIN_USER_LENGTH:
            text = re.sub(r"(?i)(?<![A-Za-z0-9])" + re.escape(self.user) + r"(?![A-Za-z0-9])",
                          _("<user>"), text)
        return text

    def _home_forms(self) -> list[str]:
        forms: set[str] = set()
        for home in {self.home, os.path.realpath(self.home) if self.home else ""}:
            home = home.rstrip("/\\")
            if len(home) < 2:  # "/" or nothing: not a personal folder
                continue
            # As written, as TOML and JSON escape a Windows path, and with forward slashes.
            forms |= {home, home.replace("\\", "\\\\"), home.replace("\\", "/")}
        return sorted(forms, key=len, reverse=True)


def is_secret_key(name: str) -> bool:
    """Tell whether a configuration key's value should never be shown."""
    return bool(_SECRET_KEY.search(name))


def redact_config(text: str) -> str:
    """Return a configuration file's text with the values of secret-looking keys as ***.

    Structure-aware (tomlkit, comments kept) when the text is TOML; line by line when it is
    not, since a broken configuration is precisely what the support wants to see. Secrets
    inside other values (a URL's password) are left to `redact_secrets`.
    """
    import tomlkit
    import tomlkit.exceptions

    try:
        document = tomlkit.parse(text)
    except (tomlkit.exceptions.TOMLKitError, ValueError):
        return _redact_config_lines(text)
    _mask_secret_keys(document)
    return tomlkit.dumps(document)


def _mask_secret_keys(table: dict[str, object]) -> None:
    for key in list(table):
        value = table[key]
        if is_secret_key(str(key)):
            table[key] = MASK
        elif isinstance(value, dict):
            _mask_secret_keys(value)
        elif isinstance(value, list):
            for element in value:
                if isinstance(element, dict):
                    _mask_secret_keys(element)


# key = value at the start of a line; the key bare, quoted or dotted.
_ASSIGNMENT = re.compile(r"^(?P<lead>\s*(?P<key>[^=#\[\]\r\n]+?)\s*=\s*)(?P<value>.*)$")
_OPENERS = (('"""', '"""'), ("'''", "'''"), ("[", "]"), ("{", "}"))


def _redact_config_lines(text: str) -> str:
    out: list[str] = []
    closing: str | None = None  # a masked value that goes on over the next lines
    for line in text.splitlines(keepends=True):
        if closing is not None:
            if closing in line:
                closing = None
            continue
        match = _ASSIGNMENT.match(line.rstrip("\r\n"))
        if match and is_secret_key(match["key"].strip("\"' ")):
            value = match["value"].strip()
            for opener, closer in _OPENERS:
                if value.startswith(opener) and closer not in value[len(opener):]:
                    closing = closer
                    break
            line = f'{match["lead"]}"{MASK}"\n'
        out.append(line)
    return "".join(out)
