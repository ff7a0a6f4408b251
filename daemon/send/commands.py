"""CLI commands of sending (`send`, `email login|test`), registered by daemon.cli.

Only the arguments are declared here; the handlers live in daemon.send.handlers and are
imported when a sending command actually runs, so that other commands start faster.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from daemon.commands import Command, lazy
from daemon.i18n import _

CHANNELS = ("web", "folder", "email")



class _Destination(argparse.Action):
    """`--to web`, `--to email`, `--to folder` or `--to folder PATH`."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        words = [values] if isinstance(values, str) else list(values or ())
        channel, rest = words[0], words[1:]
        if channel not in CHANNELS:
            parser.error(_("--to: expected web, folder or email, not {word}").format(
                word=channel))
        if rest and (channel != "folder" or len(rest) > 1):
            parser.error(_("--to {channel}: unexpected {words}").format(
                channel=channel, words=" ".join(rest)))
        namespace.to = channel
        namespace.to_folder = Path(rest[0]).expanduser() if rest else None


def register(command: Command) -> None:
    """Add the sending commands to the CLI through its `command(name, handler, help)`."""
    p = command("identity", lazy("daemon.send.handlers", "cmd_identity"),
                _("show this installation's public key, which signs the dossiers you send"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    p = command("send", lazy("daemon.send.handlers", "cmd_send"),
                _("send a dossier to the accountant: through the accountant's site, into a"
                  " folder or onto a USB key, or by e-mail"))
    p.add_argument("dossier", metavar=_("DOSSIER"), help=_("dossier number"))
    p.add_argument("--to", action=_Destination, nargs="+", default=None,
                   metavar=("web|folder|email", _("FOLDER")),
                   help=_("where to send it: web, folder [FOLDER] (without FOLDER: the USB"
                          " key plugged in) or email; by default, as the dossier's last send"))
    p.set_defaults(to_folder=None)
    p.add_argument("--documents", choices=["all", "changed"], default=None,
                   help=_("all the documents, or only the modified or added ones (default: as"
                          " the last send, else all)"))
    p.add_argument("--objective", default=None, metavar=_("TEXT"),
                   help=_("objective of the exchange (default: as the last send, else the"
                          " first of [send] objectives)"))
    p.add_argument("--comments", default="", metavar=_("TEXT"), help=_("comments"))
    p.add_argument("--inform", action=argparse.BooleanOptionalAction, default=None,
                   help=_("send an information e-mail to the accountant after a web or"
                          " folder send (default: as the last send)"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))

    p = command("email", lazy("daemon.send.handlers", "cmd_email"),
                _("the e-mail account that sends dossiers and information e-mails"))
    actions = p.add_subparsers(dest="action", metavar=_("ACTION"), required=True)
    login = actions.add_parser("login", help=_("store the e-mail password in the system"
                                               " keyring"))
    login.add_argument("--password-stdin", action="store_true",
                       help=_("read the password from standard input"))
    login.add_argument("--remove", action="store_true", help=_("forget the stored password"))
    test = actions.add_parser("test", help=_("send a test message to your own address"))
    test.add_argument("--json", action="store_true", help=_("JSON output"))
