"""The set-up wizard and the *Paramètres* window: one Tk window with a page per subject.

Run as the `setup` (first run: pages in order, Previous / Next) and `settings` (the same
pages as tabs, with the current values) kinds of tray/dialogs.py, in a process of its own.
It writes through daemon.config_edit and the keyring itself; the running service notices
the changed file and applies it at once. The answer says whether it saved and which
verdicts the connection tests gave.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Any

from daemon import config_edit
from daemon.config import NOTIFICATION_EVENTS, Config, Paths, load_config
from daemon.config_edit import NOTIFICATION_LABELS
from daemon.errors import N_, ConfigError
from daemon.i18n import _
from daemon.keys import KeyFormatError, PublicKey
from tray import look
from tray.window import Answer, Dialog, message_label

SECURITY_CHOICES = ("starttls", "tls", "none")
LANGUAGES = (("", N_("The system's")), ("fr", "Français"), ("en", "English"))
FIELD_WIDTH = 46


@dataclass
class Field:
    """A labelled entry of a page."""

    var: tk.StringVar
    widget: ttk.Entry


class Page:
    """A frame of the notebook with a grid of label / entry rows."""

    def __init__(self, notebook: ttk.Notebook, title: str, intro: str = "") -> None:
        self.frame = ttk.Frame(notebook, padding=12)
        self.title = title
        self.row = 0
        self.first: tk.Widget | None = None
        # Alt+letter takes the keyboard to an entry of the page shown (the letter is
        # underlined in its label).
        self.accels: dict[str, ttk.Entry] = {}
        self.button_accels: dict[str, ttk.Button] = {}
        notebook.add(self.frame, text=title)
        if intro:
            self.text(intro)

    def text(self, text: str) -> ttk.Label:
        """Add a paragraph across the page."""
        label = message_label(self.frame, text, 520)
        label.grid(row=self.row, column=0, columnspan=3, sticky="w", pady=(0, 8))
        self.row += 1
        return label

    def entry(self, label: str, value: str = "", show: str = "",
              browse: Callable[[tk.StringVar], None] | None = None, accel: str = "") -> Field:
        """Add a labelled entry (and a Browse… button when `browse` is given)."""
        ttk.Label(self.frame, text=label, underline=label.lower().find(accel) if accel else -1
                  ).grid(row=self.row, column=0, sticky="w", padx=(0, 8), pady=2)
        var = tk.StringVar(self.frame, value)
        widget = ttk.Entry(self.frame, textvariable=var, width=FIELD_WIDTH, show=show)
        widget.grid(row=self.row, column=1, sticky="we", pady=2)
        if browse is not None:
            ttk.Button(self.frame, text=_("Browse…"),
                       command=lambda: browse(var)).grid(row=self.row, column=2, padx=(6, 0))
        self.row += 1
        self.first = self.first or widget
        if accel:
            self.accels[accel] = widget
        return Field(var, widget)

    def check(self, label: str, value: bool) -> tk.BooleanVar:
        """Add a check box."""
        var = tk.BooleanVar(self.frame, value)
        box = ttk.Checkbutton(self.frame, text=label, variable=var)
        box.grid(row=self.row, column=0, columnspan=3, sticky="w", pady=2)
        self.row += 1
        self.first = self.first or box
        return var

    def choice(self, label: str, values: tuple[str, ...], value: str) -> ttk.Combobox:
        """Add a labelled drop-down list."""
        ttk.Label(self.frame, text=label).grid(row=self.row, column=0, sticky="w", padx=(0, 8),
                                               pady=2)
        box = ttk.Combobox(self.frame, values=values, state="readonly", width=FIELD_WIDTH - 3)
        box.set(value)
        box.grid(row=self.row, column=1, sticky="w", pady=2)
        self.row += 1
        self.first = self.first or box
        return box

    def button(self, label: str, command: Callable[[], None], accel: str = "") -> ttk.Button:
        """Add a button in the entries' column (Alt+`accel` presses it on its page)."""
        button = ttk.Button(self.frame, text=label, command=command,
                            underline=label.lower().find(accel) if accel else -1)
        button.grid(row=self.row, column=1, sticky="w", pady=(6, 2))
        self.row += 1
        if accel:
            self.button_accels[accel] = button
        return button

    def verdict(self) -> ttk.Label:
        """Add the label that shows a test's verdict."""
        # In points, like every window's text (tray/look.py): GDK_SCALE=2 wraps alike.
        label = ttk.Label(self.frame, text="", wraplength=look.px(self.frame, 420),
                          justify="left")
        label.grid(row=self.row, column=1, columnspan=2, sticky="w", pady=(2, 0))
        self.row += 1
        return label




def choose_file(var: tk.StringVar) -> None:
    """Let the user pick a file into `var`."""
    chosen = filedialog.askopenfilename(initialdir=str(Path(var.get()).parent)
                                        if var.get() else str(Path.home()))
    if chosen:
        var.set(chosen)


class SettingsWindow(Dialog):
    """Every setting a farmer needs, without a text editor."""

    def __init__(self, data: dict[str, Any], first_run: bool) -> None:
        super().__init__(_("Set up passeur") if first_run else _("Settings") + " — passeur")
        self.data = data
        self.first_run = first_run
        self.config_path = Path(data["config"])
        self.paths = Paths.resolve(data.get("home") or None)
        self.config = self._current_config()
        self.verdicts: list[str] = []
        self.status = ttk.Label(self.frame, text="", foreground="#c92a2a",
                                wraplength=look.px(self.frame, 560),
                                justify="left")
        self.notebook = ttk.Notebook(self.frame)
        self.notebook.enable_traversal()  # Ctrl+Tab and Ctrl+Shift+Tab change pages
        self.pages: list[Page] = []
        self._dossier_page()
        self._accountant_page()
        self._email_page()
        self._app_page()
        self._sources_page()
        self._notifications_page()
        self._bottom_buttons()
        self.status.pack(side="bottom", fill="x", pady=(8, 0))
        self.notebook.pack(fill="both", expand=True)
        self.notebook.bind("<<NotebookTabChanged>>", lambda _event: self._focus_page())
        self.root.bind("<Alt-t>", lambda _event: self.test_connection())
        self.root.bind("<Alt-KeyPress>", self._accelerator, add="+")
        self.root.bind("<Control-s>", lambda _event: self.save())
        if data.get("invitation"):
            self.load_invitation(Path(data["invitation"]))
        self.initial_focus = self._first_empty_field()

    # ------------------------------------------------------------ reading

    def _current_config(self) -> Config:
        self._config_problem = ""
        try:
            return load_config(self.config_path)
        except ConfigError as exc:
            # The window still opens, with the defaults, and says why.
            self._config_problem = exc.message()
            return Config(path=self.config_path)

    # ------------------------------------------------------------ pages

    def _page(self, title: str, intro: str = "") -> Page:
        page = Page(self.notebook, title, intro)
        self.pages.append(page)
        return page

    def _dossier_page(self) -> None:
        page = self._page(_("Dossier"), _(
            "The dossier of the farm kept on this computer, as your accountant numbers it."))
        dossier = self.config.dossiers[0] if self.config.dossiers else None
        self.number = page.entry(_("Dossier number"), dossier.number if dossier else "")
        self.name = page.entry(_("Dossier name"), dossier.name if dossier else "")
        self.folder = page.entry(_("Local folder of the dossier"),
                                 str(dossier.folder) if dossier and dossier.folder else "",
                                 browse=self.choose_folder)
        if len(self.config.dossiers) > 1:
            page.text(_("Other dossiers: {numbers}").format(numbers=", ".join(
                d.number for d in self.config.dossiers[1:])))

    def _accountant_page(self) -> None:
        page = self._page(_("Accountant"), _(
            "Open the invitation file your accountant gave you: it fills in everything but "
            "the password. Or type what your accountant tells you."))
        # "i" is in the label in both languages (Ouvrir un fichier d'invitation…).
        page.button(_("Open an invitation file…"), self.choose_invitation, accel="i")
        trusted = self.config.trusted_keys[0] if self.config.trusted_keys else None
        self.label = page.entry(_("Accountant's firm"), trusted.label if trusted else "")
        self.url = page.entry(_("Server address"), self.config.web.url)
        self.user = page.entry(_("User name"), self._stored_user())
        self.password = page.entry(_("Password"), show="•", accel="p")
        self.key = page.entry(_("Firm's key"), trusted.key.text if trusted else "",
                              browse=self.key_from_file)
        self.fingerprint = ttk.Label(page.frame, text="", font="TkFixedFont")
        self.fingerprint.grid(row=page.row, column=1, sticky="w")
        page.row += 1
        self.key.var.trace_add("write", lambda *_args: self._show_fingerprint())
        self._show_fingerprint()
        self.accountant_email = page.entry(_("Accountant's e-mail"),
                                           self.config.email.accountant)
        self.ca_bundle = page.entry(_("Server certificates (optional)"),
                                    str(self.config.web.ca_bundle or ""), browse=choose_file)
        self.test_button = page.button(_("Test the connection"), self.test_connection)
        self.verdict = page.verdict()

    def _email_page(self) -> None:
        email = self.config.email
        page = self._page(_("E-mail"), _(
            "To send the dossier by e-mail: your e-mail provider's sending server (SMTP). "
            "The password is kept in the system keyring."))
        self.smtp_host = page.entry(_("Sending server (SMTP)"), email.smtp_host)
        self.smtp_port = page.entry(_("Port (empty: the usual one)"),
                                    str(email.smtp_port or ""))
        self.security = page.choice(_("Security"), SECURITY_CHOICES, email.security)
        self.smtp_user = page.entry(_("User name"), email.user)
        self.smtp_password = page.entry(_("Password"), show="•", accel="p")
        self.sender = page.entry(_("Your address"), email.sender)
        # "e" is in the label in both languages (Envoyer un message d'essai).
        page.button(_("Send a test message"), self.test_email, accel="e")
        self.email_verdict = page.verdict()

    def _app_page(self) -> None:
        app = self.config.app
        page = self._page(_("Accounting application"), _(
            "The application that integrates the updates, and the folder it takes them "
            "from."))
        self.app_name = page.entry(_("Name"), app.name)
        self.process_names = page.entry(_("Program names (comma-separated)"),
                                        ", ".join(app.process_names))
        self.command = page.entry(_("Command to start it"), " ".join(app.command))
        self.inbox = page.entry(_("Its inbox folder"), str(app.inbox or ""),
                                browse=self.choose_folder)
        page.button(_("Find it on this computer"), self.find_app)
        self.app_verdict = page.verdict()

    def _sources_page(self) -> None:
        page = self._page(_("Sources"), _(
            "Where passeur looks for your accountant's updates, besides the server."))
        self.poll = page.entry(_("Look at the server every (minutes)"),
                               str(self.config.web.poll_minutes), accel="m")
        self.removable = page.check(_("USB keys: take the updates of a key plugged in"),
                                    self.config.removable)
        ttk.Label(page.frame, text=_("Watched folders")).grid(row=page.row, column=0,
                                                               sticky="nw", pady=2)
        self.folders = tk.Listbox(page.frame, height=4, width=FIELD_WIDTH)
        for folder in self.config.watched_folders:
            self.folders.insert("end", str(folder))
        self.folders.grid(row=page.row, column=1, sticky="we", pady=2)
        ttk.Button(page.frame, text=_("Remove"), command=self.remove_folder).grid(
            row=page.row, column=2, sticky="n", padx=(6, 0))
        page.row += 1
        self.new_folder = page.entry(_("Add a folder"), "", browse=self._browse_new_folder,
                                     accel="o")
        self.new_folder.widget.bind("<Return>", lambda _event: self.add_folder())

    def _notifications_page(self) -> None:
        page = self._page(_("Notifications"), _("Which events show a notification:"))
        self.notify = {kind: page.check(_(NOTIFICATION_LABELS[kind]),
                                        self.config.notifications.get(kind, True))
                       for kind in NOTIFICATION_EVENTS}
        names = tuple(_(label) if code == "" else label for code, label in LANGUAGES)
        current = next((i for i, (code, _l) in enumerate(LANGUAGES)
                        if code == (self.config.language or "")), 0)
        self.language = page.choice(_("Language"), names, names[current])
        self.autostart_was = self._autostart_enabled()
        self.autostart = page.check(_("Start passeur when I log in"), self.autostart_was)

    def _bottom_buttons(self) -> None:
        if self.first_run:
            self.buttons((_("Previous"), lambda: self.turn(-1)),
                         (_("Next"), lambda: self.turn(1)),
                         (_("Save"), self.save), (_("Cancel"), self.cancel), default=1)
        else:
            self.buttons((_("Open the configuration file"), self.open_file),
                         (_("Save"), self.save), (_("Cancel"), self.cancel), default=1)
        if self._config_problem:
            self.status.configure(text=self._config_problem)

    # ------------------------------------------------------------ helpers

    def _stored_user(self) -> str:
        if not self.config.dossiers:
            return ""
        from daemon.web.credentials import CredentialStore
        from daemon.web.failures import WebError

        try:
            credential = CredentialStore().get(self.config.dossiers[0].number)
        except WebError:
            return ""
        return credential.user if credential else ""

    def _autostart_enabled(self) -> bool:
        from daemon.platform import autostart

        try:
            return bool(autostart.summary(self.paths).get("enabled"))
        except Exception:  # start at login unknown here: shown off, changed only if asked
            return False

    def _show_fingerprint(self) -> None:
        try:
            key = PublicKey.from_text(self.key.var.get())
        except KeyFormatError:
            self.fingerprint.configure(text="")
            return
        from daemon.setup.invitation import phone_fingerprint

        self.fingerprint.configure(text=_("Fingerprint: {fingerprint}").format(
            fingerprint=phone_fingerprint(key)))

    def _first_empty_field(self) -> tk.Widget | None:
        if not self.first_run:
            return self.pages[0].first
        for field in (self.number, self.name, self.url, self.user, self.password):
            if not field.var.get():
                _select_page(self.notebook, self.pages[0 if field in (self.number, self.name)
                                                else 1].frame)
                return field.widget
        return self.pages[0].first

    def _accelerator(self, event: tk.Event[Any]) -> None:
        page = self.pages[_current_page(self.notebook)]
        button = page.button_accels.get(event.keysym.lower())
        if button is not None:
            button.invoke()
            return
        widget = page.accels.get(event.keysym.lower())
        if widget is not None:
            widget.focus_set()
            widget.select_range(0, "end")  # what is typed replaces the value
            widget.icursor("end")

    def _focus_page(self) -> None:
        index = _current_page(self.notebook)
        first = self.pages[index].first
        if first is not None:
            first.focus_set()

    def turn(self, step: int) -> None:
        """Go to the previous or next page."""
        index = _current_page(self.notebook) + step
        if 0 <= index < len(self.pages):
            _select_page(self.notebook, index)

    def say(self, text: str) -> None:
        """Show a problem under the pages."""
        self.status.configure(text=text)

    # ------------------------------------------------------------ actions

    def choose_invitation(self) -> None:
        """Pick an invitation file and fill the pages from it."""
        chosen = filedialog.askopenfilename(
            parent=self.root, title=_("Open an invitation file"),
            initialdir=str(Path.home()),
            filetypes=[(_("passeur invitations"), "*.passeur"), (_("All files"), "*")])
        if chosen:
            self.load_invitation(Path(chosen))

    def load_invitation(self, path: Path) -> None:
        """Fill the pages from a verified invitation, or say why it is refused."""
        from daemon.setup.invitation import InvitationError, read_invitation

        try:
            invitation = read_invitation(path)
        except InvitationError as exc:
            self.say(str(exc))
            return
        self.number.var.set(invitation.dossier)
        self.name.var.set(invitation.dossier_name)
        self.url.var.set(invitation.url)
        self.user.var.set(invitation.user)
        self.key.var.set(invitation.firm_key)
        self.label.var.set(invitation.firm_label)
        self.accountant_email.var.set(invitation.accountant_email)
        self.say("")
        _select_page(self.notebook, self.pages[1].frame)

    def key_from_file(self, var: tk.StringVar) -> None:
        """Read the firm's key from a file (an invitation or a text file with ed25519:…)."""
        chosen = filedialog.askopenfilename(parent=self.root, initialdir=str(Path.home()))
        if not chosen:
            return
        if chosen.endswith(".passeur"):
            self.load_invitation(Path(chosen))
            return
        try:
            text = Path(chosen).read_text("utf-8", errors="replace")
        except OSError as exc:
            self.say(_("{file}: cannot be read: {reason}").format(file=chosen,
                                                                   reason=exc.strerror))
            return
        found = next((word for word in text.split() if word.startswith("ed25519:")), "")
        if not found:
            self.say(_("{file}: no key such as ed25519:… in it").format(file=chosen))
            return
        var.set(found)

    def test_connection(self) -> None:
        """« Tester la connexion » with the values typed, before anything is saved."""
        from daemon.setup.connection import check_connection
        from daemon.web.credentials import BASIC, Credential

        number, url = self.number.var.get().strip(), self.url.var.get().strip()
        if not number or not url:
            self.verdict.configure(text=_("Give the dossier number and the server address "
                                          "first."))
            return
        try:
            key: PublicKey | None = PublicKey.from_text(self.key.var.get())
        except KeyFormatError:
            key = None
        password = self.password.var.get() or self._stored_password(number)
        credential = Credential(BASIC, password, self.user.var.get().strip()) if password \
            else None
        self.verdict.configure(text=_("Testing the connection…"))
        self.root.update_idletasks()
        ca = self.ca_bundle.var.get().strip()
        verdict = check_connection(url, number, credential, key, Path(ca) if ca else None)
        self.verdicts.append(str(verdict.outcome))
        self.verdict.configure(text=verdict.message,
                               foreground="#2b8a3e" if verdict.ok else "#c92a2a")

    def _stored_password(self, number: str) -> str:
        from daemon.web.credentials import CredentialStore
        from daemon.web.failures import WebError

        try:
            credential = CredentialStore().get(number)
        except WebError:
            return ""
        return credential.secret if credential else ""

    def test_email(self) -> None:
        """Send a test message to the farmer's own address with the values typed."""
        from daemon.send.base import SendError
        from daemon.send.email import Mailer, SmtpPasswords, trial_message

        typed = self.smtp_password.var.get()

        class Typed(SmtpPasswords):
            def get(self, user: str, host: str) -> str | None:
                return typed or super().get(user, host)

        try:
            # The file's other e-mail keys (its CA certificates, its timeout) apply too.
            settings = replace(
                self.config.email, smtp_host=self.smtp_host.var.get().strip(),
                smtp_port=int(self.smtp_port.var.get() or 0),
                security=self.security.get(), user=self.smtp_user.var.get().strip(),
                sender=self.sender.var.get().strip(),
                accountant=self.accountant_email.var.get().strip())
            mailer = Mailer(settings, Typed())
            mailer.check_configured()
            mailer.deliver(trial_message(settings))
        except ValueError:
            self.email_verdict.configure(text=_("The port is a whole number"),
                                         foreground="#c92a2a")
            return
        except SendError as error:
            self.email_verdict.configure(text=error.text, foreground="#c92a2a")
            return
        self.email_verdict.configure(text=_("A test message was sent to {address}.").format(
            address=settings.sender), foreground="#2b8a3e")

    def find_app(self) -> None:
        """Fill the application page from what is found on this computer."""
        from daemon.setup.appfind import find_app

        found = find_app()
        if not found.found:
            self.app_verdict.configure(text=_(
                "Not found on this computer: choose its inbox folder yourself."))
            return
        if found.process_names:
            self.process_names.var.set(", ".join(found.process_names))
            self.command.var.set(" ".join(found.command))
        if found.inbox:
            self.inbox.var.set(found.inbox)
        self.app_verdict.configure(text=_("Found: {what}").format(
            what=" ".join(found.command) or found.inbox))

    def choose_folder(self, var: tk.StringVar) -> None:
        """Let the user pick a folder into `var` (the chooser every window uses)."""
        chosen = look.choose_folder(self.root, _("Choose a folder"), var.get())
        if chosen:
            var.set(chosen)

    def _browse_new_folder(self, var: tk.StringVar) -> None:
        self.choose_folder(var)
        self.add_folder()

    def add_folder(self) -> None:
        """Add the folder typed or chosen to the watched folders."""
        text = self.new_folder.var.get().strip()
        if text and text not in self.folders.get(0, "end"):
            self.folders.insert("end", text)
        self.new_folder.var.set("")

    def remove_folder(self) -> None:
        """Stop watching the selected folder."""
        for index in reversed(self.folders.curselection()):  # type: ignore[no-untyped-call]
            self.folders.delete(index)

    def open_file(self) -> None:
        """« Ouvrir le fichier de configuration », for experts."""
        from daemon import platform

        config_edit.ensure_config(self.config_path)
        if not platform.open_with_system(self.config_path):
            self.say(_("No program opens this file here; open it with a text editor:\n"
                       "{path}").format(path=self.config_path))

    # ------------------------------------------------------------ saving

    def save(self) -> None:
        """Write everything; a refused value is named and nothing more is written."""
        from daemon.web.failures import WebError

        try:
            self._write()
        except ValueError as exc:
            self.say(str(exc))
            return
        except ConfigError as exc:
            self.say(exc.message())
            return
        except WebError as error:
            self.say(error.message())
            return
        except OSError as exc:
            self.say(_("{path}: cannot be written: {reason}").format(
                path=self.config_path, reason=exc.strerror or exc))
            return
        self.finish({"saved": True, "verdicts": self.verdicts})

    def cancel(self) -> None:
        """Close without saving (the tests' verdicts are still told)."""
        self.finish({"saved": False, "verdicts": self.verdicts})

    def _write(self) -> None:
        path = self.config_path
        number = self.number.var.get().strip()
        minutes = _whole_number(self.poll.var.get(), _("Look at the server every (minutes)"))
        port = _whole_number(self.smtp_port.var.get() or "0", _("Port"))
        if number:
            self._write_dossier(number)
        config_edit.set_web(path, url=self.url.var.get().strip(), poll_minutes=minutes,
                            ca_bundle=self.ca_bundle.var.get().strip())
        self._write_email(port)
        config_edit.set_app(
            path, name=self.app_name.var.get().strip() or "Isacompta",
            process_names=_words(self.process_names.var.get().replace(",", " ")),
            command=_words(self.command.var.get()), inbox=self.inbox.var.get().strip())
        self.add_folder()
        config_edit.set_sources(path, removable=self.removable.get(), folders_enabled=True,
                                watch=list(self.folders.get(0, "end")))
        config_edit.set_notifications(path, {k: v.get() for k, v in self.notify.items()})
        language = LANGUAGES[self.language.current()][0] if self.language.current() >= 0 \
            else ""
        config_edit.set_language(path, language)
        self._write_autostart()

    def _write_dossier(self, number: str) -> None:
        from daemon.setup.plan import SetupPlan, apply_plan

        key_text = self.key.var.get().strip()
        if not key_text:
            config_edit.add_dossier(self.config_path, number, self.name.var.get().strip(),
                                    self.folder.var.get().strip())
            return
        try:
            key = PublicKey.from_text(key_text)
        except KeyFormatError:
            raise ValueError(_("The firm's key is not a key such as ed25519:…")) from None
        plan = SetupPlan(number, self.name.var.get().strip(), self.url.var.get().strip(),
                         self.user.var.get().strip(), key, self.label.var.get().strip(),
                         self.accountant_email.var.get().strip(),
                         self.folder.var.get().strip(), self.ca_bundle.var.get().strip())
        apply_plan(self.config_path, plan, self.password.var.get() or None)

    def _write_email(self, port: int) -> None:
        from daemon.send.email import SmtpPasswords

        host, user = self.smtp_host.var.get().strip(), self.smtp_user.var.get().strip()
        config_edit.set_email(self.config_path, smtp_host=host, smtp_port=port,
                              security=self.security.get(), user=user,
                              sender=self.sender.var.get().strip(),
                              accountant=self.accountant_email.var.get().strip())
        if self.smtp_password.var.get() and host and user:
            SmtpPasswords().set(user, host, self.smtp_password.var.get())

    def _write_autostart(self) -> None:
        wanted = self.autostart.get()
        if wanted == self.autostart_was:
            return
        from daemon.platform import autostart

        mechanisms = autostart.mechanisms_for_this_system(self.paths)
        if wanted:
            home = autostart.relocated_home(None)
            autostart.enable(self.paths, mechanisms, autostart.launch_command(home, False),
                             headless=False)
        else:
            autostart.disable(self.paths, mechanisms)


def _current_page(notebook: ttk.Notebook) -> int:
    """Return the index of the page shown."""
    return int(notebook.index(notebook.select()))  # type: ignore[no-untyped-call]


def _select_page(notebook: ttk.Notebook, page: object) -> None:
    """Show a page (by index or frame)."""
    notebook.select(page)  # type: ignore[no-untyped-call]


def _whole_number(text: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(_("{field}: a whole number is expected").format(field=what)) from None


def _words(text: str) -> list[str]:
    return text.split()


def setup(data: dict[str, Any]) -> Answer:
    """The first-run wizard (also opened by a double-click on an invitation file)."""
    return SettingsWindow(data, first_run=True).run()


def settings(data: dict[str, Any]) -> Answer:
    """*Paramètres*: the same pages with the current values."""
    return SettingsWindow(data, first_run=False).run()
