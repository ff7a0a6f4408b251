"""Handlers of the web endpoint's CLI commands (arguments are declared in commands.py)."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from daemon.context import Context
from daemon.events import (
    BackOnline,
    DownloadProgress,
    Event,
    Offline,
    SourceFailed,
    UpdateFound,
    UpdateQueued,
    UpdateRejected,
)
from daemon.i18n import _, ngettext
from daemon.naming import DOSSIER_RE
from daemon.presentation import format_size

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

def _err(text: str) -> None:
    print(text, file=sys.stderr)


# ---------------------------------------------------------------- publish


def cmd_publish(ctx: Context, args: argparse.Namespace) -> int:
    """Put updates in the repository folder and re-sign the indexes."""
    from daemon.keys import KeyFormatError, SigningKey
    from daemon.presentation import format_datetime
    from daemon.web.publish import Published, PublishError, Repository

    try:
        key = SigningKey.load(args.key)
    except (KeyFormatError, OSError):
        _err(_("{path}: not a passeur private key").format(path=args.key))
        return EXIT_FAILED
    repo = Repository(args.repo, key, timedelta(days=args.expires_days))
    dossiers = list(args.dossier) or ([] if args.files else repo.dossiers())
    if not args.files and not dossiers:
        _err(_("Nothing to publish: give .wwz files, or --dossier to re-sign an index"))
        return EXIT_USAGE
    failed = False
    results: list[Published] = []
    for file in args.files:
        try:
            results.append(repo.publish(file))
        except (PublishError, OSError) as exc:
            _err(str(exc))
            failed = True
    for dossier in dossiers:
        try:
            results.append(repo.refresh(dossier))
        except (PublishError, OSError) as exc:
            _err(str(exc))
            failed = True
    for result in results:
        until = format_datetime(result.index.expires_at.astimezone())
        if result.name is None:
            text = _("Dossier {dossier}: index re-signed (version {version}, valid until "
                     "{until})")
        elif result.added:
            text = _("{file}: published for dossier {dossier} (index version {version}, "
                     "valid until {until})")
        else:
            text = _("{file}: already published; index re-signed (version {version}, "
                     "valid until {until})")
        print(text.format(file=result.name, dossier=result.dossier,
                          version=result.index.version, until=until))
    return EXIT_FAILED if failed else EXIT_OK


# ---------------------------------------------------------------- collect


def cmd_collect(ctx: Context, args: argparse.Namespace) -> int:
    """Assemble and verify the farmers' uploads, publish their receipts (accountant side)."""
    from daemon.keys import KeyFormatError, SigningKey
    from daemon.web.collect import Status, collect

    try:
        key = SigningKey.load(args.key)
    except (KeyFormatError, OSError):
        _err(_("{path}: not a passeur private key").format(path=args.key))
        return EXIT_FAILED
    if not args.repo.is_dir():
        _err(_("{path}: no such folder").format(path=args.repo))
        return EXIT_FAILED
    report = collect(args.repo, args.out, key, abandon_after_s=args.abandon_days * 86400,
                     expiry=timedelta(days=args.expires_days))
    if args.json:
        print(json.dumps({"ok": report.ok,
                          "dossiers": {dossier: [o.to_dict() for o in outcomes]
                                       for dossier, outcomes in report.by_dossier().items()}},
                         ensure_ascii=False, indent=2))
        return EXIT_OK if report.ok else EXIT_FAILED
    lines = {
        Status.COLLECTED: _("{file}: received for dossier {dossier} ({size}) and put in "
                           "{inbox}; receipt published"),
        Status.DUPLICATE: _("{file}: already in {inbox}; receipt published"),
        Status.WAITING: _("{upload}: upload in progress for dossier {dossier}"),
        Status.ABANDONED: _("{upload}: abandoned upload of dossier {dossier} removed"),
    }
    for outcome in report.outcomes:
        if outcome.status in (Status.REFUSED, Status.FAILED):
            _err(outcome.reason)
            continue
        print(lines[outcome.status].format(
            file=outcome.name, dossier=outcome.dossier, size=format_size(outcome.size),
            inbox=args.out, upload=outcome.upload))
    if not report.outcomes:
        print(_("No upload to collect"))
    return EXIT_OK if report.ok else EXIT_FAILED


# ---------------------------------------------------------------- login


def _read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass(prompt)


def cmd_login(ctx: Context, args: argparse.Namespace) -> int:
    """Store (or remove) a dossier's credentials for the web endpoint."""
    from daemon.web.credentials import BASIC, BEARER, Credential, CredentialStore
    from daemon.web.failures import WebError

    if not DOSSIER_RE.fullmatch(args.dossier):
        _err(_("not a dossier number: {number}").format(number=args.dossier))
        return EXIT_USAGE
    store = CredentialStore()
    try:
        if args.remove:
            removed = store.delete(args.dossier)
            print(_("Credentials for dossier {number} forgotten").format(number=args.dossier)
                  if removed else
                  _("No credentials were stored for dossier {number}").format(
                      number=args.dossier))
            return EXIT_OK
        if args.token:
            credential = Credential(BEARER, _read_secret(_("Access token: "),
                                                         args.password_stdin))
        else:
            user = args.user or input(_("User name: ")).strip()
            credential = Credential(BASIC, _read_secret(_("Password: "), args.password_stdin),
                                    user)
        if not credential.secret or (credential.scheme == BASIC and not credential.user):
            _err(_("Nothing stored: the user name and the secret cannot be empty"))
            return EXIT_FAILED
        store.set(args.dossier, credential)
    except WebError as error:
        _err(error.message())
        return EXIT_FAILED
    except (EOFError, KeyboardInterrupt):
        _err(_("Nothing stored"))
        return EXIT_FAILED
    print(_("Credentials for dossier {number} stored in the system keyring").format(
        number=args.dossier))
    if args.no_check or not ctx.config.web.url:
        return EXIT_OK
    return _check_login(ctx, args.dossier, store)


def _check_login(ctx: Context, dossier: str, store: Any) -> int:
    """Try the new credentials with one GET of the dossier's index."""
    from daemon.web.client import WebClient
    from daemon.web.failures import Failure, WebError

    if ctx.config.web.problem:
        # Nothing is sent to an address that would leak the password (as for the poller).
        _err(WebError(Failure.SETTING, detail=ctx.config.web.problem).message())
        return EXIT_FAILED
    client = WebClient(ctx.config.web.url, store, ca_bundle=ctx.config.web.ca_bundle)
    try:
        client.fetch_index(dossier, None)
    except WebError as error:
        _err(error.message())
        return EXIT_FAILED
    finally:
        client.close()
    print(_("The server accepted them"))
    return EXIT_OK


# ---------------------------------------------------------------- receive


class _Printer:
    """Says on stderr what the poll does, with a plain-text progress line per download."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def __call__(self, event: Event) -> None:
        text = self.describe(event)
        if text is None:
            return
        if isinstance(event, DownloadProgress) and self.tty:
            self.stream.write("\r" + text)
            if event.received >= event.total:
                self.stream.write("\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    @staticmethod
    def describe(event: Event) -> str | None:
        if isinstance(event, UpdateFound):
            return _("{file}: new update ({size})").format(file=event.name,
                                                           size=format_size(event.size))
        if isinstance(event, DownloadProgress):
            percent = 100 * event.received // event.total if event.total else 100
            return _("{file}: {percent} % ({received} / {total})").format(
                file=event.name, percent=percent, received=format_size(event.received),
                total=format_size(event.total))
        if isinstance(event, UpdateQueued):
            return _("{file}: queued").format(file=event.name)
        if isinstance(event, UpdateRejected):
            return _("{file}: refused: {reason}").format(
                file=event.name, reason=event.reason_fr if _is_french() else event.reason_en)
        if isinstance(event, SourceFailed):
            return event.message
        if isinstance(event, Offline):
            return _("The accountant's server cannot be reached ({reason})").format(
                reason=event.reason)
        if isinstance(event, BackOnline):
            return None
        return None


def _is_french() -> bool:
    from daemon.i18n import current_language

    return current_language() == "fr"


def _quiet_logging() -> None:
    """Keep log lines off the terminal when nothing configured logging: the same facts are
    printed once, in the user's words, from the events."""
    if not logging.getLogger().handlers:
        logging.getLogger("daemon.web").addHandler(logging.NullHandler())


def cmd_receive(ctx: Context, args: argparse.Namespace) -> int:
    """Look at the endpoint once in the foreground: through the running service when there
    is one (its tray shows it), else here."""
    from daemon.cli import service_api
    from daemon.core import ReceivingPaused
    from daemon.pause import describe_pause

    unknown = [d for d in args.dossier or () if ctx.config.dossier(d) is None]
    if unknown:
        _err(_("No dossier {number}").format(number=", ".join(unknown)))
        return EXIT_USAGE
    printer = None if args.json else _Printer(sys.stderr)
    remote = service_api(ctx)
    try:
        report = (_receive_here(ctx, args.dossier, printer) if remote is None
                  else remote.receive(args.dossier, printer))
    except ReceivingPaused as paused:
        _err(describe_pause(paused.state) + " " + _("(passeur resume to receive again)"))
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    elif not report["failures"] and not report["rejected"] and not report["queued"]:
        print(_("No new update"))
    elif report["queued"]:
        count = len(report["queued"])
        print(ngettext("{n} update received", "{n} updates received", count).format(n=count))
    return EXIT_OK if not report["failures"] and not report["rejected"] else EXIT_FAILED


def _receive_here(ctx: Context, dossiers: list[str] | None,
                  printer: Callable[[Event], None] | None) -> dict[str, Any]:
    from daemon.core import Core, poll_report_json

    _quiet_logging()
    if printer is not None:
        ctx.bus.subscribe("receive-cli", printer)
    try:
        return poll_report_json(Core(ctx).receive(dossiers))
    finally:
        ctx.bus.close()
