"""CLI commands of this area, registered by daemon.cli (a stub until the area lands)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Command = Callable[[str, Any, str], argparse.ArgumentParser]


def register(command: Command) -> None:
    """Add this area's commands to the CLI through its `command(name, handler, help)`."""
