"""Removable volumes on macOS: the mount points in /Volumes, watched with watchdog (FSEvents)."""

from __future__ import annotations

import os
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from daemon.removable.volumes import ChangeSignal, Volume

VOLUMES = Path("/Volumes")
# watchdog's threads wake up every `timeout` seconds to check whether to stop; stopping
# does not need them (it is signalled directly), so keep them asleep.
OBSERVER_TIMEOUT_S = 3600.0


class _Forward(FileSystemEventHandler):
    def __init__(self, signal: ChangeSignal) -> None:
        self.signal = signal

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.signal.changed()


class VolumesMonitor:
    """Watches /Volumes, where Disk Arbitration creates a folder for each mounted volume."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or VOLUMES
        self._signal = ChangeSignal()
        self._observer = Observer(timeout=OBSERVER_TIMEOUT_S)
        self._observer.schedule(_Forward(self._signal), str(self.root), recursive=False)
        self._observer.start()

    def volumes(self) -> list[Volume]:
        """Return the volumes mounted in /Volumes, except the start-up disk's link to /."""
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        found = []
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink() or not os.path.ismount(path):
                continue
            try:
                device = os.stat(path).st_dev
            except OSError:
                continue
            found.append(Volume(path, entry.name, device))
        return found

    def wait(self, timeout: float | None) -> None:
        """Sleep until /Volumes changes or wake() is called."""
        self._signal.wait(timeout)

    def wake(self) -> None:
        """Make wait() return now."""
        self._signal.wake()

    def close(self) -> None:
        """Stop watching."""
        self._signal.close()
        self._observer.stop()
        self._observer.join()
