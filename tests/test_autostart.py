"""Start at login on Linux, Windows and macOS: what is written, read back and really run."""

from __future__ import annotations

import argparse
import configparser
import json
import os
import plistlib
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from daemon import cli, i18n
from daemon.platform import autostart, linux, macos, windows
from daemon.platform.common import LoginMechanisms
from daemon.platform.handlers import cmd_autostart
from tests.helpers import Home
from tests.services import log_text, wait_for

# Arguments that every quoting must carry intact: spaces, quotes, $, %, backslashes.
AWKWARD = ["/opt/my apps/py thon", "-m", "daemon", "--home",
           "/srv/50% \"dossiers\" $HOME it's `x` back\\slash ~ #1 %f", "run", ""]


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run tests/run.sh, which installs it"
    return path


def _read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    return tmp_path / "xdg-config"


@pytest.fixture
def linux_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config_home: Path) -> Path:
    """Point Linux's mechanisms at temporary folders, with no user manager running."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("PASSEUR_HOME", raising=False)
    return runtime


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _status(capsys: pytest.CaptureFixture[str], home: Home) -> dict[str, object]:
    code, text = _cli(capsys, "--home", str(home.root), "autostart", "status", "--json")
    assert code == 0, text
    result: dict[str, object] = json.loads(text)
    return result


# ---------------------------------------------------------------------------------------
# The command of this installation


def test_launch_command_runs_this_interpreter_never_a_path_lookup(tmp_path: Path) -> None:
    assert autostart.launch_command(None, False) == [sys.executable, "-m", "daemon", "run"]
    assert autostart.launch_command(None, True, frozen=False)[-2:] == ["run", "--headless"]
    frozen = autostart.launch_command(None, False, executable="/opt/passeur", frozen=True)
    assert frozen == ["/opt/passeur", "run"]
    relocated = autostart.launch_command(tmp_path / "h", True, executable="/opt/passeur",
                                         frozen=True)
    assert relocated == ["/opt/passeur", "--home", str(tmp_path / "h"), "run", "--headless"]


def test_launch_command_makes_a_relative_home_absolute(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    argv = autostart.launch_command("rel", False)
    assert argv[argv.index("--home") + 1] == str(tmp_path / "rel")


def test_windows_start_uses_the_console_less_interpreter(tmp_path: Path) -> None:
    python = tmp_path / "python.exe"
    python.write_bytes(b"")
    argv = autostart.launch_command(None, False, executable=str(python), frozen=False,
                                    platform="win32")
    assert argv[0] == str(python)  # no pythonw.exe beside it: keep python.exe
    (tmp_path / "pythonw.exe").write_bytes(b"")
    argv = autostart.launch_command(None, False, executable=str(python), frozen=False,
                                    platform="win32")
    assert argv == [str(tmp_path / "pythonw.exe"), "-m", "daemon", "run"]


def test_relocated_home_comes_from_the_option_or_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PASSEUR_HOME", raising=False)
    assert autostart.relocated_home(None) is None
    monkeypatch.setenv("PASSEUR_HOME", "/srv/p")
    assert autostart.relocated_home(None) == "/srv/p"
    assert autostart.relocated_home("/other") == "/other"


# ---------------------------------------------------------------------------------------
# Linux, through the real CLI


def test_linux_enable_status_disable_round_trip(capsys: pytest.CaptureFixture[str],
                                                home: Home, linux_env: Path,
                                                config_home: Path) -> None:
    i18n.setup("en")
    desktop = config_home / "autostart" / "passeur.desktop"
    unit = config_home / "systemd" / "user" / "passeur.service"
    link = config_home / "systemd" / "user" / "default.target.wants" / "passeur.service"
    assert _status(capsys, home)["enabled"] is False

    code, text = _cli(capsys, "--home", str(home.root), "autostart", "enable")
    assert code == 0, text
    assert str(desktop) in text
    assert desktop.is_file()
    assert not unit.exists()
    state = _status(capsys, home)
    assert state["enabled"] is True
    assert state["mechanism"] == "xdg-autostart"
    assert state["location"] == str(desktop)
    assert state["outdated"] is False
    assert state["turned_off_elsewhere"] is False
    expected = linux.desktop_exec([sys.executable, "-m", "daemon", "--home", str(home.root),
                                   "run"])
    assert state["command"] == expected == state["expected_command"]
    assert _read_ini(desktop)["Desktop Entry"]["Exec"] == expected

    # Headless replaces the desktop entry: never both.
    code, text = _cli(capsys, "--home", str(home.root), "autostart", "enable", "--headless")
    assert code == 0, text
    assert not desktop.exists()
    assert unit.is_file()
    assert link.is_symlink()
    assert link.resolve() == unit.resolve()
    state = _status(capsys, home)
    assert state["mechanism"] == "systemd-user"
    assert state["enabled"] is True
    assert str(state["command"]).endswith('"run" "--headless"')

    code, text = _cli(capsys, "--home", str(home.root), "autostart", "status")
    assert code == 0
    assert "Démarrage à l'ouverture de session : activé" in text
    assert str(unit) in text

    code, text = _cli(capsys, "--home", str(home.root), "autostart", "disable")
    assert code == 0, text
    for path in (desktop, unit, link):
        assert not os.path.lexists(path)
    state = _status(capsys, home)
    assert state["enabled"] is False
    assert state["wanted"] is False
    assert state["mechanism"] is None
    code, text = _cli(capsys, "--home", str(home.root), "autostart")
    assert "Démarrage à l'ouverture de session : désactivé" in text


def test_linux_status_text_is_french(capsys: pytest.CaptureFixture[str], home: Home,
                                     linux_env: Path) -> None:
    # FRENCH CHECK: passes once the lead merged daemon/locale/pending/platform.po.
    code, text = _cli(capsys, "--home", str(home.root), "autostart", "enable")
    assert code == 0
    assert "passeur démarrera à chaque ouverture de session" in text
    code, text = _cli(capsys, "--home", str(home.root), "autostart", "status")
    assert "Démarrage à l'ouverture de session : activé" in text


def test_written_files_pass_the_desktops_own_validators(tmp_path: Path,
                                                        config_home: Path) -> None:
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    mechanisms.desktop.install(AWKWARD)
    result = subprocess.run([_tool("desktop-file-validate"),
                             str(config_home / "autostart" / "passeur.desktop")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""

    # systemd-analyze checks that the program exists: point the unit at a real one.
    program = tmp_path / "my apps" / "py thon"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    mechanisms.headless.install([str(program), *AWKWARD[1:]])
    assert _systemd_verify(tmp_path, config_home / "systemd" / "user" / "passeur.service") == ""


def _systemd_verify(tmp_path: Path, unit: Path) -> str:
    runtime = tmp_path / "verify-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    result = subprocess.run([_tool("systemd-analyze"), "verify", "--user", str(unit)],
                            env={"XDG_RUNTIME_DIR": str(runtime), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_exec_quoting_survives_the_desktops_launcher(tmp_path: Path,
                                                     config_home: Path) -> None:
    # GLib's launcher (what GNOME and others use) reads the Exec line back into arguments.
    record = tmp_path / "argv.json"
    dump = tmp_path / "dump.py"
    dump.write_text("import json, sys\n"
                    f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    mechanisms.desktop.install([sys.executable, str(dump), *AWKWARD[1:]])
    subprocess.run([_tool("gio"), "launch", str(config_home / "autostart" / "passeur.desktop")],
                   env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, check=True,
                   timeout=60, capture_output=True)
    assert wait_for(record.exists, timeout=60)
    assert wait_for(lambda: record.read_text() != "", timeout=60)
    assert json.loads(record.read_text()) == AWKWARD[1:]


def _unquote_execstart(line: str) -> list[str]:
    """Read an ExecStart= line as systemd does for what systemd_exec writes."""
    return [word.replace("$$", "$").replace("%%", "%") for word in shlex.split(line)]


def test_execstart_quoting_reads_back(config_home: Path) -> None:
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    mechanisms.headless.install(AWKWARD)
    unit = _read_ini(config_home / "systemd" / "user" / "passeur.service")
    assert _unquote_execstart(unit["Service"]["ExecStart"]) == AWKWARD
    assert unit["Install"]["WantedBy"] == "default.target"


def test_a_line_break_in_the_command_is_refused(config_home: Path) -> None:
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    with pytest.raises(ValueError, match="saut de ligne"):
        mechanisms.desktop.install(["/usr/bin/python3", "--home", "a\nExec=evil"])
    with pytest.raises(ValueError, match="saut de ligne"):
        mechanisms.headless.install(["/usr/bin/python3", "--home", "a\nExecStartPre=evil"])


def test_a_failure_to_write_is_one_clear_sentence(capsys: pytest.CaptureFixture[str],
                                                  home: Home, linux_env: Path,
                                                  config_home: Path) -> None:
    i18n.setup("en")
    config_home.mkdir()
    (config_home / "autostart").write_text("a file where the folder should be")
    code, text = _cli(capsys, "--home", str(home.root), "autostart", "enable")
    assert code == cli.EXIT_FAILED
    assert text.startswith("Impossible de modifier le démarrage à l'ouverture de session : ")
    assert str(config_home / "autostart") in text
    assert "Traceback" not in text


# ---------------------------------------------------------------------------------------
# The written command really starts passeur, from a venv that is not on PATH


def _bare_env(tmp_path: Path, runtime: Path) -> dict[str, str]:
    """What a login session gives: no venv on PATH, no PASSEUR_HOME, a plain folder."""
    venv_bin = str(Path(sys.executable).parent)
    path = ":".join(p for p in ("/usr/local/bin", "/usr/bin", "/bin") if p != venv_bin)
    assert shutil.which("passeur", path=path) is None, "passeur must not be on this PATH"
    return {"PATH": path, "HOME": str(tmp_path), "LANG": "fr_FR.UTF-8",
            "XDG_RUNTIME_DIR": str(runtime)}


def _passeur_processes(home: Home) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if str(home.root) in cmdline and "run" in cmdline:
            found.append(process)
    return found


def _stop_started_service(home: Home) -> None:
    processes = _passeur_processes(home)
    assert len(processes) == 1, processes
    processes[0].send_signal(signal.SIGTERM)
    processes[0].wait(timeout=60)  # not our child: its exit code is not ours to read
    assert f"Arrêt demandé (signal {int(signal.SIGTERM)})" in log_text(home)


@pytest.fixture
def cleanup_services(home: Home) -> Iterator[None]:
    yield
    for process in _passeur_processes(home):
        process.kill()


def test_the_desktop_entry_starts_the_service(tmp_path: Path, home: Home, linux_env: Path,
                                              config_home: Path,
                                              cleanup_services: None) -> None:
    env = _bare_env(tmp_path, linux_env)
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    argv = autostart.launch_command(home.root, False)
    mechanisms.desktop.install(argv)
    # What the session does at login: its launcher runs the entry.
    # The service keeps what it inherits open: give it nothing to hold.
    subprocess.run([_tool("gio"), "launch", str(config_home / "autostart" / "passeur.desktop")],
                   env=env, cwd="/", check=True, timeout=60, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for(lambda: "passeur démarré" in log_text(home), timeout=60), log_text(home)
    _stop_started_service(home)


def test_the_systemd_unit_starts_the_service(tmp_path: Path, home: Home, linux_env: Path,
                                             config_home: Path) -> None:
    env = _bare_env(tmp_path, linux_env)
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    mechanisms.headless.install(autostart.launch_command(home.root, True))
    unit = _read_ini(config_home / "systemd" / "user" / "passeur.service")
    argv = _unquote_execstart(unit["Service"]["ExecStart"])
    assert argv[0] == sys.executable
    service = subprocess.Popen(argv, env=env, cwd="/", text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: "passeur démarré" in log_text(home), timeout=60), (
            service.poll(), log_text(home))
        service.send_signal(signal.SIGTERM)  # what systemd's KillSignal= sends
        _out, err = service.communicate(timeout=60)
        assert service.returncode == 0, err
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate(timeout=30)


def test_the_windows_and_macos_commands_start_this_installation(tmp_path: Path, home: Home,
                                                                linux_env: Path) -> None:
    env = _bare_env(tmp_path, linux_env)
    argv = autostart.launch_command(home.root, False)
    registry = FakeRegistry()
    windows.login_mechanisms(registry).desktop.install(argv)
    written = registry.values[(windows.RUN_KEY, "passeur")]
    assert isinstance(written, str)
    agent = macos.login_mechanisms(tmp_path / "mac", tmp_path / "logs", launchctl=False)
    agent.desktop.install(argv)
    with open(tmp_path / "mac/Library/LaunchAgents/fr.passeur.agent.plist", "rb") as handle:
        program = plistlib.load(handle)["ProgramArguments"]
    for command in (split_windows(written), program):
        assert command == argv
        # --version stops before the service starts: the command finds this installation.
        result = subprocess.run([*command[:-1], "--version"], env=env, cwd="/",
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("passeur ")


# ---------------------------------------------------------------------------------------
# The drift check


def test_drift_is_said_once_when_the_entry_is_removed(home: Home, config_home: Path) -> None:
    i18n.setup("en")
    paths = home.context().paths
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    assert autostart.drift(paths, mechanisms) is None  # never asked for: nothing to say
    autostart.enable(paths, mechanisms, ["/usr/bin/true", "run"], headless=False)
    assert autostart.drift(paths, mechanisms) is None
    (config_home / "autostart" / "passeur.desktop").unlink()
    said = autostart.drift(paths, mechanisms)
    assert said is not None
    assert str(config_home / "autostart" / "passeur.desktop") in said
    assert "passeur autostart enable" in said
    assert autostart.drift(paths, mechanisms) is None  # once per change
    assert autostart.drift(paths, mechanisms) is None


def test_drift_after_the_desktop_turned_it_off(home: Home, config_home: Path) -> None:
    i18n.setup("en")
    paths = home.context().paths
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    autostart.enable(paths, mechanisms, ["/usr/bin/true", "run"], headless=False)
    entry = config_home / "autostart" / "passeur.desktop"
    # GNOME's "Startup Applications" switch.
    entry.write_text(entry.read_text().replace("X-GNOME-Autostart-enabled=true",
                                               "X-GNOME-Autostart-enabled=false"))
    said = autostart.drift(paths, mechanisms)
    assert said is not None
    assert "startup applications" in said
    assert autostart.drift(paths, mechanisms) is None
    # Turned back on, then off again (KDE writes Hidden=true): said again, once.
    entry.write_text(entry.read_text().replace("X-GNOME-Autostart-enabled=false",
                                               "X-GNOME-Autostart-enabled=true"))
    assert autostart.drift(paths, mechanisms) is None
    entry.write_text(entry.read_text() + "Hidden=true\n")
    assert autostart.drift(paths, mechanisms) is not None
    assert autostart.drift(paths, mechanisms) is None


def test_drift_after_systemctl_disable(home: Home, config_home: Path) -> None:
    i18n.setup("en")
    paths = home.context().paths
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    autostart.enable(paths, mechanisms, ["/usr/bin/true", "run", "--headless"], headless=True)
    assert autostart.drift(paths, mechanisms) is None
    (config_home / "systemd/user/default.target.wants/passeur.service").unlink()
    said = autostart.drift(paths, mechanisms)
    assert said is not None
    assert "systemctl --user disable" in said
    status = autostart.status(paths, mechanisms, None)
    assert status.turned_off_elsewhere
    assert not status.enabled
    # Asking again clears it: the next drift is told again.
    autostart.enable(paths, mechanisms, ["/usr/bin/true", "run", "--headless"], headless=True)
    assert autostart.drift(paths, mechanisms) is None
    assert autostart.status(paths, mechanisms, None).turned_off_elsewhere is False


def test_no_drift_after_the_user_disabled_it(home: Home, config_home: Path) -> None:
    paths = home.context().paths
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    autostart.enable(paths, mechanisms, ["/usr/bin/true", "run"], headless=False)
    autostart.disable(paths, mechanisms)
    assert autostart.drift(paths, mechanisms) is None
    assert autostart.read_wish(paths) is not None


def test_drift_is_french_by_default(home: Home, config_home: Path) -> None:
    # FRENCH CHECK: passes once the lead merged daemon/locale/pending/platform.po.
    paths = home.context().paths
    mechanisms = linux.login_mechanisms(config_home, manager=False)
    autostart.enable(paths, mechanisms, ["/usr/bin/true", "run"], headless=False)
    (config_home / "autostart" / "passeur.desktop").unlink()
    said = autostart.drift(paths, mechanisms)
    assert said is not None
    assert said.startswith("Le démarrage à l'ouverture de session est désactivé")
    assert "« passeur autostart enable »" in said


def test_an_unreadable_wish_is_no_wish(home: Home) -> None:
    paths = home.context().paths
    paths.data.mkdir(parents=True, exist_ok=True)
    autostart.wish_path(paths).write_text("{not json")
    assert autostart.read_wish(paths) is None
    assert autostart.drift(paths, linux.login_mechanisms(home.root / "cfg", False)) is None


# ---------------------------------------------------------------------------------------
# Windows, through the registry seam


class FakeRegistry:
    """HKEY_CURRENT_USER in a dict, for Windows' logic on Linux."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str | bytes] = {}

    def get(self, key: str, name: str) -> str | bytes | None:
        return self.values.get((key, name))

    def set_string(self, key: str, name: str, value: str) -> None:
        self.values[(key, name)] = value

    def delete(self, key: str, name: str) -> None:
        self.values.pop((key, name), None)


def split_windows(line: str) -> list[str]:
    """Split a command line as the Microsoft C runtime does (CommandLineToArgvW)."""
    args: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        word: list[str] = []
        quoted = False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                if j < n and line[j] == '"':
                    word.append("\\" * ((j - i) // 2))
                    if (j - i) % 2:
                        word.append('"')
                        j += 1
                    i = j
                else:
                    word.append("\\" * (j - i))
                    i = j
            elif line[i] == '"':
                quoted = not quoted
                i += 1
            else:
                word.append(line[i])
                i += 1
        args.append("".join(word))
    return args


def _args(action: str | None, **extra: object) -> argparse.Namespace:
    values: dict[str, object] = {"home": None, "headless": False, "json": False, **extra}
    return argparse.Namespace(action=action, **values)


def test_windows_run_key_round_trip(capsys: pytest.CaptureFixture[str], home: Home,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    i18n.setup("en")
    monkeypatch.delenv("PASSEUR_HOME", raising=False)
    registry = FakeRegistry()
    mechanisms = windows.login_mechanisms(registry)
    ctx = home.context()
    exe = r"C:\Program Files\passeur\pythonw.exe"
    argv = [exe, "-m", "daemon", "--home", r"C:\Users\Jean Dupré\passeur \"x\"\\", "run"]
    autostart.enable(ctx.paths, mechanisms, argv, headless=False)
    value = registry.values[(windows.RUN_KEY, "passeur")]
    assert value == subprocess.list2cmdline(argv)
    assert isinstance(value, str)
    assert split_windows(value) == argv

    status = autostart.status(ctx.paths, mechanisms, None)
    assert status.enabled
    assert status.mechanism == "registry-run"
    assert status.location == (
        "HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\passeur")

    # The Task Manager turns it off: 0x03 (or 0x07) then the time of the change.
    registry.values[(windows.APPROVED_KEY, "passeur")] = bytes([3]) + bytes(11)
    assert cmd_autostart(ctx, _args("status", json=True), mechanisms) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["enabled"] is False
    assert state["turned_off_elsewhere"] is True
    said = autostart.drift(ctx.paths, mechanisms)
    assert said is not None
    assert "Task Manager" in said
    assert autostart.drift(ctx.paths, mechanisms) is None

    registry.values[(windows.APPROVED_KEY, "passeur")] = bytes([6]) + bytes(11)
    assert autostart.status(ctx.paths, mechanisms, None).enabled
    registry.values[(windows.APPROVED_KEY, "passeur")] = bytes([7]) + bytes(11)
    assert not autostart.status(ctx.paths, mechanisms, None).enabled

    # Enabling again lifts the Task Manager's switch: the user asked for it now.
    autostart.enable(ctx.paths, mechanisms, argv, headless=False)
    assert (windows.APPROVED_KEY, "passeur") not in registry.values
    assert autostart.status(ctx.paths, mechanisms, None).enabled

    assert cmd_autostart(ctx, _args("disable"), mechanisms) == 0
    assert registry.values == {}
    assert not autostart.status(ctx.paths, mechanisms, None).enabled


def test_startup_approved_bytes() -> None:
    assert windows.approved_is_off(None) is False
    assert windows.approved_is_off(b"") is False
    assert windows.approved_is_off(bytes([2]) + bytes(11)) is False
    assert windows.approved_is_off(bytes([6]) + bytes(11)) is False
    assert windows.approved_is_off(bytes([3]) + bytes(11)) is True
    assert windows.approved_is_off(bytes([7]) + bytes(11)) is True
    assert windows.approved_is_off("03") is False  # not a binary value: not Task Manager's


def test_windows_headless_uses_the_same_run_key() -> None:
    mechanisms = windows.login_mechanisms(FakeRegistry())
    assert mechanisms.pick(True) is mechanisms.pick(False)
    assert mechanisms.others(mechanisms.pick(True)) == []


# ---------------------------------------------------------------------------------------
# macOS, a LaunchAgent


def _mac(tmp_path: Path) -> LoginMechanisms:
    return macos.login_mechanisms(tmp_path / "mac", tmp_path / "logs", launchctl=False)


def test_macos_launch_agent_round_trip(tmp_path: Path, home: Home) -> None:
    i18n.setup("en")
    paths = home.context().paths
    mechanisms = _mac(tmp_path)
    plist = tmp_path / "mac/Library/LaunchAgents/fr.passeur.agent.plist"
    autostart.enable(paths, mechanisms, AWKWARD, headless=False)
    with open(plist, "rb") as handle:
        agent = plistlib.load(handle)
    assert agent == {
        "Label": "fr.passeur.agent",
        "ProgramArguments": AWKWARD,
        "RunAtLoad": True,
        "KeepAlive": False,
        "ProcessType": "Interactive",
        "StandardOutPath": str(tmp_path / "logs" / "launchd.log"),
        "StandardErrorPath": str(tmp_path / "logs" / "launchd.log"),
    }
    plutil = shutil.which("plutil")
    if plutil:  # macOS's own checker, where it exists (not on Debian)
        result = subprocess.run([plutil, "-lint", str(plist)], capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr

    status = autostart.status(paths, mechanisms, None)
    assert status.enabled
    assert status.mechanism == "launch-agent"
    assert status.command is not None
    assert shlex.split(status.command) == AWKWARD

    plist.unlink()
    said = autostart.drift(paths, mechanisms)
    assert said is not None
    assert str(plist) in said

    autostart.enable(paths, mechanisms, AWKWARD, headless=False)
    autostart.disable(paths, mechanisms)
    assert not plist.exists()
    assert not autostart.status(paths, mechanisms, None).enabled


def test_launchctl_disabled_list_is_read() -> None:
    listing = ('disabled services = {\n\t"com.apple.ScreenReaderUIServer" => disabled\n'
               '\t"fr.passeur.agent" => disabled\n}\nlogin item associations = {\n}\n')
    assert macos.parse_disabled(listing) is True
    assert macos.parse_disabled(listing.replace('"fr.passeur.agent" => disabled',
                                                '"fr.passeur.agent" => enabled')) is False
    assert macos.parse_disabled('\t"fr.passeur.agent" => true\n') is True
    assert macos.parse_disabled('\t"fr.passeur.agent.other" => disabled\n') is False
    assert macos.parse_disabled("") is False
