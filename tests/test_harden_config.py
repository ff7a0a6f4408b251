"""The web setting's problem stops every use of the address; the home and its config stay
private; a full disk while the config is written leaves nothing behind; the last words in
English are said in French."""

from __future__ import annotations

import ast
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from daemon import config_edit
from daemon.bus import EventBus
from daemon.errors import ConfigError
from daemon.keys import SigningKey
from daemon.removable import windows
from daemon.send.base import Channel, SendError
from daemon.send.sender import Sender, SendRequest
from daemon.setup.connection import Outcome, check_connection
from daemon.web.client import WebClient
from daemon.web.credentials import BASIC, Credential, CredentialStore
from daemon.web.failures import Failure, WebError
from daemon.web.index import INDEX_NAME
from tests.faultserver import FAST, Fault, FaultServer, configure_web, file_keyring, keyring_env
from tests.helpers import DOSSIER, Home, make_home, small_disk
from tests.nginx import make_tls

# ---------------------------------------------------------------- the web setting's problem


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FaultServer]:
    """A web server on this computer that records every request it is sent."""
    root = tmp_path / "repo"
    root.mkdir()
    served = FaultServer(root).start()
    yield served
    served.stop()


def _sender(home: Home, tmp_path: Path) -> Sender:
    folder = tmp_path / "dossier"
    folder.mkdir()
    (folder / "grand-livre.txt").write_bytes(b"ecriture;512;100,00\n" * 100)
    config_edit.add_dossier(home.root / "config.toml", DOSSIER, "GAEC des Tilleuls",
                            str(folder))
    ctx = home.context()
    store = CredentialStore(file_keyring(tmp_path / "kr.cfg"))
    store.set(DOSSIER, Credential(BASIC, "pw", user="paul"))
    return Sender(ctx.config, ctx.paths, ctx.queue, EventBus(), credentials=store)


def test_a_refused_address_stops_a_web_send_before_any_request(
        home: Home, tmp_path: Path, server: FaultServer) -> None:
    configure_web(home, server.base_url.replace("127.0.0.1", "paul:pw@127.0.0.1"))
    sender = _sender(home, tmp_path)
    assert "passeur login" in sender.unavailable(DOSSIER, Channel.WEB)
    with pytest.raises(SendError) as refused:
        sender.send(SendRequest(DOSSIER, Channel.WEB))
    assert refused.value.code == "setting-invalid"
    assert "passeur login" in refused.value.text
    assert "pw@" not in refused.value.text
    assert server.seen == []


def test_a_ca_bundle_gone_since_the_start_is_a_sentence_of_the_web_send(
        home: Home, tmp_path: Path, server: FaultServer) -> None:
    bundle = make_tls(tmp_path / "tls").ca_cert
    configure_web(home, server.base_url, ca_bundle=bundle)
    sender = _sender(home, tmp_path)
    assert sender.config.web.problem == ""
    bundle.unlink()  # after the config was read: found at the send's first request
    with pytest.raises(SendError) as refused:
        sender.send(SendRequest(DOSSIER, Channel.WEB))
    assert refused.value.code == "ca-bundle-invalid"
    assert str(bundle) in refused.value.text
    assert "[sources.web] ca_bundle" in refused.value.text
    assert "inattendue" not in refused.value.text
    assert "n’existe pas" in refused.value.text or "n'existe pas" in refused.value.text
    assert server.seen == []


def _login(home: Home, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**home.env, **keyring_env(tmp_path / "keyring")}
    return subprocess.run([sys.executable, "-m", "daemon.cli", "login", DOSSIER, "--user",
                           "paul", "--password-stdin"], input="pw\n", env=env, text=True,
                          capture_output=True, timeout=60)


def test_login_does_not_try_a_refused_address(home: Home, tmp_path: Path,
                                              server: FaultServer) -> None:
    configure_web(home, server.base_url.replace("127.0.0.1", "paul:secret@127.0.0.1"))
    done = _login(home, tmp_path)
    said = done.stdout + done.stderr
    assert "Traceback" not in said
    assert done.returncode != 0
    assert "passeur login" in done.stderr
    assert "secret" not in said
    assert server.seen == []


def test_login_says_a_bad_ca_bundle(home: Home, tmp_path: Path, server: FaultServer) -> None:
    configure_web(home, server.base_url, ca_bundle=tmp_path / "absent.cer")
    done = _login(home, tmp_path)
    assert "Traceback" not in done.stdout + done.stderr
    assert done.returncode != 0
    assert "absent.cer" in done.stderr
    assert "sources.web" in done.stderr
    assert server.seen == []


def test_the_connection_test_says_a_bad_ca_bundle(tmp_path: Path, server: FaultServer) -> None:
    absent = tmp_path / "absent.cer"
    verdict = check_connection(server.base_url, DOSSIER, Credential(BASIC, "pw", user="paul"),
                               None, absent)
    assert verdict.outcome is Outcome.CERTIFICATE_NOT_TRUSTED
    assert str(absent) in verdict.message
    assert "certificat" in verdict.message
    assert server.seen == []


@pytest.mark.parametrize("address", [
    "paul:pw@127.0.0.1",  # a password in the address, even to this computer
])
def test_the_connection_test_refuses_an_address_the_config_would_refuse(
        server: FaultServer, address: str) -> None:
    url = server.base_url.replace("127.0.0.1", address)
    verdict = check_connection(url, DOSSIER, Credential(BASIC, "pw", user="paul"), None)
    assert verdict.outcome is Outcome.ADDRESS_REFUSED
    assert "passeur login" in verdict.message
    assert server.seen == []


def test_the_connection_test_sends_no_password_in_clear_to_another_computer() -> None:
    # Never contacted: without the rule, the test would look the name up and say so.
    verdict = check_connection("http://ferme.invalid/passeur/", DOSSIER,
                               Credential(BASIC, "pw", user="paul"), None)
    assert verdict.outcome is Outcome.ADDRESS_REFUSED
    assert "https://" in verdict.message


# ---------------------------------------------------------------- privacy


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_older_open_home_is_made_private_by_a_start_and_an_edit(home: Home) -> None:
    paths = home.context().paths
    folders = [home.root, paths.data, paths.spool, paths.staging, paths.quarantine,
               paths.trash, paths.logs]
    for folder in folders:  # as an older version left them
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    paths.config_file.chmod(0o644)
    assert home.passeur("queue").returncode == 0
    assert {str(f): _mode(f) for f in folders} == {str(f): 0o700 for f in folders}
    assert home.passeur("dossier", "add", "1234567", "EARL du Pré").returncode == 0
    assert _mode(paths.config_file) == 0o600


def test_a_new_config_is_private(tmp_path: Path) -> None:
    config = tmp_path / "neuf" / "config.toml"
    config_edit.ensure_config(config)
    assert _mode(config) == 0o600
    assert _mode(config.parent) == 0o700


# ---------------------------------------------------------------- a full disk


@pytest.fixture
def full_home(tmp_path: Path, signing_key: SigningKey) -> Iterator[Home]:
    """A home on a real, small file system (a 256 KiB tmpfs), filled up once it is set."""
    root = tmp_path / "petit"
    homes: list[Home] = []

    def set_up() -> None:
        homes.append(make_home(root, signing_key))
        homes[0].context().paths.ensure()

    with small_disk(root, set_up):
        yield homes[0]


def _left_beside_config(home: Home) -> list[str]:
    return sorted(p.name for p in home.root.iterdir()
                  if p.name not in ("config.toml", "filler", "inbox", "data", "logs"))


def test_a_full_disk_while_the_config_is_written_is_said_and_leaves_nothing(
        full_home: Home) -> None:
    before = (full_home.root / "config.toml").read_bytes()
    with pytest.raises(ConfigError) as refused:
        config_edit.add_dossier(full_home.root / "config.toml", "1234567", "EARL du Pré")
    assert "disque est plein" in refused.value.message()
    assert str(full_home.root / "config.toml") in refused.value.message()
    done = full_home.passeur("dossier", "add", "1234567", "EARL du Pré")
    said = done.stdout + done.stderr
    assert "Traceback" not in said
    assert "disque est plein" in said
    assert done.returncode != 0
    assert _left_beside_config(full_home) == []
    assert (full_home.root / "config.toml").read_bytes() == before


# ---------------------------------------------------------------- words in French


def test_an_interrupted_download_is_said_in_french(home: Home, tmp_path: Path,
                                                   server: FaultServer) -> None:
    (server.root / DOSSIER).mkdir()
    (server.root / DOSSIER / INDEX_NAME).write_bytes(b"{" + b" " * 200_000 + b"}")
    server.inject(INDEX_NAME, Fault("reset", after=1000))
    client = WebClient(server.base_url, CredentialStore(file_keyring(tmp_path / "kr.cfg")),
                       FAST)
    with pytest.raises(WebError) as failed:
        client.fetch_index(DOSSIER, None)
    client.close()
    assert failed.value.code is Failure.INTERRUPTED
    message = failed.value.message()
    assert INDEX_NAME in message
    assert "connection" not in message, message


def test_the_windows_drive_watch_logs_in_the_users_language() -> None:
    # The module runs on Windows only: each log line is checked where it is written, as a
    # message of the catalogue rather than a literal in English.
    tree = ast.parse(Path(windows.__file__).read_text("utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
             and node.func.value.id == "log"]
    assert calls
    for call in calls:
        said = call.args[0]
        assert isinstance(said, ast.Call), ast.unparse(call)
        assert isinstance(said.func, ast.Name), ast.unparse(call)
        assert said.func.id == "_", ast.unparse(call)


def test_the_tray_says_an_altered_spool_file_in_french(home: Home) -> None:
    from daemon.core import Core
    from tray.app import TrayFrontEnd

    ctx = home.context()
    update, later = home.update(), home.update()
    for offered in (update, later):
        ctx.intake.import_path(offered, "manual")
    spool = ctx.queue.spool_path(ctx.queue.pending()[0])
    data = bytearray(spool.read_bytes())
    data[len(data) // 2] ^= 0x01
    spool.chmod(0o600)
    spool.write_bytes(bytes(data))
    said: list[str] = []
    # The click's handler on a front end that keeps what it says.
    front = SimpleNamespace(ctx=ctx, core=Core(ctx), say=lambda text, *_: said.append(text))
    TrayFrontEnd._apply_queue_choices(front, [i.id for i in ctx.queue.pending()], [])  # type: ignore[arg-type]
    lines = said[0].splitlines()
    assert lines[0].startswith(f"{update.name} : non transmis"), lines
    assert lines[1].startswith(later.name), lines
    assert list(home.inbox.iterdir()) == []
