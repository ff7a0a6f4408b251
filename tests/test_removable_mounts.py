"""The Linux detector against real mounts: tmpfs volumes coming and going, an idle thread that
sleeps in poll() without a timeout, and the ZIP end-record and name rules it relies on."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import events as ev
from daemon.removable.handover import exchange_name, has_zip_end
from daemon.removable.linux import MountInfoMonitor, parse_mountinfo
from tests.fat import wait_until
from tests.helpers import Home
from tests.test_removable import Harness

CYCLES = 50
POLL_SYSCALLS = {"7": 3, "73": 3}  # x86-64 poll (timeout in arg 3), arm64 ppoll (tmo_p)


def mount_tmpfs(target: Path) -> None:
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "passeur-test", str(target)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"mount -t tmpfs failed ({result.stderr.strip()}): these tests need root,"
                    " as tests/run.sh runs them")


def umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True, capture_output=True)


@pytest.fixture
def media(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "media"
    folder.mkdir()
    yield folder
    for child in folder.iterdir():  # a failed test may leave a mount behind
        if os.path.ismount(child):
            subprocess.run(["umount", "-l", str(child)], check=False)


def blocked_in_poll_forever(thread: threading.Thread) -> bool:
    """Tell whether a thread sleeps in poll()/ppoll() with no timeout at all."""
    with open(f"/proc/self/task/{thread.native_id}/syscall", encoding="ascii") as info:
        fields = info.read().split()
    argument = POLL_SYSCALLS.get(fields[0])
    if argument is None:
        return False
    timeout = int(fields[argument], 16)
    if fields[0] == "73":
        return timeout == 0  # a NULL timespec: wait forever
    return timeout in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)  # -1


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def source_thread() -> threading.Thread:
    return next(t for t in threading.enumerate() if t.name == "removable")


def test_tmpfs_volumes_coming_and_going_leak_nothing(home: Home, media: Path,
                                                     tmp_path: Path) -> None:
    update = home.update(1).read_bytes()
    name = home.update(1).name  # same update again: a duplicate after the first time
    harness = Harness(home.context(), media)
    try:
        harness.source.start()
        thread = source_thread()
        wait_until(lambda: blocked_in_poll_forever(thread), what="the idle detector")
        descriptors, threads = open_descriptors(), set(threading.enumerate())
        staging = tmp_path / "staging"
        staging.mkdir()
        for cycle in range(CYCLES):
            # Filled first, then moved under the media folder: it appears complete, as a
            # key does when it is mounted.
            mount_tmpfs(staging)
            (staging / name).write_bytes(update)
            target = media / f"KEY{cycle % 3}"
            target.mkdir(exist_ok=True)
            subprocess.run(["mount", "--move", str(staging), str(target)], check=True)
            harness.wait_for(ev.BatchFinished, cycle + 1)
            umount(target)
        wait_until(lambda: blocked_in_poll_forever(thread), what="the detector to be idle")
        # No more than at the start: a leak adds some. (Fewer is fine: the garbage collector
        # may close what earlier tests of the session left behind meanwhile.)
        assert open_descriptors() <= descriptors
        assert set(threading.enumerate()) == threads
        batches = harness.of(ev.BatchFinished)
        assert [b.queued for b in batches] == [(name,)] + [()] * (CYCLES - 1)
        assert [b.duplicates for b in batches] == [0] + [1] * (CYCLES - 1)
        assert len(harness.ctx.queue.pending()) == 1
    finally:
        harness.close()
    assert thread not in threading.enumerate()


def test_stop_releases_the_detector(home: Home, media: Path) -> None:
    harness = Harness(home.context(), media)
    try:
        before = open_descriptors()
        harness.source.start()
        assert open_descriptors() == before + 2  # /proc/self/mountinfo and the wake-up eventfd
        harness.source.poll_now()  # wakes it up; it goes back to sleep
        harness.source.stop()
        assert open_descriptors() == before
        assert not [t for t in threading.enumerate() if t.name == "removable"]
    finally:
        harness.close()


def test_a_mount_outside_the_media_folders_is_not_a_key(tmp_path: Path, media: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    inside = media / "CLE"
    inside.mkdir()
    monitor = MountInfoMonitor([media])
    try:
        mount_tmpfs(elsewhere)
        mount_tmpfs(inside)
        monitor.wait(5.0)  # the mount table changed: returns at once
        assert [v.mount_point for v in monitor.volumes()] == [inside]
        assert monitor.volumes()[0].is_present()
        umount(inside)
        assert monitor.volumes() == []
    finally:
        monitor.close()
        for folder in (elsewhere, inside):
            if os.path.ismount(folder):
                umount(folder)


def test_mountinfo_escapes_are_decoded() -> None:
    table = (b"36 35 98:0 / /media/paul/MA\\040CLE rw - vfat /dev/sdb1 rw\n"
             b"37 35 98:0 / /media/paul/caf\\303\\251 rw - vfat /dev/sdc1 rw\n")
    assert parse_mountinfo(table) == {"/media/paul/MA CLE": 36, "/media/paul/café": 37}


def _zip_bytes(comment: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", b"x" * 1000)
        archive.comment = comment
    return buffer.getvalue()


def _zip64_ended() -> bytes:
    """A ZIP whose end record defers to a ZIP64 end record, as big archives have."""
    data = _zip_bytes()
    end = data.rindex(b"PK\x05\x06")
    entries, cd_size, cd_offset = struct.unpack_from("<HII", data, end + 10)
    zip64_end = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries,
                            entries, cd_size, cd_offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1)
    classic = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                          0xFFFFFFFF, 0)
    result = data[:end] + zip64_end + locator + classic
    with zipfile.ZipFile(io.BytesIO(result)) as archive:  # a real reader agrees
        assert archive.read("a.txt") == b"x" * 1000
    return result


@pytest.mark.parametrize("data", [_zip_bytes(), _zip_bytes(b"PK\x05\x06 a tricky comment"),
                                  _zip64_ended()])
def test_a_complete_zip_has_its_end_record(data: bytes) -> None:
    assert has_zip_end(data[-70000:], len(data))


def test_a_zip_being_written_has_no_end_record() -> None:
    data = _zip_bytes()
    assert not has_zip_end(data[:-1], len(data) - 1)  # appended, not finished
    assert not has_zip_end(data[:600] + b"\0" * (len(data) - 600), len(data))  # preallocated
    assert not has_zip_end(data + b"garbage", len(data) + 7)
    assert not has_zip_end(b"", 0)


def test_exchange_names_in_any_case_and_with_a_copy_suffix() -> None:
    name = exchange_name("8502182-20201027171147.WWZ")
    assert name is not None
    assert name.canonical == "8502182-20201027171147.wwz"
    copy = exchange_name("8502182-20201027171147 (1).wwz")
    assert copy is not None
    assert copy.canonical == "8502182-20201027171147.wwz"
    assert exchange_name("autorun.inf") is None
    assert exchange_name("8502182-20201027171147.wwz.exe") is None
