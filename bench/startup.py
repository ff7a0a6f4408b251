"""Start-up wall time of `passeur show FILE` and `passeur queue`, and their slowest imports.

Run from the repository root: `python -m bench.startup [--quick] [--repeat N]`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from bench.common import (
    Row,
    common_arguments,
    finish,
    fmt_ms,
    fmt_ratio,
    median,
    print_table,
    run_quiet,
    scratch,
)
from daemon.context import Context
from daemon.exchange import Source, pack_exchange
from daemon.keys import SigningKey
from daemon.manifest import Manifest
from daemon.naming import Kind
from daemon.queue import Outcome

TARGET = 0.300
DOSSIER = "8502182"
QUEUED = 20
TOP = 10


def installed_script() -> Path:
    """Return the installed `passeur` entry point (not a version manager's shim)."""
    script = Path(sysconfig.get_path("scripts")) / "passeur"
    if not script.is_file():
        raise SystemExit(f"{script} is missing: pip install -e . first")
    return script


def make_home(root: Path) -> tuple[Path, Path]:
    """Configure a home trusting a fresh key, queue a few updates; return (home, a file)."""
    key = SigningKey.generate()
    inbox, outbox = root / "inbox", root / "outbox"
    inbox.mkdir(parents=True)
    outbox.mkdir()
    (root / "config.toml").write_text(
        f'language = "fr"\n\n[app]\nname = "Isacompta"\ninbox = "{inbox}"\n\n'
        f'[[dossiers]]\nnumber = "{DOSSIER}"\nname = "GAEC LE GUYON"\n\n'
        f'[[trusted_keys]]\npublic_key = "{key.public.text}"\nlabel = "Cabinet"\n\n'
        "[sources.folders]\nwatch = []\n",
        "utf-8",
    )
    files = [pack_update(outbox, key, sequence) for sequence in range(1, QUEUED + 2)]
    context = Context(root)
    for path in files[:-1]:
        result = context.intake.import_path(path, "bench")
        if result.outcome is not Outcome.QUEUED:
            raise SystemExit(f"{path.name}: {result.outcome} {result.rejection}")
    context.queue.close()
    return root, files[-1]


def pack_update(folder: Path, key: SigningKey, sequence: int) -> Path:
    """Pack a small real update."""
    source = folder / f"ecritures-{sequence}.xml"
    source.write_bytes(b"".join(b'<e n="%d" c="411000"/>\n' % n for n in range(300)))
    manifest = Manifest(
        kind=Kind.UPDATE, dossier=DOSSIER, dossier_name="GAEC LE GUYON",
        generated_at=datetime(2020, 10, 27, 17, 0, tzinfo=timezone(timedelta(hours=1)))
        + timedelta(minutes=sequence),
        fiscal_year_start=date(2020, 1, 1), fiscal_year_end=date(2020, 12, 31),
        sequence=sequence, key_id="", files=(),
    )
    return pack_exchange(folder, key, manifest, [Source("ecritures.xml", source)])


# ---------------------------------------------------------------- -X importtime


@dataclass(frozen=True)
class Import:
    """One line of `-X importtime`: a module, its own and cumulative time, who imported it."""

    name: str
    self_us: int
    cumulative_us: int
    level: int
    via: tuple[str, ...]


def parse_importtime(stderr: str) -> list[Import]:
    """Parse `-X importtime` output; nested imports are printed before their importer."""
    raw = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own_text, cumulative_text, indented = line[len("import time:"):].split("|")
        indented = indented[1:]
        level = (len(indented) - len(indented.lstrip(" "))) // 2
        raw.append((indented.strip(), int(own_text), int(cumulative_text), level))
    imports: list[Import] = []
    following: dict[int, Import] = {}  # the nearest later line at each level
    for name, own, cumulative, level in reversed(raw):
        parent = following.get(level - 1) if level else None
        via = (parent.name, *parent.via) if parent else ()
        entry = Import(name, own, cumulative, level, via)
        following[level] = entry
        imports.append(entry)
    imports.reverse()
    return imports


def importtime(argv: Sequence[str], env: dict[str, str]) -> list[Import]:
    """Run a Python script under `-X importtime` and return what it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env,
                            capture_output=True, text=True, check=True)
    return parse_importtime(result.stderr)


def same_imports_command(imports: Sequence[Import]) -> list[str]:
    """A bare interpreter importing, in the same order, every module the command imported."""
    top_level = [entry.name for entry in imports if entry.level == 0]
    return [sys.executable, "-c", "\n".join(f"import {name}" for name in top_level)]


def print_slowest(title: str, imports: Sequence[Import], at_start: Sequence[Import]) -> None:
    """Print the TOP imports the command adds to a bare interpreter's, by their own time."""
    preloaded = {entry.name for entry in at_start}
    added = [entry for entry in imports if entry.name not in preloaded]
    total = sum(entry.self_us for entry in added)
    start = sum(entry.self_us for entry in at_start)
    print(f"\n-- {title}: {len(added)} modules, {total / 1000:.0f} ms, on top of the"
          f" {len(preloaded)} modules, {start / 1000:.0f} ms, of a bare start"
          " (times under -X importtime)")
    print(f"{'self':>8}  {'cumul.':>8}  module  ← imported by")
    for entry in sorted(added, key=lambda e: e.self_us, reverse=True)[:TOP]:
        chain = " ← ".join(entry.via[:5]) + (" ← …" if len(entry.via) > 5 else "")
        print(f"{entry.self_us / 1000:6.1f}ms  {entry.cumulative_us / 1000:6.1f}ms  {entry.name}"
              + (f"  ← {chain}" if chain else ""))
    packages: dict[str, int] = defaultdict(int)
    for entry in added:
        packages[entry.name.split(".")[0]] += entry.self_us
    heaviest = sorted(packages.items(), key=lambda item: item[1], reverse=True)[:TOP]
    print("by top-level package: " + ", ".join(f"{name} {us / 1000:.0f}ms"
                                               for name, us in heaviest))


# ---------------------------------------------------------------- measurements


def check_runs(argv: Sequence[str], env: dict[str, str]) -> None:
    """Run a command once and stop the benchmark if it fails (a failure starts fast)."""
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")


def command_rows(label: str, command: list[float], reference: list[float],
                 bare: float) -> list[Row]:
    """Rows for one command: against the same imports, and against a bare interpreter."""
    value, same = median(command), median(reference)
    return [
        Row(label, fmt_ms(value), f"same imports {fmt_ms(same)}", fmt_ratio(same / value),
            f"< {fmt_ms(TARGET)}", value < TARGET),
        Row("  same, vs bare interpreter", fmt_ms(value), f"python -c 'import sys' {fmt_ms(bare)}",
            fmt_ratio(bare / value)),
        # Negative when the noise exceeds the work: shown as measured, not clipped.
        Row("  its own work (command - same imports)", f"{(value - same) * 1000:+.0f} ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the start-up benchmark and print its table."""
    parser = common_arguments(__doc__ or "")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    repeat = args.repeat or (5 if args.quick else 15)
    script = installed_script()
    with scratch("startup") as folder:
        home, update = make_home(folder / "home")
        env = dict(os.environ, PASSEUR_HOME=str(home), LANG="fr_FR.UTF-8", LANGUAGE="",
                   LC_ALL="", LC_MESSAGES="")
        commands = {
            "passeur show FILE": [str(script), "show", str(update)],
            f"passeur queue ({QUEUED} waiting)": [str(script), "queue"],
        }
        shim = shutil.which("passeur")
        bare_argv = [sys.executable, "-c", "import sys"]
        at_start = importtime(bare_argv[1:], env)
        references = {}
        for label, command in commands.items():
            check_runs(command, env)
            imports = importtime(command, env)
            print_slowest(label, imports, at_start)
            references[label] = same_imports_command(imports)
            check_runs(references[label], env)
        bare: list[float] = []
        timings: dict[str, tuple[list[float], list[float]]] = {
            label: ([], []) for label in commands}
        via_path: list[float] = []
        for _ in range(repeat):
            bare.append(run_quiet(bare_argv, env=env))
            for label, command in commands.items():
                timings[label][1].append(run_quiet(references[label], env=env))
                timings[label][0].append(run_quiet(command, env=env))
            if shim and Path(shim).resolve() != script.resolve():
                via_path.append(run_quiet([shim, "queue"], env=env))
    rows = []
    for label, (measured, reference) in timings.items():
        rows += command_rows(label, measured, reference, median(bare))
    if via_path:
        rows.append(Row(f"passeur queue through {shim} (a shim, not passeur)",
                        fmt_ms(median(via_path))))
    print_table(f"start-up wall time of {script} (median of {repeat};"
                " ratio = reference time / measured time)", rows)
    return finish("bench.startup", rows, "quick" if args.quick else "")


if __name__ == "__main__":
    sys.exit(main())
