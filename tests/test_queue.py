"""The durable queue on a real SQLite file and spool: states, order, exactly-once, recovery."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon import config_edit
from daemon.errors import Code
from daemon.fsutil import sha256_file, temp_name
from daemon.intake import IntakeResult
from daemon.queue import RESUMABLE_PREFIX, SCHEMA_VERSION, Outcome, Queue, State
from tests.helpers import DOSSIER, Home

OTHER_DOSSIER = "8502183"
UTC_ZONE = UTC
PARIS = timezone(timedelta(hours=1))
MONTREAL = timezone(timedelta(hours=-5))


def import_file(home: Home, path: Path) -> IntakeResult:
    """Import one file through the real intake of a fresh composition root."""
    return home.context().intake.import_path(path, "manual")


def open_queue(home: Home) -> Queue:
    """Open the home's queue database directly."""
    paths = home.context().paths
    paths.ensure()
    return Queue(paths.database, paths.spool)


def spool_files(queue: Queue) -> set[str]:
    """Return every file under the spool (staging included), relative to it."""
    return {p.relative_to(queue.spool).as_posix() for p in queue.spool.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- states and transitions


def test_an_update_waits_then_is_delivered_with_its_history(home: Home) -> None:
    update = home.update()
    result = import_file(home, update)
    assert result.outcome is Outcome.QUEUED
    ctx = home.context()
    item = ctx.queue.get(result.item.id if result.item else -1)
    assert item is not None
    assert item.state is State.WAITING
    assert (item.dossier, item.sequence, item.name) == (DOSSIER, 1, update.name)
    assert item.sha256 == sha256_file(update)
    assert item.size == update.stat().st_size
    assert ctx.queue.spool_path(item).read_bytes() == update.read_bytes()
    assert ctx.queue.count_pending() == 1

    delivered = ctx.queue.transition(item.id, [State.WAITING], State.DELIVERED, "delivered")
    assert delivered is not None
    assert delivered.state is State.DELIVERED
    assert ctx.queue.pending() == []
    actions = [(h.item_id, h.action) for h in reversed(ctx.queue.history())]
    assert actions == [(item.id, "received"), (item.id, "delivered")]


def test_a_transition_from_a_state_not_allowed_changes_nothing(home: Home) -> None:
    result = import_file(home, home.update())
    assert result.item is not None
    queue = home.context().queue
    item_id = result.item.id
    assert queue.transition(item_id, [State.WAITING], State.DELETED, "deleted") is not None
    # Deleted is final: neither delivery nor a second deletion applies any more.
    assert queue.transition(item_id, [State.WAITING], State.DELIVERED, "delivered") is None
    assert queue.transition(item_id, [State.WAITING], State.DELETED, "deleted") is None
    item = queue.get(item_id)
    assert item is not None
    assert item.state is State.DELETED
    assert [h.action for h in queue.history()] == ["deleted", "received"]


def test_restart_required_is_set_once_and_cleared_by_the_next_transition(home: Home) -> None:
    result = import_file(home, home.update(etalon=True))
    assert result.item is not None
    assert result.item.etalon
    queue = home.context().queue
    queue.set_restart_required(result.item.id, True)
    queue.set_restart_required(result.item.id, True)
    item = queue.get(result.item.id)
    assert item is not None
    assert item.restart_required
    assert item.state is State.WAITING
    assert [h.action for h in queue.history()].count("restart_required") == 1
    done = queue.transition(item.id, [State.WAITING], State.DELIVERED, "delivered")
    assert done is not None
    assert not done.restart_required


def test_a_refused_file_is_recorded_as_rejected_and_quarantined(home: Home) -> None:
    update = home.update()
    tampered = home.root / "tampered" / update.name
    tampered.parent.mkdir()
    data = bytearray(update.read_bytes())
    data[len(data) // 3] ^= 0xFF
    tampered.write_bytes(bytes(data))

    result = import_file(home, tampered)
    assert result.outcome is Outcome.REJECTED
    assert result.rejection is not None
    ctx = home.context()
    [item] = ctx.queue.items([State.REJECTED])
    assert item.reason_code == str(result.rejection.code)
    assert item.spool_name is not None
    assert (ctx.paths.quarantine / item.spool_name).read_bytes() == bytes(data)
    assert (ctx.paths.quarantine / (item.spool_name + ".reason.json")).is_file()
    assert ctx.queue.pending() == []
    assert tampered.read_bytes() == bytes(data), "the original is never modified"
    # A refusal does not use up the sequence: the genuine file is still accepted.
    assert import_file(home, update).outcome is Outcome.QUEUED


def test_a_name_and_origin_that_are_not_utf8_are_recorded_readably(home: Home) -> None:
    key = home.root / "key"
    key.mkdir()
    raw = os.fsencode(key) + b"/8502182-2020\xe9.wwz"  # written with another code page
    with open(raw, "wb") as out:
        out.write(b"junk")
    origin = "usb:" + os.fsdecode(b"/media/CL\xc9")
    result = home.context().intake.import_path(Path(os.fsdecode(raw)), origin)
    assert result.rejection is not None
    assert result.rejection.code is Code.BAD_NAME
    [item] = home.context().queue.items([State.REJECTED])
    assert item.name == "8502182-2020\ufffd.wwz"
    assert item.origin == "usb:/media/CL\ufffd"
    json.dumps(result.to_json(), ensure_ascii=False).encode("utf-8")  # no lone surrogate


# ---------------------------------------------------------------- order


def test_order_follows_the_generation_instant_across_time_zones(home: Home) -> None:
    config_edit.add_dossier(home.root / "config.toml", OTHER_DOSSIER, "EARL DES TESTS")
    # Local clock strings sort the other way round from the real instants.
    first = home.update(1, when=datetime(2020, 10, 27, 17, 0, tzinfo=PARIS))  # 16:00 UTC
    second = home.update(2, when=datetime(2020, 10, 27, 16, 30, tzinfo=UTC_ZONE))
    third = home.update(3, when=datetime(2020, 10, 27, 12, 0, tzinfo=MONTREAL))  # 17:00 UTC
    other = home.update(1, dossier=OTHER_DOSSIER,
                        when=datetime(2020, 10, 27, 11, 45, tzinfo=MONTREAL))  # 16:45 UTC
    for update in (first, second, third, other):
        assert import_file(home, update).outcome is Outcome.QUEUED
    names = [item.name for item in home.context().queue.pending()]
    assert names == [first.name, second.name, other.name, third.name]


def test_updates_generated_at_the_same_instant_are_ordered_by_sequence(home: Home) -> None:
    # The same instant written in two time zones: two names, one instant.
    one = home.update(1, when=datetime(2020, 10, 27, 17, 0, tzinfo=PARIS))
    two = home.update(2, when=datetime(2020, 10, 27, 16, 0, tzinfo=UTC_ZONE))
    assert one.name != two.name
    for update in (one, two):
        assert import_file(home, update).outcome is Outcome.QUEUED
    assert [i.sequence for i in home.context().queue.pending()] == [1, 2]


def test_listing_with_other_states_keeps_the_order_and_puts_refusals_last(home: Home) -> None:
    updates = [home.update() for _ in range(3)]
    ids = []
    for update in updates:
        result = import_file(home, update)
        assert result.item is not None
        ids.append(result.item.id)
    queue = home.context().queue
    queue.transition(ids[1], [State.WAITING], State.DELIVERED, "delivered")
    late = home.update(1, contents={"ecritures.xml": b"<late/>"}, out=home.root / "late")
    assert import_file(home, late).outcome is Outcome.REJECTED  # a rollback
    listed = queue.items(list(State))
    assert [i.id for i in listed[:3]] == ids
    assert listed[3].state is State.REJECTED
    assert [i.id for i in queue.pending()] == [ids[0], ids[2]]


def test_the_short_listing_says_what_the_items_say(home: Home) -> None:
    for update in (home.update(), home.update(etalon=True)):
        assert import_file(home, update).outcome is Outcome.QUEUED
    late = home.update(1, contents={"ecritures.xml": b"<late/>"}, out=home.root / "late")
    assert import_file(home, late).outcome is Outcome.REJECTED
    queue = home.context().queue
    for states in ([State.WAITING], list(State)):
        items, lines = queue.items(states), queue.listing(states)
        assert [(i.id, i.state, i.name, i.generated_at or i.received_at, i.etalon,
                 i.restart_required) for i in items] == [tuple(line) for line in lines]
    assert [line.etalon for line in queue.listing()] == [False, True]
    assert queue.listing([State.REJECTED])[0].created  # no generation date: received


# ---------------------------------------------------------------- exactly once


def test_the_same_file_twice_is_one_item(home: Home) -> None:
    update = home.update()
    first = import_file(home, update)
    copy = home.root / "usb" / update.name
    copy.parent.mkdir()
    copy.write_bytes(update.read_bytes())
    again = import_file(home, copy)
    assert again.outcome is Outcome.DUPLICATE
    assert first.item is not None
    assert again.item is not None
    assert again.item.id == first.item.id
    queue = home.context().queue
    assert len(queue.items(list(State))) == 1
    assert [h.action for h in queue.history()] == ["received"]
    assert spool_files(queue) == {first.item.spool_name}


@pytest.mark.parametrize("final", [State.DELIVERED, State.DELETED])
def test_a_duplicate_stays_a_no_op_after_delivery_or_deletion(home: Home, final: State) -> None:
    update = home.update()
    first = import_file(home, update)
    assert first.item is not None
    queue = home.context().queue
    assert queue.transition(first.item.id, [State.WAITING], final, str(final)) is not None
    again = import_file(home, update)
    assert again.outcome is Outcome.DUPLICATE
    assert again.item is not None
    assert again.item.id == first.item.id
    assert queue.pending() == []
    assert len(queue.items(list(State))) == 1


def test_an_older_sequence_is_refused_as_a_rollback(home: Home) -> None:
    older, newer = home.update(1), home.update(2)
    assert import_file(home, newer).outcome is Outcome.QUEUED
    result = import_file(home, older)
    assert result.outcome is Outcome.REJECTED
    assert result.rejection is not None
    assert result.rejection.code is Code.ROLLBACK
    queue = home.context().queue
    assert queue.last_sequence(DOSSIER) == 2
    assert [i.sequence for i in queue.pending()] == [2]
    [refused] = queue.items([State.REJECTED])
    assert refused.reason_code == "rollback"
    assert queue.history()[0].action == "rejected"
    assert queue.history()[0].detail["code"] == "rollback"


def test_another_file_with_a_used_sequence_is_refused(home: Home) -> None:
    genuine = home.update(5)
    impostor = home.update(5, contents={"ecritures.xml": b"<ecritures autre='1'/>"},
                           out=home.root / "other")
    assert genuine.name == impostor.name
    assert sha256_file(genuine) != sha256_file(impostor)
    assert import_file(home, genuine).outcome is Outcome.QUEUED
    result = import_file(home, impostor)
    assert result.rejection is not None
    assert result.rejection.code is Code.SEQUENCE_REUSED
    # Even once the genuine one is gone, the number stays used.
    queue = home.context().queue
    [item] = queue.pending()
    queue.transition(item.id, [State.WAITING], State.DELETED, "deleted")
    result = import_file(home, impostor)
    assert result.rejection is not None
    assert result.rejection.code is Code.SEQUENCE_REUSED


def test_sequences_are_counted_per_dossier(home: Home) -> None:
    config_edit.add_dossier(home.root / "config.toml", OTHER_DOSSIER, "EARL DES TESTS")
    assert import_file(home, home.update(7)).outcome is Outcome.QUEUED
    assert import_file(home, home.update(1, dossier=OTHER_DOSSIER)).outcome is Outcome.QUEUED
    queue = home.context().queue
    assert (queue.last_sequence(DOSSIER), queue.last_sequence(OTHER_DOSSIER)) == (7, 1)
    assert queue.last_sequence("999") is None


def test_history_keeps_every_step_with_its_details(home: Home) -> None:
    result = import_file(home, home.update(3, etalon=True))
    assert result.item is not None
    queue = home.context().queue
    queue.log("note", result.item.id, text="bonjour é")
    queue.transition(result.item.id, [State.WAITING], State.DELETED, "deleted", by="test")
    entries = list(reversed(queue.history()))
    assert [e.action for e in entries] == ["received", "note", "deleted"]
    received = entries[0].detail
    assert received == {"name": result.item.name, "origin": "manual", "dossier": DOSSIER,
                        "sequence": 3, "etalon": True}
    assert entries[1].detail == {"text": "bonjour é"}
    assert entries[2].detail == {"by": "test"}
    assert all(datetime.fromisoformat(e.at).tzinfo is not None for e in entries)
    assert [e.action for e in queue.history(limit=1)] == ["deleted"]


def test_a_failed_insert_leaves_neither_a_row_nor_a_spool_file(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_insert(*args: object, **kwargs: object) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    ctx = home.context()
    monkeypatch.setattr(ctx.queue, "_insert_item", broken_insert)
    with pytest.raises(sqlite3.OperationalError):
        ctx.intake.import_path(home.update(), "manual")
    monkeypatch.undo()
    assert spool_files(ctx.queue) == set()
    assert ctx.queue.items(list(State)) == []
    assert ctx.queue.last_sequence(DOSSIER) is None
    # The connection is usable again: the transaction was rolled back.
    assert import_file(home, home.update()).outcome is Outcome.QUEUED


# ---------------------------------------------------------------- recovery and integrity


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_recover_removes_orphans_and_abandoned_staging_files(home: Home) -> None:
    result = import_file(home, home.update())
    assert result.item is not None
    assert result.item.spool_name is not None
    queue = home.context().queue
    staging = home.context().paths.staging
    orphan = queue.spool / DOSSIER / "0123456789abcdef-8502182-20201027172221.wwz"
    orphan.write_bytes(b"left by a crash between the move and the commit")
    live = temp_name(staging / "8502182-20201027172321.wwz")  # named by this live process
    live.write_bytes(b"being written")
    stale = staging / "download.tmp"  # not ours to date by pid: only its age counts
    stale.write_bytes(b"old")
    an_hour_ago = time.time() - 7200
    os.utime(stale, (an_hour_ago, an_hour_ago))
    recent_other = staging / "fresh.tmp"
    recent_other.write_bytes(b"new")
    dead = staging / f".8502182-20201027172421.wwz.{_dead_pid()}.0badf00d.part"
    dead.write_bytes(b"its writer was killed")

    removed = set(queue.recover())

    assert removed == {orphan, stale, dead}
    assert spool_files(queue) == {
        result.item.spool_name,
        live.relative_to(queue.spool).as_posix(),
        recent_other.relative_to(queue.spool).as_posix(),
    }
    assert queue.check_integrity() == []
    # With no age allowance, what is left in staging goes too, never a queued file.
    queue.recover(staging_age_s=-1)
    assert spool_files(queue) == {result.item.spool_name}


def test_recover_keeps_an_interrupted_download_for_a_week(home: Home) -> None:
    queue = home.context().queue
    staging = home.context().paths.staging
    staging.mkdir(parents=True, exist_ok=True)
    resumable = staging / f"{RESUMABLE_PREFIX}web-{DOSSIER}-8502182-20201027172221.wwz.part"
    resumable.write_bytes(b"half of a download")
    note = resumable.with_name(resumable.name + ".json")
    note.write_text("{}")
    two_days_ago = time.time() - 2 * 86400
    for path in (resumable, note):
        os.utime(path, (two_days_ago, two_days_ago))
    assert queue.recover() == []
    eight_days_ago = time.time() - 8 * 86400
    for path in (resumable, note):
        os.utime(path, (eight_days_ago, eight_days_ago))
    assert set(queue.recover()) == {resumable, note}


def test_recover_keeps_nothing_that_a_delivered_or_deleted_item_left(home: Home) -> None:
    results = [import_file(home, home.update()) for _ in range(2)]
    queue = home.context().queue
    items = [r.item for r in results if r.item is not None]
    queue.transition(items[0].id, [State.WAITING], State.DELIVERED, "delivered")
    # The spool copy of a delivered item is no longer needed (delivery moves it to the
    # trash; a crash may leave it): recover() removes it, and keeps the waiting one.
    assert queue.recover() == [queue.spool_path(items[0])]
    assert queue.spool_path(items[1]).is_file()


def test_check_integrity_reports_a_missing_file_and_a_duplicate(home: Home) -> None:
    result = import_file(home, home.update())
    assert result.item is not None
    queue = home.context().queue
    assert queue.check_integrity() == []
    queue.spool_path(result.item).unlink()
    assert queue.check_integrity() == [
        f"missing spool file for item {result.item.id}: {result.item.spool_name}"]
    # A second row for the same dossier and sequence, as a broken writer might leave.
    raw = sqlite3.connect(home.context().paths.database)
    with raw:
        raw.execute(
            "INSERT INTO items (state, name, origin, dossier, sequence, sha256,"
            " received_at, updated_at) SELECT 'delivered', name, origin, dossier, sequence,"
            " 'other', received_at, updated_at FROM items WHERE id = ?", (result.item.id,))
    raw.close()
    problems = queue.check_integrity()
    assert f"duplicate item {DOSSIER}/1" in problems


def test_check_integrity_reports_a_damaged_database(home: Home, tmp_path: Path) -> None:
    queue = open_queue(home)
    for number in range(400):
        queue.log("filler", None, n=number, text="x" * 200)
    queue.close()
    database = home.context().paths.database
    _checkpoint(database)
    # Damage one index page in the middle of the file (pages are 4 KiB).
    raw = sqlite3.connect(database)
    root = raw.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'history_by_item'").fetchone()[0]
    raw.close()
    with open(database, "r+b") as handle:
        handle.seek((root - 1) * 4096 + 200)
        handle.write(b"\xff" * 64)
    damaged = Queue(database, home.context().paths.spool)
    problems = damaged.check_integrity()
    assert problems
    assert problems[0].startswith("sqlite: ")
    damaged.close()


def _checkpoint(database: Path) -> None:
    raw = sqlite3.connect(database)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()


# ---------------------------------------------------------------- schema and sharing


def test_reopening_keeps_the_schema_and_the_items(home: Home) -> None:
    result = import_file(home, home.update())
    assert result.item is not None
    for _ in range(3):
        queue = open_queue(home)
        assert [i.id for i in queue.pending()] == [result.item.id]
        queue.close()
    raw = sqlite3.connect(home.context().paths.database)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = sorted(r[0] for r in raw.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'"))
    assert tables == ["dossiers", "handovers", "history", "items", "manifests"]
    raw.close()


def test_a_queue_of_the_first_schema_is_upgraded_in_place(home: Home) -> None:
    result = import_file(home, home.update())
    assert result.item is not None
    database = home.context().paths.database
    raw = sqlite3.connect(database)
    raw.execute("DROP TABLE handovers")
    raw.execute("PRAGMA user_version=1")
    raw.commit()
    raw.close()
    queue = open_queue(home)
    assert [i.id for i in queue.pending()] == [result.item.id]
    assert queue.handovers() == []
    queue.close()
    raw = sqlite3.connect(database)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    raw.close()


def test_several_queue_objects_share_one_database(home: Home) -> None:
    first, second = open_queue(home), open_queue(home)
    ctx = home.context()
    ctx.__dict__["queue"] = first  # the intake of this root writes through `first`
    result = ctx.intake.import_path(home.update(), "manual")
    assert result.item is not None
    seen = second.get(result.item.id)
    assert seen is not None
    assert seen.state is State.WAITING
    assert second.transition(result.item.id, [State.WAITING], State.DELIVERED, "delivered")
    assert first.transition(result.item.id, [State.WAITING], State.DELETED, "deleted") is None
    now = first.get(result.item.id)
    assert now is not None
    assert now.state is State.DELIVERED
    assert [h.action for h in first.history()] == ["delivered", "received"]


def test_one_queue_object_is_shared_by_threads(home: Home) -> None:
    queue = open_queue(home)
    errors: list[BaseException] = []

    def write_and_read(worker: int) -> None:
        try:
            for number in range(50):
                queue.log("tick", None, worker=worker, n=number)
                queue.items(list(State))
        except BaseException as exc:  # reported below: a thread must not hide a failure
            errors.append(exc)

    threads = [threading.Thread(target=write_and_read, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(queue.history(limit=1000)) == 200


def test_a_writer_waits_for_another_connections_lock_instead_of_failing(home: Home) -> None:
    queue = open_queue(home)
    holder = sqlite3.connect(home.context().paths.database, isolation_level=None,
                             check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release_soon() -> None:
        time.sleep(0.5)
        holder.execute("COMMIT")
        released.set()

    threading.Thread(target=release_soon).start()
    queue.log("after the lock")  # blocks until the other connection commits
    assert released.is_set()
    assert queue.history()[0].action == "after the lock"
    holder.close()
