"""*Traiter* and *Supprimer*: hand queued updates to the application's inbox, or to the trash."""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.app import AppWatcher
from daemon.config import AppConfig, Paths
from daemon.fsutil import (
    CopyRefused,
    atomic_copy,
    durable_link,
    exclusive_lock,
    fsync_dir,
    is_orphan_temp,
    open_quietly,
)
from daemon.i18n import _
from daemon.queue import Item, Queue, State

log = logging.getLogger(__name__)

TRASH_DAYS = 30


class Result(enum.StrEnum):
    """What *Traiter* did with one item."""

    DELIVERED = "delivered"
    RESTART_REQUIRED = "restart-required"  # an étalon update while the application runs
    HELD = "held"  # waits behind an earlier update of the same dossier
    # Its copy in the queue is no longer what was verified (changed on disk, or replaced
    # by a link): nothing is handed over, it waits, and holds back the dossier's later ones.
    ALTERED = "altered"
    NOT_WAITING = "not-waiting"  # already handled (maybe by another process)


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of handing one item over."""

    item: Item
    result: Result


class InboxNotConfigured(Exception):
    """The config does not say where the application takes its updates from."""


class Delivery:
    """Moves items out of the queue: to the application's inbox, or to the trash."""

    def __init__(self, queue: Queue, app: AppConfig, paths: Paths,
                 watcher: AppWatcher | None = None) -> None:
        self.queue = queue
        self.app = app
        self.paths = paths
        self.watcher = watcher or AppWatcher(app)

    @property
    def lock_path(self) -> Path:
        """Return the lock file that lets one process at a time hand items over."""
        return self.paths.data / "delivery.lock"

    def process(self, ids: Iterable[int] | None = None) -> list[DeliveryOutcome]:
        """Hand waiting items (all, or those in `ids`) to the inbox, oldest first."""
        inbox = self.app.inbox
        if inbox is None:
            raise InboxNotConfigured
        wanted = None if ids is None else set(ids)
        # The service, the CLI and the tray may all press *Traiter*: one at a time, so that
        # no file is handed over twice and the inbox only ever receives complete files.
        with exclusive_lock(self.lock_path):
            # First what a crash left half-done: its temporary file must still be there to
            # tell whether the copy reached the inbox.
            unresolved = self._recover_handovers()
            for folder in (inbox, self.paths.trash):
                remove_orphan_temps(folder)
            outcomes = self._process_in_order(inbox, wanted, unresolved)
        if wanted is not None:
            outcomes += [DeliveryOutcome(known, Result.NOT_WAITING)
                         for item_id in wanted - {o.item.id for o in outcomes}
                         if (known := self.queue.get(item_id)) is not None]
        return outcomes

    def _process_in_order(self, inbox: Path, wanted: set[int] | None,
                          unresolved: set[int]) -> list[DeliveryOutcome]:
        running: bool | None = None  # asked once, and only if an étalon update is there
        blocked: set[str] = set()
        outcomes = []
        for item in self.queue.pending():
            dossier = item.dossier or ""
            if wanted is not None and item.id not in wanted:
                # A dossier's updates are integrated in order: one left waiting holds back
                # the later ones.
                blocked.add(dossier)
                continue
            if (dossier in blocked or item.id in unresolved
                    or self._inbox_holds_another(inbox, item)):
                blocked.add(dossier)
                outcomes.append(DeliveryOutcome(item, Result.HELD))
                continue
            if item.etalon:
                running = self.watcher.is_running() if running is None else running
                if running:
                    self.queue.set_restart_required(item.id, True)
                    blocked.add(dossier)
                    outcomes.append(DeliveryOutcome(item, Result.RESTART_REQUIRED))
                    continue
            outcome = self._deliver(item, inbox)
            if outcome.result is Result.ALTERED:
                blocked.add(dossier)
            outcomes.append(outcome)
        return outcomes

    @staticmethod
    def _inbox_holds_another(inbox: Path, item: Item) -> bool:
        """Tell whether the inbox still holds a different file under this item's name.

        Two updates generated at the same local time in different time zones share a
        name: the second waits until the application has taken the first.
        """
        try:
            fd = open_quietly(inbox / item.name)  # a link there is not ours: never followed
        except FileNotFoundError:
            return False
        except OSError:
            return True
        with os.fdopen(fd, "rb") as held:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return True
            return hashlib.file_digest(held, "sha256").hexdigest() != item.sha256

    def _deliver(self, item: Item, inbox: Path) -> DeliveryOutcome:
        source = self.queue.spool_path(item)
        try:
            # What the application gets is checked against what was verified while it is
            # copied: a spool file changed or replaced since never reaches the inbox.
            atomic_copy(source, inbox / item.name,
                        created=lambda temp: self.queue.begin_handover(item.id, temp),
                        sha256=item.sha256, follow_links=False)
        except CopyRefused as refused:
            self.queue.finish_handover(item.id, delivered=False)
            log.warning(_("%s not handed over: its copy in the queue is not the verified "
                          "file (%s)"), item.name, refused.why)
            return DeliveryOutcome(item, Result.ALTERED)
        except BaseException:
            self.queue.finish_handover(item.id, delivered=False)
            raise
        done = self._mark_delivered(item, inbox)
        return DeliveryOutcome(item if done is None else done,
                               Result.NOT_WAITING if done is None else Result.DELIVERED)

    def _mark_delivered(self, item: Item, inbox: Path, **detail: object) -> Item | None:
        """The inbox has the file: keep our copy in the trash, then record the delivery."""
        source = self.queue.spool_path(item)
        # The application has its copy; ours goes to the trash for a while, just in case.
        # It is put there before the state changes so that no crash can lose it.
        kept = self._keep_in_trash(source, item)
        done = self.queue.finish_handover(item.id, delivered=True, name=item.name,
                                          inbox=str(inbox), **detail)
        self._forget(kept if done is None else source)
        return done

    def _recover_handovers(self) -> set[int]:
        """Finish the hand-overs a crash interrupted, so that none is ever made twice.

        The temporary file is created, and recorded, before the copy begins, and only the
        rename into the inbox makes it go. Still there: the copy never reached the inbox;
        it is removed and the item waits as before. Gone: the inbox got the file (the
        application may even have taken it already), so the item is delivered. Returns
        the items that cannot be settled now (their inbox folder is missing, a share not
        mounted): they are neither handed over nor deleted until it is back.
        """
        unresolved = set()
        for item_id, temp in self.queue.handovers():
            item = self.queue.get(item_id)
            if item is None or item.state is not State.WAITING:
                self.queue.finish_handover(item_id, delivered=False)
            elif not temp.parent.is_dir():
                unresolved.add(item_id)
            elif temp.exists():
                temp.unlink()
                fsync_dir(temp.parent)
                self.queue.finish_handover(item_id, delivered=False)
            else:
                self._mark_delivered(item, temp.parent, recovered=True)
        return unresolved

    def delete(self, item_id: int) -> Item | None:
        """*Supprimer*: take a waiting item out of the queue into the trash."""
        with exclusive_lock(self.lock_path):
            if item_id in self._recover_handovers():
                return None
            item = self.queue.get(item_id)
            if item is None or item.state is not State.WAITING:
                return None
            source = self.queue.spool_path(item)
            kept = self._keep_in_trash(source, item)
            done = self.queue.transition(item.id, [State.WAITING], State.DELETED, "deleted",
                                         name=item.name)
            self._forget(source if done is not None else kept)
        return done

    def _keep_in_trash(self, source: Path, item: Item) -> Path | None:
        """Put a copy of the spool file in the trash; return it (None when there is none)."""
        if not source.exists():
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        target = self.paths.trash / f"{stamp}-{item.id}-{item.name}"
        durable_link(source, target)
        os.utime(target)  # the 30 days count from now, not from when it was received
        return target

    @staticmethod
    def _forget(path: Path | None) -> None:
        """Remove one name of a file, durably."""
        if path is not None:
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)

    def purge_trash(self, days: int = TRASH_DAYS, now: float | None = None) -> list[Path]:
        """Remove trash files older than `days`; return what was removed."""
        limit = (time.time() if now is None else now) - days * 86400
        removed = []
        if self.paths.trash.is_dir():
            for path in self.paths.trash.iterdir():
                if path.is_file() and path.stat().st_mtime < limit:
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed


def remove_orphan_temps(folder: Path) -> list[Path]:
    """Remove temporary files that a process which has ended left in `folder`."""
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and is_orphan_temp(path):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
