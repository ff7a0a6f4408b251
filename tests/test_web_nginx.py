"""The web endpoint as an accountant firm serves it: a real nginx on 127.0.0.1 serving a
repository made by `passeur publish`, with auth_basic, ETags, Range, PUT uploads and TLS."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from daemon.events import PollFinished, SourceFailed
from daemon.fsutil import sha256_file
from daemon.web.client import WebClient
from daemon.web.credentials import BASIC, Credential, CredentialStore
from daemon.web.failures import WebError
from daemon.web.index import INDEX_NAME, IndexEntry
from daemon.web.publish import Repository
from tests.faultserver import (
    FAST,
    Rig,
    configure_web,
    file_keyring,
    keyring_env,
    make_rig,
)
from tests.helpers import DOSSIER, Home
from tests.nginx import Nginx, make_tls

USER, PASSWORD = "gaec-le-guyon", "mot de passe"


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Nginx]:
    """nginx serving an empty repository; the farmer's user may read dossier 8502182."""
    server = Nginx(tmp_path / "nginx")
    server.add_user(DOSSIER, USER, PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> CredentialStore:
    """A real keyring kept in a file of the test's own."""
    return CredentialStore(file_keyring(tmp_path / "keyring.cfg"))


@pytest.fixture
def rig(home: Home, nginx: Nginx, store: CredentialStore) -> Iterator[Rig]:
    """A poller on the home, pointed at nginx, with the right password stored."""
    configure_web(home, nginx.base_url)
    store.set(DOSSIER, Credential(BASIC, PASSWORD, USER))
    built = make_rig(home, credentials=store)
    yield built
    built.close()


def publish_cli(home: Home, repo: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    """Run `passeur publish` as the accountant would."""
    key_file = home.root / "firm-key.pem"
    if not key_file.exists():
        home.key.save(key_file)
    return home.passeur("publish", "--repo", str(repo), "--key", str(key_file),
                        *map(str, files))


def test_publish_poll_queue_then_304(home: Home, nginx: Nginx, rig: Rig) -> None:
    plain, etalon = home.update(1), home.update(2, etalon=True)
    published = publish_cli(home, nginx.repo, plain, etalon)
    assert published.returncode == 0, published.stderr
    assert (nginx.repo / DOSSIER / plain.name).read_bytes() == plain.read_bytes()

    report = rig.poll()
    assert report.ok, report.failures
    assert report.queued == [plain.name, etalon.name]
    items = home.context().queue.pending()
    assert [(i.name, i.origin, i.etalon) for i in items] == [
        (plain.name, "web", False), (etalon.name, "web", True)]

    report = rig.poll()
    assert report.ok
    assert not report.changed
    last = nginx.access_log()[-1]
    assert last.startswith(f"GET /passeur/{DOSSIER}/{INDEX_NAME} 304")
    assert 'inm="' in last
    assert rig.events.of(PollFinished)[-1].changed is False
    # The 304 came from nginx's own ETag; files were fetched once each.
    gets = [line for line in nginx.access_log() if ".wwz 200" in line]
    assert len(gets) == 2


def test_index_rewritten_within_the_same_second_is_seen(home: Home, nginx: Nginx,
                                                        rig: Rig) -> None:
    publish_cli(home, nginx.repo, home.update(1))
    assert rig.poll().queued
    index = nginx.repo / DOSSIER / INDEX_NAME
    size = index.stat().st_size
    Repository(nginx.repo, home.key).refresh(DOSSIER)
    # Same size, and likely the same second: nginx's ETag (mtime-size) would not change
    # if the publisher did not move the modification time on.
    assert index.stat().st_size == size
    report = rig.poll()
    assert report.ok
    assert report.changed
    assert nginx.access_log()[-1].startswith(f"GET /passeur/{DOSSIER}/{INDEX_NAME} 200")


def test_wrong_password_is_a_clear_error_and_loses_nothing(home: Home, nginx: Nginx, rig: Rig,
                                                          store: CredentialStore) -> None:
    first = home.update(1)
    publish_cli(home, nginx.repo, first)
    rig.poll()
    publish_cli(home, nginx.repo, home.update(2))
    store.set(DOSSIER, Credential(BASIC, "wrong", USER))
    restarted = make_rig(home, credentials=store)  # the service restarted: keyring read
    try:
        report = restarted.poll()
        event = restarted.events.wait_for(SourceFailed)[0]
    finally:
        restarted.close()
    assert [str(f.code) for f in report.failures] == ["auth-failed"]
    assert event.code == "auth-failed"
    assert f"passeur login {DOSSIER}" in event.message
    assert "wrong" not in event.message
    assert [i.name for i in home.context().queue.pending()] == [first.name]
    assert home.context().queue.check_integrity() == []


def test_another_dossiers_credentials_are_refused(home: Home, nginx: Nginx, rig: Rig,
                                                 store: CredentialStore) -> None:
    nginx.add_user("1234567", "voisin", "autre")
    publish_cli(home, nginx.repo, home.update(1))
    store.set(DOSSIER, Credential(BASIC, "autre", "voisin"))
    assert [str(f.code) for f in rig.poll().failures] == ["auth-failed"]
    # After a refusal the keyring is read again: a new login is picked up at the next poll.
    store.set(DOSSIER, Credential(BASIC, PASSWORD, USER))
    assert rig.poll().queued


def test_dossier_unknown_on_the_server_is_explained(home: Home, nginx: Nginx,
                                                   rig: Rig) -> None:
    # Credentials are set up for the dossier, but nothing was ever published for it.
    report = rig.poll()
    assert [str(f.code) for f in report.failures] == ["dossier-not-found"]
    assert DOSSIER in rig.events.wait_for(SourceFailed)[0].message


def test_interrupted_download_resumes_with_a_range_request(home: Home, nginx: Nginx, rig: Rig,
                                                          store: CredentialStore) -> None:
    update = home.update(1, store=True, contents={"ecritures.xml": os.urandom(3 << 20)})
    publish_cli(home, nginx.repo, update)
    entry = IndexEntry(update.name, 1, update.stat().st_size,
                       sha256_file(update))
    client = WebClient(nginx.base_url, store, FAST)
    part = rig.poller.part_path(DOSSIER, entry)
    part.parent.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    with pytest.raises(WebError, match="interrupted"):
        client.download(DOSSIER, entry, part, progress=lambda _n: stop.set(), stop=stop)
    client.close()
    held = part.stat().st_size
    assert 0 < held < entry.size

    report = rig.poll()
    assert report.queued == [update.name]
    ranged = [line for line in nginx.access_log() if "range=bytes=" in line]
    assert ranged == [f"GET /passeur/{DOSSIER}/{update.name} 206 range=bytes={held}- inm= "
                      f"sent={entry.size - held}"]


def test_upload_location_takes_put_with_auth(home: Home, nginx: Nginx) -> None:
    Repository(nginx.repo, home.key).refresh(DOSSIER)  # creates the dossier's upload folder
    url = f"{nginx.base_url}{DOSSIER}/upload/{DOSSIER}-20201027171147.wvz"
    body = b"PK\x03\x04 dossier"
    assert requests.put(url, data=body, timeout=5).status_code == 401
    answer = requests.put(url, data=body, auth=(USER, PASSWORD), timeout=5)
    assert answer.status_code == 201
    assert (nginx.repo / DOSSIER / "upload" / f"{DOSSIER}-20201027171147.wvz").read_bytes() \
        == body
    # Farmers drop files there; they cannot read them back (nor anyone else's).
    assert requests.get(url, auth=(USER, PASSWORD), timeout=5).status_code == 403
    index = f"{nginx.base_url}{DOSSIER}/{INDEX_NAME}"
    assert requests.put(index, data=b"x", auth=(USER, PASSWORD), timeout=5).status_code == 403


@pytest.fixture
def tls_nginx(tmp_path: Path) -> Iterator[tuple[Nginx, Path]]:
    """nginx over TLS with a certificate from a private CA; yields it and the CA file."""
    tls = make_tls(tmp_path / "tls")
    server = Nginx(tmp_path / "nginx-tls", tls)
    server.add_user(DOSSIER, USER, PASSWORD)
    server.start()
    yield server, tls.ca_cert
    server.stop()


def test_tls_with_the_firms_ca_bundle(home: Home, tls_nginx: tuple[Nginx, Path],
                                      store: CredentialStore) -> None:
    server, ca = tls_nginx
    update = home.update(1)
    publish_cli(home, server.repo, update)
    configure_web(home, server.base_url, ca_bundle=ca)
    store.set(DOSSIER, Credential(BASIC, PASSWORD, USER))
    rig = make_rig(home, credentials=store)
    try:
        report = rig.poll()
    finally:
        rig.close()
    assert server.base_url.startswith("https://")
    assert report.ok, report.failures
    assert report.queued == [update.name]


def test_tls_without_the_ca_is_refused(home: Home, tls_nginx: tuple[Nginx, Path],
                                       store: CredentialStore) -> None:
    server, _ca = tls_nginx
    publish_cli(home, server.repo, home.update(1))
    configure_web(home, server.base_url)
    store.set(DOSSIER, Credential(BASIC, PASSWORD, USER))
    rig = make_rig(home, credentials=store)
    try:
        report = rig.poll()
    finally:
        rig.close()
    assert [str(f.code) for f in report.failures] == ["tls-failed"]
    assert rig.events.wait_for(SourceFailed)[0].code == "tls-failed"
    assert home.context().queue.pending() == []
    # Nothing was sent in clear: nginx never saw a request.
    assert server.access_log() == []


def run_cli(home: Home, keyring_dir: Path, *args: str,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(home.env, **keyring_env(keyring_dir))
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, text=True,
                          capture_output=True, input=stdin, timeout=60)


def test_login_and_receive_through_the_cli(home: Home, nginx: Nginx, tmp_path: Path) -> None:
    configure_web(home, nginx.base_url)
    update = home.update(1, etalon=True)
    publish_cli(home, nginx.repo, update)
    keyrings = tmp_path / "xdg"

    refused = run_cli(home, keyrings, "login", DOSSIER, "--user", USER, "--password-stdin",
                      stdin="faux\n")
    assert refused.returncode == 1
    assert f"passeur login {DOSSIER}" in refused.stderr

    accepted = run_cli(home, keyrings, "login", DOSSIER, "--user", USER, "--password-stdin",
                       stdin=PASSWORD + "\n")
    assert accepted.returncode == 0, accepted.stderr
    assert PASSWORD not in (home.root / "config.toml").read_text()

    received = run_cli(home, keyrings, "receive")
    assert received.returncode == 0, received.stderr
    assert update.name in received.stderr
    assert "100 %" in received.stderr
    again = run_cli(home, keyrings, "receive", "--json")
    assert again.returncode == 0
    assert '"changed": false' in again.stdout
    assert nginx.access_log()[-1].startswith(f"GET /passeur/{DOSSIER}/{INDEX_NAME} 304")
    listed = run_cli(home, keyrings, "queue", "--json")
    assert '"etalon": true' in listed.stdout
