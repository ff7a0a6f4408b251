"""*Répertoire*: sending the `.wvz` into a folder, usually a USB key.

The file is written temp → fsync → rename, then read back from the key and compared
(daemon.keywrite.write_to_key), so « Vous pouvez retirer la clé » is said only once it is
true. A full key is refused before anything is written; a key pulled out mid-write leaves
nothing under the file's name.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from daemon.i18n import _
from daemon.keywrite import (
    KeyFull,
    KeyReadBackFailed,
    KeyWriteError,
    free_room,
    write_to_key,
)
from daemon.removable.monitors import platform_monitor
from daemon.removable.volumes import Volume
from daemon.send.base import Channel, Progress, SendError, SendJob, Sent

VolumeLister = Callable[[], Sequence[Volume]]


def removable_volumes(media_roots: Sequence[Path] | None = None) -> list[Volume]:
    """Return the removable volumes mounted now (`media_roots`: see platform_monitor)."""
    monitor = platform_monitor(media_roots)
    try:
        return monitor.volumes()
    finally:
        monitor.close()


def removable_targets(media_roots: Sequence[Path] | None = None,
                      folders: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """Return where a dossier can be written, as (label, path): the detected removable
    volumes first, then `folders` (the configured or last folder) not already listed."""
    targets = [(volume.name, volume.mount_point) for volume in removable_volumes(media_roots)]
    seen = {_real(path) for _label, path in targets}
    for folder in folders:
        if _real(folder) not in seen:
            seen.add(_real(folder))
            targets.append((str(folder), folder))
    return targets


def volume_of(folder: Path, volumes: Sequence[Volume]) -> Volume | None:
    """Return the removable volume that holds `folder`, if it is on one."""
    real = _real(folder)
    for volume in volumes:
        if real.is_relative_to(_real(volume.mount_point)):
            return volume
    return None


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


class _Cancelled(Exception):
    """Raised from the copy's progress callback when the user cancelled."""


class FolderDestination:
    """Writes the `.wvz` into a folder or onto a USB key, and checks it there."""

    channel = Channel.FOLDER

    def __init__(self, folder: Path, *, volumes: VolumeLister | None = None) -> None:
        self.folder = folder
        self._list_volumes = volumes or removable_volumes
        self._volume: Volume | None = None

    @property
    def volume(self) -> Volume | None:
        """Return the removable volume the folder is on (known after `check`)."""
        return self._volume

    def where(self) -> str:
        """Return the destination in the user's words."""
        if self._volume is not None:
            return _("the USB key {label}").format(label=self._volume.name)
        return _("the folder {path}").format(path=self.folder)

    def check(self, job_size: int) -> None:
        """Refuse a folder that is not there or not writable, and a key without the room."""
        folder = self.folder
        if not folder.is_dir():
            raise SendError("folder-missing", _(
                "The folder {path} cannot be found: plug the USB key in, or choose another"
                " folder.").format(path=folder))
        self._volume = volume_of(folder, self._list_volumes())
        if not os.access(folder, os.W_OK):
            raise SendError("folder-read-only", _(
                "passeur cannot write into {path} (a locked or read-only key, or no"
                " permission): choose another folder.").format(path=folder))
        if job_size <= 0:
            return
        free, unit = free_room(folder)
        if -(-job_size // unit) * unit > free:
            raise SendError("key-full", KeyFull(self._label(), job_size, free).message())

    def _label(self) -> str:
        return self._volume.name if self._volume is not None else str(self.folder)

    def send(self, job: SendJob, progress: Progress, cancel: threading.Event) -> Sent:
        """Write the file, flush it, read it back and compare its SHA-256."""

        def copied(done: int, total: int) -> None:
            if cancel.is_set():
                raise _Cancelled
            progress(done, total)

        try:
            result = write_to_key(job.file, self.folder, job.name, key=self._label(),
                                  progress=copied)
        except _Cancelled:
            raise SendError("cancelled", _(
                "The send was cancelled; nothing was left in {where}.").format(
                    where=self.where())) from None
        except KeyFull as exc:
            raise SendError("key-full", exc.message()) from None
        except KeyReadBackFailed as exc:
            raise SendError("read-back-failed", exc.message()) from None
        except (KeyWriteError, OSError) as exc:
            raise self._write_failed(job, exc) from None
        where = self.where()
        hint = ""
        if self._volume is not None:
            hint = _("You can remove the key {label}").format(label=self._volume.name)
        return Sent(where, {"path": str(result.path), "removable": self._volume is not None,
                            "label": self._label()}, hint)

    def _write_failed(self, job: SendJob, exc: Exception) -> SendError:
        if self._volume is not None and not self._volume.is_present():
            return SendError("key-removed", _(
                "The USB key {label} was removed while {file} was being written: nothing"
                " usable was left on it. Plug it in again and send once more.").format(
                    label=self._volume.name, file=job.name))
        if isinstance(exc, KeyWriteError):
            return SendError("write-failed", exc.message())
        return SendError("write-failed", KeyWriteError(
            self._label(), exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc),
        ).message())
