"""`passeur demo`: the whole receive flow on this machine, in a temporary home."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from daemon import config_edit
from daemon.context import Context
from daemon.delivery import Result
from daemon.exchange import Source, pack_exchange
from daemon.i18n import _
from daemon.keys import SigningKey
from daemon.manifest import Manifest
from daemon.naming import Kind
from daemon.presentation import describe_activity, describe_exchange

DOSSIER, NAME = "8502182", "GAEC LE GUYON"


def _say(text: str = "") -> None:
    print(text, flush=True)


def _configure(root: Path, key: SigningKey) -> Context:
    inbox = root / "isacompta" / "inbox"
    inbox.mkdir(parents=True)
    config = root / "config.toml"
    config_edit.ensure_config(config)
    text = config.read_text("utf-8").replace(
        '# process_names = ["isacompta"]', 'process_names = ["demo_app.py"]'
    ).replace('# inbox = "~/Isacompta/echanges"', f'inbox = "{inbox.as_posix()}"')
    config.write_text(text, "utf-8")
    config_edit.add_dossier(config, DOSSIER, NAME)
    config_edit.add_trusted_key(config, key.public, _("Accountant (demo)"))
    return Context(root)


def _pack(root: Path, key: SigningKey, sequence: int, etalon: bool) -> Path:
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
    return pack_exchange(root / "downloads", key, manifest,
                         [Source(f"situations/{content.name}", content)])


def run_demo(keep: bool = False) -> int:
    """Run the demo; return an exit code."""
    root = Path(tempfile.mkdtemp(prefix="passeur-demo-"))
    app: subprocess.Popen[bytes] | None = None
    try:
        _say(_("passeur demo in {folder}").format(folder=root))
        key = SigningKey.generate()
        ctx = _configure(root, key)
        _say(_("1. The accountant signs two updates; the second carries dossiers étalons."))
        files = [_pack(root, key, 1, False), _pack(root, key, 2, True)]
        for line in describe_exchange(_verify(ctx, files[1])):
            _say("   " + line)
        _say(_("2. passeur verifies and queues them."))
        for path in files:
            result = ctx.intake.import_path(path, "demo")
            _say(f"   {path.name}: {result.outcome}")
        inbox = ctx.config.app.inbox
        assert inbox is not None
        _say(_("3. The accounting application is open; Traiter:"))
        app = subprocess.Popen([sys.executable, str(Path(__file__).with_name("demo_app.py")),
                                str(inbox)])
        time.sleep(0.5)
        _report(ctx)
        _say(_("4. The user closes the application; the waiting update is handed over:"))
        app.terminate()
        app.wait(10)
        _report(ctx)
        _say(_("5. Activity log:"))
        for entry in reversed(ctx.queue.history(20)):
            _say("   " + describe_activity(entry.action, entry.detail))
        return 0
    finally:
        if app is not None and app.poll() is None:
            app.kill()
        if keep:
            _say(_("Kept: {folder}").format(folder=root))
        else:
            shutil.rmtree(root, ignore_errors=True)


def _verify(ctx: Context, path: Path) -> Manifest:
    from daemon.exchange import verify_exchange

    return verify_exchange(path, ctx.config.keyring(), path.name)


def _report(ctx: Context) -> None:
    words = {
        Result.DELIVERED: _("handed to the application"),
        Result.RESTART_REQUIRED: _("contains dossiers étalons: waits for a restart"),
        Result.HELD: _("waits for the previous update"),
        Result.NOT_WAITING: _("not waiting any more"),
    }
    for outcome in ctx.delivery.process():
        _say(f"   {outcome.item.name}: {words[outcome.result]}")
