"""The one-file executable that packaging/passeur.spec builds: it runs, in French, alone."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Home
from tests.services import log_text, wait_for

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "packaging" / "passeur.spec"


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the executable once for this module's tests (about a minute and a half)."""
    build = tmp_path_factory.mktemp("pyinstaller")
    pyinstaller = Path(sys.executable).with_name("pyinstaller")
    assert pyinstaller.exists(), "pyinstaller is missing: run tests/run.sh (test extras)"
    result = subprocess.run(
        [str(pyinstaller), "--noconfirm", "--log-level", "WARN",
         "--distpath", str(build / "dist"), "--workpath", str(build / "work"), str(SPEC)],
        cwd=build, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    executable = build / "dist" / "passeur"
    assert executable.is_file()
    return executable


def _alone(tmp_path: Path) -> dict[str, str]:
    """An environment without the venv or the source tree: only what the file carries."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "fr_FR.UTF-8",
            "XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_RUNTIME_DIR": _runtime(tmp_path)}


def _runtime(tmp_path: Path) -> str:
    folder = tmp_path / "runtime"
    folder.mkdir(mode=0o700, exist_ok=True)
    return str(folder)


def _run(executable: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(executable), *args], env=_alone(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_frozen_version_and_queue_in_french(frozen: Path, tmp_path: Path, home: Home) -> None:
    result = _run(frozen, tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("passeur ")

    # The queue of a real home, with an update waiting: the French catalogue is inside.
    update = home.update()
    intake = _run(frozen, tmp_path, "--home", str(home.root), "import", str(update))
    assert intake.returncode == 0, intake.stdout + intake.stderr
    queue = _run(frozen, tmp_path, "--home", str(home.root), "queue")
    assert queue.returncode == 0, queue.stderr
    assert "8502182" in queue.stdout
    empty = tmp_path / "empty"
    result = _run(frozen, tmp_path, "--home", str(empty), "queue")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Aucune mise à jour en attente d'intégration"
    usage = _run(frozen, tmp_path, "--help")
    assert usage.stdout.startswith("utilisation : passeur")


@pytest.mark.slow
def test_frozen_autostart_names_the_executable(frozen: Path, tmp_path: Path,
                                               home: Home) -> None:
    result = _run(frozen, tmp_path, "--home", str(home.root), "autostart", "enable")
    assert result.returncode == 0, result.stdout + result.stderr
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(tmp_path / "config" / "autostart" / "passeur.desktop", encoding="utf-8")
    # The executable itself, not an interpreter and `-m daemon`, and not a PATH lookup.
    assert entry["Desktop Entry"]["Exec"] == f"{frozen} --home {home.root} run"


@pytest.mark.slow
def test_frozen_service_starts_and_stops(frozen: Path, tmp_path: Path, home: Home) -> None:
    service = subprocess.Popen([str(frozen), "--home", str(home.root), "run", "--headless"],
                               env=_alone(tmp_path), cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: "passeur démarré" in log_text(home), timeout=60), (
            service.poll(), log_text(home))
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=60)
        assert service.returncode == 0, err
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate(timeout=30)


@pytest.mark.slow
def test_frozen_file_carries_the_tray_and_the_catalogue(frozen: Path) -> None:
    viewer = shutil.which("pyi-archive_viewer", path=os.path.dirname(sys.executable))
    assert viewer, "pyi-archive_viewer comes with pyinstaller"
    listing = subprocess.run([viewer, "--list", "--recursive", "--brief", str(frozen)],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    names = set(listing.split())
    for module in ("tray.app", "tray.ui", "tray.icon", "daemon.platform.linux",
                   "daemon.web.handlers", "tkinter", "pystray._xorg"):
        assert module in names, module
    assert "daemon/locale/fr/LC_MESSAGES/passeur.mo" in names
    assert not any(name.startswith(("tests.", "bench.")) for name in names)
