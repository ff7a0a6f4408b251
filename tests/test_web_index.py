"""The signed index and the accountant's `publish`: signatures, expiry, versions, refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.keys import MANIFEST_CONTEXT, PublicKey, SigningKey
from daemon.web.failures import Failure, WebError
from daemon.web.index import (
    INDEX_CONTEXT,
    INDEX_NAME,
    Index,
    IndexEntry,
    parse_signed,
    sign_index,
    verify_index,
)
from daemon.web.publish import PublishError, Repository
from tests.helpers import DOSSIER, Home

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
SHA = "ab" * 32


def an_index(version: int = 1, files: tuple[IndexEntry, ...] = (), dossier: str = DOSSIER,
             expires: timedelta = timedelta(days=7)) -> Index:
    return Index(dossier, version, NOW, NOW + expires, files)


def trusted(key: SigningKey) -> dict[str, PublicKey]:
    return {key.public.key_id: key.public}


def failure_of(data: bytes, key: SigningKey, now: datetime = NOW,
               dossier: str = DOSSIER) -> str:
    with pytest.raises(WebError) as caught:
        verify_index(data, trusted(key), dossier, now)
    return str(caught.value.code)


def test_signed_index_round_trips(signing_key: SigningKey) -> None:
    entry = IndexEntry(f"{DOSSIER}-20201027172021.wwz", 3, 1234, SHA, True)
    index = an_index(5, (entry,))
    verified = verify_index(sign_index(index, signing_key), trusted(signing_key),
                            DOSSIER, NOW)
    assert verified.index == index
    assert verified.key_id == signing_key.public.key_id
    assert verified.index.entry(entry.name) == entry


def test_index_signature_is_domain_separated(signing_key: SigningKey) -> None:
    index = an_index()
    envelope = json.loads(sign_index(index, signing_key))
    signed = envelope["signed"].encode()
    # A signature made as if for a manifest does not pass for an index.
    import base64

    envelope["signature"] = base64.b64encode(
        signing_key.sign(MANIFEST_CONTEXT + signed)).decode()
    assert failure_of(json.dumps(envelope).encode(), signing_key) == "index-signature-bad"
    assert INDEX_CONTEXT != MANIFEST_CONTEXT


def test_unknown_key_and_expiry(signing_key: SigningKey) -> None:
    stranger = SigningKey.generate()
    data = sign_index(an_index(), stranger)
    assert failure_of(data, signing_key) == "index-key-unknown"
    data = sign_index(an_index(), signing_key)
    assert failure_of(data, signing_key, now=NOW + timedelta(days=7)) == "index-expired"
    verify_index(data, trusted(signing_key), DOSSIER,
                 NOW + timedelta(days=6, hours=23))


def test_index_of_another_dossier_is_refused(signing_key: SigningKey) -> None:
    data = sign_index(an_index(dossier="1234567"), signing_key)
    assert failure_of(data, signing_key) == "index-malformed"


@pytest.mark.parametrize("name", [
    "../8502182-20201027172021.wwz",
    "8502182-20201027172021.WWZ",
    "8502182-20201027172021.wvz",
    "1234567-20201027172021.wwz",
    "8502182-20201327172021.wwz",
    "index.json",
])
def test_entries_with_unsafe_or_foreign_names_are_refused(name: str) -> None:
    signed = an_index().to_dict()
    signed["files"] = [{"name": name, "sequence": 1, "size": 1, "sha256": SHA,
                        "etalon": False}]
    with pytest.raises(WebError) as caught:
        parse_signed(json.dumps(signed).encode(), DOSSIER)
    assert caught.value.code is Failure.INDEX_MALFORMED


@pytest.mark.parametrize(("field", "value"), [
    ("sequence", True), ("sequence", -1), ("size", "12"), ("sha256", "AB" * 32),
    ("sha256", "ab"), ("etalon", 1),
])
def test_entries_with_wrong_fields_are_refused(field: str, value: object) -> None:
    entry = {"name": f"{DOSSIER}-20201027172021.wwz", "sequence": 1, "size": 1,
             "sha256": SHA, "etalon": False, field: value}
    signed = an_index().to_dict()
    signed["files"] = [entry]
    with pytest.raises(WebError, match="index-malformed"):
        parse_signed(json.dumps(signed).encode(), DOSSIER)


def test_index_fields_are_checked() -> None:
    for change in ({"version": 0}, {"version": True}, {"format": 2},
                   {"expires_at": "2024-02-01T00:00:00Z"}, {"published_at": "yesterday"},
                   {"expires_at": "2024-03-08T12:00:00"}):
        signed = {**an_index().to_dict(), **change}
        with pytest.raises(WebError, match="index-malformed"):
            parse_signed(json.dumps(signed).encode(), DOSSIER)
    twice = an_index().to_dict()
    twice["files"] = [{"name": f"{DOSSIER}-2020102717202{n}.wwz", "sequence": 1, "size": 1,
                       "sha256": SHA, "etalon": False} for n in (1, 2)]
    with pytest.raises(WebError, match="sequence listed twice"):
        parse_signed(json.dumps(twice).encode(), DOSSIER)


def test_garbage_is_malformed(signing_key: SigningKey) -> None:
    for data in (b"", b"<html>", b"[]", b'{"signed": 1}', b"\xff\xfe"):
        assert failure_of(data, signing_key) == "index-malformed"


# ---------------------------------------------------------------- publishing


def read_index(repo: Repository, key: SigningKey) -> Index:
    data = (repo.root / DOSSIER / INDEX_NAME).read_bytes()
    return verify_index(data, trusted(key), DOSSIER, datetime.now(UTC)).index


def test_publish_adds_files_and_version_only_grows(home: Home, repo: Repository) -> None:
    first, second = home.update(1), home.update(2, etalon=True)
    assert repo.publish(first).index.version == 1
    result = repo.publish(second)
    assert result.added
    index = read_index(repo, home.key)
    assert index.version == 2
    assert [(e.name, e.sequence, e.etalon) for e in index.files] == [
        (first.name, 1, False), (second.name, 2, True)]
    assert (repo.root / DOSSIER / "upload").is_dir()
    again = repo.publish(second)
    assert not again.added
    assert again.index.version == 3
    assert read_index(repo, home.key).files == index.files


def test_publish_refuses_what_farmers_would_refuse(home: Home, repo: Repository) -> None:
    repo.publish(home.update(5))
    with pytest.raises(PublishError, match="inférieur au dernier publié"):
        repo.publish(home.update(4))
    with pytest.raises(PublishError, match="déjà pris"):
        repo.publish(home.update(5, when=datetime(2021, 1, 1, tzinfo=UTC)))
    with pytest.raises(PublishError, match="ne peut pas être publié"):
        repo.publish(home.update(6, key=SigningKey.generate()))
    from daemon.naming import Kind

    with pytest.raises(PublishError, match="seules les mises à jour"):
        repo.publish(home.update(7, kind=Kind.DOSSIER))
    assert [e.sequence for e in read_index(repo, home.key).files] == [5]


def test_refresh_resigns_and_drops_removed_files(home: Home, repo: Repository) -> None:
    first, second = home.update(1), home.update(2)
    repo.publish(first)
    repo.publish(second, now=datetime.now(UTC) - timedelta(days=6))
    (repo.root / DOSSIER / first.name).unlink()
    result = repo.refresh(DOSSIER)
    assert result.index.version == 3
    assert result.index.expires_at > datetime.now(UTC) + timedelta(days=6)
    assert [e.name for e in read_index(repo, home.key).files] == [second.name]
    assert repo.dossiers() == [DOSSIER]


def test_publish_cli(home: Home, tmp_path: Path) -> None:
    key_file = tmp_path / "firm.pem"
    home.key.save(key_file)
    repo = tmp_path / "www"
    update = home.update(1)
    nothing = home.passeur("publish", "--repo", str(repo), "--key", str(key_file))
    assert nothing.returncode == 2
    done = home.passeur("publish", "--repo", str(repo), "--key", str(key_file), str(update),
                        "--expires-days", "2")
    assert done.returncode == 0, done.stderr
    assert update.name in done.stdout
    index = read_index(Repository(repo, home.key), home.key)
    assert index.expires_at - index.published_at == timedelta(days=2)
    refreshed = home.passeur("publish", "--repo", str(repo), "--key", str(key_file))
    assert refreshed.returncode == 0
    assert read_index(Repository(repo, home.key), home.key).version == 2
    older = home.update(0)
    refused = home.passeur("publish", "--repo", str(repo), "--key", str(key_file), str(older))
    assert refused.returncode == 1
    assert older.name in refused.stderr
