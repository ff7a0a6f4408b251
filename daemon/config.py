"""Where passeur keeps its files, and the user's TOML configuration, validated with clear errors."""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from daemon.errors import ConfigError
from daemon.i18n import _
from daemon.keys import KeyFormatError, PublicKey
from daemon.naming import DOSSIER_RE

APP_NAME = "passeur"
HOME_ENV = "PASSEUR_HOME"
NOTIFICATION_EVENTS = ("received", "rejected", "restart_required", "sent", "offline")
# Kinds that notify only when the config asks (`receipt = true`): the accountant's receipt
# is always in the journal and the report, a notification would be one more interruption.
OPT_IN_NOTIFICATIONS = ("receipt",)
# The tray backends `[tray] backend` may name (tray/backend.py chooses when "auto").
TRAY_BACKENDS = ("auto", "appindicator", "gtk", "xorg")

T = TypeVar("T")


@dataclass(frozen=True)
class Paths:
    """Every folder passeur writes to; all under one home when relocated."""

    config_file: Path
    data: Path
    spool: Path
    quarantine: Path
    trash: Path
    logs: Path

    @property
    def database(self) -> Path:
        """Return the queue database file."""
        return self.data / "queue.sqlite3"

    @property
    def staging(self) -> Path:
        """Return the folder for files being received (same file system as the spool)."""
        return self.spool / ".staging"

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> Paths:
        """Use `home` (or $PASSEUR_HOME) when given, else the platform's user folders."""
        home = home or os.environ.get(HOME_ENV) or None
        if home is not None:
            root = Path(home).expanduser().absolute()
            data = root / "data"
            return cls(root / "config.toml", data, data / "spool", data / "quarantine",
                       data / "trash", root / "logs")
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP_NAME, appauthor=False)
        data = Path(dirs.user_data_dir)
        return cls(Path(dirs.user_config_dir) / "config.toml", data, data / "spool",
                   data / "quarantine", data / "trash", Path(dirs.user_log_dir))

    def ensure(self) -> None:
        """Create the folders private to the user (0700), and tighten those that an older
        version left open to others: they hold the dossiers' updates and the journal."""
        for folder in (self.config_file.parent, self.data, self.spool, self.staging,
                       self.quarantine, self.trash, self.logs):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _make_private(folder)


def _make_private(folder: Path) -> None:
    """Set an existing folder of this user to 0700 (one of another user is left as is)."""
    if os.name == "nt":  # NTFS keeps rights in ACLs, not in these mode bits
        return
    if stat.S_IMODE(folder.stat().st_mode) & 0o077:
        with contextlib.suppress(PermissionError):
            folder.chmod(0o700)


@dataclass(frozen=True)
class AppConfig:
    """The accounting application passeur hands updates to."""

    name: str = "Isacompta"
    process_names: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    inbox: Path | None = None


@dataclass(frozen=True)
class DossierConfig:
    """A dossier this computer keeps: its number, name and local folder."""

    number: str
    name: str
    folder: Path | None = None


@dataclass(frozen=True)
class TrustedKey:
    """A public key of the accountant's firm whose signatures are accepted."""

    key: PublicKey
    label: str = ""


@dataclass(frozen=True)
class WebSource:
    """The accountant's web endpoint."""

    url: str = ""
    poll_minutes: int = 15
    ca_bundle: Path | None = None
    # Why this source cannot be used (the file, the key, what was expected), or "": the
    # other sources go on, and each poll says it.
    problem: str = field(default="", compare=False)


def default_objectives() -> tuple[str, ...]:
    """Return the *Objectif de l'échange* offered when `[send] objectives` is not set."""
    return (_("Sending for revision"), _("Sending for the year-end accounts"),
            _("Sending for the VAT return"), _("Sending for information"))


@dataclass(frozen=True)
class SendConfig:
    """The `[send]` table: how dossiers are sent to the accountant."""

    max_kbps: int = 0  # upload cap in kilobytes per second; 0: no cap
    email_max_mb: int = 20  # the common providers take 20 to 25 MB per message
    objectives: tuple[str, ...] = ()  # empty: default_objectives(), in the active language
    folder: Path | None = None  # the default *Répertoire*
    # The first pause after a web send is cut (it doubles at each cut in a row).
    retry_seconds: int = 30

    def objective_choices(self) -> tuple[str, ...]:
        """Return the objectives to offer, the default one first."""
        return self.objectives or default_objectives()


EMAIL_SECURITY = ("starttls", "tls", "none")
_DEFAULT_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True)
class EmailConfig:
    """The `[email]` table: the SMTP server that sends dossiers and information e-mails.

    The password is never here: it lives in the system keyring (`passeur email login`).
    """

    smtp_host: str = ""
    smtp_port: int = 0  # 0: the usual port of `security` (587, 465 or 25)
    security: str = "starttls"  # STARTTLS; "tls": implicit TLS; "none": loopback only
    user: str = ""
    sender: str = ""  # the `from` key: the farmer's address
    accountant: str = ""  # the accountant's address
    timeout_s: int = 60
    ca_bundle: Path | None = None  # extra CA certificates (TLS is always verified)

    @property
    def port(self) -> int:
        """Return the port to connect to."""
        return self.smtp_port or _DEFAULT_SMTP_PORTS[self.security]

    @property
    def configured(self) -> bool:
        """Tell whether e-mails can be sent at all (a server and a sender address)."""
        return bool(self.smtp_host and self.sender)


def is_loopback_host(host: str) -> bool:
    """Tell whether `host` names this computer (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def web_address_problem(url: str) -> tuple[str, str]:
    """Return the accountant's address without any user name or password in it, and why
    it cannot be used ("" when it can), wherever an address is given (the file, the
    set-up): a password in the address would be printed and sent with every request; a
    plain http:// address sends the password in clear to anyone on the way."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "", _("expected an address starting with https://")
    if parts.username is not None or parts.password is not None:
        bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        return bare, _(
            "expected an address without a user name or password: remove them from the "
            "address and give them with passeur login <dossier> (they are kept in the "
            "system keyring)")
    if parts.scheme == "http" and not is_loopback_host(host):
        return url, _(
            "expected an address starting with https:// (http:// would send the "
            "password in clear; it is accepted only for this computer itself)")
    return url, ""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    exists: bool = False
    language: str | None = None
    app: AppConfig = AppConfig()
    dossiers: tuple[DossierConfig, ...] = ()
    trusted_keys: tuple[TrustedKey, ...] = ()
    web: WebSource = WebSource()
    removable: bool = True
    watched_folders: tuple[Path, ...] = ()
    notifications: dict[str, bool] = field(default_factory=lambda: default_notifications())
    send: SendConfig = SendConfig()
    email: EmailConfig = EmailConfig()
    tray_backend: str = "auto"  # [tray] backend: auto, appindicator, gtk or xorg
    # What the user should know about the file without it being refused (an unknown key,
    # an encoding other than UTF-8), one sentence each.
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def can_receive(self) -> bool:
        """Tell whether passeur can receive anything: a dossier and the accountant's key."""
        return bool(self.dossiers and self.trusted_keys)

    def dossier(self, number: str) -> DossierConfig | None:
        """Return the configured dossier with this number, if any."""
        return next((d for d in self.dossiers if d.number == number), None)

    def keyring(self) -> dict[str, PublicKey]:
        """Return the trusted public keys by key id."""
        return {trusted.key.key_id: trusted.key for trusted in self.trusted_keys}


def default_notifications() -> dict[str, bool]:
    """Return the `[notifications]` choices of a config that says nothing: all on, except
    the kinds asked for only (OPT_IN_NOTIFICATIONS)."""
    return dict.fromkeys(NOTIFICATION_EVENTS, True) | dict.fromkeys(OPT_IN_NOTIFICATIONS, False)


def load_config(path: Path) -> Config:
    """Read and validate the config file; a missing file gives the defaults."""
    if not path.exists():
        return Config(path=path, watched_folders=_default_watched_folders())
    text, notes = read_config_text(path)
    config = parse_config(path, text)
    return replace(config, notes=notes + config.notes) if notes else config


def read_config_text(path: Path) -> tuple[str, tuple[str, ...]]:
    """Return the config file's text, whatever editor saved it, and a note when it was not
    UTF-8; raise ConfigError for a folder or a file that cannot be read."""
    if path.is_dir():
        raise ConfigError(path, None, _(
            "this is a folder, where passeur expects its settings file: rename or remove "
            "the folder"))
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, None, str(exc.strerror or exc)) from None
    return decode_config_bytes(path, raw)


# Windows Notepad saves "Unicode" as UTF-16 with a byte order mark, and "ANSI" as the
# Windows-1252 code page on French systems.
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_config_bytes(path: Path, raw: bytes) -> tuple[str, tuple[str, ...]]:
    """Decode a config file's bytes: UTF-8 (with or without BOM), UTF-16 with a BOM, or
    Windows-1252 (with a note: the next change by passeur saves it in UTF-8)."""
    unknown = ConfigError(path, None, _(
        "this file is not in a known text encoding: save it as UTF-8 in your text editor"))
    if raw.startswith(_UTF16_BOMS):
        try:
            return raw.decode("utf-16"), ()
        except UnicodeDecodeError:
            raise unknown from None
    try:
        return raw.decode("utf-8-sig"), ()
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        raise unknown from None
    return text, (_("{path}: the file is not saved in UTF-8; it was read as Windows "
                    "text (ANSI), and passeur will save it in UTF-8").format(path=path),)


def parse_config(path: Path, text: str) -> Config:
    """Validate the text of a config file; errors name `path` (never a temporary file)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            path, None, _("this is not valid TOML ({error})").format(error=exc)
        ) from None
    return _Validator(path, data).config()


def _default_watched_folders() -> tuple[Path, ...]:
    import platformdirs

    return (Path(platformdirs.user_downloads_dir()),)


class _Validator:
    """Turns the TOML tables into typed config, naming any faulty key."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(self.path, key, expected)

    def table(self, key: str, where: dict[str, Any] | None = None) -> dict[str, Any]:
        value = (self.data if where is None else where).get(key.rsplit(".", 1)[-1], {})
        if not isinstance(value, dict):
            raise self.fail(key, _("expected a table [{key}]").format(key=key))
        return value

    def value(self, where: dict[str, Any], key: str, name: str, kind: type[T], default: T) -> T:
        value = where.get(name, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key, _("expected {kind}").format(kind=_KIND_WORDS[kind]()))
        return value

    def text_list(self, where: dict[str, Any], key: str, name: str) -> tuple[str, ...]:
        value = where.get(name, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(key, _("expected a list of texts"))
        return tuple(value)

    def optional_path(self, where: dict[str, Any], key: str, name: str) -> Path | None:
        text = self.value(where, key, name, str, "")
        return Path(text).expanduser() if text else None

    def config(self) -> Config:
        language = self.value(self.data, "language", "language", str, "") or None
        if language not in (None, "fr", "en"):
            raise self.fail("language", _('expected "fr" or "en"'))
        sources = self.table("sources")
        removable = self.table("sources.removable", sources)
        folders = self.table("sources.folders", sources)
        watched = (
            tuple(Path(p).expanduser() for p in self.text_list(folders, "sources.folders.watch",
                                                                "watch"))
            if "watch" in folders
            else _default_watched_folders()
        )
        return Config(
            path=self.path,
            exists=True,
            language=language,
            app=self.app(),
            dossiers=self.dossiers(),
            trusted_keys=self.trusted_keys(),
            web=self.web(self.table("sources.web", sources)),
            removable=self.value(removable, "sources.removable.enabled", "enabled", bool, True),
            watched_folders=tuple(p for p in watched if p)
            if self.value(folders, "sources.folders.enabled", "enabled", bool, True)
            else (),
            notifications=self.notifications(),
            send=self.send(),
            email=self.email(),
            tray_backend=self.tray_backend(),
            notes=tuple(self.unknown_keys()),
        )

    def unknown_keys(self) -> list[str]:
        """Name each key or table the file has and passeur does not know, with the nearest
        known one: a typo must not pass silently, nor stop everything."""
        notes: list[str] = []
        self._unknown_in(self.data, "", notes)
        return notes

    def _unknown_in(self, table: dict[str, Any], prefix: str, notes: list[str]) -> None:
        known = KNOWN_KEYS.get(prefix.rstrip("."))
        if known is None:
            return
        for name, value in table.items():
            key = prefix + name
            if name not in known:
                notes.append(_unknown_key_note(self.path, key, prefix, known))
            elif isinstance(value, dict):
                self._unknown_in(value, key + ".", notes)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        self._unknown_in(item, key + ".", notes)

    def tray_backend(self) -> str:
        table = self.table("tray")
        backend = self.value(table, "tray.backend", "backend", str, "auto")
        if backend not in TRAY_BACKENDS:
            raise self.fail("tray.backend", _("expected one of: {names}").format(
                names=", ".join(TRAY_BACKENDS)))
        return backend

    def app(self) -> AppConfig:
        app = self.table("app")
        return AppConfig(
            name=self.value(app, "app.name", "name", str, AppConfig.name),
            process_names=self.text_list(app, "app.process_names", "process_names"),
            command=self.text_list(app, "app.command", "command"),
            inbox=self.optional_path(app, "app.inbox", "inbox"),
        )

    def array_of_tables(self, key: str) -> list[dict[str, Any]]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(key, _("expected [[{key}]] tables").format(key=key))
        return value

    def dossiers(self) -> tuple[DossierConfig, ...]:
        result: list[DossierConfig] = []
        for index, table in enumerate(self.array_of_tables("dossiers")):
            where = f"dossiers[{index}]"
            number = self.value(table, f"{where}.number", "number", str, "")
            if not DOSSIER_RE.fullmatch(number):
                raise self.fail(f"{where}.number", _("expected a dossier number such as 8502182"))
            if any(d.number == number for d in result):
                raise self.fail(f"{where}.number", _("dossier {number} is listed twice").format(
                    number=number))
            result.append(DossierConfig(
                number=number,
                name=self.value(table, f"{where}.name", "name", str, ""),
                folder=self.optional_path(table, f"{where}.folder", "folder"),
            ))
        return tuple(result)

    def trusted_keys(self) -> tuple[TrustedKey, ...]:
        result = []
        for index, table in enumerate(self.array_of_tables("trusted_keys")):
            where = f"trusted_keys[{index}].public_key"
            text = self.value(table, where, "public_key", str, "")
            try:
                key = PublicKey.from_text(text)
            except KeyFormatError:
                raise self.fail(where, _("expected a public key such as ed25519:…")) from None
            label = self.value(table, f"trusted_keys[{index}].label", "label", str, "")
            result.append(TrustedKey(key, label))
        return tuple(result)

    def web(self, table: dict[str, Any]) -> WebSource:
        url = self.value(table, "sources.web.url", "url", str, "")
        if url and not url.startswith(("https://", "http://")):
            raise self.fail("sources.web.url", _("expected an address starting with https://"))
        minutes = self.value(table, "sources.web.poll_minutes", "poll_minutes", int, 15)
        if not 1 <= minutes <= 24 * 60:
            raise self.fail("sources.web.poll_minutes", _("expected minutes between 1 and 1440"))
        ca_bundle = self.optional_path(table, "sources.web.ca_bundle", "ca_bundle")
        url, problem = self.web_url_problem(url)
        if not problem and ca_bundle is not None:
            problem = self.ca_bundle_problem(ca_bundle)
        return WebSource(url, minutes, ca_bundle, problem)

    def web_url_problem(self, url: str) -> tuple[str, str]:
        """Return the address without any user name or password in it, and why it cannot
        be used ("" when it can), naming the key."""
        bare, reason = web_address_problem(url)
        return bare, self.fail("sources.web.url", reason).message() if reason else ""

    def ca_bundle_problem(self, ca_bundle: Path) -> str:
        """Return why the CA bundle cannot be used, or ""."""
        from daemon.web.tls import CABundleError, check_ca_bundle

        try:
            check_ca_bundle(ca_bundle)
        except CABundleError as error:
            return self.fail("sources.web.ca_bundle", _("{file}: {why}").format(
                file=error.path, why=_(error.why))).message()
        return ""

    def notifications(self) -> dict[str, bool]:
        table = self.table("notifications")
        result = default_notifications()
        for name in table:
            if name not in result:
                raise self.fail(f"notifications.{name}", _("expected one of: {names}").format(
                    names=", ".join(result)))
            result[name] = self.value(table, f"notifications.{name}", name, bool,
                                      result[name])
        return result

    def bounded(self, where: dict[str, Any], key: str, default: int, low: int,
                high: int) -> int:
        name = key.rsplit(".", 1)[-1]
        value = self.value(where, key, name, int, default)
        if not low <= value <= high:
            raise self.fail(key, _("expected a whole number between {low} and {high}").format(
                low=low, high=high))
        return value

    def send(self) -> SendConfig:
        table = self.table("send")
        objectives = self.text_list(table, "send.objectives", "objectives")
        if any(not text.strip() for text in objectives):
            raise self.fail("send.objectives", _("expected a list of texts that are not empty"))
        return SendConfig(
            max_kbps=self.bounded(table, "send.max_kbps", 0, 0, 10**7),
            # 1 to 100 MB: no provider takes more (the message is built in memory), and 0 would
            # forbid e-mail altogether.
            email_max_mb=self.bounded(table, "send.email_max_mb", 20, 1, 100),
            objectives=tuple(text.strip() for text in objectives),
            folder=self.optional_path(table, "send.folder", "folder"),
            retry_seconds=self.bounded(table, "send.retry_seconds", 30, 1, 3600),
        )

    def email(self) -> EmailConfig:
        table = self.table("email")
        security = self.value(table, "email.security", "security", str, "starttls")
        if security not in EMAIL_SECURITY:
            raise self.fail("email.security", _('expected "starttls", "tls" or "none"'))
        host = self.value(table, "email.smtp_host", "smtp_host", str, "").strip()
        if security == "none" and host and not is_loopback_host(host):
            raise self.fail("email.security", _(
                '"none" sends the password and the dossier unencrypted, so it is accepted '
                'only for a server on this computer (localhost); expected "starttls" or '
                '"tls"'))
        return EmailConfig(
            smtp_host=host,
            smtp_port=self.bounded(table, "email.smtp_port", 0, 0, 65535),
            security=security,
            user=self.value(table, "email.user", "user", str, "").strip(),
            sender=self.address(table, "email.from", "from"),
            accountant=self.address(table, "email.accountant", "accountant"),
            timeout_s=self.bounded(table, "email.timeout_s", 60, 1, 3600),
            ca_bundle=self.optional_path(table, "email.ca_bundle", "ca_bundle"),
        )

    def address(self, where: dict[str, Any], key: str, name: str) -> str:
        text = self.value(where, key, name, str, "").strip()
        if text and not _EMAIL_RE.fullmatch(text):
            raise self.fail(key, _("expected an e-mail address such as "
                                   "comptable@cabinet.example"))
        return text


# Every key passeur reads, by table ("" is the top level; an array of tables by its name).
# [notifications] is checked by its own validation.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("language", "app", "dossiers", "trusted_keys", "sources", "notifications", "send",
         "email", "tray", "restart"),
    "tray": ("backend",),
    "restart": ("remind_after_minutes", "close_timeout_seconds"),  # read by daemon.restart
    "app": ("name", "process_names", "command", "inbox"),
    "dossiers": ("number", "name", "folder"),
    "trusted_keys": ("public_key", "label"),
    "sources": ("web", "removable", "folders"),
    "sources.web": ("url", "poll_minutes", "ca_bundle"),
    "sources.removable": ("enabled",),
    "sources.folders": ("enabled", "watch"),
    "send": ("max_kbps", "email_max_mb", "objectives", "folder", "retry_seconds"),
    "email": ("smtp_host", "smtp_port", "security", "user", "from", "accountant",
              "timeout_s", "ca_bundle"),
}


def _unknown_key_note(path: Path, key: str, prefix: str, known: tuple[str, ...]) -> str:
    name = key[len(prefix):]
    nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if nearest:
        return _("{path}: {key} is not a known key: did you mean {nearest}?").format(
            path=path, key=key, nearest=prefix + nearest[0])
    return _("{path}: {key} is not a known key; it is ignored").format(path=path, key=key)


# A deliberately plain check: one @, no spaces or angle brackets; the server has the last word.
_EMAIL_RE = re.compile(r"[^@\s<>\\\"]+@[^@\s<>\\\"]+\.[^@\s<>\\\".]+")


def is_email_address(text: str) -> bool:
    """Tell whether `text` looks like an e-mail address (the same check as the config's)."""
    return bool(_EMAIL_RE.fullmatch(text))


_KIND_WORDS: dict[type, Callable[[], str]] = {
    str: lambda: _("a text in quotes"),
    int: lambda: _("a whole number"),
    bool: lambda: _("true or false"),
}
