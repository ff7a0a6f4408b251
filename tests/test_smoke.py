"""End-to-end smoke test of the foundation through the real CLI."""

from __future__ import annotations

import json

from tests.helpers import Home


def test_pack_import_process_through_the_cli(home: Home) -> None:
    update = home.update()
    assert home.passeur("import", str(update)).returncode == 0
    listed = json.loads(home.passeur("queue", "--json", check=True).stdout)
    assert [item["name"] for item in listed] == [update.name]
    assert home.passeur("queue", "process", "--all").returncode == 0
    assert (home.inbox / update.name).read_bytes() == update.read_bytes()
