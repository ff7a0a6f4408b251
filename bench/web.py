"""Benchmark of the web source against a local nginx (Debian package nginx-light or nginx).

    python -m bench.web [--size-mib 1024] [--repeat 3] [--quick]

On one update of --size-mib served by nginx with auth_basic, alternating with `curl`
fetching the same file (the reference, same run), and with curl followed by `sync FILE`
(the same fetch made as durable as passeur makes it):
- download + verify throughput: poll → download hashed whole and member by member →
  fsync → the intake's full verification → queued. Target: ≥ 0.9 × curl + sync. passeur
  may not queue a file before it is on the disk (temp → fsync → rename), so the fair
  reference flushes curl's file too; the ratio against bare curl, which leaves the file
  in the page cache, is shown beside it, and so is the download-and-hash part alone
  (before the final fsync).
- peak memory growth of the receiving process. Target: < 32 MiB.
- CPU time of a poll answered 304 (median of 200). Target: < 5 ms.
- bytes nginx sends twice when `passeur receive` is killed (SIGKILL) at a random point of
  the download and run again. Target: ≤ 1 MiB.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from bench.common import (
    MIB,
    PeakMemory,
    Row,
    common_arguments,
    finish,
    fmt_mib,
    fmt_ms,
    fmt_rate,
    fmt_ratio,
    median,
    print_table,
    run_child,
    scratch,
)
from daemon.exchange import Source, pack_exchange
from daemon.keys import SigningKey
from daemon.manifest import Manifest
from daemon.naming import Kind
from daemon.queue import RESUMABLE_PREFIX
from daemon.web.publish import Repository
from tests.helpers import BASE_DATE, DOSSIER, DOSSIER_NAME, make_home
from tests.nginx import Nginx

USER, PASSWORD = "bench", "bench-password"


def make_update(work: Path, key: SigningKey, size_mib: int) -> Path:
    """Pack one stored (uncompressed) update of `size_mib` MiB of random data."""
    content = work / "content.bin"
    with open(content, "wb") as out:
        for _ in range(size_mib):
            out.write(os.urandom(MIB))
    manifest = Manifest(kind=Kind.UPDATE, dossier=DOSSIER, dossier_name=DOSSIER_NAME,
                        generated_at=BASE_DATE, fiscal_year_start=date(2020, 1, 1),
                        fiscal_year_end=date(2020, 12, 31), sequence=1, key_id="",
                        files=())
    out_dir = work / "packed"
    out_dir.mkdir()
    update = pack_exchange(out_dir, key, manifest, [Source("ecritures.bin", content)],
                           store=True)
    content.unlink()
    return update


def keyring_env(work: Path) -> dict[str, str]:
    """Select a file keyring in the scratch folder (the farmer's password for nginx)."""
    return {"PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
            "XDG_DATA_HOME": str(work / "xdg")}


def keyring_file(work: Path) -> Path:
    return work / "xdg" / "python_keyring" / "keyring_pass.cfg"


def new_home(work: Path, key: SigningKey, name: str, url: str) -> Path:
    """Make a configured passeur home pointed at the endpoint."""
    home = make_home(work / name, key)
    config = home.root / "config.toml"
    config.write_text(config.read_text() + f'\n[sources.web]\nurl = "{url}"\n')
    return home.root


# ---------------------------------------------------------------- child process side


def child(argv: list[str]) -> int:
    """Build the poller on a home, then measure one full poll, or repeated 304 polls."""
    from daemon.bus import EventBus
    from daemon.context import Context
    from daemon.events import DownloadProgress, Event, UpdateFound
    from daemon.web.credentials import CredentialStore
    from daemon.web.poller import WebPoller
    from tests.faultserver import file_keyring

    mode, home, keyring = argv[0], Path(argv[1]), Path(argv[2])
    ctx = Context(home)
    bus = EventBus()
    marks: dict[str, float] = {}

    def note(event: Event) -> None:
        if isinstance(event, UpdateFound):
            marks["found"] = event.at
        if isinstance(event, DownloadProgress) and event.received == event.total:
            marks["downloaded"] = event.at

    bus.subscribe("bench", note)
    poller = WebPoller(ctx.config, ctx.paths, ctx.queue, ctx.intake, bus,
                       CredentialStore(file_keyring(keyring)))
    result: dict[str, float] = {}
    if mode == "poll":
        with PeakMemory() as memory:
            start = time.perf_counter()
            report = poller.poll_once()
            result["seconds"] = time.perf_counter() - start
        bus.close()
        assert report.queued, report.failures
        result["download_seconds"] = marks["downloaded"] - marks["found"]
        result["memory_growth"] = memory.growth
    else:
        poller.poll_once()  # warm: the index is cached, the connection pooled
        samples = []
        for _ in range(200):
            cpu = time.process_time()
            report = poller.poll_once()
            samples.append(time.process_time() - cpu)
            assert report.ok, report.failures
            assert not report.changed
        bus.close()
        result["median_cpu"] = statistics.median(samples)
        result["p90_cpu"] = sorted(samples)[int(len(samples) * 0.9)]
    poller.stop()
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------- parent side


def curl_seconds(url: str, target: Path) -> tuple[float, float]:
    """Time curl fetching the file to disk, then that plus `sync FILE` (the references).

    passeur must flush a download to the disk before it queues it (temp → fsync → rename);
    curl does not, so the second figure is curl made as durable as passeur.
    """
    start = time.perf_counter()
    subprocess.run(["curl", "-sSf", "-u", f"{USER}:{PASSWORD}", "-o", str(target), url],
                   check=True)
    fetched = time.perf_counter()
    subprocess.run(["sync", str(target)], check=True)
    synced = time.perf_counter()
    target.unlink()
    return fetched - start, synced - start


def resume_overlap(work: Path, key: SigningKey, nginx: Nginx, size: int,
                   rng: random.Random) -> tuple[int, int, int]:
    """Kill `passeur receive` at a random point, run it again.

    Returns (bytes held when killed, offset of the Range request, bytes nginx sent twice).
    """
    home = new_home(work, key, "home-resume", nginx.base_url)
    env = dict(os.environ, PASSEUR_HOME=str(home), **keyring_env(work))
    stamp = BASE_DATE.strftime("%Y%m%d%H%M%S")
    part = (home / "data" / "spool" / ".staging"
            / f"{RESUMABLE_PREFIX}web-{DOSSIER}-{DOSSIER}-{stamp}.wwz.part")
    cut = rng.randint(size // 10, size * 9 // 10)
    lines_before = len(nginx.access_log())
    process = subprocess.Popen([sys.executable, "-m", "daemon.cli", "receive"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    held = 0
    while process.poll() is None:
        held = part.stat().st_size if part.exists() else 0
        if held >= cut:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.0005)
    if process.wait() == 0:
        raise SystemExit(f"resume: the download ended before the cut, {part} never grew")
    subprocess.run([sys.executable, "-m", "daemon.cli", "receive"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(home / "data" / "spool", ignore_errors=True)
    requests = [line for line in nginx.access_log()[lines_before:] if ".wwz" in line]
    assert len(requests) == 2, requests
    sent = [int(match[1]) for line in requests if (match := re.search(r"sent=(\d+)", line))]
    resumed = re.search(r"range=bytes=(\d+)-", requests[-1])
    assert resumed is not None, requests
    return held, int(resumed[1]), sum(sent) - size


def cut_and_resume(work: Path, nginx: Nginx, name: str, size: int,
                   rng: random.Random) -> tuple[int, int]:
    """Cut a download at a random point (connection closed by the client), resume it.

    Returns (bytes received before the cut, bytes received again by the resume).
    """
    import threading

    from daemon.fsutil import sha256_file
    from daemon.web.client import WebClient
    from daemon.web.credentials import CredentialStore
    from daemon.web.failures import WebError
    from daemon.web.index import IndexEntry
    from tests.faultserver import file_keyring

    sha256 = sha256_file(nginx.repo / DOSSIER / name)
    entry = IndexEntry(name, 1, size, sha256)
    client = WebClient(nginx.base_url, CredentialStore(file_keyring(keyring_file(work))))
    part = work / "cut.part"
    cut = rng.randint(size // 10, size * 9 // 10)
    stop = threading.Event()
    received: list[int] = [0, 0]

    def first(n: int) -> None:
        received[0] = n
        if n >= cut:
            stop.set()

    with contextlib.suppress(WebError):
        client.download(DOSSIER, entry, part, first, stop)
    offset = part.stat().st_size
    seen: list[int] = []
    assert client.download(DOSSIER, entry, part, seen.append).hexdigest() == sha256
    client.close()
    part.unlink()
    received[1] = seen[-1] - offset
    return received[0], received[0] + received[1] - size


def measure(work: Path, size_mib: int, repeat: int) -> list[Row]:
    key = SigningKey.generate()
    print(f"packing a {size_mib} MiB update…", flush=True)
    update = make_update(work, key, size_mib)
    nginx = Nginx(work / "nginx")
    Repository(nginx.repo, key).publish(update)
    size = update.stat().st_size
    update.unlink()
    nginx.add_user(DOSSIER, USER, PASSWORD)
    nginx.start()
    try:
        return _measure(work, key, nginx, update.name, size, repeat)
    finally:
        nginx.stop()


def _measure(work: Path, key: SigningKey, nginx: Nginx, name: str, size: int,
             repeat: int) -> list[Row]:
    url = f"{nginx.base_url}{DOSSIER}/{name}"
    subprocess.run([sys.executable, "-m", "daemon.cli", "login", DOSSIER, "--user", USER,
                    "--password-stdin", "--no-check"], input=PASSWORD + "\n", text=True,
                   env=dict(os.environ, PASSEUR_HOME=str(work / "login"),
                            **keyring_env(work)), check=True, stdout=subprocess.DEVNULL)
    keyring = str(keyring_file(work))
    curl_s: list[float] = []
    durable_s: list[float] = []
    poll_s: list[float] = []
    download_s: list[float] = []
    growth: list[float] = []
    curl_seconds(url, work / "warm.out")  # the file into the page cache, for both
    for round_number in range(1, repeat + 1):
        plain, durable = curl_seconds(url, work / "curl.out")
        curl_s.append(plain)
        durable_s.append(durable)
        home = new_home(work, key, f"home-{round_number}", nginx.base_url)
        figures = run_child("bench.web", "poll", str(home), keyring)
        shutil.rmtree(home / "data" / "spool", ignore_errors=True)
        poll_s.append(figures["seconds"])
        download_s.append(figures["download_seconds"])
        growth.append(figures["memory_growth"])
        print(f"round {round_number}: curl {curl_s[-1]:.2f} s (+ sync {durable_s[-1]:.2f} s), "
              f"passeur {poll_s[-1]:.2f} s "
              f"(download+hash {download_s[-1]:.2f} s)", flush=True)
    home_304 = new_home(work, key, "home-304", nginx.base_url)
    not_modified = run_child("bench.web", "304", str(home_304), keyring)
    shutil.rmtree(home_304 / "data" / "spool", ignore_errors=True)
    held, resumed_at, overlap = resume_overlap(work, key, nginx, size, random.Random())
    cut_at, again = cut_and_resume(work, nginx, name, size, random.Random())

    curl_med, poll_med, download_med = median(curl_s), median(poll_s), median(download_s)
    durable_med = median(durable_s)
    return [
        Row(f"curl fetches {fmt_mib(size)} (reference)", fmt_rate(size, curl_med)),
        Row("curl fetches, then `sync FILE` (durable reference)", fmt_rate(size, durable_med)),
        Row("passeur download + hash (before the final fsync)", fmt_rate(size, download_med),
            fmt_rate(size, curl_med), fmt_ratio(curl_med / download_med)),
        Row("passeur download + verify (poll → queued, durable)", fmt_rate(size, poll_med),
            f"curl + sync {fmt_rate(size, durable_med)}", fmt_ratio(durable_med / poll_med),
            "≥ 0.90×", durable_med / poll_med >= 0.9),
        Row("  the same against bare curl (file left in the page cache)",
            fmt_rate(size, poll_med), fmt_rate(size, curl_med), fmt_ratio(curl_med / poll_med)),
        Row("peak memory growth while receiving", fmt_mib(max(growth)), "", "", "< 32 MiB",
            max(growth) < 32 * MIB),
        Row("poll answered 304, CPU (median of 200)", fmt_ms(not_modified["median_cpu"]),
            "", "", "< 5 ms", not_modified["median_cpu"] < 0.005),
        Row("  p90", fmt_ms(not_modified["p90_cpu"])),
        Row(f"cut at {fmt_mib(cut_at)} then resumed: received twice", fmt_mib(again),
            "", "", "≤ 1 MiB", again <= MIB),
        Row(f"SIGKILL at {fmt_mib(held)}, resumed at {fmt_mib(resumed_at)}: nginx sent "
            "twice (incl. socket buffers)", fmt_mib(overlap)),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with `child`, one measurement in a fresh process)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = common_arguments(__doc__ or "")
    parser.add_argument("--size-mib", type=int, default=None,
                        help="size of the update (1024, or 128 with --quick)")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        raise SystemExit("missing reference tool: curl (apt-get install -y curl)")
    size_mib = args.size_mib or (128 if args.quick else 1024)
    repeat = args.repeat or (1 if args.quick else 3)
    with scratch("web") as work:
        rows = measure(work, size_mib, repeat)
    print_table(f"web source: {size_mib} MiB update from nginx on 127.0.0.1", rows)
    return finish("bench.web", rows, "quick" if args.quick else "")


if __name__ == "__main__":
    sys.exit(main())
