"""The *rapport* of a send: what was sent, where, when, how long it took, and the receipt.

Each successful send leaves two files in `<data>/reports/`, named after the `.wvz`: the
report's facts as JSON (the source of truth, read back when the accountant's receipt
arrives) and a readable, self-contained HTML page in the user's language that front ends
open. Both are written temp → fsync → rename, so a page is never half there.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from daemon.config import Paths
from daemon.fsutil import atomic_write_bytes
from daemon.i18n import _, current_language, ngettext
from daemon.presentation import (
    channel_label,
    documents_label,
    format_datetime,
    format_duration,
    format_size,
)
from daemon.send.base import Channel, Documents

log = logging.getLogger(__name__)

REPORTS_FOLDER = "reports"


def confirmation_line() -> str:
    """Return the manual's words at the foot of the report."""
    return _("An exchange was generated and sent to your accountant")


@dataclass(frozen=True)
class SendReport:
    """Everything the report of one successful send shows (`to_json` for --json)."""

    dossier: str
    dossier_name: str
    name: str  # the .wvz
    channel: Channel
    where: str  # in the user's words: « la clé CLE », an address, the accountant's site
    size: int
    sha256: str
    documents: int  # documents carried by this .wvz
    documents_bytes: int
    mode: Documents  # all the documents, or only the modified or added ones
    deleted: tuple[str, ...]  # documents gone since the last send, listed in the manifest
    objective: str
    comments: str
    started_at: datetime  # aware
    finished_at: datetime  # aware
    remove_hint: str = ""  # « Vous pouvez retirer la clé … »
    detail: dict[str, Any] = field(default_factory=dict)  # the destination's plain facts
    inform: str = ""  # information e-mail: "" not asked, "asked" (not yet), "sent", "failed"
    inform_message: str = ""  # to whom it went, or why it failed
    received_at: str | None = None  # the accountant's receipt (ISO 8601), once it came

    @property
    def duration_s(self) -> float:
        """Return how long the send took, packing included."""
        return (self.finished_at - self.started_at).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """Return the report as documented for `passeur send --json`."""
        data = asdict(self)
        data.update(channel=str(self.channel), mode=str(self.mode), deleted=list(self.deleted),
                    started_at=self.started_at.isoformat(),
                    finished_at=self.finished_at.isoformat(),
                    duration_s=round(self.duration_s, 3))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendReport:
        """Read what `to_json` wrote (raises KeyError / ValueError when it is not that)."""
        values = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        values.update(channel=Channel(data["channel"]), mode=Documents(data["mode"]),
                      deleted=tuple(data.get("deleted", ())),
                      started_at=datetime.fromisoformat(data["started_at"]),
                      finished_at=datetime.fromisoformat(data["finished_at"]))
        return cls(**values)

    def history_detail(self) -> dict[str, Any]:
        """Return the facts kept in the queue's history (`passeur journal`)."""
        return {"name": self.name, "dossier": self.dossier, "channel": str(self.channel),
                "where": self.where, "size": self.size, "sha256": self.sha256,
                "documents": self.documents, "mode": str(self.mode),
                "deleted": len(self.deleted), "objective": self.objective,
                "comments": self.comments, "duration_s": round(self.duration_s, 3),
                "inform": self.inform}

    def facts(self) -> list[tuple[str, str]]:
        """Return the report's lines as (label, value), in the active language."""
        rows = [
            (_("Dossier"), f"{self.dossier} - {self.dossier_name}".rstrip(" -")),
            (_("File"), self.name),
            (_("Documents"), ngettext("{n} document ({size})", "{n} documents ({size})",
                                      self.documents).format(
                n=self.documents, size=format_size(self.documents_bytes))),
            (_("Associated documents"), documents_label(str(self.mode))),
        ]
        if self.deleted:
            rows.append((_("Deleted documents"), ", ".join(self.deleted)))
        rows += [
            (_("File size"), format_size(self.size)),
            (_("Destination"), f"{channel_label(str(self.channel))} — {self.where}"),
            (_("Sent on"), format_datetime(self.finished_at.astimezone())),
            (_("Duration"), format_duration(self.duration_s)),
            (_("Objective of the exchange"), self.objective or "—"),
            (_("Comments"), self.comments or "—"),
        ]
        if self.inform == "sent":
            rows.append((_("Information e-mail"), _("sent to {address}").format(
                address=self.inform_message)))
        elif self.inform == "failed":
            rows.append((_("Information e-mail"), _("not sent: {reason}").format(
                reason=self.inform_message)))
        rows.append(("SHA-256", self.sha256))
        return rows

    def receipt_line(self) -> str:
        """Return what the accountant's side said, or "" when nothing is expected."""
        if self.received_at:
            return _("Received by your accountant on {when}").format(
                when=_format_moment(self.received_at))
        if self.channel is Channel.WEB:
            return _("Not yet received by your accountant")
        return ""

    def lines(self) -> list[str]:
        """Return the report as plain lines (the CLI prints them)."""
        lines = [_("{label}: {value}").format(label=label, value=value)
                 for label, value in self.facts()]
        if self.remove_hint:
            lines.append(self.remove_hint)
        if receipt := self.receipt_line():
            lines.append(receipt)
        lines.append(confirmation_line())
        return lines


def _format_moment(iso: str) -> str:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return format_datetime(moment.astimezone() if moment.tzinfo else moment)


def report_path(paths: Paths, name: str) -> Path:
    """Return the HTML report of the send that made `name` (the `.wvz`), for front ends."""
    return paths.data / REPORTS_FOLDER / (Path(name).stem + ".html")


def _facts_path(paths: Paths, name: str) -> Path:
    return paths.data / REPORTS_FOLDER / (Path(name).stem + ".json")


_STYLE = """
body { font-family: "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 46em; color: #1d2a1d; background: #fbfbf7; line-height: 1.4; }
h1 { font-size: 1.4em; border-bottom: 2px solid #4a7a3a; padding-bottom: .3em; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; vertical-align: top; padding: .35em 1em .35em 0; white-space: nowrap;
     color: #4d5a4d; font-weight: normal; }
td { padding: .35em 0; overflow-wrap: anywhere; }
tr + tr th, tr + tr td { border-top: 1px solid #e2e4da; }
.hint { background: #eef5e9; padding: .6em 1em; border-radius: .3em; }
.receipt { font-weight: bold; color: #2f5f24; }
.pending { color: #6b6b5d; }
.confirmation { margin-top: 2em; font-weight: bold; font-size: 1.1em; }
"""


def render_html(report: SendReport) -> str:
    """Return the report as one self-contained HTML page (everything escaped)."""
    esc = html.escape
    title = _("Report of the sending of dossier {number}").format(number=report.dossier)
    rows = "\n".join(f"<tr><th>{esc(label)}</th><td>{esc(value)}</td></tr>"
                     for label, value in report.facts())
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{esc(current_language())}">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)} — {esc(report.name)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
        f"<table>\n{rows}\n</table>",
    ]
    if report.remove_hint:
        parts.append(f'<p class="hint">{esc(report.remove_hint)}</p>')
    if receipt := report.receipt_line():
        css = "receipt" if report.received_at else "pending"
        parts.append(f'<p class="{css}">{esc(receipt)}</p>')
    parts += [f'<p class="confirmation">{esc(confirmation_line())}</p>', "</body>", "</html>",
              ""]
    return "\n".join(parts)


def write_report(paths: Paths, report: SendReport) -> Path:
    """Write the report's facts and its HTML page durably; return the page's path."""
    folder = paths.data / REPORTS_FOLDER
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    facts = json.dumps(report.to_json(), ensure_ascii=False, indent=1)
    atomic_write_bytes(_facts_path(paths, report.name), facts.encode("utf-8"))
    page = report_path(paths, report.name)
    atomic_write_bytes(page, render_html(report).encode("utf-8"))
    return page


def load_report(paths: Paths, name: str) -> SendReport | None:
    """Return the report of the send that made `name`, or None when there is none."""
    try:
        data = json.loads(_facts_path(paths, name).read_text("utf-8"))
        return SendReport.from_json(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the report of %s cannot be read: %s", name, exc)
        return None


class Receipt(Protocol):
    """What the accountant's signed receipt says (daemon.web.index.Receipt has it)."""

    @property
    def name(self) -> str:
        """The `.wvz` received."""

    @property
    def sha256(self) -> str:
        """The SHA-256 of what the accountant's side assembled."""

    @property
    def received_at(self) -> str | datetime:
        """When it was received (ISO 8601 text or an aware date-time)."""


def add_receipt_to_report(paths: Paths, receipt: Receipt) -> Path | None:
    """Add « Reçu par votre comptable le … » to a send's report, durably.

    Returns the page, or None when there is no report of that file or the receipt names
    other bytes than the ones sent (then the report is left as it was, and it is logged).
    """
    report = load_report(paths, receipt.name)
    if report is None:
        return None
    if receipt.sha256 != report.sha256:
        log.warning("the receipt for %s names other content (%s) than what was sent (%s)",
                    receipt.name, receipt.sha256, report.sha256)
        return None
    moment = receipt.received_at
    when = moment.isoformat(timespec="seconds") if isinstance(moment, datetime) else moment
    if report.received_at == when:
        return report_path(paths, receipt.name)
    return write_report(paths, replace(report, received_at=when))
