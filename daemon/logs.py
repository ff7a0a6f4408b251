"""The service's log: a rotating file in the logs folder, and every event in words."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from daemon import events as ev
from daemon.i18n import _, current_language, ngettext

log = logging.getLogger("passeur")


def setup_logging(folder: Path, verbose: bool = False,
                  console_level: int = logging.NOTSET) -> None:
    """Log to `folder/passeur.log` (rotated, 5 × 1 MB) and to stderr (from
    `console_level` on: the demo keeps the terminal for its story)."""
    folder.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.handlers.RotatingFileHandler(
        folder / "passeur.log", maxBytes=1 << 20, backupCount=5, encoding="utf-8"
    )
    file_handler.setFormatter(formatter)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    console.setLevel(console_level)
    root.handlers[:] = [file_handler, console]


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
            return _("The accountant's site cannot be reached ({reason})").format(reason=reason)
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
        case ev.SendFinished(name=name, ok=ok, message=message):
            return (_("{file} sent") if ok else _("{file} not sent: {reason}")).format(
                file=name, reason=message)
    return None


def log_event(event: ev.Event) -> None:
    """Bus subscriber: write meaningful events to the log."""
    text = describe_event(event)
    if text is not None:
        log.info(text)
