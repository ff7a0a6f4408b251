"""CLI commands of the web endpoint (`publish`, `login`, `receive`), registered by daemon.cli."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(command: Callable[[str, Any, str], argparse.ArgumentParser]) -> None:
    """Add the web commands to the CLI through its `command(name, handler, help)` factory."""
