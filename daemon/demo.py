"""`passeur demo`: the whole receive flow on this machine, in a temporary home.

Everything a newcomer needs is built here and removed at the end: a signing key for the
accountant's firm (trusted by the temporary home), the firm's repository
(`daemon.web.publish.Repository`) served on 127.0.0.1 by a small `http.server` thread, a
stand-in accounting application (`daemon/demo_app.py`) that takes its inbox when it
starts, and the real service, started exactly as `passeur run` starts it (with the tray
icon when a display exists). An "accountant" thread then publishes a normal update and,
a few seconds later, one carrying *dossiers étalons*, and asks the web source to look at
once each time. The service receives both; the second waits for the application to be
restarted (with the tray: the restart prompt; headless: the demo closes the application
itself, and the service hands the updates over).

Nothing here imports GUI code: the tray is started by `daemon.runner.serve`, lazily.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import tomlkit

from daemon import config_edit
from daemon import events as ev
from daemon.context import Context
from daemon.exchange import Source, pack_exchange
from daemon.fsutil import atomic_writer
from daemon.i18n import _, ngettext
from daemon.keys import SigningKey
from daemon.logs import describe_event
from daemon.manifest import Manifest
from daemon.naming import Kind
from daemon.presentation import describe_activity
from daemon.service import Service
from daemon.web.publish import Repository

log = logging.getLogger(__name__)

DOSSIER, NAME = "8502182", "GAEC LE GUYON"
APP_NAME = "Isacompta"
DEMO_APP = Path(__file__).with_name("demo_app.py")
# Pauses of the accountant: long enough with the tray to read the first notification and
# see the badge before the étalon update comes; short headless, where the text tells it.
TRAY_PAUSES_S = (4.0, 8.0)
HEADLESS_PAUSES_S = (2.0, 3.0)
# The headless demo ends by itself: if a step does not come within this time (a broken
# machine), it says so and stops.
HEADLESS_DEADLINE_S = 45.0
CLOSE_WAIT_S = 10.0


_SAY_LOCK = threading.Lock()


def _say(text: str = "") -> None:
    # One write per line, one writer at a time: the service's events and the story are
    # told from different threads. A terminal closed under the demo (or `| head`) must not
    # stop it half-way: the story goes on, and the clean-up at the end still runs.
    with _SAY_LOCK, contextlib.suppress(OSError):
        sys.stdout.write(text + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- the accountant's site


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the repository folder and takes uploads into its `upload/` folders (a plain
    `PUT`, as nginx's `dav_methods PUT` does); requests go to the debug log."""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("demo site: " + format, *args)

    def do_PUT(self) -> None:
        """Store the body under the path, only inside a dossier's `upload/` folder."""
        target = self._upload_target()
        length = int(self.headers.get("Content-Length") or -1)
        if target is None or length < 0:
            self.send_error(403 if target is None else 411)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_writer(target) as out:
            left = length
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    raise ConnectionError("the upload was cut")
                out.write(chunk)
                left -= len(chunk)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _upload_target(self) -> Path | None:
        root = Path(self.directory).resolve()
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if len(parts) < 3 or parts[1] != "upload" or any(p in (".", "..") for p in parts):
            return None
        target = root.joinpath(*parts).resolve()
        return target if target.is_relative_to(root / parts[0] / "upload") else None


class LocalSite:
    """A static web server on 127.0.0.1 (a free port) for the accountant's repository."""

    def __init__(self, folder: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="demo-site",
                                       daemon=True)

    @property
    def url(self) -> str:
        """Return the site's address."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def start(self) -> None:
        """Serve on a background thread."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def pack_update(root: Path, key: SigningKey, sequence: int, etalon: bool) -> Path:
    """Sign an update for the demo's dossier, as the accountant's software would."""
    content = root / "content" / f"ecritures-{sequence}.xml"
    content.parent.mkdir(exist_ok=True)
    content.write_text(f"<ecritures sequence='{sequence}'/>", "utf-8")
    manifest = Manifest(
        kind=Kind.UPDATE, dossier=DOSSIER, dossier_name=NAME,
        generated_at=datetime.now().astimezone().replace(microsecond=0)
        + timedelta(seconds=sequence),
        fiscal_year_start=date(date.today().year, 1, 1),
        fiscal_year_end=date(date.today().year, 12, 31),
        sequence=sequence, key_id="", files=(), etalon=etalon,
        modules={"situations": (f"situations/{content.name}",)},
    )
    return pack_exchange(root / "cabinet" / "sortie", key, manifest,
                         [Source(f"situations/{content.name}", content)])


# ---------------------------------------------------------------- the farmer's computer


def configure(root: Path, key: SigningKey, site_url: str) -> Context:
    """Write the temporary home's configuration; return its composition root.

    The stand-in application is a copy of demo_app.py under a name of its own, so that
    the process search (and "Relancer maintenant") can only ever find this demo's copy.
    """
    inbox = root / "isacompta" / "echanges"
    inbox.mkdir(parents=True)
    app = root / "isacompta" / f"isacompta_demo_{secrets.token_hex(4)}.py"
    shutil.copy(DEMO_APP, app)
    config = root / "config.toml"
    config_edit.ensure_config(config)
    document = tomlkit.parse(config.read_text("utf-8"))
    document["app"] = {
        "name": APP_NAME,
        "process_names": [app.name],
        "command": [sys.executable, str(app), str(inbox)],
        "inbox": str(inbox),
    }
    document["sources"] = {
        "web": {"url": site_url, "poll_minutes": 1},
        # Only the demo's site: a USB key or the Downloads folder have no part in it.
        "removable": {"enabled": False},
        "folders": {"enabled": False},
    }
    document["restart"] = {"close_timeout_seconds": int(CLOSE_WAIT_S)}
    config.write_text(tomlkit.dumps(document), "utf-8")
    config_edit.add_dossier(config, DOSSIER, NAME, str(make_dossier_folder(root)))
    config_edit.add_trusted_key(config, key.public, _("Accountant (demo)"))
    return Context(root)


def make_dossier_folder(root: Path) -> Path:
    """Write the stand-in application's dossier: the books and two associated documents."""
    folder = root / "isacompta" / "dossiers" / DOSSIER
    (folder / "pieces").mkdir(parents=True)
    (folder / "ecritures.xml").write_text(
        "<ecritures>" + "".join(f"<e n='{n}' compte='6061' montant='{n * 7 % 500}.00'/>"
                                for n in range(1, 400)) + "</ecritures>", "utf-8")
    (folder / "pieces" / "facture-engrais.pdf").write_bytes(
        b"%PDF-1.4\n% demo\n" + secrets.token_bytes(48 << 10) + b"\n%%EOF\n")
    (folder / "pieces" / "releve-banque.csv").write_text(
        "date;libelle;montant\n" + "".join(f"2020-10-{d:02d};virement;{d * 13}.50\n"
                                           for d in range(1, 29)), "utf-8")
    return folder


def _use_no_keyring() -> None:
    """The demo's site asks for no password: never touch (or need) the user's keyring."""
    import keyring
    from keyring.backends import null

    keyring.set_keyring(null.Keyring())  # type: ignore[no-untyped-call]  # untyped package


def _bypass_proxies() -> None:
    """The demo's site is on this machine: a configured HTTP proxy must not be asked."""
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h]
        os.environ[name] = ",".join([*hosts, "127.0.0.1", "localhost"])


class Narrator:
    """Prints the service's events as the log words them, and notes the steps reached."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.held = threading.Event()
        self.handed_over = threading.Event()
        self.sent = threading.Event()
        self.receipt = threading.Event()
        self.on_held: Callable[[], None] = lambda: None
        self.on_handed_over: Callable[[], None] = lambda: None
        self._held_ids: set[int] = set()
        self._delivered: set[int] = set()
        self._released = False

    def __call__(self, event: ev.Event) -> None:
        """Bus subscriber."""
        text = describe_event(event)
        if text is not None:
            _say(f"   {time.strftime('%H:%M:%S', time.localtime(event.at))}  {text}")
        match event:
            case ev.ServiceStarted():
                self.ready.set()
            case ev.RestartRequired(item_ids=()):
                self._released = self.held.is_set()
            case ev.RestartRequired(item_ids=ids):
                self._held_ids |= set(ids)
                if not self.held.is_set():
                    self.on_held()  # said before the story goes on
                    self.held.set()
            case ev.Delivered(item_id=item_id):
                self._delivered.add(item_id)
            case ev.SendFinished():
                self.sent.set()
            case ev.ReceiptReceived():
                self.receipt.set()
        # Handed over: nothing held any more, and what was held reached the inbox. (After
        # "Relancer maintenant" the tray says Delivered once the application started again,
        # which may be after the service saw that nothing is held any more.)
        if (self._released and self._held_ids <= self._delivered
                and not self.handed_over.is_set()):
            self.on_handed_over()
            self.handed_over.set()


class Demo:
    """One run of the demo: the temporary home, the site, the application, the service."""

    def __init__(self, root: Path, with_tray: bool) -> None:
        self.root = root
        self.with_tray = with_tray
        self.key = SigningKey.generate()
        self.repo = Repository(root / "cabinet" / "echanges", self.key)
        self.site = LocalSite(self.repo.root)
        self.narrator = Narrator()
        self.stopping = threading.Event()
        self.completed = False
        self.ctx: Context | None = None
        self.service: Service | None = None

    # ------------------------------------------------------------ setting up

    def prepare(self) -> Service:
        """Build everything up to the service (not started); say each step."""
        from daemon.restart import launch
        from daemon.service import build_service

        _say(_("1. The accountant's firm has a signing key; this computer trusts it."))
        self.repo.refresh(DOSSIER)  # an empty signed index: nothing to receive yet
        self.site.start()
        _say(_("2. The accountant's exchange site is served on {url} (dossier {number}).")
             .format(url=self.site.url, number=DOSSIER))
        ctx = self.ctx = configure(self.root, self.key, self.site.url)
        launch(ctx.config.app.command)
        _say(_("3. {app} (a stand-in accounting application) is open; it takes the updates "
               "of its inbox each time it starts.").format(app=APP_NAME))
        _use_no_keyring()
        _bypass_proxies()
        service = self.service = build_service(ctx)
        self.narrator.on_held = self._held
        self.narrator.on_handed_over = self._handed_over
        ctx.bus.subscribe("demo", self.narrator)
        if self.with_tray:
            _say(_("4. passeur starts with its icon in the notification area. To quit: "
                   "\"{quit}\" in the icon's menu, or Ctrl-C here.").format(quit=_("Quit")))
        else:
            _say(_("4. passeur starts without its icon (no display); Ctrl-C stops it."))
        return service

    # ------------------------------------------------------------ the story

    def accountant(self) -> None:
        """Publish the two updates a few seconds apart; headless, also play the user."""
        try:
            self._story()
        except Exception:
            log.exception("the demo failed")
            self._stop_service()

    def _story(self) -> None:
        first, second = TRAY_PAUSES_S if self.with_tray else HEADLESS_PAUSES_S
        deadline = time.monotonic() + HEADLESS_DEADLINE_S
        if not self._wait(self.narrator.ready, deadline, _("the service did not start")):
            return
        if self.stopping.wait(first):
            return
        self._publish(1, etalon=False)
        if self.stopping.wait(second):
            return
        self._publish(2, etalon=True)
        if not self.with_tray:
            if not self._wait(self.narrator.held, deadline,
                              _("the étalon update was not held for a restart")):
                return
            self._close_application()
        # With the tray the user answers the prompt, and may take their time.
        if not self._wait(self.narrator.handed_over, deadline,
                          _("the updates were not handed over")):
            return
        if self._send_and_collect(deadline):
            self.completed = True
            if not self.with_tray:
                self._stop_service()

    def _send_and_collect(self, deadline: float) -> bool:
        """The sending half: the farmer sends the dossier by web, the firm collects it, and
        its receipt comes back on the next look at the site."""
        from daemon.send.base import Channel, SendError
        from daemon.send.sender import SendRequest
        from daemon.web.collect import collect

        assert self.service is not None
        assert self.ctx is not None
        if self.stopping.wait(4.0 if self.with_tray else 0.5):
            return False
        if self.ctx.delivery.watcher.is_running():
            _say("   " + _("To send the dossier, {app} is closed first (a dossier is never "
                          "packed while it may be writing it):").format(app=APP_NAME))
            self._close_application()
            self._wait_until_closed()
        _say(_("9. The farmer sends dossier {number} to the accountant by web "
               "synchronisation, with all the documents:").format(number=DOSSIER))
        try:
            sent = self.service.core.send(SendRequest(
                DOSSIER, Channel.WEB, objective=self.ctx.config.send.objective_choices()[0],
                comments=_("Demonstration dossier")))
        except SendError as error:
            _say(_("The demo stops: {what}.").format(what=error.message()))
            self._stop_service()
            return False
        self.narrator.sent.wait(2.0)  # its line in the story comes first
        _say("   " + _("The report (rapport):"))
        for line in sent.lines():
            _say("      " + line)
        report = collect(self.repo.root, self.root / "cabinet" / "entree", self.key)
        count = len(report.outcomes)
        _say(ngettext("10. The accountant collects it: {n} dossier checked and put in the "
                      "firm's inbox; a signed receipt is published.",
                      "10. The accountant collects them: {n} dossiers checked and put in the "
                      "firm's inbox; signed receipts are published.", count).format(n=count))
        for source in self.service.sources:
            source.poll_now()  # the farmer's passeur reads the receipt at its next look
        if not self._wait(self.narrator.receipt, deadline + 30,
                          _("the accountant's receipt did not come back")):
            return False
        _say(_("11. The report of the send now says that the accountant received it."))
        if self.with_tray:
            _say(_("To quit: \"{quit}\" in the icon's menu, or Ctrl-C here.").format(
                quit=_("Quit")))
        return True

    def _wait_until_closed(self) -> None:
        from daemon.restart import wait_for_exit

        assert self.ctx is not None
        wait_for_exit(self.ctx.delivery.watcher.running_pids(), CLOSE_WAIT_S)

    def _wait(self, step: threading.Event, deadline: float, missing: str) -> bool:
        """Wait for a step of the story (headless: until the deadline); False to stop."""
        while not step.is_set():
            if self.stopping.is_set():
                return False
            if time.monotonic() >= deadline and not self.with_tray:
                _say(_("The demo stops: {what}.").format(what=missing))
                self._stop_service()
                return False
            step.wait(0.5)  # and look at `stopping` again (Quitter, Ctrl-C)
        return True

    def _publish(self, sequence: int, etalon: bool) -> None:
        path = pack_update(self.root, self.key, sequence, etalon)
        self.repo.publish(path)
        if etalon:
            _say(_("6. The accountant publishes an update carrying dossiers étalons: "
                   "{file}").format(file=path.name))
        else:
            _say(_("5. The accountant publishes an update: {file}").format(file=path.name))
        assert self.service is not None
        for source in self.service.sources:
            source.poll_now()  # Recevoir: no need to wait for the next poll

    def _held(self) -> None:
        if self.with_tray:
            _say(_("7. {app} is open, so the étalon update waits. A window asks to restart "
                   "{app}: choose \"{now}\" (or \"{later}\").").format(
                       app=APP_NAME, now=_("Restart now"), later=_("Later")))
        else:
            _say(_("7. {app} is open, so the étalon update waits: {app} must be restarted "
                   "for it to be integrated.").format(app=APP_NAME))

    def _handed_over(self) -> None:
        if self.with_tray:
            _say(_("8. passeur handed both updates to {app} as soon as it was closed.").format(
                app=APP_NAME))
        else:
            _say(_("8. {app} is closed: passeur handed both updates to it; it integrates "
                   "them when it starts again.").format(app=APP_NAME))

    def _close_application(self) -> None:
        from daemon.restart import ask_to_close

        _say("   " + _("The demo closes {app} itself, as the user would:").format(
            app=APP_NAME))
        assert self.ctx is not None
        for pid in self.ctx.delivery.watcher.running_pids():
            with contextlib.suppress(ProcessLookupError):
                ask_to_close(pid)

    def _stop_service(self) -> None:
        if self.service is not None:
            self.service.stop()

    # ------------------------------------------------------------ the end

    def finish(self) -> None:
        """Stop the story, the application and the site; print the journal."""
        import psutil

        from daemon.restart import ask_to_close, wait_for_exit

        self.stopping.set()
        ctx = self.ctx
        if ctx is not None:
            # The stand-in is the demo's own (a name of its own), started again or not: it
            # does not outlive the demo.
            pids = ctx.delivery.watcher.running_pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    ask_to_close(pid)
            for pid in wait_for_exit(pids, CLOSE_WAIT_S):
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).kill()
        self.site.stop()
        if ctx is not None:
            _say(_("Journal:"))
            for entry in reversed(ctx.queue.history(20)):
                _say("   " + describe_activity(entry.action, entry.detail))
            ctx.queue.close()


def run_demo(keep: bool = False, headless: bool = False) -> int:
    """Run the demo; return an exit code."""
    from daemon.logs import setup_logging
    from daemon.platform import has_display
    from daemon.runner import serve

    with_tray = not headless and has_display()
    root = Path(tempfile.mkdtemp(prefix="passeur-demo-"))
    demo = Demo(root, with_tray)
    code = 1
    try:
        _say(_("passeur demo in {folder}").format(folder=root))
        if not headless and not with_tray:
            _say(_("No display: the demo runs without the tray icon."))
        service = demo.prepare()
        assert demo.ctx is not None
        # The log file keeps everything (--keep); the terminal gets the story, and warnings.
        setup_logging(demo.ctx.paths.logs, console_level=logging.WARNING)
        story = threading.Thread(target=demo.accountant, name="demo-accountant", daemon=True)
        story.start()
        code = serve(demo.ctx, service, with_tray)
        if not with_tray and not demo.completed:
            code = 1
    finally:
        try:
            demo.finish()
        finally:
            root_logger = logging.getLogger()
            for handler in root_logger.handlers[:]:  # the log file is in the temporary home
                handler.close()
                root_logger.removeHandler(handler)
            if keep:
                _say(_("Kept: {folder}").format(folder=root))
            else:
                shutil.rmtree(root, ignore_errors=True)
                _say(_("Temporary folder removed."))
    return code
