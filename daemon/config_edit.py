"""Changes to the config file made by the CLI, keeping the user's comments and layout."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import tomlkit
from tomlkit.items import AoT, Table

from daemon.config import Config, load_config
from daemon.fsutil import atomic_write_bytes
from daemon.keys import PublicKey

TEMPLATE = """\
# passeur configuration (see the README for every key).

# language = "fr"   # "fr" or "en"; by default, French unless the system asks for English

[app]
name = "Isacompta"
# process_names = ["isacompta"]
# command = ["isacompta"]
# inbox = "~/Isacompta/echanges"

[sources.web]
# url = "https://echanges.cabinet.example/"
poll_minutes = 15

[sources.removable]
enabled = true

[notifications]
received = true
rejected = true
restart_required = true
sent = true
offline = true
"""


def _edit(path: Path, change: Callable[[tomlkit.TOMLDocument], object]) -> Config:
    text = path.read_text("utf-8") if path.exists() else TEMPLATE
    document = tomlkit.parse(text)
    change(document)
    new_text = tomlkit.dumps(document)
    # Validate before replacing so that a CLI command can never leave a broken config.
    staged = path.with_name(path.name + ".check")
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_text(new_text, "utf-8")
    try:
        load_config(staged)
    finally:
        staged.unlink()
    atomic_write_bytes(path, new_text.encode("utf-8"))
    return load_config(path)


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
    """Add (or update) a dossier."""

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
TableValue = str | int | Sequence[str] | None


def _set_table(document: tomlkit.TOMLDocument, name: str,
               values: Mapping[str, TableValue]) -> None:
    if name not in document:
        document.append(name, tomlkit.table())
    table = document[name]
    assert isinstance(table, Table)
    for key, value in values.items():
        if value is None:
            continue
        if value in ("", 0) or (not isinstance(value, str | int) and not value):
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
