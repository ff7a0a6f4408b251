"""Packing the dossier folder into a signed `.wvz`: consistent, incremental and fast.

Every document of the folder becomes a member `associated_documents/<relative path>` of
the exchange file (format version 1, kind `dossier`, see docs/exchange-format.md), signed
with this installation's key. How each document is read so that its member is one real
state of the file: daemon.send.snapshot. How the archive is written (stored or deflated
by content, deflated on every core, in order, bounded memory): daemon.zipwrite.

Incremental: `previous` is what the last successful send carried. A document whose size
and modification time are those of the last send is not read (its SHA-256 is taken from
there), unless it had been modified just before that send's snapshot (time stamps could
then hide a change). Any other document is read; with `Documents.CHANGED`, one whose
content turns out the same (touched only) is not carried. Documents of the last send
that are gone are listed in the manifest's `deleted`.

A changed-only pack with nothing added, modified or deleted is refused (code "empty"):
the accountant already has everything, and a file without news would only be noise.
With deletions only, it is sent: its manifest tells the accountant what went.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from daemon.compressibility import TRIAL_SIZE
from daemon.errors import Rejected, encodable
from daemon.exchange import Limits, check_unique_names, write_signature
from daemon.fsutil import atomic_writer, sha256_file
from daemon.i18n import _, ngettext
from daemon.keys import SigningKey
from daemon.manifest import Manifest, Member
from daemon.naming import DOSSIER_RE, Kind, check_member_path, make_name
from daemon.send.base import PART_SIZE, Documents, Progress, SendError, part_size_for
from daemon.send.inventory import Document, Inventory
from daemon.send.snapshot import (
    DOUBT_NS,
    MAX_READS,
    Change,
    Entry,
    Listing,
    os_reason,
    scan,
    take,
    unreadable,
)
from daemon.zipwrite import Compression, MemberPipeline, ZipWriter, first_chunk

MODULE = "associated_documents"
MEMBER_PREFIX = MODULE + "/"
# Windows' "disk full" codes, for a file system that does not say ENOSPC.
_DISK_FULL_WINERRORS = frozenset({39, 112})
_NAME_ATTEMPTS = 60
# The packed size is estimated from the first chunk of the largest documents, which make
# most of it, deflated or stored as the packer would: at most this many are read.
ESTIMATE_SAMPLES = 64
# What the archive adds: each member's headers and manifest line, besides its name
# (three times: local header, central directory, manifest); the manifest and signature.
_MEMBER_OVERHEAD = 256
_ARCHIVE_OVERHEAD = 16 << 10


@dataclass(frozen=True)
class Plan:
    """What a pack would carry, for the wizard's « N documents, X Mo »."""

    documents: int  # documents carried
    bytes: int  # their size
    deleted: tuple[str, ...]  # documents of the last send now gone (relative paths)
    unchanged: int  # documents with the content of the last send (carried anyway in ALL)
    packed_bytes: int = 0  # about how large the `.wvz` will be (estimate_packed_size)


@dataclass(frozen=True)
class PackedDossier:
    """A `.wvz` written, complete and fsync'd, and what it carries."""

    path: Path
    name: str
    size: int
    sha256: str
    documents: int
    documents_bytes: int
    deleted: tuple[str, ...]
    mode: Documents
    # The FULL inventory of the folder after this pack: what the sender commits once the
    # send succeeded.
    inventory: Inventory
    unchanged: int = 0
    skipped: tuple[str, ...] = ()  # links and special files left out (relative paths)
    generated_at: datetime | None = None
    sequence: int = 1
    # The SHA-256 of each `part_size` bytes of the file, made as it was written: the web
    # upload sends those parts without reading them twice.
    part_sha256: tuple[str, ...] = ()
    part_size: int = PART_SIZE


@dataclass(frozen=True)
class _Sorted:
    """The folder's documents against the last send."""

    unchanged: tuple[Document, ...]  # same size and time: not read
    to_read: tuple[Entry, ...]  # new, or size or time differ
    deleted: tuple[str, ...]


def plan_documents(folder: Path, documents: Documents, previous: Inventory | None) -> Plan:
    """Tell what `pack_dossier` would carry now, reading only what the choice needs.

    With CHANGED, documents of the size of the last send but another time are hashed, to
    tell a touched document from a modified one; nothing else is read.
    """
    listing = scan(folder)
    ordered = _sort(listing, previous)
    if documents is Documents.ALL:
        carried = list(listing.entries)
        unchanged = len(ordered.unchanged)
    else:
        known = previous.by_path if previous is not None else {}
        carried = []
        unchanged = len(ordered.unchanged)
        for entry in ordered.to_read:
            last = known.get(entry.path)
            if last is not None and last.size == entry.state.size and \
                    _hash(entry) == last.sha256:
                unchanged += 1
            else:
                carried.append(entry)
    return Plan(len(carried), sum(entry.state.size for entry in carried), ordered.deleted,
                unchanged, estimate_packed_size(carried))


def estimate_packed_size(entries: Sequence[Entry]) -> int:
    """Return about how large a `.wvz` carrying `entries` is, reading a little of each of
    the largest documents: their first chunk deflated or stored as the packer decides, and
    the others at the ratio those reached on average."""
    by_size = sorted(entries, key=lambda entry: entry.state.size, reverse=True)
    sampled = by_size[:ESTIMATE_SAMPLES]
    sampled_bytes = packed = 0
    for entry in sampled:
        ratio = _first_chunk_ratio(entry)
        sampled_bytes += entry.state.size
        packed += round(entry.state.size * ratio)
    rest = sum(entry.state.size for entry in by_size[ESTIMATE_SAMPLES:])
    average = packed / sampled_bytes if sampled_bytes else 1.0
    names = sum(3 * len(entry.path.encode("utf-8")) + _MEMBER_OVERHEAD for entry in entries)
    return packed + round(rest * average) + names + _ARCHIVE_OVERHEAD


def _part_size(entries: tuple[Entry, ...]) -> int:
    """Return the web upload's part size of the file about to be packed (decided before a
    byte is written: its parts are hashed as it is). A large dossier that deflates well
    makes a smaller file: its packed size is estimated then, not taken from the documents."""
    documents = sum(entry.state.size for entry in entries)
    if part_size_for(documents) == PART_SIZE:
        return PART_SIZE
    return part_size_for(estimate_packed_size(entries))


def _first_chunk_ratio(entry: Entry) -> float:
    """Return how much the packer's trial shrinks the document's first chunk (1.0: stored,
    or not readable now: the pack will say)."""
    try:
        with open(entry.file, "rb") as handle:
            sample = handle.read(TRIAL_SIZE)
    except OSError:
        return 1.0
    if not sample:
        return 1.0
    _method, payload = first_chunk(sample, Compression.AUTO)
    return len(payload) / len(sample)


def pack_dossier(folder: Path, out_dir: Path, key: SigningKey, *, dossier: str,
                 dossier_name: str, objective: str = "", comments: str = "",
                 documents: Documents = Documents.ALL,
                 previous: Inventory | None = None, sequence: int = 1,
                 fiscal_year: tuple[date, date] | None = None,
                 progress: Progress | None = None, cancel: threading.Event | None = None,
                 now: datetime | None = None, workers: int | None = None) -> PackedDossier:
    """Pack the dossier folder into `out_dir/<dossier>-<YYYYMMDDHHMMSS>.wvz`, signed by `key`.

    `now` is the generation time (name and manifest; default: now), `fiscal_year` the
    *Exercice comptable* (default: the calendar year of `now`). Raises SendError with
    code "folder-missing", "file-changing", "unreadable", "name-unsafe", "too-many",
    "too-large", "empty", "disk-full", "write-failed" or "cancelled"; on any failure
    nothing is left in `out_dir`.
    """
    if not DOSSIER_RE.fullmatch(dossier):
        raise ValueError(f"not a dossier number: {dossier!r}")
    moment = now or datetime.now()
    # Local time of this computer, unless `now` says its own offset (the name is its wall
    # clock, without the offset).
    generated = (moment if moment.tzinfo else moment.astimezone()).replace(microsecond=0)
    snapshot_at = datetime.now().astimezone()
    listing = scan(folder, exclude=(out_dir,))
    ordered = _sort(listing, previous)
    to_read = listing.entries if documents is Documents.ALL else ordered.to_read
    _check_carriable(to_read)
    if not to_read and (documents is Documents.ALL or not ordered.deleted):
        raise _nothing_to_send(folder, documents, previous)
    name, final, generated = _free_name(out_dir, dossier, generated)
    known = previous.by_path if previous is not None else {}
    part_size = _part_size(to_read)
    try:
        with atomic_writer(final) as out, ZipWriter(out, part_size=part_size) as writer:
            _make_private(out.fileno())
            read = _read_documents(writer, to_read, known, documents, progress, cancel,
                                   workers)
            # Everything was read in ALL mode; in CHANGED mode, the rest is as last sent.
            kept = ordered.unchanged if documents is Documents.CHANGED else ()
            inventory_documents = sorted([*read.carried, *read.touched, *kept],
                                         key=lambda document: document.path)
            present = {document.path for document in inventory_documents}
            deleted = tuple(sorted(path for path in known if path not in present))
            if not read.carried and (documents is Documents.ALL or not deleted):
                raise _nothing_to_send(folder, documents, previous)
            start, end = fiscal_year or (date(generated.year, 1, 1),
                                         date(generated.year, 12, 31))
            members = tuple(Member(MEMBER_PREFIX + d.path, d.size, d.sha256)
                            for d in read.carried)
            manifest = Manifest(
                kind=Kind.DOSSIER, dossier=dossier, dossier_name=dossier_name,
                generated_at=generated, fiscal_year_start=start, fiscal_year_end=end,
                sequence=sequence, key_id=key.public.key_id, files=members,
                modules={MODULE: tuple(m.path for m in members)} if members else {},
                delta_only=documents is Documents.CHANGED, objective=objective,
                comments=comments, deleted=tuple(MEMBER_PREFIX + path for path in deleted),
            )
            write_signature(writer, manifest, key)
            writer.close()
            _check_file_size(writer.size)
    except OSError as exc:
        raise _output_failure(out_dir, exc) from None
    inventory = Inventory(tuple(inventory_documents), sequence, snapshot_at.isoformat())
    return PackedDossier(
        path=final, name=name, size=writer.size, sha256=writer.sha256,
        documents=len(read.carried), documents_bytes=sum(d.size for d in read.carried),
        deleted=deleted, mode=documents, inventory=inventory,
        unchanged=_same_as_before(inventory_documents, known), skipped=listing.skipped,
        generated_at=generated, sequence=sequence, part_sha256=writer.part_sha256,
        part_size=part_size,
    )


def _same_as_before(documents: list[Document], known: dict[str, Document]) -> int:
    """Count the documents whose content is the one the last send carried."""
    return sum(1 for d in documents if (last := known.get(d.path)) and last.sha256 == d.sha256)


def _sort(listing: Listing, previous: Inventory | None) -> _Sorted:
    if previous is None:
        return _Sorted((), listing.entries, ())
    known = previous.by_path
    # A document modified just before the last snapshot may have changed again since
    # without its time stamp showing it: only older ones are trusted on size and time.
    settled = _instant_ns(previous.sent_at) - DOUBT_NS
    unchanged: list[Document] = []
    to_read: list[Entry] = []
    for entry in listing.entries:
        last = known.get(entry.path)
        if (last is not None and last.size == entry.state.size
                and last.mtime_ns == entry.state.mtime_ns and last.mtime_ns < settled):
            unchanged.append(last)
        else:
            to_read.append(entry)
    present = {entry.path for entry in listing.entries}
    deleted = tuple(sorted(path for path in known if path not in present))
    return _Sorted(tuple(unchanged), tuple(to_read), deleted)


def _instant_ns(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1_000_000_000)
    except (ValueError, OverflowError, OSError):
        return 0  # then no document is trusted on its time stamps: all are read


def _hash(entry: Entry) -> str:
    try:
        return sha256_file(Path(entry.file))
    except FileNotFoundError:
        return ""  # gone: counted as changed, the pack will see
    except OSError as exc:
        raise unreadable(entry.path, exc) from None


def _check_carriable(entries: tuple[Entry, ...]) -> None:
    """Refuse before writing anything what the accountant's side would refuse."""
    limits = Limits()
    if len(entries) > limits.max_members:
        raise SendError("too-many", _(
            "The dossier holds {count} documents, more than the {limit} an exchange file "
            "can carry.").format(count=len(entries), limit=limits.max_members))
    total = sum(entry.state.size for entry in entries)
    if total > limits.max_total_size:
        raise SendError("too-large", _(
            "The documents weigh {size} in all, more than the {limit} an exchange file can "
            "carry.").format(size=_size(total), limit=_size(limits.max_total_size)))
    for entry in entries:
        try:
            check_member_path(MEMBER_PREFIX + entry.path)
        except Rejected:
            raise SendError("name-unsafe", _(
                "The name of the document {path} cannot be carried to another computer as "
                "it is (a character, a length or a name that Windows refuses): rename it, "
                "then send again.").format(path=encodable(entry.path))) from None
    try:
        check_unique_names(MEMBER_PREFIX + entry.path for entry in entries)
    except Rejected as exc:
        raise SendError("name-unsafe", _(
            "Two documents would have the same name on the accountant's computer, which "
            "does not tell upper from lower case ({detail}): rename one of them, then "
            "send again.").format(detail=exc.detail)) from None


def _check_file_size(size: int) -> None:
    limit = Limits().max_file_size
    if size > limit:
        raise SendError("too-large", _(
            "The exchange file would weigh {size}, more than the {limit} the accountant's "
            "side accepts.").format(size=_size(size), limit=_size(limit)))


def _size(size: int) -> str:
    from daemon.presentation import format_size

    return format_size(size)


def _nothing_to_send(folder: Path, documents: Documents, previous: Inventory | None,
                     ) -> SendError:
    if documents is Documents.ALL:
        return SendError("empty", _("The dossier's folder {folder} holds no document to "
                                    "send.").format(folder=folder))
    from daemon.presentation import format_datetime

    when = datetime.fromisoformat(previous.sent_at) if previous is not None else None
    return SendError("empty", _(
        "No document was added, modified or deleted since the last send, on {when}: "
        "there is nothing to send. Choose \"All documents\" to send them all again."
    ).format(when=format_datetime(when) if when is not None else "?"))


def _free_name(out_dir: Path, dossier: str,
               generated: datetime) -> tuple[str, Path, datetime]:
    """Return the file name and the generation time it says: one second later while a
    file of that name is already there (two sends in the same second)."""
    for step in range(_NAME_ATTEMPTS):
        when = generated + timedelta(seconds=step)
        name = make_name(dossier, when, Kind.DOSSIER)
        if not (out_dir / name).exists():
            break
    return name, out_dir / name, when


def _make_private(fd: int) -> None:
    # The farmer's documents: readable by the user only, as the rest of the data folder.
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o600)


@dataclass(frozen=True)
class _Read:
    carried: list[Document]
    touched: list[Document]  # read, but the same content as the last send: not carried


def _read_documents(writer: ZipWriter, entries: tuple[Entry, ...],
                    known: dict[str, Document], documents: Documents,
                    progress: Progress | None, cancel: threading.Event | None,
                    workers: int | None) -> _Read:
    """Read every document into the archive, each as one real state of its file."""
    total = sum(entry.state.size for entry in entries)
    done = 0

    def on_read(count: int) -> None:
        nonlocal done
        _check_cancel(cancel)
        done += count
        if progress is not None:
            progress(min(done, total), total)

    carried: list[Document] = []
    touched: list[Document] = []
    queue = deque((entry, 1) for entry in entries)
    with MemberPipeline(writer, Compression.AUTO, workers, on_read) as pipeline:
        while queue:
            _check_cancel(cancel)
            entry, reads = queue.popleft()
            taken = take(pipeline, entry, MEMBER_PREFIX + entry.path)
            if taken is Change.VANISHED:
                continue  # deleted since the listing: it is not in the dossier any more
            if taken is Change.CHANGED:
                if reads >= MAX_READS:
                    raise _file_changing(entry)
                total += entry.state.size
                # Later, not at once: a file being saved is given the time to finish.
                queue.append((entry, reads + 1))
                continue
            state, ticket = taken.state, taken.ticket
            document = Document(entry.path, state.size, state.mtime_ns, ticket.sha256)
            last = known.get(entry.path)
            if documents is Documents.CHANGED and last is not None and \
                    last.sha256 == document.sha256:
                pipeline.drop(ticket)
                touched.append(document)
            else:
                pipeline.keep(ticket)
                carried.append(document)
        pipeline.finish()
    if progress is not None:
        progress(total, total)
    carried.sort(key=lambda document: document.path)
    return _Read(carried, touched)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise SendError("cancelled", _("Sending cancelled: no exchange file was made."))


def _file_changing(entry: Entry) -> SendError:
    return SendError("file-changing", ngettext(
        "The document {path} kept changing while it was read ({count} time): close the "
        "application that is writing it, then send again.",
        "The document {path} kept changing while it was read ({count} times): close the "
        "application that is writing it, then send again.",
        MAX_READS).format(path=encodable(entry.path), count=MAX_READS))


def _output_failure(out_dir: Path, exc: OSError) -> SendError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or \
            getattr(exc, "winerror", None) in _DISK_FULL_WINERRORS:
        return SendError("disk-full", _(
            "There is not enough free space in {folder} to prepare the exchange file: free "
            "some space, then send again.").format(folder=out_dir))
    return SendError("write-failed", _(
        "The exchange file cannot be written in {folder}: {reason}.").format(
            folder=out_dir, reason=os_reason(exc)))
