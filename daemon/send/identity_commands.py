"""The `passeur identity` command: this installation's public key, to give the accountant.

Registered by daemon.cli; the key itself is read (or made) only when the command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from daemon.commands import Command
from daemon.i18n import _

if TYPE_CHECKING:
    from daemon.context import Context


def register(command: Command) -> None:
    """Add `identity` to the CLI through its `command(name, handler, help)` factory."""
    p = command("identity", cmd_identity,
                _("show this installation's public key, which signs the dossiers you send"))
    p.add_argument("--json", action="store_true", help=_("JSON output"))


def cmd_identity(ctx: Context, args: argparse.Namespace) -> int:
    """Print the installation's public key, key id and fingerprint (made on first use)."""
    from daemon.cli import EXIT_FAILED, EXIT_OK, emit_json, err, out
    from daemon.send.base import SendError
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
