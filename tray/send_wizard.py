"""*Échanges prestataires – Envoyer*: the manual's sending wizard, as a passeur window.

Two pages, as in the accounting application: *Choix de la destination* (Répertoire with the
USB keys first and a « … » folder chooser, Email, Synchronisation web avec votre comptable;
« Envoyer un mail d'information au destinataire »; *Joindre les documents associés*;
*Objectif de l'échange*), then *Commentaires*. Buttons Aide / Annuler / Précédent / Suivant /
Terminer; Enter is Suivant (Terminer on the last page; Ctrl+Enter in the comments),
Escape is Annuler, Alt+Left and Alt+Right are Précédent and Suivant.

The window gets the dossier's `SendOptions` (daemon/send/options.py) from the tray as its
input and answers with the send request; the tray sends it through the core. What must be
live while the window is open — how many documents and bytes each choice carries, keys
plugged in meanwhile, whether the accounting application is still open, closing it — is
asked from the running service over its control channel, on a thread of the window's own,
so that the window never waits for the disk or the application. The choices and their
checks are a plain model (`WizardModel`), tested without a display.
"""

from __future__ import annotations

import contextlib
import functools
import queue
import threading
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from tkinter import ttk
from typing import Any

from daemon.i18n import _, ngettext
from daemon.presentation import format_size
from daemon.send.base import Channel, Documents, email_size
from daemon.send.options import SendOptions, Target
from tray import look

PAGES = ("destination", "comments")
LIVE_INTERVAL_S = 2.0  # how often keys and the application are looked at again


@dataclass(frozen=True)
class PlanFacts:
    """What a choice of documents would carry (from the service's `send-plan`)."""

    documents: int
    bytes: int
    deleted: int = 0
    packed_bytes: int = 0  # the `.wvz`'s estimated size (0: not known, the documents')

    def email_bytes(self) -> int:
        """Return about how large the e-mail carrying this `.wvz` is."""
        return email_size(self.packed_bytes or self.bytes)


@dataclass
class WizardModel:
    """The wizard's choices and the rules between them (no display needed)."""

    options: SendOptions
    page: int = 0
    channel: Channel = Channel.FOLDER
    folder: str = ""
    documents: Documents = Documents.ALL
    objective: str = ""
    inform: bool = False
    comments: str = ""
    app_running: bool = False
    plans: dict[Documents, PlanFacts] = field(default_factory=dict)

    @classmethod
    def opening(cls, options: SendOptions) -> WizardModel:
        """Return the wizard as it opens: the remembered choices, else the defaults."""
        remembered = options.choices
        objective = options.objectives[0] if options.objectives else ""
        if remembered is not None and remembered.objective:
            objective = remembered.objective
        model = cls(options, channel=options.default_channel(),
                    documents=options.default_documents(), objective=objective,
                    inform=bool(remembered and remembered.inform),
                    app_running=options.app_running)
        model.folder = model._opening_folder()
        return model

    def _opening_folder(self) -> str:
        remembered = self.options.choices
        keys = [t for t in self.options.targets if t.removable]
        # A key plugged in is what the user means, then the folder used last time.
        if keys:
            return keys[0].path
        if remembered is not None and remembered.folder is not None:
            return str(remembered.folder)
        return self.options.targets[0].path if self.options.targets else ""

    # ------------------------------------------------------------ what can be chosen

    def why_not(self, channel: Channel) -> str:
        """Return why a destination cannot be chosen ("" when it can)."""
        return self.options.unavailable.get(str(channel), "")

    def inform_possible(self) -> bool:
        """The information e-mail needs e-mail, and an e-mail send informs by itself."""
        return not self.why_not(Channel.EMAIL) and self.channel is not Channel.EMAIL

    def choose_channel(self, channel: Channel) -> None:
        """Choose a destination (one that cannot be used is not taken)."""
        if not self.why_not(channel):
            self.channel = channel

    def add_folder(self, path: str) -> None:
        """Take a folder picked with « … » as the *Répertoire*."""
        self.folder = path
        self.channel = Channel.FOLDER

    def targets(self) -> list[Target]:
        """Return the *Répertoire* choices: keys first, then a picked folder if new."""
        targets = list(self.options.targets)
        if self.folder and all(t.path != self.folder for t in targets):
            targets.append(Target(self.folder, self.folder))
        return targets

    # ------------------------------------------------------------ checks

    def email_too_large(self) -> bool:
        """Tell whether the chosen documents make too large an e-mail, by the estimate of
        the packed size (the send itself checks the real one)."""
        plan = self.plans.get(self.documents)
        limit = self.options.email_max_bytes
        return (self.channel is Channel.EMAIL and plan is not None and limit > 0
                and plan.email_bytes() > limit)

    def blocker(self) -> str:
        """Return why the send cannot go now ("" when Terminer may send)."""
        if self.app_running:
            return _("Close the dossier in {app} first: it could be writing it.").format(
                app=self.options.app_name)
        reason = self.why_not(self.channel)
        if reason:
            return reason
        if self.channel is Channel.FOLDER and not self.folder:
            return _("Choose the USB key or the folder to write the dossier to.")
        if self.email_too_large():
            return _("The dossier is too large to be sent by e-mail (more than {limit}): "
                     "send it on a USB key or through your accountant's site.").format(
                         limit=format_size(self.options.email_max_bytes))
        plan = self.plans.get(self.documents)
        if self.documents is Documents.CHANGED and plan is not None and not (
                plan.documents or plan.deleted):
            return _("No document was modified or added since the last send: choose "
                     "“All the documents”.")
        return ""

    # ------------------------------------------------------------ pages

    @property
    def last_page(self) -> bool:
        """Tell whether the wizard is on its last page (Commentaires)."""
        return self.page == len(PAGES) - 1

    def next(self) -> bool:
        """Go to the next page; False when already on the last one."""
        if self.last_page:
            return False
        self.page += 1
        return True

    def back(self) -> bool:
        """Go to the previous page; False when on the first one."""
        if self.page == 0:
            return False
        self.page -= 1
        return True

    def request(self) -> dict[str, Any]:
        """Return the send request (daemon.send.sender.SendRequest as JSON)."""
        return {"dossier": self.options.dossier, "channel": str(self.channel),
                "folder": self.folder if self.channel is Channel.FOLDER else None,
                "documents": str(self.documents), "objective": self.objective.strip(),
                "comments": self.comments.strip(),
                "inform": self.inform and self.inform_possible()}


def plan_words(plan: PlanFacts | None) -> str:
    """Return « 12 documents, 3,4 Mo » (or that it is being counted)."""
    if plan is None:
        return _("counting…")
    words = ngettext("{n} document, {size}", "{n} documents, {size}", plan.documents).format(
        n=plan.documents, size=format_size(plan.bytes))
    if plan.deleted:
        words += ", " + ngettext("{n} deleted", "{n} deleted", plan.deleted).format(
            n=plan.deleted)
    return words


# ---------------------------------------------------------------- the service, live


class Live:
    """The window's own thread talking to the running service over the control channel."""

    def __init__(self, data_folder: str, dossier: str) -> None:
        self.data_folder = data_folder
        self.dossier = dossier
        self.results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._asks: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wizard-live", daemon=True)

    def start(self) -> None:
        """Start counting and watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop (the window closes)."""
        self._stop.set()
        self._asks.put("stop")

    def close_app(self) -> None:
        """Ask the service to close the accounting application."""
        self._asks.put("close-app")

    def _run(self) -> None:
        from daemon.control.client import RemoteCore, RemoteError
        from daemon.send.base import SendError

        remote = RemoteCore.connect_to(Path(self.data_folder)) if self.data_folder else None
        if remote is None:
            self.results.put(("offline", None))
            return
        try:
            for mode in Documents:
                self.results.put(("plan", (mode, remote.send_plan(self.dossier, str(mode)))))
            while not self._stop.is_set():
                with contextlib.suppress(queue.Empty):
                    if self._asks.get(timeout=LIVE_INTERVAL_S) == "close-app":
                        self.results.put(("closed", remote.close_app()))
                if not self._stop.is_set():
                    self.results.put(("options", remote.send_options(self.dossier)))
        except (RemoteError, SendError, OSError) as exc:
            self.results.put(("offline", str(exc)))
        finally:
            remote.close()


# ---------------------------------------------------------------- the window


class SendWizard:
    """The two pages, their buttons and keys, on one `Dialog`."""

    def __init__(self, data: dict[str, Any]) -> None:
        from tray.window import Dialog

        self.options = SendOptions.from_json(data["options"])
        self.model = WizardModel.opening(self.options)
        self.help_file = str(data.get("help") or "")
        self.dialog = Dialog(_("Service provider exchanges – Send"))
        self.root = self.dialog.root
        self.live = Live(str(data.get("data_folder") or ""), self.options.dossier)
        self._closing_app = False
        self._offline = False
        self.vars = self._variables()
        self._build()
        self.show_page()

    # ------------------------------------------------------------ building

    def _variables(self) -> dict[str, tk.StringVar]:
        model = self.model
        self.inform_var = tk.BooleanVar(self.root, model.inform)
        return {"channel": tk.StringVar(self.root, str(model.channel)),
                "folder": tk.StringVar(self.root, ""),
                "documents": tk.StringVar(self.root, str(model.documents)),
                "objective": tk.StringVar(self.root, model.objective)}

    def _build(self) -> None:
        frame = self.dialog.frame
        self.heading = ttk.Label(frame, style="Title.TLabel")
        self.heading.grid(row=0, column=0, sticky="w")
        self.help_button = ttk.Button(frame, text=_("Help"), command=self.open_help)
        self.help_button.grid(row=0, column=1, sticky="e")
        self.pages = {"destination": self._destination_page(frame),
                      "comments": self._comments_page(frame)}
        self.status = ttk.Label(frame, style="Warning.TLabel",
                                wraplength=look.px(self.root, 520), justify="left")
        self.status.grid(row=2, column=0, columnspan=2, sticky="we", pady=(8, 0))
        self._button_row(frame).grid(row=3, column=0, columnspan=2, sticky="we",
                                     pady=(12, 0))
        frame.columnconfigure(0, weight=1)
        frame.rowconfigure(1, weight=1)
        # Enter presses the focused button, as Space does (the window's Enter is Suivant).
        for button in (self.help_button, self.close_button, self.browse, self.email_offer_key,
                       self.web_offer):
            button.bind("<Return>", functools.partial(self._press, button))
        self.root.bind("<Return>", self._on_return)
        self.root.bind("<KP_Enter>", self._on_return)
        # As in a browser: Alt+Left goes back, Alt+Right forward.
        self.root.bind("<Alt-Left>", lambda _e: self.back())
        self.root.bind("<Alt-Right>", lambda _e: self.next())

    def _destination_page(self, parent: ttk.Frame) -> ttk.Frame:
        page = ttk.Frame(parent)
        self.app_banner = ttk.Frame(page)
        self.app_words = ttk.Label(self.app_banner, style="Warning.TLabel",
                                   wraplength=look.px(self.root, 380), justify="left")
        self.app_words.pack(side="left", fill="x", expand=True)
        self.close_button = ttk.Button(
            self.app_banner, text=_("Close {app}").format(app=self.options.app_name),
            command=self.close_app)
        self.close_button.pack(side="right", padx=(8, 0))
        box = ttk.LabelFrame(page, text=_("Destination"), padding=8)
        box.pack(fill="x", pady=(8, 0))
        self.destination_box = box
        self.radios: dict[Channel, ttk.Radiobutton] = {}
        folder_row = ttk.Frame(box)
        folder_row.pack(fill="x")
        self._radio(folder_row, Channel.FOLDER, _("Folder")).pack(side="left")
        self.folder_box = ttk.Combobox(folder_row, state="readonly", width=34,
                                       textvariable=self.vars["folder"])
        self.folder_box.pack(side="left", padx=(8, 4), fill="x", expand=True)
        self.folder_box.bind("<<ComboboxSelected>>", lambda _e: self._folder_picked())
        self.browse = ttk.Button(folder_row, text="…", width=3, command=self.choose_folder)
        self.browse.pack(side="left")
        for channel, label in ((Channel.EMAIL, _("Email")),
                               (Channel.WEB, _("Web synchronisation with your accountant"))):
            self._radio(box, channel, label).pack(anchor="w", pady=(4, 0))
            reason = self.model.why_not(channel)
            if reason:
                ttk.Label(box, text=reason, style="Muted.TLabel", justify="left",
                          wraplength=look.px(self.root, 480)).pack(
                    anchor="w", padx=(look.px(self.root, 22), 0))
        self.inform_box = ttk.Checkbutton(
            page, text=_("Send an information e-mail to the recipient"),
            variable=self.inform_var, command=self._changed)
        self.inform_box.pack(anchor="w", pady=(8, 0))
        documents = ttk.LabelFrame(page, text=_("Attach the associated documents"), padding=8)
        documents.pack(fill="x", pady=(8, 0))
        self.document_radios: dict[Documents, ttk.Radiobutton] = {}
        for mode, label in ((Documents.ALL, _("All the documents")),
                            (Documents.CHANGED, _("Only the modified or added documents"))):
            radio = ttk.Radiobutton(documents, text=label, value=str(mode),
                                    variable=self.vars["documents"], command=self._changed)
            radio.pack(anchor="w")
            self.document_radios[mode] = radio
        ttk.Label(page, text=_("Objective of the exchange")).pack(anchor="w", pady=(8, 2))
        self.objective_box = ttk.Combobox(page, values=list(self.options.objectives),
                                          textvariable=self.vars["objective"])
        self.objective_box.pack(fill="x")
        self.objective_box.bind("<<ComboboxSelected>>", lambda _e: self._changed())
        self.objective_box.bind("<KeyRelease>", lambda _e: self._changed())
        self.email_offer = ttk.Frame(page)
        self.email_offer_key = ttk.Button(self.email_offer, text=_("Send on the USB key instead"),
                                          command=lambda: self._switch(Channel.FOLDER))
        self.email_offer_key.pack(side="left")
        self.web_offer = ttk.Button(self.email_offer,
                                    text=_("Send through the accountant's site instead"),
                                    command=lambda: self._switch(Channel.WEB))
        self.web_offer.pack(side="left", padx=(6, 0))
        self._fill_folders()
        return page

    def _radio(self, parent: tk.Misc, channel: Channel, label: str) -> ttk.Radiobutton:
        radio = ttk.Radiobutton(parent, text=label, value=str(channel),
                                variable=self.vars["channel"], command=self._changed)
        if self.model.why_not(channel):
            radio.state(["disabled"])
        self.radios[channel] = radio
        return radio

    def _comments_page(self, parent: ttk.Frame) -> ttk.Frame:
        page = ttk.Frame(parent)
        ttk.Label(page, text=_("Comments for your accountant (optional)")).pack(
            anchor="w", pady=(8, 2))
        # Narrower than the first page: it sets the window's width, the comments fill it.
        self.comments = tk.Text(page, height=8, width=40, wrap="word", undo=True,
                                font="TkTextFont", relief="solid", borderwidth=1)
        self.comments.pack(fill="both", expand=True)
        # Enter writes a new line here; Ctrl+Enter is Terminer.
        self.comments.bind("<Control-Return>", lambda _e: self._finish_key())
        self.comments.bind("<Tab>", self._tab_out)
        return page

    def _button_row(self, parent: ttk.Frame) -> ttk.Frame:
        row = ttk.Frame(parent)
        specs: list[tuple[str, Callable[[], None]]] = [
            (_("Cancel"), self.dialog.cancel), (_("Previous"), self.back),
            (_("Next"), self.next), (_("Finish"), self.finish)]
        self.buttons: dict[str, ttk.Button] = {}
        for label, command in specs:
            button = ttk.Button(row, text=label, command=command)
            button.pack(side="left" if command == self.dialog.cancel else "right",
                        padx=(0, 6) if command == self.dialog.cancel else (6, 0))
            button.bind("<Return>", functools.partial(self._press, button))
            self.buttons[label] = button
        # Packed from the right: reorder so that Précédent, Suivant, Terminer read left to right.
        for label in (_("Previous"), _("Next"), _("Finish")):
            self.buttons[label].pack_forget()
        for label in (_("Finish"), _("Next"), _("Previous")):
            self.buttons[label].pack(side="right", padx=(6, 0))
        self.cancel_button = self.buttons[_("Cancel")]
        self.back_button = self.buttons[_("Previous")]
        self.next_button = self.buttons[_("Next")]
        self.finish_button = self.buttons[_("Finish")]
        return row

    # ------------------------------------------------------------ pages and state

    def show_page(self) -> None:
        """Show the model's page, its buttons and where the keyboard starts."""
        name = PAGES[self.model.page]
        for key, page in self.pages.items():
            if key == name:
                page.grid(row=1, column=0, columnspan=2, sticky="nsew")
            else:
                page.grid_remove()
        self.heading.configure(text=_("Choice of the destination") if name == "destination"
                               else _("Comments"))
        self.refresh()
        target: tk.Widget = self.comments if name == "comments" else self._first_choice()
        self.dialog.initial_focus = target
        target.focus_set()

    def _first_choice(self) -> tk.Widget:
        return self.radios[self.model.channel]

    def refresh(self) -> None:
        """Bring the widgets in line with the model (enabled states, counts, warnings)."""
        model = self.model
        self.inform_box.state(["!disabled"] if model.inform_possible() else ["disabled"])
        for mode, radio in self.document_radios.items():
            label = (_("All the documents") if mode is Documents.ALL
                     else _("Only the modified or added documents"))
            counted = "" if self._offline else f" ({plan_words(model.plans.get(mode))})"
            radio.configure(text=label + counted)
        folder_state = ["!disabled"] if model.channel is Channel.FOLDER else ["disabled"]
        self.folder_box.state([*folder_state, "readonly"])
        if model.app_running:
            self.app_words.configure(text=_(
                "{app} is open: close the dossier in {app} first, then passeur packs and "
                "sends it.").format(app=self.options.app_name))
            self.app_banner.pack(fill="x", before=self.destination_box)
        else:
            self._hide_banner()
        self.close_button.state(["disabled"] if self._closing_app else ["!disabled"])
        if model.email_too_large():
            self.email_offer.pack(anchor="w", pady=(8, 0))
            self.web_offer.state(["disabled"] if model.why_not(Channel.WEB) else ["!disabled"])
        else:
            self.email_offer.pack_forget()
        blocker = model.blocker()
        # The banner above already says to close the application (with its button):
        # the bottom line repeats it only on the page where the banner is not.
        on_banner_page = PAGES[model.page] == "destination"
        self.status.configure(text="" if model.app_running and on_banner_page else blocker)
        self.back_button.state(["disabled"] if model.page == 0 else ["!disabled"])
        self.next_button.state(["disabled"] if model.last_page else ["!disabled"])
        self.finish_button.state(["disabled"] if blocker or not model.last_page
                                 else ["!disabled"])
        default = self.finish_button if model.last_page else self.next_button
        for button in (self.next_button, self.finish_button):
            button.configure(default="active" if button is default else "normal")

    def _hide_banner(self) -> None:
        # A keyboard user who pressed *Fermer* must not be left without a focus when the
        # button disappears with the banner: the first destination takes it.
        focused: tk.Misc | None = None
        with contextlib.suppress(KeyError):  # a Combobox's list has no Python widget
            focused = self.root.focus_get()
        self.app_banner.pack_forget()
        if focused is self.close_button:
            self._first_choice().focus_set()

    def _changed(self) -> None:
        model = self.model
        model.choose_channel(Channel(self.vars["channel"].get()))
        self.vars["channel"].set(str(model.channel))
        model.documents = Documents(self.vars["documents"].get())
        model.objective = str(self.vars["objective"].get())
        model.inform = self.inform_var.get()
        self.refresh()

    def _fill_folders(self) -> None:
        targets = self.model.targets()
        labels = [_("USB key {name}").format(name=t.label) if t.removable else t.label
                  for t in targets]
        self.folder_box.configure(values=labels)
        self._folder_paths = [t.path for t in targets]
        if self.model.folder in self._folder_paths:
            self.folder_box.current(self._folder_paths.index(self.model.folder))

    def _folder_picked(self) -> None:
        index = self.folder_box.current()
        if 0 <= index < len(self._folder_paths):
            self.model.add_folder(self._folder_paths[index])
            self.vars["channel"].set(str(Channel.FOLDER))
        self._changed()

    def _switch(self, channel: Channel) -> None:
        self.vars["channel"].set(str(channel))
        self._changed()

    # ------------------------------------------------------------ actions

    def choose_folder(self) -> None:
        """« … »: pick the folder (opens on the key, else Downloads, else home)."""
        keys = [t.path for t in self.model.options.targets if t.removable]
        picked = look.choose_folder(self.root, _("Choose the destination folder"),
                                    self.model.folder or None, *keys)
        if picked:
            self.model.add_folder(picked)
            self.vars["channel"].set(str(Channel.FOLDER))
            self._fill_folders()
            self._changed()

    def open_help(self) -> None:
        """Aide: the documentation of sending, with the system's viewer."""
        from daemon import platform

        if self.help_file:
            platform.open_with_system(Path(self.help_file))

    def close_app(self) -> None:
        """*Fermer l'application*: asked gracefully through the service, never forced."""
        self._closing_app = True
        self.app_words.configure(text=_("Asking {app} to close…").format(
            app=self.options.app_name))
        self.live.close_app()
        self.refresh()

    def next(self) -> None:
        """Suivant."""
        self._changed()
        if self.model.next():
            self.show_page()

    def back(self) -> None:
        """Précédent (the choices stay as they are)."""
        self._take_comments()
        if self.model.back():
            self.show_page()

    def finish(self) -> None:
        """Terminer: answer with the send request when nothing stands in the way."""
        self._take_comments()
        self._changed()
        if self.model.last_page and not self.model.blocker():
            self.dialog.finish({"request": self.model.request()})

    def _take_comments(self) -> None:
        self.model.comments = self.comments.get("1.0", "end-1c")

    def _press(self, button: ttk.Button, _event: tk.Event[Any]) -> str:
        button.invoke()
        return "break"

    def _on_return(self, event: tk.Event[Any]) -> str | None:
        if isinstance(event.widget, tk.Text | ttk.Button):
            return None
        if self.model.last_page:
            self.finish()
        else:
            self.next()
        return "break"

    def _finish_key(self) -> str:
        self.finish()
        return "break"

    def _tab_out(self, event: tk.Event[Any]) -> str:
        # Tab leaves the comments (as in every form) instead of writing a tab.
        widget = event.widget.tk_focusNext()
        if widget is not None:
            widget.focus_set()
        return "break"

    # ------------------------------------------------------------ the live thread

    def _poll_live(self) -> None:
        """Take what the service said (on Tk's thread: Tk is not thread-safe)."""
        while True:
            try:
                kind, value = self.live.results.get_nowait()
            except queue.Empty:
                break
            self._take(kind, value)
        self.root.after(150, self._poll_live)

    def _take(self, kind: str, value: Any) -> None:
        model = self.model
        if kind == "plan":
            mode, plan = value
            model.plans[mode] = PlanFacts(int(plan["documents"]), int(plan["bytes"]),
                                          len(plan.get("deleted", [])),
                                          int(plan.get("packed_bytes", 0)))
        elif kind == "offline":
            # No service to ask (it could not open its channel): no counts, the send
            # itself still says everything.
            for mode in Documents:
                model.plans.pop(mode, None)
            self._offline = True
        elif kind == "options":
            options = SendOptions.from_json(value)
            model.app_running = options.app_running
            if not options.app_running:
                self._closing_app = False
            if options.targets != model.options.targets:
                model.options = options
                self._fill_folders()
        elif kind == "closed":
            self._closing_app = False
            model.app_running = bool(value)
        self.refresh()
        if kind == "closed" and value:
            self.app_words.configure(text=_(
                "{app} did not close: it may be waiting for you (a question, unsaved work)."
                " Close it yourself; passeur goes on as soon as it is closed.").format(
                    app=self.options.app_name))

    def run(self) -> dict[str, Any] | None:
        """Show the wizard until Terminer or Annuler."""
        self.live.start()
        self.root.after(150, self._poll_live)
        # Both pages in one window size: the first page's, the comments grow into it.
        self.root.update_idletasks()
        self.root.minsize(self.root.winfo_reqwidth(), self.root.winfo_reqheight())
        try:
            return self.dialog.run()
        finally:
            self.live.stop()


def run_wizard(data: dict[str, Any]) -> dict[str, Any] | None:
    """The `send` dialog kind: the wizard's answer is {"request": …} or None."""
    return SendWizard(data).run()
