"""Handlers of the setting-up commands (arguments are declared in commands.py)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from daemon.context import Context
from daemon.errors import ConfigError
from daemon.i18n import _
from daemon.keys import KeyFormatError, PublicKey, SigningKey
from daemon.naming import DOSSIER_RE
from daemon.setup.invitation import (
    InvitationError,
    make_invitation,
    phone_fingerprint,
    read_invitation,
    write_invitation,
)
from daemon.setup.plan import SetupPlan, apply_plan

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _out(text: str = "") -> None:
    print(text)


def _err(text: str) -> None:
    print(text, file=sys.stderr)


# ---------------------------------------------------------------- invite (firm side)


def cmd_invite(ctx: Context, args: argparse.Namespace) -> int:
    """Write `<dossier>.passeur`, signed by the firm's key."""
    try:
        key = SigningKey.load(args.key)
    except (KeyFormatError, OSError):
        _err(_("{path}: not a passeur private key").format(path=args.key))
        return EXIT_FAILED
    try:
        invitation = make_invitation(key, dossier=args.dossier, name=args.name, url=args.url,
                                     user=args.user, label=args.label, email=args.email)
        path = write_invitation(args.out, key, invitation)
    except InvitationError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except OSError as exc:
        _err(_("{path}: cannot be written: {reason}").format(
            path=args.out, reason=exc.strerror or exc))
        return EXIT_FAILED
    _out(str(path))
    _err(_("Give this file to the farmer, and the password separately. Fingerprint of "
           "your key, to read over the phone: {fingerprint}").format(
               fingerprint=phone_fingerprint(key.public)))
    return EXIT_OK


# ---------------------------------------------------------------- setup (farmer side)


def cmd_setup(ctx: Context, args: argparse.Namespace) -> int:
    """Set passeur up from an invitation, from flags, or by asking on the terminal."""
    if args.register_file_type:
        return _register_file_type(ctx)
    if args.gui or (args.file is None and not _has_plan_flags(args)
                    and not sys.stdin.isatty()):
        return _open_window(ctx, args.file)
    try:
        plan = _plan(args)
    except (InvitationError, ValueError) as exc:
        _err(str(exc))
        return EXIT_FAILED
    except (EOFError, KeyboardInterrupt):
        _err(_("Nothing was changed"))
        return EXIT_FAILED
    _out(_("Dossier {number} — {name}").format(number=plan.dossier, name=plan.name))
    _out(_("Your accountant: {label}").format(label=plan.label or "—"))
    _out(_("Key fingerprint (your accountant can read it to you over the phone):"))
    _out("    " + phone_fingerprint(plan.firm_key))
    try:
        if not args.yes and sys.stdin.isatty() and not _confirm():
            _err(_("Nothing was changed"))
            return EXIT_FAILED
        password = _password(args, plan)
    except (EOFError, KeyboardInterrupt):
        _err(_("Nothing was changed"))
        return EXIT_FAILED
    if not args.no_check and not _connection_ok(plan, password):
        return EXIT_FAILED
    return _write(ctx, plan, password)


def _register_file_type(ctx: Context) -> int:
    from daemon.platform.filetype import register
    from daemon.setup.plan import relocated_home

    try:
        where = register(relocated_home(ctx.paths) or None)
    except OSError as exc:
        _err(_("The invitation file type cannot be registered: {reason}").format(
            reason=exc.strerror or exc))
        return EXIT_FAILED
    _out(_("A double-click on an invitation file (.passeur) now opens passeur."))
    for place in where:
        _out("    " + place)
    return EXIT_OK


def _has_plan_flags(args: argparse.Namespace) -> bool:
    return any((args.dossier, args.url, args.firm_key))


def _plan(args: argparse.Namespace) -> SetupPlan:
    folder = str(Path(args.folder).expanduser().absolute()) if args.folder else ""
    ca_bundle = str(args.ca_bundle.expanduser().absolute()) if args.ca_bundle else ""
    if args.file is not None:
        plan = SetupPlan.from_invitation(read_invitation(args.file), folder, ca_bundle)
        return plan
    dossier = args.dossier or _ask(_("Dossier number: "))
    if not DOSSIER_RE.fullmatch(dossier):
        raise ValueError(_("not a dossier number: {number}").format(number=dossier))
    key_text = args.firm_key or _ask(_("Your accountant's key (ed25519:…): "))
    try:
        key = PublicKey.from_text(key_text)
    except KeyFormatError:
        raise ValueError(_("not a public key: {text} (expected ed25519:…)").format(
            text=key_text)) from None
    return SetupPlan(
        dossier=dossier, name=args.name or _ask(_("Dossier name: ")),
        url=args.url or _ask(_("Address of your accountant's server: ")),
        user=args.user or _ask(_("User name: ")), firm_key=key,
        label=args.label, email=args.email, folder=folder, ca_bundle=ca_bundle)


def _ask(prompt: str) -> str:
    return input(prompt).strip()


def _confirm() -> bool:
    answer = input(_("Is this your accountant's key? [y/N] ")).strip().lower()
    return answer in ("y", "yes", _("y"), _("yes"))


def _password(args: argparse.Namespace, plan: SetupPlan) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass(_("Password for {user}: ").format(user=plan.user))


def _connection_ok(plan: SetupPlan, password: str) -> bool:
    from daemon.setup.connection import check_connection

    _out(_("Testing the connection…"))
    verdict = check_connection(plan.url, plan.dossier, plan.credential(password),
                               plan.firm_key, Path(plan.ca_bundle) if plan.ca_bundle else None)
    if not verdict.ok:
        _err(verdict.message)
        _err(_("Nothing was changed"))
        return False
    _out(verdict.message)
    return True


def _write(ctx: Context, plan: SetupPlan, password: str) -> int:
    from daemon.web.failures import WebError

    try:
        apply_plan(ctx.config_path, plan, password or None)
    except WebError as error:
        _err(error.message())
        return EXIT_FAILED
    except ConfigError as exc:
        _err(exc.message())
        return EXIT_FAILED
    except OSError as exc:
        _err(_("{path}: cannot be written: {reason}").format(
            path=ctx.config_path, reason=exc.strerror or exc))
        return EXIT_FAILED
    _out(_("passeur is set up for dossier {number}; the password is kept in the system "
           "keyring.").format(number=plan.dossier))
    return EXIT_OK


def _open_window(ctx: Context, file: Path | None) -> int:
    """Open the set-up window (the double-click on an invitation file comes here)."""
    from daemon import i18n
    from daemon.setup.plan import window_data
    from tray.ui import Dialogs

    answer = Dialogs(i18n.current_language()).ask("setup", window_data(ctx.paths, file))
    return EXIT_OK if answer and answer.get("saved") else EXIT_FAILED
