"""*Répertoire*: the `.wvz` written onto a real FAT key (mkfs.vfat + fusefat) or into a
folder, read back and compared; a full key, a pulled key, a read-only key, a cancel."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import i18n
from daemon.send.base import SendError, SendJob
from daemon.send.folder import (
    FolderDestination,
    removable_targets,
    removable_volumes,
    volume_of,
)
from tests.fat import FatImages
from tests.helpers import Home

NAME = "8502182-20201027171147.wvz"
MIB = 1 << 20


@pytest.fixture(autouse=True)
def _english() -> None:
    i18n.setup("en")  # French checks are marked "FR:"


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[FatImages]:
    images = FatImages(tmp_path)
    yield images
    images.close()


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    return folder


def make_job(tmp_path: Path, size: int) -> SendJob:
    path = tmp_path / "staging" / NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return SendJob("8502182", "GAEC LE GUYON", path, NAME, size,
                   hashlib.sha256(path.read_bytes()).hexdigest())


def destination(folder: Path, media: Path) -> FolderDestination:
    return FolderDestination(folder, volumes=lambda: removable_volumes([media]))


def names(folder: Path) -> set[str]:
    """Return the files of a folder; fusefat lists the FAT volume label as one too."""
    label = folder.name if os.path.ismount(folder) else None
    return {name for name in os.listdir(folder) if name != label}


def test_the_dossier_on_a_fat_key_reads_back_identical(keys: FatImages, media: Path,
                                                       tmp_path: Path) -> None:
    key = keys.new("CLE")
    root = key.mount(media / "CLE", writable=True)
    job = make_job(tmp_path, 3 * MIB + 4321)
    target = destination(root, media)
    seen: list[tuple[int, int]] = []

    target.check(job.size)
    sent = target.send(job, lambda done, total: seen.append((done, total)), threading.Event())

    assert sent.where == "the USB key CLE"
    assert sent.remove_hint == "You can remove the key CLE"
    assert sent.detail == {"path": str(root / NAME), "removable": True, "label": "CLE"}
    assert names(root) == {NAME}  # no temporary file left
    assert seen[-1] == (job.size, job.size)
    key.unmount()  # no handle of ours left: the key can be pulled
    key.mount(media / "CLE")  # a fresh mount reads what the image really holds
    assert hashlib.sha256((media / "CLE" / NAME).read_bytes()).hexdigest() == job.sha256


def test_a_full_key_is_a_clear_error_and_leaves_no_file(keys: FatImages, media: Path,
                                                        tmp_path: Path) -> None:
    key = keys.new("PETITE", size_kib=400)
    root = key.mount(media / "PETITE", writable=True)
    job = make_job(tmp_path, 2 * MIB)
    target = destination(root, media)

    with pytest.raises(SendError) as caught:
        target.check(job.size)
    assert caught.value.code == "key-full"
    assert caught.value.text.startswith(
        "The USB key PETITE is full: the file needs 2.1 MB and only ")
    # Sent anyway (check skipped): refused the same way, nothing written.
    with pytest.raises(SendError) as again:
        target.send(job, lambda done, total: None, threading.Event())
    assert again.value.code == "key-full"
    assert names(root) == set()


def test_a_key_pulled_mid_write_leaves_nothing_under_the_final_name(
        keys: FatImages, media: Path, tmp_path: Path) -> None:
    key = keys.new("CLE")
    root = key.mount(media / "CLE", writable=True)
    job = make_job(tmp_path, 8 * MIB)
    target = destination(root, media)
    target.check(job.size)

    def pull_halfway(done: int, total: int) -> None:
        if done >= total // 2 and key.mount_point is not None and os.path.ismount(root):
            key.unmount(lazy=True)  # the user pulls the key out

    with pytest.raises(SendError) as caught:
        target.send(job, pull_halfway, threading.Event())

    assert caught.value.code == "key-removed"
    assert caught.value.text == (
        f"The USB key CLE was removed while {NAME} was being written: nothing usable was left"
        " on it. Plug it in again and send once more.")
    assert not (root / NAME).exists()  # nor in the folder the key was mounted on
    key.wait_gone()
    key.mount(media / "CLE")  # plugged in again
    assert NAME not in names(media / "CLE")


def test_a_read_only_key_is_refused_before_anything(keys: FatImages, media: Path,
                                                   tmp_path: Path) -> None:
    key = keys.new("VERROU")
    root = key.mount(media / "VERROU")  # read-only, like a key with its lock switch on
    with pytest.raises(SendError) as caught:
        destination(root, media).check(1000)
    assert caught.value.code == "folder-read-only"
    assert str(root) in caught.value.text


def test_cancelling_leaves_nothing_on_the_key(keys: FatImages, media: Path,
                                              tmp_path: Path) -> None:
    key = keys.new("CLE")
    root = key.mount(media / "CLE", writable=True)
    job = make_job(tmp_path, 4 * MIB)
    cancel = threading.Event()
    target = destination(root, media)
    target.check(job.size)

    def cancel_halfway(done: int, total: int) -> None:
        if done >= total // 2:
            cancel.set()

    with pytest.raises(SendError) as caught:
        target.send(job, cancel_halfway, cancel)
    assert caught.value.code == "cancelled"
    assert names(root) == set()


def test_a_plain_folder_is_no_key_and_a_missing_one_is_said(media: Path,
                                                            tmp_path: Path) -> None:
    folder = tmp_path / "Échanges"
    folder.mkdir()
    job = make_job(tmp_path, 5000)
    target = destination(folder, media)
    target.check(job.size)
    sent = target.send(job, lambda done, total: None, threading.Event())
    assert sent.where == f"the folder {folder}"
    assert sent.remove_hint == ""
    assert (folder / NAME).read_bytes() == job.file.read_bytes()

    with pytest.raises(SendError) as caught:
        destination(tmp_path / "absent", media).check(0)
    assert caught.value.code == "folder-missing"
    assert caught.value.text == (f"The folder {tmp_path / 'absent'} cannot be found: plug the"
                                 " USB key in, or choose another folder.")


def test_keys_are_offered_first_and_the_only_one_is_taken(keys: FatImages, media: Path,
                                                          home: Home, tmp_path: Path) -> None:
    from daemon.send.handlers import choose_folder

    other = tmp_path / "Documents"
    other.mkdir()
    assert removable_targets([media], [other]) == [(str(other), other)]
    key = keys.new("CLE")
    root = key.mount(media / "CLE", writable=True)

    assert removable_targets([media], [other, root]) == [("CLE", root), (str(other), other)]
    assert volume_of(root / "sous-dossier", removable_volumes([media])) is not None
    assert volume_of(other, removable_volumes([media])) is None
    assert choose_folder(home.context(), "8502182", [media]) == root  # the only key plugged in

    second = keys.new("PHOTOS")
    second.mount(media / "PHOTOS", writable=True)
    with pytest.raises(SendError) as caught:  # not a terminal: nothing is asked
        choose_folder(home.context(), "8502182", [media], stdin=io.StringIO())
    assert caught.value.code == "several-keys"
    assert "CLE" in caught.value.text
    assert "PHOTOS" in caught.value.text


def test_french_words_of_the_folder_destination() -> None:
    # FR: passes once the lead merged daemon/locale/pending/send.po into the catalogue.
    fr = i18n.in_language
    assert fr("fr", "You can remove the key {label}") == "Vous pouvez retirer la clé {label}"
    assert fr("fr", "the USB key {label}") == "la clé {label}"
