"""Several real processes on one queue at once: no "database is locked", nothing lost or doubled.

Each worker is a separate Python process that runs the real CLI entry point in a loop
(a new composition root, hence a new database connection, for every command), started
together through files used as a barrier so that their commands really overlap.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from daemon import config_edit
from daemon.cli import main as passeur_main
from daemon.queue import State
from tests.helpers import Home

OTHER_DOSSIER = "8502183"
REPO = Path(__file__).resolve().parent.parent
UPDATES_PER_WORKER = 6
SAME_FILE_ROUNDS = 6


# ---------------------------------------------------------------- the worker process


def run_cli(*args: str) -> tuple[int, Any]:
    """Run one passeur command in this process; return its exit code and JSON output."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = passeur_main(list(args))
    return code, json.loads(output.getvalue()) if "--json" in args else None


def wait_for(path: Path, timeout: float = 60) -> None:
    """Wait until `path` exists (the barrier between workers)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.001)


def barrier(folder: Path, name: str, me: str, others: list[str]) -> None:
    """Say this worker is at `name`, then wait for the others to be there too."""
    (folder / f"{name}-{me}").touch()
    for other in others:
        wait_for(folder / f"{name}-{other}")


def import_and_list(sync: Path, files: list[Path]) -> list[Any]:
    """Import each file then list the queue, twice over; return every output."""
    wait_for(sync / "go")
    log: list[Any] = []
    for _ in range(2):
        for path in files:
            code, result = run_cli("import", "--json", str(path))
            log.append({"import": result, "code": code})
            code, listed = run_cli("queue", "--all", "--json")
            log.append({"list": [item["id"] for item in listed], "code": code})
    return log


def in_step(sync: Path, me: str, others: list[str], commands: list[list[str]]) -> list[Any]:
    """Run each command at the same moment as the other workers run theirs."""
    log = []
    for number, command in enumerate(commands):
        barrier(sync, f"round{number}", me, others)
        code, result = run_cli(*command)
        log.append({"code": code, "result": result})
    return log


def worker_main(argv: list[str]) -> int:
    """Entry point of a worker process; prints its log as JSON."""
    mode, sync = argv[0], Path(argv[1])
    if mode == "import":
        log = import_and_list(sync, [Path(p) for p in argv[2:]])
    else:
        me, others, commands = argv[2], argv[3].split(","), json.loads(argv[4])
        log = in_step(sync, me, others, commands)
    print(json.dumps(log))
    return 0


# ---------------------------------------------------------------- the test side


def start_worker(home: Home, *args: str) -> subprocess.Popen[str]:
    """Start a worker process in this home."""
    env = home.env
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    code = ("import sys; from tests.test_concurrency import worker_main; "
            "sys.exit(worker_main(sys.argv[1:]))")
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(worker: subprocess.Popen[str]) -> list[Any]:
    """Wait for a worker; check it did not fail; return its log."""
    stdout, stderr = worker.communicate(timeout=120)
    assert "locked" not in stderr, stderr
    assert worker.returncode == 0, stderr
    log: list[Any] = json.loads(stdout)
    return log


def test_importers_and_listers_at_once(home: Home) -> None:
    config_edit.add_dossier(home.root / "config.toml", OTHER_DOSSIER, "EARL DES TESTS")
    mine = [home.update(n) for n in range(1, UPDATES_PER_WORKER + 1)]
    theirs = [home.update(n, dossier=OTHER_DOSSIER) for n in range(1, UPDATES_PER_WORKER + 1)]
    sync = home.root / "sync"
    sync.mkdir()
    # The database does not exist yet: the workers also race to create it.
    assert not home.context().paths.database.exists()
    workers = [start_worker(home, "import", str(sync), *map(str, files))
               for files in (mine, theirs)]
    (sync / "go").touch()
    listings = []
    while any(w.poll() is None for w in workers):
        listed = home.passeur("queue", "--all", "--json")
        assert listed.returncode == 0, listed.stderr
        listings.append([item["id"] for item in json.loads(listed.stdout)])
    logs = [finish(w) for w in workers]

    for log, files in zip(logs, (mine, theirs), strict=True):
        imports = [entry["import"][0] for entry in log if "import" in entry]
        outcomes = [entry["outcome"] for entry in imports]
        assert outcomes == ["queued"] * len(files) + ["duplicate"] * len(files)
        assert [entry["file"] for entry in imports] == [f.name for f in files] * 2
        lists = [entry["list"] for entry in log if "list" in entry]
        assert all(entry["code"] == 0 for entry in log)
        listings += lists
    for listing in listings:
        assert len(listing) == len(set(listing)), "an item listed twice"
    # Every item a worker saw queued is in each later listing it made.
    for log in logs:
        seen: set[int] = set()
        for entry in log:
            if "import" in entry:
                seen.add(entry["import"][0]["id"])
            else:
                assert seen <= set(entry["list"]), "an item disappeared"

    queue = home.context().queue
    assert queue.check_integrity() == []
    items = queue.items(list(State))
    assert sorted(i.name for i in items) == sorted(f.name for f in mine + theirs)
    assert all(i.state is State.WAITING for i in items)
    assert [h.action for h in queue.history(1000)].count("received") == 2 * UPDATES_PER_WORKER


def start_in_step(home: Home, commands: list[list[str]]) -> list[subprocess.Popen[str]]:
    """Start two workers that run the same commands in step with each other."""
    sync = home.root / "sync"
    sync.mkdir()
    return [start_worker(home, "step", str(sync), me, other, json.dumps(commands))
            for me, other in (("a", "b"), ("b", "a"))]


def test_two_processes_importing_the_same_file_make_one_item(home: Home) -> None:
    updates = [home.update() for _ in range(SAME_FILE_ROUNDS)]
    workers = start_in_step(home, [["import", "--json", str(u)] for u in updates])
    logs = [finish(w) for w in workers]

    for number in range(SAME_FILE_ROUNDS):
        results = [log[number]["result"][0] for log in logs]
        assert sorted(r["outcome"] for r in results) == ["duplicate", "queued"], results
        assert results[0]["id"] == results[1]["id"]
    queue = home.context().queue
    assert queue.check_integrity() == []
    assert [i.name for i in queue.items(list(State))] == [u.name for u in updates]
    assert len([p for p in queue.spool.rglob("*") if p.is_file()]) == SAME_FILE_ROUNDS


def test_two_processes_pressing_traiter_at_once_deliver_each_update_once(home: Home) -> None:
    updates = [home.update() for _ in range(6)]
    commands = []
    for update in updates:  # both receive the same file, then both press *Traiter*
        commands += [["import", "--json", str(update)], ["queue", "process", "--all"]]
    workers = start_in_step(home, commands)
    for worker in workers:
        finish(worker)

    ctx = home.context()
    assert ctx.queue.pending() == []
    delivered = [h.detail["name"] for h in reversed(ctx.queue.history(1000))
                 if h.action == "delivered"]
    assert delivered == [u.name for u in updates]
    assert sorted(p.name for p in home.inbox.iterdir()) == sorted(u.name for u in updates)
    for update in updates:
        assert (home.inbox / update.name).read_bytes() == update.read_bytes()
    # One hand-over each: exactly one copy of each update kept in the trash.
    trash = sorted(p.name.split("-", 2)[2] for p in ctx.paths.trash.iterdir())
    assert trash == sorted(u.name for u in updates)
