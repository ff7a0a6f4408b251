"""The composition root: builds paths, config, queue, intake and delivery once, lazily."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.config import Config, Paths, load_config

if TYPE_CHECKING:
    from daemon.bus import EventBus
    from daemon.delivery import Delivery
    from daemon.intake import Intake
    from daemon.queue import Queue

# Collaborators are imported when first built: a short command such as `passeur queue`
# then loads only what it uses (start-up time is measured in bench/startup.py).


class Context:
    """Everything a command or the service needs, built on first use."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.paths = Paths.resolve(home)

    @functools.cached_property
    def config(self) -> Config:
        """Return the validated configuration (raises ConfigError)."""
        return load_config(self.paths.config_file)

    @functools.cached_property
    def queue(self) -> Queue:
        """Return the queue, creating the folders on first use."""
        from daemon.queue import Queue

        self.paths.ensure()
        return Queue(self.paths.database, self.paths.spool)

    @functools.cached_property
    def intake(self) -> Intake:
        """Return the intake that verifies and queues received files."""
        from daemon.intake import Intake

        return Intake(self.config, self.paths, self.queue)

    @functools.cached_property
    def delivery(self) -> Delivery:
        """Return the delivery to the accounting application."""
        from daemon.delivery import Delivery

        return Delivery(self.queue, self.config.app, self.paths)

    @functools.cached_property
    def bus(self) -> EventBus:
        """Return the one event bus of this process."""
        from daemon.bus import EventBus

        return EventBus()

    def reload_config(self, config: Config | None = None) -> Config:
        """Forget the cached config and what was built from it; take `config` (read and
        checked by the caller, so that what runs is what was checked) or read it again."""
        for name in ("config", "intake", "delivery"):
            self.__dict__.pop(name, None)
        if config is not None:
            self.__dict__["config"] = config
        return self.config

    @property
    def config_path(self) -> Path:
        """Return the config file's path."""
        return self.paths.config_file
