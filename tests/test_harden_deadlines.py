"""Every request ends within its deadline, the status line and headers included."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.web.client import WebClient
from daemon.web.credentials import CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import INDEX_NAME, IndexEntry
from daemon.web.publish import Repository
from tests.faultserver import FAST, Fault, FaultServer, configure_web, file_keyring, make_rig
from tests.helpers import DOSSIER, Home

# Short deadlines: the trickled heads below take many times longer than these to be sent.
SHORT = dataclasses.replace(FAST, deadline_base=0.6, read_timeout=5.0)


def _client(home: Home, server: FaultServer) -> WebClient:
    return WebClient(server.base_url, CredentialStore(file_keyring(home.root / "kr.cfg")),
                     SHORT)


def _head_fault(chunk: int, lines: int) -> Fault:
    # Each step waits less than the read timeout: no single read ever times out.
    return Fault("trickle-head", chunk=chunk, after=lines, interval=0.2)


def test_an_index_whose_headers_trickle_ends_at_the_deadline(
        home: Home, repo: Repository, server: FaultServer) -> None:
    repo.publish(home.update(1))
    server.inject(INDEX_NAME, _head_fault(chunk=1, lines=40))
    client = _client(home, server)
    with pytest.raises(WebError) as failed:
        client.fetch_index(DOSSIER, None)
    client.close()
    assert failed.value.code is Failure.DEADLINE
    assert server.heads_sent == []  # cut off while the server was still sending headers


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.sampled_from([1, 7, 32]), lines=st.integers(min_value=60, max_value=120))
def test_a_file_whose_headers_trickle_ends_at_the_deadline(
        home: Home, repo: Repository, server: FaultServer, tmp_path: Path,
        chunk: int, lines: int) -> None:
    update = home.update()  # each example publishes the next update
    repo.publish(update)
    server.clear_faults()
    server.heads_sent.clear()
    server.inject(update.name, _head_fault(chunk, lines))
    entry = IndexEntry(update.name, 1, update.stat().st_size,
                       hashlib.sha256(update.read_bytes()).hexdigest())
    client = _client(home, server)
    part = tmp_path / "dl" / f"{update.name}.part"
    with pytest.raises(WebError) as failed:
        client.download(DOSSIER, entry, part)
    client.close()
    assert failed.value.code is Failure.DEADLINE
    assert server.heads_sent == []


def test_the_poll_says_deadline_and_the_next_poll_gets_the_update(
        home: Home, repo: Repository, server: FaultServer) -> None:
    update = home.update(1)
    repo.publish(update)
    configure_web(home, server.base_url)
    rig = make_rig(home, settings=SHORT)
    try:
        server.inject(INDEX_NAME, _head_fault(chunk=1, lines=40))
        report = rig.poll()
        assert [str(f.code) for f in report.failures] == ["deadline"]
        report = rig.poll()
        assert report.queued == [update.name]
    finally:
        rig.close()


def test_a_deadline_that_is_not_reached_changes_nothing(
        home: Home, repo: Repository, server: FaultServer) -> None:
    repo.publish(home.update(1))
    server.inject(INDEX_NAME, Fault("trickle-head", chunk=64, after=3, interval=0.01))
    client = _client(home, server)
    fetched = client.fetch_index(DOSSIER, None)
    client.close()
    assert not fetched.not_modified
    assert fetched.body
    assert server.heads_sent == [f"/passeur/{DOSSIER}/{INDEX_NAME}"]
