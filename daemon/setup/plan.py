"""What setting up writes, in one place for the `setup` command and the window: the
password into the keyring, then the dossier, the firm's key and the address into the
config file (which the running service reads again by itself)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon import config_edit
from daemon.config import Config, Paths
from daemon.keys import PublicKey
from daemon.setup.invitation import Invitation
from daemon.web.credentials import BASIC, Credential, CredentialStore


@dataclass(frozen=True)
class SetupPlan:
    """The values of one dossier's set-up, from an invitation or typed in."""

    dossier: str
    name: str
    url: str
    user: str
    firm_key: PublicKey
    label: str = ""
    email: str = ""
    folder: str = ""
    ca_bundle: str = ""

    @classmethod
    def from_invitation(cls, invitation: Invitation, folder: str = "",
                        ca_bundle: str = "") -> SetupPlan:
        """Return the plan an invitation describes."""
        return cls(invitation.dossier, invitation.dossier_name, invitation.url,
                   invitation.user, invitation.public_key, invitation.firm_label,
                   invitation.accountant_email, folder, ca_bundle)

    def credential(self, password: str) -> Credential:
        """Return the web credential of this plan's user with `password`."""
        return Credential(BASIC, password, self.user)


def apply_plan(config_path: Path, plan: SetupPlan, password: str | None,
               store: CredentialStore | None = None) -> Config:
    """Keep the password in the keyring (when given) and write the config; return it.

    The keyring comes first: once the config names the dossier, the service polls it.
    """
    if password is not None:
        (store or CredentialStore()).set(plan.dossier, plan.credential(password))
    config_edit.add_trusted_key(config_path, plan.firm_key, plan.label)
    config_edit.set_web(config_path, url=plan.url, ca_bundle=plan.ca_bundle or None)
    if plan.email:
        config_edit.set_email(config_path, accountant=plan.email)
    return config_edit.add_dossier(config_path, plan.dossier, plan.name, plan.folder)


def relocated_home(paths: Paths) -> str:
    """Return the home folder when passeur's files are relocated into one (--home,
    $PASSEUR_HOME), else "" (the platform's own folders)."""
    root = paths.config_file.parent
    return str(root) if paths == Paths.resolve(root) else ""


def window_data(paths: Paths, invitation: Path | None = None) -> dict[str, str]:
    """Return what the set-up and settings windows are opened with."""
    return {"config": str(paths.config_file), "home": relocated_home(paths),
            "invitation": str(invitation.absolute()) if invitation else ""}
