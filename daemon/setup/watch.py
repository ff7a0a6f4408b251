"""Noticing that the config file changed (passeur's own edits, the CLI's, a hand edit),
so that the service applies it at once.

watchdog watches the file's folder (not recursively) and reports a write of the file
after a short settle delay, since an editor may write in several steps. The file's
signature (size, time, inode) is what decides: an event that changed nothing costs one
stat(), and a missed event is caught at the service's next look.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from daemon.fsutil import WRITE_EVENTS

log = logging.getLogger(__name__)

SETTLE_S = 0.4
# watchdog's threads otherwise wake up every second to check whether to stop.
OBSERVER_TIMEOUT_S = 30.0

Signature = tuple[int, int, int, int] | None


def signature(path: Path) -> Signature:
    """Return what tells one version of the file from another (None: no file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class _Handler(FileSystemEventHandler):
    def __init__(self, watch: ConfigWatch) -> None:
        self.watch = watch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in WRITE_EVENTS:
            return  # every `passeur` command opens the file to read it
        paths = (event.src_path, getattr(event, "dest_path", "") or "")
        if any(os.fsdecode(p) == str(self.watch.path) for p in paths if p):
            self.watch.touched()


class ConfigWatch:
    """Calls `on_change` (from a timer thread) soon after the config file was written."""

    def __init__(self, path: Path, on_change: Callable[[], None],
                 settle: float = SETTLE_S) -> None:
        self.path = path
        self.on_change = on_change
        self.settle = settle
        self._seen = signature(path)
        # A new signature and when it was first seen, until it has lasted the settle delay.
        self._pending: tuple[Signature, float] | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._observer: BaseObserver | None = None

    def start(self) -> None:
        """Start watching (the folder is created if needed, private to the user)."""
        folder = self.path.parent
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            observer = Observer(timeout=OBSERVER_TIMEOUT_S)
            observer.schedule(_Handler(self), str(folder), recursive=False)
            observer.daemon = True
            observer.start()
        except OSError as exc:
            # Without events the service's periodic look still notices the change.
            log.info("the config file's folder cannot be watched: %s", exc)
            return
        self._observer = observer

    def stop(self) -> None:
        """Stop watching."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def touched(self) -> None:
        """The file was written: report it once the settle delay is over."""
        with self._lock:
            self._report_later()

    def _report_later(self) -> None:
        """Call `on_change` after the settle delay. A report already due is not put off:
        writes that go on would otherwise delay it for ever; `changed()` tells whether the
        file has settled, and asks to be called again if not."""
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.settle, self._report)
        self._timer.daemon = True
        self._timer.start()

    def _report(self) -> None:
        with self._lock:
            self._timer = None
        self.on_change()

    def changed(self) -> bool:
        """Tell whether the file differs from when this was last asked (or created), and
        has stayed as it is for the settle delay.

        A file written in place (an editor, `echo >`) is for a moment empty or cut short,
        and an empty file is a valid config (all defaults): read then, it would replace
        the user's settings. Its times cannot tell (a truncation may leave the
        modification time as it was): a new signature is taken only once it is seen
        unchanged the settle delay later.
        """
        now = signature(self.path)
        with self._lock:
            if now == self._seen:
                self._pending = None
                return False
            at = time.monotonic()
            if self._pending is None or self._pending[0] != now:
                self._pending = (now, at)
            if at - self._pending[1] < self.settle:
                self._report_later()  # looked at again once the delay is over
                return False
            self._seen, self._pending = now, None
        return True
