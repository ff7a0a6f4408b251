"""This installation's own Ed25519 key: it signs the `.wvz` the farmer sends.

Made the first time it is needed, kept in the data folder (`identity.key`, PEM, mode
0600). The accountant's firm pins its public key per dossier, so the key is never
replaced behind the user's back: an unreadable key file is an error, not a reason to
make a new one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from daemon.fsutil import exclusive_lock, fsync_dir, temp_name
from daemon.i18n import _
from daemon.keys import KeyFormatError, PublicKey, SigningKey
from daemon.send.base import SendError

KEY_FILE = "identity.key"
_LOCK_FILE = "identity.lock"


def key_path(data_dir: Path) -> Path:
    """Return where the installation key is kept."""
    return data_dir / KEY_FILE


def installation_key(data_dir: Path) -> SigningKey:
    """Return this installation's signing key, making it on first use.

    Two processes asking at once for the first time get the same key: the key is made
    under a lock shared by every process, written to a temporary file and renamed, so a
    reader never sees half a key. Raises SendError("identity") when the file exists but
    cannot be read as a key.
    """
    path = key_path(data_dir)
    if not path.exists():
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            with exclusive_lock(data_dir / _LOCK_FILE):
                if not path.exists():
                    _make_key(path)
        except OSError as exc:
            raise SendError("identity", _(
                "This installation's key cannot be made in {folder}: {reason}."
            ).format(folder=data_dir, reason=exc.strerror or exc)) from None
    return _load(path)


def installation_public_key(data_dir: Path) -> PublicKey:
    """Return this installation's public key (the key is made when missing)."""
    return installation_key(data_dir).public


def _make_key(path: Path) -> None:
    tmp = temp_name(path)
    try:
        SigningKey.generate().save(tmp)  # 0600, fsync'd
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(path.parent)


def _load(path: Path) -> SigningKey:
    try:
        return SigningKey.load(path)
    except OSError as exc:
        reason = exc.strerror or str(exc)
    except KeyFormatError:
        reason = _("it does not hold a passeur private key")
    raise SendError("identity", _(
        "This installation's key {path} cannot be read: {reason}. It identifies you to "
        "your accountant: restore it from a backup rather than delete it."
    ).format(path=path, reason=reason))
