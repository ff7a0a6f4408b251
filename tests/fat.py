"""A real FAT file system for tests: an image made by mkfs.vfat, mounted with fusefat.

FAT is what USB keys carry: names are case-insensitive, timestamps have a 2-second
resolution, and a key can vanish while a file is being read (`fusermount -u -z`).
The tools come from Debian packages; when one is missing the test fails, saying how to
install it (tests/run.sh does), and never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

DEBIAN_PACKAGES = ("dosfstools", "fusefat", "fuse3")
_TOOLS = {"mkfs.vfat": "dosfstools", "fusefat": "fusefat", "fusermount": "fuse3"}


def require_fat_tools() -> None:
    """Fail (never skip) when the FAT tools or /dev/fuse are missing."""
    missing = [f"{tool} (Debian package {package})" for tool, package in _TOOLS.items()
               if shutil.which(tool) is None]
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse (the fuse kernel module)")
    if missing:
        pytest.fail("missing for the USB key tests: " + ", ".join(missing)
                    + ". Run tests/run.sh, which installs them (apt-get install "
                    + " ".join(DEBIAN_PACKAGES) + ").")


def wait_until(condition: object, timeout: float = 10.0, what: str = "") -> None:
    """Wait for `condition()` to hold, failing the test with `what` after `timeout`."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


class FatImage:
    """One FAT image file, which can be mounted at one place at a time."""

    def __init__(self, path: Path, size_kib: int = 32 * 1024, label: str = "CLE") -> None:
        require_fat_tools()
        self.path = path
        self.label = label
        self.mount_point: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        path.unlink(missing_ok=True)
        subprocess.run(["mkfs.vfat", "-n", label, "-C", str(path), str(size_kib)],
                       check=True, capture_output=True)

    def mount(self, mount_point: Path, writable: bool = False) -> Path:
        """Mount the image (read-write when asked) and wait until the mount is there."""
        assert self.process is None, "already mounted"
        mount_point.mkdir(parents=True, exist_ok=True)
        # fusefat now and then gives up at start on a busy machine (exit 255, before it has
        # mounted anything): that is the test bench's hiccup, not a key the product meets,
        # so it is tried again a few times and reported with fusefat's own words.
        errors = []
        for _attempt in range(3):
            process = self._start_fusefat(mount_point, writable)
            wait_until(lambda p=process: os.path.ismount(mount_point) or p.poll() is not None,
                       what=f"fusefat to mount {mount_point}")
            if process.poll() is None:
                self.process, self.mount_point = process, mount_point
                return mount_point
            errors.append(f"exit {process.returncode}: {self._log.read_text()!r}")
            time.sleep(0.2)
        raise AssertionError(f"fusefat could not mount {self.path}: {errors}")

    def _start_fusefat(self, mount_point: Path, writable: bool) -> subprocess.Popen[bytes]:
        # -f: fusefat stays our child, so unmounting can wait until the image is written.
        with open(self._log, "wb") as log:
            return subprocess.Popen(
                ["fusefat", "-f", "-o", "rw+" if writable else "ro", str(self.path),
                 str(mount_point)], stdout=subprocess.DEVNULL, stderr=log)

    @property
    def _log(self) -> Path:
        return self.path.with_name(self.path.name + ".fusefat.log")

    def unmount(self, lazy: bool = False) -> None:
        """Unmount; a lazy unmount (a pulled key) lets open handles finish on their own."""
        assert self.mount_point is not None
        assert self.process is not None
        subprocess.run(["fusermount", "-u", *(["-z"] if lazy else []), str(self.mount_point)],
                       check=True, capture_output=True)
        if not lazy:
            self.wait_gone()

    def wait_gone(self, timeout: float = 10.0) -> None:
        """Wait for the fusefat process to end (after a lazy unmount: once handles close)."""
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            # After a lazy unmount the kernel sometimes keeps fusefat's connection alive for
            # a while although no file of the key is open any more (seen after many forks in
            # the same test session). What matters to the user is that nothing of ours holds
            # the key: check exactly that, then end fusefat ourselves.
            holders = self._holders()
            if holders:
                raise AssertionError(f"files of the key still open: {holders}") from None
            self.process.terminate()
            self.process.wait(timeout)
        self.process = None
        self.mount_point = None

    def _holders(self) -> list[str]:
        """Return which processes still have a file of this key open (for the failure)."""
        found = []
        for fd in Path("/proc").glob("[0-9]*/fd/*"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                # Once lazily unmounted, a handle's path no longer shows the mount point.
                if target.lower().endswith((".wwz", ".wvz")) and "/spool/" not in target:
                    pid = fd.parts[2]
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    found.append(f"{pid} {cmd.decode(errors='replace')[:80]}: {target}")
        return found

    def close(self) -> None:
        """Unmount if still mounted (test clean-up)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)  # a test may have frozen it
        if self.mount_point is not None and os.path.ismount(self.mount_point):
            subprocess.run(["fusermount", "-u", "-z", str(self.mount_point)],
                           capture_output=True, check=False)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    @contextmanager
    def writable(self, mount_point: Path) -> Iterator[Path]:
        """Mount read-write somewhere private, for filling the key before it is 'plugged in'."""
        self.mount(mount_point, writable=True)
        try:
            yield mount_point
        finally:
            self.unmount()
            mount_point.rmdir()

    def fill(self, files: dict[str, bytes | Path], workdir: Path) -> None:
        """Write files (path on the key → content or source file) and unmount."""
        with self.writable(workdir / f".fill-{self.path.stem}") as root:
            for inner, content in files.items():
                target = root / inner
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, Path):
                    shutil.copyfile(content, target)
                else:
                    target.write_bytes(content)

    def digest(self) -> str:
        """Return the SHA-256 of the whole image (to prove nothing on the key changed)."""
        import hashlib

        with open(self.path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()


class FatImages:
    """Creates images in a folder and unmounts every one of them at the end of a test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.images: list[FatImage] = []

    def new(self, label: str = "CLE", size_kib: int = 32 * 1024) -> FatImage:
        """Return a freshly formatted image."""
        image = FatImage(self.folder / f"{label}-{len(self.images)}.img", size_kib, label)
        self.images.append(image)
        return image

    def close(self) -> None:
        """Unmount everything still mounted."""
        for image in self.images:
            image.close()
