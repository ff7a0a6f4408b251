"""A real sending process killed with SIGKILL mid-upload, again and again, against a real
nginx: every run resumes where the last one was cut and sends at most the one part that
was in flight again (counted in nginx's access log); the firm's `collect`, run between
the cuts, never takes an incomplete upload; at the end it gets the very same bytes.

The sending process is `python -m tests.test_send_web_kill child …`: the web destination
on its own, as `passeur send` runs it once the dossier is packed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon.fsutil import sha256_file
from daemon.keys import SigningKey
from daemon.send.parts import PARTS_NAME, SIGNATURE_NAME, part_count, part_name
from daemon.send.web import RELAY_WIDTH
from daemon.web.collect import Status, collect
from daemon.web.credentials import BASIC, Credential, CredentialStore
from daemon.web.publish import Repository
from tests.faultserver import file_keyring
from tests.helpers import DOSSIER, Home
from tests.nginx import Nginx
from tests.uploads import make_wvz

USER, PASSWORD = "gaec-le-guyon", "mot de passe"
PART = 64 << 10
PARTS = 40
KILLS = 12
MAX_KBPS = 500  # kB/s: a part takes about 130 ms, the killer aims inside it
PART_SECONDS = PART / (MAX_KBPS * 1000)


def child(argv: list[str]) -> int:
    """Send one file with the web destination (the process the test kills)."""
    from daemon.send.web import WebDestination
    from tests.faultserver import FAST
    from tests.uploads import ProgressLog, job_for

    url, keyring, key_file, state_dir, file = argv
    destination = WebDestination(url, CredentialStore(file_keyring(Path(keyring))),
                                 SigningKey.load(Path(key_file)), Path(state_dir),
                                 part_size=PART, max_kbps=MAX_KBPS, settings=FAST)
    progress = ProgressLog()
    sent = destination.send(job_for(Path(file)), progress, threading.Event())
    print(json.dumps(sent.detail))
    return 0


def acknowledged(state: Path) -> int:
    """Return how many parts the sending process noted as acknowledged."""
    try:
        return len(json.loads(state.read_bytes())["parts"])
    except (OSError, ValueError, KeyError):
        return 0  # not written yet (it is replaced atomically: never torn)


@pytest.mark.slow
def test_kill_9_mid_upload_then_resume(home: Home, tmp_path: Path) -> None:
    farmer = SigningKey.generate()
    key_file = tmp_path / "farmer.pem"
    farmer.save(key_file)
    keyring = tmp_path / "keyring.cfg"
    CredentialStore(file_keyring(keyring)).set(DOSSIER, Credential(BASIC, PASSWORD, USER))
    wvz = make_wvz(tmp_path / "packed", farmer, PARTS * PART - 2000)
    assert part_count(wvz.stat().st_size, PART) == PARTS
    server = Nginx(tmp_path / "nginx")
    server.add_user(DOSSIER, USER, PASSWORD)
    Repository(server.repo, home.key).refresh(DOSSIER)
    server.start()
    state_dir = tmp_path / "state"
    state = state_dir / f"{wvz.name}.json"
    argv = [sys.executable, "-m", "tests.test_send_web_kill", "child", server.base_url,
            str(keyring), str(key_file), str(state_dir), str(wvz)]
    inbox = tmp_path / "inbox"
    rng = random.Random(0x4B1119)  # reproducible cut points
    # Each run acknowledges at least one new part before it is cut: the parts in flight
    # at two cuts are never the same one.
    targets = sorted(rng.sample(range(1, PARTS - 2), KILLS))
    try:
        for target in targets:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            while acknowledged(state) < target and process.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, PART_SECONDS))
            os.kill(process.pid, signal.SIGKILL)
            _out, err = process.communicate(timeout=30)
            assert process.returncode == -signal.SIGKILL, err
            # The firm's cron meanwhile: an incomplete upload is left alone.
            report = collect(server.repo, inbox, home.key)
            assert [o.status for o in report.outcomes] == [Status.WAITING]
            assert not inbox.exists() or list(inbox.iterdir()) == []
        finished = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert finished.returncode == 0, finished.stderr
        report = collect(server.repo, inbox, home.key)
    finally:
        server.stop()

    assert [(o.status, o.name) for o in report.outcomes] == [(Status.COLLECTED, wvz.name)]
    assert sha256_file(inbox / wvz.name) == sha256_file(wvz)
    puts: dict[str, int] = {}
    for path, _status in server.requests("PUT", "/upload/"):
        name = path.rsplit("/", 1)[-1]
        puts[name] = puts.get(name, 0) + 1
    # Every part arrived; none was sent more than twice; at most one per cut again.
    assert set(puts) == {part_name(n) for n in range(1, PARTS + 1)} | {PARTS_NAME,
                                                                      SIGNATURE_NAME}
    resent = {name: count - 1 for name, count in puts.items() if count > 1}
    assert all(count == 1 for count in resent.values()), resent
    assert len(resent) <= KILLS, resent
    # Resumed runs checked with HEAD the parts they skipped, and looked for at most the
    # relay's width of parts not noted yet (the one awaiting its answer at the cut).
    looked_for = [path for path, status in server.requests("HEAD", "/part-") if status != 200]
    assert len(looked_for) <= RELAY_WIDTH * KILLS, looked_for


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        sys.exit(child(sys.argv[2:]))
