"""Hashing members while a file is written: the same verdicts as reading them again."""

from __future__ import annotations

import hashlib
import io
import random
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import daemon.exchange
from daemon.bus import EventBus
from daemon.errors import Rejected
from daemon.exchange import new_digest, verify_exchange
from daemon.intake import Batch
from daemon.keys import SigningKey
from daemon.manifest import Manifest
from daemon.queue import Outcome
from daemon.removable.handover import Handover, Offer, exchange_name
from daemon.zipstream import LOCAL_HEADER, LOCAL_MAGIC, ExchangeDigest, MemberHash
from tests import hostile
from tests.helpers import Home, Unseekable

QUICK = settings(max_examples=60, deadline=None)


def fed(data: bytes, cuts: list[int]) -> ExchangeDigest:
    """Feed `data` to a fresh digest in pieces cut at `cuts`."""
    digest = new_digest()
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        digest.update(data[start:cut])
        start = cut
    return digest


def verdict(path: Path, key: SigningKey, hashed: Mapping[int, MemberHash] | None = None,
            name: str | None = None) -> Manifest | str:
    """Return the manifest, or the rejection's code."""
    try:
        return verify_exchange(path, {key.public.key_id: key.public}, name, hashed=hashed)
    except Rejected as rejection:
        return str(rejection.code)


def member_offsets(path: Path) -> dict[int, str]:
    """Map each member's data offset to the SHA-256 of its content, read the plain way."""
    hashes = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with open(path, "rb") as handle:
                handle.seek(info.header_offset + 26)
                name_length = int.from_bytes(handle.read(2), "little")
                extra_length = int.from_bytes(handle.read(2), "little")
            start = info.header_offset + 30 + name_length + extra_length
            hashes[start] = hashlib.sha256(archive.read(info)).hexdigest()
    return hashes


@pytest.mark.parametrize("store", [False, True], ids=["deflated", "stored"])
def test_every_member_is_hashed_where_it_lies(home: Home, store: bool) -> None:
    rng = random.Random(5)
    update = home.update(store=store, contents={
        "ecritures.xml": b"<e/>" * 50_000,
        "associated_documents/scan.pdf": rng.randbytes(300_000),
        "situations/vide.xml": b"",
    })
    data = update.read_bytes()
    digest = fed(data, [rng.randrange(len(data)) for _ in range(40)])
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    expected = member_offsets(update)
    assert {start: hashed.sha256 for start, hashed in digest.members.items()} == expected


@QUICK
@given(st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=30))
def test_any_cutting_of_the_stream_gives_the_same_hashes(cuts: list[int]) -> None:
    update = SAMPLE.update
    data = SAMPLE.data
    digest = fed(data, [cut % (len(data) + 1) for cut in cuts])
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert {start: hashed.sha256 for start, hashed in digest.members.items()} \
        == member_offsets(update)


class _Sample:
    update: Path
    data: bytes
    key: SigningKey


SAMPLE = _Sample()


@pytest.fixture(autouse=True, scope="module")
def _sample(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> None:
    from tests.helpers import make_home

    home = make_home(tmp_path_factory.mktemp("sample") / "home", signing_key)
    rng = random.Random(11)
    SAMPLE.update = home.update(contents={
        "ecritures.xml": b"<e/>" * 20_000,
        "associated_documents/a.pdf": rng.randbytes(100_000),
    })
    SAMPLE.data = SAMPLE.update.read_bytes()
    SAMPLE.key = signing_key


@pytest.mark.parametrize("case", hostile.HOSTILE, ids=lambda case: case.id)
def test_a_hostile_file_earns_the_same_verdict_with_or_without_the_shortcut(
        case: hostile.Case, signing_key: SigningKey, tmp_path: Path) -> None:
    crafted = case.build(signing_key)
    path = tmp_path / crafted.name
    path.write_bytes(crafted.data)
    digest = fed(crafted.data, [len(crafted.data) // 3, len(crafted.data) // 2])
    # (The intake's own checks, a dossier not configured or a rollback, come after.)
    with_shortcut = verdict(path, signing_key, digest.members, crafted.name)
    assert with_shortcut == verdict(path, signing_key, None, crafted.name)


def test_the_shortcut_spares_reading_the_members_again(
        home: Home, signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch) -> None:
    update = home.update(contents={"ecritures.xml": b"<e/>" * 1000, "b.xml": b"<b/>"})
    read: list[str] = []
    raw_chunks = daemon.exchange._raw_chunks

    def counting(handle: io.BufferedReader, entry: daemon.exchange._Entry) -> Iterator[bytes]:
        read.append(entry.info.filename)
        return raw_chunks(handle, entry)

    monkeypatch.setattr(daemon.exchange, "_raw_chunks", counting)
    digest = fed(update.read_bytes(), [])
    assert isinstance(verdict(update, signing_key, digest.members), Manifest)
    assert sorted(read) == ["manifest.json", "manifest.sig"]
    read.clear()
    assert isinstance(verdict(update, signing_key), Manifest)
    assert sorted(read) == ["b.xml", "ecritures.xml", "manifest.json", "manifest.sig"]


def test_every_way_in_hashes_the_members_on_the_way(
        home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []
    raw_chunks = daemon.exchange._raw_chunks

    def counting(handle: io.BufferedReader, entry: daemon.exchange._Entry) -> Iterator[bytes]:
        read.append(entry.info.filename)
        return raw_chunks(handle, entry)

    monkeypatch.setattr(daemon.exchange, "_raw_chunks", counting)
    ctx = home.context()
    # By path (the command line, the tray's import): through fsutil.copy_hashing.
    assert ctx.intake.import_path(home.update(), "manual").outcome is Outcome.QUEUED
    # From a key or a watched folder: through the hand-over's own copy.
    update = home.update()
    name = exchange_name(update.name)
    assert name is not None
    batch = Batch("folder:test")
    offer = Handover(ctx.intake, EventBus()).offer(update, name, batch.origin, batch, {},
                                                   lambda: True)
    assert offer is Offer.TAKEN
    assert batch.queued == [update.name]
    assert sorted(read) == ["manifest.json", "manifest.json", "manifest.sig", "manifest.sig"]


def test_bytes_altered_on_the_way_are_caught(home: Home, signing_key: SigningKey) -> None:
    update = home.update(store=True, contents={"ecritures.xml": b"<e/>" * 1000})
    data = bytearray(update.read_bytes())
    data[min(fed(bytes(data), []).members) + 10] ^= 0xFF
    update.write_bytes(bytes(data))
    # Hashed as they arrived, the altered bytes do not match the signed manifest: the
    # member is read again, and refused for its hash as it would be without the shortcut.
    digest = fed(bytes(data), [])
    assert digest.members
    assert verdict(update, signing_key, digest.members) == "member-hash"
    assert verdict(update, signing_key) == "member-hash"


def test_a_layout_it_cannot_follow_leaves_the_members_to_the_reader() -> None:
    out = Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ecritures.xml", b"<e/>" * 100)
    assert zipfile.ZipFile(io.BytesIO(bytes(out.data))).testzip() is None
    # Streamed ZIPs put sizes after the data (a data descriptor): nothing is hashed ahead.
    assert fed(bytes(out.data), []).members == {}


def _local_entry(name: bytes, payload: bytes) -> bytes:
    return LOCAL_HEADER.pack(LOCAL_MAGIC, 20, 0, zipfile.ZIP_STORED, 0, 0,
                             zlib.crc32(payload), len(payload), len(payload), len(name),
                             0) + name + payload


def test_empty_names_and_odd_headers_never_stall_it() -> None:
    # A header with an empty name and no extra field is complete in its 30 bytes; an
    # earlier version waited for "the rest" forever.
    data = (_local_entry(b"", b"evil") + _local_entry(b"a", b"") + _local_entry(b"", b"")
            + b"PK\x01\x02" + bytes(60))
    for cut in range(len(data) + 1):
        finished = threading.Event()

        def feed(cut: int = cut, finished: threading.Event = finished) -> None:
            fed(data, [cut])
            finished.set()

        threading.Thread(target=feed, daemon=True).start()
        assert finished.wait(5), f"stalled with a cut at {cut}"
    digest = fed(data, [])
    assert [hashed.sha256 for hashed in digest.members.values()] == [
        hashlib.sha256(b"evil").hexdigest(), hashlib.sha256(b"").hexdigest(),
        hashlib.sha256(b"").hexdigest()]


# Where damage is put: the first headers, the manifest and central directory at the end,
# or anywhere.
_REGIONS = {"head": lambda n, size: n % 160, "tail": lambda n, size: size - 1 - n % 2500,
            "any": lambda n, size: n % size}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(_REGIONS)), st.integers(min_value=0),
                          st.integers(min_value=0, max_value=255)), min_size=1, max_size=8),
       st.lists(st.integers(min_value=0), max_size=6))
def test_damaged_files_get_the_same_verdict_and_never_stall(
        damage: list[tuple[str, int, int]], cuts: list[int]) -> None:
    data = bytearray(SAMPLE.data)
    for region, offset, value in damage:
        data[_REGIONS[region](offset, len(data))] = value
    damaged = bytes(data)
    result: list[ExchangeDigest] = []
    worker = threading.Thread(
        target=lambda: result.append(fed(damaged, [c % (len(damaged) + 1) for c in cuts])),
        daemon=True)
    worker.start()
    worker.join(10)
    assert result, "the digest stalled"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / SAMPLE.update.name
        path.write_bytes(damaged)
        assert verdict(path, SAMPLE.key, result[0].members) == verdict(path, SAMPLE.key)
