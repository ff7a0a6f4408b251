"""The polling thread: a poll at start, on demand, on schedule and after back-off; asleep in
between; stopped promptly even in the middle of a download."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.events import PollStarted, SourceFailed, UpdateQueued
from daemon.web.index import INDEX_NAME
from daemon.web.publish import Repository
from tests.faultserver import FAST, Fault, FaultServer, Rig, configure_web, make_rig
from tests.helpers import Home


@pytest.fixture
def served(home: Home, tmp_path: Path) -> Iterator[tuple[Repository, FaultServer]]:
    repo = Repository(tmp_path / "repo", home.key)
    repo.root.mkdir(parents=True)
    server = FaultServer(repo.root).start()
    configure_web(home, server.base_url, poll_minutes=1)
    yield repo, server
    server.stop()


@pytest.fixture
def rig(home: Home, served: tuple[Repository, FaultServer]) -> Iterator[Rig]:
    built = make_rig(home)
    yield built
    built.close()


def test_polls_at_start_then_on_demand_then_sleeps(home: Home, rig: Rig,
                                                   served: tuple[Repository, FaultServer]
                                                   ) -> None:
    repo, _server = served
    repo.publish(home.update(1))
    rig.poller.start()
    rig.events.wait_for(UpdateQueued)
    time.sleep(0.3)
    assert len(rig.events.of(PollStarted)) == 1
    # Next scheduled poll: poll_minutes (1) plus schedule's jitter of up to 10 %.
    next_in = rig.poller.next_poll_in
    assert next_in is not None
    assert 55 <= next_in <= 66
    update = home.update(2)
    repo.publish(update)
    rig.poller.poll_now()
    queued = rig.events.wait_for(UpdateQueued, 2)
    assert queued[-1].name == update.name
    assert len(rig.events.of(PollStarted)) == 2


def test_failures_are_retried_after_a_growing_backoff(home: Home, rig: Rig,
                                                      served: tuple[Repository, FaultServer]
                                                      ) -> None:
    repo, server = served
    repo.publish(home.update(1))
    server.inject(INDEX_NAME, Fault("status", status=500, times=3))
    started = time.monotonic()
    rig.poller.start()
    rig.events.wait_for(UpdateQueued, timeout=10)
    # Three failures, then success, all by itself: 0.05 + 0.1 + 0.2 s of back-off (±20 %).
    assert time.monotonic() - started >= 0.28
    assert len(rig.events.of(PollStarted)) == 4
    assert len(rig.events.of(SourceFailed)) == 1
    assert rig.poller.next_poll_in is not None
    assert rig.poller.next_poll_in > 50


def test_retry_after_schedules_the_next_poll(home: Home, rig: Rig,
                                             served: tuple[Repository, FaultServer]) -> None:
    repo, server = served
    repo.publish(home.update(1))
    server.inject(INDEX_NAME, Fault("status", status=503, headers={"Retry-After": "2"}))
    rig.poller.start()
    rig.events.wait_for(SourceFailed)
    time.sleep(0.1)
    next_in = rig.poller.next_poll_in
    assert next_in is not None
    assert 1.0 < next_in <= 2.0


def test_stop_interrupts_a_download_and_keeps_the_part(home: Home,
                                                       served: tuple[Repository, FaultServer]
                                                       ) -> None:
    repo, server = served
    update = home.update(1, store=True, contents={"ecritures.xml": os.urandom(200_000)})
    repo.publish(update)
    server.inject(update.name, Fault("slow", chunk=4096, interval=0.05))
    rig = make_rig(home, settings=dataclasses.replace(FAST, deadline_base=60.0))
    reached = threading.Event()

    def note_progress(_name: str, sent: int) -> None:
        if sent >= 40_000:
            reached.set()

    server.on_chunk = note_progress
    rig.poller.start()
    assert reached.wait(10)
    started = time.monotonic()
    rig.poller.stop()
    assert time.monotonic() - started < FAST.read_timeout + 1.0
    rig.bus.close()
    parts = [p for p in home.context().paths.staging.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 1
    assert parts[0].stat().st_size > 0
    assert rig.events.of(SourceFailed) == []  # stopping is not a failure
    # The next service run resumes it.
    again = make_rig(home)
    try:
        report = again.poll()
    finally:
        again.close()
    assert report.queued == [update.name]
    assert "Range" in server.requests_for(update.name)[-1].headers


def test_no_endpoint_no_thread(home: Home) -> None:
    rig = make_rig(home)
    rig.poller.start()
    rig.poller.poll_now()
    assert rig.poller.next_poll_in is None
    assert not any(t.name == "web-poller" for t in threading.enumerate())
    rig.close()
