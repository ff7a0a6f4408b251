"""Ed25519 signing keys of the accountant's firm: generation, text form, key ids, signatures."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# cryptography is imported where it is used: every command reads keys from the config, few
# verify or sign, and its import dominates a short command's start-up.

PUBLIC_PREFIX = "ed25519:"
# Domain separation: a manifest signature can never be replayed as another kind of signature.
MANIFEST_CONTEXT = b"passeur-manifest-v1\x00"


class KeyFormatError(ValueError):
    """A public or private key could not be read."""


@dataclass(frozen=True)
class PublicKey:
    """A trusted public key with its short id."""

    raw: bytes

    @property
    def key_id(self) -> str:
        """Return the key id: the first 16 hex digits of the SHA-256 of the raw key."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """Return the first 32 hex digits of the key's SHA-256 in groups of 4, to be read
        over the phone ("a822 efe2 cdd5 599a …"); it begins with the key id."""
        digits = hashlib.sha256(self.raw).hexdigest()[:32]
        return " ".join(digits[i:i + 4] for i in range(0, len(digits), 4))

    @property
    def text(self) -> str:
        """Return the key as `ed25519:<base64>`, the form used in the config."""
        return PUBLIC_PREFIX + base64.b64encode(self.raw).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> PublicKey:
        """Parse `ed25519:<base64>`, raising KeyFormatError when malformed."""
        text = text.strip()
        if not text.startswith(PUBLIC_PREFIX):
            raise KeyFormatError(text)
        try:
            raw = base64.b64decode(text[len(PUBLIC_PREFIX) :], validate=True)
        except binascii.Error:
            raise KeyFormatError(text) from None
        if len(raw) != 32:
            raise KeyFormatError(text)
        return cls(raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Tell whether `signature` is this key's signature of `message`."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class SigningKey:
    """The accountant firm's private key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> SigningKey:
        """Make a new random key pair."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a PEM private key file."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFormatError(str(path)) from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError(str(path))
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the private key as PEM, readable by its owner only, never overwriting."""
        from cryptography.hazmat.primitives import serialization

        pem = self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())

    @property
    def public(self) -> PublicKey:
        """Return the matching public key."""
        from cryptography.hazmat.primitives import serialization

        raw = self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(raw)

    def sign(self, message: bytes) -> bytes:
        """Sign `message`."""
        return self._private.sign(message)
