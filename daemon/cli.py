"""The `passeur` command line. Exit codes: 0 success, 1 refused or failed, 2 usage, 3 config."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon import __version__, i18n
from daemon.commands import Handler
from daemon.context import Context
from daemon.errors import N_, ConfigError, Rejected
from daemon.fsutil import is_disk_full
from daemon.i18n import _, ngettext

if TYPE_CHECKING:
    from daemon.control.client import RemoteCore
    from daemon.core import CoreAPI
    from daemon.status import Status

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 3
# The accountant's tools and the demo do not read the farmer's configuration.
# Nor do the commands that must work to repair it (start at login, the log, support).
COMMANDS_WITHOUT_CONFIG = frozenset({"keygen", "pack", "publish", "collect", "invite",
                                     "demo", "autostart", "log", "diagnose"})


def out(text: str = "") -> None:
    """Print a line for the user."""
    print(text)


def err(text: str) -> None:
    """Print an error line for the user."""
    print(text, file=sys.stderr)


def emit_json(value: Any) -> None:
    """Print a JSON document (stable, documented in docs/cli.md)."""
    print(json.dumps(value, ensure_ascii=False, indent=2))


def service_api(ctx: Context) -> RemoteCore | None:
    """Return the running service's core API, or None when no service runs for this home."""
    from daemon.control.client import RemoteCore

    return RemoteCore.connect(ctx.paths)


def core_api(ctx: Context) -> CoreAPI:
    """Return the core API to act through: the running service's (so that the tray shows
    the effect at once and events are published once), else a local one."""
    remote = service_api(ctx)
    if remote is not None:
        return remote
    from daemon.core import Core

    return Core(ctx)


# ---------------------------------------------------------------- keys and packing


def cmd_keygen(ctx: Context, args: argparse.Namespace) -> int:
    """Create the accountant firm's signing key pair."""
    from daemon.keys import SigningKey

    key = SigningKey.generate()
    try:
        key.save(args.out)
    except FileExistsError:
        err(_("{path} already exists: choose another file name").format(path=args.out))
        return EXIT_FAILED
    out(key.public.text)
    err(_("Private key written to {path} (keep it secret); key id {key_id}").format(
        path=args.out, key_id=key.public.key_id))
    return EXIT_OK


def _fiscal_year(text: str) -> tuple[date, date]:
    try:
        start, end = (date.fromisoformat(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            _("expected START:END, e.g. 2020-01-01:2020-12-31")
        ) from None
    return start, end


def _source(text: str) -> tuple[str, Path]:
    module, sep, path = text.partition("=")
    if not sep:
        return "", Path(text)
    return module, Path(path)


def cmd_pack(ctx: Context, args: argparse.Namespace) -> int:
    """Build a signed exchange file from content files."""
    from daemon.exchange import Source, pack_exchange
    from daemon.keys import KeyFormatError, SigningKey
    from daemon.manifest import MODULES, Manifest
    from daemon.naming import Kind

    try:
        key = SigningKey.load(args.key)
    except (KeyFormatError, OSError):
        err(_("{path}: not a passeur private key").format(path=args.key))
        return EXIT_FAILED
    sources: list[Source] = []
    modules: dict[str, list[str]] = {}
    for module, path in args.files:
        if module and module not in MODULES:
            err(_("unknown module {module} (expected one of: {names})").format(
                module=module, names=", ".join(MODULES)))
            return EXIT_USAGE
        inner = f"{module}/{path.name}" if module else path.name
        sources.append(Source(inner, path))
        if module:
            modules.setdefault(module, []).append(inner)
    generated = args.date or datetime.now().astimezone()
    manifest = Manifest(
        kind=Kind(args.kind), dossier=args.dossier, dossier_name=args.name,
        generated_at=generated.replace(microsecond=0),
        fiscal_year_start=args.fiscal_year[0], fiscal_year_end=args.fiscal_year[1],
        sequence=args.sequence, key_id="", files=(),
        modules={m: tuple(items) for m, items in modules.items()},
        delta_only=args.delta_only, etalon=args.etalon, objective=args.objective,
        comments=args.comments,
    )
    try:
        path = pack_exchange(args.out, key, manifest, sources, store=args.store)
    except (OSError, Rejected) as exc:
        err(str(exc))
        return EXIT_FAILED
    out(str(path))
    return EXIT_OK


def _aware_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(text) from None
    return value if value.tzinfo else value.astimezone()


# ---------------------------------------------------------------- configuration


def cmd_trust(ctx: Context, args: argparse.Namespace) -> int:
    """Add, list or remove trusted public keys."""
    from daemon import config_edit
    from daemon.keys import KeyFormatError, PublicKey

    if args.action == "add":
        try:
            key = PublicKey.from_text(args.key)
        except KeyFormatError:
            err(_("not a public key: {text} (expected ed25519:…)").format(text=args.key))
            return EXIT_FAILED
        config_edit.add_trusted_key(ctx.config_path, key, args.label)
        out(_("Key {key_id} is now trusted").format(key_id=key.key_id))
    elif args.action == "remove":
        if not config_edit.remove_trusted_key(ctx.config_path, args.key):
            err(_("No trusted key {key_id}").format(key_id=args.key))
            return EXIT_FAILED
        out(_("Key {key_id} is no longer trusted").format(key_id=args.key))
    else:
        for trusted in ctx.config.trusted_keys:
            out(f"{trusted.key.key_id}  {trusted.key.text}  {trusted.label}".rstrip())
    return EXIT_OK


def cmd_dossier(ctx: Context, args: argparse.Namespace) -> int:
    """Add, list or remove dossiers."""
    from daemon import config_edit

    if args.action == "add":
        previous = ctx.config.dossier(args.number)
        config_edit.add_dossier(ctx.config_path, args.number, args.name, args.folder or "")
        if previous is None:
            out(_("Dossier {number} added").format(number=args.number))
        elif previous.name != args.name:
            out(_("Dossier {number} was already there: renamed from « {old} » to « {new} »")
                .format(number=args.number, old=previous.name, new=args.name))
        else:
            out(_("Dossier {number} was already there: updated").format(number=args.number))
    elif args.action == "remove":
        if not config_edit.remove_dossier(ctx.config_path, args.number):
            err(_("No dossier {number}").format(number=args.number))
            return EXIT_FAILED
        out(_("Dossier {number} removed").format(number=args.number))
    else:
        for dossier in ctx.config.dossiers:
            folder = f"  {dossier.folder}" if dossier.folder else ""
            out(f"{dossier.number}  {dossier.name}{folder}")
    return EXIT_OK


def cmd_config(ctx: Context, args: argparse.Namespace) -> int:
    """Show the effective configuration and folders."""
    config, paths = ctx.config, ctx.paths
    data = {
        "config_file": str(paths.config_file),
        "config_exists": config.exists,
        "language": i18n.current_language(),
        "folders": {"data": str(paths.data), "spool": str(paths.spool),
                    "quarantine": str(paths.quarantine), "trash": str(paths.trash),
                    "logs": str(paths.logs)},
        "app": {"name": config.app.name, "process_names": list(config.app.process_names),
                "command": list(config.app.command),
                "inbox": str(config.app.inbox) if config.app.inbox else None},
        "dossiers": [{"number": d.number, "name": d.name,
                      "folder": str(d.folder) if d.folder else None} for d in config.dossiers],
        "trusted_keys": [{"id": t.key.key_id, "public_key": t.key.text, "label": t.label}
                         for t in config.trusted_keys],
        "sources": {"web": {"url": config.web.url, "poll_minutes": config.web.poll_minutes,
                            "problem": config.web.problem or None},
                    "removable": config.removable,
                    "watched_folders": [str(p) for p in config.watched_folders]},
        "notifications": config.notifications,
        "send": {"max_kbps": config.send.max_kbps, "email_max_mb": config.send.email_max_mb,
                 "objectives": list(config.send.objective_choices()),
                 "folder": str(config.send.folder) if config.send.folder else None},
        "email": {"smtp_host": config.email.smtp_host, "smtp_port": config.email.smtp_port,
                  "security": config.email.security, "user": config.email.user,
                  "from": config.email.sender, "accountant": config.email.accountant},
    }
    for note in config.notes:  # unknown keys, an encoding other than UTF-8
        err(note)
    if config.web.problem:  # the other sources work: said, not refused
        err(config.web.problem)
    if args.json:
        emit_json(data)
        return EXIT_OK
    if not config.exists:
        out(_("No configuration yet: {path} (passeur dossier add, passeur trust add)").format(
            path=paths.config_file))
    _print_tree(data)
    return EXIT_OK


def _print_tree(data: dict[str, Any], indent: str = "") -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            out(f"{indent}{key}:")
            _print_tree(value, indent + "  ")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out(f"{indent}{key}:")
            for entry in value:
                out(f"{indent}  - " + ", ".join(f"{k}={v}" for k, v in entry.items()))
        else:
            out(f"{indent}{key}: {_value_words(value)}")


def _value_words(value: object) -> str:
    """Say a setting's value in the user's language (never Python's True, False, None)."""
    if value is True:
        return _("yes")
    if value is False:
        return _("no")
    if value is None or value == []:
        return _("(none)")
    if isinstance(value, list):
        return ", ".join(_value_words(item) for item in value)
    return str(value)


# ---------------------------------------------------------------- exchanges and the queue


def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    """Show the *Contenu de l'échange* of a file without importing it."""
    from daemon.exchange import verify_exchange
    from daemon.presentation import describe_exchange

    try:
        manifest = verify_exchange(args.file, ctx.config.keyring(), args.file.name)
    except Rejected as rejection:
        if args.json:
            emit_json({"file": str(args.file), **rejection.as_dict()})
        else:
            err(_("{file}: refused: {reason}").format(file=args.file.name,
                                                      reason=rejection.reason()))
        return EXIT_FAILED
    if args.json:
        emit_json(manifest.to_dict())
    else:
        for line in describe_exchange(manifest):
            out(line)
    return EXIT_OK


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    """Verify files and queue them."""
    from daemon.queue import Outcome

    # A mistyped name or a folder is a mistake of the command, not a file to refuse.
    wrong = [path for path in args.files if not path.is_file() and not _is_special(path)]
    for path in wrong:
        err((_("{path} is a folder: give the exchange files it holds") if path.is_dir()
             else _("{path}: no such file")).format(path=path))
    if wrong:
        return EXIT_USAGE
    results = core_api(ctx).import_files(args.files)
    if args.json:
        emit_json([result.to_json() for result in results])
    for result in results if not args.json else ():
        if result.outcome is Outcome.QUEUED:
            out(_("{file}: queued").format(file=result.name))
        elif result.outcome is Outcome.DUPLICATE:
            out(_("{file}: already received").format(file=result.name))
        else:
            err(_("{file}: refused: {reason}").format(file=result.name,
                                                      reason=result.reason()))
    return EXIT_FAILED if any(r.outcome is Outcome.REJECTED for r in results) else EXIT_OK


def _is_special(path: Path) -> bool:
    """Tell whether a path exists but is neither a plain file nor a folder (a FIFO, a
    device): the intake refuses those with their reason."""
    return path.exists() and not path.is_dir()


def cmd_queue(ctx: Context, args: argparse.Namespace) -> int:
    """List the queue, or process / delete items."""
    if args.action == "process":
        return _queue_process(ctx, args)
    if args.action == "delete":
        return _queue_delete(ctx, args)
    from daemon.queue import State

    states = list(State) if args.all else [State.WAITING]
    if args.json:
        emit_json([item.to_json() for item in ctx.queue.items(states)])
        return EXIT_OK
    from daemon.presentation import state_words

    lines = ctx.queue.listing(states)
    if not lines:
        out(_("No update waiting to be integrated"))
        return EXIT_OK
    out(_("List of entry files to integrate"))
    # As wide as the longest name: a long one must not push its row's columns out of line.
    width = max(28, *(len(line.name) for line in lines))
    for line in lines:
        out(f"{line.id:>5}  {line.name:<{width}} {_local_time(line.created)}  "
            f"{state_words(line)}")
    return EXIT_OK


def _local_time(iso: str) -> str:
    from daemon.presentation import format_datetime

    return format_datetime(datetime.fromisoformat(iso).astimezone())


def _queue_process(ctx: Context, args: argparse.Namespace) -> int:
    from daemon.delivery import InboxNotConfigured, Result

    if not args.all and not args.ids:
        err(_("give item numbers, or --all"))
        return EXIT_USAGE
    try:
        outcomes = core_api(ctx).process(None if args.all else args.ids)
    except InboxNotConfigured:
        err(_("The application's inbox folder is not configured ([app] inbox in {path})").format(
            path=ctx.config_path))
        return EXIT_CONFIG
    messages = {
        Result.DELIVERED: _("{file}: handed to {app}"),
        Result.RESTART_REQUIRED: _("{file}: contains dossiers étalons: close {app} first, it "
                                   "will be handed over then"),
        Result.HELD: _("{file}: waits for the previous update of the dossier"),
        Result.ALTERED: _("{file}: not handed over: its copy in the queue is no longer the "
                          "file that was verified (changed on disk); delete it from the list "
                          "and import the update again"),
        Result.NOT_WAITING: _("{file}: not waiting any more"),
    }
    if args.json:
        emit_json([o.to_json() for o in outcomes])
    else:
        for outcome in outcomes:
            out(messages[outcome.result].format(file=outcome.name, app=ctx.config.app.name))
    if args.ids and not outcomes:
        err(_("No such item"))
        return EXIT_FAILED
    return EXIT_OK if all(o.result is Result.DELIVERED for o in outcomes) else EXIT_FAILED


def _queue_delete(ctx: Context, args: argparse.Namespace) -> int:
    from daemon.delivery import TRASH_DAYS

    failed = False
    for deleted in core_api(ctx).delete(args.ids):
        if deleted.name is None:
            err(_("Item {id} is not waiting in the queue").format(id=deleted.id))
            failed = True
        else:
            out(_("{file}: deleted (kept in the trash for {days} days)").format(
                file=deleted.name, days=TRASH_DAYS))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_journal(ctx: Context, args: argparse.Namespace) -> int:
    """Show recent activity in words."""
    from daemon.presentation import describe_activity

    entries = ctx.queue.history(args.limit)
    if args.json:
        emit_json([{"at": e.at, "item_id": e.item_id, "action": e.action, **e.detail}
                   for e in entries])
        return EXIT_OK
    # Newest first, as the tray's journal lists it (and `passeur journal | head` shows
    # what just happened).
    for entry in entries:
        out(f"{_local_time(entry.at)}  {describe_activity(entry.action, entry.detail)}")
    return EXIT_OK


def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    """Run the always-on service (with the tray icon unless --headless)."""
    import logging

    from daemon.logs import setup_logging
    from daemon.platform import has_display
    from daemon.runner import serve
    from daemon.service import AlreadyRunning, build_service

    if _show_running_service(ctx):
        return EXIT_OK
    ctx.paths.ensure()
    setup_logging(ctx.paths.logs, args.verbose)
    log = logging.getLogger("passeur")
    if not ctx.config.exists or not ctx.config.dossiers:
        log.info(_("passeur is not configured yet: add a dossier and the accountant's key "
                   "(passeur dossier add, passeur trust add) in {path}").format(
                       path=ctx.config_path))
    service = build_service(ctx)
    with_tray = not args.headless and has_display()
    if not args.headless and not with_tray:
        log.info(_("No display: passeur runs without its tray icon"))
    try:
        return serve(ctx, service, with_tray)
    except AlreadyRunning:
        # Started at the same moment as another one: that one shows itself if it can.
        if _show_running_service(ctx):
            return EXIT_OK
        err(_("passeur is already running for {folder}").format(folder=ctx.paths.data))
        return EXIT_FAILED


def _show_running_service(ctx: Context) -> bool:
    """A second `passeur run`: ask the running one to show itself; tell whether it did."""
    from daemon.control.client import RemoteError

    remote = service_api(ctx)
    if remote is None:
        return False
    try:
        status = remote.show()
    except (RemoteError, OSError, TimeoutError):
        return False
    finally:
        remote.close()
    out(_("passeur is already running: {state}").format(state=describe_status(status)))
    return True


def describe_status(status: Status) -> str:
    """Return the status in one sentence."""
    from daemon.pause import PauseState, describe_pause

    if status.state == "paused":
        return describe_pause(PauseState(True, status.paused_until))
    words = {
        "not-configured": _("to configure"),
        "restart-required": ngettext("{n} update waits for {app} to be restarted",
                                     "{n} updates wait for {app} to be restarted",
                                     status.restart_required),
        "problem": _("a problem needs your attention"),
        "sending": _("sending {file}"),
        "offline": _("the accountant's site cannot be reached"),
        "waiting": ngettext("{n} update to integrate", "{n} updates to integrate",
                            status.waiting),
        "up-to-date": _("up to date"),
    }
    return words[status.state].format(n=status.restart_required or status.waiting,
                                      app=status.app_name, file=status.sending)


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    """State, waiting updates, last check, pause, problems."""
    from daemon.presentation import format_datetime

    status = core_api(ctx).status()
    if args.json:
        emit_json(status.to_json())
        return EXIT_OK
    out(describe_status(status))
    out(_("Service: {state}").format(
        state=_("running") if status.service else _("not running")))
    out(ngettext("{n} update to integrate", "{n} updates to integrate",
                 status.waiting).format(n=status.waiting))
    if status.last_check is not None:
        last = format_datetime(datetime.fromtimestamp(status.last_check).astimezone())
        out(_("Last look at the accountant's site: {time}").format(time=last))
    for problem in status.problems:
        out(_("Problem: {message}").format(message=problem))
    return EXIT_OK


def _pause_seconds(text: str) -> float:
    """Read a pause's length: minutes ("30"), or hours and minutes ("2h", "1h30")."""
    hours, sep, minutes = text.lower().partition("h")
    try:
        value = (float(hours or 0) * 60 + float(minutes or 0)) if sep else float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 7 * 24 * 60:
        raise argparse.ArgumentTypeError(_("expected minutes, or hours as 2h or 1h30"))
    return value * 60


def cmd_pause(ctx: Context, args: argparse.Namespace) -> int:
    """Pause receiving: no look at the site, no import from keys or folders."""
    from daemon.pause import describe_pause

    out(describe_pause(core_api(ctx).pause(args.duration)))
    return EXIT_OK


def cmd_resume(ctx: Context, args: argparse.Namespace) -> int:
    """Receive again; what arrived during the pause is taken at once."""
    core_api(ctx).resume()
    out(_("Receiving again"))
    return EXIT_OK


def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    """Show the whole flow in a temporary home."""
    from daemon.demo import run_demo

    return run_demo(args.keep, args.headless)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (in the active language)."""
    parser = argparse.ArgumentParser(
        prog="passeur",
        description=_("Carries accounting dossiers between you and your accountant."),
    )
    # argparse's own help for --version is a literal it never translates.
    parser.add_argument("--version", action="version", version=f"passeur {__version__}",
                        help=_("show program's version number and exit"))
    parser.add_argument("--home", metavar=_("FOLDER"),
                        help=_("keep config, queue and logs in this folder "
                               "(also $PASSEUR_HOME)"))
    sub = parser.add_subparsers(dest="command", metavar=_("COMMAND"), required=True)

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    p = command("keygen", cmd_keygen, _("create the accountant firm's signing key pair"))
    p.add_argument("--out", type=Path, required=True, metavar=_("FILE"),
                   help=_("private key file to create"))

    p = command("pack", cmd_pack, _("build a signed exchange file (accountant side)"))
    p.add_argument("--key", type=Path, required=True, metavar=_("FILE"),
                   help=_("private key file"))
    p.add_argument("--dossier", required=True, help=_("dossier number"))
    p.add_argument("--name", required=True, help=_("dossier name"))
    p.add_argument("--fiscal-year", type=_fiscal_year, required=True, metavar="START:END",
                   help=_("fiscal year, e.g. 2020-01-01:2020-12-31"))
    p.add_argument("--sequence", type=int, required=True,
                   help=_("sequence number of this exchange for the dossier"))
    p.add_argument("--kind", choices=["update", "dossier"], default="update",
                   help=_("update (.wwz, default) or dossier (.wvz)"))
    p.add_argument("--etalon", action="store_true", help=_("carries dossiers étalons"))
    p.add_argument("--delta-only", action="store_true",
                   help=_("integrate only the added, modified, deleted entries"))
    p.add_argument("--objective", default="", help=_("objective of the exchange"))
    p.add_argument("--comments", default="", help=_("comments"))
    p.add_argument("--date", type=_aware_datetime, help=_("generation date-time (ISO 8601)"))
    p.add_argument("--store", action="store_true", help=_("store files without compression"))
    p.add_argument("--out", type=Path, default=Path("."), metavar=_("FOLDER"),
                   help=_("where to write the file"))
    p.add_argument("files", nargs="*", type=_source, metavar="[MODULE=]FILE",
                   help=_("content files; MODULE is vat_declaration, entry_templates, "
                          "associated_documents or situations"))

    p = command("trust", cmd_trust, _("manage the accountant's trusted public keys"))
    actions = p.add_subparsers(dest="action", metavar=_("ACTION"))
    add = actions.add_parser("add", help=_("trust a public key"))
    add.add_argument("key", help="ed25519:…")
    add.add_argument("--label", default="", help=_("a name for this key"))
    actions.add_parser("list", help=_("list trusted keys"))
    rm = actions.add_parser("remove", help=_("stop trusting a key"))
    rm.add_argument("key", help=_("key id"))

    p = command("dossier", cmd_dossier, _("manage the dossiers kept on this computer"))
    actions = p.add_subparsers(dest="action", metavar=_("ACTION"))
    add = actions.add_parser("add", help=_("add a dossier"))
    add.add_argument("number", help=_("dossier number"))
    add.add_argument("name", help=_("dossier name"))
    add.add_argument("--folder", help=_("the dossier's local folder"))
    actions.add_parser("list", help=_("list dossiers"))
    rm = actions.add_parser("remove", help=_("remove a dossier"))
    rm.add_argument("number", help=_("dossier number"))

    p = command("show", cmd_show, _("show the content of an exchange file without importing it"))
    p.add_argument("file", type=Path, metavar=_("FILE"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    p = command("import", cmd_import, _("verify exchange files and queue them"))
    p.add_argument("files", nargs="+", type=Path, metavar=_("FILE"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    p = command("queue", cmd_queue, _("list of entry files to integrate"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))
    p.add_argument("--all", action="store_true", help=_("also show integrated, deleted and "
                                                        "refused files"))
    actions = p.add_subparsers(dest="action", metavar=_("ACTION"))
    actions.add_parser("list", help=_("list waiting updates"))
    proc = actions.add_parser("process", help=_("Traiter: hand updates to the application"))
    proc.add_argument("ids", nargs="*", type=int, metavar="ID")
    proc.add_argument("--all", action="store_true", help=_("every waiting update"))
    proc.add_argument("--json", action="store_true", help=_("JSON output"))
    rm = actions.add_parser("delete", help=_("Supprimer: remove updates from the queue"))
    rm.add_argument("ids", nargs="+", type=int, metavar="ID")

    p = command("run", cmd_run, _("run the always-on service"))
    p.add_argument("--headless", action="store_true", help=_("without the tray icon"))
    p.add_argument("--verbose", action="store_true", help=_("log more details"))

    p = command("status", cmd_status, _("what passeur is doing now"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    p = command("pause", cmd_pause, _("pause receiving (for a while, or until resumed)"))
    p.add_argument("duration", nargs="?", type=_pause_seconds, metavar=_("DURATION"),
                   help=_("minutes, or hours as 2h or 1h30; without it, until resumed"))

    command("resume", cmd_resume, _("receive again after a pause"))

    p = command("journal", cmd_journal, _("recent activity"))
    p.add_argument("--limit", type=int, default=50, help=_("how many lines"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    p = command("config", cmd_config, _("show the effective configuration and folders"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    from daemon.platform.commands import register as register_platform_commands
    from daemon.send.commands import register as register_send_commands
    from daemon.setup.commands import register as register_setup_commands
    from daemon.support.commands import register as register_support_commands
    from daemon.web.commands import register as register_web_commands

    register_web_commands(command)
    register_send_commands(command)
    register_platform_commands(command)
    register_support_commands(command)
    register_setup_commands(command)

    p = command("demo", cmd_demo, _("show the whole flow in a temporary folder"))
    p.add_argument("--keep", action="store_true", help=_("keep the temporary folder"))
    p.add_argument("--headless", action="store_true",
                   help=_("without the tray icon, even when a display exists"))
    _name_placeholders(parser)
    return parser


# What the help shows for a value when an option gives no placeholder of its own: argparse
# would show the option's English name (NAME, LABEL, number…).
_PLACEHOLDERS = {
    "dossier": N_("DOSSIER"), "name": N_("NAME"), "sequence": N_("NUMBER"),
    "objective": N_("OBJECTIVE"), "comments": N_("COMMENTS"), "date": N_("DATE"),
    "key": N_("KEY"), "label": N_("LABEL"), "number": N_("NUMBER"), "folder": N_("FOLDER"),
    "limit": N_("NUMBER"), "user": N_("USER"), "documents": N_("DOCUMENT"),
    "url": N_("ADDRESS"), "email": N_("EMAIL"), "kind": N_("KIND"),
}


def _name_placeholders(parser: argparse.ArgumentParser) -> None:
    """Give every value without a placeholder (and without a list of choices) one in the
    user's language, in every sub-command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _name_placeholders(sub)
        elif (action.metavar is None and action.choices is None and action.nargs != 0
              and action.dest in _PLACEHOLDERS):
            action.metavar = _(_PLACEHOLDERS[action.dest])


def _home_option(argv: Sequence[str]) -> str | None:
    """Find --home before argparse runs (the language, hence the help, depends on it)."""
    home = None
    for index, arg in enumerate(argv):
        if arg == "--home" and index + 1 < len(argv):
            home = argv[index + 1]
        elif arg.startswith("--home="):
            home = arg.split("=", 1)[1]
    return home


def _open_context(argv: Sequence[str]) -> Context:
    """Build the context and pick the language from its config, before parsing."""
    i18n.setup(None)
    ctx = Context(_home_option(argv))
    try:
        language = ctx.config.language
    except (ConfigError, OSError):
        return ctx  # a command that needs the config will report the error
    if language:
        i18n.setup(language)
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].lower().endswith(".passeur"):
        # A double-clicked invitation, handed over by a file manager as the only argument.
        argv = ["setup", "--gui", argv[0]]
    ctx = _open_context(argv)
    args = build_parser().parse_args(argv)
    if args.command in ("queue", "trust", "dossier") and args.action is None:
        args.action = "list"
    try:
        if args.command not in COMMANDS_WITHOUT_CONFIG:
            ctx.config  # noqa: B018 - a wrong config is reported before anything is done
        result: int = args.handler(ctx, args)
    except ConfigError as exc:
        err(exc.message())
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`passeur journal | head -1`): that is the end, not an error.
        silence_stdout()
        return EXIT_OK
    except (OSError, sqlite3.Error) as exc:
        if not is_disk_full(exc):
            raise
        err(_("The disk is full: passeur cannot write in {folder}. Free some space, then "
              "try again (nothing was recorded, no file was refused).").format(
                  folder=ctx.paths.data))
        return EXIT_FAILED
    return result


def silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush stays quiet
    once the reader of a pipe has gone."""
    import contextlib
    import os

    with contextlib.suppress(OSError, ValueError):  # no real file behind stdout (a capture)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


if __name__ == "__main__":
    sys.exit(main())
