"""The base of every tray window (tray/dialogs.py, tray/send_wizard.py,
tray/settings_window.py): a root window with the common look, an answer, and the buttons
and keys that every window shares."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Any

from tray import look

Answer = dict[str, Any] | None


class Dialog:
    """A root window with a title, an answer and OK/Cancel plumbing."""

    def __init__(self, title: str) -> None:
        self.root = tk.Tk(className="passeur")
        look.apply(self.root)
        self.root.title(title)
        self.answer: Answer = None
        self.initial_focus: tk.Widget | None = None
        self.root.protocol("WM_DELETE_WINDOW", self.cancel)
        self.root.bind("<Escape>", lambda _event: self.cancel())
        self.frame = ttk.Frame(self.root, padding=12)
        self.frame.pack(fill="both", expand=True)

    def finish(self, answer: Answer) -> None:
        """Close the window with this answer."""
        self.answer = answer
        self.root.destroy()

    def cancel(self) -> None:
        """Close the window without an answer."""
        self.finish(None)

    def buttons(self, *specs: tuple[str, Callable[[], None]], default: int = 0) -> None:
        """Add a row of buttons at the bottom right; Return presses the focused one."""
        row = ttk.Frame(self.frame)
        row.pack(side="bottom", fill="x", pady=(12, 0))
        made = []
        for label, command in reversed(specs):
            button = ttk.Button(row, text=label, command=command)
            button.pack(side="right", padx=(6, 0))
            press_on_return(button)
            made.append(button)
        made.reverse()
        made[default].configure(default="active")
        self.initial_focus = self.initial_focus or made[default]

    def run(self) -> Answer:
        """Show the window (centred, in front, focused) until it is closed."""
        self.root.update_idletasks()
        width, height = self.root.winfo_reqwidth(), self.root.winfo_reqheight()
        x = max(0, (self.root.winfo_screenwidth() - width) // 2)
        y = max(0, (self.root.winfo_screenheight() - height) // 3)
        self.root.geometry(f"+{x}+{y}")
        self.root.attributes("-topmost", True)
        # Take the keyboard (a window opened by a background program does not get it by
        # itself), straight into the widget the user starts with.
        target = self.initial_focus or self.root
        target.focus_set()
        self.root.after(100, target.focus_force)
        self.root.mainloop()
        return self.answer


def press_on_return(button: ttk.Button) -> None:
    """Let Return press a focused button (Tk buttons only take the space bar)."""

    def press(_event: tk.Event[Any]) -> None:
        button.invoke()

    button.bind("<Return>", press)


def message_label(parent: tk.Misc, text: str, width: int = 440) -> ttk.Label:
    """Return a wrapped label."""
    return ttk.Label(parent, text=text, wraplength=look.px(parent, width), justify="left")
