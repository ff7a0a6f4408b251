"""Messages a user can act on: a full disk is said as such, and nothing is recorded."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.queue import State
from tests.helpers import Home, small_disk


@pytest.fixture
def full_staging(home: Home) -> Iterator[Path]:
    """The staging folder on a real, small file system (a 256 KiB tmpfs), filled up."""
    ctx = home.context()
    ctx.paths.ensure()
    ctx.queue.close()
    with small_disk(ctx.paths.staging) as staging:
        yield staging


def test_a_full_disk_is_said_and_the_good_file_is_not_refused(
        home: Home, full_staging: Path) -> None:
    update = home.update(1, store=True, contents={"ecritures.xml": os.urandom(300_000)})
    done = home.passeur("import", str(update))
    said = done.stdout + done.stderr
    assert "Traceback" not in said
    assert "disque est plein" in said
    assert ": refusé" not in said  # the refusal line of a file
    assert done.returncode != 0
    ctx = home.context()
    assert ctx.queue.items(list(State)) == []  # no « refusé » row for a good file
    assert not ctx.paths.quarantine.exists() or list(ctx.paths.quarantine.iterdir()) == []
    assert sorted(p.name for p in full_staging.iterdir()) == ["filler"]
    ctx.queue.close()


ENGLISH_PLACEHOLDERS = ("NAME", "LABEL", "FOLDER", "USER", "KEY", "NUMBER", "number",
                        "name", "show program's version")


@pytest.mark.parametrize("command", [[], ["trust", "add"], ["dossier", "add"], ["login"],
                                     ["pack"], ["journal"], ["send"]])
def test_the_help_has_no_english_placeholder_in_french(home: Home, command: list[str]) -> None:
    shown = home.passeur(*command, "--help")
    assert shown.returncode == 0, shown.stderr
    words = set(shown.stdout.replace("[", " ").replace("]", " ").split())
    assert words.isdisjoint(ENGLISH_PLACEHOLDERS), shown.stdout
    assert "show program's version" not in shown.stdout


def test_passeur_config_says_its_values_in_french(home: Home) -> None:
    shown = home.passeur("config")
    assert shown.returncode == 0, shown.stderr
    values = [line.rsplit(":", 1)[-1].strip() for line in shown.stdout.splitlines()]
    assert {"True", "False", "None", "[]"}.isdisjoint(values), shown.stdout
    assert "oui" in values


def test_queue_columns_stay_aligned_with_long_names(home: Home, tmp_path: Path) -> None:
    home.passeur("import", str(home.update(1)), check=True)
    long = tmp_path / ("8502182-20201027172200" + "-copie-du-cabinet" * 8 + ".wwz")
    long.write_bytes(b"not an update")
    home.passeur("import", str(long))
    shown = home.passeur("queue", "--all")
    rows = [line for line in shown.stdout.splitlines() if line[:5].strip().isdigit()]
    assert len(rows) == 2, shown.stdout
    # The date column begins at the same place in every row.
    starts = {row.index("/20") for row in rows}
    assert len(starts) == 1, shown.stdout


def test_show_lists_the_modules_in_the_manual_s_order(home: Home) -> None:
    update = home.update(1, contents={"situations/s.xml": b"<s/>",
                                      "vat_declaration/tva.xml": b"<tva/>",
                                      "associated_documents/a.pdf": b"%PDF",
                                      "entry_templates/m.xml": b"<m/>"})
    shown = home.passeur("show", str(update))
    assert shown.returncode == 0, shown.stderr
    modules = [line.strip()[2:].split(" (")[0] for line in shown.stdout.splitlines()
               if line.startswith("  - ")]
    assert modules == ["Déclaration TVA", "Modèles d'écritures", "Documents associés",
                       "Situations"], shown.stdout


def test_the_cli_journal_lists_in_the_tray_s_order(home: Home) -> None:
    for sequence in (1, 2, 3):
        home.passeur("import", str(home.update(sequence)), check=True)
    shown = home.passeur("journal")
    ctx = home.context()
    newest_first = [entry.detail.get("name") for entry in ctx.queue.history(10)]
    ctx.queue.close()
    lines = shown.stdout.splitlines()
    assert len(lines) == len(newest_first) == 3
    for line, name in zip(lines, newest_first, strict=True):
        assert str(name) in line


def test_a_batch_imported_by_hand_is_said_in_french() -> None:
    from daemon.events import BatchFinished
    from daemon.removable.handover import describe_batch

    said = describe_batch(BatchFinished("manual", ("8502182-20201027172100.wwz",), (), 0))
    assert "manual" not in said
    assert said.startswith("Importé à la main")


def test_the_service_s_folder_lines_are_in_french(home: Home, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from daemon.folders import FolderWatcher

    ctx = home.context()
    watcher = FolderWatcher(ctx.config, ctx.paths, ctx.intake, ctx.bus,
                            folders=(tmp_path / "absent",))
    with caplog.at_level(logging.INFO):
        watcher.start()
        watcher.stop()
    ctx.bus.close()
    ctx.queue.close()
    lines = [record.getMessage() for record in caplog.records]
    assert any("n’existe pas" in line for line in lines), lines
    assert not any("does not exist" in line for line in lines), lines
