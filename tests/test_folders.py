"""Watched folders on the real file system, with watchdog's real inotify events."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from daemon import events as ev
from daemon.context import Context
from daemon.folders import SEEN_FILE, FolderWatcher
from daemon.keys import SigningKey
from daemon.queue import State
from tests.fat import wait_until
from tests.helpers import Home

E = TypeVar("E", bound=ev.Event)
SETTLE_S = 0.2


class Watching:
    """A folder watcher on a home, with its events recorded."""

    def __init__(self, ctx: Context, folders: tuple[Path, ...]) -> None:
        self.ctx = ctx
        self.events: list[ev.Event] = []
        ctx.bus.subscribe("test", self.events.append)
        self.watcher = FolderWatcher(ctx.config, ctx.paths, ctx.intake, ctx.bus,
                                     folders=folders, settle_s=SETTLE_S)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in list(self.events) if isinstance(e, kind)]

    def wait_for(self, kind: type[E], count: int = 1) -> list[E]:
        wait_until(lambda: len(self.of(kind)) >= count, 15.0, f"{count} {kind.__name__}")
        return self.of(kind)

    def close(self) -> None:
        self.watcher.stop()
        self.ctx.bus.close()
        self.ctx.queue.close()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "Téléchargements"
    folder.mkdir()
    return folder


@pytest.fixture
def watching(home: Home, downloads: Path) -> Iterator[Watching]:
    running = Watching(home.context(), (downloads,))
    yield running
    running.close()


def test_a_file_written_slowly_is_taken_once_and_only_when_complete(
        home: Home, watching: Watching, downloads: Path) -> None:
    update = home.update(1, store=True, contents={"ecritures.xml": os.urandom(400_000)})
    data = update.read_bytes()
    watching.watcher.start()
    target = downloads / update.name
    pieces = 4
    step = len(data) // pieces + 1
    with open(target, "wb") as out:
        for start in range(0, len(data), step):
            out.write(data[start:start + step])
            out.flush()
            if start + step < len(data):
                time.sleep(SETTLE_S * 2.5)  # long enough for the watcher to look at it
                assert watching.ctx.queue.items(list(State)) == [], "taken while incomplete"
    batch = watching.wait_for(ev.BatchFinished)[0]
    assert batch.queued == (update.name,)
    assert batch.origin == f"folder:{downloads}"
    time.sleep(SETTLE_S * 3)  # the last events (close) must not import it again
    items = watching.ctx.queue.items(list(State))
    assert [(i.name, i.state) for i in items] == [(update.name, State.WAITING)]
    assert len(watching.of(ev.BatchFinished)) == 1
    assert watching.of(ev.UpdateRejected) == []


def test_a_file_already_taken_is_not_read_again_after_a_restart(
        home: Home, watching: Watching, downloads: Path) -> None:
    first = home.update(1, out=downloads)
    watching.watcher.start()
    watching.wait_for(ev.BatchFinished)
    watching.close()
    seen = json.loads((home.root / "data" / SEEN_FILE).read_text())
    assert list(seen) == [str(first)]

    again = Watching(home.context(), (downloads,))
    try:
        again.watcher.start()
        second = home.update(2, out=downloads)
        batches = again.wait_for(ev.BatchFinished)
        time.sleep(SETTLE_S * 3)
        assert [(b.queued, b.duplicates) for b in again.of(ev.BatchFinished)] == [
            ((second.name,), 0)], "the first file was offered again"
        assert batches
    finally:
        again.close()


def test_a_download_renamed_into_place_with_a_copy_suffix_is_taken(
        home: Home, watching: Watching, downloads: Path) -> None:
    update = home.update(1)
    watching.watcher.start()
    partial = downloads / f"{update.name}.part"
    partial.write_bytes(update.read_bytes())
    os.rename(partial, downloads / update.name.replace(".wwz", " (1).wwz"))
    batch = watching.wait_for(ev.BatchFinished)[0]
    assert batch.queued == (update.name,)


def test_a_refused_file_is_refused_once(home: Home, watching: Watching,
                                        downloads: Path) -> None:
    forged = home.update(1, key=SigningKey.generate(), out=downloads)
    watching.watcher.start()
    rejected = watching.wait_for(ev.UpdateRejected)[0]
    assert rejected.name == forged.name
    assert rejected.code == "key-unknown"
    watching.watcher.poll_now()
    good = home.update(2, out=downloads)
    watching.wait_for(ev.UpdateQueued)
    time.sleep(SETTLE_S * 2)
    assert len(watching.of(ev.UpdateRejected)) == 1
    assert [i.name for i in watching.ctx.queue.pending()] == [good.name]


def test_other_dossiers_and_other_files_are_left_alone(
        home: Home, watching: Watching, downloads: Path) -> None:
    home.update(1, dossier="1234567", out=downloads)
    (downloads / "facture.pdf").write_bytes(b"%PDF")
    watching.watcher.start()
    good = home.update(2, out=downloads)
    watching.wait_for(ev.BatchFinished)
    time.sleep(SETTLE_S * 2)
    assert [b.queued for b in watching.of(ev.BatchFinished)] == [(good.name,)]
    assert all(p.exists() for p in downloads.iterdir())


def test_stop_ends_every_thread(home: Home, downloads: Path, tmp_path: Path) -> None:
    before = set(threading.enumerate())
    second = tmp_path / "Bureau"
    second.mkdir()
    running = Watching(home.context(), (downloads, second, tmp_path / "absent"))
    try:
        running.watcher.start()
        assert len(set(threading.enumerate()) - before) >= 2  # our thread and watchdog's
        update = home.update(1, out=second)
        assert running.wait_for(ev.BatchFinished)[0].origin == f"folder:{second}"
        assert update.exists()
        running.watcher.stop()
        alive = {t for t in set(threading.enumerate()) - before if not t.name.startswith("bus-")}
        assert alive == set()
    finally:
        running.close()


def test_no_folder_means_no_thread(home: Home) -> None:
    before = set(threading.enumerate())
    running = Watching(home.context(), ())
    try:
        running.watcher.start()
        assert {t for t in set(threading.enumerate()) - before
                if not t.name.startswith("bus-")} == set()
    finally:
        running.close()
