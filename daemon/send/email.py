"""*Email*: sending the `.wvz` as an attachment, and the information e-mail after a send.

SMTP with STARTTLS (default) or implicit TLS, the server's certificate always verified
(the system's CAs plus an optional `[email] ca_bundle`), AUTH with the password kept in
the system keyring (service "passeur", account `smtp:<user>@<host>`). A message too large
for the common providers is refused before anything is packed or sent; SMTP itself makes
a message all-or-nothing: the server takes it only once the whole DATA has arrived, so a
refused login or address, a cut connection or a timeout leave nothing half-sent.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Any

import keyring
import keyring.errors

from daemon.config import EmailConfig
from daemon.i18n import _
from daemon.presentation import channel_label, format_size
from daemon.send.base import MB, Channel, Progress, SendError, SendJob, Sent, email_size
from daemon.web.credentials import SERVICE

if TYPE_CHECKING:
    from daemon.send.report import SendReport

# The slowest upload a farm's line may have (64 kbit/s): the whole conversation's deadline
# grows with the message at this rate, so that a server trickling its answers cannot hold
# a send for ever, while a slow line still gets the time it needs.
MIN_RATE_BPS = 8_000
CHUNK = 64 << 10


def smtp_account(user: str, host: str) -> str:
    """Return the keyring account of the SMTP password."""
    return f"smtp:{user}@{host}"


class SmtpPasswords:
    """The SMTP password in the system keyring (or in the `backend` given)."""

    def __init__(self, backend: Any | None = None) -> None:
        self._backend = backend

    def _keyring(self) -> Any:
        return self._backend if self._backend is not None else keyring.get_keyring()

    def get(self, user: str, host: str) -> str | None:
        """Return the stored password, or None."""
        with self._errors():
            password = self._keyring().get_password(SERVICE, smtp_account(user, host))
        return password if isinstance(password, str) else None

    def set(self, user: str, host: str, password: str) -> None:
        """Store (or replace) the password."""
        with self._errors():
            self._keyring().set_password(SERVICE, smtp_account(user, host), password)

    def delete(self, user: str, host: str) -> bool:
        """Forget the password; False when there was none."""
        try:
            with self._errors():
                self._keyring().delete_password(SERVICE, smtp_account(user, host))
        except keyring.errors.PasswordDeleteError:
            return False
        return True

    @staticmethod
    @contextlib.contextmanager
    def _errors() -> Iterator[None]:
        try:
            yield
        except keyring.errors.PasswordDeleteError:
            raise
        except keyring.errors.KeyringError as exc:
            raise SendError("keyring", _(
                "The system keyring, where the e-mail password is kept, cannot be used"
                " ({error}).").format(error=type(exc).__name__)) from None


# ---------------------------------------------------------------- messages


def _new_message(settings: EmailConfig, to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = settings.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    # The sender's domain, not socket.getfqdn(): that may wait on a slow DNS.
    message["Message-ID"] = make_msgid("passeur", settings.sender.rpartition("@")[2])
    message.set_content(body)
    return message


def _about_lines(objective: str, comments: str) -> list[str]:
    lines = []
    if objective:
        lines.append(_("Objective of the exchange: {text}").format(text=objective))
    if comments:
        lines.append(_("Comments: {text}").format(text=comments))
    return lines


def dossier_message(settings: EmailConfig, job: SendJob, to: str) -> EmailMessage:
    """Return the e-mail that carries the `.wvz` to the accountant."""
    body = [_("Hello,"), "",
            _("Here is dossier {number} - {name}: the file {file} ({size}) is attached.").format(
                number=job.dossier, name=job.dossier_name, file=job.name,
                size=format_size(job.size)),
            *_about_lines(job.objective, job.comments), "", _("Sent by passeur."), ""]
    message = _new_message(settings, to, _("Dossier {number} - {name}: {file}").format(
        number=job.dossier, name=job.dossier_name, file=job.name), "\n".join(body))
    message.add_attachment(job.file.read_bytes(), maintype="application",
                           subtype="octet-stream", filename=job.name)
    return message


def information_message(settings: EmailConfig, report: SendReport, to: str) -> EmailMessage:
    """Return the *mail d'information* telling the accountant a dossier was sent."""
    body = [_("Hello,"), "",
            _("Dossier {number} - {name} was sent to you ({channel}): file {file}, {size}.")
            .format(number=report.dossier, name=report.dossier_name, file=report.name,
                    size=format_size(report.size), channel=channel_label(str(report.channel))),
            *_about_lines(report.objective, report.comments), "", _("Sent by passeur."), ""]
    return _new_message(settings, to, _("Dossier {number} - {name} sent: {file}").format(
        number=report.dossier, name=report.dossier_name, file=report.name), "\n".join(body))


def trial_message(settings: EmailConfig) -> EmailMessage:
    """Return the message `passeur email test` sends to the farmer's own address."""
    return _new_message(settings, settings.sender, _("passeur: test message"), "\n".join([
        _("This message was sent by passeur to check the e-mail settings: they work."), ""]))


# ---------------------------------------------------------------- SMTP


def _send_in_chunks(send: Callable[[bytes], None], data: bytes | str,
                    on_bytes: Callable[[int], None] | None) -> None:
    if isinstance(data, str) or on_bytes is None or len(data) <= CHUNK:
        send(data)  # type: ignore[arg-type]  # smtplib's own commands: short texts
        return
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        send(bytes(view[start:start + CHUNK]))
        on_bytes(min(start + CHUNK, len(view)))


class _SMTP(smtplib.SMTP):
    """smtplib's client, sending DATA in chunks so that progress can be told."""

    _host: str  # smtplib's own: the name TLS checks the certificate against
    on_bytes: Callable[[int], None] | None = None

    def send(self, s: Any) -> None:
        """Send `s`, in chunks when it is the message."""
        _send_in_chunks(super().send, s, self.on_bytes)


class _SMTPSSL(smtplib.SMTP_SSL):
    """The same over implicit TLS."""

    _host: str
    on_bytes: Callable[[int], None] | None = None

    def send(self, s: Any) -> None:
        """Send `s`, in chunks when it is the message."""
        _send_in_chunks(super().send, s, self.on_bytes)


class _Watchdog:
    """Cuts the connection when the user cancels or the whole conversation's deadline
    passes: smtplib's timeout bounds each wait, not the sum of them."""

    def __init__(self, deadline_s: float, cancel: threading.Event | None) -> None:
        self.deadline_s = deadline_s
        self.cancel = cancel or threading.Event()
        self.fired = ""  # "cancelled" or "timeout" once it cut the connection
        self._done = threading.Event()
        self._client: smtplib.SMTP | None = None
        self._thread = threading.Thread(target=self._watch, name="smtp-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def watch(self, client: smtplib.SMTP) -> None:
        """Cut this client's connection when it is time."""
        self._client = client

    def _watch(self) -> None:
        step = 0.1
        waited = 0.0
        while not self._done.wait(step):
            waited += step
            if self.cancel.is_set():
                self._cut("cancelled")
                return
            if waited >= self.deadline_s:
                self._cut("timeout")
                return

    def _cut(self, why: str) -> None:
        self.fired = why
        sock = getattr(self._client, "sock", None)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, not SSLSocket's: that one also drops the TLS
                # state another thread is reading with. Reads and writes then fail at once.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Mailer:
    """Sends one message through the configured SMTP server, or says clearly why not."""

    def __init__(self, settings: EmailConfig, passwords: SmtpPasswords | None = None) -> None:
        self.settings = settings
        self.passwords = passwords or SmtpPasswords()

    @property
    def server(self) -> str:
        """Return host:port, as the user's sentences name the server."""
        return f"{self.settings.smtp_host}:{self.settings.port}"

    def check_configured(self) -> None:
        """Raise SendError when no message can be sent: no server, no sender, no password."""
        if not self.settings.configured:
            raise SendError("email-not-configured", _(
                "E-mail is not set up: give the server and your address in the configuration"
                " ([email] smtp_host and from), see passeur config."), _(
                "E-mail is not set up yet: give the sending server and your address in"
                " Settings ▸ E-mail."))
        if self.settings.user and not self.password():
            raise SendError("email-login-missing", _(
                "No password is stored for the e-mail account {user} on {host}: store it"
                " with passeur email login.").format(user=self.settings.user,
                                                      host=self.settings.smtp_host), _(
                "No password is stored for the e-mail account {user} on {host}: give it in"
                " Settings ▸ E-mail.").format(user=self.settings.user,
                                               host=self.settings.smtp_host))

    def password(self) -> str | None:
        """Return the SMTP password from the keyring (None without a user or a password)."""
        if not self.settings.user:
            return None
        return self.passwords.get(self.settings.user, self.settings.smtp_host)

    def tls_context(self) -> ssl.SSLContext:
        """Return a verifying TLS context: the system's CAs plus `[email] ca_bundle`."""
        context = ssl.create_default_context()
        if self.settings.ca_bundle is not None:
            try:
                context.load_verify_locations(cafile=str(self.settings.ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise SendError("email-ca-bundle", _(
                    "The certificates file {path} ([email] ca_bundle) cannot be read ({error})."
                ).format(path=self.settings.ca_bundle, error=exc)) from None
        return context

    def deliver(self, message: EmailMessage, progress: Progress | None = None,
                cancel: threading.Event | None = None) -> int:
        """Send `message` to its To address; return its size in bytes. Raise SendError."""
        data = message.as_bytes(policy=SMTP_POLICY)
        self.deliver_bytes(data, str(message["To"]), progress, cancel)
        return len(data)

    def deliver_bytes(self, data: bytes, to: str, progress: Progress | None = None,
                      cancel: threading.Event | None = None) -> None:
        """Send an already encoded message to `to`. Raise SendError."""
        self.check_configured()
        deadline = 3.0 * self.settings.timeout_s + len(data) / MIN_RATE_BPS
        with _Watchdog(deadline, cancel) as watchdog:
            try:
                self._converse(data, to, progress, watchdog)
            except (smtplib.SMTPException, OSError) as exc:
                raise self._explain(exc, to, watchdog.fired) from None

    def _converse(self, data: bytes, to: str, progress: Progress | None,
                  watchdog: _Watchdog) -> None:
        settings = self.settings
        context = self.tls_context()
        client: _SMTP | _SMTPSSL = (
            _SMTPSSL(timeout=settings.timeout_s, context=context)
            if settings.security == "tls" else _SMTP(timeout=settings.timeout_s))
        # The name TLS checks the certificate against: smtplib takes it only from its
        # constructor, which would connect before the watchdog could cut the greeting's wait.
        client._host = settings.smtp_host
        watchdog.watch(client)
        try:
            client.connect(settings.smtp_host, settings.port)
            client.ehlo()
            if settings.security == "starttls":
                if not client.has_extn("starttls"):
                    raise _NoStartTLS
                client.starttls(context=context)
                client.ehlo()
            if settings.user:
                client.login(settings.user, self.password() or "")
            if progress is not None:
                client.on_bytes = lambda done: progress(min(done, len(data)), len(data))
            client.sendmail(settings.sender, [to], data)
        finally:
            client.on_bytes = None
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()  # the message is accepted (or refused) already
            client.close()

    def _explain(self, exc: Exception, to: str, fired: str) -> SendError:
        server, settings = self.server, self.settings
        if fired == "cancelled":
            return SendError("cancelled", _(
                "The send was cancelled before the e-mail server took the message: nothing"
                " was sent."))
        if fired == "timeout" or isinstance(exc, TimeoutError) or isinstance(
                exc.__context__, TimeoutError):
            return SendError("email-timeout", _(
                "The e-mail server {server} did not answer in time: nothing was sent. Try"
                " again later.").format(server=server))
        if isinstance(exc, _NoStartTLS):
            return SendError("email-no-starttls", _(
                "The e-mail server {server} does not offer STARTTLS, so the password and the"
                ' dossier would travel unencrypted: nothing was sent. If the server uses'
                ' implicit TLS (usually port 465), set security = "tls" in [email].').format(
                    server=server))
        if isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError) or (
                type(exc) is smtplib.SMTPException and "authentication" in str(exc).lower()):
            return SendError("email-login-refused", _(
                "The e-mail server {server} refused the login {user} ({reply}): nothing was"
                " sent. Store the right password with passeur email login.").format(
                    server=server, user=settings.user, reply=_reply(exc)))
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            return SendError("email-recipient-refused", _(
                "The e-mail server refused the address {address} ({reply}): nothing was"
                " sent.").format(address=to, reply=_reply(exc)))
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return SendError("email-sender-refused", _(
                "The e-mail server refused the sender address {address} ({reply}): nothing"
                " was sent. Check [email] from.").format(address=settings.sender,
                                                         reply=_reply(exc)))
        if isinstance(exc, smtplib.SMTPDataError | smtplib.SMTPResponseException):
            return SendError("email-refused", _(
                "The e-mail server {server} refused the message ({reply}): nothing was"
                " sent.").format(server=server, reply=_reply(exc)))
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SendError("email-certificate", _(
                "The e-mail server {server} could not prove who it is (certificate: {reason}):"
                " nothing was sent.").format(server=server,
                                             reason=exc.verify_message or exc.reason))
        if isinstance(exc, ssl.SSLError):
            return SendError("email-tls", _(
                "The secure connection to the e-mail server {server} failed ({reason}):"
                " nothing was sent.").format(server=server, reason=exc.reason or exc))
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return SendError("email-disconnected", _(
                "The e-mail server {server} closed the connection before taking the message:"
                " it was not sent.").format(server=server))
        if isinstance(exc, OSError):
            return SendError("email-unreachable", _(
                "The e-mail server {server} cannot be reached ({reason}): nothing was sent."
                " Check [email] smtp_host and smtp_port, and the Internet connection.").format(
                    server=server, reason=exc.strerror or exc))
        return SendError("email-failed", _(
            "The e-mail could not be sent through {server} ({reason}).").format(
                server=server, reason=exc))


class _NoStartTLS(smtplib.SMTPException):
    """The server does not offer STARTTLS although `security` asks for it."""


def _reply(exc: Exception) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        return " ".join(_reply_text(code, text) for code, text in replies)
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply_text(exc.smtp_code, exc.smtp_error)
    return str(exc)


def _reply_text(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {words}".strip()


# ---------------------------------------------------------------- the destination


class EmailDestination:
    """Sends the `.wvz` attached to an e-mail to the accountant."""

    channel = Channel.EMAIL

    def __init__(self, settings: EmailConfig, passwords: SmtpPasswords | None = None, *,
                 max_mb: int = 20, to: str = "") -> None:
        self.mailer = Mailer(settings, passwords)
        self.to = to or settings.accountant
        self.max_bytes = max_mb * MB

    def check(self, job_size: int) -> None:
        """Refuse when e-mail is not set up, or when the message would be too large."""
        self.mailer.check_configured()
        if not self.to:
            raise SendError("email-no-recipient", _(
                "The accountant's e-mail address is not set: give it in the configuration"
                " ([email] accountant)."), _(
                "The accountant's e-mail address is not set: give it in Settings ▸"
                " Accountant."))
        self._check_size(email_size(job_size))

    def _check_size(self, message_size: int) -> None:
        if message_size > self.max_bytes:
            raise SendError("email-too-large", _(
                "The dossier makes an e-mail of {size}, more than the {limit} that mail"
                " servers commonly accept ([send] email_max_mb): it was not sent. Send it on"
                " a USB key (--to folder) or through your accountant's site (--to web)"
                " instead.").format(size=format_size(message_size),
                                    limit=format_size(self.max_bytes)))

    def send(self, job: SendJob, progress: Progress, cancel: threading.Event) -> Sent:
        """Send the e-mail with the file attached."""
        data = dossier_message(self.mailer.settings, job, self.to).as_bytes(policy=SMTP_POLICY)
        self._check_size(len(data))
        self.mailer.deliver_bytes(data, self.to, progress, cancel)
        return Sent(self.to, {"to": self.to, "message_bytes": len(data),
                              "server": self.mailer.server})


def send_information(settings: EmailConfig, report: SendReport,
                     passwords: SmtpPasswords | None = None,
                     cancel: threading.Event | None = None) -> str:
    """Send the information e-mail about a finished send; return the address it went to."""
    if not settings.accountant:
        raise SendError("email-no-recipient", _(
            "The accountant's e-mail address is not set: give it in the configuration"
            " ([email] accountant)."))
    Mailer(settings, passwords).deliver(information_message(settings, report,
                                                            settings.accountant),
                                        cancel=cancel)
    return settings.accountant
