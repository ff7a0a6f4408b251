"""The queue dialog's rows: made from the short listing, the content read when shown."""

from __future__ import annotations

from daemon.queue import State
from tests.helpers import DOSSIER, DOSSIER_NAME, Home
from tray.app import _queue_row
from tray.dialogs import content_lines


def test_a_row_shows_the_name_date_and_on_selection_the_content(home: Home) -> None:
    ctx = home.context()
    normal, etalon = home.update(), home.update(etalon=True)
    for update in (normal, etalon):
        assert ctx.intake.import_path(update, "test").item is not None
    manifests = ctx.queue.manifest_texts()
    rows = [_queue_row(line, manifests.get(line.id)) for line in ctx.queue.listing()]
    assert [row["name"] for row in rows] == [normal.name, etalon.name]
    assert [row["etalon"] for row in rows] == [False, True]
    # The date as written in the file name (the accountant's time), French style.
    assert rows[0]["created"] == "27/10/2020 17:21:21"
    content = content_lines(rows[1])
    assert content[:2] == [f"Dossier {DOSSIER} - {DOSSIER_NAME}",
                           "Fichier d'échange généré le 27/10/2020 17:22:21"], content
    assert any("étalons" in line for line in content), content


def test_an_item_without_manifest_is_listed_by_its_name(home: Home) -> None:
    ctx = home.context()
    update = home.update()
    item = ctx.intake.import_path(update, "test").item
    assert item is not None
    [line] = ctx.queue.listing([State.WAITING])
    row = _queue_row(line, None)
    assert content_lines(row) == [update.name]
    assert content_lines({**row, "manifest": "{not json"}) == [update.name]
