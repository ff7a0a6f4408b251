"""The send orchestrator: one dossier, packed once, handed to one destination, reported.

Steps (docs/sending.md): the dossier is configured and has its folder; the accounting
application is closed (a dossier is never packed while the application may be writing
it); the destination can take a send at all; the folder is packed into a signed `.wvz` in
a private staging folder of the data folder; the destination checks the real size, then
transfers; on success the inventory of what was sent is committed (the next *Les documents
modifiés ou ajoutés* is counted from it), the report is written and kept in the queue's
history, the choices are remembered, and the information e-mail goes if asked (its failure
is said, it does not undo the send). The staging copy is always removed — except for a
web send that did not complete: its `.wvz` waits in `send/pending/<dossier>/` so that the
next web send of an unchanged dossier uploads the very same bytes and the web destination
resumes where the upload stopped.

Events: SendStarted (once the `.wvz` has its name), SendProgress (stage "pack" then
"transfer", at most about five a second), then exactly one of SendFinished or SendFailed.
A send refused before anything was packed publishes only SendFailed (its `name` is "").
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.config import Config, DossierConfig, Paths
from daemon.events import SendFailed, SendFinished, SendProgress, SendStarted
from daemon.fsutil import atomic_write_bytes, fsync_dir, sha256_file
from daemon.i18n import _
from daemon.naming import Kind, make_name
from daemon.send.base import (
    MB,
    PART_SIZE,
    Channel,
    Destination,
    Documents,
    SendError,
    SendJob,
    Sent,
)
from daemon.send.choices import Choices, ChoiceStore
from daemon.send.report import SendReport, report_path, write_report

if TYPE_CHECKING:
    from daemon.app import AppWatcher
    from daemon.bus import EventBus
    from daemon.context import Context
    from daemon.queue import Queue
    from daemon.send.email import SmtpPasswords
    from daemon.send.inventory import Inventory, InventoryStore
    from daemon.send.options import SendOptions
    from daemon.send.pack import PackedDossier, Plan
    from daemon.web.credentials import CredentialStore

__all__ = ["SendError", "SendReport", "SendRequest", "Sender", "sender_from_context"]

log = logging.getLogger(__name__)

# Progress events: at most one per this interval per stage, plus the last one.
PROGRESS_INTERVAL_S = 0.2
SEND_FOLDER = "send"

DestinationFactory = Callable[["SendRequest"], Destination]
# Called when a web send is cut; blocks until it is time to try again (True) or not.
OnCut = Callable[[SendError], bool]


@dataclass(frozen=True)
class SendRequest:
    """What the user asked for: the manual's *Envoyer* wizard, in one value."""

    dossier: str
    channel: Channel
    folder: Path | None = None  # the *Répertoire* (a folder send); None: `[send] folder`
    documents: Documents = Documents.ALL
    objective: str = ""
    comments: str = ""
    inform: bool = False  # « Envoyer un mail d'information au destinataire »

    def to_json(self) -> dict[str, Any]:
        """Return the request as the control channel carries it."""
        return {"dossier": self.dossier, "channel": str(self.channel),
                "folder": str(self.folder) if self.folder else None,
                "documents": str(self.documents), "objective": self.objective,
                "comments": self.comments, "inform": self.inform}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendRequest:
        """Read what `to_json` wrote; raise SendError("bad-request") when it is not that."""
        try:
            folder = data.get("folder")
            request = cls(str(data["dossier"]), Channel(data["channel"]),
                          Path(folder) if folder else None,
                          Documents(data.get("documents", Documents.ALL)),
                          str(data.get("objective", "")), str(data.get("comments", "")),
                          data.get("inform") is True)
        except (KeyError, ValueError, TypeError) as exc:
            raise SendError("bad-request", _("The send request is not understood ({error})."
                                             ).format(error=exc)) from None
        return request


class _Throttle:
    """Lets a progress report through at most every PROGRESS_INTERVAL_S, and the last one."""

    def __init__(self, publish: Callable[[int, int], None]) -> None:
        self._publish = publish
        self._last = -PROGRESS_INTERVAL_S

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            self._publish(done, total)


class _Run:
    """One call of Sender.send: publishes its events, each terminal one exactly once."""

    def __init__(self, request: SendRequest, bus: EventBus) -> None:
        self.request = request
        self.bus = bus
        self.name = ""
        self.ended = False

    def started(self, name: str) -> None:
        self.name = name
        self.bus.publish(SendStarted(self.request.dossier, name, str(self.request.channel)))

    def progress(self, stage: str) -> Callable[[int, int], None]:
        def publish(done: int, total: int) -> None:
            self.bus.publish(SendProgress(self.request.dossier, self.name, stage, done, total))

        return _Throttle(publish)

    def finished(self, where: str, message: str) -> None:
        if not self.ended:
            self.ended = True
            self.bus.publish(SendFinished(self.request.dossier, self.name,
                                          str(self.request.channel), True, message, where))

    def failed(self, error: SendError) -> None:
        if not self.ended:
            self.ended = True
            self.bus.publish(SendFailed(self.request.dossier, self.name,
                                        str(self.request.channel), error.code, error.text,
                                        "" if error.in_window == error.text
                                        else error.in_window))


@dataclass(frozen=True)
class _Packed:
    """A `.wvz` ready to be handed over, fresh or waiting from an earlier web send."""

    file: Path
    name: str
    size: int
    sha256: str
    documents: int
    documents_bytes: int
    deleted: tuple[str, ...]
    mode: Documents
    inventory: Inventory
    staging: Path  # the folder holding `file`, removed once it is no longer needed
    resumed: bool = False
    part_sha256: tuple[str, ...] = ()  # made by the packer; a resumed file has none
    part_size: int = PART_SIZE  # of `part_sha256`

    @classmethod
    def of(cls, packed: PackedDossier, staging: Path) -> _Packed:
        return cls(packed.path, packed.name, packed.size, packed.sha256, packed.documents,
                   packed.documents_bytes, tuple(packed.deleted), Documents(packed.mode),
                   packed.inventory, staging, part_sha256=packed.part_sha256,
                   part_size=packed.part_size)


PENDING_FILE = "pending.json"


class Sender:
    """Sends dossiers to the accountant; one send at a time per dossier (across processes)."""

    def __init__(self, config: Config, paths: Paths, queue: Queue, bus: EventBus, *,
                 watcher: AppWatcher | None = None,
                 destinations: Mapping[Channel, DestinationFactory] | None = None,
                 credentials: CredentialStore | None = None,
                 smtp_passwords: SmtpPasswords | None = None,
                 media_roots: Sequence[Path] | None = None) -> None:
        from daemon.app import AppWatcher

        self.config = config
        self.paths = paths
        self.queue = queue
        self.bus = bus
        # Never without a watcher: packing while the application writes would tear the dossier.
        self.watcher = watcher or AppWatcher(config.app)
        self.destinations = dict(destinations or {})
        self.credentials = credentials
        self.smtp_passwords = smtp_passwords
        self.media_roots = media_roots
        self.root = paths.data / SEND_FOLDER

    # ------------------------------------------------------------ what front ends ask

    def plan(self, dossier: str, documents: Documents) -> Plan:
        """Return what a send of `dossier` would carry now (documents, bytes, deleted)."""
        from daemon.send.pack import plan_documents

        folder = self._dossier_folder(self._dossier(dossier))
        return plan_documents(folder, documents, self._inventories().load(dossier))

    def choices(self, dossier: str) -> Choices | None:
        """Return the choices of the dossier's last successful send, if any."""
        return ChoiceStore(self.root).load(dossier)

    def report_path(self, name: str) -> Path:
        """Return the HTML report of the send that made `name`."""
        return report_path(self.paths, name)

    def options(self, dossier: str) -> SendOptions:
        """Return what the sending wizard offers for `dossier` now (quick: no pack, no
        network); raise SendError when the dossier is not set up."""
        from daemon.send.folder import removable_targets, removable_volumes
        from daemon.send.options import SendOptions, targets_for

        number = self._dossier(dossier).number
        remembered = self.choices(number)
        folders = [f for f in (remembered.folder if remembered else None,
                               self.config.send.folder) if f is not None]
        keys = {volume.mount_point for volume in removable_volumes(self.media_roots)}
        targets = targets_for(removable_targets(self.media_roots, folders), keys)
        unavailable = {str(channel): reason for channel in (Channel.WEB, Channel.EMAIL)
                       if (reason := self.unavailable(number, channel))}
        return SendOptions(number, self._dossier(number).name, self.config.app.name,
                           self.watcher.is_running(), targets,
                           self.config.send.objective_choices(),
                           self.config.send.email_max_mb * MB, unavailable, remembered)

    def unavailable(self, dossier: str, channel: Channel, folder: Path | None = None) -> str:
        """Return why `channel` cannot take a send of `dossier` now ("" when it can), in
        the wizard's words: the destination's own check before packing, so the wizard and
        a send refuse for the same reason."""
        try:
            self._destination(SendRequest(dossier, channel, folder)).check(0)
        except SendError as error:
            return error.in_window
        return ""

    # ------------------------------------------------------------ sending

    def send(self, request: SendRequest, cancel: threading.Event | None = None,
             on_cut: OnCut | None = None) -> SendReport:
        """Send one dossier as asked; raise SendError (after SendFailed) when it is not sent.

        `on_cut`: for a web send cut by the line or the server (a transient failure), it is
        called with the error and blocks until it is time to try again (True) or gives up
        (False); the upload then resumes at the part it reached, within this one send.
        """
        run = _Run(request, self.bus)
        try:
            report = self._send(run, cancel or threading.Event(), on_cut)
        except SendError as error:
            self._failed(run, error)
            raise
        except KeyboardInterrupt:
            self._failed(run, SendError("cancelled", _("The send was cancelled.")))
            raise
        except Exception as exc:
            log.exception("sending dossier %s failed", request.dossier)
            unexpected = SendError("unexpected", _(
                "The send of dossier {number} failed unexpectedly ({error}); the log has the"
                " details.").format(number=request.dossier, error=type(exc).__name__))
            self._failed(run, unexpected)
            raise unexpected from None
        return report

    def _failed(self, run: _Run, error: SendError) -> None:
        run.failed(error)
        with contextlib.suppress(OSError, sqlite3.Error):
            self.queue.log("send_failed", dossier=run.request.dossier, name=run.name,
                           channel=str(run.request.channel), code=error.code,
                           message=error.text)

    def _send(self, run: _Run, cancel: threading.Event, on_cut: OnCut | None) -> SendReport:
        request = run.request
        dossier = self._dossier(request.dossier)
        folder = self._dossier_folder(dossier)
        with self._exclusive(request.dossier):
            self._refuse_while_app_runs()
            destination = self._destination(request)
            destination.check(0)
            started_at = datetime.now().astimezone()
            started = time.monotonic()
            packed = self._pack(run, dossier, folder, request, cancel)
            sent = False
            try:
                self._refuse_while_app_runs()  # it may have been opened while we packed
                destination.check(packed.size)
                if cancel.is_set():
                    raise SendError("cancelled", _("The send was cancelled; nothing was sent."))
                job = SendJob(dossier.number, dossier.name, packed.file, packed.name,
                              packed.size, packed.sha256, request.objective, request.comments,
                              packed.mode, packed.part_sha256, packed.part_size)
                outcome = self._transfer(run, destination, job, cancel, on_cut)
                sent = True
            finally:
                self._clean_staging(packed, request, sent)
            finished_at = started_at + timedelta(seconds=time.monotonic() - started)
            report = self._record(request, dossier, packed, outcome, started_at, finished_at)
        report = self._inform(request, report, cancel)
        run.finished(report.where, self._finished_words(report))
        return report

    def _transfer(self, run: _Run, destination: Destination, job: SendJob,
                  cancel: threading.Event, on_cut: OnCut | None) -> Sent:
        """Hand the job to the destination; a cut web send waits for `on_cut`, resumes."""
        progress = run.progress("transfer")
        while True:
            try:
                return destination.send(job, progress, cancel)
            except SendError as error:
                from daemon.send.web import TRANSIENT

                resumable = (on_cut is not None and run.request.channel is Channel.WEB
                             and error.code in TRANSIENT and not cancel.is_set())
                if not resumable:
                    raise
                log.info("the web send of %s was cut (%s): waiting for the line",
                         job.name, error.code)
                # The icon keeps the send, with the reason in words (docs/sending.md).
                self.bus.publish(SendProgress(run.request.dossier, run.name, "waiting",
                                              0, job.size))
                assert on_cut is not None
                if not on_cut(error):
                    if cancel.is_set():  # *Annuler l'envoi* while waiting for the line
                        raise SendError("cancelled", _("The send was cancelled.")) from None
                    raise

    # ------------------------------------------------------------ checks

    def _dossier(self, number: str) -> DossierConfig:
        dossier = self.config.dossier(number)
        if dossier is None:
            raise SendError("dossier-unknown", _(
                "Dossier {number} is not set up on this computer: add it with passeur dossier"
                " add {number} NAME --folder FOLDER.").format(number=number))
        return dossier

    @staticmethod
    def _dossier_folder(dossier: DossierConfig) -> Path:
        if dossier.folder is None:
            raise SendError("dossier-no-folder", _(
                "Dossier {number} has no folder to send: give it with passeur dossier add"
                ' {number} "{name}" --folder FOLDER.').format(number=dossier.number,
                                                              name=dossier.name))
        if not dossier.folder.is_dir():
            raise SendError("dossier-folder-missing", _(
                "The folder of dossier {number}, {path}, cannot be found: check it, or give"
                ' another one with passeur dossier add {number} "{name}" --folder FOLDER.'
            ).format(number=dossier.number, path=dossier.folder, name=dossier.name))
        return dossier.folder

    def _refuse_while_app_runs(self) -> None:
        if self.watcher.is_running():
            raise SendError("app-running", _(
                "Close {app} before sending the dossier: it could be writing it.").format(
                    app=self.config.app.name))

    @contextlib.contextmanager
    def _exclusive(self, dossier: str) -> Any:
        from filelock import FileLock, Timeout

        lock = FileLock(self._private_folder("locks") / f"{dossier}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise SendError("already-sending", _(
                "Dossier {number} is already being sent (from another window or command):"
                " wait for that send to end.").format(number=dossier)) from None
        try:
            yield
        finally:
            lock.release()

    # ------------------------------------------------------------ destinations

    def _destination(self, request: SendRequest) -> Destination:
        factory = self.destinations.get(request.channel)
        if factory is not None:
            return factory(request)
        if request.channel is Channel.FOLDER:
            return self._folder_destination(request)
        if request.channel is Channel.EMAIL:
            from daemon.send.email import EmailDestination

            return EmailDestination(self.config.email, self.smtp_passwords,
                                    max_mb=self.config.send.email_max_mb)
        return self._web_destination()

    def _refuse_unusable_web_setting(self) -> None:
        """Refuse before any request what stops the poller too: an address that would leak
        the password (config.web.problem), or a CA bundle that cannot be used, looked at
        again now since it may have gone or changed since the configuration was read."""
        from daemon.web.failures import Failure
        from daemon.web.tls import CABundleError, check_ca_bundle

        web = self.config.web
        problem, code = web.problem, str(Failure.SETTING)
        if not problem and web.ca_bundle is not None:
            try:
                check_ca_bundle(web.ca_bundle)
            except CABundleError as error:
                problem = _("{file}: {why}").format(file=error.path, why=_(error.why))
                code = str(Failure.CA_BUNDLE)
        if not problem:
            return
        if code == str(Failure.CA_BUNDLE):
            text = _("The certificates given for the accountant's site cannot be used"
                     " ([sources.web] ca_bundle): {problem}. Nothing was sent.")
        else:
            text = _("The accountant's site is not used as set up: {problem}. Nothing was"
                     " sent.")
        raise SendError(code, text.format(problem=problem), _(
            "The accountant's site cannot be used as set up ({problem}): correct it in"
            " Settings ▸ Accountant, or send on a USB key or by e-mail.").format(
                problem=problem))

    def _folder_destination(self, request: SendRequest) -> Destination:
        from daemon.send.folder import FolderDestination, removable_volumes

        folder = request.folder or self.config.send.folder
        if folder is None:
            raise SendError("folder-not-chosen", _(
                "Choose the folder or the USB key to write the dossier to (passeur send"
                " {number} --to folder FOLDER).").format(number=request.dossier))
        roots = self.media_roots
        return FolderDestination(folder, volumes=lambda: removable_volumes(roots))

    def _web_destination(self) -> Destination:
        if not self.config.web.url:
            raise SendError("web-not-configured", _(
                "The accountant's site is not set up ([sources.web] url in the configuration):"
                " send on a USB key (--to folder) or by e-mail (--to email) instead."), _(
                "The accountant's site is not set up yet: give its address in Settings ▸"
                " Accountant, or send on a USB key or by e-mail."))
        self._refuse_unusable_web_setting()
        from daemon.send.identity import installation_key
        from daemon.send.web import WebDestination
        from daemon.web.client import WebSettings
        from daemon.web.credentials import CredentialStore

        destination: Destination = WebDestination(
            self.config.web.url, self.credentials or CredentialStore(),
            installation_key(self.paths.data), self.root / "web",
            ca_bundle=self.config.web.ca_bundle, max_kbps=self.config.send.max_kbps,
            settings=WebSettings(backoff_base=float(self.config.send.retry_seconds)))
        return destination

    # ------------------------------------------------------------ packing

    def _inventories(self) -> InventoryStore:
        from daemon.send.inventory import InventoryStore

        return InventoryStore(self.paths.data / "sent")

    def _private_folder(self, *parts: str) -> Path:
        """Return a folder under `send/`, creating each missing level private (0700)."""
        folder = self.root
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for part in parts:
            folder = folder / part
            folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    def _pending_folder(self, dossier: str) -> Path:
        return self.root / "pending" / dossier

    def _pack(self, run: _Run, dossier: DossierConfig, folder: Path, request: SendRequest,
              cancel: threading.Event) -> _Packed:
        """Pack the dossier (or take the web send left pending) and publish SendStarted."""
        if request.channel is Channel.WEB:
            waiting = self._pending_pack(dossier.number, folder, request)
            if waiting is not None:
                run.started(waiting.name)
                run.progress("pack")(waiting.size, waiting.size)
                return waiting
            staging = self._pending_folder(dossier.number)
            shutil.rmtree(staging, ignore_errors=True)
            self._private_folder("pending", dossier.number)
        else:
            staging = self._staging_folder(dossier.number)
        from daemon.send.pack import pack_dossier

        inventories = self._inventories()
        previous = inventories.load(dossier.number)
        sequence = inventories.next_sequence(dossier.number)
        now = self._unused_moment(dossier.number)
        run.started(make_name(dossier.number, now, Kind.DOSSIER))
        try:
            packed = _Packed.of(pack_dossier(
                folder, staging, self._signing_key(), dossier=dossier.number,
                dossier_name=dossier.name, objective=request.objective,
                comments=request.comments, documents=request.documents, previous=previous,
                sequence=sequence, progress=run.progress("pack"), cancel=cancel, now=now),
                staging)
            if request.channel is Channel.WEB:
                self._keep_pending(packed, request, sequence)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        run.name = packed.name
        return packed

    def _signing_key(self) -> Any:
        from daemon.send.identity import installation_key

        return installation_key(self.paths.data)

    def _unused_moment(self, dossier: str) -> datetime:
        """Return now, to the second, moved on while a report already has that file name:
        two sends in the same second must not make two different files of one name."""
        moment = datetime.now().astimezone().replace(microsecond=0)
        while report_path(self.paths, make_name(dossier, moment, Kind.DOSSIER)).exists():
            moment += timedelta(seconds=1)
        return moment

    def _staging_folder(self, dossier: str) -> Path:
        staging = self._private_folder("staging")
        # Left by a send killed mid-way (we hold the dossier's lock: no one else uses them).
        for old in staging.glob(f"{dossier}-*"):
            shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f"{dossier}-", dir=staging))

    def _clean_staging(self, packed: _Packed, request: SendRequest, sent: bool) -> None:
        if request.channel is Channel.WEB and not sent:
            return  # kept for the next web send: same bytes, the upload resumes
        shutil.rmtree(packed.staging, ignore_errors=True)

    # ------------------------------------------------------------ a web send left pending

    def _keep_pending(self, packed: _Packed, request: SendRequest, sequence: int) -> None:
        """Describe the packed `.wvz` beside it, so that a later web send may take it."""
        from daemon.send.inventory import InventoryStore

        folder = packed.staging
        InventoryStore(folder).commit(request.dossier, packed.inventory)
        facts = {"name": packed.name, "size": packed.size, "sha256": packed.sha256,
                 "documents": packed.documents, "documents_bytes": packed.documents_bytes,
                 "deleted": list(packed.deleted), "mode": str(packed.mode),
                 "objective": request.objective, "comments": request.comments,
                 "sequence": sequence}
        atomic_write_bytes(folder / PENDING_FILE, json.dumps(facts).encode("utf-8"))
        fsync_dir(folder)

    def _pending_pack(self, dossier: str, folder: Path, request: SendRequest) -> _Packed | None:
        """Return the web send left pending when it is exactly what would be packed now."""
        from daemon.send.inventory import InventoryStore
        from daemon.send.pack import plan_documents

        pending = self._pending_folder(dossier)
        try:
            facts = json.loads((pending / PENDING_FILE).read_text("utf-8"))
            file = pending / str(facts["name"])
            inventory = InventoryStore(pending).load(dossier)
            same_request = (facts["mode"] == str(request.documents)
                            and facts["objective"] == request.objective
                            and facts["comments"] == request.comments
                            and facts["sequence"] == self._inventories().next_sequence(dossier))
            if (inventory is None or not same_request or not file.is_file()
                    or file.stat().st_size != facts["size"]):
                return None
            unchanged = plan_documents(folder, Documents.CHANGED, inventory)
            if unchanged.documents or unchanged.deleted or sha256_file(file) != facts["sha256"]:
                return None
            return _Packed(file, file.name, int(facts["size"]), str(facts["sha256"]),
                           int(facts["documents"]), int(facts["documents_bytes"]),
                           tuple(facts["deleted"]), Documents(facts["mode"]), inventory,
                           pending, resumed=True)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # ------------------------------------------------------------ after the transfer

    def _record(self, request: SendRequest, dossier: DossierConfig, packed: _Packed,
                outcome: Sent, started_at: datetime, finished_at: datetime) -> SendReport:
        """Commit the inventory, write the report, keep it in the history, remember."""
        self._inventories().commit(dossier.number, packed.inventory)
        shutil.rmtree(self._pending_folder(dossier.number), ignore_errors=True)
        detail = dict(outcome.detail, resumed=packed.resumed)
        report = SendReport(
            dossier.number, dossier.name, packed.name, request.channel, outcome.where,
            packed.size, packed.sha256, packed.documents, packed.documents_bytes, packed.mode,
            packed.deleted, request.objective, request.comments, started_at, finished_at,
            outcome.remove_hint, detail,
            inform="asked" if self._informs(request) else "")
        self._write_report(report)
        try:
            self.queue.log("sent", **report.history_detail(),
                           report=str(report_path(self.paths, report.name)))
        except (OSError, sqlite3.Error) as exc:
            log.warning("the send of %s cannot be written in the journal: %s", report.name, exc)
        folder = (request.folder or self.config.send.folder
                  if request.channel is Channel.FOLDER else None)
        try:
            ChoiceStore(self.root).save(dossier.number, Choices(
                request.channel, folder, request.documents, request.objective, request.inform))
        except OSError as exc:
            log.warning("the choices of dossier %s cannot be kept: %s", dossier.number, exc)
        return report

    def _write_report(self, report: SendReport) -> None:
        # The send is done whatever happens here: a report that cannot be written is logged.
        try:
            write_report(self.paths, report)
        except OSError as exc:
            log.warning("the report of %s cannot be written: %s", report.name, exc)

    @staticmethod
    def _informs(request: SendRequest) -> bool:
        # An e-mail send is itself the information: no second message.
        return request.inform and request.channel is not Channel.EMAIL

    def _inform(self, request: SendRequest, report: SendReport,
                cancel: threading.Event) -> SendReport:
        """Send the information e-mail if asked; its failure is said, the send stands."""
        if not self._informs(request):
            return report
        from dataclasses import replace

        from daemon.send.email import send_information

        try:
            address = send_information(self.config.email, report, self.smtp_passwords, cancel)
            report = replace(report, inform="sent", inform_message=address)
        except SendError as error:
            report = replace(report, inform="failed", inform_message=error.text)
            with contextlib.suppress(OSError, sqlite3.Error):
                self.queue.log("inform_failed", dossier=report.dossier, name=report.name,
                               code=error.code, message=error.text)
        self._write_report(report)
        return report

    @staticmethod
    def _finished_words(report: SendReport) -> str:
        words = [_("{file} was sent to {where}.").format(file=report.name, where=report.where)]
        if report.remove_hint:
            words.append(report.remove_hint + ".")
        if report.inform == "failed":
            words.append(_("The information e-mail could not be sent: {reason}").format(
                reason=report.inform_message))
        return " ".join(words)


def sender_from_context(ctx: Context) -> Sender:
    """Return a Sender on the context's configuration, queue and bus."""
    from daemon.app import AppWatcher

    return Sender(ctx.config, ctx.paths, ctx.queue, ctx.bus, watcher=AppWatcher(ctx.config.app))
