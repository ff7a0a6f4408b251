"""What a removable volume is, and the one interface each platform's detector offers."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Volume:
    """A mounted removable volume: where it is, what the user calls it, which device it is."""

    mount_point: Path
    label: str
    device: int  # st_dev of the mount point when it appeared
    display: str = ""  # "CLE (E:)" on Windows; the label elsewhere

    @property
    def name(self) -> str:
        """Return the name shown to the user."""
        return self.display or self.label

    @property
    def origin(self) -> str:
        """Return the queue origin of files taken from this volume."""
        return f"usb:{self.name}"

    def is_present(self) -> bool:
        """Tell whether this very volume is still mounted (cheap: one stat)."""
        try:
            return os.stat(self.mount_point).st_dev == self.device
        except OSError:
            return False


class VolumeMonitor(Protocol):
    """A platform's removable-volume detector; `wait` sleeps until something may have changed."""

    def volumes(self) -> list[Volume]:
        """Return the removable volumes mounted now."""

    def wait(self, timeout: float | None) -> None:
        """Block until the volumes may have changed, `wake()` is called, or `timeout` passes."""

    def wake(self) -> None:
        """Make `wait` return now (from any thread)."""

    def close(self) -> None:
        """Release the detector's handles and threads."""


class ChangeSignal:
    """A wake-up flag for detectors fed by another thread's events (watchdog, window messages).

    The event that announces a new volume can come a moment before the volume can be read,
    so `changed()` also schedules a second look shortly after.
    """

    def __init__(self, second_look_s: float = 1.0) -> None:
        self.second_look_s = second_look_s
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._closed = False

    def changed(self) -> None:
        """Wake the waiter now and once more after `second_look_s`."""
        self._event.set()
        with self._lock:
            if self._closed or self._timer is not None:
                return
            self._timer = threading.Timer(self.second_look_s, self._second_look)
            self._timer.daemon = True
            self._timer.start()

    def _second_look(self) -> None:
        with self._lock:
            self._timer = None
        self._event.set()

    def wait(self, timeout: float | None) -> None:
        """Sleep until changed() or wake(), or until `timeout` passes."""
        self._event.wait(timeout)
        self._event.clear()

    def wake(self) -> None:
        """Make wait() return now."""
        self._event.set()

    def close(self) -> None:
        """Cancel a pending second look."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
