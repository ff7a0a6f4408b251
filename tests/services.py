"""`passeur run --headless` as a real process for the tests, never left running."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import Home

if TYPE_CHECKING:
    from tests.nginx import Nginx

_STARTED: list[subprocess.Popen[str]] = []


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll `condition` until it holds or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(autouse=True)
def _no_service_left_behind() -> Iterator[None]:
    """A failed assertion must not leave a service running for the rest of the suite."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=15)


def log_text(home: Home) -> str:
    """Return the service's log so far."""
    log = home.root / "logs" / "passeur.log"
    return log.read_text("utf-8") if log.exists() else ""


def what_it_said(process: subprocess.Popen[str], home: Home) -> str:
    """Return the service's log, and its exit code and stderr if it has ended: what a
    failing test shows."""
    said = log_text(home)
    if process.poll() is not None:
        _out, err = process.communicate(timeout=15)
        said += f"\n--- ended with {process.returncode}; stderr ---\n{err}"
    return said


def start_service(home: Home, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the service on `home` and wait until it says it started."""
    process = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run", "--headless"], env=env or home.env,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _STARTED.append(process)
    before = log_text(home).count("passeur démarré")
    assert wait_for(lambda: log_text(home).count("passeur démarré") > before), (
        process.poll(), log_text(home))
    return process


def stop(process: subprocess.Popen[str]) -> tuple[int, str]:
    """Stop the service with SIGTERM; return its exit code and what it wrote on stderr."""
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=15)
    return process.returncode, err


@contextlib.contextmanager
def served_home(home: Home, folder: Path) -> Iterator[tuple[Nginx, dict[str, str], Path]]:
    """Serve the dossier on a real nginx (user gaec, password secret) and configure `home`
    to receive from it; yield the server, the environment (with the password in a keyring
    of its own) and the firm's key file for `passeur publish`."""
    from tests.faultserver import configure_web, keyring_env
    from tests.nginx import Nginx

    server = Nginx(folder / "nginx")
    server.add_user("8502182", "gaec", "secret")
    server.start()
    try:
        configure_web(home, server.base_url)
        env = home.env | keyring_env(folder / "keyring")
        login = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "login", "8502182", "--user", "gaec",
             "--password-stdin", "--no-check"],
            input="secret\n", env=env, text=True, capture_output=True, timeout=30, check=False)
        assert login.returncode == 0, login.stderr
        key_file = folder / "firm.pem"
        home.key.save(key_file)
        yield server, env, key_file
    finally:
        server.stop()
