"""The local control channel between real processes, and a pause that pauses.

While `passeur run` runs, the CLI acts through it: what the CLI does is done (and
published) by the service, once. Without a service the CLI does the work itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon import events as ev
from daemon.context import Context
from daemon.control.protocol import ProtocolError, decode, encode, event_from_json
from daemon.core import Core
from daemon.keys import SigningKey
from daemon.sources import Source
from tests.helpers import Home
from tests.services import _STARTED, log_text, served_home, start_service, stop, wait_for

HANDED = "remis à l'application"


def status(home: Home, env: dict[str, str] | None = None) -> dict[str, object]:
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "status", "--json"],
                            env=env or home.env, text=True, capture_output=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def test_the_cli_acts_through_the_running_service_and_each_event_is_published_once(
        home: Home) -> None:
    first, second = home.update(1), home.update(2)
    process = start_service(home)
    try:
        imported = home.passeur("import", str(first), str(second))
        assert imported.returncode == 0, imported.stderr
        # The service did the work: its log says what its bus saw (a CLI of its own has no
        # log at all).
        assert wait_for(lambda: log_text(home).count("reçu et mis en attente") == 2), (
            log_text(home))
        now = status(home)
        assert (now["service"], now["waiting"], now["state"]) == (True, 2, "waiting")

        handed = home.passeur("queue", "process", "--all")
        assert handed.returncode == 0, handed.stderr
        assert f"{first.name} : remis à Isacompta" in handed.stdout
        assert wait_for(lambda: log_text(home).count(HANDED) == 2), log_text(home)
        assert (home.inbox / first.name).exists()
        assert (home.inbox / second.name).exists()
        time.sleep(0.5)  # a duplicate would come now
        assert log_text(home).count(HANDED) == 2, "one Delivered per item, no duplicate"
        assert status(home)["waiting"] == 0
    finally:
        assert stop(process)[0] == 0


def test_without_a_service_the_cli_does_the_work_itself(home: Home) -> None:
    update = home.update(1)
    assert home.passeur("import", str(update)).returncode == 0
    now = status(home)
    assert (now["service"], now["waiting"]) == (False, 1)
    assert home.passeur("queue", "process", "--all").returncode == 0
    assert (home.inbox / update.name).exists()


def test_a_socket_left_by_kill_9_is_replaced_at_the_next_start(home: Home) -> None:
    process = start_service(home)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=15)
    assert status(home)["service"] is False, "a dead service is not taken for a live one"
    again = start_service(home)
    try:
        assert status(home)["service"] is True
    finally:
        assert stop(again)[0] == 0


def test_another_user_gets_nothing_from_the_channel(home: Home) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test switches to the user nobody: it runs as root, as CI does")
    from daemon import platform

    endpoint = platform.control_endpoint(Context(home.root).paths.data)
    process = start_service(home)
    try:
        # A process of another user tries to ask for the status, bypassing the CLI.
        probe = subprocess.run([sys.executable, "-c", (
            "import os, socket, sys\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.settimeout(5)\n"
            "try:\n"
            "    s.connect(sys.argv[1])\n"
            "    s.sendall(sys.argv[2].encode() + b'\\n')\n"
            "    print('answer', s.recv(4096))\n"
            "except OSError as exc:\n"
            "    print('refused', type(exc).__name__)\n"
        ), endpoint, encode({"id": 1, "method": "status"}).decode()],
            text=True, capture_output=True, timeout=30, check=False)
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.startswith("refused") or probe.stdout.strip() == "answer b''", (
            probe.stdout)
        assert status(home)["service"] is True, "the service still serves its own user"
    finally:
        assert stop(process)[0] == 0


def test_a_timed_pause_survives_a_restart_and_refuses_receive(home: Home) -> None:
    process = start_service(home)
    try:
        paused = home.passeur("pause", "30")
        assert paused.returncode == 0, paused.stderr
        assert "Réception en pause jusqu'à" in paused.stdout
        until = status(home)["paused_until"]
        assert isinstance(until, float)
        assert 29 * 60 < until - time.time() <= 30 * 60
    finally:
        assert stop(process)[0] == 0
    again = start_service(home)
    try:
        now = status(home)
        assert (now["paused"], now["paused_until"], now["state"]) == (True, until, "paused")
        received = home.passeur("receive")
        assert received.returncode == 1
        assert "passeur resume" in received.stderr
        assert home.passeur("resume").returncode == 0
        assert status(home)["paused"] is False
    finally:
        assert stop(again)[0] == 0


def test_a_pause_makes_no_request_to_the_server_and_resume_looks_at_once(
        home: Home, tmp_path: Path) -> None:
    with served_home(home, tmp_path) as (server, env, key_file):
        update = home.update(1)
        assert home.passeur("publish", "--repo", str(server.repo), "--key", str(key_file),
                            str(update)).returncode == 0
        # Paused before the service starts (the CLI keeps the pause for it).
        assert subprocess.run([sys.executable, "-m", "daemon.cli", "pause"], env=env,
                              capture_output=True, timeout=30, check=False).returncode == 0
        process = start_service(home, env)
        try:
            time.sleep(3)
            assert server.access_log() == [], "no request while paused"
            assert home.passeur("queue").stdout.count(update.name) == 0
            assert subprocess.run([sys.executable, "-m", "daemon.cli", "resume"], env=env,
                                  capture_output=True, timeout=30, check=False).returncode == 0
            assert wait_for(lambda: update.name in home.passeur("queue").stdout, 30)
            assert server.access_log(), "resume looked at the server at once"
        finally:
            assert stop(process)[0] == 0


# ---------------------------------------------------------------- pause, in one process


class CountingSource(Source):
    """A source of the test's own that counts how often it was asked to look."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def start(self) -> None:
        """Nothing to start."""

    def stop(self) -> None:
        """Nothing to stop."""

    def poll_now(self) -> None:
        """Count."""
        self.polls += 1


def test_pause_and_resume_reach_every_source_and_are_published_once(home: Home) -> None:
    ctx = Context(home.root)
    seen: list[ev.Event] = []
    ctx.bus.subscribe("test", seen.append)
    sources = [CountingSource(), CountingSource()]
    core = Core(ctx, sources)
    core.pause(3600)
    assert all(s.paused for s in sources)
    core.pause(3600)
    core.resume()
    assert not any(s.paused for s in sources)
    assert [s.polls for s in sources] == [1, 1], "resume looks at once, once"
    ctx.bus.close()
    changes = [e for e in seen if isinstance(e, ev.PauseChanged)]
    assert [c.paused for c in changes] == [True, True, False]  # the second pause moved its end


def test_a_timed_pause_ends_by_itself(home: Home) -> None:
    clock = [1000.0]
    core = Core(Context(home.root), [CountingSource()], now=lambda: clock[0])
    core.pause(60)
    assert core.seconds_until_pause_ends() == 60
    clock[0] += 61
    assert core.pause_state().paused is False
    assert not core.sources[0].paused


def test_a_key_plugged_in_while_paused_is_imported_at_resume_once(
        home: Home, tmp_path: Path) -> None:
    from daemon.removable import RemovableSource
    from tests.fat import FatImages

    media = tmp_path / "media"
    media.mkdir()
    ctx = Context(home.root)
    seen: list[ev.Event] = []
    ctx.bus.subscribe("test", seen.append)
    source = RemovableSource(ctx.config, ctx.paths, ctx.intake, ctx.bus, media_roots=[media],
                             settle_s=0.05)
    core = Core(ctx, [source])
    images = FatImages(tmp_path)
    update = home.update(1)
    try:
        core.pause()
        source.start()
        key = images.new("CLE")
        key.fill({update.name: update}, tmp_path)
        key.mount(media / "CLE")
        time.sleep(2)
        assert ctx.queue.pending() == [], "nothing imported while paused"
        core.resume()
        assert wait_for(lambda: len(ctx.queue.pending()) == 1)
        time.sleep(1)
        assert [e.name for e in seen if isinstance(e, ev.UpdateQueued)] == [update.name]
        key.unmount()
    finally:
        source.stop()
        images.close()
        ctx.bus.close()


# ---------------------------------------------------------------- sleep and clock


class Clocks:
    """Monotonic, boot and wall clocks the test moves by hand."""

    def __init__(self) -> None:
        self.mono, self.boot, self.wall = 100.0, 100.0, 1_700_000_000.0

    def tick(self, seconds: float) -> None:
        self.mono += seconds
        self.boot += seconds
        self.wall += seconds


def test_a_sleep_and_a_clock_change_each_give_one_look_and_no_storm() -> None:
    from daemon.clock import ClockWatch

    clocks = Clocks()
    links = [frozenset({"eth0"})]
    watch = ClockWatch(lambda: clocks.mono, lambda: clocks.boot, lambda: clocks.wall,
                       lambda: links[0])
    clocks.tick(60)
    assert watch.look() == []
    clocks.boot += 3 * 3600  # asleep for three hours: the monotonic clock stood still
    clocks.wall += 3 * 3600
    clocks.tick(60)
    assert watch.look() == ["woke"]
    clocks.tick(60)
    assert watch.look() == []
    clocks.wall -= 3600  # summer time ends, or a wrong clock is corrected
    clocks.tick(60)
    assert watch.look() == ["clock-changed"]
    for _ in range(5):
        clocks.tick(60)
        assert watch.look() == []
    links[0] = frozenset()
    assert watch.look() == []
    links[0] = frozenset({"wlan0"})
    assert watch.look() == ["network-back"]


def test_the_service_looks_once_after_a_wake_up(home: Home) -> None:
    from daemon.clock import ClockWatch
    from daemon.service import Service

    clocks = Clocks()
    watch = ClockWatch(lambda: clocks.mono, lambda: clocks.boot, lambda: clocks.wall,
                       frozenset)
    source = CountingSource()
    ctx = Context(home.root)
    service = Service(ctx, Core(ctx, [source]), watch)
    thread = threading.Thread(target=service.run)
    thread.start()
    try:
        assert wait_for(lambda: service.control is not None)
        clocks.boot += 7200
        service.wake.set()
        assert wait_for(lambda: source.polls == 1)
        for _ in range(3):
            service.wake.set()
            time.sleep(0.1)
        assert source.polls == 1, "one look, no storm"
    finally:
        service.stop()
        thread.join(15)
    assert not thread.is_alive()


# ---------------------------------------------------------------- the protocol


def test_protocol_lines_round_trip_events_and_refuse_other_versions() -> None:
    event = ev.BatchFinished("usb:CLE", ("a.wwz", "b.wwz"), (), 1, at=5.0)
    line = encode({"id": 1, "event": {"type": "BatchFinished", "origin": "usb:CLE",
                                      "queued": ["a.wwz", "b.wwz"], "rejected": [],
                                      "duplicates": 1, "at": 5.0}})
    assert event_from_json(decode(line)["event"]) == event
    assert event_from_json({"type": "NoSuchEvent"}) is None
    with pytest.raises(ProtocolError):
        decode(b'{"v": 2, "id": 1}')
    with pytest.raises(ProtocolError):
        decode(b"\xff")


def test_a_second_service_on_the_same_home_is_refused_by_the_lock(
        home: Home, signing_key: SigningKey) -> None:
    process = start_service(home)
    try:
        ctx = Context(home.root)
        from daemon.service import AlreadyRunning, build_service

        with pytest.raises(AlreadyRunning):
            build_service(ctx, []).run()
    finally:
        assert stop(process)[0] == 0
    assert not _STARTED or all(p.poll() is not None for p in _STARTED)


def test_the_headless_service_imports_no_gui_library(home: Home) -> None:
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "daemon.cli", "run", "--headless"],
        env=home.env | {"DISPLAY": ":99"}, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    _STARTED.append(process)
    assert wait_for(lambda: "passeur démarré" in log_text(home)), log_text(home)
    code, err = stop(process)
    assert code == 0, err
    imported = {line.split("|")[-1].strip().split(".")[0] for line in err.splitlines()
                if line.startswith("import time:")}
    assert "daemon" in imported, "the import trace was read"
    assert not imported & {"tray", "pystray", "PIL", "tkinter", "gi", "Xlib", "plyer",
                           "desktop_notifier"}
