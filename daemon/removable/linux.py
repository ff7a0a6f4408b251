"""Removable volumes on Linux: mounts under the media folders, seen in /proc/self/mountinfo.

The kernel flags /proc/self/mountinfo with POLLPRI|POLLERR whenever the mount table
changes, so the detector blocks in poll() with no timeout: an idle service is not woken
until something is mounted or unmounted. An eventfd in the same poll() lets stop() and
poll_now() wake it.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import re
import select
import threading
from collections.abc import Sequence
from pathlib import Path

from daemon.removable.volumes import Volume

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPE = re.compile(rb"\\([0-7]{3})")


def default_media_roots() -> tuple[Path, ...]:
    """Return where desktops mount removable media: udisks2's folders, then plain /media."""
    user = getpass.getuser()
    return Path("/media") / user, Path("/run/media") / user, Path("/media")


def _unescape(field: bytes) -> str:
    """Decode a mountinfo path field (spaces and the like are written as octal escapes)."""
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), field))


def parse_mountinfo(text: bytes) -> dict[str, int]:
    """Return {mount point: mount id}; when two mounts share a point, the later one shows."""
    mounts: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split(b" ")
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        mounts[_unescape(fields[4])] = int(fields[0])
    return mounts


class MountInfoMonitor:
    """Watches the mount table for volumes mounted directly under one of the media roots."""

    def __init__(self, roots: Sequence[Path] | None = None) -> None:
        self.roots = frozenset(Path(os.path.realpath(r)) for r in (roots or default_media_roots()))
        self._lock = threading.Lock()
        self._closed = False
        self._known: dict[int, Volume] = {}  # by mount id: a stat only for new mounts
        self._info = os.open(MOUNTINFO, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        except BaseException:
            os.close(self._info)
            raise
        self._poll = select.poll()
        self._poll.register(self._info, select.POLLPRI)  # POLLERR comes with it
        self._poll.register(self._wake, select.POLLIN)

    def volumes(self) -> list[Volume]:
        """Return the volumes mounted under the media roots now."""
        mounts = parse_mountinfo(self._read_table())
        current: dict[int, Volume] = {}
        for point, mount_id in mounts.items():
            path = Path(point)
            if path.parent not in self.roots or path in self.roots:
                continue
            volume = self._known.get(mount_id) or self._describe(path)
            if volume is not None:
                current[mount_id] = volume
        self._known = current
        return list(current.values())

    @staticmethod
    def _describe(path: Path) -> Volume | None:
        try:
            device = os.stat(path).st_dev
        except OSError:
            return None  # unmounted meanwhile, or a dead FUSE mount
        # udisks2 names the mount point after the file system's label.
        return Volume(path, path.name, device)

    def _read_table(self) -> bytes:
        with self._lock:
            if self._closed:
                return b""
            os.lseek(self._info, 0, os.SEEK_SET)
            parts = []
            while part := os.read(self._info, 1 << 16):
                parts.append(part)
        return b"".join(parts)

    def wait(self, timeout: float | None) -> None:
        """Sleep in poll() until the mount table changes or wake() is called."""
        if self._closed:
            return
        millis = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
        for fd, _events in self._poll.poll(millis):
            if fd == self._wake:
                self._drain_wake()

    def _drain_wake(self) -> None:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake)

    def wake(self) -> None:
        """Make wait() return now; safe from any thread, and after close()."""
        with self._lock:
            if not self._closed:
                os.eventfd_write(self._wake, 1)

    def close(self) -> None:
        """Close the mount table and the wake-up descriptor."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._info)
            os.close(self._wake)
