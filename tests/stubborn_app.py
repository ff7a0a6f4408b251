"""A stand-in accounting application that will not close when asked (a question open, say).

Usage: python stubborn_app.py INBOX TAKEN

It takes the update files of its inbox at start (moved into TAKEN), prints "ready", then
ignores SIGTERM: only a kill ends it.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """Take the inbox, then refuse every request to close."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    inbox, taken = Path(argv[0]), Path(argv[1])
    taken.mkdir(parents=True, exist_ok=True)
    for path in sorted(inbox.glob("*.wwz")):
        path.rename(taken / path.name)
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
