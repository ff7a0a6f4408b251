"""The CLI's end of the control channel: the core API of the running service, over its
local endpoint. Failures come back as the same exceptions the local core raises."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from daemon import events as ev
from daemon.config import Paths
from daemon.control.protocol import ProtocolError, decode, encode, event_from_json
from daemon.core import Deleted, Handed, Imported, ReceivingPaused
from daemon.pause import PauseState
from daemon.status import Status

CONNECT_TIMEOUT_S = 2.0
# The longest a request may take: a send of a large dossier over a slow line is the worst.
ANSWER_TIMEOUT_S: float | None = None

OnEvent = Callable[[ev.Event], None]


class RemoteError(Exception):
    """The service refused or failed a request; `message` is the user's sentence."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class RemoteCore:
    """The running service's core API, for a front end in another process."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._ids = itertools.count(1)

    @classmethod
    def connect(cls, paths: Paths, timeout: float = CONNECT_TIMEOUT_S) -> RemoteCore | None:
        """Reach the service of this home; None when none runs (or it does not answer)."""
        return cls.connect_to(paths.data, timeout)

    @classmethod
    def connect_to(cls, data: Path, timeout: float = CONNECT_TIMEOUT_S) -> RemoteCore | None:
        """Reach the service whose data folder is `data` (a window of its tray)."""
        from daemon import platform

        try:
            conn = platform.connect(platform.control_endpoint(data), timeout)
        except (OSError, TimeoutError):
            return None
        return None if conn is None else cls(conn)

    def close(self) -> None:
        """Leave the channel."""
        self._conn.close()

    def call(self, method: str, params: dict[str, Any] | None = None,
             on_event: OnEvent | None = None) -> Any:
        """Send one request and return its result; events of it go to `on_event`."""
        request_id = next(self._ids)
        self._conn.send_line(encode({"id": request_id, "method": method,
                                     "params": params or {}, "follow": on_event is not None}))
        while True:
            line = self._conn.recv_line(ANSWER_TIMEOUT_S)
            if line is None:
                raise RemoteError("gone", "")
            try:
                message = decode(line)
            except ProtocolError as exc:
                raise RemoteError("protocol", str(exc)) from None
            if message.get("id") != request_id:
                continue
            if "event" in message:
                event = event_from_json(message["event"])
                if event is not None and on_event is not None:
                    on_event(event)
                continue
            if "error" in message:
                raise _failure(message["error"])
            return message.get("result")

    # ------------------------------------------------------------ the core API

    def status(self) -> Status:
        """The service's status."""
        return Status.from_json(self.call("status"))

    def receive(self, dossiers: Sequence[str] | None = None,
                on_event: OnEvent | None = None) -> dict[str, Any]:
        """*Recevoir*, waiting for the web endpoint's answer (as `receive --json` shows)."""
        result: dict[str, Any] = self.call("receive", {"dossiers": dossiers}, on_event)
        return result

    def import_files(self, paths: Iterable[Path]) -> list[Imported]:
        """Verify and queue files (their paths are made absolute for the service)."""
        result = self.call("import", {"paths": [str(Path(p).absolute()) for p in paths]})
        return [Imported.from_json(one) for one in result]

    def process(self, ids: Sequence[int] | None = None) -> list[Handed]:
        """*Traiter*."""
        result = self.call("process", {"ids": None if ids is None else list(ids)})
        return [Handed.from_json(one) for one in result]

    def delete(self, ids: Iterable[int]) -> list[Deleted]:
        """*Supprimer*."""
        return [Deleted.from_json(one) for one in self.call("delete", {"ids": list(ids)})]

    def pause(self, seconds: float | None = None) -> PauseState:
        """Pause receiving."""
        return PauseState.from_json(self.call("pause", {"seconds": seconds}))

    def resume(self) -> PauseState:
        """Receive again."""
        return PauseState.from_json(self.call("resume"))

    def send(self, request: dict[str, Any], on_event: OnEvent | None = None) -> dict[str, Any]:
        """Send a dossier (the request and the report as JSON)."""
        result: dict[str, Any] = self.call("send", request, on_event)
        return result

    def send_options(self, dossier: str) -> dict[str, Any]:
        """What the sending wizard offers for `dossier` (daemon.send.options as JSON)."""
        result: dict[str, Any] = self.call("send-options", {"dossier": dossier})
        return result

    def send_plan(self, dossier: str, documents: str) -> dict[str, Any]:
        """What a send would carry: documents, bytes, deleted, unchanged."""
        result: dict[str, Any] = self.call("send-plan", {"dossier": dossier,
                                                         "documents": documents})
        return result

    def close_app(self) -> list[int]:
        """Ask the accounting application to close for a send; return who still runs."""
        return [int(pid) for pid in self.call("close-app")["still_running"]]

    def show(self) -> Status:
        """Ask the service to show itself; return its status."""
        return Status.from_json(self.call("show"))


def _failure(error: object) -> Exception:
    """Turn an error answer into the exception the local core would have raised."""
    if not isinstance(error, dict):
        return RemoteError("protocol", str(error))
    code, message = str(error.get("code")), str(error.get("message", ""))
    if code == "inbox-not-configured":
        from daemon.delivery import InboxNotConfigured

        return InboxNotConfigured()
    if code == "paused":
        return ReceivingPaused(PauseState.from_json({"paused": True,
                                                     "until": error.get("until")}))
    if code.startswith("send:"):
        from daemon.send.base import SendError

        return SendError(code.removeprefix("send:"), message)
    return RemoteError(code, message)
