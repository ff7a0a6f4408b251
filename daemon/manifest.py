"""The signed manifest of an exchange file (format version 1, see docs/exchange-format.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from daemon.errors import Code, Rejected
from daemon.naming import DOSSIER_RE, Kind, check_member_path

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
RESERVED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
DEFAULT_DOMAIN = "Comptabilité générale"
MODULES = ("vat_declaration", "entry_templates", "associated_documents", "situations")
_SHA256_CHARS = frozenset("0123456789abcdef")
# Numbers are kept in SQLite's signed 64-bit integers: a larger one is refused here, with
# the field named, rather than failing where it is stored.
MAX_NUMBER = 2**63 - 1


@dataclass(frozen=True)
class Member:
    """One file carried by the exchange, as the manifest promises it."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """Everything an exchange says about itself; signed by the accountant's firm."""

    kind: Kind
    dossier: str
    dossier_name: str
    generated_at: datetime  # always time-zone aware
    fiscal_year_start: date
    fiscal_year_end: date
    sequence: int
    key_id: str
    files: tuple[Member, ...]
    modules: dict[str, tuple[str, ...]] = field(default_factory=dict)
    domain: str = DEFAULT_DOMAIN
    delta_only: bool = False
    etalon: bool = False
    objective: str = ""
    comments: str = ""
    # Kind "dossier" only: documents of the last send that are gone from the farmer's
    # folder (member paths, not carried). Written only when there are some.
    deleted: tuple[str, ...] = ()
    format: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as the JSON object stored in the file."""
        data = {
            "format": self.format,
            "kind": str(self.kind),
            "dossier": {"number": self.dossier, "name": self.dossier_name},
            "generated_at": self.generated_at.isoformat(),
            "domain": self.domain,
            "fiscal_year": {
                "start": self.fiscal_year_start.isoformat(),
                "end": self.fiscal_year_end.isoformat(),
            },
            "modules": {name: list(items) for name, items in self.modules.items()},
            "delta_only": self.delta_only,
            "etalon": self.etalon,
            "objective": self.objective,
            "comments": self.comments,
            "sequence": self.sequence,
            "key_id": self.key_id,
            # Spelled out: dataclasses.asdict deep-copies, and a dossier may carry 10,000 files.
            "files": [{"path": m.path, "size": m.size, "sha256": m.sha256} for m in self.files],
        }
        if self.deleted:
            data["deleted"] = list(self.deleted)
        return data

    def to_json(self) -> bytes:
        """Serialise deterministically (the signed bytes)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Validate a decoded JSON manifest, raising Rejected(MANIFEST_MALFORMED) on any fault."""
        return _Reader(data).manifest()


def parse_json(raw: bytes) -> object:
    """Decode manifest bytes strictly, raising Rejected(MANIFEST_MALFORMED) on any fault.

    Strict means: UTF-8 only, no NaN or Infinity, no key given twice (two readers could
    pick different values), no lone surrogate (no file system can hold it), and no
    nesting or number deep or long enough to exhaust the interpreter.
    """
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys,
                          parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSON and Unicode errors are ValueErrors
        raise Rejected(Code.MANIFEST_MALFORMED, _short(exc)) from None
    if _holds_unencodable_text(data):
        raise Rejected(Code.MANIFEST_MALFORMED, "surrogate")
    return data


def _short(exc: BaseException) -> str:
    return str(exc)[:200]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> object:
    raise ValueError(name)


def _holds_unencodable_text(data: object) -> bool:
    # Iterative: the decoder allows nesting close to the recursion limit.
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def declared_format(data: object) -> object:
    """Return the manifest's format version field, whatever its type."""
    return data.get("format") if isinstance(data, dict) else None


def check_format(data: object) -> None:
    """Raise MANIFEST_MALFORMED unless `data` is an object with an integer format, and
    FORMAT_VERSION when that integer is not a version this reader knows."""
    if not isinstance(data, dict):
        raise Rejected(Code.MANIFEST_MALFORMED, "not an object")
    version = data.get("format")
    # bool is an int in Python, and true == 1: "format": true is still wrong.
    if not isinstance(version, int) or isinstance(version, bool):
        raise Rejected(Code.MANIFEST_MALFORMED, "format")
    if version != FORMAT_VERSION:
        raise Rejected(Code.FORMAT_VERSION, version)


def declared_key_id(data: object) -> str:
    """Return the manifest's key id, or raise MANIFEST_MALFORMED."""
    key_id = data.get("key_id") if isinstance(data, dict) else None
    if not isinstance(key_id, str) or not key_id:
        raise Rejected(Code.MANIFEST_MALFORMED, "key_id")
    return key_id


class _Reader:
    """Typed field access that names the faulty field in its rejection."""

    def __init__(self, data: object) -> None:
        if not isinstance(data, dict):
            raise Rejected(Code.MANIFEST_MALFORMED, "not an object")
        self.data = data

    def get(self, key: str, kind: type, where: dict[str, Any] | None = None) -> Any:
        source = self.data if where is None else where
        value = source.get(key)
        # bool is an int in Python; a manifest saying "sequence": true is still wrong.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Rejected(Code.MANIFEST_MALFORMED, key)
        return value

    def optional_str(self, key: str) -> str:
        value = self.data.get(key, "")
        if not isinstance(value, str):
            raise Rejected(Code.MANIFEST_MALFORMED, key)
        return value

    def manifest(self) -> Manifest:
        check_format(self.data)
        try:
            kind = Kind(self.get("kind", str))
        except ValueError:
            raise Rejected(Code.MANIFEST_MALFORMED, "kind") from None
        dossier = self.get("dossier", dict)
        number = self.get("number", str, dossier)
        if not DOSSIER_RE.fullmatch(number):
            raise Rejected(Code.MANIFEST_MALFORMED, "dossier.number")
        fiscal = self.get("fiscal_year", dict)
        start = self._date("start", fiscal)
        end = self._date("end", fiscal)
        if end < start:
            raise Rejected(Code.MANIFEST_MALFORMED, "fiscal_year")
        sequence = self.get("sequence", int)
        if not 1 <= sequence <= MAX_NUMBER:
            raise Rejected(Code.MANIFEST_MALFORMED, "sequence")
        files = self._files()
        deleted = self._deleted(kind, {member.path for member in files})
        return Manifest(
            kind=kind,
            dossier=number,
            dossier_name=self.get("name", str, dossier),
            generated_at=self._datetime("generated_at"),
            fiscal_year_start=start,
            fiscal_year_end=end,
            sequence=sequence,
            key_id=self.get("key_id", str),
            files=files,
            modules=self._modules({member.path for member in files}),
            domain=self.get("domain", str),
            delta_only=self.get("delta_only", bool),
            etalon=self.get("etalon", bool),
            objective=self.optional_str("objective"),
            comments=self.optional_str("comments"),
            deleted=deleted,
        )

    def _date(self, key: str, where: dict[str, Any]) -> date:
        try:
            return date.fromisoformat(self.get(key, str, where))
        except ValueError:
            raise Rejected(Code.MANIFEST_MALFORMED, key) from None

    def _datetime(self, key: str) -> datetime:
        try:
            value = datetime.fromisoformat(self.get(key, str))
        except ValueError:
            raise Rejected(Code.MANIFEST_MALFORMED, key) from None
        if value.tzinfo is None:
            raise Rejected(Code.MANIFEST_MALFORMED, key + " (time zone)")
        return value

    def _files(self) -> tuple[Member, ...]:
        members = []
        for entry in self.get("files", list):
            if not isinstance(entry, dict):
                raise Rejected(Code.MANIFEST_MALFORMED, "files")
            path = check_member_path(self.get("path", str, entry))
            size = self.get("size", int, entry)
            digest = self.get("sha256", str, entry)
            if not 0 <= size <= MAX_NUMBER or len(digest) != 64 or not set(digest) <= _SHA256_CHARS:
                raise Rejected(Code.MANIFEST_MALFORMED, f"files: {path}")
            if path in RESERVED_NAMES:
                raise Rejected(Code.MANIFEST_MALFORMED, f"files: {path}")
            members.append(Member(path, size, digest))
        if len({member.path for member in members}) != len(members):
            raise Rejected(Code.MANIFEST_MALFORMED, "files: duplicate path")
        return tuple(members)

    def _deleted(self, kind: Kind, paths: set[str]) -> tuple[str, ...]:
        if "deleted" not in self.data:
            return ()
        if kind is not Kind.DOSSIER:
            raise Rejected(Code.MANIFEST_MALFORMED, "deleted")
        items = self.get("deleted", list)
        if not all(isinstance(item, str) for item in items):
            raise Rejected(Code.MANIFEST_MALFORMED, "deleted")
        for item in items:
            check_member_path(item)
            if item in paths or item in RESERVED_NAMES:
                raise Rejected(Code.MANIFEST_MALFORMED, f"deleted: {item}")
        if len(set(items)) != len(items):
            raise Rejected(Code.MANIFEST_MALFORMED, "deleted: duplicate path")
        return tuple(items)

    def _modules(self, paths: set[str]) -> dict[str, tuple[str, ...]]:
        modules: dict[str, tuple[str, ...]] = {}
        for name, items in self.get("modules", dict).items():
            if name not in MODULES or not isinstance(items, list):
                raise Rejected(Code.MANIFEST_MALFORMED, f"modules: {name}")
            if not all(isinstance(item, str) and item in paths for item in items):
                raise Rejected(Code.MANIFEST_MALFORMED, f"modules: {name}")
            modules[name] = tuple(items)
        return modules
