"""Setting up from the firm's invitation file: `passeur invite` on the firm's side,
`passeur setup FILE` on the farmer's, against a real nginx with auth_basic."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.keys import SigningKey
from daemon.setup.connection import Outcome, check_connection
from daemon.setup.invitation import InvitationError, read_invitation
from daemon.web.credentials import BASIC, Credential
from daemon.web.publish import Repository
from tests.faultserver import keyring_env
from tests.helpers import DOSSIER, DOSSIER_NAME, Home
from tests.nginx import Nginx, make_tls

USER, PASSWORD = "gaec", "Mot-de-passe-9731"


def run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run the real `passeur` command."""
    return subprocess.run([sys.executable, "-m", "daemon.cli", *args], env=env, text=True,
                          input=stdin, capture_output=True, timeout=60, check=False)


@pytest.fixture
def firm(tmp_path: Path, home: Home) -> Iterator[tuple[Nginx, Path]]:
    """The firm's nginx (auth_basic for the farmer's dossier) and its key file."""
    server = Nginx(tmp_path / "nginx")
    server.add_user(DOSSIER, USER, PASSWORD)
    server.start()
    key_file = tmp_path / "firm.pem"
    home.key.save(key_file)
    yield server, key_file
    server.stop()


@pytest.fixture
def farmer(tmp_path: Path, home: Home) -> tuple[Path, dict[str, str]]:
    """A fresh farmer's home (no config yet) and its environment, with a file keyring
    outside the home."""
    root = tmp_path / "farmer"
    env = home.env | {"PASSEUR_HOME": str(root)} | keyring_env(tmp_path / "keyring")
    return root, env


def invite(env: dict[str, str], key_file: Path, url: str, out: Path,
           dossier: str = DOSSIER) -> Path:
    """Write the invitation with the real `passeur invite`."""
    out.mkdir(parents=True, exist_ok=True)
    result = run(env, "invite", dossier, "--name", DOSSIER_NAME, "--url", url, "--user", USER,
                 "--key", str(key_file), "--label", "Cabinet Dupont", "--email",
                 "comptable@cabinet.example", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def test_the_invitation_sets_passeur_up_and_the_first_poll_finds_the_updates(
        tmp_path: Path, home: Home, firm: tuple[Nginx, Path],
        farmer: tuple[Path, dict[str, str]]) -> None:
    server, key_file = firm
    root, env = farmer
    Repository(server.repo, home.key).publish(home.update(1))
    Repository(server.repo, home.key).publish(home.update(2))
    invitation = invite(env, key_file, server.base_url, tmp_path / "mail")
    assert invitation.name == "8502182.passeur"
    assert PASSWORD not in invitation.read_text()

    result = run(env, "setup", str(invitation), "--password-stdin", "--yes",
                 stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Cabinet Dupont" in result.stdout
    assert home.key.public.fingerprint.upper() in result.stdout
    assert "2 mises à jour disponibles" in result.stdout

    config = load_config(root / "config.toml")
    assert [(d.number, d.name) for d in config.dossiers] == [(DOSSIER, DOSSIER_NAME)]
    assert [t.key for t in config.trusted_keys] == [home.key.public]
    assert config.web.url == server.base_url
    assert config.email.accountant == "comptable@cabinet.example"
    for path in root.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path

    received = run(env, "receive", "--json")
    assert received.returncode == 0, received.stderr
    queue = json.loads(run(env, "queue", "--json").stdout)
    assert sorted(item["name"] for item in queue) == sorted(
        p.name for p in home.outbox.glob("*.wwz"))


def test_a_refused_password_changes_nothing(tmp_path: Path, home: Home,
                                            firm: tuple[Nginx, Path],
                                            farmer: tuple[Path, dict[str, str]]) -> None:
    server, key_file = firm
    root, env = farmer
    Repository(server.repo, home.key).refresh(DOSSIER)
    invitation = invite(env, key_file, server.base_url, tmp_path / "mail")
    result = run(env, "setup", str(invitation), "--password-stdin", "--yes",
                 stdin="wrong\n")
    assert result.returncode == 1
    assert "refusé le nom d'utilisateur ou le mot de passe" in result.stderr
    assert not (root / "config.toml").exists()


def test_a_tampered_invitation_is_refused(tmp_path: Path, home: Home,
                                          farmer: tuple[Path, dict[str, str]]) -> None:
    root, env = farmer
    key_file = tmp_path / "firm.pem"
    home.key.save(key_file)
    invitation = invite(env, key_file, "https://echanges.cabinet.example/passeur/",
                        tmp_path / "mail")
    envelope = json.loads(invitation.read_text())
    envelope["signed"] = envelope["signed"].replace("echanges.cabinet.example",
                                                    "echanges.pirate.example")
    invitation.write_text(json.dumps(envelope))
    result = run(env, "setup", str(invitation), "--yes", "--no-check", stdin="x\n")
    assert result.returncode == 1
    assert str(invitation) in result.stderr
    assert "signature n'est pas valable" in result.stderr
    assert not (root / "config.toml").exists()


def test_an_invitation_signed_by_another_key_than_it_names_is_refused(
        tmp_path: Path, home: Home) -> None:
    key_file = tmp_path / "firm.pem"
    home.key.save(key_file)
    env = home.env
    invitation = invite(env, key_file, "https://echanges.cabinet.example/passeur/",
                        tmp_path / "mail")
    # A forger signs with their own key, but leaves the firm's key named inside.
    from daemon.setup.invitation import write_invitation

    envelope = json.loads(invitation.read_text())
    forger = SigningKey.generate()
    forged_folder = tmp_path / "forged"
    forged_folder.mkdir()
    forged = write_invitation(forged_folder, forger, read_invitation(invitation))
    with pytest.raises(InvitationError, match="une autre clé que la clé du cabinet"):
        read_invitation(forged)
    # And the same with the signature of the forger but the key id of the firm.
    data = json.loads(forged.read_text())
    data["key_id"] = envelope["key_id"]
    forged.write_text(json.dumps(data))
    with pytest.raises(InvitationError, match="pas valable : le fichier a été modifié"):
        read_invitation(forged)


def test_setup_with_flags_for_a_scripted_install(home: Home, firm: tuple[Nginx, Path],
                                                 farmer: tuple[Path, dict[str, str]]) -> None:
    server, _key_file = firm
    root, env = farmer
    Repository(server.repo, home.key).publish(home.update(1))
    result = run(env, "setup", "--dossier", DOSSIER, "--name", DOSSIER_NAME, "--url",
                 server.base_url, "--user", USER, "--firm-key", home.key.public.text,
                 "--label", "Cabinet Dupont", "--password-stdin", "--yes",
                 stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert "1 mise à jour disponible" in result.stdout
    assert load_config(root / "config.toml").dossier(DOSSIER) is not None


# ---------------------------------------------------------------- the connection test


def test_connection_verdicts_against_nginx(tmp_path: Path, home: Home) -> None:
    tls = make_tls(tmp_path / "tls")
    server = Nginx(tmp_path / "nginx", tls=tls)
    server.add_user(DOSSIER, USER, PASSWORD)
    server.add_user("9100001", USER, PASSWORD)  # an account, but nothing published for it
    server.start()
    try:
        Repository(server.repo, home.key).publish(home.update(1))
        good = Credential(BASIC, PASSWORD, USER)
        key = home.key.public
        ca = tls.ca_cert

        verdict = check_connection(server.base_url, DOSSIER, good, key, ca)
        assert (verdict.outcome, verdict.updates) == (Outcome.GOOD, 1)
        assert verdict.message == "Tout va bien : 1 mise à jour disponible pour le dossier 8502182."
        wrong = Credential(BASIC, "wrong", USER)
        assert check_connection(server.base_url, DOSSIER, wrong, key,
                                ca).outcome is Outcome.CREDENTIALS_REFUSED
        assert check_connection(server.base_url, DOSSIER, good, key,
                                None).outcome is Outcome.CERTIFICATE_NOT_TRUSTED
        assert check_connection(server.base_url, "9100001", good, key,
                                ca).outcome is Outcome.DOSSIER_UNKNOWN
        other = SigningKey.generate().public
        assert check_connection(server.base_url, DOSSIER, good, other,
                                ca).outcome is Outcome.WRONG_KEY
        assert check_connection("https://passeur-absent.invalid/passeur/", DOSSIER, good, key,
                                ca).outcome is Outcome.ADDRESS_NOT_FOUND
    finally:
        server.stop()
