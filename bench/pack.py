"""Packing the dossier into a `.wvz` (`daemon.send.pack`) against Info-ZIP `zip -r -6`.

Run from the repository root: `python -m bench.pack [--quick] [--repeat N] [--size-mib N]`.

A generated dossier of about `--size-mib` MiB (default 1024; `--quick`: 100): ledgers
(journal-like XML, about 4:1 under deflate), scanned PDFs (a PDF skeleton around an
incompressible image stream), JPEG photos and office files (ZIP archives of deflated XML
and stored pictures). Its documents are dated a day ago, as a dossier's documents are when
it is sent (a document modified in the last seconds is read twice, see
daemon/send/snapshot.py).

Measured, alternating with the reference on the same data, page cache warm:
* the full pack (in a child process: time of the call, peak memory growth after imports)
  against `zip -r -6 -q` of the same folder. passeur also signs the manifest and fsyncs
  the file, which `zip` does not;
* the size of the `.wvz` against the `.zip`;
* a changed-only pack after 1 % of the documents were modified, against the full pack;
* the unchanged check of 10,000 small documents (`plan_documents` with the inventory of
  their last send, nothing changed), beside `find -printf '%s %T@'` walking the same
  folder.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
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
    require_tools,
    run_child,
    run_quiet,
    scratch,
    timed,
)
from bench.verify import ContentWriter

TIME_TARGET = 0.5  # the pack's time, × zip's
SIZE_TARGET = 1.01  # the .wvz's size, × the .zip's
MEMORY_TARGET = 64 * MIB
INCREMENTAL_TARGET = 0.1  # × the full pack's time
CHECK_TARGET = 0.5  # seconds, for SMALL_DOCUMENTS
SMALL_DOCUMENTS = 10_000
CHANGED_SHARE = 0.01
DOSSIER = "8502182"
A_DAY_AGO = time.time() - 86_400

# Share of the dossier's bytes, size range of one document (MiB), folder, extension.
MIX = (
    ("ledger", 0.30, (4.0, 16.0), "comptabilite", "xml"),
    ("scan", 0.30, (0.5, 6.0), "pieces", "pdf"),
    ("photo", 0.25, (1.0, 4.0), "photos", "jpg"),
    ("office", 0.15, (0.2, 2.0), "bureau", "docx"),
)


class Documents:
    """Writes the documents of a generated dossier."""

    def __init__(self, seed: int = 2020) -> None:
        self.rng = random.Random(seed)
        self.content = ContentWriter(seed)

    def write(self, kind: str, path: Path, size: int) -> None:
        """Write one document of `kind` and about `size` bytes, dated a day ago."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "ledger":
            self.content.write(path, size, compressible=True)
        elif kind == "scan":
            self._framed(path, size, b"%PDF-1.4\n1 0 obj << /Type /XObject /Subtype /Image "
                         b"/Filter /DCTDecode >>\nstream\n",
                         b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
        elif kind == "photo":
            self._framed(path, size, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\xff\xd9")
        else:
            self._office(path, size)
        os.utime(path, (A_DAY_AGO, A_DAY_AGO))

    def _framed(self, path: Path, size: int, head: bytes, tail: bytes) -> None:
        body = path.with_suffix(".body")
        self.content.write(body, size, compressible=False)
        with open(path, "wb") as out, open(body, "rb") as data:
            out.write(head)
            while chunk := data.read(MIB):
                out.write(chunk)
            out.write(tail)
        body.unlink()

    def _office(self, path: Path, size: int) -> None:
        text, picture = path.with_suffix(".xml"), path.with_suffix(".jpeg")
        self.content.write(text, size * 3 // 10, compressible=True)
        self._framed(picture, size * 7 // 10, b"\xff\xd8\xff\xe0", b"\xff\xd9")
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            archive.writestr("[Content_Types].xml", b"<Types/>", zipfile.ZIP_DEFLATED)
            archive.write(text, "word/document.xml", zipfile.ZIP_DEFLATED)
            archive.write(picture, "word/media/image1.jpeg", zipfile.ZIP_STORED)
        path.write_bytes(out.getvalue())
        text.unlink()
        picture.unlink()


def build_dossier(folder: Path, size: int) -> list[tuple[str, Path]]:
    """Generate a dossier of about `size` bytes; return its documents (kind, path)."""
    writer = Documents()
    documents: list[tuple[str, Path]] = []
    for kind, share, (low, high), where, extension in MIX:
        left = int(size * share)
        while left > 0:
            one = min(left, int(writer.rng.uniform(low, high) * MIB))
            path = folder / where / f"{kind}-{len(documents):04d}.{extension}"
            writer.write(kind, path, one)
            documents.append((kind, path))
            left -= one
    return documents


def build_small_documents(folder: Path) -> None:
    """Generate SMALL_DOCUMENTS documents of 1 to 8 KiB in 100 folders, dated a day ago."""
    rng = random.Random(7)
    for index in range(SMALL_DOCUMENTS):
        path = folder / f"{index // 100:03d}" / f"piece-{index:05d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1 << 10, 8 << 10)))
        os.utime(path, (A_DAY_AGO, A_DAY_AGO))


# ---------------------------------------------------------------- child process side


def child(argv: list[str]) -> int:
    """Pack in this fresh process; print time, memory growth and the result as JSON.

    argv: FOLDER OUT_DIR KEY_FILE INVENTORY_DIR all|changed. An "all" pack commits its
    inventory (for the changed-only packs that follow); a "changed" one packs against it.
    """
    from daemon.keys import SigningKey
    from daemon.send.base import Documents as Mode
    from daemon.send.inventory import InventoryStore
    from daemon.send.pack import pack_dossier

    folder, out, key_file, inventory_dir, mode = argv
    key = SigningKey.load(Path(key_file))
    store = InventoryStore(Path(inventory_dir))
    previous = store.load(DOSSIER) if mode == "changed" else None
    with PeakMemory() as memory:
        start = time.perf_counter()
        packed = pack_dossier(Path(folder), Path(out), key, dossier=DOSSIER,
                              dossier_name="GAEC LE GUYON", documents=Mode(mode),
                              previous=previous)
        seconds = time.perf_counter() - start
    if mode == "all":
        store.commit(DOSSIER, packed.inventory)
    print(json.dumps({"seconds": seconds, "growth": memory.growth, "size": packed.size,
                      "path": str(packed.path), "documents": packed.documents}))
    return 0


@dataclass(frozen=True)
class Packed:
    """What one pack in a child process measured."""

    seconds: float
    growth: int
    size: int
    documents: int


def pack_in_child(folder: Path, out: Path, key_file: Path, inventories: Path,
                  mode: str) -> Packed:
    """Pack in a new interpreter and delete the file once measured."""
    out.mkdir(exist_ok=True)
    result = run_child("bench.pack", str(folder), str(out), str(key_file), str(inventories),
                       mode)
    Path(result["path"]).unlink()
    return Packed(float(result["seconds"]), int(result["growth"]), int(result["size"]),
                  int(result["documents"]))


# ---------------------------------------------------------------- measurements


def zip_folder(folder: Path, archive: Path) -> tuple[float, int]:
    """Run Info-ZIP on the folder; return its time and the archive's size (then removed)."""
    archive.unlink(missing_ok=True)
    seconds = run_quiet(["zip", "-r", "-6", "-q", str(archive), "."], cwd=folder)
    size = archive.stat().st_size
    archive.unlink()
    return seconds, size


def warm(folder: Path) -> None:
    """Read every document once, so that every measured run finds them in the page cache."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(8 * MIB):
                    pass


def modify_some(documents: list[tuple[str, Path]], share: float) -> int:
    """Rewrite `share` of the documents with new content of the same kind; return how many."""
    rng = random.Random(99)
    chosen = rng.sample(documents, max(1, round(len(documents) * share)))
    writer = Documents(seed=99)
    for kind, path in chosen:
        writer.write(kind, path, path.stat().st_size)
        an_hour_ago = time.time() - 3600  # modified since the last send, not a moment ago
        os.utime(path, (an_hour_ago, an_hour_ago))
    return len(chosen)


def full_rows(folder: Path, scratch_dir: Path, key_file: Path, repeat: int,
              documents: list[tuple[str, Path]]) -> list[Row]:
    """The full pack against zip, then the changed-only pack."""
    content = sum(path.stat().st_size for _, path in documents)
    inventories = scratch_dir / "sent"
    packs: list[Packed] = []
    zips: list[float] = []
    zip_size = 0
    for _ in range(repeat):
        packs.append(pack_in_child(folder, scratch_dir / "out", key_file, inventories, "all"))
        seconds, zip_size = zip_folder(folder, scratch_dir / "reference.zip")
        zips.append(seconds)
    pack_s, zip_s = median([p.seconds for p in packs]), median(zips)
    growth = max(p.growth for p in packs)
    size = packs[-1].size
    changed = modify_some(documents, CHANGED_SHARE)
    warm(folder)
    incremental = [pack_in_child(folder, scratch_dir / "out", key_file, inventories, "changed")
                   for _ in range(repeat)]
    incremental_s = median([p.seconds for p in incremental])
    carried = incremental[-1].documents
    if carried != changed:
        raise SystemExit(f"the changed-only pack carried {carried} documents, not {changed}")
    return [
        Row(f"full pack, {len(documents)} documents, {fmt_mib(content)}",
            f"{pack_s:.2f} s ({fmt_rate(content, pack_s)})",
            f"zip -r -6: {zip_s:.2f} s ({fmt_rate(content, zip_s)})",
            fmt_ratio(zip_s / pack_s), f"≥ {1 / TIME_TARGET:.2f}× (≤ {TIME_TARGET}× zip's time)",
            pack_s <= TIME_TARGET * zip_s),
        Row("size of the .wvz", fmt_mib(size), f"zip: {fmt_mib(zip_size)}",
            f"{size / zip_size:.4f}× zip", f"≤ {SIZE_TARGET}× zip's size",
            size <= SIZE_TARGET * zip_size),
        Row("peak memory growth (full pack)", fmt_mib(growth), "", "",
            f"< {fmt_mib(MEMORY_TARGET)}", growth < MEMORY_TARGET),
        Row(f"changed-only pack, {changed} documents changed ({CHANGED_SHARE:.0%})",
            f"{incremental_s:.3f} s", f"full pack: {pack_s:.2f} s",
            f"{incremental_s / pack_s:.3f}× full", f"≤ {INCREMENTAL_TARGET}× the full pack",
            incremental_s <= INCREMENTAL_TARGET * pack_s),
        Row("peak memory growth (changed-only)", fmt_mib(max(p.growth for p in incremental))),
    ]


def check_rows(scratch_dir: Path, key_file: Path, repeat: int) -> list[Row]:
    """The unchanged check of SMALL_DOCUMENTS documents, beside `find` walking them."""
    from daemon.send.base import Documents as Mode
    from daemon.send.inventory import InventoryStore
    from daemon.send.pack import plan_documents

    folder = scratch_dir / "small"
    build_small_documents(folder)
    inventories = scratch_dir / "sent-small"
    first = pack_in_child(folder, scratch_dir / "out", key_file, inventories, "all")
    store = InventoryStore(inventories)
    load_s = median([timed(lambda: store.load(DOSSIER)) for _ in range(repeat)])
    previous = store.load(DOSSIER)
    find = ["find", str(folder), "-type", "f", "-printf", "%s %T@\n"]
    plan = plan_documents(folder, Mode.CHANGED, previous)  # warm-up, and the check
    if (plan.documents, plan.unchanged) != (0, SMALL_DOCUMENTS):
        raise SystemExit(f"the unchanged check found changes: {plan}")
    checks, walks = [], []
    for _ in range(max(repeat, 5)):
        checks.append(timed(lambda: plan_documents(folder, Mode.CHANGED, previous)))
        walks.append(run_quiet(find))
    check_s, walk_s = median(checks), median(walks)
    zip_s, _ = zip_folder(folder, scratch_dir / "small.zip")
    return [
        Row(f"unchanged check, {SMALL_DOCUMENTS} documents", fmt_ms(check_s),
            f"find -printf: {fmt_ms(walk_s)}", fmt_ratio(walk_s / check_s),
            f"< {fmt_ms(CHECK_TARGET)}", check_s < CHECK_TARGET),
        Row("  loading the inventory of the last send", fmt_ms(load_s)),
        Row(f"full pack, {SMALL_DOCUMENTS} small documents", f"{first.seconds:.2f} s",
            f"zip -r -6: {zip_s:.2f} s", fmt_ratio(zip_s / first.seconds)),
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the pack benchmark and print its table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = common_arguments(__doc__ or "")
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="size of the generated dossier, in MiB (default 1024)")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_mib = min(args.size_mib, 100)
    repeat = args.repeat or (1 if args.quick else 3)
    require_tools("zip", "find")
    from daemon.keys import SigningKey

    with scratch("pack") as folder:
        key_file = folder / "identity.key"
        SigningKey.generate().save(key_file)
        dossier = folder / "dossier"
        start = time.perf_counter()
        documents = build_dossier(dossier, args.size_mib * MIB)
        print(f"dossier: {len(documents)} documents, "
              f"{fmt_mib(sum(p.stat().st_size for _, p in documents))}, generated in "
              f"{time.perf_counter() - start:.0f} s; {os.cpu_count()} cores")
        warm(dossier)
        subprocess.run(["sync"], check=False)
        rows = full_rows(dossier, folder, key_file, repeat, documents)
        rows += check_rows(folder, key_file, repeat)
    print_table(f"pack_dossier (median of {repeat}; memory: worst run; time ratio = "
                "reference time / measured time)", rows)
    return finish("bench.pack", rows, "quick" if args.quick else "")


if __name__ == "__main__":
    sys.exit(main())
