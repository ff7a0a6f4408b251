"""Shared builders for tests: a relocated passeur home with a trusted key, real update files."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.context import Context
from daemon.exchange import Source, pack_exchange
from daemon.keys import SigningKey
from daemon.manifest import Manifest
from daemon.naming import Kind

DOSSIER = "8502182"
DOSSIER_NAME = "GAEC LE GUYON"
PARIS = timezone(timedelta(hours=1))
BASE_DATE = datetime(2020, 10, 27, 17, 20, 21, tzinfo=PARIS)


@dataclass
class Home:
    """A passeur home in a temporary folder, configured with one dossier and one key."""

    root: Path
    key: SigningKey
    inbox: Path
    outbox: Path
    _counter: int = field(default=0)

    @property
    def env(self) -> dict[str, str]:
        """Return an environment for running `passeur` in this home, in French."""
        env = dict(os.environ)
        env.update(PASSEUR_HOME=str(self.root), LANG="fr_FR.UTF-8", LANGUAGE="",
                   LC_ALL="", LC_MESSAGES="")
        return env

    def context(self) -> Context:
        """Return a fresh composition root on this home."""
        return Context(self.root)

    def update(
        self,
        sequence: int | None = None,
        *,
        etalon: bool = False,
        dossier: str = DOSSIER,
        when: datetime | None = None,
        contents: dict[str, bytes] | None = None,
        kind: Kind = Kind.UPDATE,
        key: SigningKey | None = None,
        store: bool = False,
        out: Path | None = None,
    ) -> Path:
        """Pack a real signed update (sequence and date increase by default)."""
        self._counter += 1
        sequence = self._counter if sequence is None else sequence
        when = when or BASE_DATE + timedelta(minutes=sequence)
        contents = contents or {"vat_declaration/tva.xml": b"<tva/>",
                                "ecritures.xml": b"<ecritures n='%d'/>" % sequence}
        src = self.root / "src" / f"{self._counter}"
        src.mkdir(parents=True, exist_ok=True)
        sources = []
        for inner, data in contents.items():
            path = src / inner.replace("/", "_")
            path.write_bytes(data)
            sources.append(Source(inner, path))
        modules: dict[str, tuple[str, ...]] = {}
        for inner in contents:
            module, sep, _ = inner.partition("/")
            if sep and module in ("vat_declaration", "entry_templates",
                                  "associated_documents", "situations"):
                modules[module] = (*modules.get(module, ()), inner)
        manifest = Manifest(
            kind=kind, dossier=dossier, dossier_name=DOSSIER_NAME, generated_at=when,
            fiscal_year_start=date(2020, 1, 1), fiscal_year_end=date(2020, 12, 31),
            sequence=sequence, key_id="", files=(), modules=modules, etalon=etalon,
        )
        target = out or self.outbox
        target.mkdir(parents=True, exist_ok=True)
        return pack_exchange(target, key or self.key, manifest, sources, store=store)

    def passeur(self, *args: str, check: bool = False,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the real `passeur` command in this home."""
        return subprocess.run(
            [sys.executable, "-m", "daemon.cli", *args], env=self.env, text=True,
            capture_output=True, check=check, timeout=timeout,
        )


def make_home(root: Path, key: SigningKey, app_names: tuple[str, ...] = ()) -> Home:
    """Write a config trusting `key` for dossier 8502182, with an inbox folder."""
    root.mkdir(parents=True, exist_ok=True)
    inbox = root / "inbox"
    inbox.mkdir()
    names = ", ".join(f'"{n}"' for n in app_names)
    (root / "config.toml").write_text(
        f"""\
language = "fr"

[app]
name = "Isacompta"
process_names = [{names}]
inbox = "{inbox}"

[[dossiers]]
number = "{DOSSIER}"
name = "{DOSSIER_NAME}"

[[trusted_keys]]
public_key = "{key.public.text}"
label = "Cabinet de test"

[sources.folders]
watch = []
""",
        "utf-8",
    )
    return Home(root, key, inbox, root / "outbox")


def wait_listening(process: subprocess.Popen[bytes], port: int,
                   timeout: float = 10.0) -> bool:
    """Wait until a server process accepts connections on 127.0.0.1:`port`; False when it
    ended first (the port was taken meanwhile, a wrong configuration) or took too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.02)
    return False


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop a server process (gracefully, then forced) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def small_disk(folder: Path, set_up: Callable[[], None] = lambda: None,
               full: bool = True) -> Iterator[Path]:
    """Mount a real 256 KiB tmpfs on `folder` (made if needed) for the block's length.

    `set_up` is called once it is mounted; then, when `full`, the disk is filled up, so
    that the next write fails with ENOSPC as on a full disk. FUSE file systems (fusefat)
    say EPERM when full; the kernel's tmpfs says ENOSPC."""
    import errno

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs",
                              str(folder)], capture_output=True, text=True, check=False)
    assert mounted.returncode == 0, f"a tmpfs cannot be mounted here: {mounted.stderr}"
    try:
        set_up()
        if full:
            with pytest.raises(OSError) as error:
                (folder / "filler").write_bytes(b"\0" * (512 << 10))  # twice what it holds
            assert error.value.errno == errno.ENOSPC, error.value
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


class Unseekable(io.RawIOBase):
    """A write-only stream that cannot seek, as a pipe: zipfile then puts each member's
    sizes in a data descriptor after its data, as a streaming writer does."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        """Say that it takes writes."""
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        """Keep the bytes."""
        self.data += b
        return len(b)
