"""The firm's `collect` on upload folders as a server leaves them: whole uploads are verified
and published with a signed receipt; hostile ones are refused with their reason, left in
place, and nothing is ever written outside the inbox and the dossier's folder. Then the
receipts in the index, as the farmer's side reads them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from daemon import i18n
from daemon.bus import EventBus
from daemon.events import ReceiptReceived
from daemon.fsutil import sha256_file
from daemon.keys import SigningKey
from daemon.send.parts import (
    PARTS_NAME,
    SIGNATURE_NAME,
    PartList,
    make_part_list,
    part_name,
)
from daemon.web.collect import LOCK_NAME, PINS_NAME, Status, collect
from daemon.web.failures import WebError
from daemon.web.index import INDEX_NAME, Index, Receipt, sign_index, verify_index
from daemon.web.publish import Repository
from daemon.web.receipts import ReceiptStore, note_receipts
from tests.faultserver import Recorder
from tests.helpers import DOSSIER, Home
from tests.uploads import NOW, lay_out_upload, make_wvz, part_hashes, upload_path

PART = 16 << 10
SIZE = 5 * PART + 1234


@pytest.fixture(scope="module")
def farmer() -> SigningKey:
    """The farmer installation's key."""
    return SigningKey.generate()


@pytest.fixture
def firm(home: Home) -> SigningKey:
    """The accountant firm's key (the one the farmer's home trusts)."""
    return home.key


@pytest.fixture
def repo(tmp_path: Path, firm: SigningKey) -> Path:
    """A repository where dossier 8502182 has its index and upload location."""
    root = tmp_path / "repo"
    Repository(root, firm).refresh(DOSSIER)
    return root


@pytest.fixture
def wvz(tmp_path: Path, farmer: SigningKey) -> Path:
    """The farmer's real signed dossier file."""
    return make_wvz(tmp_path / "packed", farmer, SIZE - 800)


def run(repo: Path, tmp_path: Path, firm: SigningKey, **options: object) -> list[tuple[str, str]]:
    report = collect(repo, tmp_path / "inbox", firm, now=lambda: NOW, **options)  # type: ignore[arg-type]
    return [(str(o.status), o.code) for o in report.outcomes]


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with what it is (and a file's SHA-256)."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            found[relative] = "link"
        elif path.is_dir():
            found[relative] = "dir"
        else:
            found[relative] = sha256_file(path)
    return found


def receipts_of(repo: Path, firm: SigningKey) -> list[Receipt]:
    data = (repo / DOSSIER / INDEX_NAME).read_bytes()
    verified = verify_index(data, {firm.public.key_id: firm.public}, DOSSIER, NOW)
    return list(verified.index.receipts)


# ---------------------------------------------------------------- whole uploads


def test_a_complete_upload_is_collected_with_a_signed_receipt(repo: Path, tmp_path: Path,
                                                              firm: SigningKey,
                                                              farmer: SigningKey,
                                                              wvz: Path) -> None:
    lay_out_upload(repo, wvz, farmer, PART)
    assert run(repo, tmp_path, firm) == [("collected", "")]
    assert (tmp_path / "inbox" / wvz.name).read_bytes() == wvz.read_bytes()
    assert not upload_path(repo, wvz.name).exists()
    assert receipts_of(repo, firm) == [
        Receipt(DOSSIER, wvz.name, sha256_file(wvz), "2024-03-01T12:00:00Z")]
    pins = json.loads((repo / DOSSIER / PINS_NAME).read_text())
    assert [k["public_key"] for k in pins["keys"]] == [farmer.public.text]
    # Nothing is left to do, and no temporary file anywhere.
    assert run(repo, tmp_path, firm) == []
    assert [p.name for p in (tmp_path / "inbox").iterdir()] == [wvz.name]


def test_the_report_is_per_dossier(repo: Path, tmp_path: Path, firm: SigningKey,
                                   farmer: SigningKey, wvz: Path) -> None:
    Repository(repo, firm).refresh("1234567")
    other = make_wvz(tmp_path / "other", farmer, 5000, dossier="1234567")
    lay_out_upload(repo, wvz, farmer, PART)
    lay_out_upload(repo, other, farmer, PART, dossier="1234567")
    lay_out_upload(repo, make_wvz(tmp_path / "third", farmer, 3000, minute=5), farmer, PART,
                   signed=False)
    report = collect(repo, tmp_path / "inbox", firm, now=lambda: NOW)
    grouped = report.by_dossier()
    assert [o.status for o in grouped["1234567"]] == [Status.COLLECTED]
    assert sorted(o.status for o in grouped[DOSSIER]) == [Status.COLLECTED, Status.WAITING]
    assert report.ok


def test_collect_keeps_the_published_updates_and_publish_keeps_the_receipts(
        home: Home, repo: Path, tmp_path: Path, firm: SigningKey, farmer: SigningKey,
        wvz: Path) -> None:
    publisher = Repository(repo, firm)
    publisher.publish(home.update(1))
    lay_out_upload(repo, wvz, farmer, PART)
    assert run(repo, tmp_path, firm) == [("collected", "")]
    publisher.publish(home.update(2))
    publisher.refresh(DOSSIER)
    data = (repo / DOSSIER / INDEX_NAME).read_bytes()
    index = verify_index(data, {firm.public.key_id: firm.public}, DOSSIER, NOW).index
    assert [e.sequence for e in index.files] == [1, 2]
    assert [r.name for r in index.receipts] == [wvz.name]


# ---------------------------------------------------------------- incomplete uploads


def test_incomplete_uploads_wait_then_abandoned_ones_are_removed(repo: Path, tmp_path: Path,
                                                                 firm: SigningKey,
                                                                 farmer: SigningKey,
                                                                 wvz: Path) -> None:
    folder = lay_out_upload(repo, wvz, farmer, PART, signed=False)
    other = make_wvz(tmp_path / "other", farmer, 5000, minute=3)
    second = lay_out_upload(repo, other, farmer, PART)
    (second / PARTS_NAME).unlink()  # the signature arrived, the list not: still incomplete
    real_now = NOW.fromtimestamp(folder.stat().st_mtime, NOW.tzinfo)
    report = collect(repo, tmp_path / "inbox", firm, now=lambda: real_now)
    assert [o.status for o in report.outcomes] == [Status.WAITING, Status.WAITING]
    assert folder.is_dir()
    assert second.is_dir()
    assert not (tmp_path / "inbox").exists()

    later = real_now + timedelta(days=7, minutes=1)
    report = collect(repo, tmp_path / "inbox", firm, now=lambda: later)
    assert [o.status for o in report.outcomes] == [Status.ABANDONED, Status.ABANDONED]
    assert not folder.exists()
    assert not second.exists()
    assert receipts_of_unverified(repo) == []


def receipts_of_unverified(repo: Path) -> list[object]:
    signed = json.loads((repo / DOSSIER / INDEX_NAME).read_bytes())["signed"]
    return list(json.loads(signed).get("receipts", []))


# ---------------------------------------------------------------- hostile uploads


def _tamper_part(folder: Path) -> None:
    part = folder / part_name(2)
    part.write_bytes(os.urandom(part.stat().st_size))


def _shorten_part(folder: Path) -> None:
    part = folder / part_name(3)
    part.write_bytes(part.read_bytes()[:-1])


def _foreign_signature(folder: Path) -> None:
    body = (folder / PARTS_NAME).read_bytes()
    intruder = SigningKey.generate()
    from daemon.send.parts import PARTS_CONTEXT

    (folder / SIGNATURE_NAME).write_bytes(
        base64.b64encode(intruder.sign(PARTS_CONTEXT + body)))


def _altered_list(folder: Path) -> None:
    body = json.loads((folder / PARTS_NAME).read_bytes())
    body["parts"][0] = hashlib.sha256(b"other").hexdigest()
    (folder / PARTS_NAME).write_bytes(json.dumps(body, indent=1, sort_keys=True).encode())


def _link_part(folder: Path) -> None:
    secret = folder.parents[3] / "secret.txt"
    secret.write_text("the firm's own file")
    (folder / part_name(1)).unlink()
    (folder / part_name(1)).symlink_to(secret)


def _folder_part(folder: Path) -> None:
    (folder / part_name(2)).unlink()
    (folder / part_name(2)).mkdir()


HOSTILE: dict[str, tuple[Callable[[Path], object], str]] = {
    "a part with the wrong bytes": (_tamper_part, "part-hash"),
    "a part one byte short": (_shorten_part, "part-size"),
    "a missing part": (lambda f: (f / part_name(4)).unlink(), "part-missing"),
    "an extra part": (lambda f: (f / "part-00099").write_bytes(b"x"), "part-extra"),
    "a file that is no part": (lambda f: (f / "notes.txt").write_bytes(b"x"),
                               "unexpected-file"),
    "signed by another key": (_foreign_signature, "parts-signature-bad"),
    "a signature that is not one": (
        lambda f: (f / SIGNATURE_NAME).write_bytes(b"not base64!"), "parts-signature-bad"),
    "a list changed after signing": (_altered_list, "parts-signature-bad"),
    "a list of a megabyte": (
        lambda f: (f / PARTS_NAME).write_bytes(b" " * (1 << 20) + b"{}"), "parts-too-large"),
    "a list that is not JSON": (lambda f: (f / PARTS_NAME).write_bytes(b"{"),
                                "parts-malformed"),
    "a part that is a link": (_link_part, "upload-link"),
    "a part that is a folder": (_folder_part, "unexpected-file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_uploads_are_refused_left_in_place_and_nothing_written(
        case: str, repo: Path, tmp_path: Path, firm: SigningKey, farmer: SigningKey,
        wvz: Path) -> None:
    i18n.setup("en")
    change, code = HOSTILE[case]
    folder = lay_out_upload(repo, wvz, farmer, PART)
    change(folder)
    before = snapshot(tmp_path)
    report = collect(repo, tmp_path / "inbox", firm, now=lambda: NOW)
    assert [(o.status, o.code) for o in report.outcomes] == [(Status.REFUSED, code)]
    assert report.outcomes[0].reason.startswith(wvz.name.removesuffix(".wvz"))
    assert not report.ok
    assert_nothing_written(before, snapshot(tmp_path))


def assert_nothing_written(before: dict[str, str], after: dict[str, str]) -> None:
    """Only the dossier's lock file and an empty inbox may have appeared."""
    appeared = {path: kind for path, kind in after.items() if before.get(path) != kind}
    gone = set(before) - set(after)
    assert gone == set()
    assert set(appeared) <= {f"repo/{DOSSIER}/{LOCK_NAME}", "inbox"}, appeared
    assert appeared.get("inbox", "dir") == "dir"


TRICKS = ["../../../evil.wvz", "/tmp/evil.wvz", "8502182-20201027172021.wvz\x00.txt",
          "..\\8502182-20201027172021.wvz", "8502182-20201027172021.wvz/../x.wvz",
          "1234567-20201027172021.wvz", "8502182-20201027172021.WVZ",
          "8502182-20201027172022.wvz", "8502182-20201027172021.wwz", ""]


@pytest.mark.parametrize("name", TRICKS)
def test_names_with_path_tricks_are_refused(name: str, repo: Path, tmp_path: Path,
                                            firm: SigningKey, farmer: SigningKey,
                                            wvz: Path) -> None:
    parts = make_part_list(name, wvz.stat().st_size, sha256_file(wvz), PART,
                           part_hashes(wvz, PART), farmer, NOW)
    lay_out_upload(repo, wvz, farmer, PART, parts=parts)
    before = snapshot(tmp_path)
    assert run(repo, tmp_path, firm) == [("refused", "parts-name-unsafe")]
    assert_nothing_written(before, snapshot(tmp_path))


def _signed_list(wvz: Path, key: SigningKey, **changes: object) -> PartList:
    values: dict[str, object] = {
        "name": wvz.name, "size": wvz.stat().st_size, "sha256": sha256_file(wvz),
        "part_size": PART, "parts": part_hashes(wvz, PART), "key": key, "now": NOW}
    values.update(changes)
    return make_part_list(**values)  # type: ignore[arg-type]


def test_right_parts_but_the_wrong_whole_is_refused(repo: Path, tmp_path: Path,
                                                    firm: SigningKey, farmer: SigningKey,
                                                    wvz: Path) -> None:
    lay_out_upload(repo, wvz, farmer, PART, parts=_signed_list(wvz, farmer, sha256="0" * 64))
    before = snapshot(tmp_path)
    assert run(repo, tmp_path, firm) == [("refused", "file-hash")]
    assert_nothing_written(before, snapshot(tmp_path))


def test_a_whole_upload_that_is_no_exchange_file_is_refused(repo: Path, tmp_path: Path,
                                                            firm: SigningKey,
                                                            farmer: SigningKey,
                                                            wvz: Path) -> None:
    wvz.write_bytes(os.urandom(wvz.stat().st_size))
    lay_out_upload(repo, wvz, farmer, PART)
    before = snapshot(tmp_path)
    assert run(repo, tmp_path, firm) == [("refused", "exchange-refused")]
    assert_nothing_written(before, snapshot(tmp_path))


def test_oversized_claims_are_refused_before_reading(repo: Path, tmp_path: Path,
                                                     firm: SigningKey, farmer: SigningKey,
                                                     wvz: Path) -> None:
    count = 20_000
    huge = make_part_list(wvz.name, count * PART, "a" * 64, PART, ["b" * 64] * count,
                          farmer, NOW)
    lay_out_upload(repo, wvz, farmer, PART, parts=huge)
    assert run(repo, tmp_path, firm) == [("refused", "parts-too-large")]


def test_a_self_signed_list_for_another_farmers_file_pins_nothing(repo: Path, tmp_path: Path,
                                                                  firm: SigningKey,
                                                                  farmer: SigningKey,
                                                                  wvz: Path) -> None:
    # First use: an intruder signs the list with its own key, but the file inside is the
    # farmer's: its manifest is not signed by the key the list names.
    intruder = SigningKey.generate()
    lay_out_upload(repo, wvz, intruder, PART)
    before = snapshot(tmp_path)
    assert run(repo, tmp_path, firm) == [("refused", "exchange-refused")]
    assert_nothing_written(before, snapshot(tmp_path))
    assert not (repo / DOSSIER / PINS_NAME).exists()


def test_another_installation_after_the_first_is_refused(repo: Path, tmp_path: Path,
                                                         firm: SigningKey,
                                                         farmer: SigningKey,
                                                         wvz: Path) -> None:
    i18n.setup("en")
    lay_out_upload(repo, wvz, farmer, PART)
    assert run(repo, tmp_path, firm) == [("collected", "")]
    intruder = SigningKey.generate()
    theirs = make_wvz(tmp_path / "theirs", intruder, 4000, minute=9)
    folder = lay_out_upload(repo, theirs, intruder, PART)
    before = snapshot(tmp_path)
    report = collect(repo, tmp_path / "inbox", firm, now=lambda: NOW)
    assert [(o.status, o.code) for o in report.outcomes] == [(Status.REFUSED,
                                                              "farmer-key-changed")]
    assert intruder.public.key_id in report.outcomes[0].reason
    assert PINS_NAME in report.outcomes[0].reason
    assert folder.is_dir()
    assert_nothing_written(before, snapshot(tmp_path))


@pytest.mark.parametrize("folder_name", ["evil", "1234567-20201027172021",
                                         "8502182-2020102717202"])
def test_folders_that_are_no_uploads_are_left_alone(folder_name: str, repo: Path,
                                                    tmp_path: Path, firm: SigningKey) -> None:
    folder = repo / DOSSIER / "upload" / folder_name
    folder.mkdir()
    (folder / "part-00001").write_bytes(b"x")
    assert run(repo, tmp_path, firm) == [("refused", "upload-name")]
    assert folder.is_dir()


def test_a_linked_upload_folder_is_not_followed(repo: Path, tmp_path: Path, firm: SigningKey,
                                                farmer: SigningKey, wvz: Path) -> None:
    elsewhere = lay_out_upload(tmp_path / "elsewhere", wvz, farmer, PART)
    (repo / DOSSIER / "upload" / elsewhere.name).symlink_to(elsewhere)
    before = snapshot(tmp_path / "elsewhere")
    assert run(repo, tmp_path, firm, abandon_after_s=0) == [("refused", "upload-not-folder")]
    assert snapshot(tmp_path / "elsewhere") == before


# ---------------------------------------------------------------- crashes and repeats


def test_the_same_upload_again_is_a_duplicate_with_one_receipt(repo: Path, tmp_path: Path,
                                                               firm: SigningKey,
                                                               farmer: SigningKey,
                                                               wvz: Path) -> None:
    lay_out_upload(repo, wvz, farmer, PART)
    assert run(repo, tmp_path, firm) == [("collected", "")]
    lay_out_upload(repo, wvz, farmer, PART)  # sent again (the farmer's note was lost)
    assert run(repo, tmp_path, firm) == [("duplicate", "")]
    assert [r.name for r in receipts_of(repo, firm)] == [wvz.name]
    assert not upload_path(repo, wvz.name).exists()


def test_a_crash_once_the_file_was_in_the_inbox_is_settled_next_time(
        repo: Path, tmp_path: Path, firm: SigningKey, farmer: SigningKey, wvz: Path) -> None:
    lay_out_upload(repo, wvz, farmer, PART)
    (tmp_path / "inbox").mkdir()
    shutil.copy(wvz, tmp_path / "inbox" / wvz.name)  # renamed, then the crash: no receipt
    assert run(repo, tmp_path, firm) == [("duplicate", "")]
    assert [r.name for r in receipts_of(repo, firm)] == [wvz.name]


def test_another_file_of_the_same_name_in_the_inbox_is_not_replaced(
        repo: Path, tmp_path: Path, firm: SigningKey, farmer: SigningKey, wvz: Path) -> None:
    lay_out_upload(repo, wvz, farmer, PART)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / wvz.name).write_bytes(b"the firm's own file")
    assert run(repo, tmp_path, firm) == [("refused", "inbox-conflict")]
    assert (tmp_path / "inbox" / wvz.name).read_bytes() == b"the firm's own file"
    assert upload_path(repo, wvz.name).is_dir()


def test_an_inbox_that_cannot_be_written_is_a_failure_tried_again(
        repo: Path, tmp_path: Path, firm: SigningKey, farmer: SigningKey, wvz: Path) -> None:
    lay_out_upload(repo, wvz, farmer, PART)
    (tmp_path / "inbox").write_bytes(b"a file where the inbox should be")
    assert run(repo, tmp_path, firm) == [("failed", "disk-error")]
    assert upload_path(repo, wvz.name).is_dir()
    (tmp_path / "inbox").unlink()
    assert run(repo, tmp_path, firm) == [("collected", "")]


# ---------------------------------------------------------------- receipts in the index


def _index(firm: SigningKey, receipts: object) -> bytes:
    signed = Index(DOSSIER, 3, NOW, NOW + timedelta(days=7), ()).to_dict()
    if receipts is not None:
        signed["receipts"] = receipts
    from daemon.web.index import INDEX_CONTEXT

    text = json.dumps(signed, indent=1, sort_keys=True)
    return json.dumps({"signed": text, "key_id": firm.public.key_id, "signature": base64.b64encode(
        firm.sign(INDEX_CONTEXT + text.encode())).decode()}).encode()


def test_an_index_without_receipts_still_verifies(firm: SigningKey) -> None:
    trusted = {firm.public.key_id: firm.public}
    assert verify_index(_index(firm, None), trusted, DOSSIER, NOW).index.receipts == ()
    plain = sign_index(Index(DOSSIER, 1, NOW, NOW + timedelta(days=1), ()), firm)
    assert "receipts" not in json.loads(plain)["signed"]


@pytest.mark.parametrize("bad", [
    [{"name": "../x.wvz", "sha256": "a" * 64, "received_at": "2024-03-01T12:00:00Z"}],
    [{"name": "8502182-20201027172021.wwz", "sha256": "a" * 64,
      "received_at": "2024-03-01T12:00:00Z"}],
    [{"name": "1234567-20201027172021.wvz", "sha256": "a" * 64,
      "received_at": "2024-03-01T12:00:00Z"}],
    [{"name": "8502182-20201027172021.wvz", "sha256": "A" * 64,
      "received_at": "2024-03-01T12:00:00Z"}],
    [{"name": "8502182-20201027172021.wvz", "sha256": "a" * 64, "received_at": "hier"}],
    [{"name": "8502182-20201027172021.wvz", "sha256": "a" * 64,
      "received_at": "2024-03-01T12:00:00"}],
    "receipts",
    [{"name": "8502182-20201027172021.wvz", "sha256": "a" * 64,
      "received_at": "2024-03-01T12:00:00Z"}] * 101,
])
def test_an_index_with_a_bad_receipt_is_refused(firm: SigningKey, bad: object) -> None:
    with pytest.raises(WebError, match="index-malformed"):
        verify_index(_index(firm, bad), {firm.public.key_id: firm.public},
                     DOSSIER, NOW)


def test_note_receipts_keeps_and_says_each_one_once(home: Home, firm: SigningKey) -> None:
    receipt = {"name": "8502182-20201027172021.wvz", "sha256": "a" * 64,
               "received_at": "2024-03-01T12:00:00Z"}
    trusted = {firm.public.key_id: firm.public}
    first = verify_index(_index(firm, [receipt]), trusted, DOSSIER, NOW)
    second = verify_index(_index(firm, [receipt, {**receipt, "name":
                                                  "8502182-20201027172022.wvz"}]),
                          trusted, DOSSIER, NOW)
    store = ReceiptStore(home.root / "data" / "receipts")
    bus, events = EventBus(), Recorder()
    bus.subscribe("test", events)
    queue = home.context().queue
    try:
        assert [r.name for r in note_receipts(first, store, bus, queue)] == [receipt["name"]]
        assert note_receipts(first, store, bus, queue) == []
        assert [r.name for r in note_receipts(second, store, bus, queue)] == [
            "8502182-20201027172022.wvz"]
        seen = events.wait_for(ReceiptReceived, 2)
    finally:
        bus.close()
    assert [e.name for e in seen] == [receipt["name"], "8502182-20201027172022.wvz"]
    assert store.find(DOSSIER, "8502182-20201027172021.wvz") == Receipt(
        DOSSIER, "8502182-20201027172021.wvz", "a" * 64, "2024-03-01T12:00:00Z")
    assert store.find(DOSSIER, "8502182-20201027172023.wvz") is None
    assert oct((store.folder / f"{DOSSIER}.json").stat().st_mode & 0o777) == "0o600"
    assert [e.detail["file"] for e in queue.history(10) if e.action == "receipt"] == [
        "8502182-20201027172022.wvz", "8502182-20201027172021.wvz"]


def test_note_receipts_survives_a_store_it_cannot_write(home: Home, firm: SigningKey) -> None:
    receipt = {"name": "8502182-20201027172021.wvz", "sha256": "a" * 64,
               "received_at": "2024-03-01T12:00:00Z"}
    verified = verify_index(_index(firm, [receipt]), {firm.public.key_id: firm.public},
                            DOSSIER, NOW)
    blocked = home.root / "not-a-folder"
    blocked.write_bytes(b"")
    bus = EventBus()
    try:
        assert note_receipts(verified, ReceiptStore(blocked), bus) == []
    finally:
        bus.close()
    # Tried again, and said, once the store works.
    store = ReceiptStore(home.root / "receipts")
    bus = EventBus()
    try:
        assert len(note_receipts(verified, store, bus)) == 1
    finally:
        bus.close()
