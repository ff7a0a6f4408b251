"""Crash safety: the importer and *Traiter* killed with SIGKILL at random points.

A child process (forked, so it starts in microseconds and many trials stay fast) imports
or delivers a batch of real updates and is killed after a random delay, or at the k-th
file-system step (rename, fsync, link, unlink) chosen at random. The parent then reopens
the queue and checks what a user relies on: nothing reported as queued is lost, nothing
is there twice, no half-written file sits under a final name, and finishing the work
afterwards yields exactly one item (one delivered file) per update.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemon.context import Context
from daemon.fsutil import sha256_file
from daemon.keys import SigningKey
from daemon.queue import Outcome, Queue, State
from tests.helpers import Home, make_home

BATCH = 6
IMPORT_TRIALS = 50
CLI_TRIALS = 4
DELIVERY_TRIALS = 16
CHILD_TIMEOUT_S = 60.0  # a child killed at a step that never comes has hung
STEPS = ("replace", "fsync", "link", "unlink")  # the os functions the durable paths use


@dataclass(frozen=True)
class Batch:
    """Real update files (in sequence order) and one forged file that is always refused."""

    updates: tuple[Path, ...]
    forged: Path
    sha: dict[str, str]  # file name -> SHA-256 of the genuine update

    @property
    def offered(self) -> list[Path]:
        """Return what the importer offers, the forged file in the middle."""
        middle = len(self.updates) // 2
        return [*self.updates[:middle], self.forged, *self.updates[middle:]]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> Batch:
    """Pack the batch once for every trial of the module."""
    home = make_home(tmp_path_factory.mktemp("batch") / "home", signing_key)
    updates = tuple(home.update(etalon=(n == 2)) for n in range(BATCH))
    genuine = home.update(BATCH + 50, out=home.root / "forged-source")
    data = bytearray(genuine.read_bytes())
    data[len(data) // 2] ^= 0x01
    forged = home.root / "forged" / genuine.name
    forged.parent.mkdir()
    forged.write_bytes(bytes(data))
    return Batch(updates, forged, {u.name: sha256_file(u) for u in updates})


# ---------------------------------------------------------------- the child process


def count_steps(action: Callable[[], object]) -> int:
    """Return how many file-system steps `action` takes."""
    calls = 0
    originals = {name: getattr(os, name) for name in STEPS}

    def counting(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)
        return wrapper

    try:
        for name, original in originals.items():
            setattr(os, name, counting(original))
        action()
    finally:
        for name, original in originals.items():
            setattr(os, name, original)
    return calls


def die_at_step(step: int, after: bool) -> None:
    """Make this process kill itself with SIGKILL at its `step`-th file-system step."""
    calls = 0

    def killing(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == step and not after:
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if calls == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    for name in STEPS:
        setattr(os, name, killing(getattr(os, name)))


@dataclass(frozen=True)
class Plan:
    """How one trial kills its child: after `delay` seconds, or at a file-system step."""

    delay: float | None = None
    step: int | None = None
    after: bool = False


def run_child(work: Callable[[int], None], plan: Plan) -> str:
    """Fork a child that runs `work(report_fd)`, kill it as planned; return its reports."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            if plan.step is not None:
                die_at_step(plan.step, plan.after)
            work(write_end)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(write_end)
    status, killed = wait_or_kill(pid, CHILD_TIMEOUT_S if plan.delay is None else plan.delay)
    with os.fdopen(read_end, "rb") as reports:
        text = reports.read().decode()
    assert plan.delay is not None or not killed, "the child hung"
    assert os.WIFSIGNALED(status) or os.waitstatus_to_exitcode(status) == 0, status
    return text


def wait_or_kill(pid: int, seconds: float) -> tuple[int, bool]:
    """Wait for a child for up to `seconds`, then SIGKILL it; return (status, killed)."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status, False
        time.sleep(min(remaining, 0.002))
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1], True


def import_batch(home: Path, files: list[Path], forever: bool) -> Callable[[int], None]:
    """Return child work: import the files in order (again and again if `forever`),
    reporting "id name" for each one queued, once its transaction is committed."""

    def work(report: int) -> None:
        ctx = Context(home)
        while True:
            for path in files:
                result = ctx.intake.import_path(path, "manual")
                if result.outcome is Outcome.QUEUED and result.item is not None:
                    os.write(report, f"{result.item.id} {result.name}\n".encode())
            if not forever:
                return

    return work


def deliver_all(home: Path) -> Callable[[int], None]:
    """Return child work: *Traiter* every waiting update once."""

    def work(report: int) -> None:
        Context(home).delivery.process()

    return work


# ---------------------------------------------------------------- checks


def files_under(folder: Path) -> Iterator[Path]:
    """Yield every file below `folder`."""
    if folder.is_dir():
        yield from (p for p in folder.rglob("*") if p.is_file())


def assert_no_partial_file(folder: Path, complete: set[str], forged_sha: str = "") -> None:
    """Every file is a temporary `.part` or has the full content of a known file."""
    for path in files_under(folder):
        if path.name.endswith(".part"):
            continue
        if path.name.endswith(".reason.json"):
            note = json.loads(path.read_text("utf-8"))
            assert note["sha256"] == forged_sha, path
            continue
        assert sha256_file(path) in complete | {forged_sha}, f"partial file {path}"


def open_queue(ctx: Context) -> Queue:
    """Open the trial's queue as a restarted service would."""
    ctx.paths.ensure()
    return Queue(ctx.paths.database, ctx.paths.spool)


def check_after_import_crash(root: Path, batch: Batch, reports: str) -> None:
    """Reopen after the kill and check the queue, the spool and the quarantine."""
    ctx = Context(root)
    complete = set(batch.sha.values())
    forged_sha = sha256_file(batch.forged)
    for folder in (ctx.paths.spool, ctx.paths.quarantine, root / "inbox"):
        assert_no_partial_file(folder, complete, forged_sha)
    assert all(p.name.endswith(".part") for p in files_under(ctx.paths.staging))
    assert list(files_under(root / "inbox")) == []

    queue = open_queue(ctx)
    try:
        assert queue.check_integrity() == []
        queue.recover()
        waiting = queue.pending()
        assert {p.relative_to(queue.spool).as_posix() for p in files_under(queue.spool)} == {
            i.spool_name for i in waiting}, "recover() left an orphan"
        for item in waiting:
            assert item.sha256 == batch.sha[item.name]
            assert sha256_file(queue.spool_path(item)) == item.sha256
        # The child imports in order: what got in is the first k updates, each once.
        assert [i.name for i in waiting] == [u.name for u in batch.updates[:len(waiting)]]
        by_id = {i.id: i.name for i in waiting}
        for line in reports.splitlines():
            item_id, name = line.split()
            assert by_id.get(int(item_id)) == name, f"reported as queued but lost: {line}"

        # Importing everything again completes the queue, exactly once per update.
        intake = ctx.intake
        for path in batch.offered:
            outcome = intake.import_path(path, "manual").outcome
            if path == batch.forged:
                assert outcome is Outcome.REJECTED
            else:
                assert outcome in (Outcome.QUEUED, Outcome.DUPLICATE)
        assert [i.name for i in queue.pending()] == [u.name for u in batch.updates]
        assert queue.check_integrity() == []
        assert queue.recover() == []
    finally:
        queue.close()


def trial_plan(trial: int, steps: int, max_delay: float) -> Plan:
    """Half the trials kill after a random delay, half at a random file-system step."""
    rng = random.Random(trial)
    if trial % 2 == 0:
        return Plan(delay=rng.uniform(0, max_delay))
    return Plan(step=rng.randint(1, steps), after=rng.random() < 0.5)


@pytest.fixture(scope="module")
def import_steps(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey,
                 batch: Batch) -> int:
    """How many file-system steps one import pass of the batch takes."""
    root = make_home(tmp_path_factory.mktemp("count") / "home", signing_key).root
    intake = Context(root).intake
    return count_steps(lambda: [intake.import_path(p, "manual") for p in batch.offered])


# ---------------------------------------------------------------- the importer killed


@pytest.mark.parametrize("trial", range(IMPORT_TRIALS))
def test_an_import_killed_at_a_random_point_loses_and_duplicates_nothing(
        tmp_path: Path, signing_key: SigningKey, batch: Batch, import_steps: int,
        trial: int) -> None:
    root = make_home(tmp_path / "home", signing_key).root
    plan = trial_plan(trial, import_steps, max_delay=0.15)
    reports = run_child(import_batch(root, batch.offered, forever=plan.delay is not None),
                        plan)
    check_after_import_crash(root, batch, reports)


@pytest.mark.parametrize("trial", range(CLI_TRIALS))
def test_the_import_command_killed_at_a_random_time(
        tmp_path: Path, signing_key: SigningKey, batch: Batch, trial: int) -> None:
    home = make_home(tmp_path / "home", signing_key)
    command = [sys.executable, "-m", "daemon.cli", "import", "--json",
               *map(str, batch.offered)]
    child = subprocess.Popen(command, env=home.env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    # The interpreter takes a few hundred milliseconds to start: spread the kills over
    # start-up and the imports themselves.
    time.sleep(random.Random(1000 + trial).uniform(0.2, 0.8))
    child.send_signal(signal.SIGKILL)
    stdout, _ = child.communicate()
    reports = ""
    if child.returncode != -signal.SIGKILL:  # it finished first: all it says must hold
        reports = "".join(f"{r['id']} {r['file']}\n" for r in json.loads(stdout)
                          if r["outcome"] == "queued")
    check_after_import_crash(home.root, batch, reports)


def test_trials_really_interrupt_imports(tmp_path: Path, signing_key: SigningKey,
                                         batch: Batch, import_steps: int) -> None:
    """Guards the harness itself: a kill at the middle step leaves an incomplete queue."""
    root = make_home(tmp_path / "home", signing_key).root
    run_child(import_batch(root, batch.offered, forever=False),
              Plan(step=import_steps // 2))
    queue = open_queue(Context(root))
    assert 0 < len(queue.pending()) < BATCH
    queue.close()


# ---------------------------------------------------------------- *Traiter* killed


@pytest.fixture(scope="module")
def queued_data(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey,
                batch: Batch) -> Path:
    """A data folder holding the whole batch, waiting (copied for each trial)."""
    root = make_home(tmp_path_factory.mktemp("queued") / "home", signing_key).root
    ctx = Context(root)
    for path in batch.updates:
        assert ctx.intake.import_path(path, "manual").outcome is Outcome.QUEUED
    ctx.queue.close()
    raw = sqlite3.connect(ctx.paths.database)
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    return ctx.paths.data


def fresh_queued_home(root: Path, key: SigningKey, queued_data: Path) -> Home:
    """Return a home whose queue holds the batch, waiting."""
    home = make_home(root, key)
    shutil.copytree(queued_data, root / "data")
    return home


@pytest.fixture(scope="module")
def delivery_steps(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey,
                   queued_data: Path) -> int:
    """How many file-system steps one *Traiter* of the batch takes."""
    home = fresh_queued_home(tmp_path_factory.mktemp("count-delivery") / "home",
                             signing_key, queued_data)
    delivery = home.context().delivery
    return count_steps(delivery.process)


@pytest.mark.parametrize("trial", range(DELIVERY_TRIALS))
def test_traiter_killed_at_a_random_point_delivers_each_update_once(
        tmp_path: Path, signing_key: SigningKey, batch: Batch, queued_data: Path,
        delivery_steps: int, trial: int) -> None:
    home = fresh_queued_home(tmp_path / "home", signing_key, queued_data)
    run_child(deliver_all(home.root), trial_plan(trial, delivery_steps, max_delay=0.05))

    ctx = home.context()
    complete = set(batch.sha.values())
    for folder in (home.inbox, ctx.paths.trash, ctx.paths.spool):
        assert_no_partial_file(folder, complete)
    for path in files_under(home.inbox):
        assert path.name.endswith(".part") or batch.sha[path.name] == sha256_file(path)
    queue = open_queue(ctx)
    try:
        assert queue.check_integrity() == []
        outcomes = ctx.delivery.process()  # the user presses *Traiter* again
        assert {str(o.result) for o in outcomes} <= {"delivered"}
        queue.recover()
        assert queue.pending() == []
        assert sorted(p.name for p in files_under(home.inbox)) == sorted(batch.sha)
        assert not [p for p in files_under(ctx.paths.trash) if p.name.endswith(".part")]
        for path in files_under(home.inbox):
            assert sha256_file(path) == batch.sha[path.name]
        delivered = [h.detail["name"] for h in reversed(queue.history(1000))
                     if h.action == "delivered"]
        assert delivered == [u.name for u in batch.updates], "once each, in order"
        assert all(i.state is State.DELIVERED for i in queue.items(list(State)))
        assert list(files_under(ctx.paths.spool)) == []
        kept = {sha256_file(p) for p in files_under(ctx.paths.trash)}
        assert kept == complete, "the trash keeps a copy of every delivered update"
    finally:
        queue.close()
