"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import i18n
from daemon.keys import SigningKey
from daemon.web.publish import Repository
from tests.faultserver import FaultServer
from tests.helpers import Home, make_home
from tests.services import _no_service_left_behind  # noqa: F401 - autouse, for every test


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """The accountant firm's key, shared by the session (generation is cheap but noisy)."""
    return SigningKey.generate()


@pytest.fixture
def home(tmp_path: Path, signing_key: SigningKey) -> Home:
    """A configured passeur home in a temporary folder."""
    return make_home(tmp_path / "home", signing_key)


@pytest.fixture(autouse=True)
def _french() -> Iterator[None]:
    """Every test starts in French, the default language."""
    i18n.setup("fr")
    yield
    i18n.setup("fr")


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """The folder for a desktop test's screenshots (PASSEUR_SHOTS keeps them)."""
    folder = Path(os.environ.get("PASSEUR_SHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def repo(home: Home, tmp_path: Path) -> Repository:
    """The accountant's repository folder, signed with the home's trusted key."""
    return Repository(tmp_path / "repo", home.key)


@pytest.fixture
def server(repo: Repository) -> Iterator[FaultServer]:
    """A fault-injecting server on the repository."""
    repo.root.mkdir(parents=True, exist_ok=True)
    srv = FaultServer(repo.root).start()
    yield srv
    srv.stop()
