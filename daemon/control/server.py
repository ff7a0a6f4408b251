"""The service's end of the control channel: one thread listens, one thread per front end.

Each request calls the same `Core` method the tray calls, so that what the CLI does shows
in the tray at once and every event is published once, by the core. Only the user's own
processes reach it (see daemon.platform: a 0600 socket whose peer's uid is checked, or a
named pipe whose ACL admits only the user).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon import events as ev
from daemon.context import Context
from daemon.control.protocol import ProtocolError, decode, encode, event_to_json
from daemon.core import Core, ReceivingPaused
from daemon.i18n import _

log = logging.getLogger(__name__)

# A front end that says nothing for this long is gone (a request is one line).
IDLE_S = 300.0
# The events a front end follows while its request runs (progress, outcomes).
FOLLOWED: tuple[type[ev.Event], ...] = (
    ev.PollStarted, ev.UpdateFound, ev.DownloadProgress, ev.UpdateQueued, ev.UpdateRejected,
    ev.SourceFailed, ev.Offline, ev.BackOnline, ev.Delivered, ev.SendStarted,
    ev.SendProgress, ev.SendFinished, ev.SendFailed,
)
_numbers = itertools.count(1)

Emit = Callable[[ev.Event], None]


class RequestFailed(Exception):
    """A request that cannot be done: a stable code and the user's sentence."""

    def __init__(self, code: str, message: str, **detail: Any) -> None:
        self.code = code
        self.message = message
        self.detail = detail
        super().__init__(f"{code}: {message}")


class ControlServer:
    """Listens on this home's control endpoint and answers front ends."""

    def __init__(self, ctx: Context, core: Core) -> None:
        from daemon import platform

        self.ctx = ctx
        self.core = core
        self.endpoint = platform.control_endpoint(ctx.paths.data)
        self._listener: platform.Listener | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Open the endpoint (raises AddressInUse, OSError) and answer in the background."""
        from daemon import platform

        self._listener = platform.listen(self.endpoint)
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening; requests under way finish on their own threads."""
        if self._listener is not None:
            self._listener.close()
        if self._thread is not None:
            self._thread.join(5.0)

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while (conn := listener.accept()) is not None:
            threading.Thread(target=self._converse, args=(conn,), name="control-peer",
                             daemon=True).start()

    def _converse(self, conn: Any) -> None:
        lock = threading.Lock()

        def send(message: dict[str, Any]) -> None:
            with lock:
                conn.send_line(encode(message))

        try:
            while (line := conn.recv_line(IDLE_S)) is not None:
                self._answer(line, send)
        except (OSError, TimeoutError, ValueError) as exc:
            log.debug("control channel: peer gone (%s)", exc)
        finally:
            conn.close()

    def _answer(self, line: bytes, send: Callable[[dict[str, Any]], None]) -> None:
        try:
            request = decode(line)
        except ProtocolError as exc:
            send({"id": None, "error": {"code": "protocol", "message": str(exc)}})
            return
        request_id = request.get("id")
        params = request.get("params") or {}
        handler = HANDLERS.get(str(request.get("method")))
        if handler is None or not isinstance(params, dict):
            send({"id": request_id, "error": {"code": "unknown-method",
                                              "message": str(request.get("method"))}})
            return
        follower = f"control-{next(_numbers)}"
        gone = threading.Event()  # the front end left: a send under way stops

        def emit(event: ev.Event) -> None:
            try:
                send({"id": request_id, "event": event_to_json(event)})
            except OSError:
                gone.set()

        if request.get("follow"):
            self.ctx.bus.subscribe(follower, emit, *FOLLOWED)
        try:
            answer: dict[str, Any] = {"result": handler(self, params, gone)}
        except RequestFailed as failure:
            answer = {"error": {"code": failure.code, "message": failure.message,
                                **failure.detail}}
        except Exception as exc:
            log.exception("control request %s failed", request.get("method"))
            answer = {"error": {"code": "internal", "message": _(
                "passeur met an unexpected problem ({reason}); see the log").format(
                    reason=type(exc).__name__)}}
        finally:
            # Events of this request reach the front end before its answer.
            self.ctx.bus.unsubscribe(follower)
        send({"id": request_id, **answer})

    # ------------------------------------------------------------ the methods

    def status(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """The service's status."""
        return self.core.status().to_json()

    def receive(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """*Recevoir*, waiting for the web endpoint's answer."""
        from daemon.core import poll_report_json

        dossiers = params.get("dossiers")
        try:
            report = self.core.receive(dossiers if isinstance(dossiers, list) else None)
        except ReceivingPaused as paused:
            raise RequestFailed("paused", "", **paused.state.to_json()) from None
        return poll_report_json(report)

    def import_files(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """Verify and queue files given by their absolute paths."""
        paths = [Path(str(p)) for p in params.get("paths", [])]
        return [one.to_json() for one in self.core.import_files(paths)]

    def process(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """*Traiter*."""
        from daemon.delivery import InboxNotConfigured

        ids = params.get("ids")
        try:
            handed = self.core.process(None if ids is None else [int(i) for i in ids])
        except InboxNotConfigured:
            raise RequestFailed("inbox-not-configured", "") from None
        return [one.to_json() for one in handed]

    def delete(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """*Supprimer*."""
        return [one.to_json() for one in self.core.delete(int(i) for i in params["ids"])]

    def pause(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """Pause receiving (for `seconds`, or until resumed)."""
        seconds = params.get("seconds")
        return self.core.pause(None if seconds is None else float(seconds)).to_json()

    def resume(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """Receive again."""
        return self.core.resume().to_json()

    def send(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """Send a dossier to the accountant; it stops if the front end leaves (Ctrl-C)."""
        from daemon.send.base import SendError
        from daemon.send.sender import SendRequest

        try:
            return self.core.send(SendRequest.from_json(params), gone).to_json()
        except SendError as error:
            raise RequestFailed(f"send:{error.code}", error.message()) from None

    def send_options(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """What the sending wizard offers for a dossier now (keys, application open…)."""
        from daemon.send.base import SendError

        try:
            return self.core.send_options(str(params["dossier"])).to_json()
        except SendError as error:
            raise RequestFailed(f"send:{error.code}", error.message()) from None

    def send_plan(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """What a send of a dossier would carry now: documents, bytes, deleted."""
        from daemon.send.base import Documents, SendError

        try:
            plan = self.core.send_plan(str(params["dossier"]),
                                       Documents(params.get("documents", "all")))
        except SendError as error:
            raise RequestFailed(f"send:{error.code}", error.message()) from None
        except ValueError as exc:
            raise RequestFailed("protocol", str(exc)) from None
        return {"documents": plan.documents, "bytes": plan.bytes,
                "deleted": list(plan.deleted), "unchanged": plan.unchanged,
                "packed_bytes": plan.packed_bytes}

    def close_app(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """Ask the accounting application to close for a send (never forced)."""
        return {"still_running": list(self.core.close_app_for_send())}

    def show(self, params: dict[str, Any], gone: threading.Event) -> Any:
        """A second `passeur run`: the front end shows itself (menu or status)."""
        self.ctx.bus.publish(ev.ShowRequested())
        return self.core.status().to_json()


Handler = Callable[[ControlServer, dict[str, Any], threading.Event], Any]
HANDLERS: dict[str, Handler] = {
    "status": ControlServer.status,
    "receive": ControlServer.receive,
    "import": ControlServer.import_files,
    "process": ControlServer.process,
    "delete": ControlServer.delete,
    "pause": ControlServer.pause,
    "resume": ControlServer.resume,
    "send": ControlServer.send,
    "send-options": ControlServer.send_options,
    "send-plan": ControlServer.send_plan,
    "close-app": ControlServer.close_app,
    "show": ControlServer.show,
}
