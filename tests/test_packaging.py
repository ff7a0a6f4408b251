"""Start-at-login files for Linux, checked by the desktop's own validators."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

LINUX = Path(__file__).resolve().parent.parent / "packaging" / "linux"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run tests/run.sh, which installs it"
    return path


def test_systemd_user_unit_is_valid(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    result = subprocess.run(
        [_tool("systemd-analyze"), "verify", "--user", str(LINUX / "passeur.service")],
        env={"XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(LINUX / "passeur.service")
    assert unit["Service"]["ExecStart"].endswith("passeur run --headless")
    assert unit["Install"]["WantedBy"] == "default.target"


def test_a_broken_unit_is_refused_by_the_same_check(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    broken = tmp_path / "passeur.service"
    broken.write_text((LINUX / "passeur.service").read_text().replace("ExecStart=", "Exec="))
    result = subprocess.run(
        [_tool("systemd-analyze"), "verify", "--user", str(broken)],
        env={"XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False,
    )
    assert result.returncode != 0


def test_xdg_autostart_entry_is_valid() -> None:
    entry = LINUX / "passeur.desktop"
    result = subprocess.run([_tool("desktop-file-validate"), str(entry)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.optionxform = str  # type: ignore[assignment,method-assign]
    desktop.read(entry, encoding="utf-8")
    assert desktop["Desktop Entry"]["Exec"] == "passeur run"
    assert desktop["Desktop Entry"]["GenericName[fr]"] == "Échanges avec votre comptable"
