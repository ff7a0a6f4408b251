"""Notices, between two looks, that the computer slept, that the wall clock was changed, or
that the network came back: each is a reason to look for updates once, never a storm."""

from __future__ import annotations

import time
from collections.abc import Callable

# A gap larger than this between two clocks is a sleep or a clock change, not jitter.
JUMP_S = 30.0


def _boot_clock() -> Callable[[], float]:
    # CLOCK_BOOTTIME goes on while the computer sleeps, CLOCK_MONOTONIC does not (Linux).
    # Elsewhere the wall clock stands in: a sleep then looks like a clock change, and both
    # lead to the same single poll.
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.time
    return lambda: time.clock_gettime(boottime)


def network_signature() -> frozenset[str]:
    """Return the network interfaces that are up with an address other than the loopback."""
    import psutil

    try:
        stats = psutil.net_if_stats()
        addresses = psutil.net_if_addrs()
    except OSError:
        return frozenset()
    return frozenset(name for name, stat in stats.items()
                     if stat.isup and name in addresses
                     and not any(a.address.startswith(("127.", "::1")) for a in addresses[name]))


class ClockWatch:
    """Compares the clocks (and the network) at each look with the previous look."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 boot: Callable[[], float] | None = None,
                 wall: Callable[[], float] = time.time,
                 network: Callable[[], frozenset[str]] = network_signature) -> None:
        self._monotonic = monotonic
        self._boot = boot or _boot_clock()
        self._wall = wall
        self._network = network
        self._last = self._read()
        self._links = network()

    def _read(self) -> tuple[float, float, float]:
        return self._monotonic(), self._boot(), self._wall()

    def look(self) -> list[str]:
        """Return what happened since the last look: "woke", "clock-changed",
        "network-back" (usually nothing)."""
        now = self._read()
        (mono0, boot0, wall0), (mono1, boot1, wall1) = self._last, now
        self._last = now
        seen = []
        slept = (boot1 - boot0) - (mono1 - mono0)
        if slept > JUMP_S:
            seen.append("woke")
        elif abs((wall1 - wall0) - (boot1 - boot0)) > JUMP_S:
            seen.append("clock-changed")
        links = self._network()
        if links - self._links:
            seen.append("network-back")
        self._links = links
        return seen
