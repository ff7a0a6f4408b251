"""« Tester la connexion »: one look at the accountant's server with the values being set
up, before anything is saved, and a verdict in plain words."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.config import web_address_problem
from daemon.i18n import _, ngettext
from daemon.keys import PublicKey
from daemon.web.client import WebClient, WebSettings
from daemon.web.credentials import Credential, CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import verify_index

# The user waits for the answer: a server that does not answer soon is as good as absent.
TEST_SETTINGS = WebSettings(connect_timeout=8.0, read_timeout=15.0, deadline_base=20.0)


class Outcome(enum.StrEnum):
    """The stable verdicts of a connection test."""

    GOOD = "good"
    ADDRESS_NOT_FOUND = "address-not-found"
    UNREACHABLE = "unreachable"
    CREDENTIALS_REFUSED = "credentials-refused"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    DOSSIER_UNKNOWN = "dossier-unknown"
    WRONG_KEY = "wrong-key"
    SERVER_PROBLEM = "server-problem"
    ADDRESS_REFUSED = "address-refused"


@dataclass(frozen=True)
class Verdict:
    """The answer of a connection test: a stable outcome and a sentence for the user."""

    outcome: Outcome
    message: str
    updates: int = 0

    @property
    def ok(self) -> bool:
        """Tell whether passeur can receive from this server as set up."""
        return self.outcome is Outcome.GOOD


class _GivenCredential(CredentialStore):
    """The credential being typed, not (yet) the keyring's."""

    def __init__(self, credential: Credential | None) -> None:
        super().__init__()
        self._given = credential

    def get(self, dossier: str) -> Credential | None:
        """Return the credential under test."""
        return self._given


def check_connection(url: str, dossier: str, credential: Credential | None,
                    firm_key: PublicKey | None, ca_bundle: Path | None = None,
                    settings: WebSettings = TEST_SETTINGS) -> Verdict:
    """Fetch the dossier's index once and tell how it went (nothing is sent to an address
    the configuration would refuse)."""
    _bare, refused = web_address_problem(url)
    if refused:
        return Verdict(Outcome.ADDRESS_REFUSED, _("This address cannot be used: {reason}.")
                       .format(reason=refused))
    client = WebClient(url, _GivenCredential(credential), settings=settings,
                       ca_bundle=ca_bundle)
    try:
        fetch = client.fetch_index(dossier, None)
        count = 0
        if firm_key is not None:
            verified = verify_index(fetch.body, {firm_key.key_id: firm_key}, dossier,
                                    datetime.now(UTC))
            count = len(verified.index.files)
    except WebError as error:  # a CA bundle that cannot be used too, at the first request
        return verdict_for(error, dossier)
    finally:
        client.close()
    return Verdict(Outcome.GOOD, ngettext(
        "All good: {count} update available for dossier {dossier}.",
        "All good: {count} updates available for dossier {dossier}.", count).format(
            count=count, dossier=dossier), count)


def verdict_for(error: WebError, dossier: str) -> Verdict:
    """Turn the web source's failure into the test's plain verdict."""
    code = error.code
    if code is Failure.OFFLINE and error.detail == "unknown host":
        return Verdict(Outcome.ADDRESS_NOT_FOUND, _(
            "Address not found: check the server's address (no such name on the "
            "Internet)."))
    if code is Failure.OFFLINE:
        return Verdict(Outcome.UNREACHABLE, _(
            "The server does not answer ({reason}): check the address and the Internet "
            "connection.").format(reason=error.detail))
    if code in (Failure.AUTH_FAILED, Failure.AUTH_MISSING):
        return Verdict(Outcome.CREDENTIALS_REFUSED, _(
            "The server refused the user name or the password."))
    if code is Failure.TLS:
        return Verdict(Outcome.CERTIFICATE_NOT_TRUSTED, _(
            "The server's certificate is not trusted: this may not be your accountant's "
            "server ({reason}).").format(reason=error.detail))
    if code is Failure.CA_BUNDLE:
        return Verdict(Outcome.CERTIFICATE_NOT_TRUSTED, _(
            "The certificate file cannot be used: {reason}. Choose the certificate your "
            "accountant gave (PEM or DER).").format(reason=error.detail))
    if code is Failure.DOSSIER_NOT_FOUND:
        return Verdict(Outcome.DOSSIER_UNKNOWN, _(
            "The server does not know dossier {dossier}: check the dossier number with "
            "your accountant.").format(dossier=dossier))
    if code in (Failure.INDEX_KEY_UNKNOWN, Failure.INDEX_SIGNATURE_BAD):
        return Verdict(Outcome.WRONG_KEY, _(
            "The server answers, but its list of updates is not signed by your "
            "accountant's key: check the key."))
    return Verdict(Outcome.SERVER_PROBLEM, _("The server has a problem: {reason}").format(
        reason=error.message()))
