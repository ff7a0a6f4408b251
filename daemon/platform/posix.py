"""What Linux and macOS share: the Unix-socket control channel, private folders, openers."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from daemon.i18n import _
from daemon.platform.common import AddressInUse, short_hash, split_lines

log = logging.getLogger(__name__)

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")

# How long a send may wait for a peer that does not read before the connection is given up.
SEND_TIMEOUT = 10.0
# How long the opener (xdg-open, open) may take to hand the file over to a program.
OPENER_TIMEOUT = 5.0
RECV_CHUNK = 65536

PeerUid = Callable[[socket.socket], "int | None"]


class UnsafeFolder(OSError):
    """A folder meant to be private belongs to someone else or others may write in it."""


# ---------------------------------------------------------------------------------------
# Private folders


def private_dir(path: Path) -> Path:
    """Create `path` (mode 0700) or check that an existing one is private to this user.

    A folder owned by another user, a symlink or one that others may write in is refused:
    someone prepared it to catch or impersonate the service's socket. A folder of this user
    that others may only read is tightened to 0700.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(_("{path} is not a folder: refusing to use it for the control "
                             "channel.").format(path=path))
    if info.st_uid != os.getuid():
        raise UnsafeFolder(_("{path} belongs to another user (uid {uid}): refusing to use it "
                             "for the control channel.").format(path=path, uid=info.st_uid))
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise UnsafeFolder(_("Other users may write in {path} (mode {mode:o}): refusing to use "
                             "it for the control channel.").format(path=path, mode=mode))
    if mode != 0o700:
        os.chmod(path, 0o700)
    return path


def is_private_dir(path: Path) -> bool:
    """Tell whether `path` is a folder of this user with mode 0700 (as XDG promises)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and stat.S_IMODE(info.st_mode) == 0o700)


def fallback_runtime_dir() -> Path:
    """Return the private folder passeur-<uid> under the temp folder, created if needed."""
    import tempfile

    return private_dir(Path(tempfile.gettempdir()) / f"passeur-{os.getuid()}")


# ---------------------------------------------------------------------------------------
# The control channel: an AF_UNIX stream socket, never TCP


class UnixConnection:
    """A connected Unix stream socket carrying lines (see common.Connection)."""

    def __init__(self, sock: socket.socket) -> None:
        # Non-blocking underneath, each call waits with poll(): a thread blocked reading
        # never changes the timeout of another thread that is sending.
        sock.setblocking(False)
        self._sock = sock
        self._buffer = bytearray()
        self._eof = False
        self._send_lock = threading.Lock()

    def fileno(self) -> int:
        """Return the socket's descriptor (for peer checks and selectors)."""
        return self._sock.fileno()

    @property
    def sock(self) -> socket.socket:
        """Return the underlying socket."""
        return self._sock

    def send_line(self, line: bytes) -> None:
        """Send `line` and a newline; TimeoutError when the peer stops reading."""
        data = memoryview(line + b"\n")
        deadline = time.monotonic() + SEND_TIMEOUT
        with self._send_lock:
            while data:
                _wait(self._sock, select.POLLOUT, deadline)
                try:
                    sent = self._sock.send(data)
                except (BlockingIOError, InterruptedError):
                    continue
                data = data[sent:]

    def recv_line(self, timeout: float | None) -> bytes | None:
        """Return the next line without its newline, None at end of stream."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            line = split_lines(self._buffer)
            if line is not None:
                return line
            if self._eof:
                return None  # an unfinished last line is no message
            _wait(self._sock, select.POLLIN, deadline)
            try:
                chunk = self._sock.recv(RECV_CHUNK)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self._eof = True
            self._buffer += chunk

    def close(self) -> None:
        """Close the socket (a peer blocked reading sees the end of the stream)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _wait(sock: socket.socket, event: int, deadline: float | None) -> None:
    """Wait until `sock` is ready for `event`; TimeoutError past `deadline`."""
    poller = select.poll()
    poller.register(sock, event)
    while True:
        if sock.fileno() < 0:
            raise OSError(_("The connection is closed."))
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError(_("The other end did not answer in time."))
        # poll() takes milliseconds; wake at least every second to notice a close().
        wait_ms = 1000 if remaining is None else min(1000, max(1, int(remaining * 1000)))
        if poller.poll(wait_ms):
            return


class UnixListener:
    """A listening Unix socket that hands over only peers of this user."""

    def __init__(self, sock: socket.socket, path: Path, peer_uid: PeerUid) -> None:
        self._sock = sock
        self._path = path
        self._peer_uid = peer_uid
        info = os.stat(path)
        self._identity = (info.st_dev, info.st_ino)  # to remove our socket, never a successor's
        self._wake_read, self._wake_write = socket.socketpair()
        self._closed = threading.Event()

    @property
    def path(self) -> Path:
        """Return the socket file's path."""
        return self._path

    def accept(self) -> UnixConnection | None:
        """Wait for a peer of this user; refuse (close, log) any other; None once closed."""
        if self._closed.is_set():
            return None
        # poll(), not select(): a busy service may hold descriptors past select's 1024.
        poller = select.poll()
        listening = self._sock.fileno()
        poller.register(listening, select.POLLIN)
        poller.register(self._wake_read.fileno(), select.POLLIN)
        while not self._closed.is_set():
            try:
                ready = poller.poll()
            except OSError:
                if self._closed.is_set():
                    return None
                raise
            if self._closed.is_set():
                return None
            if not any(fd == listening for fd, _event in ready):
                continue
            try:
                conn, _address = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError:
                if self._closed.is_set():
                    return None
                raise
            if self._admits(conn):
                return UnixConnection(conn)
        return None

    def _admits(self, conn: socket.socket) -> bool:
        """Tell whether the peer on `conn` runs as this user; close the connection if not."""
        uid = self._peer_uid(conn)
        if uid == os.getuid():
            return True
        log.warning(_("Refused a connection to the control channel {path} from another user "
                      "(uid {uid}).").format(path=self._path,
                                             uid=_("unknown") if uid is None else uid))
        conn.close()
        return False

    def close(self) -> None:
        """Stop listening, wake a blocked accept() and remove the socket file if still ours."""
        if self._closed.is_set():
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")
        with contextlib.suppress(OSError):
            info = os.stat(self._path)
            if (info.st_dev, info.st_ino) == self._identity:
                os.unlink(self._path)
        self._sock.close()
        self._wake_write.close()
        self._wake_read.close()

    def __enter__(self) -> UnixListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def endpoint_in(folder: Path, data_dir: Path) -> str:
    """Return the socket of the home `data_dir`'s service in the runtime folder `folder`."""
    return os.fspath(folder / f"passeur-{short_hash(data_dir)}.sock")


def listen(endpoint: str, peer_uid: PeerUid) -> UnixListener:
    """Listen on the Unix socket `endpoint` (mode 0600 from birth).

    Raises AddressInUse when a live listener answers there; replaces a stale socket file
    (one that a killed listener left behind: connecting to it is refused).
    """
    path = Path(endpoint)
    # Two services starting at once must not both find the old file stale, and the second
    # remove the first one's fresh socket: the check and the bind happen under a lock.
    with _bind_lock(path):
        if _someone_answers(path):
            raise AddressInUse(_("Another passeur already listens on {path}.").format(path=path))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            _bind_private(sock, path)
            sock.listen(16)
            sock.setblocking(False)  # select() said ready, yet the peer may have gone
        except OSError:
            sock.close()
            raise
        return UnixListener(sock, path, peer_uid)


@contextlib.contextmanager
def _bind_lock(path: Path) -> Iterator[None]:
    """Serialise the stale check and the bind between processes of this user."""
    from daemon.fsutil import exclusive_lock

    with exclusive_lock(path.with_name(path.name + ".lock")):
        yield


_umask_lock = threading.Lock()


def _bind_private(sock: socket.socket, path: Path) -> None:
    """Bind `sock` to `path` so that the socket file is 0600 from its first instant."""
    # chmod after bind would leave a moment where others may connect; the umask is the
    # only way to create it private. It is process-wide: files that another thread creates
    # meanwhile come out more private than asked, never less.
    with _umask_lock:
        previous = os.umask(0o177)
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(previous)


def _someone_answers(path: Path) -> bool:
    """Tell whether a listener accepts connections on the socket file `path`."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(os.fspath(path))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    except TimeoutError:
        return True  # alive but its backlog is full
    except OSError as exc:
        # ENOTSOCK and the like: a plain file in the way is no listener; it is replaced.
        log.info("control socket %s: %s", path, exc)
        return False
    finally:
        probe.close()
    return True


def connect(endpoint: str, timeout: float, peer_uid: PeerUid) -> UnixConnection | None:
    """Connect to the service at `endpoint`; None when nobody listens there.

    Raises TimeoutError when a listener is there but does not take the connection in time,
    and PermissionError when the listener runs as another user.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(endpoint)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        return None
    except OSError:
        sock.close()
        raise
    uid = peer_uid(sock)
    if uid != os.getuid():
        sock.close()
        raise PermissionError(_("The control channel {path} is held by another user (uid "
                                "{uid}): not talking to it.").format(
                                    path=endpoint, uid=_("unknown") if uid is None else uid))
    return UnixConnection(sock)


# ---------------------------------------------------------------------------------------
# Desktop


def open_with_opener(opener: str, path: Path, timeout: float = OPENER_TIMEOUT) -> bool:
    """Open `path` with `opener` (xdg-open, open); True only once it says it handed it over.

    Waits at most `timeout` seconds for the opener's exit status: a missing opener, a
    non-zero status or no answer in time give False, so that the caller shows its fallback.
    """
    try:
        child = subprocess.Popen([opener, os.fspath(path)], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    except OSError as exc:
        log.info("cannot open %s with %s: %s", path, opener, exc)
        return False
    try:
        status = child.wait(timeout)
    except subprocess.TimeoutExpired:
        # Left running: some openers run the program itself and wait for it to end.
        log.info("%s did not answer within %s s for %s", opener, timeout, path)
        return False
    if status != 0:
        log.info("%s failed (status %s) for %s", opener, status, path)
        return False
    return True
