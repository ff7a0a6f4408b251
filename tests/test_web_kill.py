"""`passeur receive` killed with SIGKILL mid-download, again and again: the next run
resumes with a Range request, the file is verified, and it is queued exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.fsutil import sha256_file
from daemon.queue import RESUMABLE_PREFIX
from daemon.web.publish import Repository
from tests.faultserver import Fault, FaultServer, configure_web, keyring_env
from tests.helpers import DOSSIER, Home

TRIALS = 20
CONTENT = 1_500_000
CHUNK = 32_000
# Never aim closer to the end than this: the killer must act before the download ends.
MARGIN = 10 * CHUNK


@pytest.fixture
def served(home: Home, tmp_path: Path) -> Iterator[tuple[Repository, FaultServer]]:
    """A repository served by the tests' own server, named in the home's config."""
    repo = Repository(tmp_path / "repo", home.key)
    repo.root.mkdir(parents=True)
    server = FaultServer(repo.root).start()
    configure_web(home, server.base_url)
    yield repo, server
    server.stop()


def receive(home: Home, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "daemon.cli", "receive"], env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_when_part_reaches(process: subprocess.Popen[str], part: Path, threshold: int,
                           timeout: float = 30.0) -> int:
    """SIGKILL `process` once `part` holds `threshold` bytes; return what it held then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            held = part.stat().st_size
        except FileNotFoundError:
            held = 0
        if held >= threshold:
            os.kill(process.pid, signal.SIGKILL)
            process.communicate(timeout=10)
            return held
        time.sleep(0.002)
    _out, err = process.communicate(timeout=10)
    raise AssertionError(f"receive ended before the kill: {process.returncode} {err}")


@pytest.mark.slow
def test_kill_9_mid_download_then_resume(home: Home, served: tuple[Repository, FaultServer],
                                         tmp_path: Path) -> None:
    # A chain of runs: run k resumes the download that killed run k-1, then starts the
    # next update, slowly served, and is killed at a random point of it.
    repo, server = served
    env = dict(home.env, **keyring_env(tmp_path / "xdg"))
    staging = home.context().paths.staging
    rng = random.Random(0x9A55E)  # reproducible kill points
    killed: list[tuple[str, int]] = []
    for sequence in range(1, TRIALS + 1):
        update = home.update(sequence, store=True,
                             contents={"ecritures.xml": os.urandom(CONTENT)})
        repo.publish(update)
        size = update.stat().st_size
        server.inject(update.name, Fault("slow", chunk=CHUNK, interval=0.005))
        part = staging / f"{RESUMABLE_PREFIX}web-{DOSSIER}-{update.name}.part"
        held = kill_when_part_reaches(receive(home, env), part,
                                      rng.randint(CHUNK, size - MARGIN))
        assert 0 < held < size
        killed.append((update.name, held))
    finished = receive(home, env)
    _out, err = finished.communicate(timeout=60)
    assert finished.returncode == 0, err

    for name, held in killed:
        first, resumed = server.requests_for(name)
        assert "Range" not in first.headers
        assert resumed.status == 206, resumed
        offset = int(resumed.headers["Range"].removeprefix("bytes=").rstrip("-"))
        assert held <= offset

    queue = home.context().queue
    items = queue.pending()
    assert [i.name for i in items] == [name for name, _held in killed]
    for item in items:
        assert sha256_file(queue.spool_path(item)) == item.sha256
    assert queue.check_integrity() == []
    assert list(staging.iterdir()) == []
