"""The tray's windows (Tk, from the standard library), each run in its own short process.

`python -m tray.dialogs KIND` reads what to show as JSON on stdin and prints the user's
answer as JSON on stdout; the tray applies it through the core. A process of its own
because pystray owns the main thread (and on macOS Tk must own it too), because a
window can then never block the icon or the service, and because the always-on process
never loads Tk: its memory stays small. See tray/ui.py for the calling side.

Kinds: choices, queue, journal, restart, confirm, import, message, send (the sending
wizard, tray/send_wizard.py). Every window has the look of tray/look.py.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tkinter as tk
from collections.abc import Callable
from tkinter import filedialog, ttk
from typing import Any

from daemon import i18n
from daemon.i18n import _
from tray import look
from tray.window import Answer, Dialog, message_label, press_on_return

CHECKED, UNCHECKED = "☑", "☐"


# ---------------------------------------------------------------- choices (no tray menu)


def choices(data: dict[str, Any]) -> Answer:
    """The tray menu as a small window, for backends without menus (plain X11)."""
    dialog = Dialog("passeur")
    message_label(dialog.frame, data.get("status", ""), 320).pack(anchor="w", pady=(0, 8))
    enabled: list[ttk.Button] = []
    focus: ttk.Button | None = None
    for entry in data["entries"]:
        if entry.get("separator"):
            ttk.Separator(dialog.frame).pack(fill="x", pady=4)
            continue
        answer = {"action": entry["action"], "arg": entry["arg"]}
        button = ttk.Button(dialog.frame, text=entry["label"],
                            command=functools.partial(dialog.finish, answer))
        button.pack(fill="x", pady=1)
        press_on_return(button)
        if not entry["enabled"]:
            button.state(["disabled"])
            continue
        enabled.append(button)
        if entry.get("default"):
            focus = button
            button.configure(default="active")
    # The most useful choice now has the focus: Return takes it.
    dialog.initial_focus = focus or (enabled[0] if enabled else None)
    _arrow_keys(dialog.root, enabled)
    root = dialog.root
    anchor = data.get("anchor")
    if anchor:
        # Like a menu: next to the icon (below a top panel, above a bottom one), placed
        # once the window is shown (Dialog.run centres it first).
        def place() -> None:
            root.update_idletasks()
            width, height = root.winfo_reqwidth(), root.winfo_reqheight()
            x, y, icon_width, icon_height = (int(v) for v in anchor)
            screen_w, screen_h = root.winfo_screenwidth(), root.winfo_screenheight()
            left = min(max(0, x + icon_width - width), max(0, screen_w - width))
            top = y + icon_height if y < screen_h // 2 else y - height
            root.geometry(f"+{left}+{max(0, min(top, screen_h - height))}")

        root.after(0, place)  # a timer: Dialog.run's update_idletasks runs idle calls
    armed: list[bool] = []

    def focus_out() -> None:
        # Closed by a click elsewhere, as a menu is: the keyboard left every one of its
        # widgets (only once it had it: it comes a moment after the window).
        try:
            elsewhere = root.focus_get() is None
        except (KeyError, tk.TclError):  # the focus is in another program's window
            elsewhere = True
        if armed and elsewhere:
            dialog.cancel()

    root.bind("<FocusIn>", lambda _event: armed.append(True), add="+")
    root.bind("<FocusOut>", lambda _event: root.after(100, focus_out), add="+")
    _close_on_a_click_elsewhere(dialog)
    return dialog.run()


def _close_on_a_click_elsewhere(dialog: Dialog, tries: int = 40) -> None:
    """Hold the pointer as a menu does, so that a click outside the window closes it even
    where no window manager moves the focus (plain X11).

    The grab waits until the window is on the screen (X refuses it before); if another
    program holds the pointer, the window stays open as before (Escape, a choice).
    """
    root = dialog.root

    def grab(left: int) -> None:
        try:
            root.grab_set_global()
        except tk.TclError:  # not viewable yet, or the pointer is held elsewhere
            if left > 0:
                root.after(50, grab, left - 1)
            return
        root.bind("<ButtonPress>", outside, add="+")

    def outside(event: tk.Event[Any]) -> None:
        x, y = root.winfo_rootx(), root.winfo_rooty()
        inside = (x <= event.x_root < x + root.winfo_width()
                  and y <= event.y_root < y + root.winfo_height())
        if not inside:
            dialog.cancel()

    root.after(50, grab, tries)


def _arrow_keys(root: tk.Tk, buttons: list[ttk.Button]) -> None:
    """Up, Down, Home and End move between the choices, as in a menu."""

    def move(step: int | None, to_end: bool = False) -> None:
        if not buttons:
            return
        if step is None:
            buttons[-1 if to_end else 0].focus_set()
            return
        current = root.focus_get()
        index = buttons.index(current) if current in buttons else -step
        buttons[(index + step) % len(buttons)].focus_set()

    root.bind("<Down>", lambda _event: move(1))
    root.bind("<Up>", lambda _event: move(-1))
    root.bind("<Home>", lambda _event: move(None))
    root.bind("<End>", lambda _event: move(None, to_end=True))


# ---------------------------------------------------------------- the queue


class QueueDialog(Dialog):
    """*Liste des fichiers d'écritures à intégrer*: Traiter ☑ / Supprimer ☐ per file."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__(_("List of entry files to integrate"))
        self.items = {str(item["id"]): item for item in items}
        self.process = {key: True for key in self.items}
        self.delete = dict.fromkeys(self.items, False)
        self.tree = self._table()
        self.content = self._content_pane()
        self.initial_focus = self.tree
        self.buttons((_("OK"), self.ok), (_("Cancel"), self.cancel))
        if self.items:
            first = next(iter(self.items))
            self.tree.selection_set(first)
            self.tree.focus(first)

    def _table(self) -> ttk.Treeview:
        columns = ("name", "created", "process", "delete")
        tree = ttk.Treeview(self.frame, columns=columns, show="headings", selectmode="browse",
                            height=min(10, max(3, len(self.items))))
        headings = (_("File name"), _("Creation date"), _("Traiter"), _("Supprimer"))
        widths = (250, 170, 80, 90)
        for column, heading, width in zip(columns, headings, widths, strict=True):
            tree.heading(column, text=heading)
            tree.column(column, width=look.px(self.root, width),
                        anchor="w" if column in ("name", "created") else "center",
                        stretch=column == "name")
        tree.tag_configure("etalon", foreground="#b5400a")
        for key, item in self.items.items():
            tree.insert("", "end", iid=key, values=self._values(key),
                        tags=("etalon",) if item.get("etalon") else ())
        tree.pack(fill="both", expand=True)
        tree.bind("<<TreeviewSelect>>", lambda _event: self._show_content())
        tree.bind("<Button-1>", self._click)
        # Space ticks Traiter, Delete ticks Supprimer, Return is OK (instead of Tk's own
        # open/close of tree branches, meaningless in a flat list).
        tree.bind("<space>", lambda _event: self._key_toggle("process"))
        tree.bind("<Delete>", lambda _event: self._key_toggle("delete"))
        tree.bind("<Return>", lambda _event: self._key_ok())
        return tree

    def _key_toggle(self, which: str) -> str:
        self._toggle(self.tree.focus(), which)
        return "break"

    def _key_ok(self) -> str:
        self.ok()
        return "break"

    def _content_pane(self) -> tk.Text:
        ttk.Label(self.frame, text=_("Content of the exchange")).pack(anchor="w", pady=(10, 2))
        text = tk.Text(self.frame, height=11, width=70, wrap="word", relief="flat",
                       background=self.root.cget("background"))
        text.pack(fill="both", expand=True)
        text.configure(state="disabled")
        return text

    def _values(self, key: str) -> tuple[str, str, str, str]:
        item = self.items[key]
        return (item["name"], item["created"], CHECKED if self.process[key] else UNCHECKED,
                CHECKED if self.delete[key] else UNCHECKED)

    def _click(self, event: tk.Event[Any]) -> str | None:
        row = self.tree.identify_row(event.y)
        column = self.tree.identify_column(event.x)
        if row and column in ("#3", "#4"):
            self.tree.selection_set(row)
            self.tree.focus(row)
            self._toggle(row, "process" if column == "#3" else "delete")
            return "break"
        return None

    def _toggle(self, key: str, which: str) -> None:
        if not key:
            return
        # Traiter and Supprimer exclude each other: checking one unchecks the other.
        if which == "process":
            self.process[key] = not self.process[key]
            self.delete[key] = self.delete[key] and not self.process[key]
        else:
            self.delete[key] = not self.delete[key]
            self.process[key] = self.process[key] and not self.delete[key]
        self.tree.item(key, values=self._values(key))

    def _show_content(self) -> None:
        selected = self.tree.selection()
        lines = content_lines(self.items[selected[0]]) if selected else []
        self.content.configure(state="normal")
        self.content.delete("1.0", "end")
        self.content.insert("1.0", "\n".join(lines))
        self.content.configure(state="disabled")

    def ok(self) -> None:
        """Answer with the ids to process and to delete."""
        self.finish({
            "process": [self.items[k]["id"] for k in self.items if self.process[k]],
            "delete": [self.items[k]["id"] for k in self.items if self.delete[k]],
        })


def content_lines(item: dict[str, Any]) -> list[str]:
    """The *Contenu de l'échange* of a row, read from its manifest when it is shown."""
    from daemon.manifest import Manifest
    from daemon.presentation import describe_exchange

    try:
        return describe_exchange(Manifest.from_dict(json.loads(item["manifest"])))
    except Exception:  # an old or odd record is still listed, with its name only
        return [item["name"]]


def queue(data: dict[str, Any]) -> Answer:
    """The list of files to integrate."""
    return QueueDialog(data["items"]).run()


# ---------------------------------------------------------------- journal and messages


def journal(data: dict[str, Any]) -> Answer:
    """Recent activity in words, problems first."""
    dialog = Dialog(_("Journal") + " — passeur")
    text = tk.Text(dialog.frame, height=20, width=90, wrap="word", font="TkDefaultFont")
    scroll = ttk.Scrollbar(dialog.frame, command=text.yview)
    text.configure(yscrollcommand=scroll.set)
    text.tag_configure("problem", foreground="#c92a2a")
    for problem in data.get("problems", []):
        text.insert("end", problem + "\n", "problem")
    if data.get("problems"):
        text.insert("end", "\n")
    lines = data.get("lines") or [_("Nothing happened yet.")]
    text.insert("end", "\n".join(lines))
    text.configure(state="disabled")
    dialog.buttons((_("Close"), dialog.cancel))
    scroll.pack(side="right", fill="y")
    text.pack(side="left", fill="both", expand=True)
    return dialog.run()


def restart(data: dict[str, Any]) -> Answer:
    """*Relancer maintenant* / *Plus tard*."""
    dialog = Dialog(_("Restart {app}").format(app=data["app"]))
    message_label(dialog.frame, data["message"]).pack(anchor="w")
    if data.get("names"):
        message_label(dialog.frame, "\n".join(data["names"])).pack(anchor="w", pady=(8, 0))
    dialog.buttons((_("Restart now"), lambda: dialog.finish({"choice": "now"})),
                   (_("Later"), lambda: dialog.finish({"choice": "later"})))
    return dialog.run()


def confirm(data: dict[str, Any]) -> Answer:
    """A question whose safe answer (No) is the default."""
    dialog = Dialog(data["title"])
    message_label(dialog.frame, data["message"]).pack(anchor="w")
    dialog.buttons((data["yes"], lambda: dialog.finish({"yes": True})),
                   (data["no"], lambda: dialog.finish({"yes": False})), default=1)
    return dialog.run()


def message(data: dict[str, Any]) -> Answer:
    """A message with an OK button."""
    dialog = Dialog(data["title"])
    message_label(dialog.frame, data["message"]).pack(anchor="w")
    dialog.buttons((_("OK"), dialog.cancel))
    return dialog.run()


def import_files(data: dict[str, Any]) -> Answer:
    """*Importer un fichier…*: choose exchange files."""
    root = tk.Tk(className="passeur")
    look.apply(root)
    root.withdraw()
    paths = filedialog.askopenfilenames(
        parent=root, title=_("Import a file"), initialdir=look.initial_folder(data.get("folder")),
        filetypes=[(_("Exchange files"), "*.wwz *.WWZ"), (_("All files"), "*")])
    root.destroy()
    return {"paths": list(paths)} if paths else None


def send_wizard(data: dict[str, Any]) -> Answer:
    """*Échanges prestataires – Envoyer* (a module of its own: the largest window)."""
    from tray.send_wizard import run_wizard

    return run_wizard(data)


KINDS: dict[str, Callable[[dict[str, Any]], Answer]] = {
    "choices": choices,
    "queue": queue,
    "journal": journal,
    "restart": restart,
    "confirm": confirm,
    "message": message,
    "import": import_files,
    "send": send_wizard,
    # tray.settings_window builds on this module: imported when its window opens.
    "setup": lambda data: __import__("tray.settings_window", fromlist=["setup"]).setup(data),
    "settings": lambda data: __import__("tray.settings_window",
                                        fromlist=["settings"]).settings(data),
}


def main(argv: list[str]) -> int:
    """Show one dialog: KIND as argument, its data as JSON on stdin, the answer on stdout."""
    if len(argv) != 1 or argv[0] not in KINDS:
        print(f"usage: python -m tray.dialogs {{{','.join(KINDS)}}}", file=sys.stderr)
        return 2
    data = json.load(sys.stdin)
    i18n.setup(data.get("language"))
    answer = KINDS[argv[0]](data)
    print(json.dumps(answer, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # The window is gone and the answer written: end now. The tray opens no second window
    # of a kind while the first one's process lives, and the interpreter's teardown (Tk,
    # Pillow) can take a moment on a busy computer, long enough to swallow a quick click.
    os._exit(status)
