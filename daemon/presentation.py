"""Words shown to the user about exchanges and queue items (shared by the CLI and the tray)."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from daemon.i18n import _, current_language, ngettext
from daemon.manifest import MODULES, Manifest

if TYPE_CHECKING:
    from daemon.queue import Line


def module_label(module: str) -> str:
    """Return the user-facing name of a module."""
    labels = {
        "vat_declaration": _("VAT declaration"),
        "entry_templates": _("Entry templates"),
        "associated_documents": _("Associated documents"),
        "situations": _("Situations"),
    }
    return labels.get(module, module)


def format_datetime(value: datetime) -> str:
    """Format a date-time the way the user reads it (27/10/2020 17:20:21 in French)."""
    if current_language() == "fr":
        return value.strftime("%d/%m/%Y %H:%M:%S")
    return value.strftime("%Y-%m-%d %H:%M:%S")


def format_date(value: date) -> str:
    """Format a date the way the user reads it."""
    return value.strftime("%d/%m/%Y" if current_language() == "fr" else "%Y-%m-%d")


def format_size(size: int) -> str:
    """Return a size the way the user reads it (1,5 Mo; decimal units like file managers)."""
    for unit, factor in ((_("GB"), 10**9), (_("MB"), 10**6), (_("kB"), 10**3)):
        if size >= factor:
            text = f"{size / factor:.1f}"
            if current_language() == "fr":
                text = text.replace(".", ",")
            return f"{text} {unit}"
    return ngettext("{n} byte", "{n} bytes", size).format(n=size)


def yes_no(value: bool) -> str:
    """Return "oui"/"non" (or yes/no)."""
    return _("yes") if value else _("no")


def describe_exchange(manifest: Manifest) -> list[str]:
    """Return the *Contenu de l'échange* as lines of text."""
    lines = [
        _("Dossier {number} - {name}").format(number=manifest.dossier,
                                              name=manifest.dossier_name),
        _("Exchange file generated on {when}").format(
            when=format_datetime(manifest.generated_at)),
        manifest.domain,
        _("Fiscal year from {start} to {end}").format(
            start=format_date(manifest.fiscal_year_start),
            end=format_date(manifest.fiscal_year_end)),
        _("Modules"),
    ]
    if not manifest.modules:
        lines.append("  " + _("(none)"))
    # In the manual's order (MODULES), whatever order the manifest lists them in.
    for module, items in sorted(manifest.modules.items(), key=lambda kv: _module_rank(kv[0])):
        count = ngettext("{n} file", "{n} files", len(items)).format(n=len(items))
        lines.append(f"  - {module_label(module)} ({count})")
    lines.append(_("Integrate only the added, modified, deleted entries: {answer}").format(
        answer=yes_no(manifest.delta_only)))
    if manifest.etalon:
        lines.append(_("Contains dossiers étalons: the application must be restarted"))
    if manifest.objective:
        lines.append(_("Objective of the exchange: {text}").format(text=manifest.objective))
    if manifest.comments:
        lines.append(_("Comments: {text}").format(text=manifest.comments))
    lines.append(_("Sequence number: {n}").format(n=manifest.sequence))
    return lines


def describe_activity(action: str, detail: dict[str, Any]) -> str:
    """Return one line of the activity log in words."""
    name = str(detail.get("name", ""))
    origin = origin_label(str(detail.get("origin", "")))
    if action == "received":
        text = _("{file} received ({origin})").format(file=name, origin=origin)
        if detail.get("etalon"):
            text += " — " + _("contains dossiers étalons")
        return text
    if action == "rejected":
        from daemon.errors import Code, Rejected

        try:
            reason = Rejected(Code(str(detail.get("code"))), detail.get("detail", "")).reason()
        except ValueError:
            reason = str(detail.get("code"))
        return _("{file} refused ({origin}): {reason}").format(file=name, origin=origin,
                                                              reason=reason)
    if action == "delivered":
        return _("{file} handed to the application").format(file=name)
    if action == "deleted":
        return _("{file} deleted").format(file=name)
    if action == "restart_required":
        return _("An update waits for the application to be restarted")
    if action == "restarted":
        count = int(detail.get("delivered", 0))
        return ngettext("{app} restarted, {n} update handed over",
                        "{app} restarted, {n} updates handed over", count).format(
                            app=detail.get("app", ""), n=count)
    if action in ("sent", "send_failed"):
        return describe_send(action, detail)
    if action == "receipt":
        return describe_receipt(str(detail.get("file", "")), str(detail.get("received_at", "")))
    return action


def describe_receipt(file: str, received_at: str) -> str:
    """Return « Reçu par votre comptable le … » for a sent file the firm confirmed."""
    try:
        when = format_datetime(datetime.fromisoformat(received_at).astimezone())
    except ValueError:
        when = received_at
    return _("Received by your accountant on {when}: {file}").format(when=when, file=file)


def describe_send(action: str, detail: dict[str, Any]) -> str:
    """Return the journal line of a send (`sent`) or of a send that failed (`send_failed`)."""
    if action == "send_failed":
        return _("Dossier {number} not sent ({channel}): {reason}").format(
            number=detail.get("dossier", ""), channel=channel_label(str(detail.get("channel"))),
            reason=detail.get("message", ""))
    count = int(detail.get("documents", 0))
    text = ngettext("{file} sent to {where} ({n} document, {size})",
                    "{file} sent to {where} ({n} documents, {size})", count).format(
        file=detail.get("name", ""), where=detail.get("where", ""), n=count,
        size=format_size(int(detail.get("size", 0))))
    if detail.get("objective"):
        text += " — " + str(detail["objective"])
    return text


def channel_label(channel: str) -> str:
    """Return the manual's name of a way of sending (*Choix de la destination*)."""
    labels = {
        "web": _("Web synchronisation with your accountant"),
        "folder": _("Folder"),
        "email": _("Email"),
    }
    return labels.get(channel, channel)


def documents_label(mode: str) -> str:
    """Return the manual's words for *Joindre les documents associés*."""
    return _("Only the modified or added documents") if mode == "changed" else _(
        "All the documents")


def format_duration(seconds: float) -> str:
    """Return a duration the way the user reads it (45 s, 2 min 05 s, 1 h 02 min)."""
    whole = max(0, round(seconds))
    if whole < 60:
        return _("{s} s").format(s=whole)
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return _("{m} min {s:02d} s").format(m=minutes, s=secs)
    hours, minutes = divmod(minutes, 60)
    return _("{h} h {m:02d} min").format(h=hours, m=minutes)


def origin_label(origin: str) -> str:
    """Return where a file came from, in words."""
    kind, _sep, where = origin.partition(":")
    labels = {
        "manual": _("imported by hand"),
        "web": _("from the accountant's web site"),
        "usb": _("from USB key {name}").format(name=where),
        "folder": _("from folder {name}").format(name=where),
        "demo": _("demo"),
    }
    return labels.get(kind, origin)


def state_words(item: Line) -> str:
    """Return an item's state as the queue listing says it."""
    from daemon.queue import State

    if item.state is State.WAITING and item.restart_required:
        return _("restart required")
    return {
        State.RECEIVED: _("received"),
        State.WAITING: _("to integrate"),
        State.DELIVERED: _("integrated"),
        State.DELETED: _("deleted"),
        State.REJECTED: _("refused"),
    }[item.state]


def _module_rank(module: str) -> int:
    """Return where a module comes in the manual's list (unknown ones last)."""
    return MODULES.index(module) if module in MODULES else len(MODULES)
