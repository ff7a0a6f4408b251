"""The event bus: each subscriber gets its own thread and inbox, so none can block the core."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from daemon.events import Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[Event], object]
_STOP = object()


class _Subscriber:
    def __init__(self, name: str, handler: Handler, kinds: tuple[type[Event], ...]) -> None:
        self.name = name
        self.handler = handler
        self.kinds = kinds
        self.inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=f"bus-{name}", daemon=True)
        self.thread.start()

    def wants(self, event: Event) -> bool:
        return not self.kinds or isinstance(event, self.kinds)

    def _run(self) -> None:
        while True:
            event = self.inbox.get()  # blocks: an idle subscriber costs no wake-ups
            if event is _STOP:
                return
            assert isinstance(event, Event)
            try:
                self.handler(event)
            except Exception:
                # A failing front end must never take the core down with it.
                log.exception("event subscriber %s failed on %r", self.name, event)


class EventBus:
    """Publish events to subscribers asynchronously, in order per subscriber."""

    def __init__(self) -> None:
        self._subscribers: list[_Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, name: str, handler: Handler, *kinds: type[Event]) -> None:
        """Call `handler` (on its own thread) for every event of `kinds` (all when empty)."""
        with self._lock:
            self._subscribers.append(_Subscriber(name, handler, kinds))

    def unsubscribe(self, name: str, timeout: float = 2.0) -> None:
        """Stop calling the subscriber(s) named `name`, once they handled what they have."""
        with self._lock:
            leaving = [s for s in self._subscribers if s.name == name]
            self._subscribers = [s for s in self._subscribers if s.name != name]
        for subscriber in leaving:
            subscriber.inbox.put(_STOP)
        for subscriber in leaving:
            subscriber.thread.join(timeout)

    def publish(self, event: Event) -> None:
        """Hand `event` to every interested subscriber; never blocks."""
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            if subscriber.wants(event):
                subscriber.inbox.put(event)

    def close(self, timeout: float = 2.0) -> None:
        """Let subscribers finish what they have, then stop their threads."""
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.inbox.put(_STOP)
        for subscriber in subscribers:
            subscriber.thread.join(timeout)
