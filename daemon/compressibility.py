"""Whether a document is worth deflating: known compressed formats, then a quick trial.

Deflating a JPEG, a PNG or an office file (a ZIP archive already) costs the CPU time of
deflating it and gains nothing: such members are stored. The decision is made from the
content, never from the name: a `.pdf` holding scanned images does not shrink, a `.pdf`
of text does; a renamed file is still what its bytes say.

The trial looks at the first TRIAL_SIZE bytes. Text (mostly ASCII bytes) is deflated at
once: the deflated sample is the member's first chunk, so the trial costs nothing more.
Other content first goes through deflate's Huffman coding alone (Z_HUFFMAN_ONLY: three
times as fast as a full deflate on incompressible bytes, which is what most binary
documents are): when that does not shrink it below STORE_RATIO, it is stored. (What
Huffman coding misses, repeats within deflate's 32 KiB window of bytes that look random,
is not what documents are made of.)
"""

from __future__ import annotations

import zlib

TRIAL_SIZE = 128 << 10
STORE_RATIO = 0.95
# At most this share of bytes above 0x7F (accented letters in UTF-8) in text.
_TEXT_HIGH_SHARE = 0.1
_ASCII = bytes(range(0x80))
_TEXT_PROBE = 4096

# Formats whose content is compressed by construction (their own entropy coder), found
# at the start of the file. ZIP containers (office files, ODF) are not listed: most
# deflate their parts, but some store them, so the trial decides for those.
_MAGIC_PREFIXES = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"GIF87a", b"GIF89a",  # GIF
    b"\x1f\x8b",  # gzip
    b"7z\xbc\xaf\x27\x1c",  # 7-Zip
    b"BZh",  # bzip2
    b"\xfd7zXZ\x00",  # xz
    b"\x28\xb5\x2f\xfd",  # Zstandard
    b"Rar!\x1a\x07",  # RAR
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000
    b"OggS",  # Ogg audio and video
    b"fLaC",  # FLAC
    b"ID3",  # MP3 with a tag
    b"\xff\xfb", b"\xff\xf3", b"\xff\xf2",  # MP3 frames
    b"MSCF",  # Windows cabinet
)
# ISO base media files (MP4, MOV, HEIC, AVIF): a box size, then "ftyp".
_FTYP = b"ftyp"
_RIFF_COMPRESSED = (b"WEBP",)  # RIFF containers whose payload is compressed


def known_compressed(head: bytes) -> bool:
    """Tell whether the first bytes of a document show a format compressed by construction."""
    if head.startswith(_MAGIC_PREFIXES):
        return True
    if head[4:8] == _FTYP:
        return True
    return head.startswith(b"RIFF") and head[8:12] in _RIFF_COMPRESSED


def worth_deflating(size: int, deflated_size: int) -> bool:
    """Tell whether a trial that deflated `size` bytes into `deflated_size` pays."""
    return size > 0 and deflated_size <= STORE_RATIO * size



def looks_like_text(sample: bytes) -> bool:
    """Tell whether a sample is mostly ASCII (text, CSV, XML, an uncompressed PDF)."""
    if sample.isascii():
        return True
    start = sample[:_TEXT_PROBE]  # enough to tell, and cheap for a thread holding the GIL
    return len(start.translate(None, _ASCII)) <= _TEXT_HIGH_SHARE * len(start)


def bytes_look_random(sample: bytes) -> bool:
    """Tell whether Huffman coding alone cannot shrink `sample` below STORE_RATIO."""
    # memLevel 9: larger blocks, the fastest setting measured for Huffman coding alone.
    coder = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS, 9, zlib.Z_HUFFMAN_ONLY)
    coded = len(coder.compress(sample)) + len(coder.flush(zlib.Z_SYNC_FLUSH))
    return not worth_deflating(len(sample), coded)
