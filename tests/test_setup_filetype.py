"""The invitation file type: a double-click on `8502182.passeur` opens passeur's set-up."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.platform import filetype


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: apt-get install -y desktop-file-utils "
                    "shared-mime-info")
    return found


def test_linux_registration_writes_a_valid_entry_and_type(tmp_path: Path) -> None:
    command = ["/opt/passeur bin/python", "-m", "daemon", "--home", "/tmp/a home", "setup",
               "--gui"]
    written = filetype.register_linux(command, data_home=tmp_path)
    package, entry = written
    assert entry == tmp_path / "applications" / filetype.DESKTOP_NAME
    valid = subprocess.run([_tool("desktop-file-validate"), str(entry)], capture_output=True,
                           text=True, check=False)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    text = entry.read_text()
    assert 'Exec="/opt/passeur bin/python" -m daemon --home "/tmp/a home" setup --gui %f' in text
    assert f"MimeType={filetype.MIME_TYPE};" in text
    # update-mime-database compiled the type: the glob maps *.passeur to it.
    _tool("update-mime-database")
    globs = (tmp_path / "mime" / "globs2").read_text()
    assert f"{filetype.MIME_TYPE}:*.passeur" in globs
    assert package.read_text() == filetype.mime_xml()


def test_the_open_command_is_this_installation_asking_for_the_window() -> None:
    command = filetype.open_command("/srv/home")
    assert command[-4:] == ["--home", "/srv/home", "setup", "--gui"]
    assert os.path.isabs(command[0])


def test_windows_association_is_per_user_and_opens_the_window() -> None:
    written: list[tuple[str, str, str]] = []
    keys = filetype.register_windows(
        [r"C:\Program Files\passeur\passeurw.exe", "setup", "--gui"],
        write=lambda key, name, data: written.append((key, name, data)))
    assert keys == [r"Software\Classes\.passeur", r"Software\Classes\passeur.invitation",
                    r"Software\Classes\passeur.invitation\shell\open\command"]
    assert (r"Software\Classes\passeur.invitation\shell\open\command", "",
            r'"C:\Program Files\passeur\passeurw.exe" setup --gui %1') in written
    assert (r"Software\Classes\.passeur", "", "passeur.invitation") in written


def test_macos_bundle_declares_the_document_type() -> None:
    spec = (Path(__file__).resolve().parent.parent / "packaging" / "passeur.spec").read_text()
    assert '"public.filename-extension": ["passeur"]' in spec
    assert "CFBundleDocumentTypes" in spec
    assert "argv_emulation" in spec


def test_a_file_handed_over_alone_opens_the_setup_window(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    from daemon import cli
    from daemon.setup import handlers

    opened: list[Path | None] = []

    def open_window(ctx: object, file: Path | None) -> int:
        opened.append(file)
        return 0

    monkeypatch.setattr(handlers, "_open_window", open_window)
    monkeypatch.setenv("PASSEUR_HOME", str(tmp_path))
    assert cli.main([str(tmp_path / "8502182.passeur")]) == 0
    assert opened == [tmp_path / "8502182.passeur"]
