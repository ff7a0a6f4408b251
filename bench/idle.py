"""The headless service doing nothing: CPU time, wake-ups and memory over a period.

`passeur run --headless` in a fresh home (web endpoint configured but unchanged, removable
drives on, one empty watched folder) is left alone; its CPU time and voluntary context
switches are counted after start-up, beside a bare interpreter that imports the same
modules and sleeps. Target: under 0.5 s of CPU over 5 minutes.
Run from the repository root: `python -m bench.idle [--minutes M] [--quick]`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from bench.common import Row, common_arguments, finish, fmt_mib, fmt_ratio, print_table, scratch

SETTLE_S = 5.0
# What the service imports beyond the standard library; the bare reference imports them too.
# The keyring's backends are modules too: the service imports them when it first reads the
# endpoint's password (`get_keyring()` discovers and imports them; no secret is read here).
SAME_IMPORTS = (
    "import daemon.cli, daemon.service, daemon.core, daemon.control.server, daemon.platform, "
    "daemon.web.poller, daemon.removable, daemon.folders, daemon.delivery, daemon.intake, "
    "requests, watchdog.observers, psutil, filelock, keyring; keyring.get_keyring()"
)


def configure(home: Path) -> dict[str, str]:
    """Write a config with every source on and return the service's environment."""
    watched = home / "downloads"
    watched.mkdir(parents=True)
    (home / "config.toml").write_text(
        '[[dossiers]]\nnumber = "8502182"\nname = "GAEC LE GUYON"\n'
        '[sources.web]\nurl = "http://127.0.0.1:9/"\npoll_minutes = 15\n'
        f'[sources.folders]\nwatch = ["{watched}"]\n', "utf-8")
    return dict(os.environ, PASSEUR_HOME=str(home), LANG="fr_FR.UTF-8")


def voluntary_switches(pid: int) -> int:
    """Return the voluntary context switches of every thread of a process (Linux)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def sample(process: psutil.Process) -> tuple[float, int, int]:
    """Return (CPU seconds, voluntary context switches of all threads, RSS bytes)."""
    times = process.cpu_times()
    return (times.user + times.system, voluntary_switches(process.pid),
            process.memory_info().rss)


def control_channel_open(env: dict[str, str]) -> bool:
    """Tell whether the service answers on its control channel (`passeur status`)."""
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "status", "--json"], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    return result.returncode == 0 and '"service": true' in result.stdout


def measure(argv: list[str], env: dict[str, str], seconds: float,
            check: Callable[[], object] = lambda: None) -> tuple[float, int, int]:
    """Run a process, let it settle, and return its (CPU s, wake-ups, RSS) over `seconds`."""
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE_S)
        check()
        process = psutil.Process(child.pid)
        cpu0, switches0, _rss = sample(process)
        time.sleep(seconds)
        cpu1, switches1, rss = sample(process)
        return cpu1 - cpu0, switches1 - switches0, rss
    finally:
        child.terminate()
        child.wait(30)


def main(argv: list[str] | None = None) -> int:
    """Measure the idle service and print its table."""
    parser = common_arguments(__doc__ or "")
    parser.add_argument("--minutes", type=float, default=None,
                        help="how long to measure (default 5, 0.5 with --quick)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 5.0)
    seconds = minutes * 60
    with scratch("idle") as folder:
        env = configure(folder / "home")
        opened: list[bool] = []
        ours = measure([sys.executable, "-m", "daemon.cli", "run", "--headless"], env, seconds,
                       lambda: opened.append(control_channel_open(env)))
        bare = measure([sys.executable, "-c", f"{SAME_IMPORTS}; import time; time.sleep(1e6)"],
                       env, seconds)
    cpu_target = 0.5 * seconds / 300  # 0.5 s per 5 minutes
    rows = [
        Row(f"CPU time over {minutes:g} min", f"{ours[0]:.3f} s", f"bare {bare[0]:.3f} s", "",
            f"< {cpu_target:.3f} s", ours[0] < cpu_target),
        Row("wake-ups per second", f"{ours[1] / seconds:.2f}", f"bare {bare[1] / seconds:.2f}",
            "", "", None),
        Row("RSS", fmt_mib(ours[2]), f"bare, same imports {fmt_mib(bare[2])}",
            fmt_ratio(bare[2] / ours[2]), "≤ 1.25× bare", ours[2] <= 1.25 * bare[2]),
        Row("control channel open", "yes" if all(opened) else "no", "", "", "open",
            all(opened)),
    ]
    print_table(f"idle headless service, {minutes:g} min after {SETTLE_S:g} s of start-up", rows)
    return finish("bench.idle", rows, "quick" if args.quick else "")


if __name__ == "__main__":
    sys.exit(main())
