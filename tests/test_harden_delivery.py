"""What is handed to the application is what was verified: a spool file changed on disk, or
replaced by a link, never reaches the inbox; the item waits with its reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.context import Context
from daemon.delivery import Result
from daemon.fsutil import CopyRefused, atomic_copy
from daemon.queue import State
from tests.helpers import Home


def _queued(home: Home, count: int = 1) -> tuple[Context, list[Path]]:
    ctx = home.context()
    updates = [home.update() for _ in range(count)]
    for update in updates:
        ctx.intake.import_path(update, "manual")
    return ctx, updates


def _spool_file(ctx: Context, index: int = 0) -> Path:
    return ctx.queue.spool_path(ctx.queue.pending()[index])


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    os.chmod(path, 0o600)
    path.write_bytes(bytes(data))


def _inbox_files(home: Home) -> list[str]:
    return sorted(p.name for p in home.inbox.iterdir())


def test_a_spool_file_with_one_byte_flipped_is_held_not_handed_over(home: Home) -> None:
    ctx, (update, later) = _queued(home, 2)
    _flip_one_byte(_spool_file(ctx))
    outcomes = ctx.delivery.process()
    assert [(o.item.name, o.result) for o in outcomes] == [
        (update.name, Result.ALTERED), (later.name, Result.HELD)]
    assert _inbox_files(home) == []
    assert [i.state for i in ctx.queue.items(list(State))] == [State.WAITING] * 2
    assert ctx.queue.handovers() == []


def test_a_spool_file_replaced_by_a_link_is_never_followed(home: Home,
                                                           tmp_path: Path) -> None:
    ctx, _ = _queued(home)
    spool = _spool_file(ctx)
    elsewhere = tmp_path / "same-bytes.wwz"
    elsewhere.write_bytes(spool.read_bytes())  # even the very bytes behind a link
    spool.unlink()
    spool.symlink_to(elsewhere)
    outcomes = ctx.delivery.process()
    assert [o.result for o in outcomes] == [Result.ALTERED]
    assert _inbox_files(home) == []


def test_an_untouched_spool_file_is_handed_over(home: Home) -> None:
    ctx, (update,) = _queued(home)
    assert [o.result for o in ctx.delivery.process()] == [Result.DELIVERED]
    assert _inbox_files(home) == [update.name]
    assert (home.inbox / update.name).read_bytes() == update.read_bytes()


def test_a_link_in_the_inbox_under_the_item_s_name_is_not_read(home: Home) -> None:
    ctx, (update,) = _queued(home)
    (home.inbox / update.name).symlink_to("/dev/zero")
    assert [o.result for o in ctx.delivery.process()] == [Result.HELD]


def test_the_cli_says_why_an_altered_item_is_not_handed_over(home: Home) -> None:
    ctx, (update,) = _queued(home)
    _flip_one_byte(_spool_file(ctx))
    ctx.queue.close()
    done = home.passeur("queue", "process", "--all")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert update.name in done.stdout
    assert "import" in done.stdout  # what to do next: delete it and import it again


def test_atomic_copy_refuses_other_bytes_and_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "a"
    source.write_bytes(b"verified")
    target = tmp_path / "out" / "a"
    with pytest.raises(CopyRefused):
        atomic_copy(source, target, sha256="0" * 64)
    assert list(target.parent.iterdir()) == []
