"""*Traiter* and *Supprimer* against a real stand-in application process and real folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon import config_edit, i18n
from daemon.app import AppWatcher
from daemon.config import AppConfig
from daemon.delivery import TRASH_DAYS, InboxNotConfigured, Result
from daemon.fsutil import durable_link, sha256_file, temp_name
from daemon.keys import SigningKey
from daemon.queue import Item, Outcome, State
from tests.helpers import Home, make_home

STANDIN = Path(__file__).with_name("standin_app.py")
OTHER_DOSSIER = "8502183"


@dataclass
class App:
    """The stand-in application as the tests see it."""

    name: str  # the script name that the config's process_names matches
    script: Path
    inbox: Path
    taken: Path

    def journal(self) -> list[str]:
        """Return the names of the files the application took, in the order taken."""
        journal = self.taken / "journal.txt"
        lines = journal.read_text("utf-8").splitlines() if journal.exists() else []
        return [line.split()[0] for line in lines]

    def journal_hashes(self) -> list[str]:
        """Return the SHA-256 of the files the application took, in the order taken."""
        journal = self.taken / "journal.txt"
        return [line.split()[1] for line in journal.read_text("utf-8").splitlines()]

    @contextmanager
    def running(self) -> Iterator[subprocess.Popen[str]]:
        """Start the application (it takes its inbox), and close it with SIGTERM after."""
        process = subprocess.Popen([sys.executable, str(self.script), str(self.inbox),
                                    str(self.taken)], stdout=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0


def make_app_home(root: Path, key: SigningKey) -> tuple[Home, App]:
    """A home whose [app] is the stand-in under a name unique to this test.

    The unique name keeps a stand-in started by another test run on the same machine from
    looking like ours.
    """
    name = f"standin_app_{uuid.uuid4().hex[:8]}.py"
    root.mkdir(parents=True)
    script = root / name
    script.symlink_to(STANDIN)
    home = make_home(root / "home", key, app_names=(name,))
    config_edit.add_dossier(home.root / "config.toml", OTHER_DOSSIER, "EARL DES TESTS")
    return home, App(name, script, home.inbox, root / "taken")


@pytest.fixture
def app_home(tmp_path: Path, signing_key: SigningKey) -> tuple[Home, App]:
    """A home configured for the stand-in application."""
    return make_app_home(tmp_path / "app", signing_key)


def queue_updates(home: Home, *updates: Path) -> list[Item]:
    """Import the updates; return their queue items."""
    intake = home.context().intake
    items = []
    for update in updates:
        result = intake.import_path(update, "manual")
        assert result.outcome is Outcome.QUEUED
        assert result.item is not None
        items.append(result.item)
    return items


def delivered_names(home: Home) -> list[str]:
    """Return the files handed over, in the order the activity log recorded them."""
    return [h.detail["name"] for h in reversed(home.context().queue.history(1000))
            if h.action == "delivered"]


def french(message: str) -> str:
    """Return a message as the French catalogue renders it."""
    return i18n.in_language("fr", message)


# ---------------------------------------------------------------- the application running


def test_the_watcher_finds_the_standin_by_its_script_name(tmp_path: Path) -> None:
    app = App("standin_app.py", STANDIN, tmp_path / "inbox", tmp_path / "taken")
    app.inbox.mkdir()
    watcher = AppWatcher(AppConfig(process_names=("standin_app.py",)))
    with app.running() as process:
        assert process.pid in watcher.running_pids()
        assert watcher.is_running()
    assert process.pid not in watcher.running_pids()
    assert AppWatcher(AppConfig()).running_pids() == []


def test_the_watcher_finds_a_script_behind_interpreter_options(tmp_path: Path) -> None:
    name = f"standin_app_{uuid.uuid4().hex[:8]}.py"
    (tmp_path / name).symlink_to(STANDIN)
    (tmp_path / "inbox").mkdir()
    watcher = AppWatcher(AppConfig(process_names=(name.upper(),)))  # case does not matter
    process = subprocess.Popen(
        [sys.executable, "-u", "-X", "utf8", str(tmp_path / name), str(tmp_path / "inbox"),
         str(tmp_path / "taken")], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        assert watcher.running_pids() == [process.pid]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    assert watcher.running_pids() == []


def test_an_etalon_update_waits_while_the_application_runs(app_home: tuple[Home, App]) -> None:
    home, app = app_home
    first = home.update(1)
    etalon = home.update(2, etalon=True)
    behind = home.update(3)
    other = home.update(1, dossier=OTHER_DOSSIER,
                        when=datetime(2020, 10, 28, 9, 0, tzinfo=timezone(timedelta(hours=1))))
    items = queue_updates(home, first, etalon, behind, other)

    with app.running():
        result = home.passeur("queue", "process", "--all")
        assert result.returncode == 1, result.stderr
        assert "Isacompta" in result.stdout
        # Normal updates are handed over while it runs; the étalon one and the update of the
        # same dossier behind it wait.
        assert sorted(p.name for p in app.inbox.iterdir()) == sorted([first.name, other.name])
        listed = {i["id"]: i for i in json.loads(home.passeur("queue", "--json").stdout)}
        assert set(listed) == {items[1].id, items[2].id}
        assert listed[items[1].id]["restart_required"] is True
        assert listed[items[2].id]["restart_required"] is False
        assert french("restart required") in home.passeur("queue").stdout
        # Pressed again, still nothing changes while the application runs.
        outcomes = home.context().delivery.process()
        assert [(o.item.id, o.result) for o in outcomes] == [
            (items[1].id, Result.RESTART_REQUIRED), (items[2].id, Result.HELD)]
    assert app.journal() == []  # it had an empty inbox when it started

    result = home.passeur("queue", "process", "--all")
    assert result.returncode == 0, result.stderr
    assert delivered_names(home) == [first.name, other.name, etalon.name, behind.name]
    queue = home.context().queue
    assert queue.pending() == []
    assert not any(i.restart_required for i in queue.items(list(State)))
    assert [h.action for h in queue.history()].count("restart_required") == 1

    with app.running():  # the next start integrates everything
        assert list(app.inbox.iterdir()) == []
    assert sorted(app.journal()) == sorted([first.name, etalon.name, behind.name, other.name])


def test_an_etalon_update_is_handed_over_when_the_application_is_closed(
        app_home: tuple[Home, App]) -> None:
    home, app = app_home
    etalon = home.update(1, etalon=True)
    queue_updates(home, etalon)
    [outcome] = home.context().delivery.process()
    assert outcome.result is Result.DELIVERED
    assert (app.inbox / etalon.name).read_bytes() == etalon.read_bytes()


# ---------------------------------------------------------------- order and collisions


def test_picking_a_later_update_waits_for_the_earlier_one(app_home: tuple[Home, App]) -> None:
    home, app = app_home
    updates = [home.update(), home.update()]
    other = home.update(1, dossier=OTHER_DOSSIER)
    items = queue_updates(home, *updates, other)

    result = home.passeur("queue", "process", str(items[1].id), str(items[2].id))
    assert result.returncode == 1
    assert french("{file}: waits for the previous update of the dossier").format(
        file=updates[1].name) in result.stdout
    assert [p.name for p in app.inbox.iterdir()] == [other.name]

    result = home.passeur("queue", "process", str(items[0].id), str(items[1].id))
    assert result.returncode == 0, result.stdout + result.stderr
    assert delivered_names(home) == [other.name, updates[0].name, updates[1].name]


def test_a_different_file_with_the_same_name_waits_until_the_first_is_taken(
        app_home: tuple[Home, App]) -> None:
    home, app = app_home
    # 17:00 in Paris and 17:00 in London: one name, two updates an hour apart.
    paris = home.update(1, when=datetime(2020, 10, 27, 17, 0, tzinfo=timezone(timedelta(hours=1))))
    london = home.update(2, when=datetime(2020, 10, 27, 17, 0, tzinfo=UTC),
                         out=home.root / "london")
    assert paris.name == london.name
    queue_updates(home, paris, london)
    delivery = home.context().delivery

    assert [o.result for o in delivery.process()] == [Result.DELIVERED, Result.HELD]
    assert (app.inbox / paris.name).read_bytes() == paris.read_bytes()
    with app.running():
        pass  # it takes the first one
    assert [o.result for o in delivery.process()] == [Result.DELIVERED]
    with app.running():
        pass
    assert app.journal_hashes() == [sha256_file(paris), sha256_file(london)]


def test_a_file_already_in_the_inbox_after_a_crash_is_not_a_collision(home: Home) -> None:
    update = home.update()
    queue_updates(home, update)
    (home.inbox / update.name).write_bytes(update.read_bytes())  # copied, then the crash
    [outcome] = home.context().delivery.process()
    assert outcome.result is Result.DELIVERED


def test_traiter_removes_temporary_files_left_by_a_dead_process_only(home: Home) -> None:
    update = home.update()
    queue_updates(home, update)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = home.inbox / f".{update.name}.{child.pid}.0badcafe.part"
    dead.write_bytes(b"half")
    live = temp_name(home.inbox / "8502182-20201027172221.wwz")  # this process is alive
    live.write_bytes(b"half")
    home.context().delivery.process()
    assert sorted(p.name for p in home.inbox.iterdir()) == sorted([update.name, live.name])


# A child process hands the queue over and dies (os._exit, as under kill -9) at one point.
_CRASH_SCRIPT = """
import os, sys, shutil
from daemon.context import Context
import daemon.delivery, daemon.fsutil, daemon.queue

point = sys.argv[2]
die = lambda *args, **kwargs: os._exit(9)
if point == "temp-created":  # the temporary file exists, nothing recorded yet
    daemon.queue.Queue.begin_handover = die
elif point == "mid-copy":  # recorded, half the bytes in the temporary file
    def half(source, out, length):
        out.write(source.read(100))
        out.flush()
        os._exit(9)
    daemon.fsutil.shutil.copyfileobj = half
elif point == "renamed":  # the inbox has the file, the queue does not know yet
    original = daemon.queue.Queue.finish_handover
    def finish(self, item_id, delivered, **detail):
        if delivered:
            os._exit(9)
        return original(self, item_id, delivered, **detail)
    daemon.queue.Queue.finish_handover = finish
Context(sys.argv[1]).delivery.process()
"""


def crash_during_handover(home: Home, point: str) -> None:
    """Run Traiter in a child process that dies at `point`."""
    child = subprocess.run([sys.executable, "-c", _CRASH_SCRIPT, str(home.root), point],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 9, child.stderr


@pytest.mark.parametrize("point", ["temp-created", "mid-copy"])
def test_a_handover_cut_before_the_inbox_has_the_file_is_made_again(home: Home,
                                                                     point: str) -> None:
    update = home.update()
    [item] = queue_updates(home, update)
    crash_during_handover(home, point)
    assert not (home.inbox / update.name).exists()
    assert [p.name for p in home.inbox.iterdir()]  # the temporary file is left behind
    [outcome] = home.context().delivery.process()
    assert outcome.result is Result.DELIVERED
    assert [p.name for p in home.inbox.iterdir()] == [update.name]
    assert (home.inbox / update.name).read_bytes() == update.read_bytes()
    ctx = home.context()
    assert ctx.queue.handovers() == []
    assert delivered_names(home) == [update.name]
    assert ctx.queue.get(item.id).state is State.DELIVERED  # type: ignore[union-attr]


def test_a_handover_cut_after_the_inbox_has_the_file_is_never_made_twice(home: Home) -> None:
    first, second = home.update(), home.update()
    items = queue_updates(home, first, second)
    crash_during_handover(home, "renamed")
    assert (home.inbox / first.name).read_bytes() == first.read_bytes()
    # The application takes its file before passeur runs again.
    taken = home.root / "integrated"
    taken.mkdir()
    (home.inbox / first.name).rename(taken / first.name)
    outcomes = home.context().delivery.process()
    # The first is recorded as delivered, not handed over again; the second goes on.
    assert [(o.item.name, o.result) for o in outcomes] == [(second.name, Result.DELIVERED)]
    assert [p.name for p in home.inbox.iterdir()] == [second.name]
    ctx = home.context()
    assert [ctx.queue.get(i.id).state for i in items] == [  # type: ignore[union-attr]
        State.DELIVERED, State.DELIVERED]
    delivered = [h for h in reversed(ctx.queue.history(100)) if h.action == "delivered"]
    assert [(h.detail["name"], h.detail.get("recovered")) for h in delivered] == [
        (first.name, True), (second.name, None)]
    assert ctx.queue.handovers() == []
    # Our copy went to the trash, as for any delivery; the spool is empty.
    assert sorted(p.name.split("-", 2)[2] for p in ctx.paths.trash.iterdir()) == sorted(
        [first.name, second.name])
    assert not any(ctx.paths.spool.glob("*.wwz"))


def test_a_cut_handover_is_settled_only_once_its_inbox_is_back(home: Home) -> None:
    update = home.update()
    [item] = queue_updates(home, update)
    crash_during_handover(home, "renamed")
    away = home.root / "inbox-unmounted"
    home.inbox.rename(away)  # a network share, not mounted at the next start
    ctx = home.context()
    # Nothing can tell whether the copy arrived: no guess, no second copy, no deletion.
    [outcome] = ctx.delivery.process()
    assert outcome.result is Result.HELD
    assert ctx.delivery.delete(item.id) is None
    assert len(ctx.queue.handovers()) == 1
    assert not home.inbox.exists()  # not made again empty either
    away.rename(home.inbox)
    assert home.context().delivery.process() == []
    assert home.context().queue.get(item.id).state is State.DELIVERED  # type: ignore[union-attr]
    assert [p.name for p in home.inbox.iterdir()] == [update.name]


def test_supprimer_after_a_cut_handover_does_not_delete_what_the_inbox_has(home: Home) -> None:
    update = home.update()
    [item] = queue_updates(home, update)
    crash_during_handover(home, "renamed")
    # The item was in fact delivered: Supprimer finds it no longer waiting.
    assert home.context().delivery.delete(item.id) is None
    assert home.context().queue.get(item.id).state is State.DELIVERED  # type: ignore[union-attr]


# ---------------------------------------------------------------- Supprimer and the trash


def test_keeping_the_same_file_twice_leaves_no_temporary_name(tmp_path: Path) -> None:
    source = tmp_path / "spool" / "update.wwz"
    source.parent.mkdir()
    source.write_bytes(b"update")
    kept = tmp_path / "trash" / "update.wwz"
    durable_link(source, kept)
    durable_link(source, kept)  # a re-run after a crash, within the same second
    assert [p.name for p in kept.parent.iterdir()] == ["update.wwz"]
    assert kept.read_bytes() == b"update"


def test_supprimer_moves_the_file_to_the_trash(home: Home) -> None:
    update = home.update()
    [item] = queue_updates(home, update)
    spool_file = home.context().queue.spool_path(item)

    result = home.passeur("queue", "delete", str(item.id))
    assert result.returncode == 0, result.stderr
    assert french("{file}: deleted (kept in the trash for {days} days)").format(
        file=update.name, days=TRASH_DAYS) in result.stdout
    ctx = home.context()
    deleted = ctx.queue.get(item.id)
    assert deleted is not None
    assert deleted.state is State.DELETED
    assert not spool_file.exists()
    [kept] = ctx.paths.trash.iterdir()
    assert kept.read_bytes() == update.read_bytes()
    assert kept.name.endswith(f"-{item.id}-{update.name}")
    assert ctx.queue.history()[0].action == "deleted"
    assert list(home.inbox.iterdir()) == []

    again = home.passeur("queue", "delete", str(item.id))
    assert again.returncode == 1
    assert french("Item {id} is not waiting in the queue").format(id=item.id) in again.stderr
    assert home.passeur("queue", "process", str(item.id)).returncode == 1


def test_a_delivered_item_cannot_be_deleted(home: Home) -> None:
    [item] = queue_updates(home, home.update())
    home.context().delivery.process()
    assert home.context().delivery.delete(item.id) is None
    assert home.context().delivery.delete(424242) is None


def test_purge_trash_removes_only_files_older_than_thirty_days(home: Home) -> None:
    items = queue_updates(home, home.update(), home.update())
    delivery = home.context().delivery
    for item in items:
        assert delivery.delete(item.id) is not None
    old, recent = sorted(home.context().paths.trash.iterdir())
    month_ago = time.time() - (TRASH_DAYS + 1) * 86400
    os.utime(old, (month_ago, month_ago))
    nearly = time.time() - (TRASH_DAYS - 1) * 86400
    os.utime(recent, (nearly, nearly))

    assert delivery.purge_trash() == [old]
    assert list(home.context().paths.trash.iterdir()) == [recent]
    assert delivery.purge_trash(now=time.time() + 2 * 86400) == [recent]


# ---------------------------------------------------------------- the command line


def test_an_unconfigured_inbox_is_a_clear_configuration_error(
        tmp_path: Path, signing_key: SigningKey) -> None:
    home = make_home(tmp_path / "home", signing_key)
    config = home.root / "config.toml"
    config.write_text("\n".join(line for line in config.read_text("utf-8").splitlines()
                                if not line.startswith("inbox")), "utf-8")
    update = home.update()
    assert home.passeur("import", str(update)).returncode == 0

    result = home.passeur("queue", "process", "--all")
    assert result.returncode == 3
    assert result.stderr.strip() == french(
        "The application's inbox folder is not configured ([app] inbox in {path})"
    ).format(path=config)
    with pytest.raises(InboxNotConfigured):
        home.context().delivery.process()
    assert len(home.context().queue.pending()) == 1


def test_queue_process_exit_codes(home: Home) -> None:
    [item] = queue_updates(home, home.update())
    usage = home.passeur("queue", "process")
    assert usage.returncode == 2
    assert french("give item numbers, or --all") in usage.stderr
    missing = home.passeur("queue", "process", "424242")
    assert missing.returncode == 1
    assert french("No such item") in missing.stderr

    done = home.passeur("queue", "process", str(item.id))
    assert done.returncode == 0, done.stderr
    assert french("{file}: handed to {app}").format(file=item.name, app="Isacompta") in done.stdout
    assert (home.inbox / item.name).is_file()

    twice = home.passeur("queue", "process", str(item.id))
    assert twice.returncode == 1
    assert french("{file}: not waiting any more").format(file=item.name) in twice.stdout
    assert home.passeur("queue", "process", "--all").returncode == 0  # nothing left: fine
    assert home.passeur("queue", "delete", "424242").returncode == 1
