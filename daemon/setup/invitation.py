"""The firm's invitation: a small signed file that tells a farmer's passeur everything it
needs but the password (see docs/setup.md)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.config import is_email_address
from daemon.fsutil import atomic_write_bytes
from daemon.i18n import _
from daemon.keys import KeyFormatError, PublicKey, SigningKey
from daemon.naming import DOSSIER_RE

SUFFIX = ".passeur"
FORMAT = 1
MEDIA_TYPE = "application/x-passeur-invitation"
# Domain separation: an invitation signature can never pass for a manifest or an index.
INVITATION_CONTEXT = b"passeur-invitation-v1\x00"
# An invitation is a few hundred bytes; anything much larger is not one.
MAX_SIZE = 64 * 1024
_URL_RE = re.compile(r"https?://[^\s/?#]+(/[^\s?#]*)?")


class InvitationError(Exception):
    """An invitation file is refused; the message names the file and the reason."""


@dataclass(frozen=True)
class Invitation:
    """What the firm tells a farmer's passeur: the dossier, where and as whom to connect,
    and whose key signs the updates. No secret."""

    dossier: str
    dossier_name: str
    url: str
    user: str
    firm_key: str  # ed25519:…
    firm_label: str
    accountant_email: str = ""
    created_at: str = ""
    format: int = FORMAT

    @property
    def public_key(self) -> PublicKey:
        """Return the firm's public key."""
        return PublicKey.from_text(self.firm_key)

    def signed_bytes(self) -> bytes:
        """Serialise the signed part deterministically."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True,
                          indent=1).encode()


def invitation_name(dossier: str) -> str:
    """Return the file name of a dossier's invitation (`8502182.passeur`)."""
    return dossier + SUFFIX


def make_invitation(key: SigningKey, *, dossier: str, name: str, url: str, user: str,
                    label: str, email: str = "", now: datetime | None = None) -> Invitation:
    """Return the invitation for a dossier, signed by `key` (checked for sound values)."""
    invitation = Invitation(
        dossier=dossier, dossier_name=name, url=url, user=user, firm_key=key.public.text,
        firm_label=label, accountant_email=email,
        created_at=(now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"))
    problem = _problem(invitation)
    if problem:
        raise InvitationError(problem)
    return invitation


def write_invitation(folder: Path, key: SigningKey, invitation: Invitation) -> Path:
    """Write `<dossier>.passeur` into `folder`, signed by `key`; return its path."""
    signed = invitation.signed_bytes()
    envelope = {
        "passeur_invitation": FORMAT,
        "signed": signed.decode(),
        "key_id": key.public.key_id,
        "signature": base64.b64encode(key.sign(INVITATION_CONTEXT + signed)).decode("ascii"),
    }
    path = folder / invitation_name(invitation.dossier)
    atomic_write_bytes(path, json.dumps(envelope, ensure_ascii=False, indent=1).encode()
                       + b"\n")
    return path


def read_invitation(path: Path) -> Invitation:
    """Read and verify an invitation file; raise InvitationError naming the file and why.

    The file must be signed by the very key it names: a changed byte, or a signature by
    any other key, is refused.
    """
    try:
        size = path.stat().st_size
        if size > MAX_SIZE:
            raise _refused(path, _("too large to be an invitation"))
        data = path.read_bytes()
    except OSError as exc:
        raise _refused(path, str(exc.strerror or exc)) from None
    envelope = _json_object(path, data)
    signed_text, key_id, signature = (envelope.get(k) for k in ("signed", "key_id",
                                                                  "signature"))
    if not (isinstance(signed_text, str) and isinstance(key_id, str)
            and isinstance(signature, str)):
        raise _refused(path, _("this is not a passeur invitation"))
    signed = signed_text.encode()
    invitation = _parse_signed(path, signed)
    key = invitation.public_key
    if key.key_id != key_id:
        raise _refused(path, _("it is signed by another key than the firm's key it names"))
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raw = b""
    if not key.verify(raw, INVITATION_CONTEXT + signed):
        raise _refused(path, _("its signature is not valid: the file was altered or forged"))
    return invitation


def _json_object(path: Path, data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _refused(path, _("this is not a passeur invitation")) from None
    if not isinstance(value, dict) or value.get("passeur_invitation") != FORMAT:
        raise _refused(path, _("this is not a passeur invitation"))
    return value


def _parse_signed(path: Path, signed: bytes) -> Invitation:
    try:
        data = json.loads(signed)
    except json.JSONDecodeError:
        raise _refused(path, _("this is not a passeur invitation")) from None
    if not isinstance(data, dict):
        raise _refused(path, _("this is not a passeur invitation"))
    fields = Invitation.__dataclass_fields__
    values = {name: data.get(name, "") for name in fields if name != "format"}
    if data.get("format") != FORMAT or not all(isinstance(v, str) for v in values.values()):
        raise _refused(path, _("this invitation is of a format this passeur does not read"))
    invitation = Invitation(**values)
    problem = _problem(invitation)
    if problem:
        raise _refused(path, problem)
    return invitation


def _problem(invitation: Invitation) -> str | None:
    """Return why an invitation's values are unusable, or None."""
    if not DOSSIER_RE.fullmatch(invitation.dossier):
        return _("not a dossier number: {number}").format(number=invitation.dossier)
    if not _URL_RE.fullmatch(invitation.url):
        return _("not a web address: {url}").format(url=invitation.url)
    if not invitation.user.strip():
        return _("the user name is missing")
    try:
        PublicKey.from_text(invitation.firm_key)
    except KeyFormatError:
        return _("the firm's key is not a public key such as ed25519:…")
    if invitation.accountant_email and not is_email_address(invitation.accountant_email):
        return _("not an e-mail address: {address}").format(
            address=invitation.accountant_email)
    return None


def _refused(path: Path, reason: str) -> InvitationError:
    return InvitationError(_("{file}: refused: {reason}").format(file=path, reason=reason))


def phone_fingerprint(key: PublicKey) -> str:
    """Return the key's fingerprint in groups of four, as read over the phone."""
    return key.fingerprint.upper()
