"""The handlers of `passeur autostart`, imported only when that command runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from daemon.cli import EXIT_FAILED, EXIT_OK, emit_json, err, out
from daemon.i18n import _
from daemon.platform import autostart

if TYPE_CHECKING:
    from daemon.context import Context
    from daemon.platform.common import LoginMechanisms


def cmd_autostart(ctx: Context, args: argparse.Namespace,
                  mechanisms: LoginMechanisms | None = None) -> int:
    """Enable, disable or show start at login (status when no action is given)."""
    if mechanisms is None:
        mechanisms = autostart.mechanisms_for_this_system(ctx.paths)
    home = autostart.relocated_home(getattr(args, "home", None))
    action = args.action or "status"
    try:
        if action == "enable":
            return _enable(ctx, mechanisms, home, args.headless)
        if action == "disable":
            autostart.disable(ctx.paths, mechanisms)
            out(_("passeur will no longer start at login."))
            return EXIT_OK
        return _status(ctx, mechanisms, home, getattr(args, "json", False))
    except (OSError, ValueError) as exc:
        err(_("Cannot change start at login: {reason}").format(reason=_reason(exc)))
        return EXIT_FAILED


def _reason(exc: BaseException) -> str:
    """Say what went wrong, naming the file when the system told which."""
    if isinstance(exc, OSError) and exc.filename:
        return _("{file}: {error}").format(file=exc.filename, error=exc.strerror or exc)
    return str(exc)


def _enable(ctx: Context, mechanisms: LoginMechanisms, home: str | None,
            headless: bool) -> int:
    argv = autostart.launch_command(home, headless)
    entry = autostart.enable(ctx.paths, mechanisms, argv, headless)
    mechanism = mechanisms.pick(headless)
    out(_("passeur will start at every login, through {how}.").format(
        how=mechanism.describe()))
    out(_("Written: {location}").format(location=entry.location))
    out(_("Command: {command}").format(command=entry.command_line))
    return EXIT_OK


def _status(ctx: Context, mechanisms: LoginMechanisms, home: str | None,
            as_json: bool) -> int:
    state = autostart.status(ctx.paths, mechanisms, home)
    if as_json:
        emit_json(state.as_json())
        return EXIT_OK
    out(_("Start at login: on") if state.enabled else _("Start at login: off"))
    if state.mechanism is not None:
        out(_("Mechanism: {how}").format(how=state.description))
        out(_("Where: {location}").format(location=state.location))
    if state.command is not None:
        out(_("Command: {command}").format(command=state.command))
    if state.turned_off_elsewhere:
        if state.turned_off_by:
            out(_("Turned off outside passeur, in {tool}.").format(tool=state.turned_off_by))
        else:
            out(_("Turned off outside passeur: the entry was removed."))
        out(_("To turn it back on: « passeur autostart enable »."))
    elif state.outdated:
        out(_("The command written is not the one of this installation: run « passeur "
              "autostart enable » again."))
    return EXIT_OK
