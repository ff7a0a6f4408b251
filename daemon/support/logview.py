"""`passeur log [--follow] [--lines N]`: the end of the log, then what comes, across rotations.

The follower holds no file open between two looks (every 0.5 s): on Windows an open file
cannot be renamed, and the service's rotation must never wait for a reader.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from daemon.i18n import _
from daemon.logs import LOG_NAME, log_files
from daemon.support.redact import redact_secrets

if TYPE_CHECKING:
    from daemon.context import Context

POLL_S = 0.5
MAX_FILES = 100  # the current file and the rotated ones a reader looks for
SCAN_TRIES = 20  # looks at the files before taking a scan that a rotation crossed
_BLOCK = 64 << 10

Identity = tuple[int, int]


def _identity(stat: os.stat_result) -> Identity:
    return stat.st_dev, stat.st_ino


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip("\r")


def _last_lines_of(handle: BinaryIO, count: int, end: int) -> list[str]:
    """Return the last `count` complete lines among the file's first `end` bytes."""
    if count <= 0:
        return []
    data = b""
    position = end
    # Read backwards until enough line ends are in hand (or the file's start).
    while position > 0 and data.count(b"\n") <= count:
        step = min(_BLOCK, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
    lines = data.split(b"\n")
    lines.pop()  # after the last "\n": nothing, or a line still being written
    if position > 0:
        lines = lines[1:]  # may have been cut at the front
    return [_decode(line) for line in lines[-count:]]


def _complete_end(handle: BinaryIO, size: int) -> int:
    """Return the offset just after the file's last line end (a line being written waits)."""
    start = max(0, size - _BLOCK)
    handle.seek(start)
    tail = handle.read(size - start)
    cut = tail.rfind(b"\n")
    return start + cut + 1 if cut >= 0 else start


def _last_lines_of_file(path: Path, count: int) -> list[str]:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        return _last_lines_of(handle, count, _complete_end(handle, size))


@dataclass
class Follower:
    """Where reading stopped: which file (by identity) and how far, in complete lines."""

    folder: Path
    identity: Identity | None = None
    offset: int = 0

    @property
    def path(self) -> Path:
        """Return the current log file's path."""
        return self.folder / LOG_NAME

    def start(self, count: int) -> list[str]:
        """Return the last `count` lines of the log and remember where they end."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                self.identity = _identity(stat)
                self.offset = _complete_end(handle, stat.st_size)
                lines = _last_lines_of(handle, count, self.offset)
        except FileNotFoundError:
            lines = []
        # Right after a rotation the current file is short: the rest is in the older ones.
        for older in log_files(self.folder):
            if len(lines) >= count:
                break
            if older != self.path:
                lines = _last_lines_of_file(older, count - len(lines)) + lines
        return lines

    def read_new(self) -> list[str]:
        """Return the complete lines written since the last call, older files first."""
        try:
            current = os.stat(self.path)
            if _identity(current) == self.identity and current.st_size == self.offset:
                return []  # the usual look: nothing new, nothing opened
        except FileNotFoundError:
            if self.identity is None:
                return []
        opened = self._open_newest_first()
        try:
            return self._read_opened(opened)
        finally:
            for log_file in opened:
                log_file.handle.close()

    def _open_newest_first(self) -> list[_Opened]:
        """Open the current file, then older ones, back to ours, as one consistent picture.

        A rotation that ends while the files are opened one by one renames the current file
        away: the file met first may then be older than one met after it, and the lines
        would come out of order (or twice). Such a scan is made again; rotations are far
        apart, so a second look is nearly always calm.
        """
        for _attempt in range(SCAN_TRIES - 1):
            opened = self._scan()
            if self._no_rotation_ended_during(opened):
                return opened
            for log_file in opened:
                log_file.handle.close()
        return self._scan()

    def _no_rotation_ended_during(self, opened: list[_Opened]) -> bool:
        """Tell whether the file under the log's name is still the one the scan began with."""
        began = opened[0].identity if opened and opened[0].current else None
        try:
            return _identity(os.stat(self.path)) == began
        except FileNotFoundError:
            return began is None

    def _scan(self) -> list[_Opened]:
        """Open the files from the current one back to ours.

        Newest first: a rotation under way only moves files towards older names, so every
        file newer than ours is met (some perhaps twice: kept once, by identity). A
        rotation renames the backups one by one, oldest first: for a moment one name in
        the middle is missing. Only two missing names in a row end the chain; a single gap
        taken for its end would skip the rest of our file.
        """
        opened: list[_Opened] = []
        missing = 0
        for index in range(MAX_FILES):
            name = LOG_NAME if index == 0 else f"{LOG_NAME}.{index}"
            try:
                handle = open(self.folder / name, "rb")  # noqa: SIM115 - closed by read_new
            except FileNotFoundError:
                missing += 1
                if index == 0 or missing < 2:
                    continue
                break
            missing = 0
            identity = _identity(os.fstat(handle.fileno()))
            if any(log_file.identity == identity for log_file in opened):
                handle.close()
                continue
            opened.append(_Opened(index == 0, identity, handle))
            if identity == self.identity:
                break  # the older ones were read already
        return opened

    def _read_opened(self, opened: list[_Opened]) -> list[str]:
        lines: list[str] = []
        ours = next((i for i, f in enumerate(opened) if f.identity == self.identity), None)
        if ours is not None:
            lines += self._rest(opened[ours])
            newer = opened[:ours]
        elif self.identity is None:
            newer = [f for f in opened if f.current]  # the log just appeared
        else:
            newer = opened  # ours is gone (rotated too often to be kept): all that is left
        for log_file in reversed(newer):  # oldest first
            self.identity, self.offset = log_file.identity, 0
            lines += self._rest(log_file)
        return lines

    def _rest(self, log_file: _Opened) -> list[str]:
        """Read complete lines from `offset` of the file that is ours; move on."""
        handle = log_file.handle
        if os.fstat(handle.fileno()).st_size < self.offset:  # emptied in place
            self.offset = 0
        handle.seek(self.offset)
        data = handle.read()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        return [_decode(line) for line in data[:complete].split(b"\n")[:-1]]


@dataclass(frozen=True)
class _Opened:
    current: bool  # the file under the log's own name
    identity: Identity
    handle: BinaryIO


def follow(follower: Follower, write: Callable[[list[str]], None],
           stop: threading.Event | None = None) -> None:
    """Write new lines as they come, looking every POLL_S seconds, until `stop` is set."""
    stop = stop or threading.Event()
    while not stop.wait(POLL_S):
        lines = follower.read_new()
        if lines:
            write(lines)


def cmd_log(ctx: Context, args: argparse.Namespace) -> int:
    """Print the end of the log; with --follow, new lines until Ctrl-C."""
    from daemon.cli import EXIT_OK, err, out, silence_stdout

    folder = ctx.paths.logs
    if not args.follow and not log_files(folder):
        out(_("passeur has written no log yet (in {folder})").format(folder=folder))
        return EXIT_OK
    _tolerate_any_terminal()
    try:
        follower = Follower(folder)
        _write(follower.start(args.lines))
        if args.follow:
            if not follower.path.exists():
                err(_("Waiting for passeur to write its log in {folder}… (Ctrl-C to stop)")
                    .format(folder=folder))
            follow(follower, _write)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # The reader went away (passeur log | head -1): that is the end, not an error.
        silence_stdout()
    return EXIT_OK


def _write(lines: list[str]) -> None:
    from daemon.cli import out

    for line in lines:
        out(redact_secrets(line))
    sys.stdout.flush()  # a pipe buffers: `--follow | grep` must see each line as it comes


def _tolerate_any_terminal() -> None:
    """A console that cannot show a character shows a replacement, not a traceback."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")


