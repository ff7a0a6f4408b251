"""Builders of hostile exchange files: broken, forged and malicious ZIP archives.

Every header field is written by hand here (not by `zipfile`), so that a test can put into
an archive exactly the lie it wants the reader to catch. `HOSTILE` lists the crafted files
with the rejection code each must earn; `overlapping_bomb()` builds a real zip bomb in the
way of David Fifield's "A better zip bomb" (overlapping entries, quoted local headers).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from daemon.errors import Code
from daemon.keys import MANIFEST_CONTEXT, SigningKey
from daemon.manifest import MANIFEST_NAME, SIGNATURE_NAME, Manifest, Member
from daemon.naming import Kind, make_name
from tests.helpers import BASE_DATE, DOSSIER, DOSSIER_NAME

STORED, DEFLATED = 0, 8
UTF8_FLAG = 0x800
REGULAR_FILE = 0o100644 << 16
SYMLINK_FILE = 0o120777 << 16
UNIX = 3
# 2020-10-27 17:20:20 in MS-DOS form; the reader never looks at it.
DOS_TIME = (17 << 11) | (20 << 5) | 10
DOS_DATE = ((2020 - 1980) << 9) | (10 << 5) | 27

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_ZIP64_EXTRA = struct.Struct("<HHQQ")

GENERATED_AT = BASE_DATE
NAME = make_name(DOSSIER, GENERATED_AT, Kind.UPDATE)
CONTENT: dict[str, bytes] = {
    "ecritures.xml": b"<ecritures>" + b"<e n='1' montant='12.50'/>" * 40 + b"</ecritures>",
    "vat_declaration/tva.xml": b"<tva periode='2020-09'/>",
}


# ---------------------------------------------------------------- raw ZIP writing


@dataclass
class Entry:
    """One ZIP entry as it will be written; every header field is the test's to choose."""

    name: str | bytes
    data: bytes  # the bytes after the local header (compressed when deflated)
    size: int  # declared uncompressed size
    crc: int
    method: int = STORED
    flags: int = UTF8_FLAG
    external_attr: int = REGULAR_FILE
    compress_size: int | None = None  # declared; defaults to len(data)
    local_name: bytes | None = None  # defaults to the central name
    local_method: int | None = None  # defaults to `method`
    local_flags: int | None = None  # defaults to `flags`
    header_offset: int | None = None  # central directory's pointer; defaults to the truth
    zip64: bool = False  # sizes in a ZIP64 extra field of the central directory
    version_needed: int | None = None  # "version needed to extract", central directory
    local_crc: int | None = None  # defaults to `crc`
    local_compress_size: int | None = None  # defaults to the declared compressed size
    local_size: int | None = None  # defaults to the declared size
    descriptor: bytes = b""  # written right after the data (set flag 0x8 to announce it)
    disk: int = 0  # "disk number start" in the central directory

    @property
    def raw_name(self) -> bytes:
        """Return the name as stored in the central directory."""
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")

    @property
    def declared_compress_size(self) -> int:
        """Return the compressed size the headers announce."""
        return len(self.data) if self.compress_size is None else self.compress_size


def stored(name: str | bytes, payload: bytes, **fields: Any) -> Entry:
    """Return a stored (uncompressed) entry holding `payload`."""
    return Entry(name, payload, len(payload), zlib.crc32(payload), **fields)


def raw_deflate(payload: bytes, level: int = 9) -> bytes:
    """Return `payload` as a raw deflate stream, as ZIP stores it."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(payload) + compressor.flush()


def deflated(name: str | bytes, payload: bytes, **fields: Any) -> Entry:
    """Return a deflated entry holding `payload`."""
    return Entry(name, raw_deflate(payload), len(payload), zlib.crc32(payload),
                 method=DEFLATED, **fields)


def local_header(entry: Entry) -> bytes:
    """Return the local file header (and name) that precedes an entry's data."""
    name = entry.raw_name if entry.local_name is None else entry.local_name
    size = 0xFFFFFFFF if entry.zip64 else entry.size
    compress_size = 0xFFFFFFFF if entry.zip64 else entry.declared_compress_size
    extra = _zip64_extra(entry) if entry.zip64 else b""
    return _LOCAL.pack(
        b"PK\x03\x04", 45 if entry.zip64 else 20,
        entry.flags if entry.local_flags is None else entry.local_flags,
        entry.method if entry.local_method is None else entry.local_method,
        DOS_TIME, DOS_DATE, entry.crc if entry.local_crc is None else entry.local_crc,
        compress_size if entry.local_compress_size is None else entry.local_compress_size,
        size if entry.local_size is None else entry.local_size, len(name), len(extra),
    ) + name + extra


def central_header(entry: Entry, offset: int) -> bytes:
    """Return the central directory record of an entry whose local header is at `offset`."""
    size = 0xFFFFFFFF if entry.zip64 else entry.size
    compress_size = 0xFFFFFFFF if entry.zip64 else entry.declared_compress_size
    extra = _zip64_extra(entry) if entry.zip64 else b""
    version = 45 if entry.zip64 else 20
    needed = version if entry.version_needed is None else entry.version_needed
    return _CENTRAL.pack(
        b"PK\x01\x02", (UNIX << 8) | version, needed, entry.flags, entry.method,
        DOS_TIME, DOS_DATE, entry.crc, compress_size, size, len(entry.raw_name), len(extra),
        0, entry.disk, 0, entry.external_attr,
        offset if entry.header_offset is None else entry.header_offset,
    ) + entry.raw_name + extra


def _zip64_extra(entry: Entry) -> bytes:
    return _ZIP64_EXTRA.pack(0x0001, 16, entry.size, entry.declared_compress_size)


def end_of_directory(count: int, size: int, offset: int, comment: bytes = b"",
                     disks: tuple[int, int] = (0, 0), comment_length: int | None = None,
                     ) -> bytes:
    """Return the end-of-central-directory record (its disk fields and comment length are
    the test's to choose)."""
    length = len(comment) if comment_length is None else comment_length
    return _END.pack(b"PK\x05\x06", *disks, count, count, size, offset, length) + comment


@dataclass(frozen=True)
class Layout:
    """Bytes put where a canonical archive has none, around and between its parts."""

    prefix: bytes = b""  # before the first local header
    shift: bool = True  # offsets count the prefix (an SFX); else they ignore it
    gaps: dict[int, bytes] = field(default_factory=dict)  # after member n's data
    before_directory: bytes = b""
    trailer: bytes = b""  # after the end record
    comment: bytes = b""
    comment_length: int | None = None  # the end record's claim; defaults to the truth
    disks: tuple[int, int] = (0, 0)  # the end record's disk numbers


def zip_bytes(entries: list[Entry], declared_count: int | None = None,
              layout: Layout = Layout()) -> bytes:
    """Lay out entries one after the other, then the central directory and its end record
    (with whatever `layout` adds)."""
    base = len(layout.prefix) if layout.shift else 0
    body = bytearray()
    central = bytearray()
    for index, entry in enumerate(entries):
        offset = base + len(body)
        body += local_header(entry) + entry.data + entry.descriptor
        body += layout.gaps.get(index, b"")
        central += central_header(entry, offset)
    body += layout.before_directory
    count = len(entries) if declared_count is None else declared_count
    end = end_of_directory(count, len(central), base + len(body), layout.comment,
                           layout.disks, layout.comment_length)
    return layout.prefix + bytes(body + central + end) + layout.trailer


# ---------------------------------------------------------------- exchange content


def sha256(data: bytes) -> str:
    """Return the SHA-256 hex digest of `data`."""
    return hashlib.sha256(data).hexdigest()


def manifest_dict(key: SigningKey, files: dict[str, bytes] | None = None, *,
                  sequence: int = 1, dossier: str = DOSSIER, kind: Kind = Kind.UPDATE,
                  generated_at: datetime = GENERATED_AT) -> dict[str, Any]:
    """Return the manifest, as a JSON object, that honestly describes `files`."""
    files = CONTENT if files is None else files
    modules = tuple(path for path in files if path.startswith("vat_declaration/"))
    return Manifest(
        kind=kind, dossier=dossier, dossier_name=DOSSIER_NAME, generated_at=generated_at,
        fiscal_year_start=date(2020, 1, 1), fiscal_year_end=date(2020, 12, 31),
        sequence=sequence, key_id=key.public.key_id,
        files=tuple(Member(path, len(data), sha256(data)) for path, data in files.items()),
        modules={"vat_declaration": modules} if modules else {},
    ).to_dict()


def to_json(data: object) -> bytes:
    """Serialise a manifest the way passeur's writer does."""
    return json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True).encode()


def sign(key: SigningKey, body: bytes) -> bytes:
    """Return `key`'s manifest signature of `body`."""
    return key.sign(MANIFEST_CONTEXT + body)


@dataclass
class Exchange:
    """A well-formed signed exchange, kept in pieces so that a test can break one of them."""

    key: SigningKey
    files: dict[str, bytes] = field(default_factory=lambda: dict(CONTENT))
    manifest: dict[str, Any] | None = None  # defaults to the honest manifest of `files`
    body: bytes | None = None  # the exact manifest bytes; defaults to `manifest` serialised
    signature: bytes | None = None  # defaults to `signer`'s signature of `body`
    signer: SigningKey | None = None  # defaults to `key`
    name: str = NAME

    def manifest_bytes(self) -> bytes:
        """Return the bytes of manifest.json."""
        if self.body is not None:
            return self.body
        return to_json(self.manifest if self.manifest is not None
                       else manifest_dict(self.key, self.files))

    def signature_bytes(self) -> bytes:
        """Return the bytes of manifest.sig."""
        if self.signature is not None:
            return self.signature
        return sign(self.signer or self.key, self.manifest_bytes())

    def content_entries(self) -> list[Entry]:
        """Return the content members, deflated."""
        return [deflated(path, data) for path, data in self.files.items()]

    def entries(self) -> list[Entry]:
        """Return every member: content, manifest, signature."""
        return [*self.content_entries(), deflated(MANIFEST_NAME, self.manifest_bytes()),
                stored(SIGNATURE_NAME, self.signature_bytes())]

    def build(self, entries: list[Entry] | None = None,
              layout: Layout = Layout()) -> Crafted:
        """Return the file name and the archive's bytes."""
        return Crafted(self.name, zip_bytes(self.entries() if entries is None else entries,
                                            layout=layout))


@dataclass(frozen=True)
class Crafted:
    """A file as it would sit on a USB key: its name and its bytes."""

    name: str
    data: bytes


def signed_manifest(key: SigningKey, change: Callable[[dict[str, Any]], object],
                    files: dict[str, bytes] | None = None) -> Crafted:
    """Return an exchange whose manifest is altered by `change`, then correctly signed."""
    data = manifest_dict(key, files)
    change(data)
    return Exchange(key, files=dict(CONTENT if files is None else files),
                    manifest=data).build()


def with_entry(key: SigningKey, entry: Entry, listed: bool = True,
               listed_as: str | None = None, content: bytes | None = None) -> Crafted:
    """Return a signed exchange carrying one more member, honestly listed or not listed.

    `content` is what the member inflates to (its stored bytes by default); `listed_as`
    is the path the manifest gives it (its name by default).
    """
    exchange = Exchange(key)
    manifest = manifest_dict(key)
    if listed:
        content = entry.data if content is None else content
        path = entry.raw_name.decode("utf-8") if listed_as is None else listed_as
        manifest["files"].append({"path": path, "size": len(content),
                                  "sha256": sha256(content)})
    exchange.manifest = manifest
    entries = exchange.entries()
    return exchange.build([*entries[:-2], entry, *entries[-2:]])


def with_content_entry(key: SigningKey, **fields: Any) -> Crafted:
    """Return a signed exchange whose `ecritures.xml` entry has some header fields changed."""
    exchange = Exchange(key)
    entries = exchange.entries()
    entries[0] = replace(entries[0], **fields)
    return exchange.build(entries)


# ---------------------------------------------------------------- the zip bombs


def _gf2_apply(matrix: list[int], vector: int) -> int:
    result, bit = 0, 0
    while vector:
        if vector & 1:
            result ^= matrix[bit]
        vector >>= 1
        bit += 1
    return result


def _gf2_compose(outer: list[int], inner: list[int]) -> list[int]:
    return [_gf2_apply(outer, column) for column in inner]


@functools.cache
def _crc_zeros_operator(length: int) -> tuple[int, ...]:
    """Return the linear map the CRC-32 register undergoes over `length` zero bytes."""
    one_bit = [0xEDB88320] + [1 << n for n in range(31)]
    one_byte = one_bit
    for _ in range(3):
        one_byte = _gf2_compose(one_byte, one_byte)
    result = [1 << n for n in range(32)]
    while length:
        if length & 1:
            result = _gf2_compose(one_byte, result)
        one_byte = _gf2_compose(one_byte, one_byte)
        length >>= 1
    return tuple(result)


def crc32_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """Return the CRC-32 of A+B from the CRC-32s of A and B (as zlib's crc32_combine)."""
    return _gf2_apply(list(_crc_zeros_operator(length_b)), crc_a) ^ crc_b


@dataclass(frozen=True)
class Bomb:
    """An overlapping-entries zip bomb and what it claims."""

    data: bytes
    files: int
    kernel_size: int  # bytes every member ends with once inflated
    declared_total: int  # sum of the members' declared uncompressed sizes


def stored_block_header(length: int) -> bytes:
    # A non-final deflate block of type "stored": the next `length` bytes are output as is.
    return b"\x00" + struct.pack("<HH", length, length ^ 0xFFFF)


def _bomb_name(index: int) -> bytes:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    return (digits[index // 36 // 36 % 36] + digits[index // 36 % 36]
            + digits[index % 36]).encode()


@functools.cache
def overlapping_bomb(files: int = 250, kernel_size: int = 21_300_000) -> Bomb:
    """Build Fifield's quoted-overlap zip bomb: every member's data runs to one shared kernel.

    Member i's deflate stream opens with a stored block that quotes member i+1's local
    header, so the local headers stay intact for a parser that walks them, then carries on
    into member i+1's stream, and so on down to a highly compressed kernel of one repeated
    byte. Sizes and CRC-32s are exact: an extractor would really write them all.
    """
    kernel = raw_deflate(b"a" * kernel_size)
    kernel_crc = zlib.crc32(b"a" * kernel_size)
    entries: list[Entry] = []
    quoted = b""  # what the members after member i add before the kernel, once inflated
    tail = 0  # what lies between member i's data start and the kernel: quotes and headers
    for index in reversed(range(files)):
        entry = Entry(_bomb_name(index), b"", len(quoted) + kernel_size,
                      crc32_combine(zlib.crc32(quoted), kernel_crc, kernel_size),
                      method=DEFLATED, compress_size=tail + len(kernel))
        entries.insert(0, entry)
        header = local_header(entry)
        quoted = header + quoted
        tail += len(stored_block_header(len(header))) + len(header)
    body = bytearray()
    offsets = []
    for position, entry in enumerate(entries):
        offsets.append(len(body))
        header = local_header(entry)
        body += header
        if position + 1 < len(entries):
            body += stored_block_header(len(local_header(entries[position + 1])))
    body += kernel
    central = b"".join(central_header(e, o) for e, o in zip(entries, offsets, strict=True))
    data = bytes(body) + central + end_of_directory(files, len(central), len(body))
    return Bomb(data, files, kernel_size, sum(e.size for e in entries))


def shared_header_bomb(files: int = 200, kernel_size: int = 1 << 22) -> bytes:
    """Build the simplest overlap bomb: every central entry points at one local header."""
    kernel = raw_deflate(b"\0" * kernel_size)
    crc = zlib.crc32(b"\0" * kernel_size)
    first = Entry(_bomb_name(0), kernel, kernel_size, crc, method=DEFLATED)
    body = local_header(first) + kernel
    central = b"".join(central_header(replace(first, name=_bomb_name(i)), 0)
                       for i in range(files))
    return body + central + end_of_directory(files, len(central), len(body))


# ---------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Case:
    """A crafted file and the rejection code it must earn."""

    id: str
    code: Code
    build: Callable[[SigningKey], Crafted]


def _truncated(key: SigningKey) -> Crafted:
    whole = Exchange(key).build()
    return Crafted(whole.name, whole.data[: len(whole.data) // 2])


def _end_cut(key: SigningKey) -> Crafted:
    whole = Exchange(key).build()
    return Crafted(whole.name, whole.data[:-7])


def _random_bytes(key: SigningKey) -> Crafted:
    return Crafted(NAME, random.Random(1871).randbytes(5000))  # fixed junk


def _signed_by_other_key(key: SigningKey) -> Crafted:
    stranger = SigningKey.generate()
    return Exchange(stranger).build()


def _claims_trusted_key(key: SigningKey) -> Crafted:
    return Exchange(key, signer=SigningKey.generate()).build()


def _signature_of_other_manifest(key: SigningKey) -> Crafted:
    other = manifest_dict(key, sequence=2)
    return Exchange(key, signature=sign(key, to_json(other))).build()


def _altered_after_signing(key: SigningKey) -> Crafted:
    honest = to_json(manifest_dict(key))
    altered = honest.replace(b'"sequence": 1', b'"sequence": 9')
    assert altered != honest
    return Exchange(key, body=altered, signature=sign(key, honest)).build()


def _without(name: str) -> Callable[[SigningKey], Crafted]:
    def build(key: SigningKey) -> Crafted:
        exchange = Exchange(key)
        return exchange.build([e for e in exchange.entries() if e.name != name])
    return build


def _manifest_body(body: bytes) -> Callable[[SigningKey], Crafted]:
    """An exchange whose manifest.json holds `body`, signed (so that only parsing fails)."""
    def build(key: SigningKey) -> Crafted:
        return Exchange(key, body=body).build()
    return build


def _field(change: Callable[[dict[str, Any]], object]) -> Callable[[SigningKey], Crafted]:
    def build(key: SigningKey) -> Crafted:
        return signed_manifest(key, change)
    return build


def _set(data: dict[str, Any], path: str, value: object) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data[part]
    data[last] = value


def _delete(data: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data[part]
    del data[last]


def _duplicate_json_key(key: SigningKey) -> Crafted:
    honest = to_json(manifest_dict(key))
    doubled = honest.replace(b'"sequence": 1', b'"sequence": 1,\n "sequence": 99')
    assert doubled != honest
    return Exchange(key, body=doubled).build()


def _lists_path(path: str) -> Callable[[SigningKey], Crafted]:
    """A correctly signed manifest listing `path` (absent from the archive)."""
    def build(key: SigningKey) -> Crafted:
        data = manifest_dict(key)
        data["files"].append({"path": path, "size": 4, "sha256": sha256(b"evil")})
        return Exchange(key, manifest=data).build()
    return build


def _carries_path(path: str | bytes) -> Callable[[SigningKey], Crafted]:
    """A correctly signed exchange listing and carrying a member named `path`."""
    def build(key: SigningKey) -> Crafted:
        return with_entry(key, stored(path, b"evil"))
    return build


def _carries(entry: Entry, listed: bool = True) -> Callable[[SigningKey], Crafted]:
    def build(key: SigningKey) -> Crafted:
        return with_entry(key, entry, listed)
    return build


def _two_names(first: str, second: str) -> Callable[[SigningKey], Crafted]:
    def build(key: SigningKey) -> Crafted:
        files = {first: b"<a/>", second: b"<b/>"}
        return Exchange(key, files=files).build()
    return build


def _size_lie(key: SigningKey) -> Crafted:
    data = manifest_dict(key)
    data["files"][0]["size"] += 1
    return Exchange(key, manifest=data).build()


def _hash_lie(key: SigningKey) -> Crafted:
    data = manifest_dict(key)
    data["files"][0]["sha256"] = sha256(b"something else")
    return Exchange(key, manifest=data).build()


def _inflates_beyond_size(key: SigningKey) -> Crafted:
    # Header and manifest agree on 1,000 bytes; the stream inflates to 2 MiB.
    payload = b"<e/>" * 250
    exchange = Exchange(key, files={"ecritures.xml": payload})
    entries = exchange.entries()
    entries[0] = replace(entries[0], data=raw_deflate(payload + b" " * (2 << 20)))
    return exchange.build(entries)


def _stream_cut_short(key: SigningKey) -> Crafted:
    payload = random.Random(7).randbytes(3000)  # incompressible
    exchange = Exchange(key, files={"ecritures.xml": payload})
    entries = exchange.entries()
    entries[0] = replace(entries[0], data=entries[0].data[:-200])
    return exchange.build(entries)


def _stream_with_trailer(key: SigningKey) -> Crafted:
    exchange = Exchange(key)
    entries = exchange.entries()
    entries[0] = replace(entries[0], data=entries[0].data + b"hidden payload after the end")
    return exchange.build(entries)


def _garbled_stream(key: SigningKey) -> Crafted:
    exchange = Exchange(key)
    entries = exchange.entries()
    entries[0] = replace(entries[0], data=b"\xff" * len(entries[0].data))
    return exchange.build(entries)


def _too_many_members(key: SigningKey) -> Crafted:
    exchange = Exchange(key)
    padding = [stored(f"p/{n}", b"") for n in range(10_001)]
    return exchange.build([*padding, *exchange.entries()])


def _declares_many_members(key: SigningKey) -> Crafted:
    exchange = Exchange(key)
    return Crafted(NAME, zip_bytes(exchange.entries(), declared_count=65_000))


def _declares_huge_member(key: SigningKey) -> Crafted:
    # 20 GiB announced for a few bytes: the reader must refuse from the directory alone.
    return with_entry(key, replace(stored("big.xml", b"tiny"), size=20 << 30, zip64=True))


def _high_ratio(key: SigningKey) -> Crafted:
    zeros = b"\0" * (8 << 20)
    return with_entry(key, deflated("zeros.bin", zeros), content=zeros)


def _overlapping_bomb(key: SigningKey) -> Crafted:
    return Crafted(NAME, overlapping_bomb().data)


def _shared_header_bomb(key: SigningKey) -> Crafted:
    return Crafted(NAME, shared_header_bomb())


def _data_into_directory(key: SigningKey) -> Crafted:
    exchange = Exchange(key)
    entries = exchange.entries()
    last = entries[-1]
    entries[-1] = replace(last, compress_size=len(last.data) + 40, size=len(last.data) + 40)
    return exchange.build(entries)


def _offset_beyond_end(key: SigningKey) -> Crafted:
    return with_content_entry(key, header_offset=10 << 20)


def _lone_surrogate(key: SigningKey) -> Crafted:
    # Valid JSON, valid UTF-8, signed: but "\ud800" decodes to text no file system can hold.
    data = manifest_dict(key)
    data["comments"] = "@@"
    body = to_json(data).replace(b'"@@"', b'"\\ud800"')
    return Exchange(key, body=body).build()


def _manifest_too_large(key: SigningKey) -> Crafted:
    data = manifest_dict(key)
    data["comments"] = "x" * (5 << 20)
    exchange = Exchange(key, manifest=data)
    entries = exchange.entries()
    entries[-2] = stored(MANIFEST_NAME, exchange.manifest_bytes())  # no ratio to trip on
    return exchange.build(entries)


def _deep_json(key: SigningKey) -> Crafted:
    return Exchange(key, body=b"[" * 200_000 + b"]" * 200_000).build()


def _renamed(name: str, **manifest: Any) -> Callable[[SigningKey], Crafted]:
    def build(key: SigningKey) -> Crafted:
        exchange = Exchange(key, manifest=manifest_dict(key, **manifest), name=name)
        return exchange.build()
    return build


def _dossier_unknown(key: SigningKey) -> Crafted:
    name = make_name("9999999", GENERATED_AT, Kind.UPDATE)
    return Exchange(key, manifest=manifest_dict(key, dossier="9999999"), name=name).build()


def _laid_out(**layout: Any) -> Callable[[SigningKey], Crafted]:
    """A correct exchange with bytes where the canonical layout has none."""
    def build(key: SigningKey) -> Crafted:
        return Exchange(key).build(layout=Layout(**layout))
    return build


def _archive_prepended(key: SigningKey) -> Crafted:
    # Another reader, reading from the front, would find this other archive first.
    other = Exchange(key, files={"ecritures.xml": b"<ecritures/>"}).build().data
    return Exchange(key).build(layout=Layout(prefix=other, shift=False))


def _descriptor(entry: Entry, crc: int | None = None, size: int | None = None) -> Entry:
    """`entry` with its CRC-32 and sizes in a data descriptor after the data."""
    body = struct.pack("<4sIII", b"PK\x07\x08", entry.crc if crc is None else crc,
                       entry.declared_compress_size, entry.size if size is None else size)
    return replace(entry, flags=entry.flags | 0x8, local_crc=0, local_compress_size=0,
                   local_size=0, descriptor=body)


def _with_first(change: Callable[[Entry], Entry]) -> Callable[[SigningKey], Crafted]:
    def build(key: SigningKey) -> Crafted:
        exchange = Exchange(key)
        entries = exchange.entries()
        entries[0] = change(entries[0])
        return exchange.build(entries)
    return build


def _with_last_but_one(key: SigningKey, change: Callable[[Entry], Entry]) -> Crafted:
    exchange = Exchange(key)
    entries = exchange.entries()
    entries[-2] = change(entries[-2])
    return exchange.build(entries)


def _sequence(value: int) -> Callable[[SigningKey], Crafted]:
    def build(key: SigningKey) -> Crafted:
        return signed_manifest(key, lambda d: _set(d, "sequence", value))
    return build


_DOSSIER_NAME = make_name(DOSSIER, GENERATED_AT, Kind.DOSSIER)

HOSTILE: tuple[Case, ...] = (
    # ---- not a ZIP at all, or not all of one
    Case("empty-file", Code.NOT_ZIP, lambda key: Crafted(NAME, b"")),
    Case("random-bytes", Code.NOT_ZIP, _random_bytes),
    Case("text-file", Code.NOT_ZIP, lambda key: Crafted(NAME, b"<ecritures/>\n" * 100)),
    Case("truncated-half", Code.TRUNCATED, _truncated),
    Case("truncated-end-record", Code.TRUNCATED, _end_cut),
    Case("header-offset-beyond-end", Code.TRUNCATED, _offset_beyond_end),
    Case("needs-zip-version-13.8", Code.TRUNCATED,
         lambda key: with_content_entry(key, version_needed=138)),
    # ---- container tricks
    Case("encrypted-flag", Code.ENCRYPTED, lambda key: with_content_entry(key, flags=0x801)),
    Case("bzip2-method", Code.UNSUPPORTED_COMPRESSION,
         lambda key: with_content_entry(key, method=12, local_method=12)),
    Case("lzma-method", Code.UNSUPPORTED_COMPRESSION,
         lambda key: with_content_entry(key, method=14, local_method=14)),
    Case("duplicate-member", Code.MEMBER_DUPLICATE,
         _carries(deflated("ecritures.xml", CONTENT["ecritures.xml"]), listed=False)),
    Case("local-name-differs", Code.HEADER_MISMATCH,
         lambda key: with_content_entry(key, local_name=b"../../evil.sh")),
    Case("local-method-differs", Code.HEADER_MISMATCH,
         lambda key: with_content_entry(key, local_method=STORED)),
    Case("local-encryption-differs", Code.HEADER_MISMATCH,
         lambda key: with_content_entry(key, local_flags=0x801)),
    Case("stored-sizes-differ", Code.MEMBER_CORRUPT,
         lambda key: with_entry(key, replace(stored("a.xml", b"<a/>"), compress_size=3))),
    Case("symlink-member", Code.SYMLINK,
         _carries(stored("lien.xml", b"/etc/passwd", external_attr=SYMLINK_FILE))),
    # ---- every byte of the file belongs to the canonical layout
    Case("sfx-prefix", Code.DATA_BEFORE, _laid_out(prefix=b"MZ\x90\x00" + b"\0" * 60)),
    Case("prefix-offsets-unshifted", Code.DATA_BEFORE,
         _laid_out(prefix=b"#!/bin/sh\nexit 0\n", shift=False)),
    Case("second-archive-prepended", Code.DATA_BEFORE, _archive_prepended),
    Case("gap-between-members", Code.DATA_BETWEEN, _laid_out(gaps={0: b"hidden"})),
    Case("gap-before-directory", Code.DATA_BETWEEN, _laid_out(before_directory=b"hidden")),
    Case("bytes-after-end-record", Code.DATA_AFTER, _laid_out(trailer=b"hidden")),
    Case("comment-runs-past-end", Code.TRUNCATED,
         _laid_out(comment=b"short", comment_length=500)),
    Case("end-record-second-disk", Code.MULTI_DISK, _laid_out(disks=(1, 1))),
    Case("member-on-second-disk", Code.MULTI_DISK, _with_first(lambda e: replace(e, disk=1))),
    Case("local-crc-differs", Code.HEADER_MISMATCH,
         _with_first(lambda e: replace(e, local_crc=e.crc ^ 1))),
    Case("local-size-differs", Code.HEADER_MISMATCH,
         _with_first(lambda e: replace(e, local_compress_size=e.declared_compress_size - 1))),
    Case("local-flags-differ", Code.HEADER_MISMATCH,
         _with_first(lambda e: replace(e, local_flags=e.flags | 0x2))),
    Case("descriptor-crc-differs", Code.HEADER_MISMATCH,
         _with_first(lambda e: _descriptor(e, crc=e.crc ^ 1))),
    Case("descriptor-size-differs", Code.HEADER_MISMATCH,
         _with_first(lambda e: _descriptor(e, size=e.size + 1))),
    Case("crc-wrong-sha256-right", Code.MEMBER_CRC,
         _with_first(lambda e: replace(e, crc=e.crc ^ 0x5A5A))),
    Case("manifest-crc-wrong", Code.MEMBER_CRC,
         lambda key: _with_last_but_one(key, lambda e: replace(e, crc=e.crc ^ 1))),
    # ---- dangerous member paths in the archive
    Case("path-absolute", Code.PATH_UNSAFE, _carries_path("/etc/cron.d/evil")),
    Case("path-dotdot", Code.PATH_UNSAFE, _carries_path("../../.bashrc")),
    Case("path-dotdot-inside", Code.PATH_UNSAFE, _carries_path("situations/../../x.xml")),
    Case("path-drive-letter", Code.PATH_UNSAFE, _carries_path("C:/Windows/evil.dll")),
    Case("path-drive-relative", Code.PATH_UNSAFE, _carries_path("C:evil.dll")),
    Case("path-unc", Code.PATH_UNSAFE, _carries_path("//serveur/partage/x.xml")),
    Case("path-unc-backslash", Code.PATH_UNSAFE, _carries_path(b"\\\\serveur\\partage\\x")),
    Case("path-backslash", Code.PATH_UNSAFE, _carries_path(b"..\\..\\evil.bat")),
    # zipfile cuts names at NUL: the reader would see "tva.xml", an extractor more.
    Case("path-nul", Code.PATH_UNSAFE,
         lambda key: with_entry(key, stored(b"tva.xml\x00../../evil", b"evil"),
                                listed_as="tva.xml")),
    Case("path-colon-stream", Code.PATH_UNSAFE, _carries_path("ecritures.xml:cache")),
    Case("path-directory-entry", Code.PATH_UNSAFE, _carries_path("situations/")),
    Case("path-trailing-dot", Code.PATH_UNSAFE, _carries_path("ecritures.xml.")),
    Case("path-device-name", Code.PATH_UNSAFE, _carries_path("situations/CON.xml")),
    Case("path-bidi-override", Code.PATH_UNSAFE, _carries_path("facture\u202elmx.exe")),
    Case("path-unassigned-code-point", Code.PATH_UNSAFE, _carries_path("facture\U000e0fffx.xml")),
    Case("path-private-use", Code.PATH_UNSAFE, _carries_path("facture\ue000.xml")),
    Case("path-noncharacter", Code.PATH_UNSAFE, _carries_path("facture\ufdd0.xml")),
    Case("signed-manifest-lists-dotdot", Code.PATH_UNSAFE, _lists_path("../evil.xml")),
    Case("signed-manifest-lists-absolute", Code.PATH_UNSAFE, _lists_path("/tmp/evil.xml")),
    # ---- names that collide once extracted
    Case("collision-case", Code.NAME_COLLISION, _two_names("Ecritures.xml", "ECRITURES.XML")),
    Case("collision-nfc-nfd", Code.NAME_COLLISION,
         _two_names("r\u00e9sultat.xml", "re\u0301sultat.xml")),
    Case("collision-file-and-folder", Code.NAME_COLLISION,
         _two_names("situations", "situations/s.xml")),
    # ---- bombs and caps
    Case("too-many-members", Code.TOO_MANY_MEMBERS, _too_many_members),
    Case("declares-too-many-members", Code.TOO_MANY_MEMBERS, _declares_many_members),
    Case("declares-20-gib", Code.TOO_LARGE, _declares_huge_member),
    Case("ratio-1000-to-1", Code.RATIO_TOO_HIGH, _high_ratio),
    Case("overlapping-bomb", Code.OVERLAPPING, _overlapping_bomb),
    Case("shared-header-bomb", Code.OVERLAPPING, _shared_header_bomb),
    Case("data-runs-into-directory", Code.OVERLAPPING, _data_into_directory),
    # ---- the manifest
    Case("manifest-missing", Code.MANIFEST_MISSING, _without(MANIFEST_NAME)),
    Case("manifest-not-json", Code.MANIFEST_MALFORMED, _manifest_body(b"{format: 1,")),
    Case("manifest-not-utf8", Code.MANIFEST_MALFORMED,
         _manifest_body('{"format": 1, "nom": "é"}'.encode("latin-1"))),
    Case("manifest-a-list", Code.MANIFEST_MALFORMED, _manifest_body(b"[1, 2, 3]")),
    Case("manifest-deeply-nested", Code.MANIFEST_MALFORMED, _deep_json),
    Case("manifest-huge-number", Code.MANIFEST_MALFORMED,
         _manifest_body(b'{"format": 1, "sequence": ' + b"9" * 5000 + b"}")),
    Case("manifest-nan", Code.MANIFEST_MALFORMED,
         _manifest_body(b'{"format": 1, "sequence": NaN}')),
    Case("manifest-duplicate-key", Code.MANIFEST_MALFORMED, _duplicate_json_key),
    Case("manifest-lone-surrogate", Code.MANIFEST_MALFORMED, _lone_surrogate),
    Case("manifest-too-large", Code.MANIFEST_MALFORMED, _manifest_too_large),
    Case("format-version-2", Code.FORMAT_VERSION, _field(lambda d: _set(d, "format", 2))),
    Case("format-true", Code.MANIFEST_MALFORMED, _field(lambda d: _set(d, "format", True))),
    Case("format-missing", Code.MANIFEST_MALFORMED, _field(lambda d: _delete(d, "format"))),
    Case("field-missing-sequence", Code.MANIFEST_MALFORMED,
         _field(lambda d: _delete(d, "sequence"))),
    Case("field-missing-dossier-name", Code.MANIFEST_MALFORMED,
         _field(lambda d: _delete(d, "dossier.name"))),
    Case("wrong-type-sequence", Code.MANIFEST_MALFORMED,
         _field(lambda d: _set(d, "sequence", "1"))),
    Case("wrong-type-etalon", Code.MANIFEST_MALFORMED, _field(lambda d: _set(d, "etalon", 0))),
    Case("wrong-type-files", Code.MANIFEST_MALFORMED, _field(lambda d: _set(d, "files", {}))),
    Case("naive-datetime", Code.MANIFEST_MALFORMED,
         _field(lambda d: _set(d, "generated_at", "2020-10-27T17:20:21"))),
    Case("fiscal-year-backwards", Code.MANIFEST_MALFORMED,
         _field(lambda d: _set(d, "fiscal_year.end", "2019-12-31"))),
    Case("sequence-zero", Code.MANIFEST_MALFORMED, _field(lambda d: _set(d, "sequence", 0))),
    Case("sequence-2-pow-63", Code.MANIFEST_MALFORMED, _sequence(2**63)),
    Case("size-2-pow-63", Code.MANIFEST_MALFORMED,
         _field(lambda d: _set(d["files"][0], "size", 2**63))),
    Case("unknown-module", Code.MANIFEST_MALFORMED,
         _field(lambda d: _set(d, "modules", {"paie": ["ecritures.xml"]}))),
    Case("lists-reserved-name", Code.MANIFEST_MALFORMED,
         _field(lambda d: d["files"].append(
             {"path": SIGNATURE_NAME, "size": 64, "sha256": "0" * 64}))),
    # ---- the signature
    Case("signature-missing", Code.SIGNATURE_MISSING, _without(SIGNATURE_NAME)),
    Case("signature-short", Code.SIGNATURE_BAD,
         lambda key: Exchange(key, signature=b"\x01" * 63).build()),
    Case("signature-zeros", Code.SIGNATURE_BAD,
         lambda key: Exchange(key, signature=b"\0" * 64).build()),
    Case("signature-of-other-manifest", Code.SIGNATURE_BAD, _signature_of_other_manifest),
    Case("manifest-altered-after-signing", Code.SIGNATURE_BAD, _altered_after_signing),
    Case("signed-by-impostor-claiming-trusted-id", Code.SIGNATURE_BAD, _claims_trusted_key),
    Case("signed-by-untrusted-key", Code.KEY_UNKNOWN, _signed_by_other_key),
    # ---- members against the manifest
    Case("member-unlisted", Code.MEMBER_UNLISTED, _carries(stored("extra.xml", b"<x/>"), False)),
    Case("member-missing", Code.MEMBER_MISSING,
         _lists_path("situations/absente.xml")),
    Case("member-size-lie", Code.MEMBER_SIZE, _size_lie),
    Case("member-hash-lie", Code.MEMBER_HASH, _hash_lie),
    Case("deflate-longer-than-declared", Code.MEMBER_SIZE, _inflates_beyond_size),
    Case("deflate-stream-cut-short", Code.MEMBER_CORRUPT, _stream_cut_short),
    Case("deflate-data-after-end", Code.MEMBER_CORRUPT, _stream_with_trailer),
    Case("deflate-garbled", Code.MEMBER_CORRUPT, _garbled_stream),
    # ---- the name and what the file is for
    Case("bad-name", Code.BAD_NAME, lambda key: replace(Exchange(key).build(),
                                                        name="mise-a-jour.zip")),
    Case("bad-name-impossible-date", Code.BAD_NAME,
         lambda key: replace(Exchange(key).build(), name=f"{DOSSIER}-20201332172021.wwz")),
    Case("name-mismatch-date", Code.NAME_MISMATCH,
         _renamed(f"{DOSSIER}-20201027172022.wwz")),
    Case("name-mismatch-dossier", Code.NAME_MISMATCH,
         _renamed(make_name("1234567", GENERATED_AT, Kind.UPDATE))),
    Case("dossier-offered-as-update", Code.WRONG_KIND,
         _renamed(_DOSSIER_NAME, kind=Kind.DOSSIER)),
    Case("dossier-unknown", Code.DOSSIER_UNKNOWN, _dossier_unknown),
)
