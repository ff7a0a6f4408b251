"""HTTP side of the web source: verified TLS, timeouts, conditional index GETs, resumable
downloads capped at the indexed size and hashed as they arrive."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import requests
import requests.adapters
import requests.auth
import urllib3.exceptions

from daemon import __version__
from daemon.exchange import new_digest
from daemon.fsutil import CHUNK, Writeback
from daemon.web.credentials import BEARER, Credential, CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import INDEX_NAME, IndexEntry
from daemon.web.state import PartInfo
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


class _VerifiedAdapter(requests.adapters.HTTPAdapter):
    """Always verifies certificates, with the system's CAs plus an optional extra bundle."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl_context = ssl_context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._ssl_context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._ssl_context
        return super().proxy_manager_for(proxy, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Whatever a caller or the environment says, verification stays on.
        super().cert_verify(  # type: ignore[no-untyped-call]
            conn, url, verify if isinstance(verify, str) else True, cert)


def make_session(ca_bundle: Path | None = None) -> requests.Session:
    """Return a session that verifies TLS (system CAs + `ca_bundle`) and honours proxies."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    session = requests.Session()
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


def _auth(credential: Credential | None) -> Any:
    if credential is None:
        return None
    if credential.scheme == BEARER:
        return _BearerAuth(credential.secret)
    return (credential.user, credential.secret)


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
        return "timeout"
    text = str(exc).lower()
    for needle, words in (("refused", "connection refused"),
                          ("name or service not known", "unknown host"),
                          ("nodename nor servname", "unknown host"),
                          ("temporary failure in name resolution", "unknown host"),
                          ("getaddrinfo", "unknown host"),
                          ("unreachable", "network unreachable"),
                          ("reset", "connection reset"),
                          ("certificate verify failed", "certificate verify failed"),
                          ("proxy", "proxy error")):
        if needle in text:
            return words
    return type(exc).__name__


def transport_error(exc: requests.RequestException, dossier: str) -> WebError:
    """Explain a failure to get any HTTP answer at all."""
    if isinstance(exc, requests.exceptions.SSLError):
        return WebError(Failure.TLS, dossier=dossier, detail=_short_reason(exc))
    return WebError(Failure.OFFLINE, dossier=dossier, detail=_short_reason(exc))


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
        self.session = session or make_session(ca_bundle)
        self._credentials: dict[str, Credential | None] = {}

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def url_for(self, dossier: str, name: str) -> str:
        """Return the address of a file in a dossier's folder."""
        return urljoin(self.base_url, f"{quote(dossier)}/{quote(name)}")

    def _credential(self, dossier: str) -> Credential | None:
        # Kept in memory: a keyring lookup can cost more than the whole 304 poll. A 401 or
        # 403 forgets it, so that new credentials (passeur login) are read at the next poll.
        if dossier not in self._credentials:
            self._credentials[dossier] = self.credentials.get(dossier)
        return self._credentials[dossier]

    def _get(self, url: str, dossier: str, headers: dict[str, str]) -> requests.Response:
        try:
            return self.request("GET", url, dossier, headers=headers, stream=True)
        except requests.RequestException as exc:
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
        """GET a dossier's index, conditionally: an unchanged index costs one 304."""
        headers = {"If-None-Match": etag} if etag else {}
        with self._get(self.url_for(dossier, INDEX_NAME), dossier, headers) as response:
            if response.status_code == 304:
                return IndexFetch(True, etag=etag)
            if response.status_code != 200:
                raise self._status_error(response, dossier, INDEX_NAME)
            cap = self.settings.index_max_size
            body = bytearray()
            # An index is small: a server trickling it gets only the base deadline.
            deadline = time.monotonic() + self.settings.deadline_base
            for chunk in self._chunks(response, dossier, deadline, None, INDEX_NAME):
                body += chunk
                if len(body) > cap:
                    raise WebError(Failure.TOO_LARGE, dossier=dossier,
                                   detail=f"{INDEX_NAME} > {cap}")
            return IndexFetch(False, bytes(body), response.headers.get("ETag"))

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
                raise WebError(Failure.INTERRUPTED, dossier=dossier,
                               detail=f"{what}: {_short_reason(exc)}") from None
            if not chunk:
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
        with self._get(url, dossier, headers) as response:
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
            deadline = time.monotonic() + self.settings.deadline_for(entry.size - have)
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
            out = open(part, "ab" if have else "wb")  # noqa: SIM115 - closed below
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
