"""Shared builders for the upload tests: a farmer's real signed `.wvz`, its send job, an
upload folder laid out the way a server leaves it (for the firm's `collect`), and a real
accountant's site taking a home's web sends."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from daemon.exchange import Source, pack_exchange
from daemon.fsutil import PartDigests, sha256_file
from daemon.keys import SigningKey
from daemon.manifest import Manifest
from daemon.naming import Kind
from daemon.send.base import SendJob, part_size_for
from daemon.send.parts import (
    PARTS_NAME,
    SIGNATURE_NAME,
    PartList,
    make_part_list,
    part_count,
    part_name,
    part_span,
    sign_part_list,
    upload_folder,
)
from daemon.web.index import UPLOAD_FOLDER
from tests.helpers import BASE_DATE, DOSSIER, DOSSIER_NAME, Home
from tests.nginx import Nginx

WEB_USER, WEB_PASSWORD = "gaec-le-guyon", "mot de passe"

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def make_wvz(out: Path, farmer: SigningKey, size: int, *, dossier: str = DOSSIER,
             minute: int = 0) -> Path:
    """Pack a real dossier file (stored: its size is about `size`) signed by `farmer`."""
    out.mkdir(parents=True, exist_ok=True)
    content = out / f"content-{minute}.bin"
    content.write_bytes(os.urandom(size))
    manifest = Manifest(kind=Kind.DOSSIER, dossier=dossier, dossier_name=DOSSIER_NAME,
                        generated_at=BASE_DATE + timedelta(minutes=minute),
                        fiscal_year_start=date(2020, 1, 1), fiscal_year_end=date(2020, 12, 31),
                        sequence=minute + 1, key_id="", files=(),
                        objective="Envoi pour révision")
    packed = pack_exchange(out, farmer, manifest, [Source("ecritures.bin", content)],
                           store=True)
    content.unlink()
    return packed


def job_for(file: Path, dossier: str = DOSSIER) -> SendJob:
    """Return the send job of a packed file, with the part digests the packer hands over."""
    part_size = part_size_for(file.stat().st_size)
    parts = PartDigests(part_size)
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 20):
            parts.update(chunk)
    return SendJob(dossier=dossier, dossier_name=DOSSIER_NAME, file=file, name=file.name,
                   size=file.stat().st_size, sha256=sha256_file(file),
                   part_sha256=parts.hexdigests(), part_size=part_size)


@dataclass
class ProgressLog:
    """Records (done, total) progress calls; may cancel once `cancel_at` bytes are done."""

    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_at: int | None = None
    calls: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, done: int, total: int) -> None:
        self.calls.append((done, total))
        if self.cancel_at is not None and done >= self.cancel_at:
            self.cancel.set()


def upload_path(repo: Path, name: str, dossier: str = DOSSIER) -> Path:
    """Return the folder an upload of `name` lands in, under a served repository."""
    return repo / dossier / UPLOAD_FOLDER / upload_folder(name)


def part_hashes(file: Path, part_size: int) -> list[str]:
    """Return the SHA-256 of each part of a file."""
    data = file.read_bytes()
    size = len(data)
    hashes = []
    for number in range(1, part_count(size, part_size) + 1):
        offset, length = part_span(size, part_size, number)
        hashes.append(hashlib.sha256(data[offset:offset + length]).hexdigest())
    return hashes


def lay_out_upload(repo: Path, file: Path, farmer: SigningKey, part_size: int, *,
                   dossier: str = DOSSIER, signed: bool = True,
                   parts: PartList | None = None) -> Path:
    """Write an upload folder as a server leaves it after a complete upload; return it."""
    folder = upload_path(repo, file.name, dossier)
    folder.mkdir(parents=True, exist_ok=True)
    data = file.read_bytes()
    for number in range(1, part_count(len(data), part_size) + 1):
        offset, length = part_span(len(data), part_size, number)
        (folder / part_name(number)).write_bytes(data[offset:offset + length])
    parts = parts or make_part_list(file.name, len(data), hashlib.sha256(data).hexdigest(),
                                    part_size, part_hashes(file, part_size), farmer, NOW)
    body, signature = sign_part_list(parts, farmer)
    (folder / PARTS_NAME).write_bytes(body)
    if signed:
        (folder / SIGNATURE_NAME).write_bytes(signature)
    return folder


@contextlib.contextmanager
def web_site(home: Home, tmp_path: Path, max_kbps: int) -> Iterator[tuple[Nginx, dict[str, str]]]:
    """Yield nginx taking the dossier's uploads behind a password, with the home set up to
    send there (address, bandwidth cap, the password stored by `passeur login`), and the
    environment of the file keyring that holds the password; nginx is stopped after."""
    from daemon import config_edit
    from daemon.web.publish import Repository
    from tests.faultserver import configure_web, keyring_env

    server = Nginx(tmp_path / "nginx")
    server.add_user(DOSSIER, WEB_USER, WEB_PASSWORD)
    Repository(server.repo, home.key).refresh(DOSSIER)
    server.start()
    try:
        keyrings = keyring_env(tmp_path / "xdg")
        configure_web(home, server.base_url)
        config_edit.set_send(home.root / "config.toml", max_kbps=max_kbps)
        login = subprocess.run(
            [sys.executable, "-m", "daemon.cli", "login", DOSSIER, "--user", WEB_USER,
             "--password-stdin", "--no-check"], input=WEB_PASSWORD + "\n", text=True,
            env={**home.env, **keyrings}, capture_output=True, check=False, timeout=60)
        assert login.returncode == 0, login.stderr
        yield server, keyrings
    finally:
        server.stop()
