"""Why an exchange file is refused: stable codes, plain reasons in French and English."""

from __future__ import annotations

import enum
from typing import Any

from daemon.i18n import _, in_language


def N_(message: str) -> str:
    """Mark `message` for translation without translating it yet."""
    return message


class Code(enum.StrEnum):
    """Stable rejection codes: scripts and the activity log rely on these never changing."""

    BAD_NAME = "bad-name"
    NAME_MISMATCH = "name-mismatch"
    WRONG_KIND = "wrong-kind"
    NOT_ZIP = "not-zip"
    TRUNCATED = "truncated"
    ENCRYPTED = "encrypted"
    UNSUPPORTED_COMPRESSION = "unsupported-compression"
    MANIFEST_MISSING = "manifest-missing"
    MANIFEST_MALFORMED = "manifest-malformed"
    FORMAT_VERSION = "format-version"
    SIGNATURE_MISSING = "signature-missing"
    SIGNATURE_BAD = "signature-bad"
    KEY_UNKNOWN = "key-unknown"
    MEMBER_UNLISTED = "member-unlisted"
    MEMBER_MISSING = "member-missing"
    MEMBER_DUPLICATE = "member-duplicate"
    MEMBER_SIZE = "member-size"
    MEMBER_HASH = "member-hash"
    MEMBER_CORRUPT = "member-corrupt"
    PATH_UNSAFE = "path-unsafe"
    SYMLINK = "symlink"
    NAME_COLLISION = "name-collision"
    TOO_MANY_MEMBERS = "too-many-members"
    TOO_LARGE = "too-large"
    RATIO_TOO_HIGH = "ratio-too-high"
    OVERLAPPING = "overlapping-entries"
    DOSSIER_UNKNOWN = "dossier-unknown"
    ROLLBACK = "rollback"
    SEQUENCE_REUSED = "sequence-reused"
    UNREADABLE = "unreadable"
    NOT_A_FILE = "not-a-file"
    DATA_BEFORE = "data-before-archive"
    DATA_BETWEEN = "data-between-members"
    DATA_AFTER = "data-after-archive"
    MULTI_DISK = "multi-disk"
    HEADER_MISMATCH = "header-mismatch"
    MEMBER_CRC = "member-crc"


# One reason per code; {placeholders} are filled from the rejection's details.
REASONS: dict[Code, str] = {
    Code.BAD_NAME: N_(
        "the name does not follow <dossier>-<YYYYMMDDHHMMSS>.wwz or .wvz ({detail})"
    ),
    Code.NAME_MISMATCH: N_("the file name does not match its content ({detail})"),
    Code.WRONG_KIND: N_("this is not an update from the accountant ({detail})"),
    Code.NOT_ZIP: N_("this is not an exchange file (not a ZIP archive)"),
    Code.TRUNCATED: N_("the file is incomplete or damaged ({detail})"),
    Code.ENCRYPTED: N_("the archive holds an encrypted member: {detail}"),
    Code.UNSUPPORTED_COMPRESSION: N_("unsupported compression method for {detail}"),
    Code.MANIFEST_MISSING: N_("the file has no manifest"),
    Code.MANIFEST_MALFORMED: N_("the manifest is not valid ({detail})"),
    Code.FORMAT_VERSION: N_("the file uses format version {detail}, unknown to this version"),
    Code.SIGNATURE_MISSING: N_("the file is not signed"),
    Code.SIGNATURE_BAD: N_("the signature is not valid: the file was altered or forged"),
    Code.KEY_UNKNOWN: N_("the file is signed by an unknown key ({detail})"),
    Code.MEMBER_UNLISTED: N_("the archive holds a file the manifest does not list: {detail}"),
    Code.MEMBER_MISSING: N_("a file listed in the manifest is missing: {detail}"),
    Code.MEMBER_DUPLICATE: N_("the archive holds the same file twice: {detail}"),
    Code.MEMBER_SIZE: N_("a file does not have the announced size: {detail}"),
    Code.MEMBER_HASH: N_("a file does not have the announced fingerprint (SHA-256): {detail}"),
    Code.MEMBER_CORRUPT: N_("a file in the archive is damaged: {detail}"),
    Code.PATH_UNSAFE: N_("the archive holds a dangerous path: {detail}"),
    Code.SYMLINK: N_("the archive holds a symbolic link: {detail}"),
    Code.NAME_COLLISION: N_("two files in the archive have the same name: {detail}"),
    Code.TOO_MANY_MEMBERS: N_("the archive holds too many files ({detail})"),
    Code.TOO_LARGE: N_("the file is too large ({detail})"),
    Code.RATIO_TOO_HIGH: N_("the archive expands abnormally (compression bomb): {detail}"),
    Code.OVERLAPPING: N_("the archive has overlapping entries (compression bomb)"),
    Code.DOSSIER_UNKNOWN: N_("dossier {detail} is not configured on this computer"),
    Code.ROLLBACK: N_("this update is older than one already received ({detail})"),
    Code.SEQUENCE_REUSED: N_("another update with the same number was already received ({detail})"),
    Code.UNREADABLE: N_("the file cannot be read ({detail})"),
    Code.NOT_A_FILE: N_("this is not a file but {detail}: nothing was read"),
    Code.DATA_BEFORE: N_("the file holds unexpected bytes before the archive ({detail})"),
    Code.DATA_BETWEEN: N_("the archive holds unexpected bytes between its parts ({detail})"),
    Code.DATA_AFTER: N_("the file holds unexpected bytes after the archive ({detail})"),
    Code.MULTI_DISK: N_("the archive claims to span several disks ({detail})"),
    Code.HEADER_MISMATCH: N_("the archive's headers disagree about a file: {detail}"),
    Code.MEMBER_CRC: N_("a file in the archive has a wrong checksum (CRC-32): {detail}"),
}


def encodable(text: str) -> str:
    """Return `text` with lone surrogates replaced by U+FFFD, so that it can be printed,
    stored and written as UTF-8 (file names that are not UTF-8 decode to surrogates)."""
    return "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)


class Rejected(Exception):
    """An exchange file refused for one stated reason."""

    def __init__(self, code: Code, detail: object = "") -> None:
        self.code = code
        self.detail = encodable(str(detail))
        super().__init__(f"{code}: {self.reason_in('en')}")

    def reason(self) -> str:
        """Return the reason in the active language."""
        # A detail that is a message of the catalogue (N_) is said in that language too.
        return _(REASONS[self.code]).format(detail=_(self.detail) if self.detail else "")

    def reason_in(self, language: str) -> str:
        """Return the reason in a given language ("fr" or "en")."""
        detail = in_language(language, self.detail) if self.detail else ""
        return in_language(language, REASONS[self.code]).format(detail=detail)

    def as_dict(self) -> dict[str, Any]:
        """Return the code and both reasons, for JSON output and quarantine notes."""
        return {
            "code": str(self.code),
            "detail": self.detail,
            "reason_fr": self.reason_in("fr"),
            "reason_en": self.reason_in("en"),
        }


class ConfigError(Exception):
    """The configuration file is wrong: names the file, the key and what was expected."""

    def __init__(self, path: object, key: str | None, expected: str) -> None:
        self.path = str(path)
        self.key = key
        self.expected = expected
        super().__init__(self.message())

    def message(self) -> str:
        """Return the explanation in the active language."""
        if self.key is None:
            return f"{self.path}: {self.expected}"
        return _("{path}: key '{key}': {expected}").format(
            path=self.path, key=self.key, expected=self.expected
        )
