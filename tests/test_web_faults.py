"""The poller against a misbehaving server: every fault ends recovered or refused with its
reason, nothing hangs past its deadline, nothing already queued is lost."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from daemon.events import (
    BackOnline,
    BatchFinished,
    DownloadProgress,
    Offline,
    PollFinished,
    PollStarted,
    SourceFailed,
    UpdateFound,
    UpdateQueued,
    UpdateRejected,
)
from daemon.keys import SigningKey
from daemon.queue import State
from daemon.web.client import parse_retry_after
from daemon.web.credentials import BASIC, BEARER, Credential, CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import INDEX_NAME, sign_index
from daemon.web.publish import Repository
from tests.faultserver import (
    FAST,
    Fault,
    FaultServer,
    Rig,
    configure_web,
    file_keyring,
    make_rig,
)
from tests.helpers import DOSSIER, Home

BIG = 300_000


@pytest.fixture
def rig(home: Home, server: FaultServer) -> Iterator[Rig]:
    """A poller on the home, pointed at the fault server."""
    configure_web(home, server.base_url)
    built = make_rig(home)
    yield built
    built.close()


def publish_big(home: Home, repo: Repository, sequence: int, etalon: bool = False) -> Path:
    """Publish an update of about 300 kB of incompressible content."""
    update = home.update(sequence, etalon=etalon, store=True,
                         contents={"ecritures.xml": os.urandom(BIG)})
    repo.publish(update)
    return update


def codes(failures: list[WebError]) -> list[str]:
    return [str(f.code) for f in failures]


def queued_names(home: Home) -> list[str]:
    return [item.name for item in home.context().queue.pending()]


def staging_leftovers(home: Home) -> list[str]:
    staging = home.context().paths.staging
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


# ---------------------------------------------------------------- happy path and bookkeeping


def test_poll_queues_new_updates_in_order_with_events(home: Home, repo: Repository,
                                                      rig: Rig) -> None:
    first = publish_big(home, repo, 1)
    second = publish_big(home, repo, 2, etalon=True)
    report = rig.poll()
    assert report.ok
    assert report.changed
    assert report.found == 2
    assert report.queued == [first.name, second.name]
    items = home.context().queue.pending()
    assert [(i.name, i.origin, i.etalon) for i in items] == [
        (first.name, "web", False), (second.name, "web", True)]
    assert rig.events.of(PollStarted)
    assert rig.events.of(UpdateFound)
    queued = rig.events.of(UpdateQueued)
    assert [(e.name, e.etalon) for e in queued] == [(first.name, False), (second.name, True)]
    assert rig.events.of(DownloadProgress)[-1].received == second.stat().st_size
    batch = rig.events.wait_for(BatchFinished)[0]
    assert batch.queued == (first.name, second.name)
    assert staging_leftovers(home) == []


def test_unchanged_index_costs_one_304_and_downloads_nothing(home: Home, repo: Repository,
                                                              rig: Rig,
                                                              server: FaultServer) -> None:
    publish_big(home, repo, 1)
    rig.poll()
    before = len(server.seen)
    report = rig.poll()
    assert report.ok
    assert not report.changed
    assert report.found == 0
    assert [s.status for s in server.seen[before:]] == [304]
    assert rig.events.of(PollFinished)[-1].changed is False


def test_already_queued_file_is_never_downloaded_again(home: Home, repo: Repository,
                                                       rig: Rig, server: FaultServer) -> None:
    update = publish_big(home, repo, 1)
    rig.poll()
    # Forget the cached index: the next poll gets a full 200 listing the same file.
    for state_file in (home.root / "data" / "web").iterdir():
        state_file.unlink()
    restarted = make_rig(home)
    try:
        report = restarted.poll()
    finally:
        restarted.close()
    assert report.changed
    assert report.found == 0
    assert len(server.requests_for(update.name)) == 1


def test_not_configured_is_explained(home: Home) -> None:
    rig = make_rig(home)
    try:
        report = rig.poll()
    finally:
        rig.close()
    assert codes(report.failures) == ["not-configured"]
    assert rig.events.of(SourceFailed)[0].code == "not-configured"


# ---------------------------------------------------------------- transport faults


def test_connection_reset_mid_body_resumes_with_range(home: Home, repo: Repository,
                                                      rig: Rig, server: FaultServer) -> None:
    update = publish_big(home, repo, 1)
    server.inject(update.name, Fault("reset", after=100_000))
    report = rig.poll()
    assert report.ok
    assert report.queued == [update.name]
    first, second = server.requests_for(update.name)
    assert "Range" not in first.headers
    assert second.status == 206
    offset = int(second.headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < offset <= 100_000
    assert second.headers["If-Range"].startswith('"')
    item = home.context().queue.pending()[0]
    assert item.sha256 == repo_entry_sha(repo, update.name)


def repo_entry_sha(repo: Repository, name: str) -> str:
    index = json.loads((repo.root / DOSSIER / INDEX_NAME).read_text())
    files = json.loads(index["signed"])["files"]
    return str(next(f["sha256"] for f in files if f["name"] == name))


def test_truncated_body_keeps_the_part_and_the_next_poll_resumes(
        home: Home, repo: Repository, server: FaultServer) -> None:
    configure_web(home, server.base_url)
    rig = make_rig(home, settings=dataclasses.replace(FAST, resume_attempts=1))
    try:
        update = publish_big(home, repo, 1)
        server.inject(update.name, Fault("truncate", after=120_000))
        report = rig.poll()
        assert codes(report.failures) == ["interrupted"]
        assert queued_names(home) == []
        leftovers = staging_leftovers(home)
        assert any(name.endswith(".part") for name in leftovers), leftovers
        report = rig.poll()
        assert report.ok
        assert report.queued == [update.name]
        assert server.requests_for(update.name)[-1].headers["Range"] == "bytes=120000-"
        assert staging_leftovers(home) == []
    finally:
        rig.close()


def test_server_error_is_reported_once_and_recovered(home: Home, repo: Repository, rig: Rig,
                                                     server: FaultServer) -> None:
    update = publish_big(home, repo, 1)
    server.inject(INDEX_NAME, Fault("status", status=500, times=2))
    assert codes(rig.poll().failures) == ["server-error"]
    assert codes(rig.poll().failures) == ["server-error"]
    # The same failure twice in a row is said once: the user is not nagged every poll.
    assert [e.code for e in rig.events.of(SourceFailed)] == ["server-error"]
    assert "HTTP 500" in rig.events.of(SourceFailed)[0].message
    report = rig.poll()
    assert report.ok
    assert report.queued == [update.name]


def test_retry_after_is_honoured_up_to_a_cap(home: Home, repo: Repository, rig: Rig,
                                             server: FaultServer) -> None:
    publish_big(home, repo, 1)
    server.inject(INDEX_NAME, Fault("status", status=503, headers={"Retry-After": "2"}))
    report = rig.poll()
    assert codes(report.failures) == ["server-busy"]
    assert report.failures[0].retry_after == 2.0
    assert rig.poller.backoff_delay(1, report.failures) == 2.0
    server.inject(INDEX_NAME, Fault("status", status=429, headers={"Retry-After": "86400"}))
    report = rig.poll()
    assert report.failures[0].retry_after == 86400.0
    assert rig.poller.backoff_delay(1, report.failures) == FAST.retry_after_cap


def test_retry_after_as_an_http_date() -> None:
    now = time.time()
    later = format_datetime(datetime.fromtimestamp(now + 120, UTC), usegmt=True)
    assert 118 <= (parse_retry_after(later, now) or 0) <= 121
    assert parse_retry_after("soon", now) is None


def test_backoff_grows_exponentially_with_jitter_up_to_the_cap(rig: Rig) -> None:
    failures = [WebError(Failure.SERVER_ERROR)]
    delays = [rig.poller.backoff_delay(n, failures) for n in range(1, 8)]
    assert 0.04 <= delays[0] <= 0.06
    assert 0.08 <= delays[1] <= 0.12
    assert all(d <= FAST.backoff_cap for d in delays)
    assert delays[-1] >= FAST.backoff_cap * 0.8


def test_trickling_body_is_cut_off_at_the_deadline_then_resumed(
        home: Home, repo: Repository, rig: Rig, server: FaultServer) -> None:
    update = publish_big(home, repo, 1)
    server.inject(update.name, Fault("trickle", interval=0.1))
    started = time.monotonic()
    report = rig.poll()
    elapsed = time.monotonic() - started
    assert codes(report.failures) == ["deadline"]
    # deadline_base (2 s) plus at most one read timeout (1 s), plus slack for a slow machine.
    assert elapsed < 5.0
    report = rig.poll()
    assert report.ok
    assert report.queued == [update.name]
    assert "Range" in server.requests_for(update.name)[-1].headers


def test_stalled_server_times_out_as_offline(home: Home, repo: Repository, rig: Rig,
                                             server: FaultServer) -> None:
    publish_big(home, repo, 1)
    server.inject(INDEX_NAME, Fault("stall", interval=3.0))
    started = time.monotonic()
    report = rig.poll()
    assert time.monotonic() - started < 2.9  # the 1 s read timeout, not the 3 s stall
    assert codes(report.failures) == ["offline"]
    assert rig.events.of(Offline)[0].reason == "timeout"


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "until-close"])
def test_body_longer_than_indexed_is_refused(home: Home, repo: Repository, rig: Rig,
                                             server: FaultServer, announced: bool) -> None:
    update = publish_big(home, repo, 1)
    server.inject(update.name, Fault("longer", extra=b"x" * 5000, announce_length=announced))
    report = rig.poll()
    assert codes(report.failures) == ["size-mismatch"]
    detail = report.failures[0].detail
    # Announced: refused from the headers; not announced: cut at the indexed size.
    assert ("≠" in detail) if announced else (f"> {update.stat().st_size}" in detail)
    assert queued_names(home) == []
    assert staging_leftovers(home) == []
    assert rig.events.of(SourceFailed)[0].code == "size-mismatch"


def test_wrong_hash_is_refused_and_nothing_queued_is_lost(home: Home, repo: Repository,
                                                           rig: Rig) -> None:
    first = publish_big(home, repo, 1)
    rig.poll()
    second = publish_big(home, repo, 2)
    served = repo.root / DOSSIER / second.name
    data = bytearray(served.read_bytes())
    data[-100] ^= 0xFF  # same size, other content: the index's SHA-256 no longer matches
    served.write_bytes(bytes(data))
    report = rig.poll()
    assert codes(report.failures) == ["hash-mismatch"]
    assert staging_leftovers(home) == []
    assert queued_names(home) == [first.name]
    assert home.context().queue.check_integrity() == []


def test_file_larger_than_its_index_entry_is_refused(home: Home, repo: Repository,
                                                        rig: Rig) -> None:
    # The index says 10 bytes fewer than the file has: refused from the Content-Length.
    update = publish_big(home, repo, 1)
    index_path = repo.root / DOSSIER / INDEX_NAME
    envelope = json.loads(index_path.read_text())
    signed = json.loads(envelope["signed"])
    signed["files"][0]["size"] -= 10
    index_path.write_bytes(resign(signed, home.key))
    report = rig.poll()
    assert codes(report.failures) == ["size-mismatch"]
    assert queued_names(home) == []
    assert update.name in report.failures[0].detail


def resign(signed: dict[str, object], key: SigningKey) -> bytes:
    from daemon.web.index import parse_signed

    text = json.dumps(signed, indent=1, sort_keys=True).encode()
    return sign_index(parse_signed(text, DOSSIER), key)


# ---------------------------------------------------------------- index faults


def test_index_signed_by_an_unknown_key_is_refused(home: Home, repo: Repository, rig: Rig,
                                                   tmp_path: Path) -> None:
    publish_big(home, repo, 1)
    stranger = Repository(repo.root, SigningKey.generate())
    stranger.refresh(DOSSIER)
    report = rig.poll()
    assert codes(report.failures) == ["index-key-unknown"]
    assert queued_names(home) == []
    assert stranger.key.public.key_id in rig.events.of(SourceFailed)[0].message


def test_tampered_index_is_refused(home: Home, repo: Repository, rig: Rig) -> None:
    publish_big(home, repo, 1)
    index_path = repo.root / DOSSIER / INDEX_NAME
    envelope = json.loads(index_path.read_text())
    envelope["signed"] = envelope["signed"].replace('"etalon": false', '"etalon": true')
    index_path.write_text(json.dumps(envelope))
    report = rig.poll()
    assert codes(report.failures) == ["index-signature-bad"]
    assert queued_names(home) == []


def test_expired_index_is_refused(home: Home, repo: Repository, rig: Rig) -> None:
    update = home.update(1)
    repo.publish(update, now=datetime.now(UTC) - timedelta(days=8))
    report = rig.poll()
    assert codes(report.failures) == ["index-expired"]
    message = rig.events.of(SourceFailed)[0].message
    assert "expir" in message.lower()


def test_frozen_endpoint_is_noticed_even_through_304(home: Home, repo: Repository,
                                                     server: FaultServer) -> None:
    configure_web(home, server.base_url)
    publish_big(home, repo, 1)
    rig = make_rig(home)
    rig.poll()
    rig.close()
    frozen = make_rig(home)
    frozen.poller._now = lambda: datetime.now(UTC) + timedelta(days=8)
    try:
        report = frozen.poll()
    finally:
        frozen.close()
    assert server.seen[-1].status == 304
    assert codes(report.failures) == ["index-expired"]


def test_rolled_back_index_is_refused_even_after_a_restart(home: Home, repo: Repository,
                                                           rig: Rig,
                                                           server: FaultServer) -> None:
    publish_big(home, repo, 1)
    index_path = repo.root / DOSSIER / INDEX_NAME
    old = index_path.read_bytes()
    repo.refresh(DOSSIER)
    assert rig.poll().ok
    index_path.write_bytes(old)
    os.utime(index_path, (time.time() + 5, time.time() + 5))  # a new ETag
    assert codes(rig.poll().failures) == ["index-rollback"]
    restarted = make_rig(home)
    try:
        assert codes(restarted.poll().failures) == ["index-rollback"]
    finally:
        restarted.close()


def test_file_refused_by_the_intake_is_not_downloaded_again(home: Home, repo: Repository,
                                                            rig: Rig,
                                                            server: FaultServer) -> None:
    # The index is genuine but the update inside is signed by another key: the intake
    # refuses it, quarantines it, and the next polls leave it alone.
    other = SigningKey.generate()
    forged = home.update(1, key=other, out=home.root / "forged")
    folder = repo.root / DOSSIER
    folder.mkdir(parents=True)
    (folder / forged.name).write_bytes(forged.read_bytes())
    from daemon.fsutil import sha256_file
    from daemon.web.index import Index, IndexEntry

    now = datetime.now(UTC).replace(microsecond=0)
    entry = IndexEntry(forged.name, 1, forged.stat().st_size, sha256_file(forged), False)
    (folder / INDEX_NAME).write_bytes(sign_index(
        Index(DOSSIER, 1, now, now + timedelta(days=1), (entry,)), home.key))
    report = rig.poll()
    assert report.rejected == [forged.name]
    rejected = rig.events.of(UpdateRejected)[0]
    assert rejected.code == "key-unknown"
    assert rejected.reason_fr
    assert rejected.reason_en
    items = home.context().queue.items([State.REJECTED])
    assert [i.name for i in items] == [forged.name]
    for state_file in (home.root / "data" / "web").iterdir():
        state_file.unlink()
    restarted = make_rig(home)
    try:
        assert restarted.poll().changed
    finally:
        restarted.close()
    assert len(server.requests_for(forged.name)) == 1


# ---------------------------------------------------------------- offline, credentials


def test_offline_is_a_state_with_one_event_each_way(home: Home, repo: Repository,
                                                    rig: Rig, server: FaultServer) -> None:
    update = publish_big(home, repo, 1)
    port = server.port
    server.stop()
    assert codes(rig.poll().failures) == ["offline"]
    assert codes(rig.poll().failures) == ["offline"]
    assert len(rig.events.of(Offline)) == 1
    assert rig.events.of(Offline)[0].reason == "connection refused"
    assert rig.events.of(SourceFailed) == []
    back = FaultServer(repo.root, port=port).start()
    try:
        report = rig.poll()
    finally:
        back.stop()
    assert report.ok
    assert report.queued == [update.name]
    assert len(rig.events.of(BackOnline)) == 1
    assert len(rig.events.of(Offline)) == 1


def test_bearer_token_from_the_keyring(home: Home, repo: Repository, tmp_path: Path) -> None:
    update = publish_big(home, repo, 1)
    server = FaultServer(repo.root, token="s3cr3t-t0ken").start()
    configure_web(home, server.base_url)
    store = CredentialStore(file_keyring(tmp_path / "keyring.cfg"))
    rig = make_rig(home, credentials=store)
    try:
        assert codes(rig.poll().failures) == ["auth-missing"]
        store.set(DOSSIER, Credential(BEARER, "wrong"))
        assert codes(rig.poll().failures) == ["auth-failed"]
        store.set(DOSSIER, Credential(BEARER, "s3cr3t-t0ken"))
        report = rig.poll()
    finally:
        rig.close()
        server.stop()
    assert report.ok
    assert report.queued == [update.name]
    assert server.seen[-1].headers["Authorization"] == "Bearer s3cr3t-t0ken"
    messages = [e.message for e in rig.events.of(SourceFailed)]
    assert all("s3cr3t" not in m and "wrong" not in m for m in messages)
    assert "passeur login 8502182" in messages[0]
    # The secret lives in the keyring file, not in passeur's config or state.
    reread = CredentialStore(file_keyring(tmp_path / "keyring.cfg")).get(DOSSIER)
    assert reread is not None
    assert reread.secret == "s3cr3t-t0ken"
    for path in home.root.rglob("*"):
        if path.is_file() and path.suffix in (".toml", ".json"):
            assert "s3cr3t" not in path.read_text(errors="replace"), path


def test_credentials_are_kept_per_dossier(tmp_path: Path) -> None:
    store = CredentialStore(file_keyring(tmp_path / "keyring.cfg"))
    store.set("111", Credential(BASIC, "pw1", "ferme"))
    assert store.get("111") == Credential(BASIC, "pw1", "ferme")
    assert store.get("222") is None
    assert "pw1" not in repr(store.get("111"))
    assert store.delete("111")
    assert not store.delete("111")


# ---------------------------------------------------------------- disk full


@pytest.fixture
def small_staging(home: Home) -> Iterator[Path]:
    """The staging folder on a real 256 KiB tmpfs."""
    staging = home.context().paths.staging
    staging.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs",
                             str(staging)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (root needed): {result.stderr}")
    try:
        yield staging
    finally:
        subprocess.run(["umount", "-l", str(staging)], check=False)


def test_disk_full_before_download_is_explained(home: Home, repo: Repository, rig: Rig,
                                                small_staging: Path) -> None:
    publish_big(home, repo, 1)  # 300 kB, more than the 256 KiB free
    report = rig.poll()
    assert codes(report.failures) == ["disk-full"]
    assert rig.events.of(SourceFailed)[0].code == "disk-full"
    assert list(small_staging.iterdir()) == []


def test_disk_full_mid_download_is_explained(home: Home, repo: Repository, rig: Rig,
                                             server: FaultServer, small_staging: Path) -> None:
    update = home.update(1, store=True, contents={"ecritures.xml": os.urandom(180_000)})
    repo.publish(update)
    filler = small_staging / "filler"

    def fill_disk(name: str, sent: int) -> None:
        # Once the download has started, something else fills the disk.
        if name == update.name and not filler.exists():
            with open(filler, "wb") as out, contextlib.suppress(OSError):
                out.write(b"\0" * (256 << 10))

    server.on_chunk = fill_disk
    server.inject(update.name, Fault("slow", chunk=32_000, interval=0.02))
    report = rig.poll()
    assert codes(report.failures) == ["disk-full"]
    event = rig.events.of(SourceFailed)[0]
    assert event.code == "disk-full"
    assert not any(p.name.endswith(".part") for p in small_staging.iterdir())
