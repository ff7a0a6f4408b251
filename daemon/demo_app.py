"""A stand-in accounting application for the demo: integrates its inbox, runs until closed."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path


def main() -> int:
    """Take every exchange file in the inbox at start, then wait for SIGTERM."""
    inbox = Path(sys.argv[1])
    integrated = inbox / "integrated"
    integrated.mkdir(parents=True, exist_ok=True)
    for path in sorted(inbox.glob("*.wwz")):
        path.rename(integrated / path.name)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
