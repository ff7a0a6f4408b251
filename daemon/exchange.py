"""Reading (strictly, never extracting) and writing signed exchange files."""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from daemon.errors import N_, Code, Rejected
from daemon.fsutil import CHUNK, atomic_writer, os_error_words
from daemon.keys import MANIFEST_CONTEXT, PublicKey, SigningKey
from daemon.manifest import (
    MANIFEST_NAME,
    RESERVED_NAMES,
    SIGNATURE_NAME,
    Manifest,
    Member,
    check_format,
    declared_key_id,
    parse_json,
)
from daemon.naming import (
    MAX_PATH_LENGTH,
    check_member_path,
    fold,
    make_name,
    parse_offered_name,
)
from daemon.zipstream import (
    DATA_DESCRIPTOR,
    ENCRYPTED,
    LOCAL_HEADER,
    LOCAL_MAGIC,
    MAX_RATIO,
    RATIO_FLOOR,
    ZIP64_MARK,
    Buffer,
    ExchangeDigest,
    MemberHash,
    MemberReader,
    local_sizes,
)

if TYPE_CHECKING:
    from daemon.zipwrite import MemberPipeline, Ticket, ZipWriter

# daemon.zipwrite (and its thread pool) is imported by the writing functions only: reading
# an exchange file is what the short commands do, and they start faster without it.

_END_RECORD = struct.Struct("<4sHHHHIIH")
_END_MAGIC = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_LOCATOR_MAGIC = b"PK\x06\x07"
_ZIP64_END_RECORD = struct.Struct("<4sQHHIIQQQQ")
_ZIP64_END_MAGIC = b"PK\x06\x06"
_DESCRIPTOR_MAGIC = b"PK\x07\x08"
_COUNT_MARK = 0xFFFF  # an entry count deferring to the ZIP64 end record
# The end record sits in the last 22 bytes, or before a comment of at most 64 KiB.
_END_SEARCH = _END_RECORD.size + 0xFFFF
# A generous bound for one central directory record: fixed part, a name of
# MAX_PATH_LENGTH characters in UTF-8, and room for extra fields and a comment.
_MAX_DIRECTORY_RECORD = 46 + 4 * MAX_PATH_LENGTH + 2048
_S_IFMT = 0o170000
_S_IFLNK = 0o120000


@dataclass(frozen=True)
class Limits:
    """Caps checked before anything is decompressed."""

    max_file_size: int = 8 << 30
    max_total_size: int = 16 << 30
    max_members: int = 10_000
    max_ratio: int = MAX_RATIO
    max_manifest_size: int = 4 << 20


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    data_start: int
    local_name: bytes
    local_fields: tuple[int, ...]  # flags, method, time, date, CRC-32, sizes, as found
    descriptor: tuple[int, int, int] | None = None  # CRC-32 and sizes after the data
    descriptor_size: int = 0

    @property
    def data_end(self) -> int:
        return self.data_start + self.info.compress_size

    @property
    def next_offset(self) -> int:
        """Where the next member's local header must begin."""
        return self.data_end + self.descriptor_size


def verify_exchange(
    path: Path,
    trusted: Mapping[str, PublicKey],
    display_name: str | None = None,
    limits: Limits = Limits(),
    hashed: Mapping[int, MemberHash] | None = None,
) -> Manifest:
    """Check an exchange file completely and return its manifest, or raise Rejected.

    `display_name` is the file's name as the user knows it (the file itself may be a
    private copy); it must match the manifest. Nothing is extracted: members are
    streamed through SHA-256 with bounded memory. `hashed` holds the member hashes an
    ExchangeDigest took while this very file was written (our private copy), which spares
    reading those members again.
    """
    try:
        size = path.stat().st_size
        if size > limits.max_file_size:
            raise Rejected(Code.TOO_LARGE, f"{size} > {limits.max_file_size}")
        with open(path, "rb") as handle:
            manifest = _verify_open(handle, trusted, limits, hashed or {})
    except OSError as exc:
        raise Rejected(Code.UNREADABLE, os_error_words(exc)) from None
    if display_name is not None:
        check_name_matches(display_name, manifest)
    return manifest


def check_name_matches(display_name: str, manifest: Manifest) -> None:
    """Raise NAME_MISMATCH unless the file name agrees with the manifest."""
    name = parse_offered_name(display_name)
    expected = make_name(manifest.dossier, manifest.generated_at, manifest.kind)
    if name.canonical != expected:
        raise Rejected(Code.NAME_MISMATCH, f"{display_name} ≠ {expected}")


def _verify_open(handle: BinaryIO, trusted: Mapping[str, PublicKey], limits: Limits,
                 hashed: Mapping[int, MemberHash]) -> Manifest:
    end = _check_declared_directory(handle, limits)
    archive = _open_zip(handle)
    if end is None:
        raise Rejected(Code.TRUNCATED, "end record")  # zipfile found one we did not
    if end.count != len(archive.infolist()):
        # Extractors that trust the count would see other members than we checked.
        raise Rejected(Code.TRUNCATED, f"{len(archive.infolist())} ≠ {end.count}")
    _check_disks(end)
    entries = _check_entries(handle, archive, limits)
    _check_layout(end, entries.values(), archive.start_dir)
    manifest = _read_signed_manifest(handle, entries, trusted, limits)
    _check_members_match(entries, manifest)
    for member in manifest.files:
        entry = entries[member.path]
        _check_member_content(handle, entry, member, hashed.get(entry.data_start))
    return manifest


def _open_zip(handle: BinaryIO) -> zipfile.ZipFile:
    handle.seek(0)
    head = handle.read(4)
    handle.seek(0)
    try:
        archive = zipfile.ZipFile(handle)
    # NotImplementedError: an entry needing a ZIP version zipfile does not know.
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError):
        if head == LOCAL_MAGIC:
            # zipfile's own words are English and say nothing more to the user.
            raise Rejected(Code.TRUNCATED, N_("the archive's directory cannot be read")
                           ) from None
        raise Rejected(Code.NOT_ZIP) from None
    return archive


def _check_declared_directory(handle: BinaryIO, limits: Limits) -> _EndRecords | None:
    """Refuse a central directory too big to parse, from its end record alone.

    zipfile builds an object for every record of the central directory before anyone can
    count them, so the count and size the end record announces are checked first.
    Returns the end records, or None without an end record (zipfile will say why).
    """
    end = _read_end_records(handle)
    if end is None:
        return None
    allowed = limits.max_members + len(RESERVED_NAMES)
    if end.count > allowed:
        raise Rejected(Code.TOO_MANY_MEMBERS, end.count)
    if end.directory_size > allowed * _MAX_DIRECTORY_RECORD:
        raise Rejected(Code.TOO_MANY_MEMBERS, f"{end.directory_size} bytes of central directory")
    return end


@dataclass(frozen=True)
class _EndRecords:
    """What the end of the archive says: where its central directory is, and its disks."""

    file_size: int
    position: int  # of the end record
    comment_length: int
    count: int
    directory_size: int
    directory_offset: int
    # Single-disk archives have (0, 0, count) here, and (0, 1) in a ZIP64 locator.
    disks: tuple[int, ...]
    plain: tuple[int, int, int]  # count, directory size and offset as the plain record says
    zip64_position: int | None = None  # of the ZIP64 end record, when there is one
    zip64_record_size: int = 0


def _read_end_records(handle: BinaryIO) -> _EndRecords | None:
    """Read the end record (and its ZIP64 form), found where zipfile finds it."""
    file_size = handle.seek(0, 2)
    start = max(0, file_size - _END_SEARCH)
    handle.seek(start)
    tail = handle.read(file_size - start)
    # As zipfile: a record without comment ends the file, else the last one that fits.
    position = len(tail) - _END_RECORD.size
    if position < 0 or not tail.startswith(_END_MAGIC, position):
        position = tail.rfind(_END_MAGIC, 0, len(tail) - _END_RECORD.size + len(_END_MAGIC))
    if position < 0:
        return None
    fields = _END_RECORD.unpack_from(tail, position)
    disk, directory_disk, on_disk, count = (int(value) for value in fields[1:5])
    size, offset, comment_length = int(fields[5]), int(fields[6]), int(fields[7])
    end = _EndRecords(file_size, start + position, comment_length, count, size, offset,
                      (disk, directory_disk, on_disk - count), (count, size, offset))
    if count != _COUNT_MARK and size != ZIP64_MARK and offset != ZIP64_MARK:
        return end
    # Without a readable ZIP64 record, zipfile too takes the plain fields at their word.
    return _read_zip64_end_records(handle, end) or end


def _read_zip64_end_records(handle: BinaryIO, end: _EndRecords) -> _EndRecords | None:
    if end.position < _ZIP64_LOCATOR.size:
        return None
    handle.seek(end.position - _ZIP64_LOCATOR.size)
    locator = handle.read(_ZIP64_LOCATOR.size)
    magic, record_disk, position, disks = _ZIP64_LOCATOR.unpack(locator)
    if magic != _ZIP64_LOCATOR_MAGIC:
        return None
    handle.seek(position)
    record = handle.read(_ZIP64_END_RECORD.size)
    if len(record) != _ZIP64_END_RECORD.size:
        return None
    fields = _ZIP64_END_RECORD.unpack(record)
    if fields[0] != _ZIP64_END_MAGIC:
        return None
    record_size, disk, directory_disk = int(fields[1]), int(fields[4]), int(fields[5])
    on_disk, count, size, offset = (int(value) for value in fields[6:10])
    return replace(end, count=count, directory_size=size, directory_offset=offset,
                   disks=(*end.disks[:2], disk, directory_disk, on_disk - count,
                          int(record_disk), int(disks) - 1),
                   zip64_position=int(position), zip64_record_size=record_size)


def _check_disks(end: _EndRecords) -> None:
    """Refuse the fields of a split archive: another reader would look for other disks."""
    if any(end.disks):
        raise Rejected(Code.MULTI_DISK, ", ".join(str(value) for value in end.disks))
    if end.zip64_position is None:
        return
    # Beside a ZIP64 record, each plain field is its value or the mark that defers to it.
    truth = (end.count, end.directory_size, end.directory_offset)
    marks = (_COUNT_MARK, ZIP64_MARK, ZIP64_MARK)
    for shown, value, mark in zip(end.plain, truth, marks, strict=True):
        if shown not in (value, mark):
            raise Rejected(Code.HEADER_MISMATCH, f"end record: {shown} ≠ {value}")


def _check_layout(end: _EndRecords, entries: Iterable[_Entry], start_dir: int) -> None:
    """Every byte belongs to the canonical layout, in order and without a gap.

    Members one after the other from offset 0, the central directory right after them,
    the ZIP64 end records if any, the end record and its comment last. A prefix, a gap or
    trailing bytes are where another reader (the application's) may find another archive.
    """
    tail = end.position + _END_RECORD.size + end.comment_length
    if tail > end.file_size:
        raise Rejected(Code.TRUNCATED, f"comment: {tail} > {end.file_size}")
    if tail < end.file_size:
        raise Rejected(Code.DATA_AFTER, f"{end.file_size - tail} bytes")
    # zipfile shifts every offset by what precedes the directory it expected: a prefix.
    if start_dir != end.directory_offset:
        raise Rejected(Code.DATA_BEFORE, f"{start_dir - end.directory_offset} bytes")
    expected = 0
    for entry in sorted(entries, key=lambda e: e.info.header_offset):
        if entry.info.volume != 0:
            raise Rejected(Code.MULTI_DISK, f"{entry.info.filename}: {entry.info.volume}")
        offset = entry.info.header_offset
        if offset != expected:
            code = Code.DATA_BEFORE if expected == 0 else Code.DATA_BETWEEN
            raise Rejected(code, f"{entry.info.filename}: {offset} ≠ {expected}")
        expected = entry.next_offset
    if end.directory_offset != expected:
        code = Code.DATA_BEFORE if expected == 0 else Code.DATA_BETWEEN
        raise Rejected(code, f"central directory: {end.directory_offset} ≠ {expected}")
    directory_end = end.directory_offset + end.directory_size
    if end.zip64_position is not None:
        if directory_end != end.zip64_position:
            raise Rejected(Code.DATA_BETWEEN, f"ZIP64 end record: {end.zip64_position}")
        directory_end += 12 + end.zip64_record_size + _ZIP64_LOCATOR.size
    if directory_end != end.position:
        raise Rejected(Code.DATA_BETWEEN, f"end record: {end.position} ≠ {directory_end}")


def _check_entries(
    handle: BinaryIO, archive: zipfile.ZipFile, limits: Limits
) -> dict[str, _Entry]:
    """Check the archive's structure from its headers alone; nothing is decompressed."""
    infos = archive.infolist()
    if len(infos) > limits.max_members + len(RESERVED_NAMES):
        raise Rejected(Code.TOO_MANY_MEMBERS, len(infos))
    for info in infos:
        # orig_filename: zipfile cuts `filename` at the first NUL, hiding what follows.
        check_member_path(info.orig_filename)
        _check_entry_kind(info)
    check_unique_names(info.filename for info in infos)
    entries = {info.filename: _locate(handle, info) for info in infos}
    # Overlap first: the overlapping-entries bomb also has absurd ratios and sizes, but
    # this is what it is, and it is found in time linear in the number of headers.
    _check_no_overlap(entries.values(), archive.start_dir)
    _check_sizes(infos, limits)
    for entry in entries.values():
        _check_local_header(entry)
    return entries


def _check_entry_kind(info: zipfile.ZipInfo) -> None:
    if (info.external_attr >> 16) & _S_IFMT == _S_IFLNK:
        raise Rejected(Code.SYMLINK, info.filename)
    if info.flag_bits & ENCRYPTED:
        raise Rejected(Code.ENCRYPTED, info.filename)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise Rejected(Code.UNSUPPORTED_COMPRESSION, info.filename)


def check_unique_names(names: Iterable[str]) -> None:
    """Refuse two entries that would land on the same file, or a file where a folder goes."""
    seen: set[str] = set()
    folded: dict[str, str] = {}
    for name in names:
        if name in seen:
            raise Rejected(Code.MEMBER_DUPLICATE, name)
        seen.add(name)
        other = folded.setdefault(fold(name), name)
        if other != name:
            raise Rejected(Code.NAME_COLLISION, f"{other} / {name}")
    for key, name in folded.items():
        parts = key.split("/")
        for depth in range(1, len(parts)):
            folder = folded.get("/".join(parts[:depth]))
            if folder is not None:
                raise Rejected(Code.NAME_COLLISION, f"{folder} / {name}")


def _check_sizes(infos: Iterable[zipfile.ZipInfo], limits: Limits) -> None:
    total = 0
    for info in infos:
        total += info.file_size
        if total > limits.max_total_size:
            raise Rejected(Code.TOO_LARGE, f"{total} > {limits.max_total_size}")
        if info.file_size > RATIO_FLOOR and (
            info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            raise Rejected(Code.RATIO_TOO_HIGH,
                           f"{info.filename}: {info.compress_size} → {info.file_size}")


def _locate(handle: BinaryIO, info: zipfile.ZipInfo) -> _Entry:
    """Read a member's local header: where its data begins, and what the header says."""
    handle.seek(info.header_offset)
    header = handle.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size:
        raise Rejected(Code.TRUNCATED, info.filename)
    fields = LOCAL_HEADER.unpack(header)
    if fields[0] != LOCAL_MAGIC:
        raise Rejected(Code.TRUNCATED, info.filename)
    name_length, extra_length = int(fields[9]), int(fields[10])
    local_name = handle.read(name_length)
    extra = handle.read(extra_length)
    if len(local_name) != name_length or len(extra) != extra_length:
        raise Rejected(Code.TRUNCATED, info.filename)
    sizes = local_sizes(fields, extra) or (-1, -1)  # a ZIP64 mark without its field: no size
    local = (int(fields[2]), int(fields[3]), int(fields[4]), int(fields[5]), int(fields[6]),
             *sizes)
    data_start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    entry = _Entry(info, data_start, local_name, local)
    if entry.local_fields[0] & DATA_DESCRIPTOR:
        return _with_descriptor(handle, entry, zip64=ZIP64_MARK in (fields[7], fields[8]))
    return entry


def _with_descriptor(handle: BinaryIO, entry: _Entry, zip64: bool) -> _Entry:
    """Read the data descriptor that follows a member's data (sizes known only at its end)."""
    handle.seek(entry.data_end)
    width = 8 if zip64 or entry.info.compress_size >= ZIP64_MARK else 4
    raw = handle.read(4 + 4 + 2 * width)
    signed = raw.startswith(_DESCRIPTOR_MAGIC)
    body = raw[4:] if signed else raw[:4 + 2 * width]
    if len(body) != 4 + 2 * width:
        raise Rejected(Code.TRUNCATED, entry.info.filename)
    crc, compress_size, file_size = struct.unpack("<I2Q" if width == 8 else "<3I", body)
    return replace(entry, descriptor=(crc, compress_size, file_size),
                   descriptor_size=len(body) + (4 if signed else 0))


def _check_local_header(entry: _Entry) -> None:
    """The local header (and data descriptor) must tell the central directory's story.

    Two names, methods, flags, times, checksums or sizes for one entry is how an archive
    shows one thing to a checker that reads the directory and another to an extractor
    that streams local headers.
    """
    info = entry.info
    central_name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    if entry.local_name != central_name:
        raise Rejected(Code.HEADER_MISMATCH, f"{info.filename}: name")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise Rejected(Code.MEMBER_CORRUPT, info.filename)
    year, month, day, hour, minute, second = info.date_time
    central = (info.flag_bits, info.compress_type,
               (hour << 11) | (minute << 5) | (second // 2),
               ((year - 1980) << 9) | (month << 5) | day,
               info.CRC, info.compress_size, info.file_size)
    local = entry.local_fields
    labels = ("flags", "method", "time", "date", "CRC-32", "compressed size", "size")
    for label, shown, truth in zip(labels[:4], local[:4], central[:4], strict=True):
        if shown != truth:
            raise Rejected(Code.HEADER_MISMATCH, f"{info.filename}: {label}")
    after = local[4:]
    if entry.descriptor is not None:
        # Written before the data was known: zeros there, the truth after the data.
        if after not in ((0, 0, 0), central[4:]):
            raise Rejected(Code.HEADER_MISMATCH, f"{info.filename}: local header")
        after = entry.descriptor
    for label, shown, truth in zip(labels[4:], after, central[4:], strict=True):
        if shown != truth:
            raise Rejected(Code.HEADER_MISMATCH, f"{info.filename}: {label}")


def _check_no_overlap(entries: Iterable[_Entry], central_directory: int) -> None:
    """Refuse archives whose entries share bytes (the overlapping-entries zip bomb)."""
    end = 0
    for entry in sorted(entries, key=lambda e: e.info.header_offset):
        if entry.info.header_offset < end:
            raise Rejected(Code.OVERLAPPING)
        end = entry.data_end
    if end > central_directory:
        raise Rejected(Code.OVERLAPPING)


def _read_signed_manifest(
    handle: BinaryIO,
    entries: Mapping[str, _Entry],
    trusted: Mapping[str, PublicKey],
    limits: Limits,
) -> Manifest:
    manifest_entry = entries.get(MANIFEST_NAME)
    if manifest_entry is None:
        raise Rejected(Code.MANIFEST_MISSING)
    if manifest_entry.info.file_size > limits.max_manifest_size:
        raise Rejected(Code.MANIFEST_MALFORMED, "too large")
    raw = b"".join(_member_chunks(handle, manifest_entry))
    data = parse_json(raw)
    check_format(data)
    key_id = declared_key_id(data)
    signature_entry = entries.get(SIGNATURE_NAME)
    if signature_entry is None:
        raise Rejected(Code.SIGNATURE_MISSING)
    key = trusted.get(key_id)
    if key is None:
        raise Rejected(Code.KEY_UNKNOWN, key_id)
    if signature_entry.info.file_size != 64:
        raise Rejected(Code.SIGNATURE_BAD)
    signature = b"".join(_member_chunks(handle, signature_entry))
    if not key.verify(signature, MANIFEST_CONTEXT + raw):
        raise Rejected(Code.SIGNATURE_BAD)
    return Manifest.from_dict(data)


def _check_members_match(entries: Mapping[str, _Entry], manifest: Manifest) -> None:
    listed = {member.path: member for member in manifest.files}
    for name in entries:
        if name not in listed and name not in RESERVED_NAMES:
            raise Rejected(Code.MEMBER_UNLISTED, name)
    for path, member in listed.items():
        entry = entries.get(path)
        if entry is None:
            raise Rejected(Code.MEMBER_MISSING, path)
        if entry.info.file_size != member.size:
            raise Rejected(Code.MEMBER_SIZE, f"{path}: {entry.info.file_size} ≠ {member.size}")


def _check_member_content(handle: BinaryIO, entry: _Entry, member: Member,
                          hashed: MemberHash | None) -> None:
    info = entry.info
    if hashed == (info.compress_type, info.compress_size, info.file_size, member.sha256,
                  info.CRC):
        return  # hashed while the file was written, at this very place: same bytes
    digest = hashlib.sha256()
    reader = _reader_for(entry)
    for chunk in _member_chunks(handle, entry, reader):
        digest.update(chunk)
    # Altered content is said as such; a wrong CRC-32 alone is the checksum's own fault.
    if digest.hexdigest() != member.sha256:
        raise Rejected(Code.MEMBER_HASH, member.path)
    _check_crc(entry, reader)


def _raw_chunks(handle: BinaryIO, entry: _Entry) -> Iterator[bytes]:
    handle.seek(entry.data_start)
    left = entry.info.compress_size
    while left > 0:
        chunk = handle.read(min(CHUNK, left))
        if not chunk:
            raise Rejected(Code.TRUNCATED, entry.info.filename)
        left -= len(chunk)
        yield chunk


def _reader_for(entry: _Entry) -> MemberReader:
    info = entry.info
    return MemberReader(info.filename, info.compress_type, info.compress_size, info.file_size)


def _member_chunks(handle: BinaryIO, entry: _Entry,
                   reader: MemberReader | None = None) -> Iterator[Buffer]:
    """Yield a member's uncompressed bytes, never more than its declared size; refuse a
    member shorter than declared, and, unless the caller checks it (given `reader`), one
    whose CRC-32 is wrong, once its last byte is out."""
    own = reader is None
    reader = reader or _reader_for(entry)
    for raw in _raw_chunks(handle, entry):
        yield from reader.feed(raw)
    yield from reader.finish()
    info = entry.info
    if reader.produced != info.file_size:
        raise Rejected(Code.MEMBER_SIZE, f"{info.filename}: {reader.produced} ≠ {info.file_size}")
    if own:
        _check_crc(entry, reader)


def _check_crc(entry: _Entry, reader: MemberReader) -> None:
    info = entry.info
    if reader.crc32 != info.CRC:
        raise Rejected(Code.MEMBER_CRC, f"{info.filename}: {reader.crc32:08x} ≠ {info.CRC:08x}")


def read_manifest_unverified(path: Path) -> dict[str, object] | None:
    """Best-effort peek at a manifest for error messages; never trusted."""
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.getinfo(MANIFEST_NAME).file_size > Limits.max_manifest_size:
                return None
            data = parse_json(archive.read(MANIFEST_NAME))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, zlib.error, Rejected):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Source:
    """A file to put into an exchange, under `path` inside the archive."""

    path: str
    file: Path


def pack_exchange(
    out_dir: Path,
    key: SigningKey,
    manifest: Manifest,
    sources: Iterable[Source],
    store: bool = False,
) -> Path:
    """Write a signed exchange file into `out_dir` and return its path.

    The manifest's `files` and `key_id` are filled in here from the sources and the key.
    Every member is deflated (on every core), or stored with `store`.
    """
    from daemon.zipwrite import Compression, MemberPipeline, ZipWriter

    sources = list(sources)
    for source in sources:
        check_member_path(source.path)
    name = make_name(manifest.dossier, manifest.generated_at, manifest.kind)
    final = out_dir / name
    compression = Compression.STORE if store else Compression.DEFLATE
    with atomic_writer(final) as out, ZipWriter(out) as writer:
        with MemberPipeline(writer, compression) as pipeline:
            tickets = [_add_source(pipeline, source) for source in sources]
            pipeline.finish()
        members = tuple(Member(t.name, t.size, t.sha256) for t in tickets)
        write_signature(writer, _with_files(manifest, members, key.public.key_id), key, store)
        writer.close()
    return final


def _add_source(pipeline: MemberPipeline, source: Source) -> Ticket:
    from daemon.zipwrite import SourceReadError

    try:
        with open(source.file, "rb") as handle:
            status = os.fstat(handle.fileno())
            ticket = pipeline.add(source.path, handle, status.st_mtime, status.st_size)
    except SourceReadError as exc:
        raise exc.error from None
    pipeline.keep(ticket)
    return ticket


def write_signature(writer: ZipWriter, manifest: Manifest, key: SigningKey,
                    store: bool = False) -> None:
    """Add the manifest (stored with `store`: an all-stored file stays all stored) and its
    signature, the last members of every exchange file."""
    from daemon.zipwrite import DEFLATED, STORED

    body = manifest.to_json()
    when = manifest.generated_at.timestamp()
    writer.add_bytes(MANIFEST_NAME, body, STORED if store else DEFLATED, when)
    writer.add_bytes(SIGNATURE_NAME, key.sign(MANIFEST_CONTEXT + body), STORED, when)


def _with_files(manifest: Manifest, members: tuple[Member, ...], key_id: str) -> Manifest:
    return replace(manifest, files=members, key_id=key_id)


def new_digest(limits: Limits = Limits()) -> ExchangeDigest:
    """Return a digest that hashes a file whole and its members, for `verify_exchange`."""
    return ExchangeDigest(limits.max_total_size, limits.max_ratio)
