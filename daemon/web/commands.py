"""CLI commands of the web endpoint (`publish`, `collect`, `login`, `receive`), registered by
daemon.cli.

Only the arguments are declared here; the handlers live in daemon.web.handlers and are
imported when a web command actually runs, so that other commands start faster.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from daemon.commands import Command, lazy
from daemon.i18n import _


def register(command: Command) -> None:
    """Add the web commands to the CLI through its `command(name, handler, help)` factory."""
    p = command("publish", lazy("daemon.web.handlers", "cmd_publish"),
                _("publish updates on the web endpoint's folder (accountant side)"))
    p.add_argument("--repo", type=Path, required=True, metavar=_("FOLDER"),
                   help=_("the folder served by the web server"))
    p.add_argument("--key", type=Path, required=True, metavar=_("FILE"),
                   help=_("private key file (the one that signed the updates)"))
    p.add_argument("--expires-days", type=_positive_days, default=7, metavar=_("DAYS"),
                   help=_("days the signed index stays valid (default 7)"))
    p.add_argument("--dossier", action="append", default=[], metavar=_("NUMBER"),
                   help=_("re-sign this dossier's index (repeatable); without files and "
                          "without --dossier, every dossier of the folder is re-signed"))
    p.add_argument("files", nargs="*", type=Path, metavar=_("FILE.wwz"))

    p = command("collect", lazy("daemon.web.handlers", "cmd_collect"),
                _("collect the dossiers farmers uploaded, verified, into an inbox folder and "
                  "publish their receipts (accountant side)"))
    p.add_argument("--repo", type=Path, required=True, metavar=_("FOLDER"),
                   help=_("the folder served by the web server"))
    p.add_argument("--out", type=Path, required=True, metavar=_("INBOX"),
                   help=_("the folder that receives the verified .wvz files"))
    p.add_argument("--key", type=Path, required=True, metavar=_("FILE"),
                   help=_("the firm's private key file (the one that signs the indexes)"))
    p.add_argument("--abandon-days", type=_positive_days, default=7, metavar=_("DAYS"),
                   help=_("remove incomplete uploads untouched for this many days "
                          "(default 7)"))
    p.add_argument("--expires-days", type=_positive_days, default=7, metavar=_("DAYS"),
                   help=_("days the signed index stays valid (default 7)"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    p = command("login", lazy("daemon.web.handlers", "cmd_login"),
                _("store the web endpoint's credentials for a dossier in the system keyring"))
    p.add_argument("dossier", metavar=_("DOSSIER"), help=_("dossier number"))
    p.add_argument("--user", help=_("user name (asked when not given)"))
    p.add_argument("--token", action="store_true",
                   help=_("use an access token (Bearer) instead of a user name and password"))
    p.add_argument("--password-stdin", action="store_true",
                   help=_("read the password or token from standard input"))
    p.add_argument("--remove", action="store_true", help=_("forget the stored credentials"))
    p.add_argument("--no-check", action="store_true",
                   help=_("do not try the credentials on the server"))

    p = command("receive", lazy("daemon.web.handlers", "cmd_receive"),
                _("look for updates on the accountant's server now and download them"))
    p.add_argument("--dossier", action="append", default=None, metavar=_("NUMBER"),
                   help=_("only this dossier (repeatable)"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))


def _positive_days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 366:
        raise argparse.ArgumentTypeError(_("expected a number of days between 0 and 366"))
    return value
