"""Writing exchange files: the project's one ZIP writer, deflating on every core at once.

`zipfile` cannot take data compressed elsewhere, so the headers are written here, in the
layout the strict reader (daemon.exchange) and the single-pass digest (daemon.zipstream)
follow: each member is a local header carrying its final CRC-32 and sizes (patched in
place once the member is written, never a data descriptor), then its data; then the
central directory and the end record, in ZIP64 form wherever a size, an offset or the
number of entries needs it (or everywhere, with `force_zip64`).

Deflating in parallel (`MemberPipeline`): a member's content is cut into chunks that are
deflated independently on a thread pool (zlib lets go of the GIL), each one primed with
the previous chunk's last 32 KiB as its dictionary (as pigz does, so that the ratio stays
that of a single stream) and ended with a sync flush (byte-aligned, not final); the member
ends with an empty final block. Written in order, they make one valid raw deflate stream.
CRC-32 and SHA-256 of the content are taken as it is read. A bounded number of chunks is
in flight, whatever the sizes.

Readers refuse a member that expands more than `max_ratio` (a compression bomb), and an
honest file can shrink more than that (a log of one repeated line, a sparse database):
such a member is padded with empty stored blocks up to that ratio, which the readers
inflate to nothing. It costs 1/max_ratio of the member's size, where storing it would
cost all of it.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
import struct
import time
import zipfile
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, NamedTuple

from daemon.compressibility import (
    TRIAL_SIZE,
    bytes_look_random,
    known_compressed,
    looks_like_text,
    worth_deflating,
)
from daemon.fsutil import CHUNK, PartDigests, Writeback
from daemon.zipstream import (
    LOCAL_HEADER,
    LOCAL_MAGIC,
    MAX_RATIO,
    RATIO_FLOOR,
    ZIP64_EXTRA,
    ZIP64_MARK,
)

STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
LEVEL = 6  # Info-ZIP's default: the sizes users know
CHUNK_SIZE = 1 << 20  # what one worker deflates at a time
WINDOW = 32 << 10  # deflate's window: the dictionary handed from one chunk to the next
UTF8_NAME = 0x800
HOLD = 1 << 20  # a member up to this size is written once complete, in one go
WRITE_SIZE = 1 << 20  # final bytes are written by pieces of this size
# After a sync flush the stream is at a byte boundary: an empty non-final stored block is
# then these 5 bytes, and an empty final block (fixed codes, end of block) these 2.
EMPTY_STORED_BLOCK = b"\x00\x00\x00\xff\xff"
FINAL_BLOCK = b"\x03\x00"
# A member this close to 4 GiB gets the ZIP64 field in its local header from the start:
# deflate may grow incompressible data a little, and the header cannot grow afterwards.
_ZIP64_RESERVE = 64 << 20
_REGULAR_FILE = (stat.S_IFREG | 0o644) << 16  # a plain file, whatever the source's mode
_UNIX = 3
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_CENTRAL_MAGIC = b"PK\x01\x02"
_END = struct.Struct("<4sHHHHIIH")
_END_MAGIC = b"PK\x05\x06"
_ZIP64_END = struct.Struct("<4sQHHIIQQQQ")
_ZIP64_END_MAGIC = b"PK\x06\x06"
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_LOCATOR_MAGIC = b"PK\x06\x07"
_LOCAL_ZIP64 = struct.Struct("<HHQQ")
_COUNT_MARK = 0xFFFF
_DOS_EPOCH = (0, (1 << 5) | 1)  # 1980-01-01 00:00:00, the earliest an MS-DOS date holds


class Entry(NamedTuple):
    """A member written completely, as the central directory will describe it."""

    name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc: int
    compress_size: int
    file_size: int
    offset: int
    zip64: bool


@dataclass
class _Open:
    name: bytes
    flags: int
    method: int
    dos_time: int
    dos_date: int
    offset: int
    zip64: bool
    compress_size: int = 0
    # Header and data held back while the member is small: it is then written once, with
    # its final header, instead of a placeholder patched afterwards.
    held: list[bytes] | None = None
    held_size: int = 0


def dos_stamp(mtime: float) -> tuple[int, int]:
    """Return (MS-DOS time, MS-DOS date) of a modification time, in local time."""
    try:
        moment = time.localtime(mtime)
    except (OverflowError, OSError, ValueError):
        return _DOS_EPOCH
    if moment.tm_year < 1980:
        return _DOS_EPOCH
    year = min(moment.tm_year, 2107)
    return ((moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2),
            ((year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday)


class ZipWriter:
    """Writes a ZIP archive member by member into a new file opened for writing.

    `out` must be a real file (its `name` is opened again to hash what is final) at
    offset 0. Use as a context manager, inside the one that removes the file on failure.
    """

    def __init__(self, out: BinaryIO, *, force_zip64: bool = False,
                 part_size: int = 0) -> None:
        self._out = out
        self._offset = 0
        self._force_zip64 = force_zip64
        self._entries: list[Entry] = []
        self._open: _Open | None = None
        # The whole file's SHA-256 trails the writer: a member held in memory is hashed as
        # it is written; a larger one, whose header is patched, is read back through a
        # second handle once final (from the page cache: it was just written).
        self._digest = hashlib.sha256()
        # With `part_size`, each part's SHA-256 too: the web upload sends those parts.
        self._parts = PartDigests(part_size) if part_size else None
        self._hashed = 0
        self._reader: BinaryIO | None = None
        # Final bytes gathered into large writes: one system call (and one hash update)
        # for many small members rather than several each.
        self._final = bytearray()
        self._writeback = Writeback(out.fileno())
        self.size = 0
        self.sha256 = ""
        self.part_sha256: tuple[str, ...] = ()

    def __enter__(self) -> ZipWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        # Closed before the file is renamed or removed: Windows removes no open file.
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    @property
    def open_size(self) -> int:
        """Return how many bytes of data the open member has so far."""
        return self._open.compress_size if self._open is not None else 0

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Return the members written so far."""
        return tuple(self._entries)

    def begin(self, name: str, method: int, mtime: float, size_hint: int) -> None:
        """Start a member; its CRC-32 and sizes go into its local header at end()."""
        if self._open is not None:
            raise RuntimeError("a member is already open")
        encoded, flags = _encode_name(name)
        zip64 = self._force_zip64 or size_hint >= ZIP64_MARK - _ZIP64_RESERVE
        dos_time, dos_date = dos_stamp(mtime)
        member = _Open(encoded, flags, method, dos_time, dos_date, self._offset, zip64)
        member.held = [self._local_header(member, 0, 0)]
        member.held_size = len(member.held[0])
        self._open = member

    def write(self, data: bytes) -> None:
        """Append data (already compressed with the member's method) to the open member."""
        member = self._open
        if member is None:
            raise RuntimeError("no member is open")
        member.compress_size += len(data)
        if member.held is None:
            self._write(data)
            return
        member.held.append(data)
        member.held_size += len(data)
        if member.held_size > HOLD:
            # Too large to hold: the header goes out as a placeholder, patched at end().
            for piece in member.held:
                self._write(piece)
            member.held = None

    def end(self, crc: int, file_size: int) -> Entry:
        """Finish the open member: write it, or put its CRC-32 and sizes into its header."""
        member = self._open
        if member is None:
            raise RuntimeError("no member is open")
        self._open = None
        size = member.compress_size
        if not member.zip64 and max(size, file_size) >= ZIP64_MARK:
            raise ValueError(f"{member.name!r}: larger than announced")
        if member.method == STORED and size != file_size:
            raise ValueError(f"{member.name!r}: stored data of the wrong size")
        header = self._local_header(member, crc, size, file_size)
        if member.held is not None:
            member.held[0] = header
            for piece in member.held:
                self._write_final(piece)
        else:
            self._out.seek(member.offset)
            self._out.write(header)
            self._out.seek(self._offset)
        entry = Entry(member.name, member.flags, member.method, member.dos_time,
                      member.dos_date, crc, size, file_size, member.offset, member.zip64)
        self._entries.append(entry)
        self._hash_final()
        return entry

    def discard(self) -> None:
        """Take back the open member, as if it had never been started."""
        member = self._open
        if member is None:
            raise RuntimeError("no member is open")
        self._open = None
        if member.held is None:
            self._out.seek(member.offset)
            self._out.truncate()
            self._offset = member.offset

    def _local_header(self, member: _Open, crc: int, size: int, file_size: int = 0) -> bytes:
        if member.zip64:
            # The local ZIP64 field holds both sizes, uncompressed first.
            extra = _LOCAL_ZIP64.pack(ZIP64_EXTRA, 16, file_size, size)
            sizes = (ZIP64_MARK, ZIP64_MARK)
        else:
            extra, sizes = b"", (size, file_size)
        return LOCAL_HEADER.pack(LOCAL_MAGIC, _version(member.zip64), member.flags,
                                 member.method, member.dos_time, member.dos_date, crc,
                                 *sizes, len(member.name), len(extra)) + member.name + extra

    def add_bytes(self, name: str, data: bytes, method: int, mtime: float) -> Entry:
        """Write a whole small member from memory."""
        payload = deflate(data, b"", True) if method == DEFLATED else data
        self.begin(name, method, mtime, len(data))
        self.write(payload)
        return self.end(zlib.crc32(data), len(data))

    def close(self) -> None:
        """Write the central directory and the end record; `size` and `sha256` are then set."""
        if self._open is not None:
            raise RuntimeError("a member is still open")
        start = self._offset
        directory = b"".join(self._central_record(entry) for entry in self._entries)
        self._write_final(directory)
        count = len(self._entries)
        force = self._force_zip64
        needs_zip64 = (force or count >= _COUNT_MARK or len(directory) >= ZIP64_MARK
                       or start >= ZIP64_MARK)
        if needs_zip64:
            record = self._offset
            self._write_final(_ZIP64_END.pack(_ZIP64_END_MAGIC, _ZIP64_END.size - 12,
                                        (_UNIX << 8) | 45, 45, 0, 0, count, count,
                                        len(directory), start))
            self._write_final(_ZIP64_LOCATOR.pack(_ZIP64_LOCATOR_MAGIC, 0, record, 1))
        shown_count = _COUNT_MARK if force or count >= _COUNT_MARK else count
        self._write_final(_END.pack(_END_MAGIC, 0, 0, shown_count, shown_count,
                                    _marked(len(directory), force), _marked(start, force), 0))
        self._hash_final()
        self.size = self._offset
        self.sha256 = self._digest.hexdigest()
        if self._parts is not None:
            self.part_sha256 = self._parts.hexdigests()

    def _central_record(self, entry: Entry) -> bytes:
        force = self._force_zip64
        big = [value for value in (entry.file_size, entry.compress_size, entry.offset)
               if force or value >= ZIP64_MARK]
        extra = struct.pack(f"<HH{len(big)}Q", ZIP64_EXTRA, 8 * len(big), *big) if big else b""
        version = _version(entry.zip64 or bool(big))
        return _CENTRAL.pack(
            _CENTRAL_MAGIC, (_UNIX << 8) | version, version, entry.flags, entry.method,
            entry.dos_time, entry.dos_date, entry.crc, _marked(entry.compress_size, force),
            _marked(entry.file_size, force), len(entry.name), len(extra), 0, 0, 0,
            _REGULAR_FILE, _marked(entry.offset, force),
        ) + entry.name + extra

    def _write(self, data: bytes) -> None:
        """Write bytes of a member still open (its header will be patched)."""
        self._flush_final()
        self._out.write(data)
        self._offset += len(data)

    def _write_final(self, data: bytes) -> None:
        """Write bytes that will not change (every byte before them is final too)."""
        self._final += data
        self._offset += len(data)
        if len(self._final) >= WRITE_SIZE:
            self._flush_final()

    def _flush_final(self) -> None:
        if self._final:
            self._hash(self._final)
            self._out.write(self._final)
            self._hashed += len(self._final)
            self._writeback.wrote(len(self._final))
            self._final.clear()

    def _hash(self, data: bytes | bytearray) -> None:
        self._digest.update(data)
        if self._parts is not None:
            self._parts.update(data)

    def _hash_final(self) -> None:
        """Hash every byte that can no longer change, then let the disk have it."""
        self._flush_final()
        if self._hashed == self._offset:
            return
        self._out.flush()
        if self._reader is None:
            self._reader = open(self._out.name, "rb")  # noqa: SIM115 - closed in __exit__
        self._reader.seek(self._hashed)
        while self._hashed < self._offset:
            data = self._reader.read(min(CHUNK, self._offset - self._hashed))
            if not data:
                raise OSError(f"{self._out.name}: shorter than written")
            self._hash(data)
            self._hashed += len(data)
            self._writeback.wrote(len(data))


def _encode_name(name: str) -> tuple[bytes, int]:
    if name.isascii():
        return name.encode("ascii"), 0
    return name.encode("utf-8"), UTF8_NAME


def _version(zip64: bool) -> int:
    return 45 if zip64 else 20


def _marked(value: int, force: bool) -> int:
    return ZIP64_MARK if force or value >= ZIP64_MARK else value


def deflate(data: bytes, zdict: bytes, last: bool = False) -> bytes:
    """Deflate one chunk of a member (raw deflate, level 6), primed with `zdict`.

    A chunk that is not `last` ends with a sync flush (byte-aligned, no final block), so
    that the next chunk's output, or FINAL_BLOCK, can follow it in the same stream.
    """
    if zdict:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS, 8,
                                      zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(
        zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class Compression(enum.Enum):
    """How a pipeline compresses its members."""

    STORE = "store"
    DEFLATE = "deflate"
    AUTO = "auto"  # by content: known compressed formats and a trial on the first chunk


def first_chunk(data: bytes, compression: Compression) -> tuple[int, bytes]:
    """Return a member's method and its first chunk's payload (the trial, when AUTO).

    The first chunk is the trial's sample (`TRIAL_SIZE` bytes): when deflating pays, its
    deflated form is the start of the member, so the trial costs nothing more.
    """
    if not data or compression is Compression.STORE:
        return STORED, data
    if compression is Compression.AUTO and (known_compressed(data) or (
            not looks_like_text(data) and bytes_look_random(data))):
        return STORED, data
    deflated = deflate(data, b"")
    if compression is Compression.AUTO and not worth_deflating(len(data), len(deflated)):
        return STORED, data
    return DEFLATED, deflated


def _later_chunk(decided: Future[tuple[int, bytes]], data: bytes, zdict: bytes) -> bytes:
    # Runs on the pool after the trial was taken by a worker (the pool is first in, first
    # out): waiting for it here cannot deadlock.
    method, _ = decided.result()
    return data if method == STORED else deflate(data, zdict)


def deflate_tail(compress_size: int, file_size: int, max_ratio: int, floor: int) -> bytes:
    """Return what ends a chunked deflate stream: padding up to `max_ratio` when the
    content shrank more than that (members above `floor` bytes), then the final block."""
    needed = 0
    if file_size > floor:
        needed = max(0, -(-file_size // max_ratio) - compress_size - len(FINAL_BLOCK))
    return EMPTY_STORED_BLOCK * -(-needed // len(EMPTY_STORED_BLOCK)) + FINAL_BLOCK


class SourceReadError(Exception):
    """Reading a member's content failed (as opposed to writing the archive)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(eq=False)
class Ticket:
    """One member on its way into the archive; its content's figures once read."""

    name: str
    size: int = 0
    crc: int = 0
    sha256: str = ""
    entry: Entry | None = None  # once written and kept
    method: int = STORED
    dropped: bool = False
    begun: bool = False


# Raw content held by an item, at least this much counted so that empty members too are
# bounded in number.
_MIN_COST = 4 << 10


# Small members whose whole content is one chunk are deflated by batches of about this
# size, one task each: a task per small document would spend more in handing work between
# threads than in deflating it.
BATCH_SIZE = 256 << 10


class _Batch:
    """First chunks of small members, deflated together by one task."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.size = 0
        self.future: Future[list[tuple[int, bytes]]] | None = None


@dataclass(eq=False)
class _Slot:
    """One member's place in a batch: its method and first chunk, once the batch ran."""

    batch: _Batch
    index: int

    def done(self) -> bool:
        return self.batch.future is not None and self.batch.future.done()

    def result(self) -> tuple[int, bytes]:
        assert self.batch.future is not None
        return self.batch.future.result()[self.index]


def _first_chunks(heads: list[bytes], compression: Compression) -> list[tuple[int, bytes]]:
    return [first_chunk(head, compression) for head in heads]


_Decided = Future[tuple[int, bytes]] | _Slot | tuple[int, bytes]


def _waiting(value: _Decided | Future[bytes] | bytes) -> bool:
    return isinstance(value, (Future, _Slot)) and not value.done()


@dataclass(eq=False)
class _Begin:
    ticket: Ticket
    mtime: float
    size_hint: int
    first: _Decided
    cost: int

    def ready(self) -> bool:
        return self.ticket.dropped or not _waiting(self.first)


@dataclass(eq=False)
class _Chunk:
    ticket: Ticket
    payload: Future[bytes] | bytes
    cost: int

    def ready(self) -> bool:
        return self.ticket.dropped or not _waiting(self.payload)


@dataclass(eq=False)
class _End:
    ticket: Ticket
    keep: bool
    cost: int = 0

    def ready(self) -> bool:
        return True


_Item = _Begin | _Chunk | _End


def default_workers() -> int:
    """Return the number of cores this process may use."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class MemberPipeline:
    """Reads members' content, deflates it on a thread pool, writes it in order.

    `add()` reads a whole source and returns its ticket (size, CRC-32, SHA-256); the
    caller then decides to `keep()` it or `drop()` it (a file that changed while read).
    Members are written in the order they were added; `finish()` waits for the last.
    `on_read(n)` is called after each piece read (progress, cancellation: what it raises
    comes out of `add()`).
    """

    def __init__(self, writer: ZipWriter, compression: Compression, workers: int | None = None,
                 on_read: Callable[[int], None] | None = None,
                 max_ratio: int = MAX_RATIO) -> None:
        self.writer = writer
        self.compression = compression
        self.max_ratio = max_ratio  # the readers' cap (daemon.exchange.Limits.max_ratio)
        self.workers = workers or default_workers()
        self.on_read = on_read
        self._pending: deque[_Item] = deque()
        self._in_flight = 0
        # Two chunks per worker keeps every core busy while the next ones are read.
        self._limit = (2 * self.workers + 2) * CHUNK_SIZE
        self._pool: ThreadPoolExecutor | None = None
        self._batch: _Batch | None = None  # still being filled, not yet submitted

    def __enter__(self) -> MemberPipeline:
        if self.compression is not Compression.STORE:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="deflate")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def add(self, name: str, source: BinaryIO, mtime: float, size_hint: int) -> Ticket:
        """Read `source` to its end into a new member named `name`; return its ticket."""
        ticket = Ticket(name)
        digest = hashlib.sha256()
        try:
            head = self._read(source, TRIAL_SIZE)
            chunk = self._read(source, CHUNK_SIZE) if head else b""
            decided = self._first(head, whole=not chunk)
            self._count(ticket, digest, head)
            self._push(_Begin(ticket, mtime, size_hint, decided, max(len(head), _MIN_COST)))
            zdict = head[-WINDOW:]
            while chunk:
                following = self._read(source, CHUNK_SIZE)
                self._count(ticket, digest, chunk)
                self._push(_Chunk(ticket, self._later(decided, chunk, zdict), len(chunk)))
                zdict, chunk = chunk[-WINDOW:], following
        except BaseException:
            # Nothing more is written here: the archive is most likely being abandoned.
            ticket.dropped = True
            self._pending.append(_End(ticket, False))
            raise
        ticket.sha256 = digest.hexdigest()
        return ticket

    def keep(self, ticket: Ticket) -> None:
        """Have the member written into the archive."""
        self._push(_End(ticket, True))

    def drop(self, ticket: Ticket) -> None:
        """Leave the member out of the archive (what was written of it is taken back)."""
        ticket.dropped = True
        self._push(_End(ticket, False))

    def finish(self) -> None:
        """Write everything still in flight."""
        self._submit_batch()
        while self._pending:
            self._write_head()

    def _read(self, source: BinaryIO, size: int) -> bytes:
        try:
            return source.read(size)
        except OSError as exc:
            raise SourceReadError(exc) from exc

    def _count(self, ticket: Ticket, digest: hashlib._Hash, data: bytes) -> None:
        digest.update(data)
        ticket.crc = zlib.crc32(data, ticket.crc)
        ticket.size += len(data)
        if self.on_read is not None:
            self.on_read(len(data))

    def _first(self, head: bytes, whole: bool) -> _Decided:
        if self._pool is None or not head or (
                self.compression is Compression.AUTO and known_compressed(head)):
            return STORED, head
        if whole:
            return self._batched(head)
        self._submit_batch()  # first in, first out: the earlier members go first
        return self._pool.submit(first_chunk, head, self.compression)

    def _batched(self, head: bytes) -> _Slot:
        batch = self._batch = self._batch or _Batch()
        slot = _Slot(batch, len(batch.heads))
        batch.heads.append(head)
        batch.size += len(head)
        if batch.size >= BATCH_SIZE:
            self._submit_batch()
        return slot

    def _submit_batch(self) -> None:
        batch, self._batch = self._batch, None
        if batch is not None:
            assert self._pool is not None
            batch.future = self._pool.submit(_first_chunks, batch.heads, self.compression)

    def _later(self, decided: _Decided, data: bytes, zdict: bytes) -> Future[bytes] | bytes:
        if isinstance(decided, tuple):
            if decided[0] == STORED:
                return data
            assert self._pool is not None
            return self._pool.submit(deflate, data, zdict)
        assert self._pool is not None
        assert isinstance(decided, Future)  # only members of one chunk are batched
        return self._pool.submit(_later_chunk, decided, data, zdict)

    def _push(self, item: _Item) -> None:
        # Bounded memory: wait for the oldest chunks before taking in more.
        while self._pending and self._in_flight + item.cost > self._limit:
            self._write_head()
        self._pending.append(item)
        self._in_flight += item.cost
        while self._pending and self._pending[0].ready():
            self._write_head()

    def _write_head(self) -> None:
        item = self._pending.popleft()
        self._in_flight -= item.cost
        ticket = item.ticket
        if isinstance(item, _End):
            if item.keep:
                if ticket.method == DEFLATED:
                    self.writer.write(deflate_tail(self.writer.open_size, ticket.size,
                                                   self.max_ratio, RATIO_FLOOR))
                ticket.entry = self.writer.end(ticket.crc, ticket.size)
            elif ticket.begun:
                self.writer.discard()
            return
        if ticket.dropped:
            _cancel(item)
            return
        if isinstance(item, _Begin):
            if isinstance(item.first, _Slot) and item.first.batch.future is None:
                self._submit_batch()  # about to wait for it
            method, payload = (item.first if isinstance(item.first, tuple)
                               else item.first.result())
            self.writer.begin(ticket.name, method, item.mtime, item.size_hint)
            ticket.begun, ticket.method = True, method
        else:
            payload = item.payload.result() if isinstance(item.payload, Future) else item.payload
        if payload:
            self.writer.write(payload)


def _cancel(item: _Begin | _Chunk) -> None:
    pending = item.first if isinstance(item, _Begin) else item.payload
    if isinstance(pending, Future):
        pending.cancel()  # (a batch runs for its other members)
