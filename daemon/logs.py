"""The service's log: rotating files in the logs folder, secrets blanked out, events in words."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from datetime import UTC, datetime
from io import TextIOWrapper
from pathlib import Path

from daemon import events as ev
from daemon.errors import N_
from daemon.i18n import _, current_language, ngettext
from daemon.support.redact import install_filter

log = logging.getLogger("passeur")

LOG_NAME = "passeur.log"
MAX_BYTES = 1 << 20
BACKUPS = 4  # with the current file: at most 5 × 1 MB
# What joins the lines of a multi-line record (a traceback, a name with a line break in
# it): one record stays one line, and a file name cannot forge a line of its own.
LINE_JOIN = " | "

_LEVELS = {
    logging.DEBUG: N_("DEBUG"),
    logging.INFO: N_("INFO"),
    logging.WARNING: N_("WARNING"),
    logging.ERROR: N_("ERROR"),
    logging.CRITICAL: N_("CRITICAL"),
}
# Marks the handlers setup_logging added, so that a second call replaces them.
_OURS = "passeur_handler"


class LogFile(logging.handlers.RotatingFileHandler):
    """A size-capped rotating UTF-8 log file, private to the user.

    Before each record it checks that its file is still the one under the log's name: if
    another process rotated it (a second `passeur run` starting), it follows the new file
    instead of writing on in the renamed one.
    """

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8",
                         errors="backslashreplace")  # a name from a key may not be UTF-8

    def _open(self) -> TextIOWrapper:
        """Open the log file for appending, created 0600 (it names the user's files)."""
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record (rotating first when the file is full)."""
        try:
            if self.stream is not None and self._moved(self.stream):
                self.stream.close()
                self.stream = self._open()
        except OSError:
            self.handleError(record)  # as logging does: never raise into the caller
            return
        super().emit(record)

    def _moved(self, stream: TextIOWrapper) -> bool:
        try:
            on_disk = os.stat(self.baseFilename)
        except FileNotFoundError:
            Path(self.baseFilename).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return True
        opened = os.fstat(stream.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (opened.st_dev, opened.st_ino)


class LineFormatter(logging.Formatter):
    """One line per record: local time with its offset, level in the interface's language,
    logger, message (and the exception, on the same line)."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """Return the record's time as ISO 8601 with the UTC offset of that moment."""
        moment = datetime.fromtimestamp(record.created, UTC).astimezone()
        return moment.isoformat(timespec="milliseconds")

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line."""
        record.message = record.getMessage()
        level = _LEVELS.get(record.levelno)
        parts = [f"{self.formatTime(record)} {_(level) if level else record.levelname} "
                 f"{record.name}: {record.message}"]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return LINE_JOIN.join(line for part in parts for line in part.splitlines() if line)


def setup_logging(folder: Path, verbose: bool = False,
                  console_level: int = logging.NOTSET) -> None:
    """Log to `folder/passeur.log` (rotated, 5 × 1 MB) and to stderr (from `console_level`
    on: the demo keeps the terminal for its story), secrets blanked out in both.

    Calling it again replaces its handlers (never two of them: each line written once);
    handlers others added (a test's capture) stay.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    stop_logging()
    file_handler = LogFile(folder / LOG_NAME)
    file_handler.setFormatter(LineFormatter())
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    console.setLevel(console_level)
    for handler in (file_handler, console):
        install_filter(handler)
        setattr(handler, _OURS, True)
        root.addHandler(handler)


def stop_logging() -> None:
    """Remove and close the handlers setup_logging added (the files are let go)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
        handler.close()


def log_files(folder: Path) -> list[Path]:
    """Return the log files that exist, the current one first, then older and older."""
    names = [LOG_NAME] + [f"{LOG_NAME}.{n}" for n in range(1, 100)]
    found = []
    for name in names:
        path = folder / name
        if not path.is_file():
            if name != LOG_NAME:
                break  # rotation leaves no gap
            continue
        found.append(path)
    return found


def describe_event(event: ev.Event) -> str | None:
    """Return an event as a sentence for the log; None for events too frequent to log."""
    match event:
        case ev.ServiceStarted():
            return _("passeur started")
        case ev.ServiceStopping():
            return _("passeur is stopping")
        case ev.UpdateQueued(name=name, etalon=etalon):
            text = _("{file} received and queued").format(file=name)
            return text + (" — " + _("contains dossiers étalons") if etalon else "")
        case ev.UpdateRejected(name=name, reason_fr=fr, reason_en=en):
            reason = fr if current_language() == "fr" else en
            return _("{file} refused: {reason}").format(file=name, reason=reason)
        case ev.BatchFinished(queued=queued, rejected=rejected) if queued or rejected:
            from daemon.removable.handover import describe_batch

            return describe_batch(event)
        case ev.SourceFailed(message=message):
            return message
        case ev.Offline(reason=reason):
            return _("The accountant's site cannot be reached ({reason})").format(
                reason=_(reason) if reason else "")
        case ev.BackOnline():
            return _("The accountant's site can be reached again")
        case ev.Delivered(name=name):
            return _("{file} handed to the application").format(file=name)
        case ev.RestartRequired(app_name=app, item_ids=()):
            return _("No update waits for {app} to be restarted any more").format(app=app)
        case ev.RestartRequired(app_name=app, item_ids=ids):
            return ngettext("{n} update waits for {app} to be restarted.",
                            "{n} updates wait for {app} to be restarted.",
                            len(ids)).format(n=len(ids), app=app)
        case ev.PauseChanged(paused=False):
            return _("Receiving again")
        case ev.PauseChanged(paused=True, until=until):
            from daemon.pause import PauseState, describe_pause

            return describe_pause(PauseState(True, until))
        case ev.SendStarted(name=name, channel=channel):
            from daemon.presentation import channel_label

            return _("Sending {file} ({channel})").format(file=name,
                                                         channel=channel_label(channel))
        case ev.SendFinished(name=name, ok=True, where=where) if where:
            return _("{file} sent ({where})").format(file=name, where=where)
        case ev.SendFinished(name=name, ok=ok, message=message):
            return (_("{file} sent") if ok else _("{file} not sent: {reason}")).format(
                file=name, reason=message)
        case ev.SendFailed(name=name, message=message):
            return _("{file} not sent: {reason}").format(file=name, reason=message)
        case ev.ReceiptReceived(name=name, received_at=received_at):
            return _describe_receipt(name, received_at)
    return None


def _describe_receipt(name: str, received_at: str) -> str:
    try:
        moment = datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    except ValueError:  # not ours to judge: show it as the accountant's side wrote it
        return _("{file}: received by your accountant on {date}").format(file=name,
                                                                         date=received_at)
    from daemon.presentation import format_date

    local = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone()
    return _("{file}: received by your accountant on {date} at {time}").format(
        file=name, date=format_date(local.date()), time=local.strftime("%H:%M"))


def log_event(event: ev.Event) -> None:
    """Bus subscriber: write meaningful events to the log."""
    text = describe_event(event)
    if text is not None:
        log.info(text)
