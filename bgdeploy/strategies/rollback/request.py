"""A ``bgdeploy rollback`` request, checked before any connection (:func:`check_request`).

``--to REF`` is checked as a ref (a tag, branch or commit: a hostile value exits 2 here);
``--migrations N`` must be from 1 to 100 and needs a db host in the inventory; ``--reason``
must say something; unless ``--no-smoke``, the smoke tests' API token is read from
``BGDEPLOY_API_TOKEN`` now, so that a missing one stops the rollback before any host is
touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bgdeploy.core import refs
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.progress import RunObserver
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import runner

MAX_MIGRATION_STEPS = 100


@dataclass(frozen=True)
class RollbackRequest:
    """A checked ``bgdeploy rollback``: nothing has connected yet."""

    env: str
    environment: runner.Environment
    to: str | None = None
    migrations: int | None = None
    reason: str | None = None
    smoke: bool = True
    token: str = ""
    log: str = ""
    """The operator's log file of this rollback, journaled (``details.log``)."""
    observer: RunObserver | None = None
    """Told each host's steps as they start and end (the CLI's live view: a line per host)."""

    def event(self, kind: str, host: str = "", name: str = "", **values: Any) -> None:
        """Tell :attr:`observer` (when there is one) of a step of the rollback: ``plan``
        (``hosts``: each host's number of steps), ``stage``, ``op_host_start`` and
        ``op_host_end`` (``ok``), the events :class:`bgdeploy.core.progress.FleetView` reads."""
        if self.observer is not None:
            self.observer.event({"kind": kind, "t": time.time(), "host": host, "name": name,
                                 **values})  # fmt: skip

    def step_started(self, host: str, name: str) -> float:
        """A host starts step ``name`` (its line in the view; a plain line in CI); returns
        the moment, for :meth:`step_ended`."""
        self.event("op_host_start", host, name)
        self.event("step_start", host, name)
        return time.monotonic()

    def step_ended(self, host: str, name: str, ok: bool, began: float, message: str = "") -> None:
        """A host ended step ``name`` (counted on its line; failed: its problem)."""
        seconds = round(time.monotonic() - began, 2)
        self.event("step_end", host, name, ok=ok, seconds=seconds, message=message)
        self.event("op_host_end", host, name, ok=ok)

    @property
    def settings(self) -> Settings:
        return self.environment.settings[self.environment.web[0]]


def check_request(
    env: str,
    to: str | None = None,
    migrations: int | None = None,
    reason: str | None = None,
    no_smoke: bool = False,
) -> RollbackRequest:
    """Check a rollback request without connecting to any host.

    + to: the release to go back to (validated: a hostile value exits 2 here)
    + migrations: how many migrations ``migrate:rollback --step`` undoes (1 to 100)
    + reason: journaled
    + no_smoke: skip the smoke tests before a switch back

    Raises :class:`ConfigError` (exit 2) for a bad value, environment or setting.
    """
    if to is not None:
        refs.validate_ref(to)
    if migrations is not None and not 1 <= migrations <= MAX_MIGRATION_STEPS:
        raise ConfigError(f"--migrations {migrations} must be from 1 to {MAX_MIGRATION_STEPS}")
    if reason is not None and not reason.strip():
        raise ConfigError("--reason is empty: say why")
    environment = runner.check_environment(env)
    if migrations and not environment.db:
        raise ConfigError(f"--migrations needs a db host: inventories/{env}.py has none")
    token = ""
    if not no_smoke:
        token = settings_mod.secrets_from_env(("API_TOKEN",))["API_TOKEN"]
    return RollbackRequest(
        env=env,
        environment=environment,
        to=to,
        migrations=migrations,
        reason=reason.strip() if reason else None,
        smoke=not no_smoke,
        token=token,
    )
