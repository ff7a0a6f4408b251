"""CLI commands of support (`log`, `diagnose`), registered by daemon.cli.

Only the arguments are declared here; the handlers are imported when one of these commands
actually runs, so that other commands start faster.
"""

from __future__ import annotations

import argparse

from daemon.commands import Command, lazy
from daemon.i18n import _


def register(command: Command) -> None:
    """Add `log` and `diagnose` to the CLI through its `command(name, handler, help)`."""
    from pathlib import Path

    p = command("log", lazy("daemon.support.logview", "cmd_log"), _("show passeur's log"))
    p.add_argument("-f", "--follow", action="store_true",
                   help=_("keep showing new lines as they are written, until Ctrl-C"))
    p.add_argument("-n", "--lines", type=_count, default=50, metavar="N",
                   help=_("how many of the last lines to show first (default 50)"))

    p = command("diagnose", lazy("daemon.support.diagnose", "cmd_diagnose"),
                _("write a diagnostic archive for your accountant's support"))
    p.add_argument("--out", type=Path, metavar=_("FOLDER"),
                   help=_("where to write the archive (default: your Desktop, else your "
                          "Downloads folder, else the current folder)"))


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(_("expected a whole number, 0 or more"))
    return value
