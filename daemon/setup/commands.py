"""CLI commands of setting up (`invite` on the firm's side, `setup` on the farmer's),
registered by daemon.cli.

Only the arguments are declared here; the handlers live in daemon.setup.handlers and are
imported when the command actually runs.
"""

from __future__ import annotations

from pathlib import Path

from daemon.commands import Command, lazy
from daemon.i18n import _


def register(command: Command) -> None:
    """Add the setting-up commands to the CLI through its `command(name, handler, help)`."""
    p = command("invite", lazy("daemon.setup.handlers", "cmd_invite"),
                _("write a signed invitation file that sets a farmer's passeur up "
                  "(accountant side)"))
    p.add_argument("dossier", metavar=_("DOSSIER"), help=_("dossier number"))
    p.add_argument("--name", required=True, help=_("dossier name"))
    p.add_argument("--url", required=True, help=_("the web endpoint's address"))
    p.add_argument("--user", required=True, help=_("the farmer's user name on it"))
    p.add_argument("--key", type=Path, required=True, metavar=_("FILE"),
                   help=_("the firm's private key file (the one that signs the updates)"))
    p.add_argument("--label", required=True, help=_("the firm's name, shown to the farmer"))
    p.add_argument("--email", default="", help=_("the accountant's e-mail address"))
    p.add_argument("--out", type=Path, default=Path("."), metavar=_("FOLDER"),
                   help=_("where to write the file"))

    p = command("setup", lazy("daemon.setup.handlers", "cmd_setup"),
                _("set passeur up from the accountant's invitation file (or step by step)"))
    p.add_argument("file", nargs="?", type=Path, metavar=_("FILE.passeur"),
                   help=_("the invitation file; without it, the questions are asked here"))
    p.add_argument("--dossier", metavar=_("NUMBER"), help=_("dossier number"))
    p.add_argument("--name", help=_("dossier name"))
    p.add_argument("--url", help=_("the web endpoint's address"))
    p.add_argument("--user", help=_("user name on the web endpoint"))
    p.add_argument("--firm-key", metavar="ed25519:…",
                   help=_("the accountant firm's public key"))
    p.add_argument("--label", default="", help=_("the firm's name"))
    p.add_argument("--email", default="", help=_("the accountant's e-mail address"))
    p.add_argument("--folder", help=_("the dossier's local folder"))
    p.add_argument("--ca-bundle", type=Path, metavar=_("FILE"),
                   help=_("extra CA certificates of the server (TLS is always verified)"))
    p.add_argument("--password-stdin", action="store_true",
                   help=_("read the password from standard input"))
    p.add_argument("--yes", action="store_true",
                   help=_("do not ask to confirm the firm's key fingerprint"))
    p.add_argument("--no-check", action="store_true",
                   help=_("do not test the connection (set up without the Internet)"))
    p.add_argument("--gui", action="store_true",
                   help=_("open the set-up window instead of asking here"))
    p.add_argument("--register-file-type", action="store_true",
                   help=_("make a double-click on an invitation file (.passeur) open "
                          "passeur's set-up window, then stop"))
