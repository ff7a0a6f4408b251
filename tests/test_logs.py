"""The log: rotating private files, one line per record, no secret ever, events in words, and
`passeur log [--follow]` as a real process."""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon import events as ev
from daemon import i18n
from daemon.logs import (
    BACKUPS,
    LOG_NAME,
    MAX_BYTES,
    LineFormatter,
    LogFile,
    describe_event,
    log_event,
    log_files,
    setup_logging,
    stop_logging,
)
from daemon.support import redact
from tests.faultserver import file_keyring
from tests.helpers import Home

# The French of the new messages waits in daemon/locale/pending/*.po until the lead merges
# it. A check whose messages are not in the catalogue yet is expected to fail (strictly:
# it must fail); once they are merged, it is an ordinary test that must pass.


def pending_french(*msgids: str) -> pytest.MarkDecorator:
    """Mark a French check that needs these messages merged into the catalogue."""
    missing = [m for m in msgids if i18n.in_language("fr", m) == m]
    return pytest.mark.xfail(bool(missing), strict=True,
                             reason=f"PENDING MERGE of daemon/locale/pending/*.po: {missing}")


TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
WVZ = "8502182-20201027171147.wvz"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    """Each test leaves the root logger and the secrets as it found them."""
    root = logging.getLogger()
    level = root.level
    yield
    stop_logging()
    root.setLevel(level)
    redact.forget_secrets()


@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is Paris time (CET/CEST), whatever the machine's."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def lines_of(path: Path) -> list[str]:
    return path.read_text("utf-8").splitlines()


# ---------------------------------------------------------------- files and lines


def test_setting_the_log_up_twice_writes_each_line_once(tmp_path: Path) -> None:
    setup_logging(tmp_path / "a")
    setup_logging(tmp_path / "a")
    logging.getLogger("passeur").info("une seule fois")
    [line] = lines_of(tmp_path / "a" / LOG_NAME)
    assert line.endswith("passeur: une seule fois")
    # Moving the log elsewhere (the demo's home) lets the first file go.
    first = [h for h in logging.getLogger().handlers if isinstance(h, LogFile)]
    setup_logging(tmp_path / "b")
    logging.getLogger("passeur").info("ailleurs")
    assert len(lines_of(tmp_path / "a" / LOG_NAME)) == 1
    assert len(lines_of(tmp_path / "b" / LOG_NAME)) == 1
    assert first[0].stream is None  # closed
    assert sum(isinstance(h, LogFile) for h in logging.getLogger().handlers) == 1


def test_handlers_others_added_stay(tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    logging.getLogger().addHandler(keep)
    try:
        setup_logging(tmp_path)
        setup_logging(tmp_path)
        logging.getLogger("passeur").info("vu")
    finally:
        logging.getLogger().removeHandler(keep)
    assert [r.getMessage() for r in records] == ["vu"]


def test_one_line_per_record_with_the_time_and_its_offset(tmp_path: Path, paris: None) -> None:
    i18n.setup("en")
    setup_logging(tmp_path)
    log = logging.getLogger("passeur.test")
    log.info("first\nforged 2020-01-01 INFO line")
    log.warning("careful")
    try:
        raise ValueError("broken\non two lines")
    except ValueError:
        log.exception("it failed")
    lines = lines_of(tmp_path / LOG_NAME)
    assert len(lines) == 3
    assert re.fullmatch(rf"{TIME} INFO passeur\.test: first \| forged 2020-01-01 INFO line",
                        lines[0]), lines[0]
    assert re.fullmatch(rf"{TIME} WARNING passeur\.test: careful", lines[1]), lines[1]
    assert lines[0][23:29] in ("+01:00", "+02:00")  # Paris, summer or winter
    assert lines[2].startswith(lines[2][:29] + " ERROR passeur.test: it failed | Traceback")
    assert lines[2].endswith("ValueError: broken | on two lines")


@pending_french("WARNING", "ERROR")
def test_level_names_are_french_as_the_interface(tmp_path: Path) -> None:
    setup_logging(tmp_path)
    log = logging.getLogger("passeur")
    log.info("a")
    log.warning("b")
    log.error("c")
    levels = [line.split(" ")[1] for line in lines_of(tmp_path / LOG_NAME)]
    assert levels == ["INFO", "AVERTISSEMENT", "ERREUR"]


def test_log_files_are_private_utf8_and_survive_names_that_are_not(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    setup_logging(folder)
    name = os.fsdecode(b"8502182-\xe9t\xe9.wwz")  # a key's name in Latin-1: surrogates
    logging.getLogger("passeur").info("%s reçu, « dossiers étalons »", name)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / LOG_NAME).stat().st_mode) == 0o600
    line = (folder / LOG_NAME).read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "8502182-\\udce9t\\udce9.wwz reçu, « dossiers étalons »" in line


def test_rotation_is_size_capped(tmp_path: Path) -> None:
    assert (MAX_BYTES, BACKUPS) == (1 << 20, 4)  # 5 files × 1 MB at most
    handler = LogFile(tmp_path / LOG_NAME, max_bytes=1000, backups=2)
    handler.setFormatter(LineFormatter())
    log = _private_logger("passeur.rotation", handler)
    for n in range(200):
        log.info("line %03d %s", n, "x" * 40)
    handler.close()
    files = log_files(tmp_path)
    assert [p.name for p in files] == [LOG_NAME, f"{LOG_NAME}.1", f"{LOG_NAME}.2"]
    assert all(p.stat().st_size <= 1000 for p in files)
    assert lines_of(files[0])[-1].endswith("line 199 " + "x" * 40)
    kept = [line for p in reversed(files) for line in lines_of(p)]
    numbers = [int(line.split("line ")[1][:3]) for line in kept]
    assert numbers == list(range(numbers[0], 200))  # in order, none twice, none lost between


def test_a_file_rotated_by_another_process_is_followed(tmp_path: Path) -> None:
    # Two writers of one log (a second `passeur run` starting): when one rotates, the other
    # must write on in the new file, not in the renamed one.
    first = LogFile(tmp_path / LOG_NAME, max_bytes=10_000)
    second = LogFile(tmp_path / LOG_NAME, max_bytes=10_000)
    for handler in (first, second):
        handler.setFormatter(LineFormatter())
    one = _private_logger("passeur.one", first)
    two = _private_logger("passeur.two", second)
    one.info("before")
    second.doRollover()
    two.info("from two")
    one.info("after")
    first.close()
    second.close()
    current = lines_of(tmp_path / LOG_NAME)
    assert [line.split(": ", 1)[1] for line in current] == ["from two", "after"]
    assert [line.split(": ", 1)[1] for line in lines_of(tmp_path / f"{LOG_NAME}.1")] == [
        "before"]


def _private_logger(name: str, handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log


# ---------------------------------------------------------------- no secret ever


def test_no_secret_reaches_the_log(tmp_path: Path) -> None:
    setup_logging(tmp_path)
    redact.register_secret("S3cr3t-Pw!é")
    log = logging.getLogger("passeur.web")
    log.info("password typed: %s", "S3cr3t-Pw!é")
    log.info("url %s", "https://gaec:other-pass@127.0.0.1:8443/echanges/8502182/")
    log.info("headers {'Authorization': 'Basic Z2FlYzpTM2NyM3QtUHc='} sent")
    log.info("Authorization: Bearer tok-4f9a8b7c6d5e")
    log.info("form password=hunter22&user=gaec token=abcdefgh12 api_key = 'k3y-value'")
    log.info("escaped %s", "S3cr3t-Pw%21%C3%A9")
    try:
        raise ConnectionError("https://gaec:S3cr3t-Pw!é@127.0.0.1/ refused")
    except ConnectionError:
        log.exception("poll failed for %s", "gaec")
    text = (tmp_path / LOG_NAME).read_text("utf-8")
    for secret in ("S3cr3t-Pw", "other-pass", "Z2FlYzpTM2NyM3QtUHc", "tok-4f9a8b7c6d5e",
                   "hunter22", "abcdefgh12", "k3y-value", "%21%C3%A9"):
        assert secret not in text, secret
    assert text.count("***") >= 9
    assert "https://***@127.0.0.1:8443/echanges/8502182/" in text
    assert "user=gaec" in text  # only the secrets go
    assert "poll failed for gaec" in text


def test_the_keyring_read_registers_the_secret(tmp_path: Path) -> None:
    from daemon.web.credentials import BASIC, Credential, CredentialStore

    CredentialStore(file_keyring(tmp_path / "kr.cfg")).set(
        "8502182", Credential(BASIC, "mot-de-passe-du-gaec", "gaec"))
    redact.forget_secrets()  # as in a fresh process: only reading it is left
    credential = CredentialStore(file_keyring(tmp_path / "kr.cfg")).get("8502182")
    assert credential is not None
    setup_logging(tmp_path / "logs")
    logging.getLogger("passeur").warning("server said: wrong mot-de-passe-du-gaec")
    text = (tmp_path / "logs" / LOG_NAME).read_text("utf-8")
    assert "mot-de-passe-du-gaec" not in text
    assert "server said: wrong ***" in text


def test_short_values_are_not_taken_for_secrets() -> None:
    redact.register_secret("ab")
    assert redact.redact_secrets("a tab and a cab") == "a tab and a cab"


# ---------------------------------------------------------------- events in words


def _new_events() -> list[tuple[ev.Event, str | None]]:
    return [
        (ev.PauseChanged(paused=False), "Receiving again"),
        (ev.PauseChanged(paused=True), "Receiving is paused until you resume it"),
        (ev.SendStarted("8502182", WVZ, "web"),
         f"Sending {WVZ} (Web synchronisation with your accountant)"),
        (ev.SendProgress("8502182", WVZ, "transfer", 10, 100), None),
        (ev.SendFinished("8502182", WVZ, "folder", where="the key CLE (E:)"),
         f"{WVZ} sent (the key CLE (E:))"),
        (ev.SendFinished("8502182", WVZ, "email"), f"{WVZ} sent"),
        (ev.SendFinished("8502182", WVZ, "web", ok=False, message="disk full"),
         f"{WVZ} not sent: disk full"),
        (ev.SendFailed("8502182", WVZ, "web", "cancelled", "cancelled by you"),
         f"{WVZ} not sent: cancelled by you"),
        (ev.ReceiptReceived("8502182", WVZ, "ab" * 32, "2020-10-27T16:30:00Z"),
         f"{WVZ}: received by your accountant on 2020-10-27 at 17:30"),
    ]


@pytest.mark.parametrize(("event", "expected"), _new_events())
def test_the_new_events_in_words(event: ev.Event, expected: str | None, paris: None) -> None:
    i18n.setup("en")
    assert describe_event(event) == expected


def test_a_timed_pause_says_until_when(paris: None) -> None:
    from datetime import datetime

    i18n.setup("en")
    until = datetime(2020, 10, 27, 15, 30).astimezone().timestamp()
    text = describe_event(ev.PauseChanged(paused=True, until=until))
    assert text is not None
    assert text.startswith("Receiving is paused until ")
    assert "15:30" in text


@pytest.mark.parametrize(("event", "expected"), [
    pytest.param(ev.PauseChanged(paused=False), "Réception reprise",
                 marks=pending_french("Receiving again")),
    pytest.param(ev.PauseChanged(paused=True), "Réception en pause jusqu'à la reprise",
                 marks=pending_french("Receiving is paused until you resume it")),
    pytest.param(ev.SendStarted("8502182", WVZ, "web"),
                 f"Envoi de {WVZ} (Synchronisation Web avec votre comptable)",
                 marks=pending_french("Sending {file} ({channel})",
                                      "Web synchronisation with your accountant")),
    pytest.param(ev.SendFinished("8502182", WVZ, "folder", where="la clé CLE (E:)"),
                 f"{WVZ} envoyé (la clé CLE (E:))", marks=pending_french("{file} sent ({where})")),
    pytest.param(ev.SendFailed("8502182", WVZ, "web", "cancelled", "envoi annulé"),
                 f"{WVZ} non envoyé : envoi annulé",
                 marks=pending_french("{file} not sent: {reason}")),
    pytest.param(ev.ReceiptReceived("8502182", WVZ, "ab" * 32, "2020-10-27T16:30:00+00:00"),
                 f"{WVZ} : reçu par votre comptable le 27/10/2020 à 17:30",
                 marks=pending_french("{file}: received by your accountant on {date} at {time}")),
])
def test_the_new_events_in_french(event: ev.Event, expected: str, paris: None) -> None:
    assert describe_event(event) == expected


def test_each_event_is_logged_once(tmp_path: Path) -> None:
    i18n.setup("en")
    setup_logging(tmp_path)
    setup_logging(tmp_path)
    for event in (ev.SendStarted("8502182", WVZ, "email"), ev.SendProgress(
            "8502182", WVZ, "pack", 1, 2), ev.SendFinished("8502182", WVZ, "email")):
        log_event(event)
    lines = lines_of(tmp_path / LOG_NAME)
    assert len(lines) == 2
    assert lines[0].endswith(f"INFO passeur: Sending {WVZ} (Email)")
    assert lines[1].endswith(f"INFO passeur: {WVZ} sent")


# ---------------------------------------------------------------- passeur log


def write_lines(folder: Path, count: int, start: int = 0, max_bytes: int = MAX_BYTES,
                backups: int = BACKUPS) -> LogFile:
    handler = LogFile(folder / LOG_NAME, max_bytes=max_bytes, backups=backups)
    handler.setFormatter(LineFormatter())
    log = _private_logger("passeur.writer", handler)
    for n in range(start, start + count):
        log.info("line %05d", n)
    return handler


def numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"line (\d{5})", text)]


def test_log_prints_the_last_lines_even_across_a_rotation(home: Home) -> None:
    folder = home.root / "logs"
    folder.mkdir()
    write_lines(folder, 130, max_bytes=4000).close()  # about 60 lines a file
    assert len(log_files(folder)) == 3
    shown = home.passeur("log", check=True).stdout
    assert numbers(shown) == list(range(80, 130))
    assert numbers(home.passeur("log", "--lines", "3", check=True).stdout) == [127, 128, 129]
    assert numbers(home.passeur("log", "-n", "0", check=True).stdout) == []
    assert numbers(home.passeur("log", "-n", "500", check=True).stdout) == list(range(130))


def test_log_without_a_log_folder_is_a_calm_sentence(home: Home) -> None:
    result = home.passeur("log")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    assert "journal de fonctionnement" in result.stdout or "no log yet" in result.stdout


def test_log_into_head_ends_quietly(home: Home) -> None:
    folder = home.root / "logs"
    folder.mkdir()
    write_lines(folder, 4000).close()  # more than a pipe holds: the writer must meet EPIPE
    passeur = subprocess.Popen([sys.executable, "-m", "daemon.cli", "log", "--lines", "4000"],
                               env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=passeur.stdout, capture_output=True,
                          timeout=60, check=True)
    assert passeur.stdout is not None
    passeur.stdout.close()
    _out, err = passeur.communicate(timeout=60)
    assert numbers(head.stdout.decode()) == [0]
    assert passeur.returncode == 0, err
    assert err.decode() == ""


def test_follow_goes_on_across_rotations_until_ctrl_c(home: Home) -> None:
    folder = home.root / "logs"
    folder.mkdir()
    handler = write_lines(folder, 1, max_bytes=2000, backups=3)  # about 30 lines a file
    log = logging.getLogger("passeur.writer")
    follower = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "log", "--follow", "--lines", "5"],
        env=home.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: Ctrl-C reaches it even when the tests run in the background
        # (a background job inherits SIGINT ignored, and then never sees Ctrl-C).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in follower.stdout or ():
            seen.put(line)

    threading.Thread(target=read, daemon=True).start()
    got: list[int] = []

    def wait_for_line(n: int) -> None:
        while n not in got:
            got.extend(numbers(seen.get(timeout=30)))

    try:
        wait_for_line(0)
        written = 1
        # Batches with no rotation, one, and several between two looks of the follower.
        for batch in (10, 40, 75, 3):
            for n in range(written, written + batch):
                log.info("line %05d", n)
            written += batch
            wait_for_line(written - 1)
        rotated = len(log_files(folder))
    finally:
        handler.close()
        follower.send_signal(signal.SIGINT)
        _out, err = follower.communicate(timeout=30)
    assert rotated == 4
    assert got == list(range(written))  # every line, once, in order
    assert follower.returncode == 0, err
    assert "Traceback" not in err


# ---------------------------------------------------------------- the service's own log


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_running_service_says_each_thing_once(home: Home, tmp_path: Path) -> None:
    drop = tmp_path / "Téléchargements"
    drop.mkdir()
    config = home.root / "config.toml"
    config.write_text(config.read_text().replace("watch = []", f'watch = ["{drop}"]'))
    log = home.root / "logs" / LOG_NAME
    service = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--headless"],
                               env=home.env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    update = home.update(1)
    try:
        assert _wait_for(lambda: log.exists() and "passeur démarré" in log.read_text()), \
            service.poll()
        shutil.copy(update, drop / update.name)
        assert _wait_for(lambda: update.name in log.read_text()
                         and "1 mise à jour importée" in log.read_text()), log.read_text()
    finally:
        service.send_signal(signal.SIGTERM)
        _out, err = service.communicate(timeout=30)
    assert service.returncode == 0, err
    messages = [line.split(": ", 1)[1] for line in lines_of(log)]
    assert len(messages) == len(set(messages)), "\n".join(messages)
    about = [m for m in messages if update.name in m]
    assert about == [f"{update.name} reçu et mis en attente"], messages


def test_the_follower_reads_every_line_once_while_the_log_rotates_under_it(
    tmp_path: Path
) -> None:
    from daemon.support.logview import Follower

    # A writer that rotates every 30 lines or so while the follower looks as fast as it can:
    # rotations land in the middle of its scans. Enough backups that none is deleted.
    handler = LogFile(tmp_path / LOG_NAME, max_bytes=2000, backups=95)
    handler.setFormatter(LineFormatter())
    log = _private_logger("passeur.race", handler)
    log.info("line %05d", 0)
    follower = Follower(tmp_path)
    got = numbers("\n".join(follower.start(10)))
    done = threading.Event()

    def write() -> None:
        for n in range(1, 2500):
            log.info("line %05d", n)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        got += numbers("\n".join(follower.read_new()))
    writer.join()
    handler.close()
    got += numbers("\n".join(follower.read_new()))
    assert len(log_files(tmp_path)) > 60
    assert got == list(range(2500))


def test_the_follower_keeps_the_order_when_rotations_end_while_it_opens_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    import daemon.support.logview as logview

    # Right after the follower opened the current file, two rotations: the file under the
    # log's name is then newer than the one it just opened, one name further on.
    handler = LogFile(tmp_path / LOG_NAME, max_bytes=30, backups=10)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = _private_logger("passeur.crossed", handler)
    log.info("line 00000")
    follower = logview.Follower(tmp_path)
    assert numbers("\n".join(follower.start(10))) == [0]
    log.info("line 00001")
    log.info("line 00002")
    rotations = iter([3, 5])

    def open_and_rotate(path: Path, mode: str) -> object:
        handle = builtins.open(path, mode)  # noqa: SIM115 - closed by the follower
        if Path(path).name == LOG_NAME and (n := next(rotations, None)) is not None:
            log.info("line %05d", n)  # the file is full: each record rotates
            log.info("line %05d", n + 1)
        return handle

    monkeypatch.setattr(logview, "open", open_and_rotate, raising=False)
    got = numbers("\n".join(follower.read_new()))
    monkeypatch.undo()
    got += numbers("\n".join(follower.read_new()))
    handler.close()
    assert got == [1, 2, 3, 4, 5, 6]


def test_the_follower_is_not_misled_by_a_rotation_caught_halfway(tmp_path: Path) -> None:
    from daemon.support.logview import Follower

    # Ours holds lines 0-1 (read) and 2-3 (not yet); then a rotation that is renaming the
    # backups one by one: ours already moved on to .2, .1 not made yet.
    ours = tmp_path / LOG_NAME
    ours.write_text("line 00000\nline 00001\n")
    follower = Follower(tmp_path)
    assert numbers("\n".join(follower.start(10))) == [0, 1]
    with open(ours, "a") as out:
        out.write("line 00002\nline 00003\n")
    ours.rename(tmp_path / f"{LOG_NAME}.2")
    (tmp_path / LOG_NAME).write_text("line 00004\n")
    assert numbers("\n".join(follower.read_new())) == [2, 3, 4]
