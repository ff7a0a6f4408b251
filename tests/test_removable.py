"""USB keys on a real FAT file system (mkfs.vfat + fusefat) mounted under a media folder."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from daemon import events as ev
from daemon import i18n
from daemon.config import Config
from daemon.context import Context
from daemon.naming import Kind
from daemon.queue import Item, State
from daemon.removable import RemovableSource, describe_batch
from daemon.removable.volumes import Volume
from tests.fat import FatImage, FatImages, wait_until
from tests.helpers import BASE_DATE, Home

E = TypeVar("E", bound=ev.Event)


class Harness:
    """A removable source on a home, with every event it publishes recorded."""

    def __init__(self, ctx: Context, media: Path, config: Config | None = None) -> None:
        self.ctx = ctx
        self.events: list[ev.Event] = []
        self._lock = threading.Lock()
        self.handlers: list[object] = []
        ctx.bus.subscribe("test", self._record)
        self.source = RemovableSource(config or ctx.config, ctx.paths, ctx.intake, ctx.bus,
                                      media_roots=[media], settle_s=0.05)

    def _record(self, event: ev.Event) -> None:
        with self._lock:
            self.events.append(event)
        for handler in list(self.handlers):
            assert callable(handler)
            handler(event)

    def of(self, kind: type[E], origin: str | None = None) -> list[E]:
        with self._lock:
            found = [e for e in self.events if isinstance(e, kind)]
        return [e for e in found if origin is None or getattr(e, "origin", None) == origin
                or getattr(e, "source", None) == origin]

    def wait_for(self, kind: type[E], count: int = 1, origin: str | None = None,
                 timeout: float = 15.0) -> list[E]:
        wait_until(lambda: len(self.of(kind, origin)) >= count, timeout,
                   f"{count} {kind.__name__} from {origin}")
        return self.of(kind, origin)

    def close(self) -> None:
        self.source.stop()
        self.ctx.bus.close()
        self.ctx.queue.close()


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    return folder


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[FatImages]:
    images = FatImages(tmp_path)
    yield images
    images.close()


@pytest.fixture
def harness(home: Home, media: Path) -> Iterator[Harness]:
    running = Harness(home.context(), media)
    yield running
    running.close()


def all_items(ctx: Context) -> list[Item]:
    return ctx.queue.items(list(State))


def test_a_key_with_two_updates_and_a_foreign_file_gives_one_batch(
        home: Home, harness: Harness, keys: FatImages, media: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    first, second = home.update(1), home.update(2)
    foreign = home.update(1, dossier="9999999")
    key = keys.new("CLE")
    # FAT keeps names as written; the application writes the extension in capitals.
    key.fill({first.name.upper(): first, f"Echanges/{second.name}": second,
              foreign.name: foreign, "notes.txt": b"liste des courses"}, tmp_path)
    caplog.set_level(logging.INFO)
    harness.source.start()
    key.mount(media / "CLE")

    batch = harness.wait_for(ev.BatchFinished)[0]
    harness.wait_for(ev.PollFinished)
    assert batch.origin == "usb:CLE"
    assert batch.queued == (first.name, second.name)  # canonical names, oldest first
    assert batch.rejected == ()
    assert batch.duplicates == 0
    queued = harness.of(ev.UpdateQueued)
    assert [e.name for e in queued] == [first.name, second.name]
    assert {e.origin for e in queued} == {"usb:CLE"}
    assert [i.name for i in harness.ctx.queue.pending()] == [first.name, second.name]
    assert harness.of(ev.UpdateRejected) == []
    assert len(harness.of(ev.BatchFinished)) == 1
    assert any(foreign.name in r.getMessage() and "9999999" in r.getMessage()
               for r in caplog.records), "the other dossier's file is listed in the log"
    i18n.setup("en")
    assert describe_batch(batch) == "USB key CLE: 2 updates imported"
    key.unmount()  # not lazily: fails if a handle on the key were still open


def test_fat_names_in_any_case_and_two_second_timestamps(
        home: Home, harness: Harness, keys: FatImages, media: Path) -> None:
    first = home.update(1, store=True)
    # Same name (same dossier and date), other content, same size: only the tail tells.
    again = home.update(2, when=BASE_DATE + timedelta(minutes=1), store=True,
                        out=home.root / "again")
    assert again.name == first.name
    assert again.stat().st_size == first.stat().st_size
    key = keys.new("CLE")
    root = key.mount(media / "CLE", writable=True)
    upper = root / first.name.upper().replace(".WWZ", ".Wwz")
    upper.write_bytes(first.read_bytes())
    odd_second = 1_600_000_001
    os.utime(upper, (odd_second, odd_second))
    assert os.stat(upper).st_mtime == odd_second - 1  # FAT: 2-second resolution
    harness.source.start()

    harness.wait_for(ev.BatchFinished)
    assert [i.name for i in harness.ctx.queue.pending()] == [first.name]

    # Rewritten in place within the same 2-second slot: size and mtime are unchanged.
    with open(root / first.name, "r+b") as handle:  # FAT finds it whatever the case
        handle.write(again.read_bytes())
    os.utime(upper, (odd_second, odd_second))
    assert (os.stat(upper).st_size, os.stat(upper).st_mtime) == (first.stat().st_size,
                                                                 odd_second - 1)
    harness.source.poll_now()
    harness.wait_for(ev.BatchFinished, 2)
    assert [i.sequence for i in harness.ctx.queue.pending()] == [1, 2]

    harness.source.poll_now()  # nothing changed since: nothing is read again
    time.sleep(0.3)
    assert len(harness.of(ev.BatchFinished)) == 2


def test_autorun_and_programs_on_a_key_are_left_alone(
        home: Home, harness: Harness, keys: FatImages, media: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    i18n.setup("en")  # the log lines are read below
    marker = tmp_path / "ran"
    script = f"#!/bin/sh\ntouch {marker}\n".encode()
    evil = keys.new("PIEGE")
    evil.fill({
        "autorun.inf": b"[autorun]\r\nopen=lanceur.sh\r\nshellexecute=lanceur.sh\r\n",
        "lanceur.sh": script,
        "SETUP.EXE": b"MZ" + script,
        "Comptabilite.lnk": b"L\x00\x00\x00" + script,
        "passeur.desktop": f"[Desktop Entry]\nType=Application\nExec=touch {marker}\n".encode(),
        "8502182-20201027171147.wwz/lanceur.sh": script,  # a folder with an update's name
    }, tmp_path)
    before = evil.digest()
    caplog.set_level(logging.INFO)
    harness.source.start()
    evil.mount(media / "PIEGE", writable=True)  # writable: any change would show
    # A second key inserted afterwards: once it is done, the first one was looked at.
    good = keys.new("CLE")
    update = home.update(1)
    good.fill({update.name: update}, tmp_path)
    good.mount(media / "CLE")

    harness.wait_for(ev.BatchFinished, origin="usb:CLE")
    assert any("PIEGE" in r.getMessage() and "mounted" in r.getMessage()
               for r in caplog.records)
    assert [e for e in harness.events if "PIEGE" in repr(e)] == []  # silent
    assert [i.origin for i in all_items(harness.ctx)] == ["usb:CLE"]
    assert not marker.exists()
    evil.unmount()
    assert evil.digest() == before  # nothing on the key was modified


def test_a_key_pulled_out_mid_copy_leaves_nothing_and_is_taken_when_back(
        home: Home, harness: Harness, keys: FatImages, media: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    i18n.setup("en")  # the log lines are read below
    caplog.set_level(logging.INFO)
    big = home.update(1, store=True, contents={
        "associated_documents/releve.pdf": os.urandom(40 << 20), "ecritures.xml": b"<e/>"})
    key = keys.new("CLE", size_kib=64 * 1024)
    key.fill({big.name: big}, tmp_path)
    pulled = threading.Event()
    outcome: list[object] = []

    def pull_out() -> None:
        try:
            result = subprocess.run(["fusermount", "-u", "-z", str(media / "CLE")],
                                    capture_output=True, text=True, timeout=10)
            outcome.extend([result.returncode == 0, result.stderr])
        finally:
            pulled.set()

    # The copy asks whether the key is still there between chunks: the key is pulled out
    # right at the second question, in the copying thread itself, so that the pull always
    # lands mid-copy however fast the machine copies (an event handler could come late).
    real_is_present = Volume.is_present
    questions = 0

    def is_present(volume: Volume) -> bool:
        nonlocal questions
        questions += 1
        if questions == 2 and not pulled.is_set():
            pull_out()
        return real_is_present(volume)

    monkeypatch.setattr(Volume, "is_present", is_present)
    harness.source.start()
    key.mount(media / "CLE")
    wait_until(pulled.is_set, what="the copy to start")
    assert outcome[0], outcome  # the unmount worked
    key.wait_gone()  # fusefat ends once the source has closed its handle
    # The copy stopped at the next chunk, not at the end of the file. The source says so
    # right after it closed the file, which may be just after fusefat ended.
    wait_until(lambda: any("interrupted" in r.getMessage() for r in caplog.records),
               what="the copy to say it was interrupted")
    messages = [r.getMessage() for r in caplog.records]
    interrupted = next(i for i, m in enumerate(messages) if "interrupted" in m)

    progress = harness.of(ev.DownloadProgress)
    assert progress
    assert progress[0].received < big.stat().st_size
    staging = harness.ctx.paths.staging
    assert list(staging.iterdir()) == []
    assert harness.of(ev.UpdateRejected) == []
    # On some runs the kernel shows the lazily unmounted key once more before it goes (the
    # source logs it as mounted again): taking it then is right. Otherwise nothing of the
    # interrupted copy may be in the queue or the spool.
    if not any("mounted at" in m for m in messages[interrupted:]):
        assert all_items(harness.ctx) == []
        assert [p for p in harness.ctx.paths.spool.rglob("*") if p.is_file()] == []
        assert harness.of(ev.BatchFinished) == []
        key.mount(media / "CLE")  # put back in
        batch = harness.wait_for(ev.BatchFinished)[0]
        assert batch.queued == (big.name,)
    # Either way: taken exactly once, complete, nothing left in staging.
    assert [i.name for i in all_items(harness.ctx)] == [big.name]
    assert list(staging.iterdir()) == []


def test_a_key_with_nothing_for_us_is_silent(
        home: Home, harness: Harness, keys: FatImages, media: Path, tmp_path: Path) -> None:
    sent = home.update(1, kind=Kind.DOSSIER)  # the farmer's own .wvz sent earlier
    other = home.update(1, dossier="1234567")
    quiet = keys.new("VIDE")
    quiet.fill({sent.name: sent, other.name: other, "photo.jpg": b"\xff\xd8"}, tmp_path)
    harness.source.start()
    quiet.mount(media / "VIDE")
    good = keys.new("CLE")
    update = home.update(2)
    good.fill({update.name: update}, tmp_path)
    good.mount(media / "CLE")
    harness.wait_for(ev.BatchFinished, origin="usb:CLE")
    assert [e for e in harness.events if "VIDE" in repr(e)] == []


def test_keys_already_plugged_in_at_start_are_taken(
        home: Home, harness: Harness, keys: FatImages, media: Path, tmp_path: Path) -> None:
    update = home.update(1)
    key = keys.new("CLE")
    key.fill({update.name: update}, tmp_path)
    key.mount(media / "CLE")
    harness.source.start()
    batch = harness.wait_for(ev.BatchFinished)[0]
    assert batch.queued == (update.name,)
    harness.source.stop()
    assert not [t for t in threading.enumerate() if t.name == "removable"]


def test_removable_drives_can_be_switched_off(home: Home, media: Path, keys: FatImages,
                                               tmp_path: Path) -> None:
    ctx = home.context()
    running = Harness(ctx, media, config=dataclasses.replace(ctx.config, removable=False))
    try:
        update = home.update(1)
        key = keys.new("CLE")
        key.fill({update.name: update}, tmp_path)
        fds = len(os.listdir("/proc/self/fd"))
        running.source.start()
        key.mount(media / "CLE")
        time.sleep(0.3)
        assert not [t for t in threading.enumerate() if t.name == "removable"]
        assert len(os.listdir("/proc/self/fd")) == fds
        assert all_items(ctx) == []
        assert running.events == []
    finally:
        running.close()


def test_batch_wording_counts_each_kind_with_its_plural() -> None:
    i18n.setup("en")
    batch = ev.BatchFinished("usb:CLE (E:)", ("a.wwz", "b.wwz"), ("c.wwz",))
    assert describe_batch(batch) == "USB key CLE (E:): 2 updates imported, 1 refused"
    assert describe_batch(ev.BatchFinished("usb:CLE", ("a.wwz",))) == (
        "USB key CLE: 1 update imported")
    assert describe_batch(ev.BatchFinished("usb:CLE", (), ("a.wwz",))) == (
        "USB key CLE: 1 update refused")
    assert describe_batch(ev.BatchFinished("folder:/home/x/Téléchargements", (), (), 2)) == (
        "Folder /home/x/Téléchargements: 2 updates already received")
    assert describe_batch(ev.BatchFinished("web", ("a.wwz",))) == (
        "Accountant's site: 1 update imported")


def test_fat_image_tools_fail_loudly_when_missing(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"tests/run\.sh.*dosfstools"):
        FatImage(tmp_path / "x.img")


def test_stopping_mid_copy_leaves_nothing_half_written(
        home: Home, harness: Harness, keys: FatImages, media: Path, tmp_path: Path) -> None:
    big = home.update(1, store=True, contents={"situations/bilan.xlsx": os.urandom(40 << 20)})
    key = keys.new("CLE", size_kib=64 * 1024)
    key.fill({big.name: big}, tmp_path)
    copying = threading.Event()

    def note_copying(event: ev.Event) -> None:
        if isinstance(event, ev.DownloadProgress):
            copying.set()

    harness.handlers.append(note_copying)
    harness.source.start()
    key.mount(media / "CLE")
    wait_until(copying.is_set, what="the copy to start")
    harness.source.stop()
    assert not [t for t in threading.enumerate() if t.name == "removable"]
    assert all_items(harness.ctx) == []
    assert list(harness.ctx.paths.staging.iterdir()) == []
    key.unmount()  # and the key is free
