"""The control channel's messages: versioned JSON lines (documented in docs/control.md).

A request, from the CLI to the running service::

    {"v": 1, "id": 3, "method": "process", "params": {"ids": [4, 5]}}

then, from the service, zero or more events of that request (progress) and one answer::

    {"v": 1, "id": 3, "event": {"type": "Delivered", "item_id": 4, "name": "…"}}
    {"v": 1, "id": 3, "result": [...]}
    {"v": 1, "id": 3, "error": {"code": "inbox-not-configured", "message": "…"}}
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from daemon import events as ev

VERSION = 1
_EVENTS = {kind.__name__: kind for kind in ev.ALL_EVENTS}


class ProtocolError(ValueError):
    """A line that is not a message of this protocol's version."""


def encode(message: dict[str, Any]) -> bytes:
    """Return one message as a line (without its newline)."""
    return json.dumps({"v": VERSION, **message}, ensure_ascii=False,
                      separators=(",", ":")).encode()


def decode(line: bytes) -> dict[str, Any]:
    """Return the message a line holds; raise ProtocolError for anything else."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError("not JSON") from None
    if not isinstance(message, dict):
        raise ProtocolError("not an object")
    if message.get("v") != VERSION:
        raise ProtocolError(f"version {message.get('v')!r}, expected {VERSION}")
    return message


def event_to_json(event: ev.Event) -> dict[str, Any]:
    """Return an event as it travels: its type's name and its fields."""
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def event_from_json(data: object) -> ev.Event | None:
    """Rebuild an event; None for a type or fields this version does not know."""
    if not isinstance(data, dict):
        return None
    kind = _EVENTS.get(str(data.get("type")))
    if kind is None:
        return None
    fields: dict[str, Any] = {f.name: _tuples(data[f.name])
                              for f in dataclasses.fields(kind) if f.name in data}
    try:
        return kind(**fields)
    except TypeError:
        return None


def _tuples(value: object) -> object:
    # JSON has lists only; events carry tuples (they are frozen and hashable).
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
