"""Handlers of the sending CLI commands (arguments are declared in commands.py).

`passeur send` only turns the arguments and the remembered choices into a SendRequest and
calls Sender.send (where all the logic is); the send runs in a worker thread so that
Ctrl-C cancels it cleanly instead of interrupting it anywhere.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from daemon.cli import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    emit_json,
    err,
    out,
    service_api,
)
from daemon.context import Context
from daemon.events import Event, SendFailed, SendFinished, SendProgress
from daemon.i18n import _
from daemon.presentation import format_size
from daemon.send.base import Channel, Documents, SendError
from daemon.send.sender import Sender, SendReport, SendRequest, sender_from_context

if TYPE_CHECKING:
    from daemon.control.client import RemoteCore

EXIT_APP_RUNNING = 4
EXIT_CANCELLED = 130

# Refusals that the configuration can fix (exit 3), and those of the command line (exit 2).
CONFIG_CODES = frozenset({
    "dossier-unknown", "dossier-no-folder", "dossier-folder-missing", "web-not-configured",
    "email-not-configured", "email-no-recipient", "email-login-missing", "email-ca-bundle",
    "not-configured", "auth-missing",  # the web destination's: no site, no password stored
    "setting-invalid", "ca-bundle-invalid",  # an address or CA bundle the config refuses
})
USAGE_CODES = frozenset({"folder-not-chosen", "no-destination", "several-keys"})


def exit_code(error: SendError) -> int:
    """Return the exit code of a send that failed (docs/cli.md)."""
    if error.code == "app-running":
        return EXIT_APP_RUNNING
    if error.code == "cancelled":
        return EXIT_CANCELLED
    if error.code in CONFIG_CODES:
        return EXIT_CONFIG
    if error.code in USAGE_CODES:
        return EXIT_USAGE
    return EXIT_FAILED


# ---------------------------------------------------------------- passeur send


def cmd_send(ctx: Context, args: argparse.Namespace) -> int:
    """Send a dossier, with a progress line on a terminal."""
    sender = sender_from_context(ctx)
    try:
        request = build_request(ctx, sender, args)
    except SendError as error:
        return _failed(args, error)
    printer = _ProgressLine(sys.stderr)
    remote = service_api(ctx)
    if remote is not None:
        # The running service sends it: its tray shows the progress, its journal the report.
        return _send_through_service(ctx, remote, request, args, printer)
    if printer.tty and not args.json:
        ctx.bus.subscribe("send-cli", printer, SendProgress, SendFinished, SendFailed)
    try:
        report = run_cancellable(sender, request)
    except SendError as error:
        ctx.bus.close()
        return _failed(args, error)
    ctx.bus.close()  # the progress line is complete before the report is printed
    if args.json:
        emit_json({"ok": True, **report.to_json(),
                   "report_file": str(sender.report_path(report.name))})
    else:
        for line in report.lines():
            out(line)
    return EXIT_OK


def _send_through_service(ctx: Context, remote: RemoteCore, request: SendRequest,
                          args: argparse.Namespace, printer: _ProgressLine) -> int:
    """Have the running service send; Ctrl-C leaves the channel, which cancels the send."""
    from daemon.send.report import SendReport, report_path

    show = printer.tty and not args.json
    try:
        data = remote.send(request.to_json(), printer if show else lambda event: None)
    except SendError as error:
        return _failed(args, error)
    except KeyboardInterrupt:
        err(_("Cancelling: the send stops and leaves nothing behind…"))
        return EXIT_CANCELLED
    finally:
        remote.close()
    report = SendReport.from_json(data)
    if args.json:
        emit_json({"ok": True, **report.to_json(),
                   "report_file": str(report_path(ctx.paths, report.name))})
    else:
        for line in report.lines():
            out(line)
    return EXIT_OK


def _failed(args: argparse.Namespace, error: SendError) -> int:
    if getattr(args, "json", False):
        emit_json({"ok": False, "dossier": args.dossier, "code": error.code,
                   "message": error.text})
    err(error.text)
    return exit_code(error)


def run_cancellable(sender: Sender, request: SendRequest) -> SendReport:
    """Run the send in a worker thread; Ctrl-C asks it to stop and waits until it did."""
    cancel, done = threading.Event(), threading.Event()
    result: list[SendReport] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result.append(sender.send(request, cancel))
        except BaseException as exc:  # handed to the main thread below
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name="send", daemon=True).start()
    # An Event, not Thread.join: a join cut by Ctrl-C may then say the thread has ended
    # while it still runs (CPython before 3.13), and the send's clean-up would be lost.
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        cancel.set()
        err(_("Cancelling: the send stops and leaves nothing behind…"))
        while not done.wait(0.5):
            pass
    if failure:
        raise failure[0]
    if cancel.is_set() and not result:
        raise SendError("cancelled", _("The send was cancelled."))
    return result[0]


def build_request(ctx: Context, sender: Sender, args: argparse.Namespace) -> SendRequest:
    """Turn the arguments into a request; what is not said is the dossier's last choice."""
    remembered = sender.choices(args.dossier)
    channel = Channel(args.to) if args.to else (remembered.channel if remembered else None)
    if channel is None:
        raise SendError("no-destination", _(
            "Say where to send dossier {number}: --to web, --to folder FOLDER or --to email"
            " (next time, the same choice is the default).").format(number=args.dossier))
    folder: Path | None = None
    if channel is Channel.FOLDER:
        if args.to == "folder":
            folder = args.to_folder or choose_folder(ctx, args.dossier)
        else:
            folder = remembered.folder if remembered else None
    documents = (Documents(args.documents) if args.documents
                 else remembered.documents if remembered else Documents.ALL)
    if args.objective is not None:
        objective = args.objective.strip()
    elif remembered is not None:
        objective = remembered.objective
    else:
        objective = ctx.config.send.objective_choices()[0]
    inform = args.inform if args.inform is not None else bool(remembered and remembered.inform)
    return SendRequest(args.dossier, channel, folder, documents, objective,
                       args.comments.strip(), inform)


def choose_folder(ctx: Context, dossier: str, media_roots: Any = None,
                  stdin: TextIO | None = None) -> Path:
    """Return the folder of `--to folder` without a path: the only USB key plugged in, the
    `[send] folder` when there is no key, else the user's pick (asked on a terminal)."""
    from daemon.send.folder import removable_volumes

    keys = removable_volumes(media_roots)
    if len(keys) == 1:
        return keys[0].mount_point
    if not keys:
        if ctx.config.send.folder is not None:
            return ctx.config.send.folder
        raise SendError("folder-not-chosen", _(
            "No USB key is plugged in: plug one in, or give the folder (passeur send {number}"
            " --to folder FOLDER).").format(number=dossier))
    stdin = stdin or sys.stdin
    names = ", ".join(key.name for key in keys)
    if not stdin.isatty():
        raise SendError("several-keys", _(
            "Several USB keys are plugged in ({names}): say which one with --to folder"
            " FOLDER.").format(names=names))
    for number, key in enumerate(keys, 1):
        err(f"  {number}. {key.name}  ({key.mount_point})")
    answer = _ask(_("Which USB key (1 to {n})? ").format(n=len(keys)), stdin)
    if answer.isdigit() and 1 <= int(answer) <= len(keys):
        return keys[int(answer) - 1].mount_point
    raise SendError("several-keys", _(
        "No USB key chosen: say which one with --to folder FOLDER ({names}).").format(
            names=names))


def _ask(prompt: str, stdin: TextIO) -> str:
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return stdin.readline().strip()


class _ProgressLine:
    """One line on a terminal, rewritten in place: the stage, a bar, the percentage."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._drawn = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, SendProgress):
            self._draw(event)
        elif self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = 0

    def _draw(self, event: SendProgress) -> None:
        stage = _("Packing") if event.stage == "pack" else _("Sending")
        fraction = min(1.0, event.done / event.total) if event.total else 1.0
        filled = round(fraction * self.WIDTH)
        text = _("{stage} {file} [{bar}] {percent} % ({done} / {total})").format(
            stage=stage, file=event.name, bar="#" * filled + "-" * (self.WIDTH - filled),
            percent=int(fraction * 100), done=format_size(event.done),
            total=format_size(event.total))
        # Pad with spaces: a shorter line must hide what the longer one before it wrote.
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)


# ---------------------------------------------------------------- passeur email


def cmd_email(ctx: Context, args: argparse.Namespace) -> int:
    """`passeur email login` and `passeur email test`."""
    if args.action == "login":
        return _email_login(ctx, args)
    return _email_test(ctx, args)


def _email_login(ctx: Context, args: argparse.Namespace) -> int:
    from daemon.send.email import SmtpPasswords

    settings = ctx.config.email
    if not settings.smtp_host or not settings.user:
        err(_("Give the e-mail server and the user name first ([email] smtp_host and user in"
              " {path}).").format(path=ctx.config_path))
        return EXIT_CONFIG
    passwords = SmtpPasswords()
    try:
        if args.remove:
            removed = passwords.delete(settings.user, settings.smtp_host)
            text = (_("The e-mail password of {user} on {host} was forgotten") if removed
                    else _("No e-mail password was stored for {user} on {host}"))
            out(text.format(user=settings.user, host=settings.smtp_host))
            return EXIT_OK
        prompt = _("Password of {user} on {host}: ").format(user=settings.user,
                                                            host=settings.smtp_host)
        password = (sys.stdin.readline().rstrip("\r\n") if args.password_stdin
                    else getpass.getpass(prompt))
        if not password:
            err(_("Nothing stored: the password cannot be empty"))
            return EXIT_FAILED
        passwords.set(settings.user, settings.smtp_host, password)
    except SendError as error:
        err(error.text)
        return EXIT_FAILED
    except (EOFError, KeyboardInterrupt):
        err(_("Nothing stored"))
        return EXIT_FAILED
    out(_("The e-mail password of {user} on {host} is stored in the system keyring; try it"
          " with passeur email test").format(user=settings.user, host=settings.smtp_host))
    return EXIT_OK


def _email_test(ctx: Context, args: argparse.Namespace) -> int:
    from daemon.send.email import Mailer, trial_message

    settings = ctx.config.email
    mailer = Mailer(settings)
    try:
        mailer.check_configured()
        size = mailer.deliver(trial_message(settings))
    except SendError as error:
        if args.json:
            emit_json({"ok": False, "server": mailer.server, "to": settings.sender,
                       "code": error.code, "message": error.text})
        err(error.text)
        return exit_code(error)
    if args.json:
        emit_json({"ok": True, "server": mailer.server, "to": settings.sender, "bytes": size})
    else:
        out(_("A test message was sent to {address} through {server}: e-mail works.").format(
            address=settings.sender, server=mailer.server))
    return EXIT_OK


# ---------------------------------------------------------------- passeur identity


def cmd_identity(ctx: Context, args: argparse.Namespace) -> int:
    """Print the installation's public key, key id and fingerprint (made on first use)."""
    from daemon.send.identity import installation_public_key, key_path

    try:
        key = installation_public_key(ctx.paths.data)
    except SendError as exc:
        err(exc.message())
        return EXIT_FAILED
    if args.json:
        emit_json({"public_key": key.text, "key_id": key.key_id,
                   "fingerprint": key.fingerprint, "file": str(key_path(ctx.paths.data))})
        return EXIT_OK
    out(key.text)
    out(_("Key id: {key_id}").format(key_id=key.key_id))
    out(_("Fingerprint: {fingerprint}").format(fingerprint=key.fingerprint))
    out(_("Your accountant may read this fingerprint back to you over the phone: it must "
          "be the same, group by group."))
    return EXIT_OK
