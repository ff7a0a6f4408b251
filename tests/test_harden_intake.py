"""What is offered is looked at before it is read: its type, its size, its name; a complete
file that is not an exchange file is refused once, by every way in."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from daemon import events as ev
from daemon.bus import EventBus
from daemon.folders import FolderWatcher
from daemon.intake import Batch
from daemon.naming import parse_offered_name
from daemon.queue import Outcome, State
from daemon.removable.handover import Handover, Offer
from tests.fat import wait_until
from tests.helpers import Home

SETTLE_S = 0.2
QUIET_S = 0.5


def _names_fit(folder: Path) -> bool:
    return all(len(os.fsencode(path.name)) <= 255 for path in folder.iterdir())


def test_a_255_byte_name_is_refused_as_a_bad_name_without_a_traceback(
        home: Home, tmp_path: Path) -> None:
    ctx = home.context()
    offered = tmp_path / ("8" * 251 + ".wwz")
    offered.write_bytes(home.update(1).read_bytes())
    result = ctx.intake.import_path(offered, "manual")
    assert result.outcome is Outcome.REJECTED
    assert result.rejection is not None
    assert result.rejection.code == "bad-name"
    # The quarantine keeps the copy and its note under names the file system can hold.
    assert len(list(ctx.paths.quarantine.iterdir())) == 2
    assert _names_fit(ctx.paths.quarantine)
    assert list(ctx.paths.staging.iterdir()) == []


def test_the_cli_says_a_255_byte_name_is_refused(home: Home, tmp_path: Path) -> None:
    offered = tmp_path / ("é" * 118 + "-20201027172100.wwz")  # 255 bytes in UTF-8
    assert len(os.fsencode(offered.name)) == 255
    offered.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    done = home.passeur("import", str(offered))
    assert "Traceback" not in done.stderr + done.stdout
    assert "refusé" in done.stdout + done.stderr


def test_a_browser_s_copy_suffix_is_one_rule_for_every_way_in(home: Home,
                                                               tmp_path: Path) -> None:
    update = home.update(1)
    copy = tmp_path / update.name.replace(".wwz", " (1).wwz")
    shutil.copy(update, copy)
    assert parse_offered_name(copy.name).canonical == update.name
    done = home.passeur("import", str(copy))
    assert done.returncode == 0, done.stdout + done.stderr
    ctx = home.context()
    # Recorded (and later handed over) under its canonical name.
    assert [item.name for item in ctx.queue.pending()] == [update.name]


def test_a_complete_file_that_is_not_an_exchange_is_refused_once_by_a_key(
        home: Home, tmp_path: Path) -> None:
    ctx = home.context()
    events: list[ev.Event] = []
    ctx.bus.subscribe("test", events.append)
    on_key = tmp_path / home.update(1).name
    on_key.write_bytes(b"this is a letter, not an update\n" * 100)
    handover = Handover(ctx.intake, ctx.bus, quiet_s=QUIET_S)
    name = parse_offered_name(on_key.name)
    seen: dict[str, object] = {}
    batch = Batch("usb:CLE")
    # Just written: it may still be being copied onto the key.
    assert handover.offer(on_key, name, "usb:CLE", batch, seen,  # type: ignore[arg-type]
                          lambda: True) is Offer.INCOMPLETE
    time.sleep(QUIET_S * 1.5)
    assert handover.offer(on_key, name, "usb:CLE", batch, seen,  # type: ignore[arg-type]
                          lambda: True) is Offer.TAKEN
    assert batch.rejected == [on_key.name]
    assert handover.offer(on_key, name, "usb:CLE", batch, seen,  # type: ignore[arg-type]
                          lambda: True) is Offer.SEEN
    ctx.bus.close()
    rejected = [e for e in events if isinstance(e, ev.UpdateRejected)]
    assert [e.code for e in rejected] == ["not-zip"]


def test_a_complete_damaged_file_in_a_watched_folder_is_reported_once(
        home: Home, tmp_path: Path) -> None:
    downloads = tmp_path / "Téléchargements"
    downloads.mkdir()
    ctx = home.context()
    events: list[ev.Event] = []
    ctx.bus.subscribe("test", events.append)
    watcher = FolderWatcher(ctx.config, ctx.paths, ctx.intake, ctx.bus, folders=(downloads,),
                            settle_s=SETTLE_S)
    watcher.handover.quiet_s = QUIET_S
    update = home.update(1).read_bytes()
    try:
        watcher.start()
        (downloads / home.update(2).name).write_bytes(update[: len(update) // 2])
        wait_until(lambda: any(isinstance(e, ev.UpdateRejected) for e in events), 15.0,
                   "the refusal of the damaged file")
        watcher.poll_now()
        time.sleep(QUIET_S * 3)
    finally:
        watcher.stop()
        ctx.bus.close()
    rejected = [e for e in events if isinstance(e, ev.UpdateRejected)]
    assert [e.code for e in rejected] == ["truncated"]
    assert [i.state for i in ctx.queue.items(list(State))] == [State.REJECTED]
    ctx.queue.close()


def test_a_fifo_or_a_link_to_a_device_in_a_watched_folder_is_never_read(
        home: Home, tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    folder.mkdir()
    fifo = folder / home.update(1).name
    os.mkfifo(fifo)
    zero = folder / home.update(2).name
    zero.symlink_to("/dev/zero")
    ctx = home.context()
    handover = Handover(ctx.intake, EventBus(), quiet_s=0)
    for path in (fifo, zero):
        offer = handover.offer(path, parse_offered_name(path.name), "folder:dl",
                               Batch("folder:dl"), {}, lambda: True)
        assert offer is Offer.VANISHED
    assert list(ctx.paths.staging.iterdir()) == [] if ctx.paths.staging.exists() else True


def test_what_passeur_keeps_of_an_offered_file_is_private(home: Home, tmp_path: Path) -> None:
    ctx = home.context()
    good = home.update(1)
    bad = tmp_path / home.update(2).name
    bad.write_bytes(b"not an update")
    os.chmod(good, 0o644)
    os.chmod(bad, 0o644)
    ctx.intake.import_path(good, "manual")
    ctx.intake.import_path(bad, "manual")
    kept = [ctx.queue.spool_path(ctx.queue.pending()[0]), *ctx.paths.quarantine.iterdir()]
    assert len(kept) == 3  # the spool copy, the quarantine copy and its note
    assert {oct(path.stat().st_mode & 0o777) for path in kept} == {"0o600"}


def test_the_next_cli_import_removes_what_a_killed_import_left(home: Home) -> None:
    import subprocess
    import sys

    staging = home.context().paths.staging
    staging.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = staging / f".8502182-20201027172100.wwz.{child.pid}.0badcafe.part"
    dead.write_bytes(b"\0" * 4096)
    resumable = staging / "resume-web-8502182-8502182-20201027172100.wwz.part"
    resumable.write_bytes(b"half a download")
    done = home.passeur("import", str(home.update(1)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in staging.iterdir()) == [resumable.name]
