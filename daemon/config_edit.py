"""Changes to the config file made by the CLI, keeping the user's comments and layout."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from daemon.config import (
    NOTIFICATION_EVENTS,
    Config,
    load_config,
    parse_config,
    read_config_text,
)
from daemon.errors import N_, ConfigError
from daemon.fsutil import atomic_write_bytes, is_disk_full
from daemon.i18n import _
from daemon.keys import PublicKey


def template() -> str:
    """Return the commented config file written at first use, in the active language:
    every table is there, so that a hand edit only fills in values."""
    lines = [
        "# " + _("passeur settings. Lines starting with # are comments."),
        "# " + _("Settings (in the passeur menu) changes this file for you; passeur reads "
                 "it again as soon as it is saved."),
        "",
        "# " + _('Language of passeur: "fr" or "en" (by default, the system\'s).'),
        '# language = "fr"',
        "",
        "[app]",
        "# " + _("The accounting application passeur hands the updates to."),
        'name = "Isacompta"',
        "# " + _("Its program names, to know whether it is open:"),
        '# process_names = ["isacompta"]',
        "# " + _("The command that starts it again after a restart:"),
        '# command = ["isacompta"]',
        "# " + _("The folder it integrates updates from:"),
        '# inbox = "~/Isacompta/echanges"',
        "",
        "# " + _("One [[dossiers]] table per dossier kept on this computer:"),
        "# [[dossiers]]",
        '# number = "8502182"',
        '# name = "GAEC LE GUYON"',
        '# folder = "~/Isacompta/dossiers/8502182"',
        "",
        "# " + _("One [[trusted_keys]] table per key of the accountant's firm (its "
                 "invitation file fills it in):"),
        "# [[trusted_keys]]",
        '# public_key = "ed25519:…"',
        '# label = "Cabinet Dupont"',
        "",
        "[sources.web]",
        "# " + _("The accountant's web server, looked at every poll_minutes minutes:"),
        '# url = "https://echanges.cabinet.example/passeur/"',
        "poll_minutes = 15",
        "# " + _("Extra certificates of the server, if the accountant gives you a file (the "
                 "connection is always verified):"),
        '# ca_bundle = "~/cabinet-ca.pem"',
        "",
        "[sources.removable]",
        "# " + _("USB keys: updates found on a key plugged in are received."),
        "enabled = true",
        "",
        "[sources.folders]",
        "# " + _("Watched folders (by default, the Downloads folder):"),
        "enabled = true",
        '# watch = ["~/Téléchargements"]',
        "",
        "[send]",
        "# " + _("Sending the dossier to the accountant: a cap on the web upload in "
                 "kilobytes per second (0: none), the largest e-mail in MB, the exchange's "
                 "objectives (the first is the default) and the default folder:"),
        "# max_kbps = 0",
        "# email_max_mb = 20",
        '# objectives = ["Envoi pour révision", "Envoi pour bilan"]',
        '# folder = "/media/cle"',
        "",
        "[email]",
        "# " + _("Sending the dossier by e-mail (the password is kept in the system "
                 "keyring):"),
        '# smtp_host = "smtp.example.fr"',
        "# smtp_port = 587",
        '# security = "starttls"',
        '# user = "gaec@example.fr"',
        '# from = "gaec@example.fr"',
        '# accountant = "comptable@cabinet.example"',
        "# timeout_s = 60",
        '# ca_bundle = ""',
        "",
        "[notifications]",
        "# " + _("Which events show a notification (true: shown, false: not shown):"),
        *_notification_lines(),
        "",
        "[restart]",
        "# " + _("When an update needs the accounting application to be restarted, Later "
                 "asks again after remind_after_minutes;"),
        "# " + _("the application may take close_timeout_seconds to close:"),
        "remind_after_minutes = 60",
        "close_timeout_seconds = 60",
        "",
        "[tray]",
        "# " + _('How the icon is shown next to the clock: "auto" lets passeur choose '
                 '(on Linux also "appindicator", "gtk" or "xorg"):'),
        'backend = "auto"',
    ]
    return "\n".join(lines) + "\n"


# What each kind of notification is about: the settings window's words, and the
# template's comments.
NOTIFICATION_LABELS = {
    "received": N_("An update was received"),
    "rejected": N_("A file was refused"),
    "restart_required": N_("The application must be restarted"),
    "sent": N_("A dossier was sent"),
    "offline": N_("The accountant's server cannot be reached"),
}


def _notification_lines() -> list[str]:
    """Every kind of notification the config knows, each with what it is about."""
    lines = []
    for kind in NOTIFICATION_EVENTS:
        words = NOTIFICATION_LABELS.get(kind)
        lines.append(f"{kind} = true" + (f"  # {_(words)}" if words else ""))
    return lines


def _edit(path: Path, change: Callable[[tomlkit.TOMLDocument], object]) -> Config:
    text = read_config_text(path)[0] if path.exists() else template()
    document = tomlkit.parse(text)
    change(document)
    new_text = tomlkit.dumps(document)
    # Validate before replacing so that a CLI command can never leave a broken config;
    # the text is checked in memory, so an error names the user's file.
    parse_config(path, new_text)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(path, new_text)
    return load_config(path)


def _write(path: Path, text: str) -> None:
    """Replace the file whole, readable by the user alone (0600, whatever an older version
    left): it names the dossiers, the accountant's site and the mail account."""
    try:
        atomic_write_bytes(path, text.encode("utf-8"), private=True)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        # The writer removed its temporary file; the previous settings are still whole.
        raise ConfigError(path, None, _("the disk is full: {detail}").format(detail=_(
            "the settings were not changed; free some space, then try again"))) from None


def _tables(document: tomlkit.TOMLDocument, key: str) -> AoT:
    if key not in document:
        document.append(key, tomlkit.aot())
    tables = document[key]
    assert isinstance(tables, AoT)
    return tables


def _remove_where(document: tomlkit.TOMLDocument, key: str, field: str, value: str) -> bool:
    tables = _tables(document, key)
    keep = [t for t in tables if t.get(field) != value]
    if len(keep) == len(tables):
        return False
    del document[key]
    if keep:
        document.append(key, tomlkit.aot())
        for table in keep:
            _tables(document, key).append(table)
    return True


def ensure_config(path: Path) -> Config:
    """Write the commented template if there is no config yet."""
    if not path.exists():
        return _edit(path, lambda document: None)
    return load_config(path)


def add_dossier(path: Path, number: str, name: str, folder: str = "") -> Config:
    """Add a dossier, or rename an existing one (its folder stays unless a new one is
    given)."""
    previous = load_config(path).dossier(number) if path.exists() else None
    if not folder and previous is not None and previous.folder is not None:
        folder = str(previous.folder)

    def change(document: tomlkit.TOMLDocument) -> None:
        _remove_where(document, "dossiers", "number", number)
        table: Table = tomlkit.table()
        table["number"] = number
        table["name"] = name
        if folder:
            table["folder"] = folder
        _tables(document, "dossiers").append(table)

    return _edit(path, change)


def remove_dossier(path: Path, number: str) -> bool:
    """Remove a dossier; return False when it was not configured."""
    removed = False

    def change(document: tomlkit.TOMLDocument) -> None:
        nonlocal removed
        removed = _remove_where(document, "dossiers", "number", number)

    _edit(path, change)
    return removed


def add_trusted_key(path: Path, key: PublicKey, label: str = "") -> Config:
    """Trust a public key (idempotent)."""

    def change(document: tomlkit.TOMLDocument) -> None:
        _remove_where(document, "trusted_keys", "public_key", key.text)
        table: Table = tomlkit.table()
        table["public_key"] = key.text
        table["label"] = label
        _tables(document, "trusted_keys").append(table)

    return _edit(path, change)


def remove_trusted_key(path: Path, key_id: str) -> bool:
    """Stop trusting the key with this id (or its full text); False when unknown."""
    config = load_config(path)
    match = next(
        (t.key for t in config.trusted_keys if key_id in (t.key.key_id, t.key.text)), None
    )
    if match is None:
        return False
    _edit(path, lambda document: _remove_where(document, "trusted_keys", "public_key",
                                               match.text))
    return True


# A value of None leaves a key as it is; an empty one ("", 0, []) removes it (the default
# then applies).
TableValue = bool | str | int | Sequence[str] | None


def _table_at(document: tomlkit.TOMLDocument, name: str) -> Table:
    """Return the table `name` ("sources.web"), created (as [a.b]) when missing."""
    where: Any = document
    for part in name.split("."):
        if part not in where:
            where.append(part, tomlkit.table(is_super_table="." not in name or None))
        where = where[part]
    assert isinstance(where, Table)
    return where


def _set_table(document: tomlkit.TOMLDocument, name: str,
               values: Mapping[str, TableValue]) -> None:
    table = _table_at(document, name)
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            table[key] = value
        elif value in ("", 0) or (not isinstance(value, str | int) and not value):
            table.pop(key, None)
        elif isinstance(value, str | int):
            table[key] = value
        else:
            table[key] = list(value)


def set_send(path: Path, *, max_kbps: int | None = None, email_max_mb: int | None = None,
             objectives: Sequence[str] | None = None, folder: str | None = None) -> Config:
    """Set keys of the `[send]` table (None: unchanged; empty: back to the default)."""
    values: dict[str, TableValue] = {"max_kbps": max_kbps, "email_max_mb": email_max_mb,
                                     "objectives": objectives, "folder": folder}
    return _edit(path, lambda document: _set_table(document, "send", values))


def set_email(path: Path, *, smtp_host: str | None = None, smtp_port: int | None = None,
              security: str | None = None, user: str | None = None,
              sender: str | None = None, accountant: str | None = None,
              timeout_s: int | None = None, ca_bundle: str | None = None) -> Config:
    """Set keys of the `[email]` table (None: unchanged; empty: back to the default).

    `sender` is the `from` key (a Python keyword).
    """
    values: dict[str, TableValue] = {
        "smtp_host": smtp_host, "smtp_port": smtp_port, "security": security, "user": user,
        "from": sender, "accountant": accountant, "timeout_s": timeout_s,
        "ca_bundle": ca_bundle}
    return _edit(path, lambda document: _set_table(document, "email", values))


def set_web(path: Path, *, url: str | None = None, poll_minutes: int | None = None,
            ca_bundle: str | None = None) -> Config:
    """Set keys of `[sources.web]` (None: unchanged; empty: back to the default)."""
    values: dict[str, TableValue] = {"url": url, "poll_minutes": poll_minutes,
                                     "ca_bundle": ca_bundle}
    return _edit(path, lambda document: _set_table(document, "sources.web", values))


def set_app(path: Path, *, name: str | None = None,
            process_names: Sequence[str] | None = None, command: Sequence[str] | None = None,
            inbox: str | None = None) -> Config:
    """Set keys of `[app]`, the accounting application (None: unchanged)."""
    values: dict[str, TableValue] = {"name": name, "process_names": process_names,
                                     "command": command, "inbox": inbox}
    return _edit(path, lambda document: _set_table(document, "app", values))


def set_sources(path: Path, *, removable: bool | None = None,
                folders_enabled: bool | None = None,
                watch: Sequence[str] | None = None) -> Config:
    """Turn USB keys and watched folders on or off, and set the watched folders.

    An empty `watch` list is written as it is (no folder), unlike the other setters: the
    default (Downloads) applies only when the key is absent.
    """

    def change(document: tomlkit.TOMLDocument) -> None:
        if removable is not None:
            _set_table(document, "sources.removable", {"enabled": removable})
        folders = _table_at(document, "sources.folders")
        if folders_enabled is not None:
            folders["enabled"] = folders_enabled
        if watch is not None:
            folders["watch"] = list(watch)

    return _edit(path, change)


def set_notifications(path: Path, choices: Mapping[str, bool]) -> Config:
    """Say which events show a notification."""
    return _edit(path, lambda document: _set_table(document, "notifications", dict(choices)))


def set_language(path: Path, language: str) -> Config:
    """Set the language ("fr", "en"; "": the system's)."""

    def change(document: tomlkit.TOMLDocument) -> None:
        if language:
            document["language"] = language
        else:
            document.pop("language", None)

    return _edit(path, change)
