"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import i18n
from daemon.keys import SigningKey
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
