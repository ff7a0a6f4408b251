"""Shared helpers of the benchmarks: scratch folders, timing, peak memory and result tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
SCRATCH_ENV = "PASSEUR_BENCH_DIR"
MIB = 1 << 20


def scratch_root() -> Path:
    """Return where benchmarks write scratch data: $PASSEUR_BENCH_DIR or bench/out/."""
    return Path(os.environ.get(SCRATCH_ENV) or OUT)


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """Yield a fresh scratch folder on the benchmark disk, removed afterwards."""
    root = scratch_root()
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    print(f"scratch: {folder} ({filesystem_of(folder)})")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def filesystem_of(path: Path) -> str:
    """Return the file system type holding `path` (tmpfs would make fsync free)."""
    best, kind = "", "unknown"
    target = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            fields = line.split()
            mount_point = fields[4]
            fs_type = fields[fields.index("-") + 1]
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, fs_type
    return kind


def median(values: Sequence[float]) -> float:
    """Return the median (the figure reported, because the machine is shared and noisy)."""
    return statistics.median(values)


def round_ratios(reference: Sequence[float], measured: Sequence[float]) -> list[float]:
    """Return each round's reference time ÷ measured time."""
    return [r / m for r, m in zip(reference, measured, strict=True)]


def paired_ratio(reference: Sequence[float], measured: Sequence[float]) -> float:
    """Return the median over rounds of reference time ÷ measured time, each round's two
    runs taken side by side: a burst of load on the host hits both runs of a round, where
    it would move only one of two separate medians."""
    return statistics.median(round_ratios(reference, measured))


class CpuSteal:
    """Share of this machine's CPU time the host gave to others over a block (a virtual
    machine's "steal" in /proc/stat; 0 elsewhere): above a few percent, throughput
    figures move with the neighbours' load."""

    def __init__(self) -> None:
        self.share = 0.0
        self._start: tuple[int, int] = (0, 0)

    @staticmethod
    def _ticks() -> tuple[int, int]:
        """Return (stolen, total) CPU ticks since boot."""
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = [int(value) for value in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return 0, 0
        # user nice system idle iowait irq softirq steal [guest guest_nice: inside user]
        return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])

    def __enter__(self) -> CpuSteal:
        self._start = self._ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        stolen, total = (now - then for now, then in zip(self._ticks(), self._start,
                                                         strict=True))
        self.share = stolen / total if total > 0 else 0.0


def timed(action: Callable[[], object]) -> float:
    """Run `action` once and return its wall time in seconds."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_quiet(argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> float:
    """Run a command to completion, output discarded, and return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def run_child(module: str, *args: str) -> dict[str, Any]:
    """Run `python -m module child ARGS` and return the JSON object it prints last."""
    result = subprocess.run(
        [sys.executable, "-m", module, "child", *args],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    value: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return value


def require_tools(*names: str) -> None:
    """Stop with a clear message when a reference tool is not installed."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise SystemExit(f"missing reference tools: {', '.join(missing)} (install them with apt)")


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


class PeakMemory:
    """Peak resident memory growth of this process over a block, in bytes.

    `ru_maxrss` is useless here: Linux carries the parent's high-water mark over fork and
    exec, so a child started by a big parent reports the parent's size. The kernel's VmHWM
    belongs to the current address space and can be reset to the current RSS by writing 5
    to /proc/self/clear_refs, so growth = VmHWM after - VmRSS before.
    """

    def __init__(self) -> None:
        self.before = 0
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
        self.before = _proc_status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = _proc_status_kib("VmHWM") * 1024

    @property
    def growth(self) -> int:
        """Return how far the resident set rose above its size at the start of the block."""
        return max(0, self.peak - self.before)


def common_arguments(description: str) -> argparse.ArgumentParser:
    """Return a parser with the options every benchmark accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=None,
                        help="repetitions per measurement (the median is reported)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller data and fewer repetitions, for a smoke run")
    return parser


def fmt_ms(seconds: float) -> str:
    """Format a duration in milliseconds."""
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def fmt_rate(nbytes: int, seconds: float) -> str:
    """Format a throughput in MiB/s."""
    return f"{nbytes / MIB / seconds:.0f} MiB/s"


def fmt_mib(nbytes: float) -> str:
    """Format a size in MiB."""
    return f"{nbytes / MIB:.1f} MiB"


def fmt_ratio(value: float) -> str:
    """Format a ratio."""
    return f"{value:.2f}×"


@dataclass(frozen=True)
class Row:
    """One line of a result table; `passed` is None for a figure without a target."""

    measurement: str
    value: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        """Return PASS, FAIL or info."""
        return "info" if self.passed is None else "PASS" if self.passed else "FAIL"


_HEADERS = ("measurement", "value", "reference", "ratio", "target", "result")


def print_table(title: str, rows: Sequence[Row]) -> None:
    """Print rows as an aligned text table under a title."""
    cells = [_HEADERS] + [
        (r.measurement, r.value, r.reference, r.ratio, r.target, r.verdict) for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(_HEADERS))]
    print(f"\n== {title}")
    for index, line in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
              .rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def finish(name: str, rows: Sequence[Row], note: str = "") -> int:
    """Print the SUMMARY line bench/run collects and return the exit status (1 on a FAIL)."""
    passed = sum(r.passed is True for r in rows)
    failed = sum(r.passed is False for r in rows)
    suffix = f" ({note})" if note else ""
    print(f"\nSUMMARY {name}: {passed} PASS, {failed} FAIL{suffix}")
    return 1 if failed else 0
