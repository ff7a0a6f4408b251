"""What every system's module shares: the control channel's types and the signal set-up."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

from daemon.i18n import _

log = logging.getLogger(__name__)

# A peer that sends a longer line without a newline is not speaking the protocol; keeping
# its bytes would let it fill the memory.
MAX_LINE = 4 << 20


class AddressInUse(OSError):
    """A live listener already answers at this endpoint (another passeur of the same home)."""


class LineTooLong(ValueError):
    """The peer sent more than MAX_LINE bytes without a newline."""


class Connection(Protocol):
    """A connected, bidirectional byte stream carrying newline-terminated lines."""

    def send_line(self, line: bytes) -> None:
        """Send `line` followed by b"\\n" (raises OSError, TimeoutError when stuck)."""

    def recv_line(self, timeout: float | None) -> bytes | None:
        """Return the next line without its b"\\n"; None at end of stream.

        Raises TimeoutError when no full line came within `timeout` seconds (None: wait
        forever) and LineTooLong when the peer sends an endless line.
        """

    def close(self) -> None:
        """Close the stream; safe to call twice and from another thread."""


class Listener(Protocol):
    """Where the service waits for its front ends."""

    def accept(self) -> Connection | None:
        """Block until a peer of this user connects; None once the listener is closed."""

    def close(self) -> None:
        """Stop listening (wakes a blocked accept()); safe to call twice."""


def short_hash(data_dir: Path) -> str:
    """Return a short stable name for a data folder, the same for the CLI and the service."""
    # resolve(): a home reached through a symlink or a relative --home is the same home.
    text = str(data_dir.expanduser().resolve())
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def split_lines(buffer: bytearray) -> bytes | None:
    """Take the first complete line out of `buffer` (without its newline), if there is one."""
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) > MAX_LINE:
            raise LineTooLong(_("The other end sent a line longer than {n} bytes.")
                              .format(n=MAX_LINE))
        return None
    line = bytes(buffer[:end])
    del buffer[:end + 1]
    return line


class StopSignals:
    """Calls `stop` once for each stop signal, whichever thread the system gave it to.

    Python runs a signal's handler in the main thread, when that thread next runs Python
    code. A main thread waiting on a lock (joining the service's thread, the service's own
    wait) is not woken by a signal that the system delivered to another thread, and could
    wait a minute or more. So the signal's number is also written to a socket
    (`signal.set_wakeup_fd`) read by a thread of its own, which acts at once. Both hear each
    signal: the first to hear it says so and stops. (A GLib main loop takes the wakeup
    socket while it runs; it wakes the main thread itself, so the handler acts then.)
    """

    def __init__(self, stop: Callable[[], None], numbers: Iterable[int]) -> None:
        self.stop = stop
        self.numbers = frozenset(numbers)
        # Per signal, how many deliveries each path (handler, reader) has heard.
        self._heard: dict[int, list[int]] = {}
        # Reentrant: a second signal may interrupt the main thread while it acts on one.
        self._lock = threading.RLock()
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd: int | None = None
        for number in self.numbers:
            signal.signal(number, self._handler)
        try:
            self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(),
                                                     warn_on_full_buffer=False)
        except ValueError:
            return  # not the main thread (tests): the handler alone
        threading.Thread(target=self._read, name="stop-signals", daemon=True).start()

    def close(self) -> None:
        """Give the wakeup socket back and end the reading thread (the handlers stay)."""
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None
        with contextlib.suppress(OSError):
            self._reader.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
        self._reader.close()
        self._writer.close()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self._act(signum, 0)

    def _read(self) -> None:
        while True:
            try:
                data = self._reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for number in data:
                if number in self.numbers:
                    self._act(number, 1)

    def _act(self, signum: int, path: int) -> None:
        with self._lock:
            heard = self._heard.setdefault(signum, [0, 0])
            heard[path] += 1
            if heard[path] <= heard[1 - path]:
                return  # the other path heard this delivery first
            log.info(_("Stop requested (signal {n})").format(n=signum))
            self.stop()


def install_stop_handlers(stop: Callable[[], None], names: Iterable[str]) -> StopSignals:
    """Call `stop` on each of the named signals that this system has, and log why."""
    numbers = [number for name in names if (number := getattr(signal, name, None))]
    return StopSignals(stop, numbers)


# ---------------------------------------------------------------------------------------
# Start at login: each system's mechanisms share this shape (see daemon.platform.autostart)


@dataclass(frozen=True)
class LoginEntry:
    """What one start-at-login mechanism holds now."""

    mechanism: str  # "xdg-autostart", "systemd-user", "registry-run", "launch-agent"
    location: str  # the file, or the registry value
    present: bool  # the file or value exists
    switched_off: bool  # present, but turned off by the desktop's own tool
    command_line: str | None  # the command as written there

    @property
    def enabled(self) -> bool:
        """Tell whether this entry starts passeur at the next login."""
        return self.present and not self.switched_off


class LoginMechanism(Protocol):
    """One way a system starts a program at login, writing into folders it was given."""

    name: str

    def describe(self) -> str:
        """Name the mechanism for the user (translated)."""

    def turned_off_by(self) -> str:
        """Name the tool that turns it off outside passeur (translated)."""

    def command_line(self, argv: Sequence[str]) -> str:
        """Return `argv` quoted as this mechanism writes it."""

    def install(self, argv: Sequence[str]) -> None:
        """Write (or rewrite) the entry that runs `argv` at login, turned on."""

    def uninstall(self) -> None:
        """Remove the entry; nothing happens when there is none."""

    def entry(self) -> LoginEntry:
        """Read the entry as it is now."""


@dataclass(frozen=True)
class LoginMechanisms:
    """A system's mechanisms: one for desktop sessions, one for machines without a desktop."""

    desktop: LoginMechanism
    headless: LoginMechanism

    def pick(self, headless: bool) -> LoginMechanism:
        """Return the mechanism for this kind of start."""
        return self.headless if headless else self.desktop

    def others(self, chosen: LoginMechanism) -> list[LoginMechanism]:
        """Return the mechanisms other than `chosen` (they must not run passeur too)."""
        return [m for m in (self.desktop, self.headless) if m is not chosen]
