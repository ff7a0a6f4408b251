"""Exchange file names (`<dossier>-<YYYYMMDDHHMMSS>.wwz|.wvz`) and safe member paths."""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from daemon.errors import Code, Rejected

DOSSIER_RE = re.compile(r"[A-Za-z0-9]{1,20}")
# Only the extension ignores case: an IGNORECASE dossier class would also match "K"
# (Kelvin sign) or "ſ" (long s), which case-fold to ASCII letters.
_NAME_RE = re.compile(
    r"(?P<dossier>[A-Za-z0-9]{1,20})-(?P<stamp>[0-9]{14})\.(?P<ext>(?i:wwz|wvz))"
)
# Browsers and mail clients save a second download of "a.wwz" as "a (1).wwz": the same
# file, which every way in (import, watched folders, keys) takes under its canonical name.
_COPY_SUFFIX = re.compile(r"\s?\(\d{1,3}\)(?=\.[A-Za-z]{3}$)")
STAMP_FORMAT = "%Y%m%d%H%M%S"
MAX_PATH_LENGTH = 240
MAX_COMPONENT_LENGTH = 120


class Kind(enum.StrEnum):
    """Direction of an exchange: an update from the accountant or a dossier from the farmer."""

    UPDATE = "update"  # .wwz, accountant → farmer
    DOSSIER = "dossier"  # .wvz, farmer → accountant

    @property
    def extension(self) -> str:
        """Return the file extension for this kind, without the dot."""
        return "wwz" if self is Kind.UPDATE else "wvz"


@dataclass(frozen=True)
class ExchangeName:
    """The parts of a well-formed exchange file name."""

    dossier: str
    saved_at: datetime  # naive local time, as written in the name
    kind: Kind

    @property
    def canonical(self) -> str:
        """Return the name as passeur writes it (lower-case extension)."""
        return f"{self.dossier}-{format_stamp(self.saved_at)}.{self.kind.extension}"


def format_stamp(moment: datetime) -> str:
    """Return `YYYYMMDDHHMMSS`, the year always in four digits (strftime drops zeros)."""
    return (f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
            f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}")


def parse_name(name: str) -> ExchangeName:
    """Parse an exchange file name, raising Rejected(BAD_NAME) when it does not fit."""
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise Rejected(Code.BAD_NAME, name)
    try:
        saved_at = datetime.strptime(match["stamp"], STAMP_FORMAT)
    except ValueError:
        raise Rejected(Code.BAD_NAME, name) from None
    kind = Kind.UPDATE if match["ext"].lower() == "wwz" else Kind.DOSSIER
    return ExchangeName(match["dossier"], saved_at, kind)


def parse_offered_name(name: str) -> ExchangeName:
    """Parse the name of a file offered to passeur: an exchange name, perhaps with the
    ' (1)' a browser adds to a second download; raise Rejected(BAD_NAME) otherwise."""
    try:
        return parse_name(name)
    except Rejected:
        original = _COPY_SUFFIX.sub("", name, count=1)
        if original == name:
            raise
    try:
        return parse_name(original)
    except Rejected:
        raise Rejected(Code.BAD_NAME, name) from None


def looks_like_exchange(name: str) -> bool:
    """Tell whether a file name is an exchange file name (cheap filter for scanners)."""
    try:
        parse_name(name)
    except Rejected:
        return False
    return True


def make_name(dossier: str, saved_at: datetime, kind: Kind) -> str:
    """Build the canonical file name for an exchange."""
    return ExchangeName(dossier, saved_at.replace(tzinfo=None), kind).canonical


_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_FORBIDDEN_CHARS = frozenset('\\:\x00*?"<>|')
# Control, format (bidi overrides, zero-width), surrogate, private-use, unassigned (which
# includes the noncharacters) and line/paragraph separators: invisible, unrepresentable or
# meaning nothing agreed in a file name, and the stuff of spoofed names. A code point
# unassigned today may be given a meaning (and a case folding) that another system knows.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Windows opens a device, not a file, for these names, whatever the extension.
_WINDOWS_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in (*"123456789", "¹", "²", "³")}
)


def check_member_path(path: str) -> str:
    """Return `path` if it is a safe relative POSIX path inside an archive, else raise PATH_UNSAFE.

    Refuses absolute, drive-letter and UNC paths, `..` and `.` components, backslashes,
    NUL, colons and other characters that are not portable, control and format
    characters, empty components, Windows device names, and over-long names.
    """
    if not path or len(path) > MAX_PATH_LENGTH:
        raise Rejected(Code.PATH_UNSAFE, repr(path))
    if path.startswith(("/", "\\")) or _DRIVE_RE.match(path):
        raise Rejected(Code.PATH_UNSAFE, repr(path))
    if any(ch in _FORBIDDEN_CHARS or unicodedata.category(ch) in _FORBIDDEN_CATEGORIES
           for ch in path):
        raise Rejected(Code.PATH_UNSAFE, repr(path))
    for part in path.split("/"):
        if part in ("", ".", "..") or len(part) > MAX_COMPONENT_LENGTH:
            raise Rejected(Code.PATH_UNSAFE, repr(path))
        # Windows silently strips trailing dots and spaces: "a." would become "a".
        if part != part.rstrip(". "):
            raise Rejected(Code.PATH_UNSAFE, repr(path))
        if part.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
            raise Rejected(Code.PATH_UNSAFE, repr(path))
    return path


def fold(path: str) -> str:
    """Return the key under which two paths collide on case-insensitive, normalising systems.

    Upper- then lower-casing before case folding makes "ı" meet "I" and "i" as NTFS's
    upper-case table does; repeating until nothing changes makes the key stable.
    """
    for _ in range(4):
        folded = unicodedata.normalize(
            "NFKC", unicodedata.normalize("NFKC", path).upper().lower().casefold()
        )
        if folded == path:
            break
        path = folded
    return path
