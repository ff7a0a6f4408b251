"""A stand-in for the accounting application, run as a real process by the tests.

Usage: python standin_app.py INBOX TAKEN

Like the real application, it takes the update files waiting in its inbox when it starts
(oldest name first), moving each into TAKEN as `<n>-<name>` and appending
"<name> <sha256>" to TAKEN/journal.txt. It then prints "ready" and runs until SIGTERM.
"""

from __future__ import annotations

import hashlib
import signal
import sys
from pathlib import Path


def take_inbox(inbox: Path, taken: Path) -> None:
    """Move every update file of the inbox into `taken`, recording each in the journal."""
    taken.mkdir(parents=True, exist_ok=True)
    journal = taken / "journal.txt"
    count = len(journal.read_text("utf-8").splitlines()) if journal.exists() else 0
    for path in sorted(inbox.glob("*.wwz")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        count += 1
        path.rename(taken / f"{count}-{path.name}")
        with journal.open("a", encoding="utf-8") as log:
            log.write(f"{path.name} {digest}\n")


def main(argv: list[str]) -> int:
    """Take the inbox, say so, then wait to be asked to close."""
    inbox, taken = Path(argv[0]), Path(argv[1])
    # Blocked first, so that a SIGTERM arriving while the inbox is taken is not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    take_inbox(inbox, taken)
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
