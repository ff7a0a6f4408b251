"""A fault-injecting static HTTP server of the tests' own (stdlib http.server in a thread).

It serves a folder like nginx does (ETag from mtime and size, If-None-Match → 304,
Range + If-Range → 206) and, on request, misbehaves: resets the connection mid-body,
answers 5xx or 429 with Retry-After, trickles, truncates, sends more than it announced.
"""

from __future__ import annotations

import base64
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from daemon.bus import EventBus
from daemon.events import Event, PollFinished
from daemon.web.client import WebSettings
from daemon.web.credentials import CredentialStore
from daemon.web.poller import PollReport, WebPoller
from tests.helpers import Home

E = TypeVar("E", bound=Event)

CHUNK = 64 * 1024


@dataclass
class Fault:
    """One misbehaviour for the next matching request(s).

    kind: "status" (answer `status` with `headers`), "reset" (RST after `after` bytes),
    "truncate" (close cleanly after `after` bytes), "trickle" (one byte every `interval`
    seconds), "longer" (append `extra` bytes, announcing the longer length unless
    `announce_length` is False: then the body simply runs until the close), "slow" (chunks
    of `chunk` bytes every `interval` seconds), "stall" (no answer for `interval` seconds),
    "trickle-head" (the status line and `after` more header lines, `chunk` bytes every
    `interval` seconds, then the file; `heads_sent` counts the heads that were finished).
    `times` is how many requests it applies to (0: all).
    """

    kind: str
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    after: int = 0
    interval: float = 0.0
    extra: bytes = b""
    chunk: int = CHUNK
    times: int = 1
    announce_length: bool = True


@dataclass(frozen=True)
class Seen:
    """A request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int


class FaultServer:
    """Serves `root` on 127.0.0.1 at a free port, with injectable faults."""

    def __init__(self, root: Path, credentials: tuple[str, str] | None = None,
                 token: str | None = None, port: int = 0) -> None:
        self.root = root
        self.credentials = credentials
        self.token = token
        self.faults: dict[str, list[Fault]] = {}
        self.seen: list[Seen] = []
        self.heads_sent: list[str] = []  # paths whose trickled head was sent in full
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.on_chunk: Callable[[str, int], None] | None = None
        handler = type("Handler", (_Handler,), {"server_state": self})
        self.httpd = _QuietServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})

    @property
    def port(self) -> int:
        """Return the port the server listens on."""
        return int(self.httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """Return the endpoint address (the root folder is served at /passeur/)."""
        return f"http://127.0.0.1:{self.port}/passeur/"

    def start(self) -> FaultServer:
        """Start serving in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; trickling handlers notice and end."""
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def inject(self, suffix: str, *faults: Fault) -> None:
        """Queue faults for requests whose path ends with `suffix`."""
        with self.lock:
            self.faults.setdefault(suffix, []).extend(faults)

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        with self.lock:
            self.faults.clear()

    def take_fault(self, path: str) -> Fault | None:
        """Return the fault for this request, consuming one use of it."""
        with self.lock:
            for suffix, queue in self.faults.items():
                if queue and path.endswith(suffix):
                    fault = queue[0]
                    if fault.times == 1:
                        queue.pop(0)
                    elif fault.times > 1:
                        fault.times -= 1
                    return fault
        return None

    def requests_for(self, suffix: str) -> list[Seen]:
        """Return the requests whose path ends with `suffix`."""
        with self.lock:
            return [s for s in self.seen if s.path.endswith(suffix)]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """Clients cut off on purpose are expected here: no traceback on stderr."""


def etag_of(path: Path) -> str:
    """Return an nginx-style strong ETag: hex mtime and hex size."""
    stat = path.stat()
    return f'"{int(stat.st_mtime):x}-{stat.st_size:x}"'


class _Handler(BaseHTTPRequestHandler):
    server_state: FaultServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the tests read `seen` instead."""

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def _record(self, status: int) -> None:
        state = self.server_state
        with state.lock:
            state.seen.append(Seen(self.command, urlsplit(self.path).path,
                                   {k: v for k, v in self.headers.items()}, status))

    def _send_head(self, status: int, headers: dict[str, str]) -> None:
        self._record(status)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _authorised(self) -> bool:
        state = self.server_state
        given = self.headers.get("Authorization", "")
        if state.token is not None:
            return given == f"Bearer {state.token}"
        if state.credentials is not None:
            user, password = state.credentials
            return given == "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        return True

    def _refused_unauthorised(self) -> bool:
        """Answer 401 (and tell so) when the request does not carry the credentials."""
        if self._authorised():
            return False
        self._send_head(401, {"WWW-Authenticate": 'Basic realm="passeur"',
                              "Content-Length": "0"})
        return True

    def do_GET(self) -> None:
        state = self.server_state
        path = unquote(urlsplit(self.path).path)
        fault = state.take_fault(path)
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.interval)
            fault = None
        if fault is not None and fault.kind == "status":
            body = b"fault\n"
            self._send_head(fault.status, {"Content-Length": str(len(body)), **fault.headers})
            self.wfile.write(body)
            return
        if self._refused_unauthorised():
            return
        file = self._file(path)
        if file is None:
            self._send_head(404, {"Content-Length": "0"})
            return
        if fault is not None and fault.kind == "trickle-head":
            self._trickle_head(path, "200 OK", file.read_bytes(), fault)
            return
        self._serve(file, fault)

    def _trickle_head(self, path: str, status: str, data: bytes, fault: Fault) -> None:
        """Send the answer's head a few bytes at a time, as a hostile or broken server does."""
        state = self.server_state
        self._record(int(status.split()[0]))
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(data)}", "Connection: close",
                 *(f"X-Filler-{n}: {'x' * 20}" for n in range(fault.after))]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.close_connection = True
        try:
            for start in range(0, len(head), fault.chunk):
                if state.stopping.is_set():
                    return
                self.wfile.write(head[start:start + fault.chunk])
                self.wfile.flush()
                time.sleep(fault.interval)
            with state.lock:
                state.heads_sent.append(path)
            self.wfile.write(data)
        except OSError:
            return  # the client went away

    def do_HEAD(self) -> None:
        """Size and ETag of a file, as nginx answers HEAD (uploads check what arrived)."""
        path = unquote(urlsplit(self.path).path)
        fault = self.server_state.take_fault(path)
        if fault is not None and fault.kind == "status":
            self._send_head(fault.status, {"Content-Length": "0", **fault.headers})
            return
        if self._refused_unauthorised():
            return
        file = self._file(path)
        if file is None:
            self._send_head(404, {"Content-Length": "0"})
            return
        self._send_head(200, {"ETag": etag_of(file), "Content-Length": str(file.stat().st_size)})

    def do_PUT(self) -> None:
        """Store the body (folders made as needed, like nginx's create_full_put_path).

        Faults: "reset" (RST once `after` bytes of the body arrived, nothing stored),
        "status" (the body is read, then `status` is answered), "stall" (the body is read,
        then no answer for `interval` seconds), "trickle-head" (the body is stored, then
        the answer's head is trickled as for a GET).
        """
        state = self.server_state
        path = unquote(urlsplit(self.path).path)
        fault = state.take_fault(path)
        length = int(self.headers.get("Content-Length", "0"))
        if fault is not None and fault.kind == "reset":
            with contextlib.suppress(OSError):
                self.rfile.read(min(fault.after, length))
            self._record(0)
            self._reset()
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away: nothing is stored, as with nginx
            self._record(400)
            self.close_connection = True
            return
        if fault is not None and fault.kind == "stall":
            time.sleep(fault.interval)
            fault = None
        if fault is not None and fault.kind == "status":
            self._send_head(fault.status, {"Content-Length": "0", **fault.headers})
            return
        if self._refused_unauthorised():
            return
        target = self._target(path)
        if target is None:
            self._send_head(404, {"Content-Length": "0"})
            return
        existed = target.exists()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.put")
        tmp.write_bytes(body)
        tmp.replace(target)  # whole or not at all, as nginx does
        if fault is not None and fault.kind == "trickle-head":
            self._trickle_head(path, "204 No Content" if existed else "201 Created", b"", fault)
            return
        self._send_head(204 if existed else 201, {"Content-Length": "0"})

    def do_MKCOL(self) -> None:
        """Make a folder (WebDAV): 201, or 405 when it exists, 409 without its parent."""
        path = unquote(urlsplit(self.path).path)
        if not self._authorised():
            self._send_head(401, {"Content-Length": "0"})
            return
        target = self._target(path.rstrip("/"))
        if target is None:
            self._send_head(404, {"Content-Length": "0"})
        elif target.exists():
            self._send_head(405, {"Content-Length": "0"})
        elif not target.parent.is_dir():
            self._send_head(409, {"Content-Length": "0"})
        else:
            target.mkdir()
            self._send_head(201, {"Content-Length": "0"})

    def _target(self, path: str) -> Path | None:
        prefix = "/passeur/"
        relative = path[len(prefix):] if path.startswith(prefix) else ""
        parts = relative.split("/")
        if not relative or any(p in ("", ".", "..") for p in parts):
            return None
        return self.server_state.root / relative

    def _file(self, path: str) -> Path | None:
        prefix = "/passeur/"
        if not path.startswith(prefix):
            return None
        relative = path[len(prefix):]
        if ".." in relative.split("/"):
            return None
        file = self.server_state.root / relative
        return file if file.is_file() else None

    def _serve(self, file: Path, fault: Fault | None) -> None:
        data = file.read_bytes()
        etag = etag_of(file)
        if self.headers.get("If-None-Match") == etag:
            self._send_head(304, {"ETag": etag})
            return
        start = self._range_start(etag, len(data))
        if start is not None and start >= len(data):
            self._send_head(416, {"Content-Range": f"bytes */{len(data)}",
                                  "Content-Length": "0"})
            return
        body = data[start or 0:]
        if fault is not None and fault.kind == "longer":
            body += fault.extra
        headers = {"ETag": etag, "Content-Length": str(len(body)),
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        if fault is not None and not fault.announce_length:
            del headers["Content-Length"]
        if start is not None:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send_head(206 if start is not None else 200, headers)
        self._send_body(body, fault, str(file.name))

    def _range_start(self, etag: str, size: int) -> int | None:
        wanted = self.headers.get("Range", "")
        if not wanted.startswith("bytes=") or not wanted.endswith("-"):
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            return None  # the file changed: the whole file is sent
        try:
            return int(wanted[len("bytes="):-1])
        except ValueError:
            return None

    def _send_body(self, body: bytes, fault: Fault | None, name: str) -> None:
        state = self.server_state
        try:
            if fault is None or fault.kind == "longer":
                self.wfile.write(body)
            elif fault.kind in ("reset", "truncate"):
                self.wfile.write(body[:fault.after])
                self.wfile.flush()
                if fault.kind == "reset":
                    self._reset()
            elif fault.kind == "trickle":
                for index in range(len(body)):
                    if state.stopping.is_set():
                        return
                    self.wfile.write(body[index:index + 1])
                    self.wfile.flush()
                    time.sleep(fault.interval)
            elif fault.kind == "slow":
                sent = 0
                while sent < len(body) and not state.stopping.is_set():
                    self.wfile.write(body[sent:sent + fault.chunk])
                    self.wfile.flush()
                    sent += len(body[sent:sent + fault.chunk])
                    if state.on_chunk is not None:
                        state.on_chunk(name, sent)
                    time.sleep(fault.interval)
        except OSError:
            return  # the client went away

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashed peer would."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()


# ---------------------------------------------------------------- helpers for the web tests


class Recorder:
    """Collects the events published on a bus, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        """Return the recorded events of one kind."""
        with self._lock:
            return [e for e in self.events if isinstance(e, kind)]

    def wait_for(self, kind: type[E], count: int = 1, timeout: float = 10.0) -> list[E]:
        """Wait until `count` events of `kind` arrived; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind)
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"expected {count} {kind.__name__}, got {self.of(kind)}")


def configure_web(home: Home, url: str, ca_bundle: Path | None = None,
                  poll_minutes: int = 15) -> None:
    """Add a [sources.web] table to the home's config."""
    lines = ["", "[sources.web]", f'url = "{url}"', f"poll_minutes = {poll_minutes}"]
    if ca_bundle is not None:
        lines.append(f'ca_bundle = "{ca_bundle}"')
    config = home.root / "config.toml"
    config.write_text(config.read_text() + "\n".join(lines) + "\n")


def file_keyring(path: Path) -> Any:
    """Return a real keyring backend that keeps its secrets in one file at `path`."""
    from keyrings.alt.file import PlaintextKeyring  # type: ignore[import-untyped]

    backend = PlaintextKeyring()
    backend.file_path = str(path)
    return backend


def keyring_env(folder: Path) -> dict[str, str]:
    """Return environment variables selecting a file keyring under `folder`."""
    return {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "XDG_DATA_HOME": str(folder)}


FAST = WebSettings(connect_timeout=2.0, read_timeout=1.0, deadline_base=2.0, min_rate=1e9,
                   backoff_base=0.05, backoff_cap=0.4, retry_after_cap=3.0,
                   resume_attempts=3, progress_interval=0.0)


@dataclass
class Rig:
    """A poller on a home, with its bus and the events it published."""

    home: Home
    poller: WebPoller
    bus: EventBus
    events: Recorder

    def poll(self) -> PollReport:
        """Poll once and wait until the events of that poll are recorded."""
        before = len(self.events.of(PollFinished))
        report = self.poller.poll_once()
        self.events.wait_for(PollFinished, before + 1)
        return report

    def close(self) -> None:
        """Stop the poller and the bus."""
        self.poller.stop()
        self.bus.close()


def make_rig(home: Home, credentials: CredentialStore | None = None,
             settings: WebSettings = FAST) -> Rig:
    """Build a poller on `home` (whose config already names the endpoint)."""
    ctx = home.context()
    bus = EventBus()
    events = Recorder()
    bus.subscribe("test", events)
    poller = WebPoller(ctx.config, ctx.paths, ctx.queue, ctx.intake, bus,
                       credentials or CredentialStore(file_keyring(home.root / "kr.cfg")),
                       settings)
    return Rig(home, poller, bus, events)
