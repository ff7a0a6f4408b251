"""The durable queue of received updates: SQLite (WAL) plus a spool folder on the local disk.

States: an item enters `waiting` once its file is verified and safe in the spool (the
history records it as `received`); *Traiter* moves it to `delivered`, *Supprimer* to
`deleted`; a refused file is recorded as `rejected`. See docs/queue.md.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from daemon.errors import Code, Rejected
from daemon.fsutil import durable_move, is_orphan_temp
from daemon.manifest import Manifest

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL
        CHECK (state IN ('received', 'waiting', 'delivered', 'deleted', 'rejected')),
    name TEXT NOT NULL,
    origin TEXT NOT NULL,
    dossier TEXT,
    sequence INTEGER,
    sha256 TEXT,
    size INTEGER,
    generated_at TEXT,
    etalon INTEGER NOT NULL DEFAULT 0,
    restart_required INTEGER NOT NULL DEFAULT 0,
    spool_name TEXT,
    reason_code TEXT,
    reason_detail TEXT,
    received_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS items_identity
    ON items (dossier, sequence, sha256) WHERE state != 'rejected';
CREATE INDEX IF NOT EXISTS items_by_state ON items (state, generated_at, sequence, id);
CREATE TABLE IF NOT EXISTS manifests (
    item_id INTEGER PRIMARY KEY REFERENCES items (id),
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dossiers (
    number TEXT PRIMARY KEY,
    last_sequence INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    item_id INTEGER,
    action TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS history_by_item ON history (item_id);
CREATE TABLE IF NOT EXISTS handovers (
    item_id INTEGER PRIMARY KEY REFERENCES items (id),
    temp TEXT NOT NULL,
    started_at TEXT NOT NULL
);
"""


class State(enum.StrEnum):
    """Where an item stands."""

    RECEIVED = "received"
    WAITING = "waiting"
    DELIVERED = "delivered"
    DELETED = "deleted"
    REJECTED = "rejected"


class Outcome(enum.StrEnum):
    """What happened to a file offered to the queue."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


# Interrupted downloads are kept under this prefix in the staging folder so that the next
# run resumes them (HTTP Range) instead of starting over; they expire after a week.
RESUMABLE_PREFIX = "resume-"
RESUMABLE_AGE_S = 7 * 86400.0


def _abandoned(path: Path, seconds: float) -> bool:
    """Tell whether a staging file is no longer being written by anyone."""
    if path.name.startswith(RESUMABLE_PREFIX):
        return _older_than(path, RESUMABLE_AGE_S)
    return is_orphan_temp(path) or _older_than(path, seconds)


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """Put the database in WAL mode, waiting for a process that is doing the same.

    The switch takes an exclusive lock without going through the busy timeout, so two
    processes opening a new queue at the same moment would otherwise see "database is
    locked".
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def now_utc() -> str:
    """Return the current time as stored in the database."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# The columns of `items` in the order of Item's fields.
ITEM_COLUMNS = (
    "id, state, name, origin, dossier, sequence, sha256, size, generated_at, etalon,"
    " restart_required, spool_name, reason_code, reason_detail, received_at,"
    " updated_at"
)


def _select_item(db: sqlite3.Connection, item_id: int | None) -> Any:
    return db.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ?",  # noqa: S608
                      (item_id,)).fetchone()


_STATES = {str(state): state for state in State}


class Item(NamedTuple):
    """One row of the queue (a tuple: listing thousands of them must stay cheap)."""

    id: int
    state: State
    name: str
    origin: str
    dossier: str | None
    sequence: int | None
    sha256: str | None
    size: int | None
    generated_at: str | None
    etalon: bool
    restart_required: bool
    spool_name: str | None
    reason_code: str | None
    reason_detail: str | None
    received_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Item:
        """Build an item from a row selected with ITEM_COLUMNS."""
        return cls(row[0], _STATES[row[1]], row[2], row[3], row[4], row[5], row[6], row[7],
                   row[8], row[9] == 1, row[10] == 1, row[11], row[12], row[13], row[14],
                   row[15])

    def to_json(self) -> dict[str, Any]:
        """Return the item as documented for `passeur queue --json`."""
        return {
            "id": self.id,
            "state": str(self.state),
            "name": self.name,
            "origin": self.origin,
            "dossier": self.dossier,
            "sequence": self.sequence,
            "sha256": self.sha256,
            "size": self.size,
            "generated_at": self.generated_at,
            "etalon": self.etalon,
            "restart_required": self.restart_required,
            "received_at": self.received_at,
            "updated_at": self.updated_at,
            "reason_code": self.reason_code,
            "reason": self.reason_detail,
        }


# The columns of `items` in the order of Line's fields.
LINE_COLUMNS = ("id, state, name, COALESCE(generated_at, received_at), etalon,"
                " restart_required")


class Line(NamedTuple):
    """One line of a list shown to the user: what the list needs and no more.

    Listing ten thousand full items costs twice as much, the time being spent making Python
    objects of columns such a list never shows.
    """

    id: int
    state: State
    name: str
    created: str  # when the file was made, or received when that is unknown
    etalon: bool
    restart_required: bool


@dataclass(frozen=True)
class HistoryEntry:
    """One line of the activity log."""

    id: int
    at: str
    item_id: int | None
    action: str
    detail: dict[str, Any]


class Queue:
    """The queue database; safe to share between threads and between processes."""

    def __init__(self, database: Path, spool: Path) -> None:
        self.spool = spool
        database.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            database, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        _switch_to_wal(self._db)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._write() as db:
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                # executescript() would commit on its own; keep the upgrade in our transaction.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so two processes never both read
        # then both try to upgrade (the classic cause of "database is locked").
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT: a transaction left open would refuse every
                # later BEGIN on this connection.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _log(self, db: sqlite3.Connection, item_id: int | None, action: str,
             **detail: Any) -> None:
        db.execute(
            "INSERT INTO history (at, item_id, action, detail) VALUES (?, ?, ?, ?)",
            (now_utc(), item_id, action, json.dumps(detail, ensure_ascii=False)),
        )

    def enqueue(self, staged: Path, manifest: Manifest, sha256: str, size: int,
                origin: str) -> tuple[Outcome, Item]:
        """Move a verified file from staging into the spool and record it, exactly once.

        Returns DUPLICATE with the existing item when this very file is already known;
        raises Rejected for a rollback. The staged file is consumed on QUEUED only.
        """
        name = f"{manifest.dossier}-{manifest.generated_at.strftime('%Y%m%d%H%M%S')}." + (
            manifest.kind.extension)
        spool_name = f"{manifest.dossier}/{sha256[:16]}-{name}"
        with self._write() as db:
            existing = db.execute(
                f"SELECT {ITEM_COLUMNS} FROM items"  # noqa: S608
                " WHERE dossier = ? AND sequence = ? AND sha256 = ?"
                " AND state != 'rejected'", (manifest.dossier, manifest.sequence, sha256),
            ).fetchone()
            if existing is not None:
                return Outcome.DUPLICATE, Item.from_row(existing)
            self._check_sequence(db, manifest)
            target = self.spool / spool_name
            durable_move(staged, target)
            try:
                item_id = self._insert_item(db, manifest, name, spool_name, sha256, size,
                                            origin)
            except BaseException:
                # The row is rolled back: take the file out again rather than leave an orphan.
                target.unlink(missing_ok=True)
                raise
            row = _select_item(db, item_id)
        return Outcome.QUEUED, Item.from_row(row)

    def _insert_item(self, db: sqlite3.Connection, manifest: Manifest, name: str,
                     spool_name: str, sha256: str, size: int, origin: str) -> int | None:
        """Record a newly spooled file as waiting, raise the dossier's sequence, log it."""
        stamp = now_utc()
        cursor = db.execute(
            "INSERT INTO items (state, name, origin, dossier, sequence, sha256, size,"
            " generated_at, etalon, spool_name, received_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (State.WAITING, name, origin, manifest.dossier, manifest.sequence, sha256,
             size, manifest.generated_at.astimezone(UTC).isoformat(), manifest.etalon,
             spool_name, stamp, stamp),
        )
        item_id = cursor.lastrowid
        # Kept apart so that listing thousands of items never reads their manifests.
        db.execute("INSERT INTO manifests (item_id, body) VALUES (?, ?)",
                   (item_id, manifest.to_json().decode()))
        db.execute(
            "INSERT INTO dossiers (number, last_sequence) VALUES (?, ?)"
            " ON CONFLICT (number) DO UPDATE SET last_sequence = excluded.last_sequence",
            (manifest.dossier, manifest.sequence),
        )
        self._log(db, item_id, "received", name=name, origin=origin,
                  dossier=manifest.dossier, sequence=manifest.sequence,
                  etalon=manifest.etalon)
        return item_id

    @staticmethod
    def _check_sequence(db: sqlite3.Connection, manifest: Manifest) -> None:
        row = db.execute("SELECT last_sequence FROM dossiers WHERE number = ?",
                         (manifest.dossier,)).fetchone()
        if row is None:
            return
        last = row[0]
        if manifest.sequence < last:
            raise Rejected(Code.ROLLBACK, f"n° {manifest.sequence} < n° {last}")
        if manifest.sequence == last:
            raise Rejected(Code.SEQUENCE_REUSED, f"n° {manifest.sequence}")

    def record_rejection(self, name: str, origin: str, rejection: Rejected,
                         sha256: str | None = None, quarantined: str | None = None) -> Item:
        """Record a refused file (kept in quarantine) for the activity log."""
        stamp = now_utc()
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO items (state, name, origin, sha256, spool_name, reason_code,"
                " reason_detail, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (State.REJECTED, name, origin, sha256, quarantined, str(rejection.code),
                 rejection.detail, stamp, stamp),
            )
            self._log(db, cursor.lastrowid, "rejected", name=name, origin=origin,
                      code=str(rejection.code), detail=rejection.detail)
            row = _select_item(db, cursor.lastrowid)
        return Item.from_row(row)

    def transition(self, item_id: int, allowed: Iterable[State], new: State, action: str,
                   **detail: Any) -> Item | None:
        """Move an item to `new` if it is in one of the `allowed` states; None otherwise."""
        with self._write() as db:
            row = self._transition(db, item_id, tuple(allowed), new, action, detail)
        return None if row is None else Item.from_row(row)

    def _transition(self, db: sqlite3.Connection, item_id: int, allowed: tuple[State, ...],
                    new: State, action: str, detail: dict[str, Any]) -> Any:
        cursor = db.execute(
            f"UPDATE items SET state = ?, restart_required = 0, updated_at = ?"  # noqa: S608
            f" WHERE id = ? AND state IN ({','.join('?' * len(allowed))})",
            (new, now_utc(), item_id, *allowed),
        )
        if cursor.rowcount == 0:
            return None
        self._log(db, item_id, action, **detail)
        return _select_item(db, item_id)

    # A hand-over to the application's inbox is recorded from the moment its temporary
    # file exists until the item is marked delivered: after a crash in between, the
    # temporary file tells whether the copy reached the inbox (see Delivery).

    def begin_handover(self, item_id: int, temp: Path) -> None:
        """Record that an item is being copied to the inbox through `temp`."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO handovers (item_id, temp, started_at)"
                       " VALUES (?, ?, ?)", (item_id, str(temp), now_utc()))

    def handovers(self) -> list[tuple[int, Path]]:
        """Return the hand-overs begun and not finished: (item id, temporary file)."""
        with self._lock:
            rows = self._db.execute("SELECT item_id, temp FROM handovers").fetchall()
        return [(item_id, Path(temp)) for item_id, temp in rows]

    def finish_handover(self, item_id: int, delivered: bool, **detail: Any) -> Item | None:
        """End a hand-over; when `delivered`, mark the waiting item delivered at once.

        Returns the delivered item, or None (not delivered, or not waiting any more).
        """
        with self._write() as db:
            db.execute("DELETE FROM handovers WHERE item_id = ?", (item_id,))
            if not delivered:
                return None
            row = self._transition(db, item_id, (State.WAITING,), State.DELIVERED,
                                   "delivered", detail)
        return None if row is None else Item.from_row(row)

    def set_restart_required(self, item_id: int, required: bool) -> None:
        """Flag a waiting item as held until the application restarts."""
        with self._write() as db:
            cursor = db.execute(
                "UPDATE items SET restart_required = ?, updated_at = ?"
                " WHERE id = ? AND restart_required != ?",
                (required, now_utc(), item_id, required),
            )
            if cursor.rowcount and required:
                self._log(db, item_id, "restart_required")

    def log(self, action: str, item_id: int | None = None, **detail: Any) -> None:
        """Add a line to the activity log."""
        with self._write() as db:
            self._log(db, item_id, action, **detail)

    def get(self, item_id: int) -> Item | None:
        """Return one item."""
        with self._lock:
            row = _select_item(self._db, item_id)
        return Item.from_row(row) if row else None

    def manifest(self, item_id: int) -> dict[str, Any] | None:
        """Return the manifest recorded with an item (None for a refused file)."""
        with self._lock:
            row = self._db.execute("SELECT body FROM manifests WHERE item_id = ?",
                                   (item_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def manifest_texts(self, state: State = State.WAITING) -> dict[int, str]:
        """Return the manifests of the items in a state, as recorded (JSON text), by id.

        One query for a whole list; the text is decoded only for the line the user looks at.
        """
        with self._lock:
            return dict(self._db.execute(
                "SELECT item_id, body FROM manifests JOIN items ON items.id = item_id"
                " WHERE state = ?", (state,)).fetchall())

    def items(self, states: Sequence[State] = (State.WAITING,)) -> list[Item]:
        """Return the items in these states, oldest generation first, then by sequence."""
        return [Item.from_row(row) for row in self._select(ITEM_COLUMNS, states)]

    def listing(self, states: Sequence[State] = (State.WAITING,)) -> list[Line]:
        """Return the lines of the list of these states, in the order of `items()`."""
        return [Line(row[0], _STATES[row[1]], row[2], row[3], row[4] == 1, row[5] == 1)
                for row in self._select(LINE_COLUMNS, states)]

    def _select(self, columns: str, states: Sequence[State]) -> list[Any]:
        marks = ",".join("?" * len(states))
        # One state: the order is the index's, no sort. Several: refused items (no
        # generation date) come last.
        order = ("generated_at, sequence, id" if len(states) == 1
                 else "generated_at IS NULL, generated_at, sequence, id")
        with self._lock:
            return self._db.execute(
                f"SELECT {columns} FROM items WHERE state IN ({marks})"  # noqa: S608
                f" ORDER BY {order}", tuple(states),
            ).fetchall()

    def pending(self) -> list[Item]:
        """Return the updates waiting to be integrated, in integration order."""
        return self.items((State.WAITING,))

    def count_pending(self) -> int:
        """Return how many updates wait to be integrated."""
        with self._lock:
            return int(self._db.execute(
                "SELECT count(*) FROM items WHERE state = 'waiting'").fetchone()[0])

    def history(self, limit: int = 100) -> list[HistoryEntry]:
        """Return the most recent activity, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, at, item_id, action, detail FROM history ORDER BY id DESC LIMIT ?",
                (limit,)).fetchall()
        return [HistoryEntry(row_id, at, item_id, action, json.loads(detail))
                for row_id, at, item_id, action, detail in rows]

    def last_sequence(self, dossier: str) -> int | None:
        """Return the highest sequence accepted for a dossier."""
        with self._lock:
            row = self._db.execute("SELECT last_sequence FROM dossiers WHERE number = ?",
                                   (dossier,)).fetchone()
        return None if row is None else int(row[0])

    def spool_path(self, item: Item) -> Path:
        """Return where an item's file lives in the spool."""
        if item.spool_name is None:
            raise ValueError(item.id)
        return self.spool / item.spool_name

    def recover(self, staging_age_s: float = 3600.0) -> list[Path]:
        """Remove leftovers of an interrupted run: spool files no item refers to, and
        staging files whose writer has ended or that were untouched for `staging_age_s`
        (a live import keeps writing its own)."""
        removed = []
        # Holding the write lock keeps out an enqueue that has moved its file into the
        # spool but not yet committed the row that refers to it.
        with self._write() as db:
            known = {row[0] for row in db.execute(
                "SELECT spool_name FROM items WHERE state IN ('received', 'waiting')"
                " AND spool_name IS NOT NULL")}
            for path in sorted(self.spool.rglob("*")):
                relative = path.relative_to(self.spool).as_posix()
                if not path.is_file() or relative in known:
                    continue
                if relative.startswith(".") and not _abandoned(path, staging_age_s):
                    continue
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def check_integrity(self) -> list[str]:
        """Return every inconsistency found (empty when all is well)."""
        try:
            return self._integrity_problems()
        except sqlite3.DatabaseError as exc:
            # A damaged file may fail the check itself: that is the answer, not a crash.
            return [f"sqlite: {exc}"]

    def _integrity_problems(self) -> list[str]:
        with self._lock:
            results = [row[0] for row in self._db.execute("PRAGMA integrity_check")]
            duplicates = self._db.execute(
                "SELECT dossier, sequence, count(*) FROM items WHERE state != 'rejected'"
                " GROUP BY dossier, sequence HAVING count(*) > 1").fetchall()
        problems = [f"sqlite: {result}" for result in results if result != "ok"]
        problems += [f"duplicate item {d}/{s}" for d, s, _ in duplicates]
        for item in self.pending():
            if not self.spool_path(item).is_file():
                problems.append(f"missing spool file for item {item.id}: {item.spool_name}")
        return problems
