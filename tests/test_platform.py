"""The platform layer: the control channel between real processes, folders, openers, signals."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import i18n
from daemon import platform as plat
from daemon.fsutil import exclusive_lock
from daemon.platform import linux, macos, posix, windows
from daemon.platform.common import MAX_LINE, short_hash

ROOT = Path(__file__).resolve().parent.parent

# A listener in its own process: echoes every line, stops at "quit".
ECHO_SERVER = textwrap.dedent("""
    import os, sys
    from daemon import platform as p
    if len(sys.argv) > 2:
        os.umask(int(sys.argv[2], 8))
    listener = p.listen(sys.argv[1])
    print("ready", flush=True)
    while (conn := listener.accept()) is not None:
        while (line := conn.recv_line(30)) is not None:
            if line == b"quit":
                listener.close()
                break
            conn.send_line(b"echo:" + line)
        conn.close()
""")

# A client that becomes another user first (started as root), then talks raw AF_UNIX.
FOREIGN_CLIENT = textwrap.dedent("""
    import os, socket, sys
    os.setgid(int(sys.argv[3]))
    os.setuid(int(sys.argv[2]))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    try:
        s.connect(sys.argv[1])
    except PermissionError:
        print("no-access", flush=True)
        sys.exit(0)
    try:
        s.sendall(b"hello\\n")
        data = s.recv(100)
    except (BrokenPipeError, ConnectionResetError):
        data = b""  # closed before or after the line: refused either way
    print("answered" if data else "closed", flush=True)
""")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


class Server:
    """An echo listener running in a child process."""

    def __init__(self, endpoint: str, umask: str | None = None) -> None:
        args = [sys.executable, "-c", ECHO_SERVER, endpoint] + ([umask] if umask else [])
        self.process = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        assert ready == "ready\n", self.process.stderr.read() if self.process.stderr else ""

    def stop(self) -> None:
        """Kill the child if it still runs and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=30)


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    """A private runtime folder, as XDG_RUNTIME_DIR would be."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    return folder


@pytest.fixture
def server(runtime: Path) -> Iterator[tuple[str, Server]]:
    """An echo listener in another process, on a socket of the runtime folder."""
    endpoint = str(runtime / "passeur-test.sock")
    child = Server(endpoint)
    yield endpoint, child
    child.stop()


def _connect(endpoint: str) -> plat.Connection:
    conn = plat.connect(endpoint, timeout=10)
    assert conn is not None, f"nobody listens on {endpoint}"
    return conn


# ---------------------------------------------------------------------------------------
# The control channel between two real processes


def test_lines_travel_both_ways_between_two_processes(server: tuple[str, Server]) -> None:
    endpoint, _child = server
    conn = _connect(endpoint)
    try:
        conn.send_line(b'{"op": "status"}')
        assert conn.recv_line(timeout=30) == b'echo:{"op": "status"}'
        big = b"x" * (MAX_LINE // 2)  # far larger than any socket buffer: many chunks
        conn.send_line(big)
        assert conn.recv_line(timeout=30) == b"echo:" + big
        conn.send_line(b"one")
        conn.send_line(b"two")
        assert conn.recv_line(timeout=30) == b"echo:one"
        assert conn.recv_line(timeout=30) == b"echo:two"
    finally:
        conn.close()


def test_end_of_stream_is_none_and_a_silent_peer_times_out(server: tuple[str, Server]) -> None:
    endpoint, child = server
    conn = _connect(endpoint)
    with pytest.raises(TimeoutError):
        conn.recv_line(timeout=0.2)  # the echo server says nothing unasked
    conn.send_line(b"quit")  # the server closes its listener and this connection
    assert conn.recv_line(timeout=30) is None
    conn.close()
    assert child.process.wait(timeout=30) == 0
    assert not Path(endpoint).exists(), "a closed listener removes its socket file"
    assert plat.connect(endpoint, timeout=5) is None


def test_socket_is_0600_from_birth_even_with_an_open_umask(runtime: Path) -> None:
    endpoint = str(runtime / "passeur-test.sock")
    # With umask 0 a plain bind() creates the socket 0777: only the listener's own umask
    # makes it private.
    child = Server(endpoint, umask="000")
    try:
        info = os.lstat(endpoint)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(runtime).st_mode) == 0o700
    finally:
        child.stop()


def test_the_service_socket_and_its_folder_are_private(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    # No XDG runtime folder: passeur makes its own under the temp folder.
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    endpoint = plat.control_endpoint(tmp_path / "home")
    listener = plat.listen(endpoint)
    try:
        folder = Path(endpoint).parent
        assert folder == tmp_path / f"passeur-{os.getuid()}"
        assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
        info = os.lstat(endpoint)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
    finally:
        listener.close()


def test_a_live_listener_makes_a_second_listen_fail(server: tuple[str, Server]) -> None:
    endpoint, _child = server
    with pytest.raises(plat.AddressInUse):
        plat.listen(endpoint)
    conn = _connect(endpoint)  # the first listener's socket was left alone
    conn.send_line(b"still here")
    assert conn.recv_line(timeout=30) == b"echo:still here"
    conn.close()


def test_a_stale_socket_left_by_kill_9_is_replaced(runtime: Path) -> None:
    endpoint = str(runtime / "passeur-test.sock")
    child = Server(endpoint)
    child.process.send_signal(signal.SIGKILL)
    child.process.wait(timeout=30)
    assert stat.S_ISSOCK(os.lstat(endpoint).st_mode), "kill -9 leaves the socket file"
    assert plat.connect(endpoint, timeout=5) is None  # nobody answers there

    listener = plat.listen(endpoint)
    accepted: list[plat.Connection | None] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()))
    thread.start()
    try:
        conn = _connect(endpoint)
        thread.join(30)
        served = accepted[0]
        assert served is not None
        conn.send_line(b"ping")
        assert served.recv_line(timeout=30) == b"ping"
        served.send_line(b"pong")
        assert conn.recv_line(timeout=30) == b"pong"
        conn.close()
        assert served.recv_line(timeout=30) is None
        served.close()
    finally:
        listener.close()
        thread.join(30)


def _as_root() -> None:
    assert os.getuid() == 0, "this test runs a client as `nobody`: it needs root (as in CI)"


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder that `nobody` may enter (pytest's own temp folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="passeur-peer-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _foreign_client(endpoint: str) -> str:
    nobody = pwd.getpwnam("nobody")
    result = subprocess.run(
        [sys.executable, "-c", FOREIGN_CLIENT, endpoint, str(nobody.pw_uid),
         str(nobody.pw_gid)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_peer_of_another_user_is_refused(open_folder: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    _as_root()
    endpoint = str(open_folder / "passeur-test.sock")
    listener = plat.listen(endpoint)
    # Open the socket to everybody, as a careless folder would: the peer check alone must
    # then keep the other user out.
    os.chmod(endpoint, 0o777)
    accepted: list[plat.Connection | None] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()))
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="daemon.platform.posix"):
            assert _foreign_client(endpoint) == "closed"
            # The foreign peer was never handed over: the next connection is this user's.
            conn = _connect(endpoint)
            thread.join(30)
        served = accepted[0]
        assert isinstance(served, posix.UnixConnection)
        assert linux.peer_uid(served.sock) == os.getuid()
        served.close()
        conn.close()
    finally:
        listener.close()
        thread.join(30)
    nobody = pwd.getpwnam("nobody").pw_uid
    refusals = [r.getMessage() for r in caplog.records if f"uid {nobody}" in r.getMessage()]
    assert len(refusals) == 1, caplog.text
    assert endpoint in refusals[0]


def test_the_private_folder_alone_keeps_another_user_out(open_folder: Path) -> None:
    _as_root()
    private = open_folder / "run"
    private.mkdir(mode=0o700)
    endpoint = str(private / "passeur-test.sock")
    child = Server(endpoint)
    try:
        assert _foreign_client(endpoint) == "no-access"
    finally:
        child.stop()


def test_close_from_another_thread_wakes_accept(runtime: Path) -> None:
    listener = plat.listen(str(runtime / "passeur-test.sock"))
    accepted: list[plat.Connection | None] = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()))
    thread.start()
    listener.close()
    thread.join(30)
    assert not thread.is_alive()
    assert accepted == [None]
    assert listener.accept() is None
    listener.close()  # twice is harmless


def test_closing_an_old_listener_spares_its_successors_socket(runtime: Path) -> None:
    endpoint = str(runtime / "passeur-test.sock")
    old = plat.listen(endpoint)
    os.unlink(endpoint)  # as if a newer service had replaced it
    new = plat.listen(endpoint)
    try:
        old.close()
        assert Path(endpoint).exists()
        conn = plat.connect(endpoint, timeout=5)
        assert conn is not None
        conn.close()
    finally:
        new.close()
    assert not Path(endpoint).exists()


def test_an_endless_line_is_refused() -> None:
    left, right = socket.socketpair()
    conn = posix.UnixConnection(left)
    writer = threading.Thread(target=lambda: _flood(right, MAX_LINE + 65536))
    writer.start()
    with pytest.raises(plat.LineTooLong):
        conn.recv_line(timeout=30)
    conn.close()
    writer.join(30)
    right.close()


def _flood(sock: socket.socket, size: int) -> None:
    with contextlib.suppress(OSError):  # the reader gave up, as it should
        sock.sendall(b"y" * size)


def test_an_unfinished_last_line_is_no_message() -> None:
    left, right = socket.socketpair()
    conn = posix.UnixConnection(left)
    right.sendall(b"complete\npartial")
    right.close()
    assert conn.recv_line(timeout=30) == b"complete"
    assert conn.recv_line(timeout=30) is None
    conn.close()


def test_connect_to_nothing_is_none(tmp_path: Path) -> None:
    assert plat.connect(str(tmp_path / "absent.sock"), timeout=5) is None
    plain = tmp_path / "plain.sock"
    plain.write_bytes(b"")
    assert plat.connect(str(plain), timeout=5) is None


def test_a_plain_file_in_the_way_is_replaced(runtime: Path) -> None:
    endpoint = runtime / "passeur-test.sock"
    endpoint.write_bytes(b"left over")
    listener = plat.listen(str(endpoint))
    try:
        assert stat.S_ISSOCK(os.lstat(endpoint).st_mode)
    finally:
        listener.close()


# ---------------------------------------------------------------------------------------
# Peer credentials


def test_linux_peer_uid_is_this_users() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        assert linux.peer_uid(left) == os.getuid()
        assert plat.peer_uid(right) == os.getuid()
    finally:
        left.close()
        right.close()


def test_linux_peer_uid_of_something_else_is_none() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        assert linux.peer_uid(udp) is None
        assert linux.peer_uid(lone) is None  # not connected: no peer at all
    finally:
        udp.close()
        lone.close()


def test_macos_xucred_is_read() -> None:
    groups = [20, 12, 61] + [0] * 13
    data = struct.pack("=IIhxx16I", macos.XUCRED_VERSION, 501, 3, *groups)
    assert len(data) == macos.XUCRED_SIZE
    assert macos.parse_xucred(data) == 501
    assert macos.parse_xucred(struct.pack("=II", 7, 501)) is None  # unknown version
    assert macos.parse_xucred(b"\0\0") is None


# ---------------------------------------------------------------------------------------
# Where the socket lives


def test_runtime_dir_is_xdg_when_it_is_private(monkeypatch: pytest.MonkeyPatch,
                                               runtime: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert plat.runtime_dir() == runtime


def test_runtime_dir_falls_back_to_a_private_temp_folder(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    for value in (str(loose), "relative/run", None):
        if value is None:
            monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        else:
            monkeypatch.setenv("XDG_RUNTIME_DIR", value)
        folder = plat.runtime_dir()
        assert folder == temp / f"passeur-{os.getuid()}"
        info = os.lstat(folder)
        assert stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.getuid()


def test_a_private_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    _as_root()
    folder = tmp_path / "passeur-0"
    folder.mkdir(mode=0o700)
    os.chown(folder, pwd.getpwnam("nobody").pw_uid, -1)
    with pytest.raises(posix.UnsafeFolder, match="uid"):
        posix.private_dir(folder)


def test_a_symlink_or_a_writable_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(posix.UnsafeFolder):
        posix.private_dir(link)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    with pytest.raises(posix.UnsafeFolder, match="777"):
        posix.private_dir(shared)


def test_a_readable_folder_of_this_user_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    os.chmod(folder, 0o755)
    assert posix.private_dir(folder) == folder
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_control_endpoint_names_one_socket_per_home(monkeypatch: pytest.MonkeyPatch,
                                                    runtime: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    home = tmp_path / "home"
    home.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(home)
    monkeypatch.chdir(tmp_path)
    endpoint = plat.control_endpoint(home)
    assert Path(endpoint).parent == runtime
    assert Path(endpoint).name == f"passeur-{short_hash(home)}.sock"
    assert plat.control_endpoint(alias) == endpoint
    assert plat.control_endpoint(Path("home")) == endpoint
    assert plat.control_endpoint(tmp_path / "other") != endpoint


# ---------------------------------------------------------------------------------------
# Windows: what can be checked without Windows


def test_windows_pipe_name_is_per_user_and_home(tmp_path: Path) -> None:
    name = windows.pipe_name("Jean Dupré", tmp_path)
    assert name == f"\\\\.\\pipe\\passeur-Jean_Dupr_-{short_hash(tmp_path)}"
    assert windows.pipe_name("marie", tmp_path) != name
    assert windows.pipe_name("Jean Dupré", tmp_path / "other") != name
    assert "\\" not in name[len(windows.PIPE_PREFIX):]


def test_windows_pipe_admits_only_the_users_sid() -> None:
    sid = "S-1-5-21-3623811015-3361044348-30300820-1013"
    sddl = windows.pipe_sddl(sid)
    assert sddl == f"O:{sid}G:{sid}D:P(D;;GA;;;NU)(A;;GA;;;{sid})"
    # Exactly one allow entry, for the user; network logons denied before it.
    assert sddl.count("(A;") == 1
    assert sddl.index("(D;;GA;;;NU)") < sddl.index("(A;")
    for bad in ("", "WD", "S-1-1-0)(A;;GA;;;WD", "1-5-21"):
        with pytest.raises(ValueError):
            windows.pipe_sddl(bad)


# ---------------------------------------------------------------------------------------
# Desktop


def _opener(folder: Path, name: str, body: str) -> None:
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)


def test_open_with_system_waits_for_the_openers_verdict(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    record = tmp_path / "opened"
    target = tmp_path / "dossier folder"
    target.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    _opener(bin_dir, "xdg-open", f'printf "%s" "$1" > "{record}"; exit 0')
    assert plat.open_with_system(target) is True
    assert record.read_text() == str(target)

    _opener(bin_dir, "xdg-open", "exit 3")  # "no application knows this file"
    assert plat.open_with_system(target) is False

    (bin_dir / "xdg-open").unlink()
    assert plat.open_with_system(target) is False


def test_an_opener_that_never_answers_is_a_failure(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    pid_file = tmp_path / "pid"
    _opener(bin_dir, "slow-open", f'echo $$ > "{pid_file}"; exec sleep 600')
    try:
        assert posix.open_with_opener(str(bin_dir / "slow-open"), tmp_path, timeout=0.5) is False
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_has_display_follows_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert plat.has_display() is False
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert plat.has_display() is True
    monkeypatch.delenv("WAYLAND_DISPLAY")
    monkeypatch.setenv("DISPLAY", ":0")
    assert plat.has_display() is True
    assert macos.has_display() is True
    assert windows.has_display() is True


def test_signal_handlers_stop_and_say_why(caplog: pytest.LogCaptureFixture) -> None:
    i18n.setup("en")
    names = ("SIGTERM", "SIGINT", "SIGHUP")
    saved = {name: signal.getsignal(getattr(signal, name)) for name in names}
    stops: list[int] = []
    signals = plat.install_signal_handlers(lambda: stops.append(1))
    try:
        with caplog.at_level(logging.INFO, logger="daemon.platform.common"):
            for name in names:
                signal.raise_signal(getattr(signal, name))
    finally:
        signals.close()
        for name, handler in saved.items():
            signal.signal(getattr(signal, name), handler)
    assert stops == [1, 1, 1]  # once each, though both the handler and the socket heard it
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"Stop requested (signal {int(getattr(signal, n))})" for n in names]
    assert "SIGBREAK" in windows.STOP_SIGNALS
    assert "SIGHUP" not in windows.STOP_SIGNALS


STOPPED_FROM_ANOTHER_THREAD = textwrap.dedent("""
    import signal, threading, time
    from daemon.platform import install_signal_handlers

    stopped = threading.Event()
    install_signal_handlers(stopped.set)

    def deliver():
        time.sleep(0.3)
        # As the system may do: the signal goes to this thread, not to the main one.
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    threading.Thread(target=deliver, daemon=True).start()
    start = time.monotonic()
    stopped.wait(30)  # the main thread waits on a lock, as the service's loop does
    print(round(time.monotonic() - start, 1), flush=True)
""")


def test_a_stop_signal_given_to_another_thread_stops_at_once() -> None:
    result = subprocess.run([sys.executable, "-c", STOPPED_FROM_ANOTHER_THREAD], cwd=ROOT,
                            env=_env(), capture_output=True, text=True, timeout=60, check=True)
    assert float(result.stdout) < 5, result.stdout + result.stderr


def test_signal_message_is_french_by_default(caplog: pytest.LogCaptureFixture) -> None:
    saved = signal.getsignal(signal.SIGTERM)
    signals = plat.install_signal_handlers(lambda: None)
    try:
        with caplog.at_level(logging.INFO, logger="daemon.platform.common"):
            signal.raise_signal(signal.SIGTERM)
    finally:
        signals.close()
        signal.signal(signal.SIGTERM, saved)
    assert caplog.records[0].getMessage() == f"Arrêt demandé (signal {int(signal.SIGTERM)})"


# ---------------------------------------------------------------------------------------
# One kind of file lock


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from daemon.fsutil import exclusive_lock
    with exclusive_lock(Path(sys.argv[1])):
        print("held", flush=True)
        time.sleep(600)
""")

TAKE_LOCK = textwrap.dedent("""
    import sys
    from pathlib import Path
    from daemon.fsutil import exclusive_lock
    with exclusive_lock(Path(sys.argv[1])):
        print("taken", flush=True)
""")


def test_a_lock_held_by_a_killed_process_is_free_again(tmp_path: Path) -> None:
    lock = tmp_path / "locks" / "queue.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], cwd=ROOT,
                              env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert stat.S_IMODE(os.stat(lock).st_mode) == 0o600
        waiter = subprocess.Popen([sys.executable, "-c", TAKE_LOCK, str(lock)], cwd=ROOT,
                                  env=_env(), stdout=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.communicate(timeout=1)  # waits while the holder lives
        holder.send_signal(signal.SIGKILL)
        out, _err = waiter.communicate(timeout=60)
        assert out == "taken\n"
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_publishers_of_one_folder_take_turns(tmp_path: Path) -> None:
    from daemon.web import publish

    inside: list[int] = []
    overlaps: list[int] = []
    barrier = threading.Barrier(4)

    def publisher() -> None:
        barrier.wait()
        for _ in range(25):
            with publish._locked(tmp_path):
                inside.append(1)
                time.sleep(0.001)  # give another thread every chance to walk in
                overlaps.append(len(inside))
                inside.pop()

    threads = [threading.Thread(target=publisher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(overlaps) == 100
    assert max(overlaps) == 1
    assert (tmp_path / publish.LOCK_NAME).exists()


def test_exclusive_lock_creates_its_folder(tmp_path: Path) -> None:
    with exclusive_lock(tmp_path / "a" / "b.lock"):
        assert (tmp_path / "a" / "b.lock").exists()
