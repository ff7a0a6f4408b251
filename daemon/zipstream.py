"""Hash an exchange file's members while its bytes go by, so they are read only once.

A 1 GB update is hashed whole as it is downloaded or copied off a key, and the strict
reader then hashes every member again against the signed manifest: twice the work, and a
second read of the whole file. `ExchangeDigest` does both in the same pass: it follows the
ZIP's local headers as the bytes arrive and keeps each member's SHA-256.

This is only a shortcut. The strict reader still checks the structure from the central
directory and takes a member's hash from here only when it lies at the very offset, with
the very method, sizes and CRC-32, that the reader itself found; anything this module could not
follow (sizes in a data descriptor, an odd header, a member over the limits, a corrupt
stream) is simply read again by the reader, which then explains what is wrong.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zipfile
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from daemon.errors import Code, Rejected

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

# Local file header: signature, version, flags, method, time, date, CRC-32,
# compressed size, uncompressed size, name length, extra length.
LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
LOCAL_MAGIC = b"PK\x03\x04"
ENCRYPTED = 0x1
DATA_DESCRIPTOR = 0x8
ZIP64_MARK = 0xFFFFFFFF
ZIP64_EXTRA = 0x0001
# Members that decompress to less than this are never refused for their ratio.
RATIO_FLOOR = 1 << 20
# The most a member may expand (uncompressed ÷ compressed) before it is a bomb: the
# readers' cap (daemon.exchange.Limits), which the writer keeps its output within.
MAX_RATIO = 200
INFLATE_STEP = 1 << 20  # the most a member's decompression makes at once

# Pieces at least this large are hashed whole on another thread.
PARALLEL_MIN = 256 << 10

Buffer = bytes | memoryview


@functools.cache
def _hashing_pool() -> ThreadPoolExecutor:
    """One helper thread, made the first time a large file goes by, shared by all."""
    # Imported here: `passeur show` and the other short commands never need it.
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="hashing")


class MemberReader:
    """Turns a member's stored bytes into its content, refusing more than declared.

    Fed the compressed bytes in order; yields the uncompressed content in bounded pieces.
    """

    def __init__(self, name: str, method: int, compress_size: int, file_size: int) -> None:
        if method == zipfile.ZIP_STORED and compress_size != file_size:
            raise Rejected(Code.MEMBER_CORRUPT, name)
        self.name = name
        self.file_size = file_size
        self.produced = 0
        # The application's unzip checks the CRC-32: a member whose SHA-256 is right but
        # whose CRC-32 is wrong would be good here and refused there.
        self.crc32 = 0
        self._inflater = (zlib.decompressobj(-zlib.MAX_WBITS)
                          if method == zipfile.ZIP_DEFLATED else None)

    def feed(self, raw: Buffer) -> Iterator[Buffer]:
        """Yield the content that these compressed bytes make."""
        inflater = self._inflater
        if inflater is None:
            yield self._counted(raw)
            return
        try:
            data = inflater.decompress(raw, INFLATE_STEP)
            while True:
                yield self._counted(data)
                if not inflater.unconsumed_tail:
                    return
                data = inflater.decompress(inflater.unconsumed_tail, INFLATE_STEP)
        except zlib.error as exc:
            raise Rejected(Code.MEMBER_CORRUPT, f"{self.name}: {exc}") from None

    def finish(self) -> Iterator[Buffer]:
        """Yield what is left; refuse a stream that does not end where the member does."""
        inflater = self._inflater
        if inflater is None:
            return
        try:
            tail = inflater.flush()
        except zlib.error as exc:
            raise Rejected(Code.MEMBER_CORRUPT, f"{self.name}: {exc}") from None
        if tail:
            yield self._counted(tail)
        # Bytes after the end of the stream are inflated by nobody, hashed by nobody: a
        # place to hide anything.
        if not inflater.eof or inflater.unused_data:
            raise Rejected(Code.MEMBER_CORRUPT, self.name)

    def _counted(self, data: Buffer) -> Buffer:
        self.produced += len(data)
        if self.produced > self.file_size:
            raise Rejected(Code.MEMBER_SIZE, f"{self.name}: > {self.file_size}")
        self.crc32 = zlib.crc32(data, self.crc32)
        return data


class MemberHash(NamedTuple):
    """A member's content hash and CRC-32, and what the local header said about where it lies."""

    method: int
    compress_size: int
    file_size: int
    sha256: str
    crc32: int


class ExchangeDigest:
    """The whole file's SHA-256 and, when the layout allows, each member's, in one pass.

    Use it like a `hashlib` object (`update`, `hexdigest`); `members` maps the offset where
    a member's data begins to its hash.
    """

    def __init__(self, max_member_size: int, max_ratio: int) -> None:
        self._whole = hashlib.sha256()
        self._whole_pending: Future[None] | None = None
        self._max_member_size = max_member_size
        self._max_ratio = max_ratio
        self._offset = 0  # of the first byte not yet followed
        self._pending = bytearray()  # a local header, or its name and extra, not yet complete
        self._fields: tuple[Any, ...] | None = None  # a header whose name and extra come next
        self._member: _Member | None = None
        self._following = True
        self.members: dict[int, MemberHash] = {}

    def update(self, data: bytes) -> None:
        """Take the next bytes of the file (which must not change afterwards)."""
        self._wait_for_whole()
        if len(data) >= PARALLEL_MIN:
            # hashlib lets go of the GIL on large buffers: the whole file's hash of this
            # piece runs on another core while the member's hash, the disk write and the
            # next receive go on here. One piece at a time keeps the order.
            self._whole_pending = _hashing_pool().submit(self._whole.update, bytes(data))
        else:
            self._whole.update(data)
        if self._following:
            self._follow(memoryview(data))

    def hexdigest(self) -> str:
        """Return the whole file's SHA-256."""
        self._wait_for_whole()
        return self._whole.hexdigest()

    def _wait_for_whole(self) -> None:
        pending, self._whole_pending = self._whole_pending, None
        if pending is not None:
            pending.result()

    def _follow(self, data: memoryview) -> None:
        while data and self._following:
            if self._member is not None:
                taken = self._member.take(data)
                if self._member.left == 0:
                    self._close_member()
            else:
                taken = self._read_header(data)
            if taken == 0:
                # Cannot happen; if it ever did, a loop without progress would hang the
                # download: stop following and let the strict reader read the members.
                self._following = False
                return
            self._offset += taken
            data = data[taken:]

    def _read_header(self, data: memoryview) -> int:
        """Gather one local header, then its name and extra field; then follow its member.

        Returns how many bytes of `data` it took: always at least one (an empty name and
        extra field are taken with the header itself), so the caller always moves on.
        """
        taken = 0
        if self._fields is None:
            taken = min(LOCAL_HEADER.size - len(self._pending), len(data))
            self._pending += data[:taken]
            if len(self._pending) < LOCAL_HEADER.size:
                return taken
            fields = LOCAL_HEADER.unpack(self._pending)
            self._pending.clear()
            magic, flags, method = fields[0], fields[2], fields[3]
            if (magic != LOCAL_MAGIC or flags & (ENCRYPTED | DATA_DESCRIPTOR)
                    or method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)):
                # The central directory, or a layout the strict reader reads for itself.
                self._following = False
                return taken
            self._fields = fields
        fields = self._fields
        name_length, extra_length = int(fields[9]), int(fields[10])
        more = min(name_length + extra_length - len(self._pending), len(data) - taken)
        self._pending += data[taken:taken + more]
        taken += more
        if len(self._pending) < name_length + extra_length:
            return taken
        extra = bytes(self._pending[name_length:])
        self._pending.clear()
        self._fields = None
        sizes = local_sizes(fields, extra)
        if sizes is None:
            self._following = False
            return taken
        compress_size, file_size = sizes
        self._member = _Member(self._offset + taken, int(fields[3]), compress_size, file_size,
                               self._worth_hashing(compress_size, file_size))
        if compress_size == 0:
            self._close_member()
        return taken

    def _worth_hashing(self, compress_size: int, file_size: int) -> bool:
        # A member the reader will refuse on its sizes is not decompressed here either.
        return file_size <= self._max_member_size and (
            file_size <= RATIO_FLOOR or file_size <= self._max_ratio * compress_size)

    def _close_member(self) -> None:
        member, self._member = self._member, None
        assert member is not None
        result = member.result()
        if result is not None:
            self.members[member.data_start] = result


def local_sizes(fields: tuple[Any, ...], extra: bytes) -> tuple[int, int] | None:
    """Return (compressed, uncompressed) sizes, from the ZIP64 extra field if need be."""
    compress_size, file_size = int(fields[7]), int(fields[8])
    if ZIP64_MARK not in (compress_size, file_size):
        return compress_size, file_size
    while len(extra) >= 4:
        kind, length = struct.unpack_from("<HH", extra)
        body = extra[4:4 + length]
        if kind == ZIP64_EXTRA:
            # In a local header the ZIP64 field holds both sizes, uncompressed first.
            if len(body) < 16:
                return None
            file_size, compress_size = struct.unpack_from("<QQ", body)
            return compress_size, file_size
        extra = extra[4 + length:]
    return None


class _Member:
    """One member being followed: its bytes go through a MemberReader into SHA-256."""

    def __init__(self, data_start: int, method: int, compress_size: int, file_size: int,
                 hashed: bool) -> None:
        self.data_start = data_start
        self.left = compress_size
        self._key = (method, compress_size, file_size)
        self._digest = hashlib.sha256()
        self._reader: MemberReader | None = None
        if hashed:
            try:
                self._reader = MemberReader("", method, compress_size, file_size)
            except Rejected:
                self._reader = None

    def take(self, data: memoryview) -> int:
        """Hash what belongs to this member; return how many bytes that was."""
        taken = min(self.left, len(data))
        self.left -= taken
        if self._reader is not None:
            try:
                for content in self._reader.feed(data[:taken]):
                    self._digest.update(content)
            except Rejected:
                self._reader = None  # the strict reader will say what is wrong
        return taken

    def result(self) -> MemberHash | None:
        """Return the member's hash, or None when it must be read again."""
        reader = self._reader
        if reader is None:
            return None
        try:
            for content in reader.finish():
                self._digest.update(content)
        except Rejected:
            return None
        if reader.produced != reader.file_size:
            return None
        method, compress_size, file_size = self._key
        return MemberHash(method, compress_size, file_size, self._digest.hexdigest(),
                          reader.crc32)
