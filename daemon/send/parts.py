"""The part list of a resumable web upload: built and signed by the farmer's installation,
verified by the firm's `passeur collect` (see docs/web-protocol.md, "Uploads").

A `.wvz` is uploaded as numbered parts (`part-00001`, …), each one plain `PUT`, into a
folder named after the file; then `parts.json` (this list) and `parts.json.sig` (its
Ed25519 signature by the installation's key) are put last: the signature's arrival says
the upload is complete.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.errors import N_, Rejected
from daemon.exchange import Limits
from daemon.i18n import _
from daemon.keys import KeyFormatError, PublicKey, SigningKey
from daemon.naming import Kind, parse_name

PARTS_FORMAT = 1
PARTS_NAME = "parts.json"
SIGNATURE_NAME = "parts.json.sig"
# Domain separation: a part list signature can never pass for a manifest's or an index's.
PARTS_CONTEXT = b"passeur-parts-v1\x00"
MIN_PART_SIZE = 4 << 10
MAX_PART_SIZE = 256 << 20
MAX_PARTS = 10_000
# Caps checked before a byte is read on the firm's side: 10,000 part hashes fit in 1 MiB.
MAX_LIST_SIZE = 1 << 20
MAX_SIGNATURE_SIZE = 256
PART_RE = re.compile(r"part-([0-9]{5})")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def part_name(number: int) -> str:
    """Return the file name of part `number` (counted from 1)."""
    return f"part-{number:05d}"


def upload_folder(name: str) -> str:
    """Return the upload folder's name for a `.wvz`: its name without the extension."""
    return name.removesuffix(".wvz")


def part_count(size: int, part_size: int) -> int:
    """Return how many parts a file of `size` bytes is cut into."""
    return -(-size // part_size)


def part_span(size: int, part_size: int, number: int) -> tuple[int, int]:
    """Return (offset, length) of part `number` in the file."""
    offset = (number - 1) * part_size
    return offset, max(0, min(part_size, size - offset))


@dataclass(frozen=True)
class PartList:
    """What a complete upload holds: the file, how it was cut, each part's SHA-256, and
    the installation's public key that signed it."""

    name: str
    size: int
    sha256: str
    part_size: int
    parts: tuple[str, ...]
    public_key: str
    key_id: str
    created_at: str
    format: int = PARTS_FORMAT

    def span(self, number: int) -> tuple[int, int]:
        """Return (offset, length) of part `number` in the file."""
        return part_span(self.size, self.part_size, number)

    def names(self) -> list[str]:
        """Return the part file names, in order."""
        return [part_name(number) for number in range(1, len(self.parts) + 1)]

    def to_bytes(self) -> bytes:
        """Serialise deterministically (the signed bytes)."""
        data: dict[str, Any] = {
            "format": self.format, "name": self.name, "size": self.size,
            "sha256": self.sha256, "part_size": self.part_size, "parts": list(self.parts),
            "public_key": self.public_key, "key_id": self.key_id,
            "created_at": self.created_at,
        }
        return json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"


def make_part_list(name: str, size: int, sha256: str, part_size: int,
                   parts: list[str], key: SigningKey, now: datetime) -> PartList:
    """Return the part list of a file whose parts have these SHA-256s."""
    public = key.public
    created = now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return PartList(name, size, sha256, part_size, tuple(parts), public.text, public.key_id,
                    created)


def sign_part_list(parts: PartList, key: SigningKey) -> tuple[bytes, bytes]:
    """Return the bytes of `parts.json` and of `parts.json.sig` (base64, one line)."""
    body = parts.to_bytes()
    signature = base64.b64encode(key.sign(PARTS_CONTEXT + body)) + b"\n"
    return body, signature


class Problem(enum.StrEnum):
    """Why a part list is refused (stable codes, shown by `passeur collect --json`)."""

    TOO_LARGE = "parts-too-large"
    MALFORMED = "parts-malformed"
    NAME = "parts-name-unsafe"
    SIGNATURE = "parts-signature-bad"


MESSAGES: dict[Problem, str] = {
    Problem.TOO_LARGE: N_("the part list is too large ({detail})"),
    Problem.MALFORMED: N_("the part list is not valid ({detail})"),
    Problem.NAME: N_("the part list names an unacceptable file ({detail})"),
    Problem.SIGNATURE: N_("the part list's signature is not valid: it was altered or "
                          "signed by another key"),
}


class PartListError(Exception):
    """A part list that cannot be trusted; `code` is stable, `message()` says why."""

    def __init__(self, code: Problem, detail: object = "") -> None:
        self.code = code
        self.detail = str(detail)
        super().__init__(f"{code}: {self.detail}")

    def message(self) -> str:
        """Return the reason in the active language."""
        return _(MESSAGES[self.code]).format(detail=self.detail)


def verify_part_list(body: bytes, signature: bytes, dossier: str,
                     limits: Limits | None = None) -> PartList:
    """Check a part list and its signature by the key it names; raise PartListError.

    Whether that key is the one expected for the dossier is the caller's decision (the
    firm pins it on first use).
    """
    if len(body) > MAX_LIST_SIZE:
        raise PartListError(Problem.TOO_LARGE, f"{len(body)} > {MAX_LIST_SIZE}")
    if len(signature) > MAX_SIGNATURE_SIZE:
        raise PartListError(Problem.SIGNATURE)
    parts = _Reader(body).part_list(dossier, limits or Limits())
    try:
        key = PublicKey.from_text(parts.public_key)
        raw_signature = base64.b64decode(signature.strip(), validate=True)
    except KeyFormatError:
        raise PartListError(Problem.MALFORMED, "public_key") from None
    except binascii.Error:
        raise PartListError(Problem.SIGNATURE) from None
    if key.key_id != parts.key_id:
        raise PartListError(Problem.MALFORMED, "key_id")
    if not key.verify(raw_signature, PARTS_CONTEXT + body):
        raise PartListError(Problem.SIGNATURE)
    return parts


class _Reader:
    """Typed field access that names the faulty field in its error."""

    def __init__(self, body: bytes) -> None:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PartListError(Problem.MALFORMED, "JSON") from None
        if not isinstance(data, dict):
            raise PartListError(Problem.MALFORMED, "JSON")
        self.data: dict[str, Any] = data

    def get(self, key: str, kind: type) -> Any:
        value = self.data.get(key)
        # bool is an int in Python; "size": true is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise PartListError(Problem.MALFORMED, key)
        return value

    def part_list(self, dossier: str, limits: Limits) -> PartList:
        if self.data.get("format") != PARTS_FORMAT:
            raise PartListError(Problem.MALFORMED, f"format {self.data.get('format')!r}")
        name = self.name(dossier)
        size, part_size = self.get("size", int), self.get("part_size", int)
        if not 0 < size <= limits.max_file_size:
            raise PartListError(Problem.TOO_LARGE if size > 0 else Problem.MALFORMED,
                                f"size {size}")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise PartListError(Problem.MALFORMED, f"part_size {part_size}")
        hashes = self.get("parts", list)
        expected = part_count(size, part_size)
        if expected > MAX_PARTS:
            raise PartListError(Problem.TOO_LARGE, f"{expected} parts > {MAX_PARTS}")
        if len(hashes) != expected:
            raise PartListError(Problem.MALFORMED, f"{len(hashes)} parts ≠ {expected}")
        sha256 = self.get("sha256", str)
        if not all(isinstance(h, str) and _SHA256_RE.fullmatch(h) for h in (sha256, *hashes)):
            raise PartListError(Problem.MALFORMED, "sha256")
        created = self.get("created_at", str)
        try:
            datetime.fromisoformat(created)
        except ValueError:
            raise PartListError(Problem.MALFORMED, "created_at") from None
        return PartList(name, size, sha256, part_size, tuple(hashes),
                        self.get("public_key", str), self.get("key_id", str), created)

    def name(self, dossier: str) -> str:
        name: str = self.get("name", str)
        # The name becomes a file name in the firm's inbox: only this dossier's canonical
        # .wvz names, never a path ("..", "/", NUL, a drive…).
        try:
            parsed = parse_name(name)
        except Rejected:
            raise PartListError(Problem.NAME, repr(name)) from None
        if parsed.kind is not Kind.DOSSIER or parsed.dossier != dossier or (
                parsed.canonical != name):
            raise PartListError(Problem.NAME, repr(name))
        return name
