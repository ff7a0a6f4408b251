"""CLI commands of the platform layer (`autostart`), registered by daemon.cli.

Only the arguments are declared here; the handlers live in daemon.platform.handlers and
are imported when the command actually runs, so that other commands start faster.
"""

from __future__ import annotations

from daemon.commands import Command, lazy
from daemon.i18n import _


def register(command: Command) -> None:
    """Add the platform commands to the CLI through its `command(name, handler, help)`."""
    p = command("autostart", lazy("daemon.platform.handlers", "cmd_autostart"),
                _("start passeur when you log in (enable, disable, status)"))
    actions = p.add_subparsers(dest="action", metavar=_("ACTION"))
    enable = actions.add_parser("enable", help=_("start passeur at every login"))
    enable.add_argument("--headless", action="store_true",
                        help=_("without the tray icon, for a machine without a desktop "
                               "(Linux: a systemd user service)"))
    actions.add_parser("disable", help=_("no longer start passeur at login"))
    status = actions.add_parser("status", help=_("whether passeur starts at login, and how"))
    status.add_argument("--json", action="store_true", help=_("JSON output"))
