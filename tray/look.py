"""One look for every passeur window: theme, scaling, title icon, French in Tk's own texts.

`apply(root)` is called by the `Dialog` base of tray/window.py (and by the windows that
only open a chooser), so each window inherits it:

- a ttk theme ("clam", tuned: the calm greys and the blue focus of today's desktops)
  instead of Tk's 1990s default;
- sizes in points, so that text and widgets follow the display: Tk's scaling comes from
  the screen's DPI, times `GDK_SCALE` (or `QT_SCALE_FACTOR`) when the desktop scales at
  200 %;
- the window's icon drawn by tray/icon.py, the same as in the tray;
- Tk's built-in texts (file and folder choosers, message boxes) in the user's language,
  through Tk's own msgcat catalogues: no « Directory: », « Open », « Cancel » in French;
- choosers that open in a sensible folder (the key, Downloads, the home folder), never
  the program's working directory.
"""

from __future__ import annotations

import base64
import io
import os
import tkinter as tk
from collections.abc import Iterable
from pathlib import Path
from tkinter import filedialog, font, ttk

from daemon import i18n

BASE_DPI = 96.0
FONT_POINTS = 10
BACKGROUND = "#f2f2f0"
FIELD = "#ffffff"
ACCENT = "#2f6fb3"
TEXT = "#1f1f1f"
MUTED = "#6a6a6a"
_ICONS: dict[int, tk.PhotoImage] = {}  # kept alive while their window lives


def desktop_scale() -> float:
    """Return the desktop's own scale factor (200 % → 2.0), 1.0 when it says none."""
    for name in ("GDK_SCALE", "QT_SCALE_FACTOR"):
        try:
            value = float(os.environ.get(name, ""))
        except ValueError:
            continue
        if 0.5 <= value <= 4.0:
            return value
    return 1.0


def scale_of(root: tk.Misc) -> float:
    """Return how much larger than at 96 DPI and 100 % this window draws."""
    return float(root.tk.call("tk", "scaling")) * 72.0 / BASE_DPI


def px(root: tk.Misc, pixels: int) -> int:
    """Return a size given in pixels at 100 %, for this window's scale."""
    return round(pixels * scale_of(root))


def apply(root: tk.Tk) -> None:
    """Give this window passeur's look (call once, right after creating it)."""
    _scale(root)
    _fonts(root)
    _theme(root)
    _icon(root)
    _tk_language(root)


def _scale(root: tk.Tk) -> None:
    # Pixels per point: the screen's DPI (Xvfb and most screens say 96), times the
    # desktop's factor, which Tk does not read by itself.
    dpi = max(72.0, float(root.winfo_fpixels("1i")))
    root.tk.call("tk", "scaling", dpi * desktop_scale() / 72.0)


def _fonts(root: tk.Tk) -> None:
    # Tk's X11 fonts are sized in pixels (-12): in points they follow the scaling.
    families = set(font.families(root))
    family = next((f for f in ("Cantarell", "Noto Sans", "DejaVu Sans", "Segoe UI",
                               "Helvetica") if f in families), "TkDefaultFont")
    for name in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont",
                 "TkCaptionFont", "TkTooltipFont"):
        named = font.nametofont(name, root)
        named.configure(family=family, size=FONT_POINTS)
    font.nametofont("TkHeadingFont", root).configure(weight="bold")
    font.nametofont("TkCaptionFont", root).configure(size=FONT_POINTS + 3, weight="bold")


def _theme(root: tk.Tk) -> None:
    style = ttk.Style(root)
    style.theme_use("clam")
    pad = px(root, 6)
    style.configure(".", background=BACKGROUND, foreground=TEXT, fieldbackground=FIELD,
                    focuscolor=ACCENT, bordercolor="#c4c4c0", lightcolor=BACKGROUND,
                    darkcolor="#c4c4c0", troughcolor="#dcdcd8", selectbackground=ACCENT,
                    selectforeground="#ffffff")
    style.configure("TButton", padding=(px(root, 12), pad // 2))
    style.map("TButton", bordercolor=[("focus", ACCENT), ("active", "#9a9a96")])
    # Disabled choices stay on the window's background, greyed only in their text.
    for widget in ("TRadiobutton", "TCheckbutton"):
        style.map(widget, background=[("disabled", BACKGROUND), ("active", BACKGROUND)])
        # The theme draws its marks in fixed pixels: at 200 % they would be specks.
        style.configure(widget, indicatorsize=px(root, 12),
                        indicatormargin=(px(root, 1), px(root, 1), px(root, 5), px(root, 1)))
    for widget in ("TCombobox", "TSpinbox", "Vertical.TScrollbar", "Horizontal.TScrollbar"):
        style.configure(widget, arrowsize=px(root, 14))
    style.configure("Muted.TLabel", foreground=MUTED)
    style.configure("Title.TLabel", font="TkCaptionFont")
    style.configure("Warning.TLabel", foreground="#9c3d00")
    style.configure("Treeview", rowheight=px(root, 24))
    style.configure("Treeview.Heading", font="TkHeadingFont")
    root.configure(background=BACKGROUND)
    # Classic Tk widgets (Text) on the same background.
    root.option_add("*Background", BACKGROUND)
    root.option_add("*Text.Background", FIELD)
    root.option_add("*selectBackground", ACCENT)


def _icon(root: tk.Tk) -> None:
    from tray.icon import draw_icon
    from tray.state import Status

    try:
        buffer = io.BytesIO()
        draw_icon(Status.UP_TO_DATE, 0, 64).save(buffer, "PNG")
        image = tk.PhotoImage(master=root, data=base64.b64encode(buffer.getvalue()),
                              format="png")
    except (tk.TclError, OSError):
        return  # a window without its icon is still a window
    _ICONS[id(root)] = image
    root.iconphoto(True, image)


def _tk_language(root: tk.Tk) -> None:
    """Tk's own texts (choosers, message boxes) in the language of passeur."""
    language = i18n.current_language()
    root.tk.eval("package require msgcat")
    root.tk.call("::msgcat::mclocale", language)
    # Tk loaded its catalogues for the environment's locale at start: load them again
    # for the language passeur speaks.
    root.tk.eval("::msgcat::mcload [file join $::tk_library msgs]")


def initial_folder(*candidates: Path | str | None) -> str:
    """Return the first of these folders that exists, else Downloads, else home."""
    from platformdirs import user_downloads_dir

    fallbacks: Iterable[Path | str | None] = (*candidates, user_downloads_dir(), Path.home())
    for candidate in fallbacks:
        if candidate and Path(candidate).is_dir():
            return str(candidate)
    return str(Path.home())


def choose_folder(parent: tk.Misc, title: str, *candidates: Path | str | None) -> str:
    """Ask for a folder with Tk's chooser, opening in a sensible folder; "" if cancelled."""
    return str(filedialog.askdirectory(parent=parent, title=title, mustexist=True,
                                       initialdir=initial_folder(*candidates)) or "")
