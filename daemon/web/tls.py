"""The TLS context of every connection to the accountant's server: always verified, with
the system's certificate authorities plus an optional bundle, PEM or DER."""

from __future__ import annotations

import ssl
from pathlib import Path

from daemon.errors import N_

_PEM_MARK = b"-----BEGIN"


class CABundleError(Exception):
    """The `ca_bundle` file cannot be used: `why` is a message of the catalogue (N_)."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"{path}: {why}")


def ssl_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """Return a verifying context: the system's CAs, plus those of `ca_bundle`.

    The bundle may be PEM (one or more certificates) or DER (one certificate, what Windows
    exports as `.cer`); anything else raises CABundleError.
    """
    context = ssl.create_default_context()
    if ca_bundle is not None:
        _load_bundle(context, ca_bundle)
    return context


def check_ca_bundle(ca_bundle: Path) -> None:
    """Raise CABundleError unless `ca_bundle` holds certificates a context can use."""
    _load_bundle(ssl.create_default_context(), ca_bundle)


def _load_bundle(context: ssl.SSLContext, ca_bundle: Path) -> None:
    try:
        data = ca_bundle.read_bytes()
    except FileNotFoundError:
        raise CABundleError(ca_bundle, N_("the file does not exist")) from None
    except IsADirectoryError:
        raise CABundleError(ca_bundle, N_("this is a folder, not a file")) from None
    except OSError:
        raise CABundleError(ca_bundle, N_("the file cannot be read")) from None
    try:
        if _PEM_MARK in data:
            context.load_verify_locations(cadata=data.decode("ascii", "replace"))
        else:
            context.load_verify_locations(cadata=data)  # DER
    except (ssl.SSLError, ValueError):
        raise CABundleError(ca_bundle, N_(
            "expected CA certificates in PEM or DER form")) from None
