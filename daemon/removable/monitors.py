"""Which detector of removable drives this system has (one module per system beside it)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from daemon.removable.volumes import VolumeMonitor


def platform_monitor(roots: Sequence[Path] | None = None) -> VolumeMonitor:
    """Return this platform's detector; `roots` replaces the default media folders."""
    if sys.platform == "win32":
        from daemon.removable.windows import WindowsDriveMonitor

        return WindowsDriveMonitor()
    if sys.platform == "darwin":
        from daemon.removable.macos import VolumesMonitor

        return VolumesMonitor(roots[0] if roots else None)
    from daemon.removable.linux import MountInfoMonitor

    return MountInfoMonitor(roots)
