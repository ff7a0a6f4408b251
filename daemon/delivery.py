"""*Traiter* and *Supprimer*: hand queued updates to the application's inbox, or to the trash."""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from daemon.app import AppWatcher
from daemon.config import AppConfig, Paths
from daemon.fsutil import atomic_copy, durable_move
from daemon.queue import Item, Queue, State

TRASH_DAYS = 30


class Result(enum.StrEnum):
    """What *Traiter* did with one item."""

    DELIVERED = "delivered"
    RESTART_REQUIRED = "restart-required"  # an étalon update while the application runs
    HELD = "held"  # waits behind an earlier update of the same dossier
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

    def process(self, ids: Iterable[int] | None = None) -> list[DeliveryOutcome]:
        """Hand waiting items (all, or those in `ids`) to the inbox, oldest first."""
        if self.app.inbox is None:
            raise InboxNotConfigured
        wanted = None if ids is None else set(ids)
        running: bool | None = None  # asked once, and only if an étalon update is there
        blocked: set[str] = set()
        outcomes = []
        for item in self.queue.pending():
            if wanted is not None and item.id not in wanted:
                continue
            dossier = item.dossier or ""
            if dossier in blocked:
                outcomes.append(DeliveryOutcome(item, Result.HELD))
                continue
            if item.etalon:
                running = self.watcher.is_running() if running is None else running
                if running:
                    self.queue.set_restart_required(item.id, True)
                    blocked.add(dossier)
                    outcomes.append(DeliveryOutcome(item, Result.RESTART_REQUIRED))
                    continue
            outcomes.append(self._deliver(item, self.app.inbox))
        if wanted is not None:
            outcomes += [DeliveryOutcome(known, Result.NOT_WAITING)
                         for item_id in wanted - {o.item.id for o in outcomes}
                         if (known := self.queue.get(item_id)) is not None]
        return outcomes

    def _deliver(self, item: Item, inbox: Path) -> DeliveryOutcome:
        source = self.queue.spool_path(item)
        atomic_copy(source, inbox / item.name)
        done = self.queue.transition(item.id, [State.WAITING], State.DELIVERED, "delivered",
                                     name=item.name, inbox=str(inbox))
        if done is None:
            return DeliveryOutcome(item, Result.NOT_WAITING)
        # The application has its copy; ours goes to the trash for a while, just in case.
        self._to_trash(source, item)
        return DeliveryOutcome(done, Result.DELIVERED)

    def delete(self, item_id: int) -> Item | None:
        """*Supprimer*: take a waiting item out of the queue into the trash."""
        item = self.queue.get(item_id)
        if item is None or item.state is not State.WAITING:
            return None
        done = self.queue.transition(item.id, [State.WAITING], State.DELETED, "deleted",
                                     name=item.name)
        if done is not None:
            self._to_trash(self.queue.spool_path(item), item)
        return done

    def _to_trash(self, source: Path, item: Item) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if source.exists():
            target = self.paths.trash / f"{stamp}-{item.id}-{item.name}"
            durable_move(source, target)
            os.utime(target)  # the 30 days count from now, not from when it was received

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
