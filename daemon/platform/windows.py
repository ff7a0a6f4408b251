"""Windows: a named pipe for the control channel, os.startfile, Ctrl+Break.

Importable on every system: the Win32 calls sit behind `_win32()` (ctypes, loaded on first
use), and what is pure logic (the pipe's name, its SDDL) is tested on Linux.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from daemon.i18n import _
from daemon.platform.common import (
    AddressInUse,
    LoginEntry,
    LoginMechanisms,
    StopSignals,
    install_stop_handlers,
    short_hash,
    split_lines,
)

log = logging.getLogger(__name__)

STOP_SIGNALS = ("SIGTERM", "SIGINT", "SIGBREAK")
SEND_TIMEOUT = 10.0
RECV_CHUNK = 65536
PIPE_PREFIX = "\\\\.\\pipe\\"

_SID = re.compile(r"S-1-\d+(-\d+)+")

# Win32 constants (winbase.h, winerror.h).
PIPE_ACCESS_DUPLEX = 0x00000003
FILE_FLAG_OVERLAPPED = 0x40000000
FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
PIPE_TYPE_BYTE = 0x0
PIPE_READMODE_BYTE = 0x0
PIPE_WAIT = 0x0
PIPE_REJECT_REMOTE_CLIENTS = 0x00000008
PIPE_UNLIMITED_INSTANCES = 255
GENERIC_READ = 0x80000000
GENERIC_WRITE = 0x40000000
OPEN_EXISTING = 3
SECURITY_SQOS_PRESENT = 0x00100000
SECURITY_IDENTIFICATION = 0x00010000
TOKEN_QUERY = 0x0008
TOKEN_USER_CLASS = 1
SDDL_REVISION_1 = 1
SE_KERNEL_OBJECT = 6
OWNER_SECURITY_INFORMATION = 0x1
INFINITE = 0xFFFFFFFF
WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 0x102
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_BROKEN_PIPE = 109
ERROR_PIPE_BUSY = 231
ERROR_NO_DATA = 232
ERROR_MORE_DATA = 234
ERROR_PIPE_CONNECTED = 535
ERROR_OPERATION_ABORTED = 995
ERROR_IO_PENDING = 997
INVALID_HANDLE_VALUE = -1


def has_display() -> bool:
    """Tell whether a graphical session is there: on Windows, always."""
    return True


def open_with_system(path: Path) -> bool:
    """Open a file or folder with the user's default program; False when that fails."""
    try:
        startfile: Callable[[str], None] = os.startfile  # type: ignore[attr-defined]
        startfile(os.fspath(path))  # the user's own file, shown to the user
    except OSError as exc:
        log.info("cannot open %s: %s", path, exc)
        return False
    return True


def install_signal_handlers(stop: Callable[[], None]) -> StopSignals:
    """Call `stop` on SIGTERM, SIGINT and Ctrl+Break, logging which signal asked."""
    return install_stop_handlers(stop, STOP_SIGNALS)


def runtime_dir() -> Path:
    """Not used on Windows: the control channel is a named pipe, not a file."""
    raise NotImplementedError("Windows uses a named pipe, not a runtime folder")


def peer_uid(conn: object) -> int | None:
    """Not used on Windows: the pipe's ACL admits only the user's SID."""
    return None


# ---------------------------------------------------------------------------------------
# Pure logic, tested on every system


def pipe_name(user: str, data_dir: Path) -> str:
    """Return the named pipe of `user`'s service for the home `data_dir`."""
    # Pipe names are global to the machine: the user's name keeps them apart and tells an
    # administrator whose it is; the hash keeps two homes of one user apart.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", user)[:64] or "user"
    return f"{PIPE_PREFIX}passeur-{safe}-{short_hash(data_dir)}"


def pipe_sddl(sid: str) -> str:
    """Return the security descriptor that admits only `sid`, and no network logon.

    Owner the user; protected DACL (nothing inherited): first deny NETWORK (S-1-5-2, "NU")
    every access, then allow the user every access. SYSTEM and Administrators get nothing.
    """
    if not _SID.fullmatch(sid):
        raise ValueError(f"not a SID: {sid!r}")
    return f"O:{sid}G:{sid}D:P(D;;GA;;;NU)(A;;GA;;;{sid})"


def control_endpoint(data_dir: Path) -> str:
    """Return where the service of the home `data_dir` listens (a named pipe)."""
    import getpass

    return pipe_name(getpass.getuser(), data_dir)


# ---------------------------------------------------------------------------------------
# The Win32 seam: everything below runs only on Windows


def _win32() -> Any:
    """Load kernel32 and advapi32 through ctypes with their prototypes (Windows only)."""
    from ctypes import wintypes as w

    loader: Any = getattr(ctypes, "WinDLL")  # noqa: B009 - absent from non-Windows stubs
    k32 = loader("kernel32", use_last_error=True)
    adv = loader("advapi32", use_last_error=True)
    protos: dict[str, tuple[Any, Any, list[Any]]] = {
        "CreateNamedPipeW": (k32, w.HANDLE, [w.LPCWSTR, w.DWORD, w.DWORD, w.DWORD, w.DWORD,
                                             w.DWORD, w.DWORD, ctypes.c_void_p]),
        "ConnectNamedPipe": (k32, w.BOOL, [w.HANDLE, ctypes.c_void_p]),
        "CreateFileW": (k32, w.HANDLE, [w.LPCWSTR, w.DWORD, w.DWORD, ctypes.c_void_p,
                                        w.DWORD, w.DWORD, w.HANDLE]),
        "WaitNamedPipeW": (k32, w.BOOL, [w.LPCWSTR, w.DWORD]),
        "ReadFile": (k32, w.BOOL, [w.HANDLE, ctypes.c_void_p, w.DWORD, ctypes.c_void_p,
                                   ctypes.c_void_p]),
        "WriteFile": (k32, w.BOOL, [w.HANDLE, ctypes.c_void_p, w.DWORD, ctypes.c_void_p,
                                    ctypes.c_void_p]),
        "GetOverlappedResult": (k32, w.BOOL, [w.HANDLE, ctypes.c_void_p,
                                              ctypes.POINTER(w.DWORD), w.BOOL]),
        "CancelIoEx": (k32, w.BOOL, [w.HANDLE, ctypes.c_void_p]),
        "CreateEventW": (k32, w.HANDLE, [ctypes.c_void_p, w.BOOL, w.BOOL, w.LPCWSTR]),
        "SetEvent": (k32, w.BOOL, [w.HANDLE]),
        "WaitForMultipleObjects": (k32, w.DWORD, [w.DWORD, ctypes.POINTER(w.HANDLE), w.BOOL,
                                                  w.DWORD]),
        "CloseHandle": (k32, w.BOOL, [w.HANDLE]),
        "LocalFree": (k32, ctypes.c_void_p, [ctypes.c_void_p]),
        "GetCurrentProcess": (k32, w.HANDLE, []),
        "OpenProcessToken": (adv, w.BOOL, [w.HANDLE, w.DWORD, ctypes.POINTER(w.HANDLE)]),
        "GetTokenInformation": (adv, w.BOOL, [w.HANDLE, ctypes.c_int, ctypes.c_void_p,
                                              w.DWORD, ctypes.POINTER(w.DWORD)]),
        "ConvertSidToStringSidW": (adv, w.BOOL, [ctypes.c_void_p,
                                                 ctypes.POINTER(w.LPWSTR)]),
        "ConvertStringSecurityDescriptorToSecurityDescriptorW": (
            adv, w.BOOL, [w.LPCWSTR, w.DWORD, ctypes.POINTER(ctypes.c_void_p),
                          ctypes.c_void_p]),
        "GetSecurityInfo": (adv, w.DWORD, [w.HANDLE, ctypes.c_int, w.DWORD,
                                           ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                                           ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.POINTER(ctypes.c_void_p)]),
        "EqualSid": (adv, w.BOOL, [ctypes.c_void_p, ctypes.c_void_p]),
    }
    api: dict[str, Any] = {}
    for name, (dll, restype, argtypes) in protos.items():
        function = getattr(dll, name)
        function.restype = restype
        function.argtypes = argtypes
        api[name] = function
    return type("Win32", (), {k: staticmethod(v) for k, v in api.items()})


class _Overlapped(ctypes.Structure):
    _fields_ = [("Internal", ctypes.c_void_p), ("InternalHigh", ctypes.c_void_p),
                ("Offset", ctypes.c_uint32), ("OffsetHigh", ctypes.c_uint32),
                ("hEvent", ctypes.c_void_p)]


class _SecurityAttributes(ctypes.Structure):
    _fields_ = [("nLength", ctypes.c_uint32), ("lpSecurityDescriptor", ctypes.c_void_p),
                ("bInheritHandle", ctypes.c_int)]


def _error_code() -> int:
    """Return the calling thread's last Win32 error (ctypes keeps it per thread)."""
    code: int = getattr(ctypes, "get_last_error")()  # noqa: B009 - Windows-only stubs
    return code


def _os_error(code: int) -> OSError:
    """Turn a Win32 error code into the matching OSError."""
    error: OSError = getattr(ctypes, "WinError")(code)  # noqa: B009 - Windows-only stubs
    return error


def _last_error() -> OSError:
    """Return the OSError for the calling thread's last Win32 error."""
    return _os_error(_error_code())


def _invalid(handle: Any) -> bool:
    """Tell whether a returned HANDLE is NULL or INVALID_HANDLE_VALUE."""
    return handle in (None, 0, INVALID_HANDLE_VALUE, ctypes.c_void_p(-1).value)


def _user_sid(api: Any) -> tuple[str, ctypes.Array[ctypes.c_char]]:
    """Return the current user's SID as a string and as the TOKEN_USER buffer holding it."""
    from ctypes import wintypes as w

    token = w.HANDLE()
    if not api.OpenProcessToken(api.GetCurrentProcess(), TOKEN_QUERY, ctypes.byref(token)):
        raise _last_error()
    try:
        needed = w.DWORD()
        api.GetTokenInformation(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(needed))
        buffer = ctypes.create_string_buffer(needed.value)
        if not api.GetTokenInformation(token, TOKEN_USER_CLASS, buffer, needed,
                                       ctypes.byref(needed)):
            raise _last_error()
    finally:
        api.CloseHandle(token)
    psid = ctypes.c_void_p.from_buffer(buffer).value  # TOKEN_USER starts with User.Sid
    text = w.LPWSTR()
    if not api.ConvertSidToStringSidW(psid, ctypes.byref(text)):
        raise _last_error()
    try:
        return str(text.value), buffer
    finally:
        api.LocalFree(text)


class _Event:
    """A manual-reset Win32 event."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.handle = api.CreateEventW(None, True, False, None)
        if not self.handle:
            raise _last_error()

    def close(self) -> None:
        """Release the event."""
        self.api.CloseHandle(self.handle)


def _overlapped(api: Any, handle: Any, start: Callable[[Any], bool], timeout: float | None,
                stop: _Event | None) -> int | None:
    """Run one overlapped operation; return the bytes moved, None when `stop` was set.

    Raises TimeoutError past `timeout` seconds (the operation is cancelled first).
    """
    from ctypes import wintypes as w

    event = _Event(api)
    try:
        ov = _Overlapped()
        ov.hEvent = event.handle
        if not start(ctypes.byref(ov)):
            code = _error_code()
            if code == ERROR_PIPE_CONNECTED:
                return 0
            if code == ERROR_BROKEN_PIPE:
                return -1
            if code != ERROR_IO_PENDING:
                raise _os_error(code)
        handles = (w.HANDLE * 2)(event.handle, stop.handle if stop else event.handle)
        millis = INFINITE if timeout is None else max(0, int(timeout * 1000))
        result = api.WaitForMultipleObjects(2 if stop else 1, handles, False, millis)
        moved = w.DWORD()
        if result != WAIT_OBJECT_0:
            api.CancelIoEx(handle, ctypes.byref(ov))
            api.GetOverlappedResult(handle, ctypes.byref(ov), ctypes.byref(moved), True)
            if result == WAIT_TIMEOUT:
                raise TimeoutError(_("The other end did not answer in time."))
            return None
        if not api.GetOverlappedResult(handle, ctypes.byref(ov), ctypes.byref(moved), False):
            code = _error_code()
            if code in (ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_CONNECTED):
                return -1 if code != ERROR_PIPE_CONNECTED else 0
            if code != ERROR_MORE_DATA:
                raise _os_error(code)
        return int(moved.value)
    finally:
        event.close()


class PipeConnection:
    """One end of a connected named pipe carrying lines (see common.Connection)."""

    def __init__(self, api: Any, handle: Any) -> None:
        self._api = api
        self._handle = handle
        self._buffer = bytearray()
        self._eof = False
        self._closed = _Event(api)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()

    def send_line(self, line: bytes) -> None:
        """Send `line` and a newline; TimeoutError when the peer stops reading."""
        data = line + b"\n"
        deadline = time.monotonic() + SEND_TIMEOUT
        with self._send_lock:
            while data:
                chunk = ctypes.create_string_buffer(data, len(data))

                def write(ov: Any, chunk: Any = chunk, size: int = len(data)) -> bool:
                    return bool(self._api.WriteFile(self._handle, chunk, size, None, ov))

                moved = _overlapped(self._api, self._handle, write,
                                    deadline - time.monotonic(), self._closed)
                if moved is None or moved < 0:
                    raise BrokenPipeError(_("The connection is closed."))
                data = data[moved:]

    def recv_line(self, timeout: float | None) -> bytes | None:
        """Return the next line without its newline, None at end of stream."""
        deadline = None if timeout is None else time.monotonic() + timeout
        chunk = ctypes.create_string_buffer(RECV_CHUNK)
        while True:
            line = split_lines(self._buffer)
            if line is not None:
                return line
            if self._eof:
                return None
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(_("The other end did not answer in time."))
            moved = _overlapped(
                self._api, self._handle,
                lambda ov: bool(self._api.ReadFile(self._handle, chunk, RECV_CHUNK, None, ov)),
                remaining, self._closed)
            if moved is None or moved < 0:
                self._eof = True
            elif moved:
                self._buffer += chunk.raw[:moved]

    def close(self) -> None:
        """Close the pipe (wakes a read or write blocked in another thread)."""
        with self._lock:
            if self._handle is None:
                return
            self._api.SetEvent(self._closed.handle)
            self._api.CloseHandle(self._handle)
            self._handle = None


class PipeListener:
    """Instances of one named pipe, each handed over once a client of this user opened it."""

    def __init__(self, api: Any, name: str) -> None:
        self._api = api
        self._name = name
        sid, self._sid_buffer = _user_sid(api)
        self._descriptor = ctypes.c_void_p()
        if not api.ConvertStringSecurityDescriptorToSecurityDescriptorW(
                pipe_sddl(sid), SDDL_REVISION_1, ctypes.byref(self._descriptor), None):
            raise _last_error()
        self._stop = _Event(api)
        self._closed = False
        self._pending = self._instance(first=True)

    def _instance(self, first: bool) -> Any:
        """Create one more instance of the pipe (the first one claims the name)."""
        attributes = _SecurityAttributes(ctypes.sizeof(_SecurityAttributes),
                                         self._descriptor, 0)
        flags = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED
        if first:
            flags |= FILE_FLAG_FIRST_PIPE_INSTANCE
        handle = self._api.CreateNamedPipeW(
            self._name, flags, PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT
            | PIPE_REJECT_REMOTE_CLIENTS, PIPE_UNLIMITED_INSTANCES, RECV_CHUNK, RECV_CHUNK,
            0, ctypes.byref(attributes))
        if _invalid(handle):
            code = _error_code()
            if first and code == ERROR_ACCESS_DENIED:
                raise AddressInUse(_("Another passeur already listens on {path}.")
                                   .format(path=self._name))
            raise _os_error(code)
        return handle

    def accept(self) -> PipeConnection | None:
        """Wait for a client (the ACL admits only this user); None once closed."""
        while not self._closed:
            handle = self._pending

            def connect(ov: Any, handle: Any = handle) -> bool:
                return bool(self._api.ConnectNamedPipe(handle, ov))

            try:
                moved = _overlapped(self._api, handle, connect, None, self._stop)
            except OSError as exc:
                log.info("control pipe %s: %s", self._name, exc)
                self._api.CloseHandle(handle)
                self._pending = self._instance(first=False)
                continue
            if moved is None:
                return None
            # The next client must find a free instance while this one is being served.
            self._pending = self._instance(first=False)
            return PipeConnection(self._api, handle)
        return None

    def close(self) -> None:
        """Stop listening and wake a blocked accept()."""
        if self._closed:
            return
        self._closed = True
        self._api.SetEvent(self._stop.handle)
        with contextlib.suppress(OSError):
            self._api.CloseHandle(self._pending)
        self._api.LocalFree(self._descriptor)


def listen(endpoint: str) -> PipeListener:
    """Listen at the named pipe `endpoint` (AddressInUse when a live passeur holds it)."""
    return PipeListener(_win32(), endpoint)


def connect(endpoint: str, timeout: float) -> PipeConnection | None:
    """Open the named pipe `endpoint`; None when nobody listens.

    PermissionError when the pipe belongs to another user (someone squatting the name).
    """
    api = _win32()
    deadline = time.monotonic() + timeout
    while True:
        handle = api.CreateFileW(endpoint, GENERIC_READ | GENERIC_WRITE, 0, None,
                                 OPEN_EXISTING,
                                 FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT
                                 | SECURITY_IDENTIFICATION, None)
        if handle not in (None, INVALID_HANDLE_VALUE, ctypes.c_void_p(-1).value):
            break
        code = _error_code()
        if code == ERROR_FILE_NOT_FOUND:
            return None
        if code != ERROR_PIPE_BUSY:
            raise _os_error(code)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(_("The other end did not answer in time."))
        api.WaitNamedPipeW(endpoint, max(1, int(remaining * 1000)))
    if not _owned_by_user(api, handle):
        api.CloseHandle(handle)
        raise PermissionError(_("The control channel {path} is held by another user: not "
                                "talking to it.").format(path=endpoint))
    return PipeConnection(api, handle)


def _owned_by_user(api: Any, handle: Any) -> bool:
    """Tell whether the pipe's owner is the current user (our SDDL makes it so)."""
    _sid, buffer = _user_sid(api)
    mine = ctypes.c_void_p.from_buffer(buffer).value
    owner = ctypes.c_void_p()
    descriptor = ctypes.c_void_p()
    if api.GetSecurityInfo(handle, SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION,
                           ctypes.byref(owner), None, None, None, ctypes.byref(descriptor)):
        return False
    try:
        return bool(api.EqualSid(owner, mine))
    finally:
        api.LocalFree(descriptor)


# ---------------------------------------------------------------------------------------
# Start at login: HKCU\...\Run, as Task Manager's Startup tab shows and switches it

RUN_KEY = "Software\\Microsoft\\Windows\\CurrentVersion\\Run"
APPROVED_KEY = "Software\\Microsoft\\Windows\\CurrentVersion\\Explorer\\StartupApproved\\Run"
VALUE_NAME = "passeur"


class Registry(Protocol):
    """The few registry operations start at login needs, on HKEY_CURRENT_USER."""

    def get(self, key: str, name: str) -> str | bytes | None:
        """Return a value (str for REG_SZ, bytes for REG_BINARY), None when absent."""

    def set_string(self, key: str, name: str, value: str) -> None:
        """Write a REG_SZ value, creating the key if needed."""

    def delete(self, key: str, name: str) -> None:
        """Remove a value; nothing happens when it is absent."""


def _winreg() -> Any:
    """Return the winreg module (Windows only; its stubs exist only there)."""
    import importlib

    return importlib.import_module("winreg")


class WinRegistry:
    """HKEY_CURRENT_USER through winreg (Windows only)."""

    def get(self, key: str, name: str) -> str | bytes | None:
        """Return a value, None when the key or value is absent."""
        winreg = _winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key) as handle:
                value, _kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        return value if isinstance(value, str | bytes) else None

    def set_string(self, key: str, name: str, value: str) -> None:
        """Write a REG_SZ value."""
        winreg = _winreg()
        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, key, 0,
                                winreg.KEY_SET_VALUE) as handle:
            winreg.SetValueEx(handle, name, 0, winreg.REG_SZ, value)

    def delete(self, key: str, name: str) -> None:
        """Remove a value if it is there."""
        winreg = _winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key, 0,
                                winreg.KEY_SET_VALUE) as handle:
                winreg.DeleteValue(handle, name)
        except FileNotFoundError:
            pass


def approved_is_off(value: str | bytes | None) -> bool:
    """Tell whether a StartupApproved value says "disabled" (first byte 0x03 or 0x07)."""
    # Task Manager writes 12 bytes: 0x02 or 0x06 first when on, 0x03 or 0x07 when off,
    # then the time of the change. No value at all means on.
    return isinstance(value, bytes) and len(value) > 0 and value[0] & 0x01 == 0x01


class RunKey:
    """The value `passeur` under HKCU\\...\\CurrentVersion\\Run."""

    name = "registry-run"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def describe(self) -> str:
        """Name the mechanism for the user."""
        return _("the Windows startup programs (registry, Run key)")

    def turned_off_by(self) -> str:
        """Name the tool that turns it off elsewhere."""
        return _("the Startup tab of the Task Manager")

    def command_line(self, argv: Sequence[str]) -> str:
        """Return `argv` quoted as Windows programs read their command line."""
        import subprocess

        return subprocess.list2cmdline(argv)

    def install(self, argv: Sequence[str]) -> None:
        """Write the Run value and lift a "disabled" mark left by the Task Manager."""
        self.registry.set_string(RUN_KEY, VALUE_NAME, self.command_line(argv))
        # The user asked for it now: an old "disabled" switch must not silently win.
        self.registry.delete(APPROVED_KEY, VALUE_NAME)

    def uninstall(self) -> None:
        """Remove the Run value and its Task Manager switch."""
        self.registry.delete(RUN_KEY, VALUE_NAME)
        self.registry.delete(APPROVED_KEY, VALUE_NAME)

    def entry(self) -> LoginEntry:
        """Read the Run value and whether the Task Manager turned it off."""
        value = self.registry.get(RUN_KEY, VALUE_NAME)
        where = f"HKEY_CURRENT_USER\\{RUN_KEY}\\{VALUE_NAME}"
        if not isinstance(value, str):
            return LoginEntry(self.name, where, False, False, None)
        off = approved_is_off(self.registry.get(APPROVED_KEY, VALUE_NAME))
        return LoginEntry(self.name, where, True, off, value)


def login_mechanisms(registry: Registry | None = None) -> LoginMechanisms:
    """Return Windows' start-at-login mechanism (the same with or without a tray)."""
    run = RunKey(registry if registry is not None else WinRegistry())
    return LoginMechanisms(desktop=run, headless=run)


def windowless(executable: str) -> str:
    """Return the console-less twin of `executable` when there is one (pythonw.exe)."""
    # At login a console program opens a black window that stays as long as it runs.
    path = Path(executable)
    twin = path.with_name(path.stem + "w" + path.suffix)
    return str(twin) if path.suffix.lower() == ".exe" and twin.is_file() else executable
