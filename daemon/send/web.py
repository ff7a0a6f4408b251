"""*Synchronisation Web avec votre comptable*: the `.wvz` uploaded in parts, so that a weak
rural line, a stopped service or a `kill -9` costs at most one part sent again.

Each part is one plain `PUT` (never `Content-Range`, which nginx refuses and some servers
truncate) into the dossier's upload location; the signed part list goes last. What was
acknowledged is remembered in `state_dir` and checked on the server with `HEAD` before it
is skipped. See docs/web-protocol.md, "Uploads".
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from daemon.errors import N_, Rejected
from daemon.exchange import Limits
from daemon.fsutil import atomic_writer
from daemon.i18n import _
from daemon.keys import SigningKey
from daemon.naming import Kind, parse_name
from daemon.send.base import (
    SMALLEST_PART,
    Channel,
    Progress,
    SendError,
    SendJob,
    Sent,
    part_size_for,
)
from daemon.send.parts import (
    MAX_PART_SIZE,
    MAX_PARTS,
    MIN_PART_SIZE,
    PARTS_NAME,
    SIGNATURE_NAME,
    make_part_list,
    part_count,
    part_name,
    part_span,
    sign_part_list,
    upload_folder,
)
from daemon.web.client import (
    FileSpan,
    TakesTurns,
    WebClient,
    WebSettings,
    parse_retry_after,
    transport_error,
    utc_now,
)
from daemon.web.credentials import CredentialStore
from daemon.web.failures import WebError
from daemon.web.index import UPLOAD_FOLDER

log = logging.getLogger(__name__)

T = TypeVar("T")

# Small enough that one chunk crosses even a 56k line well within the socket timeout
# (a sendall() must finish within it), large enough to cost nothing on a fast one.
UPLOAD_CHUNK = 64 << 10
# Without a bandwidth cap, larger chunks: fewer trips through Python per part, while a
# cancel or a deadline still acts within a chunk (2 s at 1 Mbit/s).
UNCAPPED_CHUNK = 256 << 10
STATE_FORMAT = 1
# Parts under way at once: one being sent (or getting ready), those before it awaiting
# their answers. A resume looks on the server for that many parts past what it noted.
RELAY_WIDTH = 3
# How long before a part's end the next one gets its request ready (seconds at its pace).
NEARLY_S = 0.05
# How long a span of a part takes to go out at the pace so far, at least (seconds): the
# progress and a cancel act at each span.
SPAN_S = 0.1
# Upload notes untouched for this long belong to sends given up long ago.
STATE_KEEP_SECONDS = 30 * 86400
# The note is rewritten after every part; it survives a killed process at once, and a
# power cut once flushed to the disk, which it is at most this often (a flush per part
# would cost more than the part on a fast line).
STATE_SYNC_SECONDS = 1.0
_ANSWER_CAP = 64 << 10  # of a PUT answer's body read before the connection is reused

# {dossier}, {file}, {detail}: the dossier, the file's name, a short technical precision.
MESSAGES: dict[str, str] = {
    "not-configured": N_(
        "No address is configured for the accountant's web site ([sources.web] url)."),
    "auth-missing": N_(
        "The accountant's web site asks for a password for dossier {dossier}: store it with "
        "passeur login {dossier}."),
    "auth-failed": N_(
        "The password for dossier {dossier} was refused by the accountant's web site: check "
        "it with passeur login {dossier}."),
    "keyring-unavailable": N_(
        "The system keyring, where the password for dossier {dossier} is kept, cannot be "
        "used ({detail})."),
    "dossier-not-found": N_(
        "The accountant's web site has no upload location for dossier {dossier} (address "
        "not found): ask your accountant."),
    "upload-refused": N_(
        "The accountant's web site does not accept uploads for dossier {dossier} "
        "({detail}): ask your accountant."),
    "offline": N_(
        "The accountant's web site cannot be reached ({detail}). Sending again will resume "
        "where this send stopped."),
    "interrupted": N_(
        "The connection to the accountant's web site was lost ({detail}). Sending again will "
        "resume where this send stopped."),
    "timeout": N_(
        "The accountant's web site did not answer in time ({detail}). Sending again will "
        "resume where this send stopped."),
    "server-full": N_(
        "The accountant's web site has no room for {file} ({detail}): ask your accountant."),
    "part-refused": N_(
        "The accountant's web site refuses the pieces of {file} as too large, even of 1 MB "
        "({detail}): ask your accountant."),
    "server-busy": N_(
        "The accountant's web site is busy ({detail}). Sending again later will resume "
        "where this send stopped."),
    "server-error": N_(
        "The accountant's web site has a problem ({detail}). Sending again will resume where "
        "this send stopped."),
    "tls-failed": N_(
        "The identity of the accountant's web site cannot be verified (TLS certificate: "
        "{detail}): nothing was sent."),
    "unexpected-response": N_(
        "The accountant's web site gave an unexpected answer ({detail})."),
    "cancelled": N_(
        "The send was cancelled; the parts already sent will not be sent again."),
    "file-unreadable": N_("{file} cannot be read ({detail})."),
    "file-changed": N_("{file} changed while it was being sent: pack the dossier again."),
    "too-large": N_("{file} is too large to be sent by the web ({detail})."),
    "bad-name": N_("{file} is not the name of a dossier file for dossier {dossier}."),
}

# Worth another try within the same send: the line or the server may come back.
TRANSIENT = frozenset({"offline", "interrupted", "timeout", "server-busy", "server-error"})


class _Failure(Exception):
    """One failed step of an upload; becomes a SendError when the send gives up."""

    def __init__(self, code: str, detail: object = "", retry_after: float | None = None) -> None:
        self.code = code
        self.detail = str(detail)
        self.retry_after = retry_after
        super().__init__(f"{code}: {detail}")


class WebDestination:
    """Sends a packed `.wvz` to the dossier's upload location on the accountant's site."""

    channel = Channel.WEB

    def __init__(self, url: str, credentials: CredentialStore, key: SigningKey,
                 state_dir: Path, *, ca_bundle: Path | None = None, max_kbps: int = 0,
                 part_size: int | None = None, settings: WebSettings | None = None,
                 now: Callable[[], datetime] = utc_now) -> None:
        # None: the packer's part size, else the one of the file's size (part_size_for).
        if part_size is not None and not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size {part_size} outside {MIN_PART_SIZE}…{MAX_PART_SIZE}")
        self.url = url
        self.credentials = credentials
        self.key = key
        self.state_dir = state_dir
        self.ca_bundle = ca_bundle
        self.max_kbps = max(0, max_kbps)
        self.part_size = part_size
        self.settings = settings or WebSettings()
        self.now = now  # the part list's time

    def where(self) -> str:
        """Return where the files go, in the user's words."""
        host = urlsplit(self.url).hostname or self.url
        return _("the accountant's web site ({host})").format(host=host)

    def check(self, job_size: int) -> None:
        """Refuse before packing when no site is configured or the file cannot be taken.

        The dossier (hence its password) is only known at send; a missing password is
        said then, before any byte is sent.
        """
        if not self.url:
            raise _error("not-configured")
        limit = Limits().max_file_size
        if job_size > limit or part_count(job_size, self.part_size_of(job_size)) > MAX_PARTS:
            raise _error("too-large", file=_("The dossier"), detail=f"{job_size} > {limit}")

    def part_size_of(self, size: int, packed_in: int | None = None) -> int:
        """Return the part size of a new upload of `size` bytes: the one given, else the
        one the packer hashed the file in (`packed_in`), else the file size's own."""
        return self.part_size or packed_in or part_size_for(size)

    def send(self, job: SendJob, progress: Progress, cancel: threading.Event) -> Sent:
        """Upload the job's file, resuming what an earlier try left; raise SendError."""
        self.check(job.size)
        client = WebClient(self.url, self.credentials, self.settings, self.ca_bundle)
        try:
            return _Upload(self, client, job, progress, cancel).run()
        except _Failure as failure:
            log.warning("web send of %s failed: %s", job.name, failure)
            raise _error(failure.code, dossier=job.dossier, file=job.name,
                         detail=failure.detail) from None
        except WebError as error:  # the keyring, read for the first request
            raise _error(str(error.code), dossier=job.dossier, file=job.name,
                         detail=error.detail) from None
        finally:
            client.close()


def _error(code: str, *, dossier: str = "", file: str = "", detail: str = "") -> SendError:
    text = MESSAGES.get(code, MESSAGES["unexpected-response"])
    return SendError(code, _(text).format(dossier=dossier, file=file, detail=detail))


# ---------------------------------------------------------------- what is remembered


@dataclass
class UploadState:
    """What one upload sent and had acknowledged, kept in `state_dir` between tries."""

    name: str
    size: int
    sha256: str
    part_size: int
    url: str
    parts: dict[int, str] = field(default_factory=dict)  # acknowledged part → its SHA-256
    complete: bool = False

    def matches(self, job: SendJob, url: str) -> bool:
        """Tell whether this note is about this very file, to this very site."""
        return (self.name, self.size, self.sha256, self.url) == (job.name, job.size,
                                                                job.sha256, url)

    def to_bytes(self) -> bytes:
        """Serialise for the note file."""
        return json.dumps({
            "format": STATE_FORMAT, "name": self.name, "size": self.size,
            "sha256": self.sha256, "part_size": self.part_size, "url": self.url,
            "parts": {str(n): h for n, h in sorted(self.parts.items())},
            "complete": self.complete,
        }, separators=(",", ":")).encode()  # compact: json's C encoder, once per part

    @classmethod
    def load(cls, path: Path) -> UploadState | None:
        """Read a note; None when missing or unreadable (the upload then starts over)."""
        try:
            data = json.loads(path.read_bytes())
            if data["format"] != STATE_FORMAT:
                return None
            part_size = int(data["part_size"])
            if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
                return None
            return cls(str(data["name"]), int(data["size"]), str(data["sha256"]), part_size,
                       str(data["url"]), {int(n): str(h) for n, h in data["parts"].items()},
                       bool(data["complete"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, path: Path, sync: bool = True) -> None:
        """Write the note (atomically; flushed to the disk when `sync`), private to the user."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with atomic_writer(path, sync=sync, private=True) as out:
            out.write(self.to_bytes())


def prune_states(state_dir: Path, now: float | None = None) -> None:
    """Forget upload notes nobody touched for STATE_KEEP_SECONDS."""
    limit = (time.time() if now is None else now) - STATE_KEEP_SECONDS
    with contextlib.suppress(OSError):
        for note in state_dir.glob("*.json"):
            with contextlib.suppress(OSError):
                if note.stat().st_mtime < limit:
                    note.unlink()


# ---------------------------------------------------------------- the bandwidth cap


class TokenBucket:
    """Lets `rate` bytes per second through on average, with bursts of at most `burst`."""

    def __init__(self, rate: float, burst: float, wait: Callable[[float], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._wait = wait
        self._clock = clock
        self._tokens = burst
        self._last = clock()

    def take(self, count: int) -> None:
        """Wait until `count` bytes may go."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= count
        if self._tokens < 0:
            # In debt: wait for the refill; the time spent counts as refilled next call.
            self._wait(-self._tokens / self.rate)


class _PartBody(TakesTurns):
    """One part's bytes for requests: a known length (a plain Content-Length, never
    chunked), in small pieces as they are sent: spans of the file handed to the kernel
    when the packer gave the part's digest, else chunks read and hashed on the way.

    `on_chunk` may raise _Failure (cancelled, deadline): requests lets it through and
    drops the connection.
    """

    def __init__(self, handle: io.BufferedReader, offset: int, length: int, chunk: int,
                 on_chunk: Callable[[int], None], known: str | None = None,
                 relay: _PartSend | None = None) -> None:
        self.handle = handle
        self.relay = relay  # the part's place in the relay, told when its bytes are out
        self.began = 0.0  # when the part's first piece went out (monotonic)
        self.offset = offset
        self.length = length
        self.chunk = chunk
        self.on_chunk = on_chunk
        self.known = known
        self.digest: Any = None if known else hashlib.sha256()
        self.sent = 0

    def wait_turn(self) -> None:
        """Return when the part before has handed its last byte to its socket."""
        if self.relay is not None:
            self.relay.wait_for_the_part_before()

    def hexdigest(self) -> str:
        """Return the part's SHA-256: the packer's, or the one made while sending."""
        return self.known or self.digest.hexdigest()

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[memoryview | FileSpan]:
        # Started again from its first byte when the request is made again.
        self.digest = None if self.known else hashlib.sha256()
        self.sent = 0
        self.began = time.monotonic()
        yield from self._spans() if self.known else self._hashed_chunks()
        # Resumed after the last chunk was sent: only the answer is awaited.
        if self.relay is not None:
            self.relay.handed.set()

    def _span_size(self) -> int:
        """Return the next span's size: what goes out in SPAN_S at the pace so far, at
        least a chunk. On a fast line a part goes in two or three spans: each return to
        Python between two spans may wait for the other part's thread (the interpreter
        lock), and the line would idle meanwhile."""
        elapsed = time.monotonic() - self.began
        paced = int(self.sent * SPAN_S / elapsed) if self.sent and elapsed > 0 else 0
        return min(max(self.chunk, paced), self.length - self.sent)

    def _before_piece(self, count: int) -> None:
        """Tell the relay when the part nears its end: this piece is the last, or what is
        left after it goes out at the pace so far within NEARLY_S. The next part gets its
        request and connection ready meanwhile, but never long before: an idle connection
        is soon closed by many servers."""
        if self.relay is None or self.relay.nearly.is_set():
            return
        left = self.length - self.sent - count
        done = self.sent + count
        elapsed = time.monotonic() - self.began
        if left <= 0 or (self.sent > 0 and left * elapsed <= NEARLY_S * done):
            self.relay.nearly.set()

    def _spans(self) -> Iterator[FileSpan]:
        """The part as spans of the file, sent from the page cache (its digest is known)."""
        while self.sent < self.length:
            span = FileSpan(self.handle, self.offset + self.sent, self._span_size(),
                            self.chunk)
            self.on_chunk(span.count)
            self._before_piece(span.count)
            yield span
            if span.sent < span.count:
                raise _Failure("file-changed")
            self.sent += span.count

    def _hashed_chunks(self) -> Iterator[memoryview]:
        """The part read into one buffer and hashed on the way (its digest is unknown)."""
        self.handle.seek(self.offset)
        # Each chunk is on its way (sendall returned) before the next is read into it.
        buffer = memoryview(bytearray(min(self.chunk, self.length)))
        while self.sent < self.length:
            got = self.handle.readinto(buffer[:min(len(buffer), self.length - self.sent)])
            if not got:
                raise _Failure("file-changed")
            self.on_chunk(got)
            data = buffer[:got]
            self.digest.update(data)
            self.sent += got
            self._before_piece(0)
            yield data


# ---------------------------------------------------------------- one upload


class _PartSend:
    """One part's `PUT`, on a thread of its own (one try; the relay decides on retries)."""

    def __init__(self, upload: _Upload, state: UploadState, number: int,
                 before: _PartSend | None = None) -> None:
        self.upload = upload
        self.state = state
        self.number = number
        self.before = before
        self.failure: _Failure | None = None
        self.error: BaseException | None = None
        # Set when the last piece is on its way (or the part ended): the next part may get
        # its request ready, and a connection.
        self.nearly = threading.Event()
        # Set when the part's bytes are all sent, or when it ended without sending them:
        # the next part may send its request then.
        self.handed = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"upload-{part_name(number)}",
                                       daemon=True)

    def start(self) -> None:
        """Start sending the part."""
        self.thread.start()

    def join(self) -> None:
        """Wait for the part's answer; re-raise a programming error of its thread here."""
        self.thread.join()
        if self.error is not None:
            raise self.error

    def wait_for_the_part_before(self) -> None:
        """Return once the part before has sent its bytes; raise _Failure if it ended
        without (its failure is the one the relay tells)."""
        before, self.before = self.before, None  # a second try of the request waits not
        if before is None:
            return
        before.handed.wait()
        if before.failure is not None or before.error is not None:
            raise _Failure("interrupted", f"{part_name(before.number)} failed")

    def _run(self) -> None:
        upload = self.upload
        try:
            with open(upload.job.file, "rb") as handle:
                body = upload._part_body(handle, self.state, self.number, self)
                upload._put(part_name(self.number), body, upload._deadline_for(body.length))
            upload._acknowledged(self.state, self.number, body)
        except _Failure as failure:
            self.failure = failure
        except OSError as exc:
            self.failure = _Failure("file-unreadable", exc.strerror or exc)
        except BaseException as exc:  # raised again in the relay's thread by join()
            self.error = exc
        finally:
            with upload.lock:
                upload.flying.pop(self.number, None)
            self.nearly.set()
            self.handed.set()


class _Upload:
    """One call of WebDestination.send."""

    def __init__(self, dest: WebDestination, client: WebClient, job: SendJob,
                 progress: Progress, cancel: threading.Event) -> None:
        self.dest = dest
        self.client = client
        self.job = job
        self.progress = progress
        self.cancel = cancel
        self.settings = dest.settings
        self.folder = upload_folder(job.name)
        self.state_path = dest.state_dir / f"{job.name}.json"
        self.done = 0  # bytes acknowledged, for the progress
        self.failures_in_row = 0
        self.answered = False  # the site gave an HTTP answer during this call
        self.parts_sent = 0
        self.parts_skipped = 0
        # The relay's two threads share the note, the counts and the progress.
        self.lock = threading.Lock()
        self.note_lock = threading.Lock()
        self.noted = 0  # parts in the note last written
        self.flying: dict[int, _PartBody] = {}  # parts under way, for the progress
        self.synced_at = 0.0
        self.bucket: TokenBucket | None = None
        self.chunk = min(UNCAPPED_CHUNK, self.settings.chunk_size)
        if dest.max_kbps:
            rate = dest.max_kbps * 1000  # kilobytes per second ([send] max_kbps)
            self.chunk = max(1024, min(UPLOAD_CHUNK, self.chunk, int(rate / 8)))
            self.bucket = TokenBucket(rate, max(rate / 4, self.chunk), self._pause)

    # ------------------------------------------------------------ the steps

    def run(self) -> Sent:
        self._check_job()
        prune_states(self.dest.state_dir)
        state = self._state()
        if state.complete:
            self.progress(self.job.size, self.job.size)
            return self._sent(state)
        try:
            return self._upload(state)
        except _Failure:
            if self.parts_sent:
                self._save(state, final=True)  # what this call sent survives a power cut
            raise

    def _upload(self, state: UploadState) -> Sent:
        count = part_count(state.size, state.part_size)
        if len(state.parts) == count and self._retrying(self._finished_on_server):
            # Cut after the signature arrived, before it was noted here.
            state.complete = True
            self._save(state, final=True)
            self.progress(self.job.size, self.job.size)
            return self._sent(state)
        if state.parts:
            self._retrying(lambda: self._keep_acknowledged(state))
        if state.parts:
            self._retrying(lambda: self._take_whole_parts(state, count))
        else:  # a new upload, or one whose parts are all gone (its folder with them)
            self._retrying(self._open_upload)
        self.done = sum(part_span(state.size, state.part_size, n)[1] for n in state.parts)
        self.parts_skipped = len(state.parts)
        self.progress(self.done, self.job.size)
        state = self._send_missing_parts(state)
        count = part_count(state.size, state.part_size)
        parts = make_part_list(self.job.name, state.size, state.sha256, state.part_size,
                               [state.parts[n] for n in range(1, count + 1)], self.dest.key,
                               self.dest.now())
        body, signature = sign_part_list(parts, self.dest.key)
        # The signature last: its arrival tells the firm's collect that the upload is whole.
        self._retrying(lambda: self._put(PARTS_NAME, body))
        self._retrying(lambda: self._put(SIGNATURE_NAME, signature))
        state.complete = True
        self._save(state, final=True)
        log.info("web: %s sent (%d parts, %d already there)", self.job.name, count,
                 self.parts_skipped)
        return self._sent(state)

    def _check_job(self) -> None:
        job = self.job
        try:
            parsed = parse_name(job.name)
        except Rejected:
            parsed = None
        if parsed is None or parsed.kind is not Kind.DOSSIER or (
                parsed.dossier != job.dossier or parsed.canonical != job.name):
            raise _Failure("bad-name")
        if self.cancel.is_set():
            raise _Failure("cancelled")
        try:
            size = job.file.stat().st_size
        except OSError as exc:
            raise _Failure("file-unreadable", exc.strerror or exc) from None
        if size != job.size or size == 0:
            raise _Failure("file-changed")

    def _state(self) -> UploadState:
        state = UploadState.load(self.state_path)
        if state is not None and state.matches(self.job, self.dest.url):
            # Keep the part size the upload started with: parts of another size would
            # leave stray parts on the server.
            return state
        packed_in = self.job.part_size if self.job.part_sha256 else None
        return UploadState(self.job.name, self.job.size, self.job.sha256,
                           self.dest.part_size_of(self.job.size, packed_in), self.dest.url)

    def _save(self, state: UploadState, final: bool = False) -> None:
        now = time.monotonic()
        sync = final or now - self.synced_at >= STATE_SYNC_SECONDS
        try:
            state.save(self.state_path, sync)
            if sync:
                self.synced_at = now
        except OSError as exc:
            # Not fatal: without the note, a later try sends these parts again.
            log.warning("web: cannot keep the upload note %s (%s)", self.state_path,
                        exc.strerror or exc)

    def _sent(self, state: UploadState) -> Sent:
        return Sent(self.dest.where(), {
            "host": urlsplit(self.dest.url).hostname or "", "upload": self.folder,
            "parts": part_count(state.size, state.part_size), "part_size": state.part_size,
            "parts_sent": self.parts_sent, "parts_skipped": self.parts_skipped,
        })

    def _finished_on_server(self) -> bool:
        """Tell whether the server holds this upload's signature (the upload is whole)."""
        return self._head(SIGNATURE_NAME)[0] == 200

    def _keep_acknowledged(self, state: UploadState) -> None:
        """Check with HEAD that the parts remembered as sent are still on the server."""
        for number in sorted(state.parts):
            _offset, length = part_span(state.size, state.part_size, number)
            if self._head(part_name(number)) != (200, str(length)):
                # Gone (an abandoned upload the firm removed) or not what we sent.
                del state.parts[number]

    def _take_whole_parts(self, state: UploadState, count: int) -> None:
        """Take as sent the first parts the note lacks that the server holds whole.

        A cut while a part awaited its answer (the relay's other part under way) left that
        part complete on the server, only not noted. Servers publish a `PUT`'s file once
        its body is whole (nginx, Apache and lighttpd write it aside, then rename), so the
        expected `Content-Length` says it is all there; the firm's collect checks its
        SHA-256 against the signed part list all the same.
        """
        missing = [n for n in range(1, count + 1) if n not in state.parts][:RELAY_WIDTH]
        for number in missing:
            offset, length = part_span(state.size, state.part_size, number)
            if self._head(part_name(number)) != (200, str(length)):
                continue
            digest = self._known_digest(state, number) or self._part_digest(offset, length)
            state.parts[number] = digest
            log.info("web: %s of %s was already whole on the server", part_name(number),
                     self.job.name)

    def _part_digest(self, offset: int, length: int) -> str:
        """Return the SHA-256 of a part of the file, read from the disk."""
        try:
            with open(self.job.file, "rb") as handle:
                handle.seek(offset)
                digest = hashlib.sha256()
                while length > 0 and (chunk := handle.read(min(UNCAPPED_CHUNK, length))):
                    digest.update(chunk)
                    length -= len(chunk)
        except OSError as exc:
            raise _Failure("file-unreadable", exc.strerror or exc) from None
        if length:
            raise _Failure("file-changed")
        return digest.hexdigest()

    def _open_upload(self) -> None:
        """Before the first part: find out early (without sending a part for nothing) that
        the password is wrong or the dossier unknown, and make the upload's folder."""
        self._head(SIGNATURE_NAME)
        self._make_folder()

    def _make_folder(self) -> None:
        """Create the upload's folder (WebDAV servers want it before a PUT inside it).

        Servers that make it by themselves (nginx `create_full_put_path`), or have no
        folders at all (object stores), refuse the method: that is fine. A WebDAV server
        without the dossier's upload location answers 409 (no parent to make it in).
        """
        with self._within(self.settings.deadline_base, "MKCOL"), self._request(
                "MKCOL", self._url("")) as response:
            status = response.status_code
            if status in (401, 404, 409):  # 409: no upload location to make it in
                raise self._status_failure(response, missing_folder=status == 409)
            if status in (429, 503) or (status >= 500 and status not in (501, 505)):
                raise self._status_failure(response)

    def _send_missing_parts(self, state: UploadState) -> UploadState:
        """Send every part the note does not hold, trying again after transient failures
        and in smaller parts when the site refuses them as too large; return the note."""
        while missing := [n for n in range(1, part_count(state.size, state.part_size) + 1)
                          if n not in state.parts]:
            try:
                self._relay(state, missing)
            except _Failure as failure:
                if failure.code == "part-refused" and (smaller := self._in_smaller_parts(state)):
                    state = smaller
                else:
                    self._give_up_unless_transient(failure)
        return state

    def _in_smaller_parts(self, state: UploadState) -> UploadState | None:
        """Return a new note for the upload in parts half as large, or None when they are as
        small as they go. There are more of them, under the same names: every part of the
        old size already on the server is written over, none is left behind."""
        size = max(SMALLEST_PART, state.part_size // 2)
        if size >= state.part_size or part_count(state.size, size) > MAX_PARTS:
            return None
        log.info("web: the site refuses parts of %d bytes for %s; sending parts of %d",
                 state.part_size, self.job.name, size)
        smaller = UploadState(state.name, state.size, state.sha256, size, state.url)
        # No part is under way: the relay ended every one before raising.
        self.done = self.noted = 0
        self._save(smaller, final=True)
        self.progress(0, self.job.size)
        return smaller

    def _relay(self, state: UploadState, numbers: list[int]) -> None:
        """Send these parts in a relay: a part sends its request as soon as the one before
        has handed its last byte to the socket, while the ones before await their answers
        (at most RELAY_WIDTH parts under way, each on its own connection); it gets its
        request and its connection ready while that last piece goes out.

        The server's finishing of a part (its last bytes still in the kernel's buffers,
        then the file's publication) and the client's own work between two requests then
        overlap the next part's transfer instead of leaving the line idle after each part.
        Only one part is ever partly sent: a cut still costs at most one part sent twice
        (the one awaiting its answer is found whole on the server at resume,
        `_take_whole_parts`). The first failure, in part order, is raised once every part
        under way has ended.
        """
        started: list[_PartSend] = []
        try:
            for number in numbers:
                if any(part.failure for part in started):
                    break
                part = _PartSend(self, state, number, started[-1] if started else None)
                started.append(part)
                part.start()
                part.nearly.wait()
                for earlier in started[:1 - RELAY_WIDTH]:
                    earlier.join()
        finally:
            for part in started:
                part.join()
        for part in started:
            if part.failure is not None:
                raise part.failure

    def _acknowledged(self, state: UploadState, number: int, body: _PartBody) -> None:
        """Note a part the server acknowledged (from the thread that sent it)."""
        with self.lock:
            state.parts[number] = body.hexdigest()
            self.flying.pop(number, None)
            self.done += body.length
            self.parts_sent += 1
            self.failures_in_row = 0
            note = dataclasses.replace(state, parts=dict(state.parts))
        # Written outside the lock, which the other part's progress and start need; a
        # note that holds fewer parts than one already written is not written over it.
        with self.note_lock:
            if len(note.parts) > self.noted:
                self._save(note)
                self.noted = len(note.parts)

    def _sent_so_far(self) -> int:
        """Return the bytes acknowledged plus those of the parts under way."""
        # No lock: a copy of the values is taken in one step, and the counts are only
        # for the progress; waiting here behind a note being written would stall the line.
        flying = tuple(self.flying.values())
        return self.done + sum(body.sent for body in flying)

    def _part_body(self, handle: io.BufferedReader, state: UploadState, number: int,
                   relay: _PartSend) -> _PartBody:
        """Return part `number`'s body, checking cancel and pace at each chunk."""
        offset, length = part_span(state.size, state.part_size, number)
        body = _PartBody(handle, offset, length, self.chunk, lambda n: None,
                         self._known_digest(state, number), relay)

        def on_chunk(count: int) -> None:
            if self.cancel.is_set():
                raise _Failure("cancelled")
            if self.bucket is not None:
                self.bucket.take(count)
            self.progress(self._sent_so_far() + count, self.job.size)

        body.on_chunk = on_chunk
        with self.lock:
            self.flying[number] = body
        return body

    def _known_digest(self, state: UploadState, number: int) -> str | None:
        """Return the part's SHA-256 as the packer made it while writing the file (then the
        part is not hashed again), or None (a file packed elsewhere, another part size)."""
        digests = self.job.part_sha256
        if state.part_size != self.job.part_size or \
                len(digests) != part_count(state.size, state.part_size):
            return None
        return digests[number - 1]

    def _deadline_for(self, length: int) -> float:
        rate = self.settings.min_rate
        if self.bucket is not None:
            rate = min(rate, self.bucket.rate)
        return self.settings.deadline_base + length / rate

    def _put(self, name: str, data: Any, seconds: float | None = None) -> None:
        """PUT `name` into the upload's folder, the whole exchange within `seconds`."""
        with self._within(seconds or self.settings.deadline_base, name):
            url = self._url(name)
            response = self._request("PUT", url, data=data,
                                     headers={"Content-Type": "application/octet-stream"})
            if response.status_code == 409:
                # The upload's folder is missing (removed, or a WebDAV server): make it.
                response.close()
                self._make_folder()
                response = self._request("PUT", url, data=data,
                                         headers={"Content-Type": "application/octet-stream"})
            with response:
                if response.status_code not in (200, 201, 204):
                    raise self._status_failure(response)
                # Read the (small) answer so that the connection serves the next part.
                with contextlib.suppress(requests.RequestException, OSError):
                    response.raw.read(_ANSWER_CAP)

    def _head(self, name: str) -> tuple[int, str | None]:
        """Return the status of a HEAD of `name` in the upload's folder and the length the
        server holds; a refused password is raised."""
        with self._within(self.settings.deadline_base, name), self._request(
                "HEAD", self._url(name)) as response:
            if response.status_code == 401:
                raise self._status_failure(response)
            return response.status_code, response.headers.get("Content-Length")

    @contextlib.contextmanager
    def _within(self, seconds: float, what: str) -> Iterator[None]:
        """Hold one exchange to `seconds`, status line and headers included: the socket
        is cut at the deadline (a server trickling its answer never times out a read)."""
        with self.client.within(seconds) as watchdog:
            try:
                yield
            except _Failure as failure:
                if watchdog.expired.is_set() and failure.code != "cancelled":
                    raise _Failure("timeout", what) from None
                raise

    # ------------------------------------------------------------ requests and failures

    def _url(self, name: str) -> str:
        return self.client.url_for(self.job.dossier, f"{UPLOAD_FOLDER}/{self.folder}/{name}")

    def _request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.client.request(method, url, self.job.dossier, stream=True,
                                           **kwargs)
        except requests.exceptions.SSLError as exc:
            raise _Failure("tls-failed", self._reason(exc)) from None
        except requests.exceptions.ConnectTimeout:
            raise _Failure("offline", "timeout") from None
        except requests.exceptions.Timeout:
            raise _Failure("timeout", method) from None
        except requests.RequestException as exc:
            body = kwargs.get("data")
            sent = isinstance(body, _PartBody) and body.sent > 0
            raise _Failure("interrupted" if sent or self.answered else "offline",
                           self._reason(exc)) from None
        self.answered = True
        return response

    def _status_failure(self, response: requests.Response,
                        missing_folder: bool = False) -> _Failure:
        status = response.status_code
        detail = f"HTTP {status}"
        if status == 401:
            given = getattr(response, "credential_given", False)
            return _Failure("auth-failed" if given else "auth-missing", detail)
        if status == 403:
            return _Failure("auth-failed", detail)
        if status == 404 or missing_folder:
            return _Failure("dossier-not-found", detail)
        if status in (405, 501):
            return _Failure("upload-refused", detail)
        if status == 413:
            return _Failure("part-refused", detail)
        if status == 507:
            return _Failure("server-full", detail)
        if status in (429, 503):
            return _Failure("server-busy", detail,
                            parse_retry_after(response.headers.get("Retry-After")))
        if status >= 500:
            return _Failure("server-error", detail)
        return _Failure("unexpected-response", detail)

    def _retrying(self, action: Callable[[], T]) -> T:
        """Do `action`, trying again after a transient failure while the line works."""
        while True:
            try:
                result = action()
            except _Failure as failure:
                self._give_up_unless_transient(failure)
                continue
            self.failures_in_row = 0
            return result

    def _give_up_unless_transient(self, failure: _Failure) -> None:
        if failure.code not in TRANSIENT or self.cancel.is_set():
            raise failure
        if failure.code == "offline" and not self.answered:
            raise failure  # never reached at all: say so now rather than wait
        self.failures_in_row += 1
        if self.failures_in_row >= max(1, self.settings.resume_attempts):
            raise failure
        settings = self.settings
        wait = settings.backoff_base * 2.0 ** (self.failures_in_row - 1)
        if failure.retry_after is not None:
            wait = min(failure.retry_after, settings.retry_after_cap)
        log.info("web: %s (%s); trying again in %.1f s", self.job.name, failure, wait)
        self._pause(min(wait, settings.backoff_cap))

    def _pause(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise _Failure("cancelled")

    def _reason(self, exc: requests.RequestException) -> str:
        """Return a few words on a transport failure, without the URL or the credentials."""
        return transport_error(exc, self.job.dossier).detail
