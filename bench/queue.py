"""The durable queue at 10,000 waiting items: listing, and one durable enqueue.

Run from the repository root: `python -m bench.queue [--quick] [--repeat N]` (run as a
module: started as a script, this file would hide the standard library's `queue`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import daemon.queue
from bench.common import (
    Row,
    common_arguments,
    finish,
    fmt_ms,
    fmt_ratio,
    median,
    print_table,
    scratch,
    timed,
)
from daemon.config import Paths
from daemon.exchange import Source, pack_exchange, verify_exchange
from daemon.fsutil import atomic_copy, fsync_dir, sha256_file
from daemon.keys import SigningKey
from daemon.manifest import Manifest
from daemon.naming import Kind
from daemon.queue import ITEM_COLUMNS, LINE_COLUMNS, Outcome, Queue, State

ITEMS = 10_000
DOSSIERS = 10
LISTING_TARGET = 0.050
ENQUEUE_TARGET = 0.010
START = datetime(2020, 1, 6, 9, 0, 0, tzinfo=timezone(timedelta(hours=1)))


def small_update(folder: Path) -> tuple[Path, Manifest]:
    """Pack and verify a small real update (three members, a few tens of kB)."""
    key = SigningKey.generate()
    contents = {
        "ecritures.xml": b"".join(b'<e n="%d" c="411000" m="%d.00"/>\n' % (n, n * 7)
                                  for n in range(600)),
        "vat_declaration/tva.xml": b"<tva periode='2020-09' montant='1234.56'/>\n",
        "associated_documents/facture-0042.pdf": os.urandom(24 << 10),
    }
    sources = []
    for inner, data in contents.items():
        path = folder / inner.replace("/", "_")
        path.write_bytes(data)
        sources.append(Source(inner, path))
    manifest = Manifest(
        kind=Kind.UPDATE, dossier="8502100", dossier_name="GAEC LE GUYON", generated_at=START,
        fiscal_year_start=date(2020, 1, 1), fiscal_year_end=date(2020, 12, 31), sequence=1,
        key_id="", files=(), etalon=False,
        modules={"vat_declaration": ("vat_declaration/tva.xml",),
                 "associated_documents": ("associated_documents/facture-0042.pdf",)},
    )
    packed = pack_exchange(folder, key, manifest, sources)
    return packed, verify_exchange(packed, {key.public.key_id: key.public}, packed.name)


def manifest_for(base: Manifest, index: int) -> Manifest:
    """The `index`-th update: dossiers in turn, sequences rising, a minute apart."""
    return replace(base, dossier=f"85021{index % DOSSIERS:02d}", sequence=index // DOSSIERS + 1,
                   generated_at=START + timedelta(minutes=index))


def _plain_move(src: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, final)


@contextlib.contextmanager
def durability_off(queue: Queue) -> Iterator[None]:
    """Fill the queue through `enqueue` itself, minus the fsyncs: filling is not measured."""
    # The queue module looks durable_move up at call time, so swapping it is enough.
    durable_move = daemon.queue.durable_move  # type: ignore[attr-defined]
    daemon.queue.durable_move = _plain_move  # type: ignore[attr-defined]
    queue._db.execute("PRAGMA synchronous=OFF")
    try:
        yield
    finally:
        daemon.queue.durable_move = durable_move  # type: ignore[attr-defined]
        queue._db.execute("PRAGMA synchronous=FULL")
    if queue._db.execute("PRAGMA synchronous").fetchone()[0] != 2:
        raise SystemExit("the queue did not return to synchronous=FULL")


def fill(queue: Queue, staging: Path, packed: Path, base: Manifest, count: int) -> None:
    """Enqueue `count` updates (copies of one small file) as waiting items."""
    data, sha256 = packed.read_bytes(), sha256_file(packed)
    with durability_off(queue):
        for index in range(count):
            staged = staging / f"fill-{index}.part"
            staged.write_bytes(data)
            outcome, _ = queue.enqueue(staged, manifest_for(base, index), sha256, len(data),
                                       "bench")
            if outcome is not Outcome.QUEUED:
                raise SystemExit(f"item {index}: {outcome}")


class BareReferences:
    """What a durable enqueue cannot go below on this disk: one commit and one rename."""

    def __init__(self, folder: Path, row_text: str) -> None:
        self.source, self.target = folder / "from", folder / "to"
        self.source.mkdir()
        self.target.mkdir()
        self.row_text = row_text
        self.counter = 0
        self.db = sqlite3.connect(folder / "bare.sqlite3", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, body TEXT)")

    def insert_commit(self) -> None:
        """Insert one row and commit it, as durably as the queue does."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO t (name, body) VALUES (?, ?)", ("x.wwz", self.row_text))
        self.db.execute("COMMIT")

    def stage_file(self) -> Path:
        """Create a flushed file to rename (not timed)."""
        self.counter += 1
        path = self.source / f"{self.counter}.part"
        with open(path, "wb") as out:
            out.write(b"x" * 4096)
            out.flush()
            os.fsync(out.fileno())
        return path

    def fsynced_rename(self, path: Path) -> None:
        """Rename into another folder and flush both folders (what durable_move does)."""
        os.replace(path, self.target / path.name)
        fsync_dir(self.target)
        fsync_dir(self.source)

    def close(self) -> None:
        """Close the reference database."""
        self.db.close()


def bare_select(database: Path, columns: str) -> None:
    """The same query as the queue's, rows left as tuples: the floor for listing."""
    db = sqlite3.connect(database)
    try:
        db.execute(
            f"SELECT {columns} FROM items WHERE state IN ('waiting')"
            " ORDER BY generated_at, sequence, id").fetchall()
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    """Run the queue benchmark and print its table."""
    parser = common_arguments(__doc__ or "")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    repeat = args.repeat or (10 if args.quick else 30)
    with scratch("queue") as folder:
        sample_dir = folder / "sample"
        sample_dir.mkdir()
        packed, base = small_update(sample_dir)
        paths = Paths.resolve(folder / "home")
        paths.ensure()
        queue = Queue(paths.database, paths.spool)
        fill(queue, paths.staging, packed, base, ITEMS)
        listing, floor, full, full_floor = [], [], [], []
        for _ in range(repeat):
            floor.append(timed(lambda: bare_select(paths.database, LINE_COLUMNS)))
            listing.append(timed(lambda: queue.listing((State.WAITING,))))
            full_floor.append(timed(lambda: bare_select(paths.database, ITEM_COLUMNS)))
            full.append(timed(queue.pending))
        if len(queue.listing()) != ITEMS or len(queue.pending()) != ITEMS:
            raise SystemExit("the queue does not hold the expected items")
        references = BareReferences(folder, base.to_json().decode())
        staged = []
        for index in range(repeat):
            path = paths.staging / f"measured-{index}.part"
            atomic_copy(packed, path)  # flushed, as intake leaves its staged copies
            staged.append(path)
        sha256, size = sha256_file(packed), packed.stat().st_size
        commits, renames, enqueues = [], [], []
        for index, path in enumerate(staged):
            commits.append(timed(references.insert_commit))
            renamed = references.stage_file()
            renames.append(timed(lambda: references.fsynced_rename(renamed)))  # noqa: B023
            manifest = manifest_for(base, ITEMS + index)
            enqueues.append(timed(
                lambda: queue.enqueue(path, manifest, sha256, size, "bench")))  # noqa: B023
        references.close()
        queue.close()
    listing_s, select_s = median(listing), median(floor)
    pending_s, full_select_s = median(full), median(full_floor)
    enqueue_s, commit_s, rename_s = median(enqueues), median(commits), median(renames)
    rows = [
        Row(f"list {ITEMS:,} waiting items (listing())", fmt_ms(listing_s),
            f"bare SELECT {fmt_ms(select_s)}", fmt_ratio(select_s / listing_s),
            f"< {fmt_ms(LISTING_TARGET)}", listing_s < LISTING_TARGET),
        Row("  full items, for delivery (pending())", fmt_ms(pending_s),
            f"bare SELECT {fmt_ms(full_select_s)}", fmt_ratio(full_select_s / pending_s)),
        Row(f"durable enqueue (queue of {ITEMS:,})", fmt_ms(enqueue_s),
            f"commit + rename {fmt_ms(commit_s + rename_s)}",
            fmt_ratio((commit_s + rename_s) / enqueue_s),
            f"< {fmt_ms(ENQUEUE_TARGET)}", enqueue_s < ENQUEUE_TARGET),
        Row("  reference: sqlite3 insert+commit, WAL, synchronous=FULL", fmt_ms(commit_s)),
        Row("  reference: rename + fsync of both folders", fmt_ms(rename_s)),
        Row("  durable enqueue, slowest", fmt_ms(max(enqueues))),
    ]
    print_table(f"queue (median of {repeat}; ratio = reference time / measured time)", rows)
    return finish("bench.queue", rows, "quick" if args.quick else "")


if __name__ == "__main__":
    sys.exit(main())
