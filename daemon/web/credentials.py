"""Per-dossier credentials for the web endpoint, kept in the system keyring only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import keyring
import keyring.errors

from daemon.support.redact import register_secret
from daemon.web.failures import Failure, WebError

SERVICE = "passeur"
BASIC, BEARER = "basic", "bearer"


@dataclass(frozen=True)
class Credential:
    """HTTP Basic (user + password) or Bearer token; the secret never shows in repr."""

    scheme: str
    secret: str
    user: str = ""

    def __repr__(self) -> str:
        return f"Credential(scheme={self.scheme!r}, user={self.user!r}, secret='***')"

    def to_text(self) -> str:
        """Serialise for the keyring."""
        return json.dumps({"scheme": self.scheme, "user": self.user, "secret": self.secret})

    @classmethod
    def from_text(cls, text: str) -> Credential | None:
        """Read what `to_text` wrote; None when unreadable."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict) or data.get("scheme") not in (BASIC, BEARER):
            return None
        user, secret = data.get("user", ""), data.get("secret")
        if not isinstance(user, str) or not isinstance(secret, str):
            return None
        return cls(data["scheme"], secret, user)


def account(dossier: str) -> str:
    """Return the keyring account name for a dossier's web credentials."""
    return f"web:{dossier}"


class CredentialStore:
    """Reads and writes credentials in a keyring backend (the system's by default)."""

    def __init__(self, backend: Any | None = None) -> None:
        self._backend = backend

    def _keyring(self) -> Any:
        return self._backend if self._backend is not None else keyring.get_keyring()

    def get(self, dossier: str) -> Credential | None:
        """Return the dossier's credential, or None when none is stored."""
        try:
            text = self._keyring().get_password(SERVICE, account(dossier))
        except keyring.errors.KeyringError as exc:
            raise WebError(Failure.KEYRING, dossier=dossier, detail=type(exc).__name__) from None
        credential = Credential.from_text(text) if text else None
        if credential is not None:
            register_secret(credential.secret)  # blanked out of every log line from now on
        return credential

    def set(self, dossier: str, credential: Credential) -> None:
        """Store (or replace) the dossier's credential."""
        register_secret(credential.secret)
        try:
            self._keyring().set_password(SERVICE, account(dossier), credential.to_text())
        except keyring.errors.KeyringError as exc:
            raise WebError(Failure.KEYRING, dossier=dossier, detail=type(exc).__name__) from None

    def delete(self, dossier: str) -> bool:
        """Forget the dossier's credential; False when there was none."""
        try:
            self._keyring().delete_password(SERVICE, account(dossier))
        except keyring.errors.PasswordDeleteError:
            return False
        except keyring.errors.KeyringError as exc:
            raise WebError(Failure.KEYRING, dossier=dossier, detail=type(exc).__name__) from None
        return True
