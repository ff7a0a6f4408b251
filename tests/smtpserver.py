"""A real SMTP server on 127.0.0.1 for the e-mail tests: aiosmtpd with STARTTLS and AUTH.

Its certificate is signed by a private CA of the test's own (tests.nginx.make_tls), which
the client is given as `[email] ca_bundle`: TLS is verified exactly as with a provider.
The server records every message it accepted and counts the commands it saw, so that a
test can prove that nothing was sent (no MAIL, no DATA) after a refusal.
"""

from __future__ import annotations

import ssl
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.nginx import TLSFiles, free_port, make_tls

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
except ImportError:  # pragma: no cover - the suite installs it (pyproject's test extra)
    pytest.fail("aiosmtpd is missing: pip install -e '.[test]' (tests/run.sh does)")

# Said by aiosmtpd for the servers built on purpose without TLS for AUTH (see smtp_server).
warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        """Return the message parsed as a mail client would."""
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def attachments(self) -> dict[str, bytes]:
        """Return the attachments by file name, decoded."""
        found = {}
        for part in self.message.iter_attachments():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[str(part.get_filename())] = payload
        return found

    def text(self) -> str:
        """Return the plain-text body."""
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())


@dataclass
class Counters:
    """The commands the server saw (EHLO, AUTH, MAIL, DATA), across every connection."""

    ehlo: int = 0
    auth: int = 0
    mail: int = 0
    data: int = 0
    starttls: int = 0


@dataclass
class _Handler:
    users: dict[str, str]
    refused: frozenset[str]
    counters: Counters = field(default_factory=Counters)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        with self.lock:
            self.received.append(Received(str(envelope.mail_from),
                                          tuple(envelope.rcpt_tos), content))
        return "250 2.0.0 Message accepted"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                     mechanism: str, auth_data: Any) -> AuthResult:
        with self.lock:
            self.counters.auth += 1
        if isinstance(auth_data, LoginPassword):
            user = auth_data.login.decode()
            if self.users.get(user) == auth_data.password.decode():
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class _CountingSMTP(SMTP):
    """aiosmtpd's server, counting the commands that matter to the tests."""

    def _count(self, name: str) -> None:
        handler = self.event_handler
        assert isinstance(handler, _Handler)
        with handler.lock:
            setattr(handler.counters, name, getattr(handler.counters, name) + 1)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._count("ehlo")
        await super().smtp_EHLO(hostname)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self._count("starttls")
        await super().smtp_STARTTLS(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        self._count("mail")
        await super().smtp_MAIL(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._count("data")
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class SmtpServer:
    """A running server: where it listens, its CA, and what it saw."""

    host: str
    port: int
    tls: TLSFiles
    handler: _Handler

    @property
    def received(self) -> list[Received]:
        """Return the messages accepted so far."""
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def counters(self) -> Counters:
        """Return the commands seen so far."""
        return self.handler.counters


def _server_context(tls: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    return context


@contextmanager
def smtp_server(folder: Path, *, users: dict[str, str] | None = None,
                implicit_tls: bool = False, starttls: bool = True,
                refused: frozenset[str] = frozenset(),
                data_size_limit: int = 64 << 20) -> Iterator[SmtpServer]:
    """Run an SMTP server on 127.0.0.1 with AUTH (only over TLS) for the `users` given.

    STARTTLS is offered and required unless `starttls` is False; `implicit_tls` makes it
    speak TLS from the first byte instead (port 465 style).
    """
    tls = make_tls(folder)
    handler = _Handler(dict(users or {"ferme": "motdepasse"}), refused)
    context = _server_context(tls)
    kwargs: dict[str, Any] = {"authenticator": handler.authenticate, "auth_required": True,
                              "auth_require_tls": True, "data_size_limit": data_size_limit,
                              "server_hostname": "smtp.test"}
    if implicit_tls:
        # aiosmtpd 1.4 counts only STARTTLS as TLS for auth_require_tls; here every byte
        # is encrypted anyway.
        kwargs.update(ssl_context=context, auth_require_tls=False)
    elif starttls:
        kwargs.update(tls_context=context, require_starttls=True)
    else:
        kwargs["auth_require_tls"] = False  # a server the client must refuse to log in to
    port = free_port()
    controller = _Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, tls, handler)
    finally:
        controller.stop()
