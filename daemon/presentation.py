"""Words shown to the user about exchanges and queue items (shared by the CLI and the tray)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from daemon.i18n import _, current_language, ngettext
from daemon.manifest import Manifest


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
    for module, items in manifest.modules.items():
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
    return action


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
