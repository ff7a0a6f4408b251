"""Packaging: the validators that judge the start-at-login files, and what packaging/ holds.

The Linux start-at-login files are written by daemon.platform.linux (tests/test_autostart.py
validates them); here each validator is shown to refuse a broken file, so that its
approval there means something.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from daemon.platform import linux

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run tests/run.sh, which installs it"
    return path


def _verify(tmp_path: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run([_tool("systemd-analyze"), "verify", "--user", str(unit)],
                          env={"XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, check=False)


def test_the_written_unit_passes_and_a_broken_one_fails(tmp_path: Path) -> None:
    mechanisms = linux.login_mechanisms(tmp_path / "config", manager=False)
    mechanisms.headless.install([sys.executable, "-m", "daemon", "run", "--headless"])
    unit = tmp_path / "config" / "systemd" / "user" / "passeur.service"
    good = _verify(tmp_path, unit)
    assert good.returncode == 0, good.stderr
    assert good.stderr == ""

    broken = tmp_path / "broken" / "passeur.service"
    broken.parent.mkdir()
    broken.write_text(unit.read_text().replace("ExecStart=", "Exec="))
    assert _verify(tmp_path, broken).returncode != 0
    missing = tmp_path / "missing" / "passeur.service"
    missing.parent.mkdir()
    missing.write_text(unit.read_text().replace(sys.executable, "/nonexistent/python"))
    assert _verify(tmp_path, missing).returncode != 0


def test_the_written_entry_passes_and_a_broken_one_fails(tmp_path: Path) -> None:
    mechanisms = linux.login_mechanisms(tmp_path / "config", manager=False)
    mechanisms.desktop.install([sys.executable, "-m", "daemon", "run"])
    entry = tmp_path / "config" / "autostart" / "passeur.desktop"
    good = subprocess.run([_tool("desktop-file-validate"), str(entry)],
                          capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout == ""

    broken = tmp_path / "broken.desktop"
    broken.write_text(entry.read_text().replace("Type=Application\n", ""))
    bad = subprocess.run([_tool("desktop-file-validate"), str(broken)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_packaging_holds_the_spec_and_no_path_lookup() -> None:
    files = sorted(p.relative_to(PACKAGING).as_posix() for p in PACKAGING.rglob("*")
                   if p.is_file())
    assert files == ["passeur.spec"]
    spec = (PACKAGING / "passeur.spec").read_text()
    assert '"daemon" / "__main__.py"' in spec
    assert "passeur.mo" in spec
    for path in (PACKAGING / "passeur.spec", ROOT / "daemon" / "platform" / "linux.py"):
        assert "/usr/bin/env passeur" not in path.read_text()
