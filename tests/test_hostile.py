"""Hostile exchange files through the real intake and CLI: each refused for its own reason.

Every crafted file of `tests.hostile.HOSTILE` is offered to a real configured home. The
file must be refused with its stable code, left byte-for-byte untouched on its "USB key",
copied to quarantine beside a note giving the reason in French and English, and nothing
else in the home may change but the quarantine, the staging folder and the database.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from daemon.context import Context
from daemon.errors import Code, Rejected
from daemon.exchange import verify_exchange
from daemon.i18n import in_language
from daemon.keys import SigningKey
from daemon.queue import Outcome, State
from tests import hostile
from tests.helpers import DOSSIER, Home

# Far in the past, so that any write to the original would show in its mtime.
ORIGINAL_MTIME_NS = 1_500_000_000_123_456_789
Snapshot = dict[str, tuple[int, int, str] | None]


def snapshot(root: Path, ctx: Context) -> Snapshot:
    """Return every folder and file of the home that intake must not touch, with contents."""
    paths = ctx.paths
    allowed = (paths.quarantine, paths.staging)
    database = {paths.database.name + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    state: Snapshot = {}
    for path in sorted(root.rglob("*")):
        if any(path == folder or folder in path.parents for folder in allowed):
            continue
        if path.parent == paths.database.parent and path.name in database:
            continue
        relative = path.relative_to(root).as_posix()
        if path.is_dir():
            state[relative] = None
        else:
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[relative] = (info.st_size, info.st_mtime_ns, digest)
    return state


def put_on_key(folder: Path, crafted: hostile.Crafted) -> Path:
    """Write a crafted file where a USB key would hold it, with a recognisable mtime."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / crafted.name
    path.write_bytes(crafted.data)
    os.utime(path, ns=(ORIGINAL_MTIME_NS, ORIGINAL_MTIME_NS))
    return path


@pytest.fixture
def key_folder(tmp_path: Path) -> Path:
    """A folder outside the home, standing for a USB key."""
    return tmp_path / "usb"


@pytest.fixture
def busy_home(home: Home) -> tuple[Home, Context]:
    """A home with one valid update already waiting, so that a change would show."""
    ctx = home.context()
    result = ctx.intake.import_path(home.update(1), "manual")
    assert result.outcome is Outcome.QUEUED
    return home, ctx


def assert_refused_cleanly(ctx: Context, home: Home, original: Path, data: bytes,
                           code: Code) -> Rejected:
    """Import `original` and check every promise a refusal makes; return the rejection."""
    waiting = [item.id for item in ctx.queue.pending()]
    last_sequence = ctx.queue.last_sequence(DOSSIER)
    quarantined_before = set(ctx.paths.quarantine.iterdir())
    before = snapshot(home.root, ctx)

    result = ctx.intake.import_path(original, "manual")

    assert result.outcome is Outcome.REJECTED, result
    assert result.rejection is not None
    assert result.rejection.code is code, result.rejection
    # The original is never modified, moved or deleted.
    assert original.read_bytes() == data
    assert original.stat().st_mtime_ns == ORIGINAL_MTIME_NS
    # Nothing else in the home changed, nothing was queued, nothing is left in staging.
    assert snapshot(home.root, ctx) == before
    assert [item.id for item in ctx.queue.pending()] == waiting
    assert ctx.queue.last_sequence(DOSSIER) == last_sequence
    assert list(ctx.paths.staging.iterdir()) == []
    check_quarantine(ctx, set(ctx.paths.quarantine.iterdir()) - quarantined_before,
                     original, data, result.rejection)
    return result.rejection


def check_quarantine(ctx: Context, new: set[Path], original: Path, data: bytes,
                     rejection: Rejected) -> None:
    """The quarantine holds a copy of the refused file and a note with both reasons."""
    notes = [path for path in new if path.name.endswith(".reason.json")]
    copies = [path for path in new if path not in notes]
    assert len(notes) == 1, new
    assert len(copies) == 1, new
    assert copies[0].read_bytes() == data
    assert notes[0].name == copies[0].name + ".reason.json"
    note = json.loads(notes[0].read_text("utf-8"))
    assert note["file"] == original.name
    assert note["code"] == str(rejection.code)
    assert note["reason_en"] == rejection.reason_in("en")
    assert note["reason_fr"] == rejection.reason_in("fr")
    # The French catalogue must cover every reason: a farmer reads French.
    assert note["reason_fr"] != note["reason_en"]
    assert note["sha256"] == hashlib.sha256(data).hexdigest()
    item = ctx.queue.items([State.REJECTED])[-1]
    assert item.reason_code == str(rejection.code)
    assert item.spool_name == copies[0].name


@pytest.mark.parametrize("case", hostile.HOSTILE, ids=lambda case: case.id)
def test_hostile_file_is_refused_with_its_reason(
    case: hostile.Case, busy_home: tuple[Home, Context], signing_key: SigningKey,
    key_folder: Path,
) -> None:
    home, ctx = busy_home
    crafted = case.build(signing_key)
    original = put_on_key(key_folder, crafted)
    assert_refused_cleanly(ctx, home, original, crafted.data, case.code)


def test_the_catalogue_is_large_and_covers_every_container_code() -> None:
    assert len(hostile.HOSTILE) >= 30
    assert len({case.id for case in hostile.HOSTILE}) == len(hostile.HOSTILE)
    covered = {case.code for case in hostile.HOSTILE}
    # These need history (a queue) or a failing disk, and have their own tests below.
    elsewhere = {Code.ROLLBACK, Code.SEQUENCE_REUSED, Code.UNREADABLE, Code.NOT_A_FILE}
    assert set(Code) - elsewhere <= covered


def test_the_unbroken_builder_output_is_accepted(
    busy_home: tuple[Home, Context], signing_key: SigningKey, key_folder: Path
) -> None:
    """Control: without its fault, a crafted file passes, so each case fails for its fault."""
    _, ctx = busy_home
    honest = hostile.Exchange(signing_key, manifest=hostile.manifest_dict(signing_key,
                                                                          sequence=5)).build()
    result = ctx.intake.import_path(put_on_key(key_folder, honest), "manual")
    assert result.outcome is Outcome.QUEUED, result.rejection


# ---------------------------------------------------------------- the zip bomb


def test_the_overlapping_bomb_is_a_real_bomb() -> None:
    """The bomb is what it claims: ~42 kB declaring gigabytes, with members that inflate."""
    bomb = hostile.overlapping_bomb()
    assert len(bomb.data) < 50_000
    assert bomb.declared_total > 4 << 30
    with zipfile.ZipFile(io.BytesIO(bomb.data)) as archive:
        infos = archive.infolist()
    assert len(infos) == bomb.files
    assert sum(info.file_size for info in infos) == bomb.declared_total
    # The last two members, fully inflated from their local data, match their declared
    # sizes and CRC-32s: the quoted local header and the shared kernel really expand.
    for info in infos[-2:]:
        size, crc = _inflate_member(bomb.data, info)
        assert (size, crc) == (info.file_size, info.CRC)
    # The first member's stream begins by quoting the second member's local header.
    first, second = infos[0], infos[1]
    start = _data_start(bomb.data, first)
    head = zlib.decompressobj(-zlib.MAX_WBITS).decompress(bomb.data[start:], 64)
    assert head[:30] == bomb.data[second.header_offset:second.header_offset + 30]


def test_the_bomb_is_refused_from_its_headers_alone(
    tmp_path: Path, signing_key: SigningKey
) -> None:
    """No member of the bomb is inflated: the reader allocates far less than one member."""
    path = tmp_path / hostile.NAME
    path.write_bytes(hostile.overlapping_bomb().data)
    keyring = {signing_key.public.key_id: signing_key.public}
    tracemalloc.start()
    try:
        with pytest.raises(Rejected) as refused:
            verify_exchange(path, keyring, path.name)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.code is Code.OVERLAPPING
    # Inflating would need at least one 1 MiB output chunk; parsing 250 headers needs little.
    assert peak < 1 << 20, peak


def _data_start(data: bytes, info: zipfile.ZipInfo) -> int:
    offset = info.header_offset
    name_length = int.from_bytes(data[offset + 26:offset + 28], "little")
    extra_length = int.from_bytes(data[offset + 28:offset + 30], "little")
    return offset + 30 + name_length + extra_length


def _inflate_member(data: bytes, info: zipfile.ZipInfo) -> tuple[int, int]:
    start = _data_start(data, info)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size, crc = 0, 0
    pending = data[start:start + info.compress_size]
    while pending:
        chunk = inflater.decompress(pending, 1 << 22)
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
        pending = inflater.unconsumed_tail
    assert inflater.eof
    return size, crc


# ---------------------------------------------------------------- history: the queue's view


def test_the_same_file_twice_is_a_harmless_duplicate(home: Home, key_folder: Path) -> None:
    update = home.update(1)
    first = home.passeur("import", str(update))
    assert first.returncode == 0, first.stderr
    before = sorted(p.name for p in home.context().paths.spool.rglob("*") if p.is_file())
    again = home.passeur("import", str(update))
    assert again.returncode == 0, again.stderr
    assert update.name in again.stdout
    ctx = home.context()
    result = ctx.intake.import_path(update, "manual")
    assert result.outcome is Outcome.DUPLICATE
    assert [item.name for item in ctx.queue.pending()] == [update.name]
    assert sorted(p.name for p in ctx.paths.spool.rglob("*") if p.is_file()) == before
    assert list(ctx.paths.quarantine.iterdir()) == []


def _copy_to_key(update: Path, folder: Path) -> Path:
    crafted = hostile.Crafted(update.name, update.read_bytes())
    return put_on_key(folder, crafted)


def test_an_older_sequence_is_a_rollback(home: Home, key_folder: Path) -> None:
    ctx = home.context()
    assert ctx.intake.import_path(home.update(3), "manual").outcome is Outcome.QUEUED
    older = _copy_to_key(home.update(2), key_folder)
    rejection = assert_refused_cleanly(ctx, home, older, older.read_bytes(), Code.ROLLBACK)
    assert "2" in rejection.detail
    assert "3" in rejection.detail
    assert ctx.queue.last_sequence(DOSSIER) == 3


def test_an_older_sequence_is_refused_even_after_integration(home: Home,
                                                              key_folder: Path) -> None:
    ctx = home.context()
    assert ctx.intake.import_path(home.update(3), "manual").outcome is Outcome.QUEUED
    ctx.delivery.process(None)
    assert ctx.queue.pending() == []
    older = _copy_to_key(home.update(1), key_folder)
    assert_refused_cleanly(ctx, home, older, older.read_bytes(), Code.ROLLBACK)


def test_the_same_sequence_with_other_content_is_refused(home: Home,
                                                         key_folder: Path) -> None:
    ctx = home.context()
    assert ctx.intake.import_path(home.update(3), "manual").outcome is Outcome.QUEUED
    other = home.update(3, contents={"ecritures.xml": b"<ecritures autre='oui'/>"},
                        out=home.root.parent / "other")
    twin = _copy_to_key(other, key_folder)
    assert_refused_cleanly(ctx, home, twin, twin.read_bytes(), Code.SEQUENCE_REUSED)


def test_an_update_for_a_dossier_not_configured_is_refused(home: Home,
                                                           key_folder: Path) -> None:
    ctx = home.context()
    stranger = _copy_to_key(home.update(1, dossier="4242"), key_folder)
    assert_refused_cleanly(ctx, home, stranger, stranger.read_bytes(), Code.DOSSIER_UNKNOWN)
    assert ctx.queue.last_sequence("4242") is None


def test_a_folder_or_a_file_that_cannot_be_opened_is_refused_with_its_reason(
    busy_home: tuple[Home, Context], key_folder: Path
) -> None:
    home, ctx = busy_home
    folder = key_folder / hostile.NAME  # a folder where a file was expected
    folder.mkdir(parents=True)
    before = snapshot(home.root, ctx)
    result = ctx.intake.import_path(folder, "manual")
    assert result.outcome is Outcome.REJECTED
    assert result.rejection is not None
    assert result.rejection.code is Code.NOT_A_FILE
    assert result.rejection.reason_in("fr") == (
        "ce n'est pas un fichier mais un répertoire : rien n'a été lu")
    assert result.rejection.reason_in("en") == "this is not a file but a folder: nothing was read"
    assert folder.is_dir()
    assert snapshot(home.root, ctx) == before
    gone = ctx.intake.import_path(key_folder / "8502182-20201027172022.wwz", "manual")
    assert gone.rejection is not None
    assert gone.rejection.code is Code.UNREADABLE
    assert [item.name for item in ctx.queue.items([State.REJECTED])] == [
        hostile.NAME, "8502182-20201027172022.wwz"]


def test_a_name_that_is_not_utf8_is_refused_not_a_crash(
    busy_home: tuple[Home, Context], key_folder: Path
) -> None:
    """FAT keys written with another code page give names that do not decode as UTF-8."""
    _, ctx = busy_home
    key_folder.mkdir()
    raw = os.fsencode(key_folder) + b"/8502182-2020\xe9.wwz"
    with open(raw, "wb") as out:
        out.write(b"junk")
    original = Path(os.fsdecode(raw))
    result = ctx.intake.import_path(original, "manual")
    assert result.outcome is Outcome.REJECTED
    assert result.rejection is not None
    assert result.rejection.code is Code.BAD_NAME
    assert original.read_bytes() == b"junk"
    notes = list(ctx.paths.quarantine.glob("*.reason.json"))
    assert [json.loads(note.read_text("utf-8"))["code"] for note in notes] == ["bad-name"]


# ---------------------------------------------------------------- through the real CLI

CLI_CASES = ("truncated-half", "path-dotdot", "overlapping-bomb", "signed-by-untrusted-key",
             "manifest-deeply-nested")


def _case(case_id: str) -> hostile.Case:
    return next(case for case in hostile.HOSTILE if case.id == case_id)


def _expected_rejection(path: Path, key: SigningKey) -> Rejected:
    with pytest.raises(Rejected) as refused:
        verify_exchange(path, {key.public.key_id: key.public}, path.name)
    return refused.value


def _french_refusal(file: str, rejection: Rejected) -> str:
    return in_language("fr", "{file}: refused: {reason}").format(
        file=file, reason=rejection.reason_in("fr"))


def test_cli_import_refuses_each_bad_file_with_one_french_line(
    home: Home, signing_key: SigningKey, tmp_path: Path
) -> None:
    files: list[Path] = []
    for number, case_id in enumerate(CLI_CASES):
        # One folder per file: several crafted files share the same (valid) name.
        files.append(put_on_key(tmp_path / f"usb{number}", _case(case_id).build(signing_key)))
    valid = home.update(1)
    contents = {path: path.read_bytes() for path in files}

    done = home.passeur("import", *map(str, files), str(valid))

    assert done.returncode == 1, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == len(files), done.stderr
    for path, line in zip(files, lines, strict=True):
        assert line == _french_refusal(path.name, _expected_rejection(path, signing_key))
    assert valid.name in done.stdout
    for path, data in contents.items():
        assert path.read_bytes() == data
        assert path.stat().st_mtime_ns == ORIGINAL_MTIME_NS
    ctx = home.context()
    assert [item.name for item in ctx.queue.pending()] == [valid.name]
    notes = sorted(ctx.paths.quarantine.glob("*.reason.json"))
    codes = sorted(json.loads(note.read_text("utf-8"))["code"] for note in notes)
    assert codes == sorted(str(_case(case_id).code) for case_id in CLI_CASES)


def test_cli_import_json_gives_codes(home: Home, signing_key: SigningKey,
                                     key_folder: Path) -> None:
    bad = put_on_key(key_folder, _case("path-nul").build(signing_key))
    done = home.passeur("import", "--json", str(bad))
    assert done.returncode == 1
    [result] = json.loads(done.stdout)
    assert result["outcome"] == "rejected"
    assert result["code"] == "path-unsafe"
    assert result["reason_fr"] != result["reason_en"]


@pytest.mark.parametrize("case_id", ["signed-manifest-lists-dotdot", "random-bytes"])
def test_cli_show_refuses_a_bad_file(home: Home, signing_key: SigningKey, key_folder: Path,
                                     case_id: str) -> None:
    bad = put_on_key(key_folder, _case(case_id).build(signing_key))
    data = bad.read_bytes()
    done = home.passeur("show", str(bad))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip() == _french_refusal(bad.name,
                                                  _expected_rejection(bad, signing_key))
    as_json = home.passeur("show", "--json", str(bad))
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["code"] == str(_case(case_id).code)
    assert bad.read_bytes() == data
    assert bad.stat().st_mtime_ns == ORIGINAL_MTIME_NS
    # `show` only looks: nothing is recorded or quarantined.
    assert not (home.root / "data" / "quarantine").exists() or not any(
        (home.root / "data" / "quarantine").iterdir())
