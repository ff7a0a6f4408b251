"""What every long-running source of updates shares: start, stop, poll now, pause, resume.

A source (the web endpoint, removable drives, watched folders) owns one thread. While
paused it makes no request and imports nothing; what arrived meanwhile is taken when it
resumes, because resuming asks for a poll at once.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class Source(ABC):
    """A long-running source of updates."""

    def __init__(self) -> None:
        self._paused = threading.Event()

    @abstractmethod
    def start(self) -> None:
        """Start the source's own thread."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the thread and wait for it; nothing is left half-written."""

    @abstractmethod
    def poll_now(self) -> None:
        """Look for updates as soon as possible (*Recevoir*, after a resume or a wake-up)."""

    @property
    def paused(self) -> bool:
        """Tell whether the source is paused (its thread does no work then)."""
        return self._paused.is_set()

    def pause(self) -> None:
        """Stop looking for updates until `resume()`; a transfer under way finishes."""
        self._paused.set()

    def resume(self) -> None:
        """Look for updates again, at once: what arrived during the pause is taken now."""
        if self._paused.is_set():
            self._paused.clear()
            self.poll_now()
