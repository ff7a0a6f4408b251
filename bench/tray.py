"""The tray at rest, and how fast a notification follows an update.

Run from the repository root: `python -m bench.tray [--minutes N] [--quick]`.

1. Idle: `passeur run` with its tray icon on a virtual desktop (Xvfb, trayer, dunst) for
   N minutes (10 by default): resident memory, CPU time and voluntary context switches
   per second (wake-ups), beside two references measured over the same minutes:
   (a) a bare interpreter that imports exactly the modules `passeur run` imported (read
   from `python -X importtime`) and then sleeps; (b) Syncthing (Debian package) idle,
   with a fresh home, listening on 127.0.0.1 only, discovery and relays off. Each
   figure adds up the process and its children (Syncthing runs as two processes).
   Targets: RSS within 1.25x of (a), CPU under 0.1 %, wake-ups no more than Syncthing's.
2. Latency: an update queued (the UpdateQueued event's time) to its notification shown
   (dunst runs a script that stamps the time when it shows it). Target: under 0.5 s.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    ROOT,
    Row,
    common_arguments,
    finish,
    fmt_mib,
    fmt_ratio,
    median,
    print_table,
    scratch,
)
from daemon.keys import SigningKey
from tests.helpers import Home, make_home
from tests.xsession import (
    XSession,
    desktop,
    start_tray,
    stop_tray,
    tray_env,
    wait_for,
)

RSS_RATIO_TARGET = 1.25
CPU_TARGET = 0.001  # a fraction of one core
LATENCY_TARGET = 0.5
WARM_UP_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    """What /proc says about a process and its threads at one moment."""

    at: float
    rss: int
    cpu: float
    switches: int
    per_thread: dict[int, int]


def sample_tree(pid: int) -> Sample:
    """Add up a process and its descendants (Syncthing runs as a monitor and a child)."""
    import psutil

    pids = [pid]
    with contextlib.suppress(psutil.NoSuchProcess):
        pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    parts = [sample(p) for p in pids]
    per_thread: dict[int, int] = {}
    for part in parts:
        per_thread.update(part.per_thread)
    return Sample(parts[0].at, sum(p.rss for p in parts), sum(p.cpu for p in parts),
                  sum(p.switches for p in parts), per_thread)


def sample(pid: int) -> Sample:
    """Read resident memory, CPU seconds and voluntary switches of every thread."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime, all threads
    rss = 0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    per_thread = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(
                f"/proc/{pid}/task/{task}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches:"):
                    per_thread[int(task)] = int(line.split()[1])
    return Sample(time.monotonic(), rss, cpu, sum(per_thread.values()), per_thread)


def busiest_threads(start: Sample, end: Sample) -> str:
    """Say which threads woke up, for finding where wake-ups come from (py-spy dump)."""
    deltas = sorted(((end.per_thread[t] - start.per_thread.get(t, 0), t)
                     for t in end.per_thread), reverse=True)
    return ", ".join(f"thread {tid}: {count}" for count, tid in deltas[:4] if count)


@dataclass(frozen=True)
class Idle:
    """One process's figures over the measured minutes."""

    name: str
    rss: int  # at the end
    cpu_share: float  # CPU seconds per second
    wakeups: float  # voluntary context switches per second

    @staticmethod
    def between(name: str, start: Sample, end: Sample) -> Idle:
        """Return the figures between two samples."""
        seconds = end.at - start.at
        return Idle(name, end.rss, (end.cpu - start.cpu) / seconds,
                    (end.switches - start.switches) / seconds)


# ---------------------------------------------------------------- the three processes


def configured_home(folder: Path) -> Home:
    """A home with a dossier and a key, and no source to poll: passeur at rest."""
    return make_home(folder / "home", SigningKey.generate())


def imported_modules(stderr: str) -> list[str]:
    """Return the modules a `python -X importtime` run imported, in order."""
    names = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", line)
        if match:
            names.append(match.group(1).strip())
    return names


def bare_interpreter(modules: list[str], folder: Path) -> subprocess.Popen[bytes]:
    """Start an interpreter that imports these modules, then sleeps."""
    script = folder / "bare.py"
    script.write_text(
        "import importlib, time\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        pass\n"
        "print('ready', flush=True)\n"
        "time.sleep(10**9)\n", "utf-8")
    process = subprocess.Popen([sys.executable, str(script)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"ready"
    return process


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def syncthing(folder: Path) -> subprocess.Popen[bytes] | None:
    """Start Syncthing idle on loopback only (None when it is not installed)."""
    binary = shutil.which("syncthing")
    if binary is None:
        return None
    home = folder / "syncthing"
    env = dict(os.environ, STNOUPGRADE="1", STNODEFAULTFOLDER="1", HOME=str(folder))
    subprocess.run([binary, "generate", f"--home={home}"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = home / "config.xml"
    text = config.read_text("utf-8")
    listen, gui = free_port(), free_port()
    # Nothing may leave this machine: no discovery, relays, NAT, reports or upgrades.
    for tag, value in (("globalAnnounceEnabled", "false"), ("localAnnounceEnabled", "false"),
                       ("relaysEnabled", "false"), ("natEnabled", "false"),
                       ("urAccepted", "-1"), ("autoUpgradeIntervalH", "0"),
                       ("crashReportingEnabled", "false"), ("startBrowser", "false"),
                       ("listenAddress", f"tcp://127.0.0.1:{listen}")):
        text = re.sub(rf"<{tag}>[^<]*</{tag}>", f"<{tag}>{value}</{tag}>", text)
    text = re.sub(r"<address>[^<]*</address>", f"<address>127.0.0.1:{gui}</address>", text,
                  count=1)
    config.write_text(text, "utf-8")
    return subprocess.Popen([binary, "serve", f"--home={home}", "--no-browser",
                             "--no-restart", "--no-upgrade", "--skip-port-probing",
                             f"--gui-address=http://127.0.0.1:{gui}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextlib.contextmanager
def running(process: subprocess.Popen[bytes] | None) -> Iterator[None]:
    """Stop a reference process at the end."""
    try:
        yield
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def measure_idle(session: XSession, folder: Path, seconds: float) -> list[Idle]:
    """Run passeur and the references side by side for `seconds`; return their figures."""
    home = configured_home(folder)
    env = tray_env(session.env, home.root)
    passeur = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "daemon.cli",
                                "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    log = home.root / "logs" / "passeur.log"
    assert wait_for(lambda: log.exists() and "tray icon:" in log.read_text(), 30), \
        "passeur run did not show its icon"
    time.sleep(2)  # the notifier and the first pictures
    reader = _StderrReader(passeur)
    modules = imported_modules(reader.text())
    print(f"passeur run imported {len(modules)} modules")
    bare = bare_interpreter(modules, folder)
    reference = syncthing(folder)
    with running(bare), running(reference):
        time.sleep(WARM_UP_S)
        pids = [("passeur run (tray)", passeur.pid), ("bare interpreter, same imports",
                                                       bare.pid)]
        if reference is not None:
            pids.append(("Syncthing idle", reference.pid))
        starts = [sample_tree(pid) for _, pid in pids]
        print(f"measuring idle for {seconds / 60:.1f} min…", flush=True)
        time.sleep(seconds)
        ends = [sample_tree(pid) for _, pid in pids]
        results = [Idle.between(name, start, end)
                   for (name, _pid), start, end in zip(pids, starts, ends, strict=True)]
        print(f"passeur run (pid {passeur.pid}) wake-ups by thread: "
              f"{busiest_threads(starts[0], ends[0]) or 'none'}")
    passeur.send_signal(signal.SIGTERM)
    passeur.wait(30)
    reader.close()
    return results


class _StderrReader:
    """Collects a child's stderr without ever letting the pipe fill up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        import threading

        self.chunks: list[str] = []
        self.process = process
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.chunks.append(line)

    def text(self) -> str:
        time.sleep(0.5)
        return "".join(self.chunks)

    def close(self) -> None:
        self.thread.join(5)


# ---------------------------------------------------------------- latency


def measure_latency(folder: Path, updates: int) -> list[float]:
    """Return, for each update, seconds from queued to its notification shown."""
    shown = folder / "shown.txt"
    stamp = folder / "stamp.sh"
    stamp.write_text(f'#!/bin/sh\ndate +%s.%N >> "{shown}"\n', "utf-8")
    stamp.chmod(0o755)
    rules = f'[stamp]\n    appname = passeur\n    script = "{stamp}"\n'
    queued = folder / "queued.txt"
    home = make_home(folder / "latency-home", SigningKey.generate())
    drop = folder / "drop"
    with desktop(rules) as session:
        tray = start_tray(session, home.root, drop,
                          {"PASSEUR_TEST_QUEUED_STAMPS": str(queued)})
        try:
            for number in range(1, updates + 1):
                update = home.update(number)
                shutil.copy(update, drop / update.name)
                (drop / "go").touch()
                assert wait_for(functools.partial(_shown_at_least, shown, number), 10), \
                    "no notification"
                session.close_notifications()
        finally:
            stop_tray(tray)
    starts = [float(x) for x in queued.read_text().split()]
    ends = [float(x) for x in shown.read_text().split()]
    return [end - start for start, end in zip(starts, ends, strict=True)]


def _shown_at_least(path: Path, count: int) -> bool:
    return path.exists() and len(path.read_text().split()) >= count


# ---------------------------------------------------------------- report


def main() -> int:
    """Measure, print the table, return 1 when a target is missed."""
    parser = common_arguments(__doc__.splitlines()[0] if __doc__ else "bench.tray")
    parser.add_argument("--minutes", type=float, default=None,
                        help="how long to measure the idle tray (default 10, 0.5 --quick)")
    args = parser.parse_args()
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 10.0)
    updates = args.repeat or (3 if args.quick else 10)
    rows: list[Row] = []
    with scratch("tray") as folder:
        with desktop() as session:
            idle = measure_idle(session, folder, minutes * 60)
        latencies = measure_latency(folder, updates)
    ours, bare = idle[0], idle[1]
    syncthing_idle = idle[2] if len(idle) > 2 else None
    rss_ratio = ours.rss / bare.rss
    rows.append(Row("idle RSS", fmt_mib(ours.rss), f"{fmt_mib(bare.rss)} (bare, same imports)",
                    fmt_ratio(rss_ratio), f"≤ {RSS_RATIO_TARGET}× bare",
                    rss_ratio <= RSS_RATIO_TARGET))
    rows.append(Row("idle CPU", f"{ours.cpu_share * 100:.4f} %",
                    f"{bare.cpu_share * 100:.4f} % (bare)", "", "< 0.1 %",
                    ours.cpu_share < CPU_TARGET))
    if syncthing_idle is not None:
        rows.append(Row("idle wake-ups", f"{ours.wakeups:.2f}/s",
                        f"{syncthing_idle.wakeups:.2f}/s (Syncthing)",
                        fmt_ratio(syncthing_idle.wakeups / ours.wakeups if ours.wakeups
                                  else float("inf")),
                        "≤ Syncthing's", ours.wakeups <= syncthing_idle.wakeups))
        rows.append(Row("Syncthing idle RSS / CPU", fmt_mib(syncthing_idle.rss),
                        f"{syncthing_idle.cpu_share * 100:.4f} %"))
    else:
        rows.append(Row("idle wake-ups", f"{ours.wakeups:.2f}/s",
                        "Syncthing not installed (apt-get install syncthing)"))
    rows.append(Row("bare interpreter wake-ups", f"{bare.wakeups:.2f}/s"))
    worst = max(latencies)
    rows.append(Row("queued → notification shown", f"{median(latencies) * 1000:.0f} ms median",
                    f"{worst * 1000:.0f} ms worst of {len(latencies)}", "",
                    f"< {LATENCY_TARGET * 1000:.0f} ms", worst < LATENCY_TARGET))
    print_table(f"tray: idle for {minutes:g} min, {len(latencies)} notifications", rows)
    return finish("bench.tray", rows)


if __name__ == "__main__":
    sys.exit(main())
