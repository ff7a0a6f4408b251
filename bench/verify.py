"""Verifying a 1 GiB exchange file against `sha256sum`, and refusing zip bombs.

Run from the repository root: `python -m bench.verify [--quick] [--repeat N]`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bench import zipbomb
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
    require_tools,
    run_child,
    scratch,
)
from daemon.errors import Rejected
from daemon.exchange import Limits, Source, pack_exchange, verify_exchange
from daemon.keys import PublicKey, SigningKey
from daemon.manifest import Manifest
from daemon.naming import Kind

THROUGHPUT_TARGET = 0.9  # × sha256sum on the same file
MEMORY_TARGET = 32 * MIB
BOMB_TIME_TARGET = 1.0
BOMB_MEMORY_TARGET = 8 * MIB

# What a big update looks like: journal entries (text, compresses about 4:1) and scanned
# documents or office files (already compressed). Shares are sixteenths of the total.
CONTENT = (
    ("ecritures.xml", 3, True),
    ("associated_documents/releves-bancaires-2020.pdf", 5, False),
    ("associated_documents/factures-2020.pdf", 4, False),
    ("situations/bilan-2020.xlsx", 2, False),
    ("entry_templates/modeles.xml", 2, True),
)
_WORDS = ("FACTURE", "AVOIR", "REGLEMENT", "CHEQUE", "VIREMENT", "PRELEVEMENT", "ENGRAIS",
          "SEMENCES", "GAZOLE", "LAIT", "CEREALES", "FERMAGE", "MSA", "COOPERATIVE")
_ACCOUNTS = (401000, 411000, 445660, 445710, 512000, 601000, 607000, 701000)


def _journal_pool(rng: random.Random, size: int) -> bytes:
    """Accounting-journal-like XML lines, about 4:1 under DEFLATE."""
    lines: list[str] = []
    total = 0
    while total < size:
        line = (
            f'<e n="{len(lines)}" j="{rng.choice(("AC", "VE", "BQ", "OD"))}"'
            f' d="2020-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"'
            f' c="{rng.choice(_ACCOUNTS) + rng.randint(0, 99)}"'
            f' l="{rng.choice(_WORDS)} {rng.randint(1, 99999)}"'
            f' m="{rng.randint(0, 99999)}.{rng.randint(0, 99):02d}"/>\n'
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


class ContentWriter:
    """Writes pseudo-random member files quickly and reproducibly."""

    def __init__(self, seed: int = 2020) -> None:
        self.rng = random.Random(seed)
        # AES-CTR is a fast deterministic stream of incompressible bytes (GB/s with AES-NI).
        self.noise = Cipher(algorithms.AES(bytes(32)), modes.CTR(bytes(16))).encryptor()
        pool = _journal_pool(self.rng, 8 * MIB)
        self.pool = pool + pool[:MIB]  # so that any offset can yield a whole chunk
        self.pool_size = len(pool)
        self.zeros = bytes(MIB)

    def write(self, path: Path, size: int, compressible: bool) -> None:
        """Write `size` bytes of text-like or incompressible data to `path`."""
        with open(path, "wb") as out:
            left = size
            while left:
                step = min(left, MIB)
                out.write(self._chunk(compressible)[:step])
                left -= step

    def _chunk(self, compressible: bool) -> bytes:
        if not compressible:
            return self.noise.update(self.zeros)
        # Offsets far apart in the pool: DEFLATE's 32 kB window never sees a repeat.
        start = self.rng.randrange(self.pool_size)
        return self.pool[start:start + MIB]


def build_exchange(folder: Path, key: SigningKey, size: int, store: bool) -> Path:
    """Pack a signed update of about `size` bytes of content, then delete the sources."""
    sources_dir = folder / ("sources-stored" if store else "sources-deflated")
    sources_dir.mkdir()
    writer = ContentWriter()
    sources: list[Source] = []
    modules: dict[str, tuple[str, ...]] = {}
    for inner, share, compressible in CONTENT:
        path = sources_dir / inner.replace("/", "_")
        writer.write(path, size * share // 16, compressible)
        sources.append(Source(inner, path))
        module, sep, _ = inner.partition("/")
        if sep:
            modules[module] = (*modules.get(module, ()), inner)
    manifest = Manifest(
        kind=Kind.UPDATE, dossier="8502182", dossier_name="GAEC LE GUYON",
        generated_at=datetime(2020, 10, 27, 17, 20, 21, tzinfo=timezone(timedelta(hours=1))),
        fiscal_year_start=date(2020, 1, 1), fiscal_year_end=date(2020, 12, 31), sequence=1,
        key_id="", files=(), modules=modules,
    )
    out = folder / ("stored" if store else "deflated")
    out.mkdir()
    start = time.perf_counter()
    path = pack_exchange(out, key, manifest, sources, store=store)
    packing = time.perf_counter() - start
    for source in sources:
        source.file.unlink()
    sources_dir.rmdir()
    print(f"packed {path.name} ({'stored' if store else 'deflated'}):"
          f" {fmt_mib(size)} of content → {fmt_mib(path.stat().st_size)} in {packing:.1f} s")
    return path


# ---------------------------------------------------------------- child process side


def child(argv: list[str]) -> int:
    """Verify one file in this fresh process; print time, memory growth and outcome as JSON."""
    path, key_text = Path(argv[0]), argv[1]
    key = PublicKey.from_text(key_text)
    trusted = {key.key_id: key}
    code = None
    with PeakMemory() as memory:
        start = time.perf_counter()
        try:
            verify_exchange(path, trusted, path.name)
        except Rejected as rejection:
            code = str(rejection.code)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "growth": memory.growth, "code": code}))
    return 0


@dataclass(frozen=True)
class ChildResult:
    """What one verification in a child process measured."""

    seconds: float
    growth: int
    code: str | None


def verify_in_child(path: Path, key: SigningKey) -> ChildResult:
    """Verify `path` in a new interpreter, whose memory baseline is taken after imports."""
    result = run_child("bench.verify", str(path), key.public.text)
    return ChildResult(float(result["seconds"]), int(result["growth"]), result["code"])


# ---------------------------------------------------------------- measurements


@dataclass
class Samples:
    """Timings and memory of repeated runs."""

    verify: list[float]
    growth: list[int]
    references: dict[str, list[float]]
    codes: set[str | None]


def measure(path: Path, key: SigningKey, repeat: int, references: dict[str, list[str]],
            references_accept: bool) -> Samples:
    """Alternate the verifier and each reference command, `repeat` times each.

    A first run of each reference warms the page cache and checks that it accepts the
    file (or refuses it, for a bomb): a reference that fails fast would flatter nothing.
    """
    samples = Samples([], [], {name: [] for name in references}, set())
    for name, argv in references.items():
        accepted = _run_reference(argv) == 0
        if accepted != references_accept:
            raise SystemExit(f"{name} {'refused' if references_accept else 'accepted'} {path}")
    for _ in range(repeat):
        for name, argv in references.items():
            start = time.perf_counter()
            _run_reference(argv)
            samples.references[name].append(time.perf_counter() - start)
        result = verify_in_child(path, key)
        samples.verify.append(result.seconds)
        samples.growth.append(result.growth)
        samples.codes.add(result.code)
    return samples


def _run_reference(argv: list[str]) -> int:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False).returncode


def exchange_rows(label: str, path: Path, content: int, key: SigningKey, repeat: int,
                  with_target: bool) -> list[Row]:
    """Verify an exchange file beside sha256sum, openssl and unzip -t on the same file."""
    size = path.stat().st_size
    references = {
        "sha256sum": ["sha256sum", str(path)],
        # The same SHA-256 code the verifier uses (OpenSSL): the ceiling for hashing.
        "openssl": ["openssl", "dgst", "-sha256", str(path)],
    }
    if not with_target:  # Info-ZIP inflates and checks CRCs: the reference for DEFLATE.
        references["unzip -tq"] = ["unzip", "-tq", str(path)]
    samples = measure(path, key, repeat, references, references_accept=True)
    if samples.codes != {None}:
        raise SystemExit(f"{path.name} was refused: {samples.codes}")
    verify = median(samples.verify)
    growth = max(samples.growth)
    what = f"verify {label} ({fmt_mib(size)} file, {fmt_mib(content)} content)"
    rows: list[Row] = []
    for name, times in samples.references.items():
        reference = median(times)
        is_target = with_target and name == "sha256sum"
        rows.append(Row(
            what if not rows else f"  same, vs {name}", fmt_rate(size, verify),
            f"{name} {fmt_rate(size, reference)}", fmt_ratio(reference / verify),
            f"≥ {THROUGHPUT_TARGET:.2f}×" if is_target else "",
            reference / verify >= THROUGHPUT_TARGET if is_target else None))
    rows.append(Row(f"  same, peak RSS growth (worst of {repeat})", fmt_mib(growth), "", "",
                    f"< {fmt_mib(MEMORY_TARGET)}", growth < MEMORY_TARGET))
    return rows


def bomb_rows(bomb: zipbomb.Bomb, key: SigningKey, repeat: int) -> list[Row]:
    """Time the refusal of a zip bomb beside Info-ZIP's own refusal of it."""
    samples = measure(bomb.path, key, repeat, {"unzip -tq": ["unzip", "-tq", str(bomb.path)]},
                      references_accept=False)
    codes = sorted(str(code) for code in samples.codes)
    refused = None not in samples.codes
    seconds = median(samples.verify)
    unzip = median(samples.references["unzip -tq"])
    growth = max(samples.growth)
    label = (f"refuse {bomb.path.stem} ({bomb.file_size / 1000:.0f} kB → "
             f"{bomb.declared_size / 1e9:.2f} GB, {bomb.members} members)")
    return [
        Row(label, f"{fmt_ms(seconds)} [{', '.join(codes)}]", f"unzip -tq {fmt_ms(unzip)}",
            fmt_ratio(unzip / seconds), f"refused < {BOMB_TIME_TARGET:.0f} s",
            refused and seconds < BOMB_TIME_TARGET),
        Row(f"  same, peak RSS growth (worst of {repeat})", fmt_mib(growth), "", "",
            f"< {fmt_mib(BOMB_MEMORY_TARGET)}", growth < BOMB_MEMORY_TARGET),
    ]


def build_bombs(folder: Path) -> list[zipbomb.Bomb]:
    """Build the two bombs after checking that the construction really inflates."""
    mini = zipbomb.write_bomb(folder / "mini.zip", members=20, noise=64, zeros=200_000)
    zipbomb.check_is_real(mini)
    max_ratio = Limits().max_ratio
    capped = zipbomb.ratio_capped(folder / "overlap-under-ratio-cap.zip", max_ratio)
    if capped.largest_ratio >= max_ratio:
        raise SystemExit(f"the capped bomb reaches {capped.largest_ratio:.0f}:1")
    return [zipbomb.fifield_small(folder / "zbsm-like.zip"), capped]


def main(argv: list[str] | None = None) -> int:
    """Run the verification benchmark and print its table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = common_arguments(__doc__ or "")
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="content of the stored exchange, in MiB (default 1024)")
    parser.add_argument("--deflated-mib", type=int, default=256,
                        help="content of the deflated exchange, in MiB (default 256:"
                             " DEFLATE packs at about 20 MiB/s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mib, args.deflated_mib = min(args.size_mib, 128), min(args.deflated_mib, 32)
    repeat = args.repeat or (3 if args.quick else 5)
    require_tools("sha256sum", "openssl", "unzip")
    rows: list[Row] = []
    key = SigningKey.generate()
    with scratch("verify") as folder:
        stored = build_exchange(folder, key, args.size_mib * MIB, store=True)
        rows += exchange_rows("stored", stored, args.size_mib * MIB, key, repeat,
                              with_target=True)
        stored.unlink()
        deflated = build_exchange(folder, key, args.deflated_mib * MIB, store=False)
        rows += exchange_rows("deflated", deflated, args.deflated_mib * MIB, key, repeat,
                              with_target=False)
        deflated.unlink()
        for bomb in build_bombs(folder):
            rows += bomb_rows(bomb, key, repeat)
    print_table(f"verify_exchange (median of {repeat}; memory: worst run;"
                " ratio = reference time / measured time)", rows)
    return finish("bench.verify", rows, "quick" if args.quick else "")


if __name__ == "__main__":
    sys.exit(main())
