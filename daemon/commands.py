"""What the CLI registrations of every area share: the `command` factory's type, and
handlers imported only when their command runs (short commands must start fast)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.context import Context

Command = Callable[[str, Any, str], argparse.ArgumentParser]
Handler = Callable[["Context", argparse.Namespace], int]


def lazy(module: str, name: str) -> Handler:
    """Return the handler `name` of `module`, imported when the command runs."""

    def run(ctx: Context, args: argparse.Namespace) -> int:
        result: int = getattr(importlib.import_module(module), name)(ctx, args)
        return result

    return run
