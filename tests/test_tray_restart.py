"""Restarting the accounting application (daemon/restart.py) with real processes.

The stand-in applications run under a unique script name per test, so that the process
search can never find (and ask to close) another test's stand-in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from daemon.context import Context
from daemon.errors import ConfigError
from daemon.keys import SigningKey
from daemon.queue import State
from daemon.restart import (
    AppRestarter,
    RestartOutcome,
    RestartReport,
    RestartSettings,
    describe_report,
    items_for_restart,
    mark_restart_required,
    seconds_until_reminder,
)
from tests.helpers import Home, make_home
from tests.xsession import wait_for

TESTS = Path(__file__).resolve().parent


@dataclass
class App:
    """A configured stand-in application: its script, inbox and the folder it takes into."""

    home: Home
    script: Path
    taken: Path

    @property
    def argv(self) -> list[str]:
        return [sys.executable, str(self.script), str(self.home.inbox), str(self.taken)]

    def start(self, script: Path | None = None) -> subprocess.Popen[str]:
        argv = self.argv if script is None else [sys.executable, str(script),
                                                 *self.argv[2:]]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        return process

    def context(self) -> Context:
        return Context(self.home.root)


def unique_copy(source: Path, folder: Path) -> Path:
    target = folder / f"app_{uuid.uuid4().hex[:10]}.py"
    shutil.copy(source, target)
    return target


def configure(home: Home, script: Path, taken: Path, command: list[str] | None,
              close_timeout: int = 5) -> None:
    config = home.root / "config.toml"
    original = home.root / "config.original.toml"
    if not original.exists():
        shutil.copy(config, original)
    app = [f'process_names = ["{script.name}"]']
    if command is not None:
        app.append("command = [" + ", ".join(f'"{part}"' for part in command) + "]")
    text = original.read_text("utf-8").replace('process_names = []', "\n".join(app))
    text += f"\n[restart]\nclose_timeout_seconds = {close_timeout}\n"
    config.write_text(text, "utf-8")


@pytest.fixture
def app(tmp_path: Path, signing_key: SigningKey) -> Iterator[App]:
    home = make_home(tmp_path / "home", signing_key)
    script = unique_copy(TESTS / "standin_app.py", tmp_path)
    taken = tmp_path / "taken"
    stand_in = App(home, script, taken)
    configure(home, script, taken, stand_in.argv)
    yield stand_in
    for proc in psutil.process_iter(["cmdline"]):
        if any(script.name in str(arg) for arg in proc.info["cmdline"] or []):
            proc.kill()


def queue_etalon(app: App, *later: int) -> list[int]:
    ctx = app.context()
    ids = []
    for sequence, etalon in [(1, True), *((n, False) for n in later)]:
        result = ctx.intake.import_path(app.home.update(sequence, etalon=etalon), "manual")
        assert result.item is not None
        ids.append(result.item.id)
    return ids


def kill_relaunched(report: RestartReport) -> None:
    if report.process is not None:
        report.process.kill()
        report.process.wait(10)


def test_etalon_updates_are_flagged_only_while_the_application_runs(app: App) -> None:
    etalon, later = queue_etalon(app, 2)
    ctx = app.context()
    assert mark_restart_required(ctx.queue, ctx.delivery.watcher) == ()
    process = app.start()
    try:
        assert mark_restart_required(ctx.queue, ctx.delivery.watcher) == (etalon,)
        assert [i.id for i in items_for_restart(ctx.queue.pending())] == [etalon, later]
        assert not ctx.queue.get(later).restart_required  # type: ignore[union-attr]
    finally:
        process.terminate()
        process.wait(10)


def test_restart_closes_gracefully_hands_over_and_starts_it_again(app: App) -> None:
    etalon, later = queue_etalon(app, 2)
    old = app.start()
    ctx = app.context()
    mark_restart_required(ctx.queue, ctx.delivery.watcher)
    restarter = AppRestarter(ctx.delivery, ctx.config.app, RestartSettings.load(
        ctx.config_path))
    report = restarter.restart()
    try:
        assert report.outcome is RestartOutcome.RESTARTED, report
        # Asked politely (SIGTERM), it closed by itself; the restarter collected it, so
        # its exit code is not ours to read (the refusing stand-in shows nothing is killed).
        assert old.wait(5) is not None
        assert [i.id for i in report.delivered] == [etalon, later]
        assert report.waiting == ()
        (new_pid,) = report.pids
        assert new_pid != old.pid
        assert psutil.Process(new_pid).is_running()
        assert ctx.delivery.watcher.running_pids() == [new_pid]
        # The new process took both updates from its inbox, the étalon first.
        journal = app.taken / "journal.txt"
        assert wait_for(lambda: journal.exists() and len(journal.read_text().splitlines()) == 2)
        names = [line.split()[0] for line in journal.read_text().splitlines()]
        assert names == [ctx.queue.get(etalon).name, ctx.queue.get(later).name]  # type: ignore[union-attr]
        assert all(ctx.queue.get(i).state is State.DELIVERED for i in (etalon, later))  # type: ignore[union-attr]
        assert describe_report(report, "Isacompta") == (
            "Isacompta a été relancé ; 2 mises à jour remises à Isacompta.")
    finally:
        kill_relaunched(report)


def test_an_application_that_refuses_to_close_is_never_killed_without_consent(
    app: App, tmp_path: Path
) -> None:
    configure(app.home, app.script, app.taken, app.argv, close_timeout=1)
    stubborn = unique_copy(TESTS / "stubborn_app.py", tmp_path)
    configure(app.home, stubborn, app.taken, app.argv, close_timeout=1)
    (etalon,) = queue_etalon(app)
    process = app.start(stubborn)
    ctx = app.context()
    mark_restart_required(ctx.queue, ctx.delivery.watcher)
    restarter = AppRestarter(ctx.delivery, ctx.config.app, RestartSettings.load(
        ctx.config_path))
    try:
        report = restarter.restart()
        assert report.outcome is RestartOutcome.STILL_RUNNING
        assert report.pids == (process.pid,)
        assert process.poll() is None, "asked, refused, and left alone"
        assert ctx.queue.get(etalon).state is State.WAITING  # type: ignore[union-attr]
        assert not (app.home.inbox / ctx.queue.get(etalon).name).exists()  # type: ignore[union-attr]
        assert describe_report(report, "Isacompta") == (
            "Isacompta ne s'est pas fermé : les mises à jour attendent toujours.")
        # The user confirmed: now, and only now, it is killed.
        forced = restarter.force_close(report.pids)
        process.wait(5)
        assert not psutil.pid_exists(process.pid)
        assert forced.outcome is RestartOutcome.RESTARTED
        assert [i.id for i in forced.delivered] == [etalon]
        kill_relaunched(forced)
    finally:
        if process.poll() is None:
            process.kill()


def test_without_a_command_it_is_closed_and_the_user_told_to_start_it(app: App) -> None:
    configure(app.home, app.script, app.taken, None)
    queue_etalon(app)
    process = app.start()
    ctx = app.context()
    report = AppRestarter(ctx.delivery, ctx.config.app, RestartSettings()).restart()
    assert process.wait(5) == 0
    assert report.outcome is RestartOutcome.CLOSED
    assert len(report.delivered) == 1
    assert "Relancez-le pour les intégrer" in describe_report(report, "Isacompta")


def test_a_command_that_cannot_start_is_reported(app: App, tmp_path: Path) -> None:
    configure(app.home, app.script, app.taken, [str(tmp_path / "no-such-program")])
    queue_etalon(app)
    ctx = app.context()
    report = AppRestarter(ctx.delivery, ctx.config.app, RestartSettings()).restart()
    assert report.outcome is RestartOutcome.START_FAILED
    assert len(report.delivered) == 1, "the updates were handed over all the same"
    assert "n'a pas pu être relancé" in describe_report(report, "Isacompta")
    configure(app.home, app.script, app.taken, [sys.executable, "-c", "raise SystemExit(3)"])
    queue_etalon_again = ctx.intake.import_path(app.home.update(5, etalon=True), "manual")
    assert queue_etalon_again.item is not None
    report = AppRestarter(ctx.delivery, app.context().config.app, RestartSettings()).restart()
    assert report.outcome is RestartOutcome.START_FAILED
    assert "code 3" in report.detail


def test_restart_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    assert RestartSettings.load(config) == RestartSettings(60, 60)
    config.write_text("[restart]\nremind_after_minutes = 90\nclose_timeout_seconds = 20\n")
    settings = RestartSettings.load(config)
    assert settings == RestartSettings(90, 20)
    assert seconds_until_reminder(settings) == 90 * 60
    for text, key in [("remind_after_minutes = 30", "restart.remind_after_minutes"),
                      ("close_timeout_seconds = true", "restart.close_timeout_seconds"),
                      ("close_timeout_seconds = 0", "restart.close_timeout_seconds")]:
        config.write_text(f"[restart]\n{text}\n")
        with pytest.raises(ConfigError) as caught:
            RestartSettings.load(config)
        assert caught.value.key == key
    config.write_text("restart = 3\n")
    with pytest.raises(ConfigError):
        RestartSettings.load(config)


def test_reminders_are_never_more_than_hourly() -> None:
    assert seconds_until_reminder(RestartSettings(remind_after_minutes=1)) == 3600
