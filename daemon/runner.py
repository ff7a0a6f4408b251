"""Running a built service until Quitter or a signal: with the tray icon, or headless.

`passeur run` and `passeur demo` both come here. The tray (the only GUI code) is imported
only when a display asks for it, so that a headless service loads no GUI library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.context import Context
    from daemon.service import Service


def serve(ctx: Context, service: Service, with_tray: bool) -> int:
    """Run the service with its icon or without; return the exit code (0).

    Raises AlreadyRunning when another service uses the same home.
    """
    from daemon.platform import install_signal_handlers

    install_signal_handlers(service.stop)
    if with_tray:
        from tray.app import run_with_tray

        return run_with_tray(ctx, service)
    service.run()
    return 0
