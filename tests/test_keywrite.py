"""Writing a file onto a real FAT key (mkfs.vfat + fusefat): checked, or a clear failure."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import i18n
from daemon.keywrite import KeyFull, write_to_key
from tests.fat import FatImages

MIB = 1 << 20


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[FatImages]:
    images = FatImages(tmp_path)
    yield images
    images.close()


def payload(tmp_path: Path, size: int, name: str = "8502182-20201027171147.wvz") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def visible(root: Path) -> set[str]:
    return set(os.listdir(root))


def test_a_written_file_reads_back_identical_from_the_key(keys: FatImages,
                                                          tmp_path: Path) -> None:
    source = payload(tmp_path, 3 * MIB + 12345)
    key = keys.new("CLE")
    root = key.mount(tmp_path / "CLE", writable=True)
    before = visible(root)

    result = write_to_key(source, root, key="CLE")

    assert result.path == root / source.name
    assert result.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert result.size == source.stat().st_size
    assert visible(root) - before == {source.name}  # no temporary file left
    i18n.setup("en")
    assert result.message() == (
        f"{source.name} was written to CLE and checked: you can remove the key.")
    key.unmount()  # no handle left open: the key can be ejected
    key.mount(tmp_path / "CLE")  # what the image holds, read by a fresh mount
    assert hashlib.sha256((tmp_path / "CLE" / source.name).read_bytes()).hexdigest() == (
        result.sha256)


def test_writing_again_replaces_the_file(keys: FatImages, tmp_path: Path) -> None:
    key = keys.new("CLE")
    root = key.mount(tmp_path / "CLE", writable=True)
    write_to_key(payload(tmp_path, 5000), root)
    newer = payload(tmp_path, 7000)
    result = write_to_key(newer, root)
    assert (root / newer.name).read_bytes() == newer.read_bytes()
    assert result.size == 7000


def test_a_full_key_gives_a_clear_error_and_no_partial_file(keys: FatImages,
                                                           tmp_path: Path) -> None:
    key = keys.new("PETITE", size_kib=400)
    root = key.mount(tmp_path / "PETITE", writable=True)
    before = visible(root)
    source = payload(tmp_path, 2 * MIB)

    with pytest.raises(KeyFull) as caught:
        write_to_key(source, root, key="PETITE")

    assert visible(root) == before
    i18n.setup("en")
    message = caught.value.message()
    assert message.startswith("The USB key PETITE is full: the file needs 2.1 MB and only ")
    assert "Nothing was written" in message
    assert 0 < caught.value.free < 400 * 1024


def test_a_key_filling_up_during_the_copy_leaves_no_partial_file(keys: FatImages,
                                                                 tmp_path: Path) -> None:
    key = keys.new("CLE", size_kib=4 * 1024)
    root = key.mount(tmp_path / "CLE", writable=True)
    source = payload(tmp_path, 2 * MIB)
    filler = root / "autre-programme.bin"

    def another_program_fills_the_key(written: int, total: int) -> None:
        if filler.exists():
            return
        with open(filler, "wb") as out:  # written beside ours until the key is full
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass

    with pytest.raises(KeyFull) as caught:
        write_to_key(source, root, key="CLE", progress=another_program_fills_the_key)

    assert filler.exists()
    assert not (root / source.name).exists()
    assert [n for n in visible(root) if n.endswith(".part")] == []
    assert caught.value.needed == 2 * MIB
