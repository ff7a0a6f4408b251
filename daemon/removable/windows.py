"""Removable drives on Windows: the drive letters whose psutil options say `removable`,
looked at again whenever Windows broadcasts a device change (WM_DEVICECHANGE).

Broadcast messages only reach top-level windows (not message-only ones), so a hidden
top-level window with its own message loop runs on a thread of its own; closing it ends
the loop.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from pathlib import Path

import psutil

from daemon.i18n import _
from daemon.removable.volumes import ChangeSignal, Volume

log = logging.getLogger(__name__)

WM_DESTROY = 0x0002
WM_CLOSE = 0x0010
WM_DEVICECHANGE = 0x0219
DBT_DEVICEARRIVAL = 0x8000
DBT_DEVICEREMOVECOMPLETE = 0x8004
SEM_FAILCRITICALERRORS = 0x0001
SEM_NOOPENFILEERRORBOX = 0x8000
# Without a window (should creating it fail) the drives are looked at this often.
FALLBACK_LOOK_S = 5.0


def removable_roots() -> list[str]:
    """Return the roots ("E:\\") of the drives psutil reports as removable."""
    return [partition.mountpoint for partition in psutil.disk_partitions(all=False)
            if "removable" in partition.opts.split(",")]


def _display_name(root: str, label: str) -> str:
    letter = root.rstrip("\\/")
    return f"{label} ({letter})" if label else letter


if sys.platform == "win32":
    import ctypes
    from ctypes import wintypes

    LRESULT = ctypes.c_ssize_t
    WNDPROC = ctypes.WINFUNCTYPE(LRESULT, wintypes.HWND, wintypes.UINT, wintypes.WPARAM,
                                 wintypes.LPARAM)

    class WNDCLASSW(ctypes.Structure):
        """The Win32 window class structure."""

        _fields_ = [
            ("style", wintypes.UINT),
            ("lpfnWndProc", WNDPROC),
            ("cbClsExtra", ctypes.c_int),
            ("cbWndExtra", ctypes.c_int),
            ("hInstance", wintypes.HINSTANCE),
            ("hIcon", wintypes.HICON),
            ("hCursor", wintypes.HANDLE),
            ("hbrBackground", wintypes.HBRUSH),
            ("lpszMenuName", wintypes.LPCWSTR),
            ("lpszClassName", wintypes.LPCWSTR),
        ]

    _user32 = ctypes.WinDLL("user32", use_last_error=True)
    _kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    _user32.DefWindowProcW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM,
                                       wintypes.LPARAM]
    _user32.DefWindowProcW.restype = LRESULT
    _user32.RegisterClassW.argtypes = [ctypes.POINTER(WNDCLASSW)]
    _user32.RegisterClassW.restype = wintypes.ATOM
    _user32.UnregisterClassW.argtypes = [wintypes.LPCWSTR, wintypes.HINSTANCE]
    _user32.CreateWindowExW.argtypes = [
        wintypes.DWORD, wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD, ctypes.c_int,
        ctypes.c_int, ctypes.c_int, ctypes.c_int, wintypes.HWND, wintypes.HMENU,
        wintypes.HINSTANCE, wintypes.LPVOID]
    _user32.CreateWindowExW.restype = wintypes.HWND
    _user32.DestroyWindow.argtypes = [wintypes.HWND]
    _user32.GetMessageW.argtypes = [ctypes.POINTER(wintypes.MSG), wintypes.HWND, wintypes.UINT,
                                    wintypes.UINT]
    _user32.GetMessageW.restype = wintypes.BOOL
    _user32.TranslateMessage.argtypes = [ctypes.POINTER(wintypes.MSG)]
    _user32.DispatchMessageW.argtypes = [ctypes.POINTER(wintypes.MSG)]
    _user32.DispatchMessageW.restype = LRESULT
    _user32.PostMessageW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM,
                                     wintypes.LPARAM]
    _user32.PostQuitMessage.argtypes = [ctypes.c_int]
    _kernel32.GetModuleHandleW.argtypes = [wintypes.LPCWSTR]
    _kernel32.GetModuleHandleW.restype = wintypes.HMODULE
    _kernel32.GetVolumeInformationW.argtypes = [
        wintypes.LPCWSTR, wintypes.LPWSTR, wintypes.DWORD, wintypes.LPDWORD, wintypes.LPDWORD,
        wintypes.LPDWORD, wintypes.LPWSTR, wintypes.DWORD]
    _kernel32.GetVolumeInformationW.restype = wintypes.BOOL
    _kernel32.SetErrorMode.argtypes = [wintypes.UINT]

    def volume_label(root: str) -> str:
        """Return a drive's volume label ("" when it has none or cannot be read)."""
        buffer = ctypes.create_unicode_buffer(261)
        ok = _kernel32.GetVolumeInformationW(root, buffer, len(buffer), None, None, None,
                                             None, 0)
        return buffer.value if ok else ""

    class WindowsDriveMonitor:
        """Lists removable drive letters; wakes up on WM_DEVICECHANGE arrivals and removals."""

        def __init__(self) -> None:
            # A card reader without a card must not pop up "There is no disk in the drive".
            _kernel32.SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX)
            self._signal = ChangeSignal()
            self._hwnd: int | None = None
            self._ready = threading.Event()
            self._procedure = WNDPROC(self._window_procedure)  # kept alive with the monitor
            self._thread = threading.Thread(target=self._pump, name="removable-devices",
                                            daemon=True)
            self._thread.start()
            self._ready.wait(10.0)

        def volumes(self) -> list[Volume]:
            """Return the removable drives that hold a readable volume now."""
            found = []
            for root in removable_roots():
                try:
                    device = os.stat(root).st_dev  # the volume serial number
                except OSError:
                    continue  # an empty card reader slot
                label = volume_label(root)
                found.append(Volume(Path(root), label or root.rstrip("\\/"), device,
                                    _display_name(root, label)))
            return found

        def wait(self, timeout: float | None) -> None:
            """Sleep until a device arrives or leaves, or wake() is called."""
            if not self._hwnd:
                timeout = FALLBACK_LOOK_S if timeout is None else min(timeout, FALLBACK_LOOK_S)
            self._signal.wait(timeout)

        def wake(self) -> None:
            """Make wait() return now."""
            self._signal.wake()

        def close(self) -> None:
            """Close the hidden window, which ends its message loop and thread."""
            self._signal.close()
            if self._hwnd:
                _user32.PostMessageW(self._hwnd, WM_CLOSE, 0, 0)
            self._thread.join(5.0)

        def _pump(self) -> None:
            instance = _kernel32.GetModuleHandleW(None)
            window_class = WNDCLASSW()
            window_class.lpfnWndProc = self._procedure
            window_class.hInstance = instance
            window_class.lpszClassName = f"passeur-devices-{os.getpid()}-{id(self)}"
            if not _user32.RegisterClassW(ctypes.byref(window_class)):
                log.warning(_("Removable drives: no device window (error %s); they are "
                              "looked at every %s s"), ctypes.get_last_error(), FALLBACK_LOOK_S)
                self._ready.set()
                return
            try:
                # A hidden top-level window: WS_OVERLAPPED (0), never shown.
                self._hwnd = _user32.CreateWindowExW(0, window_class.lpszClassName, "passeur",
                                                     0, 0, 0, 0, 0, None, None, instance, None)
                self._ready.set()
                if not self._hwnd:
                    log.warning(_("Removable drives: no device window (error %s)"),
                                ctypes.get_last_error())
                    return
                message = wintypes.MSG()
                while _user32.GetMessageW(ctypes.byref(message), None, 0, 0) > 0:
                    _user32.TranslateMessage(ctypes.byref(message))
                    _user32.DispatchMessageW(ctypes.byref(message))
            finally:
                self._hwnd = None
                _user32.UnregisterClassW(window_class.lpszClassName, instance)

        def _window_procedure(self, hwnd: int, message: int, wparam: int, lparam: int) -> int:
            if message == WM_DEVICECHANGE:
                if wparam in (DBT_DEVICEARRIVAL, DBT_DEVICEREMOVECOMPLETE):
                    self._signal.changed()
                return 1  # TRUE: grant any request the message carries
            if message == WM_CLOSE:
                _user32.DestroyWindow(hwnd)
                return 0
            if message == WM_DESTROY:
                _user32.PostQuitMessage(0)
                return 0
            return int(_user32.DefWindowProcW(hwnd, message, wparam, lparam))
