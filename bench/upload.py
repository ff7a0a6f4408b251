"""Benchmark of the web send (daemon/send/web.py) against `curl -T`, on a local nginx.

    python -m bench.upload [--size-mib 1024] [--repeat 7] [--quick]

One `.wvz` of --size-mib (1024, or 200 with --quick) is uploaded to nginx on 127.0.0.1
(`dav_methods PUT`, `auth_basic`, as in docs/nginx-example.conf), alternating with
`curl -T` putting the same file whole to the same server (the reference, same run):
- throughput of the part protocol (parts of the size a file of this size gets: 32 MiB
  for 1 GiB; hashed by the packer; then the signed part list) against curl's single PUT.
  Target: ≥ 0.9 × curl, the median of the rounds' ratios (the two runs of a round are
  side by side, so a burst of the host's load moves both; each goes first every other
  round). The CPU time the host gave to other machines over the runs is printed: on a
  busy virtual machine (steal above a few percent) both rates drop and the ratio moves.
- peak memory growth of the sending process. Target: < 32 MiB.
- resume after a cut: the sending process is killed (SIGKILL) at a random point and run
  again; the parts nginx received twice are counted in its access log. Target: ≤ 1.
- for information, where the difference goes: curl putting the same parts one
  `PUT` each on one connection (the part protocol's round trips, without passeur), and
  the SHA-256 of the whole file in this process (what hashing each part costs; curl
  hashes nothing).

The file is in the page cache for both; what nginx writes is removed after each run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    MIB,
    CpuSteal,
    PeakMemory,
    Row,
    common_arguments,
    finish,
    fmt_mib,
    fmt_rate,
    fmt_ratio,
    median,
    paired_ratio,
    print_table,
    require_tools,
    round_ratios,
    scratch,
)
from daemon.keys import SigningKey
from daemon.send.base import part_size_for
from daemon.send.parts import part_count
from daemon.web.publish import Repository
from tests.helpers import DOSSIER
from tests.nginx import Nginx
from tests.uploads import make_wvz

USER, PASSWORD = "bench", "bench-password"


# ---------------------------------------------------------------- child process side


def child(argv: list[str]) -> int:
    """Send the file once with the web destination; print time and memory growth."""
    from daemon.send.web import WebDestination
    from daemon.web.credentials import CredentialStore
    from tests.faultserver import file_keyring
    from tests.uploads import job_for

    url, keyring, key_file, state_dir, file = argv
    destination = WebDestination(url, CredentialStore(file_keyring(Path(keyring))),
                                 SigningKey.load(Path(key_file)), Path(state_dir))
    job = job_for(Path(file))  # the packer hands the SHA-256 over; not timed
    with PeakMemory() as memory:
        start = time.perf_counter()
        sent = destination.send(job, lambda done, total: None, threading.Event())
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "memory_growth": memory.growth,
                      "parts_sent": sent.detail["parts_sent"]}))
    return 0


# ---------------------------------------------------------------- parent side


class Bench:
    """The file, the server and the farmer's credentials of one benchmark run."""

    def __init__(self, work: Path, size_mib: int) -> None:
        self.work = work
        self.farmer = SigningKey.generate()
        self.key_file = work / "farmer.pem"
        self.farmer.save(self.key_file)
        print(f"packing a {size_mib} MiB dossier file…", flush=True)
        self.file = make_wvz(work / "packed", self.farmer, size_mib * MIB)
        self.size = self.file.stat().st_size
        self.keyring = work / "keyring.cfg"
        from daemon.web.credentials import BASIC, Credential, CredentialStore
        from tests.faultserver import file_keyring

        CredentialStore(file_keyring(self.keyring)).set(DOSSIER,
                                                        Credential(BASIC, PASSWORD, USER))
        # A worker per core, as `worker_processes auto` (the usual setting) gives a server:
        # the relay's two connections are then taken in parallel, as on a real site.
        self.nginx = Nginx(work / "nginx", max_body="4g", workers=os.cpu_count() or 1)
        self.nginx.add_user(DOSSIER, USER, PASSWORD)
        Repository(self.nginx.repo, SigningKey.generate()).refresh(DOSSIER)
        self.uploads = self.nginx.repo / DOSSIER / "upload"
        self.state = work / "state"

    def server_cpu(self) -> float:
        """Return the CPU seconds nginx's workers have used so far."""
        assert self.nginx.process is not None
        workers = psutil.Process(self.nginx.process.pid).children()
        return sum(worker.cpu_times().user + worker.cpu_times().system
                   for worker in workers)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "bench.upload", "child", self.nginx.base_url,
                str(self.keyring), str(self.key_file), str(self.state), str(self.file)]

    def clean(self) -> None:
        """Forget every upload, on the server and in the sender's notes."""
        shutil.rmtree(self.uploads, ignore_errors=True)
        self.uploads.mkdir()
        shutil.rmtree(self.state, ignore_errors=True)

    def curl(self) -> float:
        url = f"{self.nginx.base_url}{DOSSIER}/upload/curl/{self.file.name}"
        start = time.perf_counter()
        subprocess.run(["curl", "-sSf", "-u", f"{USER}:{PASSWORD}", "-T", str(self.file),
                        "-o", os.devnull, url], check=True)
        seconds = time.perf_counter() - start
        self.clean()
        return seconds

    def curl_parts(self, folder: Path) -> float:
        """Time curl putting the file's parts, one PUT each, on one connection."""
        part_size = part_size_for(self.size)
        count = part_count(self.size, part_size)
        if not folder.exists():
            folder.mkdir()
            with open(self.file, "rb") as source:
                for number in range(1, count + 1):
                    (folder / f"{number:05d}").write_bytes(source.read(part_size))
        argv = ["curl", "-sSf", "-u", f"{USER}:{PASSWORD}"]
        for number in range(1, count + 1):
            argv += ["-T", str(folder / f"{number:05d}"), "-o", os.devnull,
                     f"{self.nginx.base_url}{DOSSIER}/upload/curl/part-{number:05d}"]
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        seconds = time.perf_counter() - start
        self.clean()
        return seconds

    def sha256_seconds(self) -> float:
        """Time hashing the whole file once with hashlib (the file is in the page cache)."""
        start = time.perf_counter()
        with open(self.file, "rb") as handle:
            hashlib.file_digest(handle, "sha256")
        return time.perf_counter() - start

    def passeur(self) -> dict[str, float]:
        result = subprocess.run(self.argv(), check=True, capture_output=True, text=True)
        figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
        self.clean()
        return figures

    def resume(self, rng: random.Random) -> tuple[int, int, int]:
        """Kill the sender at a random point, run it again.

        Returns (parts acknowledged at the kill, parts of the file, parts sent twice).
        """
        count = part_count(self.size, part_size_for(self.size))
        target = rng.randint(1, count - 2)
        note = self.state / f"{self.file.name}.json"
        before = len(self.nginx.access_log())
        process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        acknowledged = 0
        while process.poll() is None and acknowledged < target:
            try:
                acknowledged = len(json.loads(note.read_bytes())["parts"])
            except (OSError, ValueError, KeyError):
                acknowledged = 0
            time.sleep(0.001)
        # Somewhere inside the next part: a random point, not a part's edge.
        time.sleep(rng.uniform(0.0, 0.02))
        os.kill(process.pid, signal.SIGKILL)
        if process.wait() == 0:
            raise SystemExit("resume: the upload ended before the cut")
        subprocess.run(self.argv(), check=True, stdout=subprocess.DEVNULL)
        puts: dict[str, int] = {}
        for line in self.nginx.access_log()[before:]:
            fields = line.split(" ")
            if fields[0] == "PUT" and "/part-" in fields[1]:
                puts[fields[1]] = puts.get(fields[1], 0) + 1
        self.clean()
        assert len(puts) == count, puts
        return acknowledged, count, sum(n - 1 for n in puts.values())


def measure(work: Path, size_mib: int, repeat: int) -> list[Row]:
    bench = Bench(work, size_mib)
    bench.nginx.start()
    try:
        bench.curl()  # warm: the file in the page cache, nginx's first connection
        curl_s: list[float] = []
        ours_s: list[float] = []
        server: dict[str, list[float]] = {"curl": [], "passeur": []}  # nginx's CPU seconds
        parts_s: list[float] = []
        hash_s: list[float] = []
        growth: list[float] = []
        runs: dict[str, Callable[[], Any]] = {"curl": bench.curl, "passeur": bench.passeur}
        with CpuSteal() as steal:
            for round_number in range(1, repeat + 1):
                results: dict[str, Any] = {}
                # Each goes first every other round: neither always gets the warmer start.
                for who in ("curl", "passeur") if round_number % 2 else ("passeur", "curl"):
                    before = bench.server_cpu()
                    results[who] = runs[who]()
                    server[who].append(bench.server_cpu() - before)
                curl_s.append(results["curl"])
                figures = results["passeur"]
                ours_s.append(figures["seconds"])
                growth.append(figures["memory_growth"])
                parts_s.append(bench.curl_parts(work / "curl-parts"))
                hash_s.append(bench.sha256_seconds())
                print(f"round {round_number}: curl -T {curl_s[-1]:.2f} s, "
                      f"passeur {ours_s[-1]:.2f} s ({int(figures['parts_sent'])} parts), "
                      f"curl in parts {parts_s[-1]:.2f} s, SHA-256 {hash_s[-1]:.2f} s",
                      flush=True)
        shutil.rmtree(work / "curl-parts", ignore_errors=True)
        acknowledged, count, twice = bench.resume(random.Random())
    finally:
        bench.nginx.stop()
    size = bench.size
    curl_med, ours_med = median(curl_s), median(ours_s)
    parts_med, hash_med = median(parts_s), median(hash_s)
    rounds = round_ratios(curl_s, ours_s)
    ours_ratio = median(rounds)  # the paired ratio, from the rounds already divided
    return [
        Row(f"curl -T {fmt_mib(size)} (reference)", fmt_rate(size, curl_med)),
        Row(f"passeur, {fmt_mib(part_size_for(size))} parts + signed part list",
            fmt_rate(size, ours_med), fmt_rate(size, curl_med),
            fmt_ratio(ours_ratio), "≥ 0.90×", ours_ratio >= 0.9),
        Row("  the rounds' own ratios, lowest and highest (how much the host moved them)",
            f"{min(rounds):.2f}–{max(rounds):.2f}×"),
        Row("  curl -T of the same parts, one PUT each (the protocol without passeur)",
            fmt_rate(size, parts_med), fmt_rate(size, curl_med),
            fmt_ratio(paired_ratio(curl_s, parts_s))),
        Row("  passeur against curl -T of the same parts (what passeur adds to the protocol)",
            fmt_rate(size, ours_med), fmt_rate(size, parts_med),
            fmt_ratio(paired_ratio(parts_s, ours_s))),
        Row("  SHA-256 of the file, hashlib (passeur hashes each part; curl does not)",
            fmt_rate(size, hash_med)),
        Row("  nginx's CPU time per run, passeur (reference: curl)",
            f"{median(server['passeur']):.2f} s",
            f"{median(server['curl']):.2f} s"),
        Row("CPU time the host gave to other machines meanwhile (steal)",
            f"{steal.share:.0%}"),
        Row("peak memory growth while sending", fmt_mib(max(growth)), "", "", "< 32 MiB",
            max(growth) < 32 * MIB),
        Row(f"SIGKILL after {acknowledged} of {count} parts, run again: parts sent twice",
            str(twice), "", "", "≤ 1", twice <= 1),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with `child`, one send in a fresh process)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = common_arguments(__doc__ or "")
    parser.add_argument("--size-mib", type=int, default=None,
                        help="size of the dossier file (1024, or 200 with --quick)")
    args = parser.parse_args(argv)
    require_tools("curl")
    size_mib = args.size_mib or (200 if args.quick else 1024)
    repeat = args.repeat or (1 if args.quick else 7)
    with scratch("upload") as work:
        rows = measure(work, size_mib, repeat)
    print_table(f"web send: {size_mib} MiB to nginx on 127.0.0.1 (rates: medians of "
                f"{repeat}; ratios: median of the rounds' ratios)", rows)
    return finish("bench.upload", rows, "quick" if args.quick else "")


if __name__ == "__main__":
    sys.exit(main())
