"""Removable drives: detection (one module per platform), import on insertion, batch wording."""

from __future__ import annotations

from daemon.removable.handover import batch_summary, describe_batch
from daemon.removable.monitors import platform_monitor
from daemon.removable.source import RemovableSource
from daemon.removable.volumes import Volume, VolumeMonitor

__all__ = [
    "RemovableSource",
    "Volume",
    "VolumeMonitor",
    "batch_summary",
    "describe_batch",
    "platform_monitor",
]
