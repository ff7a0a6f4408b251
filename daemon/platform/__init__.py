"""Desktop and operating-system specifics, one module per system; import only this one.

The control channel's transport (the JSON-lines protocol lives on top of it)::

    endpoint = control_endpoint(ctx.paths.data_dir)   # str: socket path or pipe name

    # service side
    listener = listen(endpoint)        # AddressInUse: a live passeur already listens there;
                                       # a stale socket (left by kill -9) is replaced
    while (conn := listener.accept()) is not None:   # blocks; None once listener.close()
        line = conn.recv_line(timeout=30)  # bytes without b"\\n"; None at end of stream;
                                           # TimeoutError, LineTooLong (> MAX_LINE bytes)
        conn.send_line(b'{"ok": true}')    # appends b"\\n"; TimeoutError if never read
        conn.close()
    listener.close()                   # from any thread: wakes accept(), removes the socket

    # client side
    conn = connect(endpoint, timeout=2.0)   # None: nobody listens (do the work yourself);
                                            # TimeoutError: a listener did not take it;
                                            # PermissionError: held by another user

POSIX: an AF_UNIX stream socket (never TCP) in runtime_dir(), mode 0600 from birth, its
folder 0700; accept() refuses (closes, logs) a peer of another uid, checked with
peer_uid(). Windows: a named pipe whose ACL admits only the user's SID, no network logon
and no remote client. accept() and recv_line() may run in one thread while send_line()
and close() run in another.

Also here: has_display(), open_with_system(path), install_signal_handlers(stop),
runtime_dir(), peer_uid(sock); start at login lives in daemon.platform.autostart.
"""

from __future__ import annotations

import sys

from daemon.platform.common import MAX_LINE, AddressInUse, Connection, LineTooLong, Listener

if sys.platform == "win32":
    from daemon.platform.windows import (
        connect,
        control_endpoint,
        has_display,
        install_signal_handlers,
        listen,
        open_with_system,
        peer_uid,
        runtime_dir,
    )
elif sys.platform == "darwin":
    from daemon.platform.macos import (
        connect,
        control_endpoint,
        has_display,
        install_signal_handlers,
        listen,
        open_with_system,
        peer_uid,
        runtime_dir,
    )
else:
    from daemon.platform.linux import (
        connect,
        control_endpoint,
        has_display,
        install_signal_handlers,
        listen,
        open_with_system,
        peer_uid,
        runtime_dir,
    )

__all__ = [
    "MAX_LINE",
    "AddressInUse",
    "Connection",
    "LineTooLong",
    "Listener",
    "connect",
    "control_endpoint",
    "has_display",
    "install_signal_handlers",
    "listen",
    "open_with_system",
    "peer_uid",
    "runtime_dir",
]
