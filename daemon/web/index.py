"""The signed index of a dossier's updates on the web endpoint (see docs/web-protocol.md)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from daemon.errors import Rejected
from daemon.keys import PublicKey, SigningKey
from daemon.naming import DOSSIER_RE, Kind, parse_name
from daemon.web.failures import Failure, WebError

INDEX_FORMAT = 1
INDEX_NAME = "index.json"
UPLOAD_FOLDER = "upload"
# Domain separation: an index signature can never pass for a manifest signature, or back.
INDEX_CONTEXT = b"passeur-index-v1\x00"
# The firm's index lists the most recent receipts only: enough for any farmer's passeur
# that polls once in a while, and the index stays small.
MAX_RECEIPTS = 100
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Receipt:
    """The firm received `name` (a farmer's `.wvz`) with this SHA-256, at `received_at`
    (RFC 3339, UTC)."""

    dossier: str
    name: str
    sha256: str
    received_at: str

    def to_dict(self) -> dict[str, str]:
        """Return the receipt as it is written in an index (the dossier is the index's)."""
        return {"name": self.name, "sha256": self.sha256, "received_at": self.received_at}

    @property
    def received(self) -> datetime:
        """Return `received_at` as an aware date-time."""
        return datetime.fromisoformat(self.received_at)


def receipt_time(moment: datetime) -> str:
    """Return the RFC 3339 text of a receipt's time (UTC, to the second)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_receipt(item: object, dossier: str) -> Receipt | None:
    """Return the receipt an index lists, or None when the entry is not a valid one.

    Only canonical `.wvz` names of the index's own dossier are taken: a receipt's name is
    shown to the user and looked up on disk, it may never be another path.
    """
    if not isinstance(item, dict):
        return None
    name, sha256, received_at = (item.get(k) for k in ("name", "sha256", "received_at"))
    if not (isinstance(name, str) and isinstance(sha256, str)
            and isinstance(received_at, str)):
        return None
    try:
        parsed = parse_name(name)
        when = datetime.fromisoformat(received_at)
    except (Rejected, ValueError):
        return None
    if (parsed.kind is not Kind.DOSSIER or parsed.dossier != dossier
            or parsed.canonical != name or not _SHA256_RE.fullmatch(sha256)
            or when.tzinfo is None):
        return None
    return Receipt(dossier, name, sha256, received_at)


@dataclass(frozen=True)
class IndexEntry:
    """One update file offered for a dossier."""

    name: str
    sequence: int
    size: int
    sha256: str
    etalon: bool = False


@dataclass(frozen=True)
class Index:
    """What the endpoint offers for one dossier, as signed by the accountant's firm."""

    dossier: str
    version: int
    published_at: datetime
    expires_at: datetime
    files: tuple[IndexEntry, ...]
    # The firm's signed receipts for the farmer's uploads (optional: an older index has
    # none, and an older client ignores them).
    receipts: tuple[Receipt, ...] = ()
    format: int = INDEX_FORMAT

    def to_dict(self) -> dict[str, Any]:
        """Return the signed part as a JSON object."""
        signed: dict[str, Any] = {
            "format": self.format,
            "dossier": self.dossier,
            "version": self.version,
            "published_at": _iso(self.published_at),
            "expires_at": _iso(self.expires_at),
            "files": [asdict(entry) for entry in self.files],
        }
        if self.receipts:
            signed["receipts"] = [receipt.to_dict() for receipt in self.receipts]
        return signed

    def signed_bytes(self) -> bytes:
        """Serialise the signed part deterministically."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1,
                          sort_keys=True).encode()

    def entry(self, name: str) -> IndexEntry | None:
        """Return the entry with this file name, if listed."""
        return next((e for e in self.files if e.name == name), None)


@dataclass(frozen=True)
class VerifiedIndex:
    """An index whose signature and freshness were checked, with its signed bytes."""

    index: Index
    key_id: str
    signed: bytes


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def sign_index(index: Index, key: SigningKey) -> bytes:
    """Return the index file: the signed JSON text embedded with its signature."""
    signed = index.signed_bytes()
    envelope = {
        "signed": signed.decode(),
        "key_id": key.public.key_id,
        "signature": base64.b64encode(key.sign(INDEX_CONTEXT + signed)).decode("ascii"),
    }
    return json.dumps(envelope, ensure_ascii=False, indent=1).encode() + b"\n"


def verify_index(data: bytes, trusted: Mapping[str, PublicKey], dossier: str,
                 now: datetime) -> VerifiedIndex:
    """Check an index file's signature, dossier and expiry; raise WebError when wrong."""
    envelope = _json_object(data, dossier, "envelope")
    signed_text, key_id, signature = (envelope.get(k) for k in ("signed", "key_id",
                                                                  "signature"))
    if not (isinstance(signed_text, str) and isinstance(key_id, str)
            and isinstance(signature, str)):
        raise WebError(Failure.INDEX_MALFORMED, dossier=dossier, detail="envelope")
    key = trusted.get(key_id)
    if key is None:
        raise WebError(Failure.INDEX_KEY_UNKNOWN, dossier=dossier, detail=key_id)
    signed = signed_text.encode()
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raw_signature = b""
    if not key.verify(raw_signature, INDEX_CONTEXT + signed):
        raise WebError(Failure.INDEX_SIGNATURE_BAD, dossier=dossier)
    index = parse_signed(signed, dossier)
    if index.dossier != dossier:
        raise WebError(Failure.INDEX_MALFORMED, dossier=dossier,
                       detail=f"dossier {index.dossier}")
    if now >= index.expires_at:
        raise WebError(Failure.INDEX_EXPIRED, dossier=dossier, detail=_iso(index.expires_at))
    return VerifiedIndex(index, key_id, signed)


def read_envelope_unverified(data: bytes, dossier: str) -> Index:
    """Read an index without checking its signature (the publisher's own folder)."""
    envelope = _json_object(data, dossier, "envelope")
    signed = envelope.get("signed")
    if not isinstance(signed, str):
        raise WebError(Failure.INDEX_MALFORMED, dossier=dossier, detail="envelope")
    return parse_signed(signed.encode(), dossier)


def _json_object(data: bytes, dossier: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebError(Failure.INDEX_MALFORMED, dossier=dossier, detail=what) from None
    if not isinstance(value, dict):
        raise WebError(Failure.INDEX_MALFORMED, dossier=dossier, detail=what)
    return value


def parse_signed(signed: bytes, dossier: str) -> Index:
    """Validate the signed JSON text of an index, naming the faulty field."""
    reader = _Reader(_json_object(signed, dossier, "signed"), dossier)
    return reader.index()


class _Reader:
    """Typed field access that names the faulty field in its error."""

    def __init__(self, data: dict[str, Any], dossier: str) -> None:
        self.data = data
        self.dossier = dossier

    def fail(self, field: str) -> WebError:
        return WebError(Failure.INDEX_MALFORMED, dossier=self.dossier, detail=field)

    def get(self, where: dict[str, Any], key: str, kind: type) -> Any:
        value = where.get(key)
        # bool is an int in Python; "version": true is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(key)
        return value

    def when(self, key: str) -> datetime:
        text = self.get(self.data, key, str)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise self.fail(key) from None
        if value.tzinfo is None:
            raise self.fail(key)
        return value

    def index(self) -> Index:
        if self.data.get("format") != INDEX_FORMAT:
            raise self.fail(f"format {self.data.get('format')!r}")
        dossier = self.get(self.data, "dossier", str)
        if not DOSSIER_RE.fullmatch(dossier):
            raise self.fail("dossier")
        version = self.get(self.data, "version", int)
        if version < 1:
            raise self.fail("version")
        files = self.get(self.data, "files", list)
        entries = tuple(self.entry(item, dossier) for item in files)
        if len({e.name for e in entries}) != len(entries):
            raise self.fail("files: name listed twice")
        if len({e.sequence for e in entries}) != len(entries):
            raise self.fail("files: sequence listed twice")
        published, expires = self.when("published_at"), self.when("expires_at")
        if expires < published:
            raise self.fail("expires_at")
        return Index(dossier, version, published, expires,
                     tuple(sorted(entries, key=lambda e: e.sequence)), self.receipts(dossier))

    def receipts(self, dossier: str) -> tuple[Receipt, ...]:
        if "receipts" not in self.data:
            return ()
        items = self.get(self.data, "receipts", list)
        if len(items) > MAX_RECEIPTS:
            raise self.fail("receipts")
        receipts = tuple(parse_receipt(item, dossier) for item in items)
        if any(receipt is None for receipt in receipts):
            raise self.fail("receipts")
        return tuple(r for r in receipts if r is not None)

    def entry(self, item: object, dossier: str) -> IndexEntry:
        if not isinstance(item, dict):
            raise self.fail("files")
        name = self.get(item, "name", str)
        try:
            parsed = parse_name(name)
        except Rejected:
            raise self.fail(f"files: {name!r}") from None
        # The name becomes a URL path and a local file name: only canonical update names.
        if parsed.kind is not Kind.UPDATE or parsed.dossier != dossier or (
                parsed.canonical != name):
            raise self.fail(f"files: {name!r}")
        sequence = self.get(item, "sequence", int)
        size = self.get(item, "size", int)
        sha256 = self.get(item, "sha256", str)
        if sequence < 0 or size < 0 or not _SHA256_RE.fullmatch(sha256):
            raise self.fail(f"files: {name}")
        return IndexEntry(name, sequence, size, sha256, self.get(item, "etalon", bool))
