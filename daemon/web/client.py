"""HTTP side of the web source: verified TLS, timeouts, conditional index GETs, resumable
downloads capped at the indexed size and hashed as they arrive."""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote, urljoin, urlsplit

import requests
import requests.adapters
import requests.auth
import requests.utils
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from daemon import __version__
from daemon.errors import N_
from daemon.exchange import new_digest
from daemon.fsutil import CHUNK, Writeback, open_private
from daemon.i18n import _
from daemon.web.credentials import BEARER, Credential, CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import INDEX_NAME, IndexEntry
from daemon.web.state import PartInfo
from daemon.web.tls import CABundleError, ssl_context
from daemon.zipstream import ExchangeDigest

USER_AGENT = f"passeur/{__version__}"


@dataclass(frozen=True)
class WebSettings:
    """Timeouts, deadlines and back-off of the web source (small values in tests)."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    # A download may last deadline_base plus its size at min_rate, then it is cut off
    # (and resumed later): a server trickling a byte every 20 s cannot hold us forever.
    deadline_base: float = 120.0
    min_rate: float = 16 * 1024
    index_max_size: int = 4 << 20
    chunk_size: int = CHUNK
    backoff_base: float = 30.0
    backoff_cap: float = 3600.0
    retry_after_cap: float = 3600.0
    jitter: float = 0.2
    resume_attempts: int = 3
    progress_interval: float = 0.25

    def deadline_for(self, remaining: int) -> float:
        """Return the seconds allowed for fetching `remaining` bytes."""
        return self.deadline_base + remaining / self.min_rate


@dataclass(frozen=True)
class IndexFetch:
    """The answer to a conditional GET of an index."""

    not_modified: bool
    body: bytes = b""
    etag: str | None = None


class Watchdog:
    """Cuts the connections of the requests made within a deadline when it passes.

    Timeouts bound each wait for a byte, not a whole exchange: a server sending its status
    line, its headers or its body a byte every few seconds would never time out. At the
    deadline the watchdog shuts the sockets down, which ends any read in progress at once,
    headers included; `expired` then tells the caller why the exchange failed.
    """

    def __init__(self, seconds: float) -> None:
        self.expired = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._done = False
        self._previous: Watchdog | None = None
        self._timer = threading.Timer(max(0.0, seconds), self._expire)
        self._timer.daemon = True

    def attach(self, sock: socket.socket | None) -> None:
        """Watch the socket a request is about to wait on."""
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            if self.expired.is_set():
                _cut(sock)
            else:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired.set()
            for sock in self._sockets:
                _cut(sock)

    def __enter__(self) -> Watchdog:
        self._previous = getattr(_watching, "watchdog", None)
        _watching.watchdog = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        _watching.watchdog = self._previous
        self._timer.cancel()
        with self._lock:
            self._done = True
            self._sockets.clear()


_watching = threading.local()  # the Watchdog of the exchange this thread is in, if any


def _cut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for a TLS one: it wakes the reading thread without
    # touching the TLS state that thread is using.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def current_watchdog() -> Watchdog | None:
    """Return the watchdog of the exchange this thread is in, if any."""
    watchdog: Watchdog | None = getattr(_watching, "watchdog", None)
    return watchdog


class FileSpan:
    """A span of an open file as one piece of a request body.

    On a plain TCP connection it is handed to the kernel in one `sendfile`: the bytes go
    from the page cache to the socket without passing through Python. Anywhere else (TLS,
    a SOCKS proxy's connection) it is iterated like any body, in `chunk`-sized reads.
    `sent` tells afterwards how many bytes went out: fewer than `count` when the file was
    shorter than expected.
    """

    def __init__(self, handle: BinaryIO, offset: int, count: int, chunk: int) -> None:
        self.handle = handle
        self.offset = offset
        self.count = count
        self.chunk = chunk
        self.sent = 0

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[bytes]:
        self.handle.seek(self.offset)
        while self.sent < self.count:
            data = self.handle.read(min(self.chunk, self.count - self.sent))
            if not data:
                return
            self.sent += len(data)
            yield data

    def send_by(self, sock: socket.socket) -> None:
        """Send the span through a plain socket, from the page cache."""
        self.sent = sock.sendfile(self.handle, self.offset, self.count)


class TakesTurns:
    """A request body whose request waits for `wait_turn()` before its first byte is sent;
    the request is prepared and a connection taken meanwhile."""

    def wait_turn(self) -> None:
        """Return when the request may be sent (at once, unless overridden)."""


class _Watched(urllib3.connection.HTTPConnection):
    """What both connection classes add: bodies that take turns, the exchange's watchdog."""

    def request(self, method: str, url: str, body: Any = None,
                headers: Any = None, **kwargs: Any) -> None:
        if isinstance(body, TakesTurns):
            body.wait_turn()
        super().request(method, url, body, headers, **kwargs)

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        watchdog = current_watchdog()
        if watchdog is not None:
            watchdog.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnection(_Watched):
    def send(self, data: Any) -> None:
        """Send a piece of the request; a FileSpan by sendfile (a TLS connection iterates
        it: http.client falls back to that for anything that is not bytes)."""
        if isinstance(data, FileSpan) and type(self.sock) is socket.socket:
            data.send_by(self.sock)
        else:
            super().send(data)


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _WatchedHTTPPool(urllib3.connectionpool.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.connectionpool.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _VerifiedAdapter(requests.adapters.HTTPAdapter):
    """Always verifies certificates, with the system's CAs plus an optional extra bundle."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl_context = ssl_context  # None: urllib3's own, verifying (no extra bundle)
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if self._ssl_context is not None:
            kwargs["ssl_context"] = self._ssl_context
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Whatever a caller or the environment says, verification stays on.
        super().cert_verify(  # type: ignore[no-untyped-call]
            conn, url, verify if isinstance(verify, str) else True, cert)


def make_session(base_url: str, ca_bundle: Path | None = None) -> requests.Session:
    """Return a session for the site at `base_url` that verifies TLS (system CAs +
    `ca_bundle`, PEM or DER) and honours the environment's proxy settings; raise
    CABundleError when the bundle cannot be used."""
    session = requests.Session()
    # The proxy settings (HTTPS_PROXY, NO_PROXY) are read once, for the one site it talks
    # to: requests would otherwise scan the whole environment at every request, about a
    # millisecond each, for every part of an upload. Nothing else is taken from the
    # environment: no ~/.netrc credentials sent along, no CA bundle replacing ours.
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(base_url)
    # An http:// site (this computer only, see the config's checks) reached directly needs
    # no TLS: loading the system's certificates would cost a tenth of a second per session.
    # A bundle that was given is always read, so that a bad one is said.
    tls = urlsplit(base_url).scheme == "https" or any(
        proxy.lower().startswith("https") for proxy in session.proxies.values())
    context = ssl_context(ca_bundle) if tls or ca_bundle is not None else None
    adapter = _VerifiedAdapter(context)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    # Identity encoding: byte counts, Range offsets and hashes all refer to the file itself.
    session.headers["Accept-Encoding"] = "identity"
    return session


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class _BasicAuth(requests.auth.AuthBase):
    """Basic authentication in UTF-8, as servers and curl read it (RFC 7617's charset):
    requests would encode the pair in Latin-1, which fails on « œ » and garbles « é »."""

    def __init__(self, user: str, password: str) -> None:
        pair = f"{user}:{password}".encode()
        self.header = "Basic " + base64.b64encode(pair).decode("ascii")

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self.header
        return request


def _auth(credential: Credential | None) -> Any:
    if credential is None:
        return None
    if credential.scheme == BEARER:
        return _BearerAuth(credential.secret)
    return _BasicAuth(credential.user, credential.secret)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the seconds a Retry-After header asks to wait (delta or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def _short_reason(exc: BaseException) -> str:
    """Return a few words on why a connection failed, without the URL or credentials."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        return N_("timeout")
    text = str(exc).lower()
    # Messages of the catalogue (said in the user's language by WebError), never the
    # library's English.
    for needle, words in (("refused", N_("connection refused")),
                          ("name or service not known", N_("unknown host")),
                          ("nodename nor servname", N_("unknown host")),
                          ("temporary failure in name resolution", N_("unknown host")),
                          ("getaddrinfo", N_("unknown host")),
                          ("unreachable", N_("network unreachable")),
                          ("reset", N_("connection reset")),
                          ("certificate verify failed", N_("certificate verify failed")),
                          ("proxy", N_("proxy error"))):
        if needle in text:
            return words
    return N_("connection lost")


def transport_error(exc: requests.RequestException, dossier: str) -> WebError:
    """Explain a failure to get any HTTP answer at all."""
    if isinstance(exc, requests.exceptions.SSLError):
        return WebError(Failure.TLS, dossier=dossier, detail=_short_reason(exc))
    if isinstance(exc, requests.exceptions.ProxyError) and "407" in str(exc):
        # The tunnel to an https:// server was refused by the proxy itself.
        return WebError(Failure.PROXY_AUTH, dossier=dossier, detail=407)
    return WebError(Failure.OFFLINE, dossier=dossier, detail=_short_reason(exc))


def _conditional_headers(validator: str | None) -> dict[str, str]:
    """Ask for the index only if it changed since `validator` (an ETag or an HTTP date)."""
    if not validator:
        return {}
    # An entity tag is always quoted (or W/"…"); an HTTP date never is.
    if validator.startswith(('"', 'W/"')):
        return {"If-None-Match": validator}
    return {"If-Modified-Since": validator}


def _strong_etag(value: str | None) -> str | None:
    # Only a strong validator may guard a Range request (RFC 9110, If-Range).
    return value if value and value.startswith('"') else None


_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class WebClient:
    """Talks to one endpoint; safe to use from one thread at a time."""

    def __init__(self, base_url: str, credentials: CredentialStore,
                 settings: WebSettings | None = None, ca_bundle: Path | None = None,
                 session: requests.Session | None = None) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.credentials = credentials
        self.settings = settings or WebSettings()
        self.ca_bundle = ca_bundle
        # Made at the first request: a bad ca_bundle is then this source's failure, said
        # at each poll, and never stops the service (nor the other sources) from starting.
        self._session = session
        self._credentials: dict[str, Credential | None] = {}

    @property
    def session(self) -> requests.Session:
        """Return the HTTP session, made at first use; WebError when the CA bundle is bad."""
        if self._session is None:
            try:
                self._session = make_session(self.base_url, self.ca_bundle)
            except CABundleError as error:
                raise WebError(Failure.CA_BUNDLE, detail=f"{error.path}: {_(error.why)}",
                               ) from None
        return self._session

    def close(self) -> None:
        """Close pooled connections."""
        if self._session is not None:
            self._session.close()

    def url_for(self, dossier: str, name: str) -> str:
        """Return the address of a file in a dossier's folder."""
        return urljoin(self.base_url, f"{quote(dossier)}/{quote(name)}")

    def _credential(self, dossier: str) -> Credential | None:
        # Kept in memory: a keyring lookup can cost more than the whole 304 poll. A 401 or
        # 403 forgets it, so that new credentials (passeur login) are read at the next poll.
        if dossier not in self._credentials:
            self._credentials[dossier] = self.credentials.get(dossier)
        return self._credentials[dossier]

    def within(self, seconds: float) -> Watchdog:
        """Return a context in which every request of this thread, status line, headers and
        body included, is cut off `seconds` from now (see Watchdog)."""
        return Watchdog(seconds)

    def _get(self, url: str, dossier: str, headers: dict[str, str],
             what: str) -> requests.Response:
        try:
            return self.request("GET", url, dossier, headers=headers, stream=True)
        except requests.RequestException as exc:
            _raise_if_expired(dossier, what)
            raise transport_error(exc, dossier) from None

    def request(self, method: str, url: str, dossier: str, **kwargs: Any) -> requests.Response:
        """Send one request with the dossier's credentials and the connect/read timeouts.

        Transport failures are raised as requests raises them, for the caller to explain
        (an upload tells a lost connection from a refused one). `response.credential_given`
        says whether credentials were sent.
        """
        credential = self._credential(dossier)
        kwargs.setdefault("timeout", (self.settings.connect_timeout, self.settings.read_timeout))
        response = self.session.request(method, url, auth=_auth(credential), **kwargs)
        response.credential_given = credential is not None  # type: ignore[attr-defined]
        if response.status_code in (401, 403):
            self._credentials.pop(dossier, None)
        return response

    def _status_error(self, response: requests.Response, dossier: str,
                      name: str) -> WebError:
        status = response.status_code
        given = getattr(response, "credential_given", False)
        if status == 407:
            return WebError(Failure.PROXY_AUTH, dossier=dossier, detail=status)
        if status == 401:
            return WebError(Failure.AUTH_FAILED if given else Failure.AUTH_MISSING,
                            dossier=dossier, detail=status)
        if status == 403:
            return WebError(Failure.AUTH_FAILED, dossier=dossier, detail=status)
        if status == 404:
            if name == INDEX_NAME:
                return WebError(Failure.DOSSIER_NOT_FOUND, dossier=dossier, detail=status)
            return WebError(Failure.FILE_NOT_FOUND, dossier=dossier, detail=name)
        if status in (429, 503):
            wait = parse_retry_after(response.headers.get("Retry-After"))
            return WebError(Failure.SERVER_BUSY, dossier=dossier, detail=f"HTTP {status}",
                            retry_after=wait)
        if status >= 500:
            return WebError(Failure.SERVER_ERROR, dossier=dossier, detail=f"HTTP {status}")
        return WebError(Failure.UNEXPECTED, dossier=dossier, detail=f"HTTP {status}")

    # ------------------------------------------------------------------ index

    def fetch_index(self, dossier: str, etag: str | None) -> IndexFetch:
        """GET a dossier's index, conditionally: an unchanged index costs one 304.

        `etag` is the validator the last answer gave (IndexFetch.etag): its ETag, or its
        Last-Modified date from a server that sends no ETag (Python's http.server).
        """
        headers = _conditional_headers(etag)
        # An index is small: a server trickling it gets only the base deadline, for the
        # whole exchange.
        deadline = time.monotonic() + self.settings.deadline_base
        with self.within(self.settings.deadline_base), self._get(
                self.url_for(dossier, INDEX_NAME), dossier, headers, INDEX_NAME) as response:
            if response.status_code == 304:
                return IndexFetch(True, etag=etag)
            if response.status_code != 200:
                raise self._status_error(response, dossier, INDEX_NAME)
            cap = self.settings.index_max_size
            body = bytearray()
            for chunk in self._chunks(response, dossier, deadline, None, INDEX_NAME):
                body += chunk
                if len(body) > cap:
                    raise WebError(Failure.TOO_LARGE, dossier=dossier,
                                   detail=f"{INDEX_NAME} > {cap}")
            validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            return IndexFetch(False, bytes(body), validator)

    def _chunks(self, response: requests.Response, dossier: str, deadline: float,
                stop: threading.Event | None, what: str) -> Any:
        """Yield the body as it arrives; never wait past the deadline (plus one read)."""
        raw = response.raw
        size = self.settings.chunk_size
        while True:
            if stop is not None and stop.is_set():
                raise WebError(Failure.INTERRUPTED, dossier=dossier, detail="stopping")
            if time.monotonic() > deadline:
                raise WebError(Failure.DEADLINE, dossier=dossier, detail=what)
            try:
                # read1 returns what one receive brings: read(n) would wait for n bytes,
                # and a trickling server would then never meet the deadline check.
                chunk = raw.read1(size, decode_content=False)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                _raise_if_expired(dossier, what)
                # Said now in the active language: a combined detail is not a message
                # of the catalogue that WebError could translate later.
                raise WebError(Failure.INTERRUPTED, dossier=dossier,
                               detail=_("{what}: {reason}").format(
                                   what=what, reason=_(_short_reason(exc)))) from None
            if not chunk:
                # The end of the body, or the watchdog's cut, which looks the same.
                _raise_if_expired(dossier, what)
                return
            yield chunk

    # ------------------------------------------------------------------ downloads

    def download(self, dossier: str, entry: IndexEntry, part: Path,
                 progress: Callable[[int], None] | None = None,
                 stop: threading.Event | None = None) -> ExchangeDigest:
        """Fetch an indexed file into `part`, resuming what is there; return its digest.

        The digest holds the file's SHA-256, checked against the index, and the member
        hashes taken on the way, for the intake.

        Raises WebError; an interrupted download keeps its `.part` for the next try, a
        file that cannot be right (too long, wrong hash) is discarded.
        """
        url = self.url_for(dossier, entry.name)
        note = part_note(part)
        have, digest, info = _resume_point(part, note, url, entry)
        if have < entry.size:
            _check_free_space(part, entry.size - have, dossier)
            have, digest = self._fetch(dossier, entry, url, part, note, have, digest, info,
                                       progress, stop)
        sha256 = digest.hexdigest()
        if sha256 != entry.sha256:
            discard_part(part)
            raise WebError(Failure.HASH_MISMATCH, dossier=dossier,
                           detail=f"{entry.name}: {sha256[:16]}… ≠ {entry.sha256[:16]}…")
        return digest

    def _fetch(self, dossier: str, entry: IndexEntry, url: str, part: Path, note: Path,
               have: int, digest: ExchangeDigest, info: PartInfo | None,
               progress: Callable[[int], None] | None,
               stop: threading.Event | None) -> tuple[int, ExchangeDigest]:
        headers: dict[str, str] = {}
        resume_etag = _strong_etag(info.etag if info else None)
        if have and resume_etag:
            headers = {"Range": f"bytes={have}-", "If-Range": resume_etag}
        # One deadline for the whole exchange, from the request on: headers included.
        allowed = self.settings.deadline_for(entry.size - have)
        deadline = time.monotonic() + allowed
        with self.within(allowed), self._get(url, dossier, headers, entry.name) as response:
            offset = self._body_offset(response, dossier, entry, part, have if headers else 0)
            if offset == 0:
                have, digest = 0, new_digest()
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and offset + int(length) != entry.size:
                discard_part(part)
                raise WebError(Failure.SIZE_MISMATCH, dossier=dossier,
                               detail=f"{entry.name}: {offset + int(length)} ≠ {entry.size}")
            try:
                PartInfo(url, entry.size, entry.sha256, response.headers.get("ETag")).save(note)
            except OSError as exc:
                discard_part(part)
                raise _disk_error(exc, dossier, part) from None
            have = self._write_body(response, dossier, entry, part, have, digest, deadline,
                                    progress, stop)
        if have < entry.size:
            raise WebError(Failure.INTERRUPTED, dossier=dossier,
                           detail=f"{entry.name}: {have}/{entry.size}")
        return have, digest

    def _body_offset(self, response: requests.Response, dossier: str, entry: IndexEntry,
                     part: Path, asked: int) -> int:
        """Return where the body starts in the file, or raise for a useless answer."""
        status = response.status_code
        if status == 200:
            return 0
        if status == 206 and asked:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
            if match and int(match[1]) == asked and match[3] in (str(entry.size), "*"):
                return asked
            discard_part(part)
            raise WebError(Failure.UNEXPECTED, dossier=dossier,
                           detail=f"Content-Range {response.headers.get('Content-Range')}")
        if status == 416 and asked:
            # What we hold is already as long as the server's file: it is not the indexed one.
            discard_part(part)
            raise WebError(Failure.SIZE_MISMATCH, dossier=dossier,
                           detail=f"{entry.name}: > {asked}")
        raise self._status_error(response, dossier, entry.name)

    def _write_body(self, response: requests.Response, dossier: str, entry: IndexEntry,
                    part: Path, have: int, digest: ExchangeDigest, deadline: float,
                    progress: Callable[[int], None] | None,
                    stop: threading.Event | None) -> int:
        try:
            out = open_private(part, "ab" if have else "wb")
        except OSError as exc:
            raise _disk_error(exc, dossier, part) from None
        writeback = Writeback(out.fileno(), have)
        with out:
            for chunk in self._chunks(response, dossier, deadline, stop, entry.name):
                if have + len(chunk) > entry.size:
                    out.close()
                    discard_part(part)
                    raise WebError(Failure.SIZE_MISMATCH, dossier=dossier,
                                   detail=f"{entry.name}: > {entry.size}")
                try:
                    out.write(chunk)
                except OSError as exc:
                    # On a full disk close() fails again flushing its buffer; the part
                    # must still go, and the first error is the one to explain.
                    with contextlib.suppress(OSError):
                        out.close()
                    discard_part(part)
                    raise _disk_error(exc, dossier, part) from None
                digest.update(chunk)
                have += len(chunk)
                writeback.wrote(len(chunk))
                if progress is not None:
                    progress(have)
            try:
                out.flush()
                os.fsync(out.fileno())
            except OSError as exc:
                raise _disk_error(exc, dossier, part) from None
        return have


def _raise_if_expired(dossier: str, what: str) -> None:
    """Say a failure caused by the watchdog's cut for what it is: the deadline."""
    watchdog = current_watchdog()
    if watchdog is not None and watchdog.expired.is_set():
        raise WebError(Failure.DEADLINE, dossier=dossier, detail=what)


def part_note(part: Path) -> Path:
    """Return the note file kept beside a partial download."""
    return part.with_name(part.name + ".json")


def discard_part(part: Path) -> None:
    """Delete a partial download and its note."""
    part.unlink(missing_ok=True)
    part_note(part).unlink(missing_ok=True)


def _resume_point(part: Path, note: Path, url: str,
                  entry: IndexEntry) -> tuple[int, ExchangeDigest, PartInfo | None]:
    """Return (bytes held, their running hash, note) for a `.part` of this very file."""
    info = PartInfo.load(note)
    if (info is None or not part.is_file() or info.url != url or info.size != entry.size
            or info.sha256 != entry.sha256):
        discard_part(part)
        return 0, new_digest(), None
    have = part.stat().st_size
    if have > entry.size:
        discard_part(part)
        return 0, new_digest(), None
    digest = new_digest()
    with open(part, "rb") as held:
        while chunk := held.read(CHUNK):
            digest.update(chunk)
    return have, digest, info


def _check_free_space(part: Path, needed: int, dossier: str) -> None:
    part.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(part.parent).free
    if free < needed:
        raise WebError(Failure.DISK_FULL, dossier=dossier,
                       detail=f"{part.parent}: {free} < {needed}")


def _disk_error(exc: OSError, dossier: str, part: Path) -> WebError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return WebError(Failure.DISK_FULL, dossier=dossier, detail=str(part.parent))
    return WebError(Failure.DISK_ERROR, dossier=dossier,
                    detail=f"{part.name}: {exc.strerror or exc}")


def utc_now() -> datetime:
    """Return the current time, time-zone aware."""
    return datetime.now(UTC)
