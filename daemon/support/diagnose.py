"""`passeur diagnose`: a zip for the accountant's support, with nothing secret or personal in it.

The archive (members described in docs/support.md) holds versions, the redacted
configuration, the last logs, the queue's summary and the last refusals, and what can be
read of the state without the service. Never the keyring's content, an exchange file or
a private key: every member is built here as text, and every text passes through the same
scrubbing (secrets, then the home folder and the user's name) before it is written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import re
import sqlite3
import sys
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.errors import ConfigError
from daemon.fsutil import atomic_writer
from daemon.i18n import _, current_language
from daemon.logs import log_files
from daemon.support.redact import (
    Personal,
    redact_config,
    redact_secrets,
    register_secret,
)

if TYPE_CHECKING:
    from daemon.config import Config, Paths
    from daemon.context import Context

log = logging.getLogger(__name__)

PREFIX = "passeur-diagnostic-"
LOGS_BUDGET = 2 << 20  # bytes of log text in the archive, newest first
CONFIG_READ_LIMIT = 1 << 20
NOTE_READ_LIMIT = 64 << 10
HISTORY_KEPT = 50
REFUSALS_KEPT = 20
# Environment variables that tell the support which desktop this is (no personal value).
DESKTOP_VARIABLES = ("XDG_SESSION_TYPE", "XDG_CURRENT_DESKTOP", "DESKTOP_SESSION",
                     "PYSTRAY_BACKEND")
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


class DiagnoseError(Exception):
    """The archive could not be written; the message names the place and the reason."""


def default_folder() -> Path:
    """Return where the archive goes by default: the Desktop, else Downloads, else here."""
    import platformdirs

    for folder in (platformdirs.user_desktop_dir(), platformdirs.user_downloads_dir()):
        if folder and Path(folder).is_dir():
            return Path(folder)
    return Path.cwd()


def build_archive(ctx: Context, folder: Path | None = None, now: datetime | None = None,
                  home: str | None = None) -> Path:
    """Write the diagnostic zip into `folder` (default_folder() when None); return its path.

    `home` is the --home option, if any (start at login's expected command depends on it).
    Raises DiagnoseError when it cannot be written.
    """
    now = now or datetime.now().astimezone()
    config, config_error = _read_config(ctx)
    if config is not None:
        _learn_secrets(config)
    scrub = _scrubber(Personal.of_this_user())
    members = {
        "versions.txt": versions_text(),
        "config.toml": config_text(ctx.paths.config_file, config_error),
        "status.json": json.dumps(status(ctx, config, config_error, now, home),
                                  ensure_ascii=False, indent=2) + "\n",
        "queue.txt": queue_text(ctx),
        **log_members(ctx.paths.logs),
    }
    target = _free_name(folder or default_folder(), now)
    try:
        _write_zip(target, {name: scrub(text) for name, text in members.items()}, now)
    except OSError as exc:
        raise DiagnoseError(_("Cannot write the diagnostic archive {path}: {reason}").format(
            path=target, reason=exc.strerror or exc)) from None
    return target


def _scrubber(personal: Personal) -> Callable[[str], str]:
    def scrub(text: str) -> str:
        return personal.redact(redact_secrets(text))

    return scrub


def _read_config(ctx: Context) -> tuple[Config | None, ConfigError | None]:
    try:
        return ctx.config, None
    except ConfigError as exc:
        return None, exc


def _learn_secrets(config: Config) -> None:
    """Read the stored passwords and tokens only to blank them out wherever they appear
    (an old log line, a comment): what was written before they were known is covered too."""
    from urllib.parse import urlsplit

    register_secret(urlsplit(config.web.url).password)
    try:
        from daemon.web.credentials import CredentialStore

        store = CredentialStore()  # its get() registers what it reads
        for dossier in config.dossiers:
            store.get(dossier.number)
    except Exception as exc:  # no keyring, a locked one, a broken backend: go on without
        log.info("diagnose: stored credentials not read (%s)", type(exc).__name__)


# ---------------------------------------------------------------- members


def versions_text() -> str:
    """Return passeur's, Python's, the system's and the dependencies' versions."""
    from daemon.platform import has_display

    lines = [
        f"passeur {__version__}",
        f"Python {platform.python_version()} ({platform.python_implementation()}) "
        f"{sys.executable}",
        f"platform {platform.platform()} ({platform.machine()})",
        f"frozen {'yes' if getattr(sys, 'frozen', False) else 'no'}",
        " ".join(["language", current_language(), *_variables(LOCALE_VARIABLES)]),
        " ".join(["display", "yes" if has_display() else "no",
                  *_variables(("DISPLAY", "WAYLAND_DISPLAY", *DESKTOP_VARIABLES))]),
        f"notifications-bus {'yes' if os.environ.get('DBUS_SESSION_BUS_ADDRESS') else 'no'}",
        f"keyring {_keyring_backend()}",
        "",
        "dependencies:",
        *(f"  {name} {version}" for name, version in dependency_versions()),
    ]
    return "\n".join(lines) + "\n"


def _variables(names: tuple[str, ...]) -> list[str]:
    return [f"{name}={os.environ[name]}" for name in names if os.environ.get(name)]


def dependency_versions() -> list[tuple[str, str]]:
    """Return (name, installed version) of each run-time dependency of passeur."""
    try:
        requirements = importlib.metadata.requires("passeur") or []
    except importlib.metadata.PackageNotFoundError:
        return [("passeur", _("no package information (a frozen build?)"))]
    result = []
    for requirement in requirements:
        if "extra ==" in requirement:
            continue  # the tests' tools
        match = re.match(r"[A-Za-z0-9._-]+", requirement)
        if match is None:
            continue
        name = match.group(0)
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = _("not installed")
        result.append((name, version))
    return result


def _keyring_backend() -> str:
    """Return the keyring backend's name (only its name: nothing is read from it here)."""
    try:
        import keyring

        backend = keyring.get_keyring()
    except Exception as exc:  # a broken backend is itself the finding
        return f"unavailable ({type(exc).__name__})"
    return f"{type(backend).__module__}.{type(backend).__qualname__}"


def config_text(path: Path, error: ConfigError | None) -> str:
    """Return the configuration file with its secret values blanked out (and, when it is
    refused, why, as a comment on top)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(CONFIG_READ_LIMIT).decode("utf-8", "replace")
    except FileNotFoundError:
        return "# " + _("No configuration file ({path}): the defaults apply").format(
            path=path) + "\n"
    except OSError as exc:
        return "# " + _("The configuration file {path} cannot be read: {reason}").format(
            path=path, reason=exc.strerror or exc) + "\n"
    header = ""
    if error is not None:
        header = "# " + _("passeur refuses this configuration: {reason}").format(
            reason=error.message()) + "\n"
    return header + redact_config(raw)


def log_members(folder: Path, budget: int = LOGS_BUDGET) -> dict[str, str]:
    """Return the newest log files, as `logs/<name>`, `budget` bytes at most in all; the
    oldest one kept may be cut at the front (at a line's start), and none older follows."""
    members: dict[str, str] = {}
    for path in log_files(folder):
        try:
            data, whole = _tail_bytes(path, budget)
        except OSError:
            continue
        budget -= len(data)
        members[f"logs/{path.name}"] = data.decode("utf-8", "replace")
        if not whole or budget <= 0:
            break
    return members


def _tail_bytes(path: Path, limit: int) -> tuple[bytes, bool]:
    """Return the file's last `limit` bytes at most, from a line's start; and whether that
    is the whole file."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size <= limit:
            return handle.read(), True
        handle.seek(size - limit)
        data = handle.read(limit)
    return data[data.find(b"\n") + 1:], False


def queue_text(ctx: Context) -> str:
    """Return the queue's summary in words: counts, waiting updates, recent activity, and the
    last refusals kept in quarantine."""
    lines = _queue_lines(ctx)
    lines += ["", _("Last refusals (quarantine):")]
    refusals = quarantine_notes(ctx.paths.quarantine)
    lines += [f"  {_note_line(note)}" for note in refusals] or ["  " + _("none")]
    return "\n".join(lines) + "\n"


def _queue_lines(ctx: Context) -> list[str]:
    from daemon.presentation import describe_activity, state_words
    from daemon.queue import State

    if not ctx.paths.database.exists():
        return [_("No queue yet ({path})").format(path=ctx.paths.database)]
    try:
        listing = ctx.queue.listing(list(State))
        history = ctx.queue.history(HISTORY_KEPT)
    except (sqlite3.Error, OSError) as exc:
        return [_("The queue cannot be read: {reason}").format(reason=exc)]
    order = {state: index for index, state in enumerate(State)}
    counts = Counter((order[line.state], state_words(line)) for line in listing)
    lines = [_("List of entry files to integrate")]
    lines += ["  " + _("{label}: {value}").format(label=words, value=count)
              for (_order, words), count in sorted(counts.items())] or ["  " + _("none")]
    lines += ["", _("Waiting updates:")]
    waiting = [line for line in listing if line.state is State.WAITING]
    lines += [f"  {line.id:>5}  {line.name}  {_local(line.created)}  {state_words(line)}"
              for line in waiting] or ["  " + _("none")]
    lines += ["", _("Recent activity (newest last):")]
    lines += [f"  {_local(entry.at)}  {describe_activity(entry.action, entry.detail)}"
              for entry in reversed(history)] or ["  " + _("none")]
    return lines


def _local(iso: str) -> str:
    from daemon.presentation import format_datetime

    try:
        return format_datetime(datetime.fromisoformat(iso).astimezone())
    except (TypeError, ValueError):
        return str(iso)


def quarantine_notes(folder: Path, kept: int = REFUSALS_KEPT) -> list[dict[str, Any]]:
    """Return the newest quarantine notes (`*.reason.json`), newest first: never the files."""
    try:
        notes = sorted(folder.glob("*.reason.json"), reverse=True)  # named by time stamp
    except OSError:
        return []
    result = []
    for path in notes[:kept]:
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read(NOTE_READ_LIMIT))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            result.append(data)
    return result


def _note_line(note: dict[str, Any]) -> str:
    reason = note.get("reason_fr" if current_language() == "fr" else "reason_en", "")
    at = _quarantine_time(str(note.get("at", "")))
    return f"{at}  {note.get('file', '')}  {note.get('code', '')}  {reason}"


def _quarantine_time(stamp: str) -> str:
    """Return a quarantine note's time stamp (daemon.intake writes it in UTC) as local time."""
    from daemon.presentation import format_datetime

    try:
        moment = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return stamp
    return format_datetime(moment.astimezone())


def status(ctx: Context, config: Config | None, error: ConfigError | None,
           now: datetime, home: str | None = None) -> dict[str, Any]:
    """Return what can be read of passeur's state without the service (and the running
    service's own status when one answers)."""
    paths = ctx.paths
    return {
        "generated_at": now.isoformat(timespec="seconds"),
        "passeur": __version__,
        "language": current_language(),
        "config": _config_summary(paths.config_file, config, error),
        "folders": {name: {"path": str(path), "exists": path.exists()} for name, path in (
            ("data", paths.data), ("spool", paths.spool), ("quarantine", paths.quarantine),
            ("trash", paths.trash), ("logs", paths.logs))},
        "queue": _queue_counts(ctx),
        "quarantine_notes": len(_glob(paths.quarantine, "*.reason.json")),
        "pause": _pause(paths.data / "pause.json"),
        "web": _web_state(paths.data / "web"),
        "autostart": autostart_status(paths, home),
        "service": _service_status(ctx),
    }


def _config_summary(path: Path, config: Config | None,
                    error: ConfigError | None) -> dict[str, Any]:
    if config is None:
        return {"file": str(path), "exists": path.exists(), "valid": False,
                "error": error.message() if error else None}
    return {
        "file": str(path), "exists": config.exists, "valid": True, "error": None,
        "dossiers": [d.number for d in config.dossiers],
        "trusted_keys": [t.key.key_id for t in config.trusted_keys],
        "web": bool(config.web.url), "poll_minutes": config.web.poll_minutes,
        "removable": config.removable, "watched_folders": len(config.watched_folders),
        "app": config.app.name, "app_inbox": config.app.inbox is not None,
        "app_command": bool(config.app.command),
    }


def _queue_counts(ctx: Context) -> dict[str, Any] | None:
    from daemon.queue import State

    if not ctx.paths.database.exists():
        return None
    try:
        listing = ctx.queue.listing(list(State))
    except (sqlite3.Error, OSError) as exc:
        return {"error": str(exc)}
    states = Counter(str(line.state) for line in listing)
    return {"by_state": dict(sorted(states.items())),
            "waiting": states.get(str(State.WAITING), 0),
            "restart_required": sum(1 for line in listing
                                    if line.state is State.WAITING and line.restart_required)}


def _glob(folder: Path, pattern: str) -> list[Path]:
    try:
        return list(folder.glob(pattern))
    except OSError:
        return []


def _pause(path: Path) -> dict[str, Any]:
    """Read the pause file as it is (never through the store: that one rewrites it)."""
    from daemon.pause import PauseState

    try:
        return PauseState.from_json(json.loads(path.read_bytes())).to_json()
    except FileNotFoundError:
        return PauseState().to_json()
    except (OSError, ValueError) as exc:
        return {"error": str(exc)}


def _web_state(folder: Path) -> dict[str, Any] | None:
    """Return the last verified index of each dossier, as the web source remembers it."""
    from daemon.naming import DOSSIER_RE
    from daemon.web.state import StateStore

    if not folder.is_dir():
        return None
    store = StateStore(folder)
    result: dict[str, Any] = {}
    for path in sorted(_glob(folder, "*.json")):
        if not DOSSIER_RE.fullmatch(path.stem):
            continue
        state = store.load(path.stem)
        result[path.stem] = {
            "index_version": state.version, "etag": state.etag,
            "saved_at": datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat(
                timespec="seconds"),
        }
    return result


def autostart_status(paths: Paths, home: str | None) -> Any:
    """Return start at login's status (`passeur autostart status --json`), or an error."""
    try:
        from daemon.platform import autostart
    except ImportError:
        return None
    try:
        return _plain(autostart.summary(paths, home))
    except Exception as exc:  # the archive must be written all the same
        return {"error": f"{type(exc).__name__}: {exc}"}


def _service_status(ctx: Context) -> Any:
    """Return the running service's status (`passeur status --json`), None when none runs."""
    try:
        from daemon.cli import service_api

        remote = service_api(ctx)
        if remote is None:
            return None
        try:
            return _plain(remote.status().to_json())
        finally:
            remote.close()
    except Exception as exc:  # a service that answers badly is a finding too
        return {"error": f"{type(exc).__name__}: {exc}"}


def _plain(value: Any) -> Any:
    """Return `value` as JSON-ready data (dataclasses, enums and paths included)."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(asdict(value))
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# ---------------------------------------------------------------- writing


def _free_name(folder: Path, now: datetime) -> Path:
    stem = f"{PREFIX}{now.strftime('%Y%m%d-%H%M%S')}"
    target = folder / f"{stem}.zip"
    number = 2
    while target.exists():  # two in the same second: never replace the first
        target = folder / f"{stem}-{number}.zip"
        number += 1
    return target


def _write_zip(target: Path, members: dict[str, str], now: datetime) -> None:
    """Write the archive durably (temp → fsync → rename), readable by the user only."""
    stamp = now.timetuple()[:6]
    with atomic_writer(target, created=lambda temp: os.chmod(temp, 0o600)) as raw, \
            zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in members.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, text.encode("utf-8"))


def cmd_diagnose(ctx: Context, args: argparse.Namespace) -> int:
    """Write the diagnostic archive and say where it is."""
    from daemon.cli import EXIT_FAILED, EXIT_OK, err, out

    try:
        path = build_archive(ctx, args.out, home=getattr(args, "home", None))
    except DiagnoseError as exc:
        err(str(exc))
        return EXIT_FAILED
    out(_("Diagnostic archive written: {path}").format(path=path))
    out(_("Send it to your accountant's support: it holds no password, no key and no "
          "exchange file."))
    return EXIT_OK
