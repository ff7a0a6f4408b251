"""Why the web endpoint could not do its job: stable codes and one plain message each."""

from __future__ import annotations

import enum

from daemon.errors import N_
from daemon.i18n import _, in_language


class Failure(enum.StrEnum):
    """Stable failure codes of the web source (the `code` of SourceFailed events)."""

    NOT_CONFIGURED = "not-configured"
    SETTING = "setting-invalid"
    CA_BUNDLE = "ca-bundle-invalid"
    PROXY_AUTH = "proxy-auth-failed"
    OFFLINE = "offline"
    TLS = "tls-failed"
    AUTH_MISSING = "auth-missing"
    AUTH_FAILED = "auth-failed"
    KEYRING = "keyring-unavailable"
    DOSSIER_NOT_FOUND = "dossier-not-found"
    FILE_NOT_FOUND = "file-not-found"
    SERVER_BUSY = "server-busy"
    SERVER_ERROR = "server-error"
    UNEXPECTED = "unexpected-response"
    INDEX_MALFORMED = "index-malformed"
    INDEX_KEY_UNKNOWN = "index-key-unknown"
    INDEX_SIGNATURE_BAD = "index-signature-bad"
    INDEX_EXPIRED = "index-expired"
    INDEX_ROLLBACK = "index-rollback"
    TOO_LARGE = "too-large"
    SIZE_MISMATCH = "size-mismatch"
    HASH_MISMATCH = "hash-mismatch"
    INTERRUPTED = "interrupted"
    DEADLINE = "deadline"
    DISK_FULL = "disk-full"
    DISK_ERROR = "disk-error"


# {dossier} is the dossier concerned, {detail} a short technical precision.
MESSAGES: dict[Failure, str] = {
    Failure.NOT_CONFIGURED: N_(
        "no address is configured for the accountant's server ([sources.web] url)"),
    Failure.SETTING: N_("the accountant's server is not used: {detail}"),
    Failure.CA_BUNDLE: N_(
        "the certificates given for the accountant's server cannot be used "
        "([sources.web] ca_bundle): {detail}"),
    Failure.PROXY_AUTH: N_(
        "the proxy refused its credentials (HTTP 407): check the user name and password "
        "in the proxy setting (HTTPS_PROXY)"),
    Failure.OFFLINE: N_("the accountant's server cannot be reached ({detail})"),
    Failure.TLS: N_(
        "the identity of the accountant's server cannot be verified (TLS certificate): "
        "connection refused ({detail})"),
    Failure.AUTH_MISSING: N_(
        "the accountant's server asks for a user name and password for dossier {dossier}: "
        "run passeur login {dossier}"),
    Failure.AUTH_FAILED: N_(
        "the accountant's server refused the credentials for dossier {dossier}: "
        "check them with passeur login {dossier}"),
    Failure.KEYRING: N_("the system keyring cannot be used to keep the password ({detail})"),
    Failure.DOSSIER_NOT_FOUND: N_(
        "the accountant's server has no updates for dossier {dossier} (address not found)"),
    Failure.FILE_NOT_FOUND: N_(
        "an update listed by the accountant's server is missing from it: {detail}"),
    Failure.SERVER_BUSY: N_("the accountant's server is busy; it will be asked again later "
                            "({detail})"),
    Failure.SERVER_ERROR: N_("the accountant's server has a problem ({detail})"),
    Failure.UNEXPECTED: N_("the accountant's server gave an unexpected answer ({detail})"),
    Failure.INDEX_MALFORMED: N_(
        "the list of updates for dossier {dossier} is not valid ({detail})"),
    Failure.INDEX_KEY_UNKNOWN: N_(
        "the list of updates for dossier {dossier} is signed by an unknown key ({detail})"),
    Failure.INDEX_SIGNATURE_BAD: N_(
        "the signature of the list of updates for dossier {dossier} is not valid: "
        "it was altered or forged"),
    Failure.INDEX_EXPIRED: N_(
        "the list of updates for dossier {dossier} has expired ({detail}): the accountant's "
        "server is no longer kept up to date"),
    Failure.INDEX_ROLLBACK: N_(
        "the list of updates for dossier {dossier} is older than one already seen "
        "({detail}): refused"),
    Failure.TOO_LARGE: N_("too large: {detail}"),
    Failure.SIZE_MISMATCH: N_(
        "a downloaded file does not have the announced size: {detail}"),
    Failure.HASH_MISMATCH: N_(
        "a downloaded file does not have the announced fingerprint (SHA-256): {detail}"),
    Failure.INTERRUPTED: N_("the download was interrupted; it will resume ({detail})"),
    Failure.DEADLINE: N_(
        "the download took too long and was stopped; it will resume ({detail})"),
    Failure.DISK_FULL: N_("the disk is full: {detail}"),
    Failure.DISK_ERROR: N_("the file cannot be written: {detail}"),
}

# Failures worth another try soon; the others wait until something changes.
TRANSIENT = frozenset({
    Failure.OFFLINE, Failure.SERVER_BUSY, Failure.SERVER_ERROR, Failure.INTERRUPTED,
    Failure.DEADLINE, Failure.UNEXPECTED,
})


class WebError(Exception):
    """One failure of the web source, with a stable code and a message for the user."""

    def __init__(self, code: Failure, *, dossier: str = "", detail: object = "",
                 retry_after: float | None = None) -> None:
        self.code = code
        self.dossier = dossier
        self.detail = str(detail)
        self.retry_after = retry_after
        super().__init__(f"{code}: {self.message_in('en')}")

    def message(self) -> str:
        """Return the message in the active language."""
        # A detail that is a message of the catalogue (« connection refused ») is said in
        # that language too; a file name or an HTTP status stays as it is.
        return _(MESSAGES[self.code]).format(dossier=self.dossier,
                                             detail=_(self.detail) if self.detail else "")

    def message_in(self, language: str) -> str:
        """Return the message in a given language ("fr" or "en")."""
        detail = in_language(language, self.detail) if self.detail else ""
        return in_language(language, MESSAGES[self.code]).format(dossier=self.dossier,
                                                                 detail=detail)

    @property
    def transient(self) -> bool:
        """Tell whether trying again soon may succeed."""
        return self.code in TRANSIENT
