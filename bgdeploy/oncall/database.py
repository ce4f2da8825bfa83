"""The app's migrations as Laravel sees them: ``bgdeploy db ENV status``.

``php artisan migrate:status`` runs once, on the migrate host (the first web host unless
``migrate_host``), in the live colour, as the php-fpm user: the live release's migrations,
each ran (in which batch) or pending. Read only; no lock is needed.

.. code::

    $ bgdeploy db sandbox status
    migration                                                          status   batch
    2014_10_12_000000_create_users_table                               ran      1
    ...
    2025_07_01_000000_add_passport_country_to_visa_applications_table  PENDING  -
    web1 (live colour): 7 ran in 2 batches (the last, batch 2: 1 migration); 1 pending
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bgdeploy import commands
from bgdeploy.checks import schema
from bgdeploy.core.errors import OperationFailed
from bgdeploy.fleet import fabric_backend, remote, runner


@dataclass(frozen=True)
class MigrationStatus:
    """What ``migrate:status`` said on ``host``: each migration of the live release."""

    host: str
    migrations: tuple[schema.MigrationState, ...]

    @property
    def pending(self) -> list[str]:
        return [m.name for m in self.migrations if not m.ran]

    @property
    def batches(self) -> dict[int, list[str]]:
        """Each batch and the migrations it ran, in order."""
        found: dict[int, list[str]] = {}
        for migration in self.migrations:
            if migration.ran and migration.batch is not None:
                found.setdefault(migration.batch, []).append(migration.name)
        return dict(sorted(found.items()))

    def summary(self) -> str:
        """``web1 (live colour): 7 ran in 2 batches (the last, batch 2: 1 migration); 1 pending``"""
        batches = self.batches
        ran = sum(len(names) for names in batches.values())
        text = f"{self.host} (live colour): {ran} ran in {len(batches)} batch" + (
            "" if len(batches) == 1 else "es"
        )
        if batches:
            last = max(batches)
            count = len(batches[last])
            text += f" (the last, batch {last}: {count} migration{'' if count == 1 else 's'})"
        return text + f"; {len(self.pending)} pending"

    def format_table(self) -> str:
        width = max([len("migration"), *(len(m.name) for m in self.migrations)])
        lines = [f"{'migration':<{width}}  {'status':<7}  batch"]
        for m in self.migrations:
            state = "ran" if m.ran else "PENDING"
            lines.append(f"{m.name:<{width}}  {state:<7}  {m.batch if m.batch else '-'}")
        return "\n".join([*lines, self.summary()])

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "migrations": [asdict(m) for m in self.migrations],
            "pending": self.pending,
            "batches": {str(batch): names for batch, names in self.batches.items()},
        }


def status(env: str) -> MigrationStatus:
    """``migrate:status`` on the migrate host of ``env``, in the live colour. Raises
    :class:`OperationFailed` (exit 1) when it cannot be read, naming the host and the cause."""
    environment = runner.check_environment(env)
    host = environment.migrate_host
    settings = environment.settings[host]
    (target,) = [t for t in remote.targets(env, ("web",), environment.inventory) if t.name == host]
    found: list[schema.MigrationState] = []

    def task(where: fabric_backend.Host) -> str:
        result = where.check(
            commands.live_artisan(settings, "migrate:status"), "migrate:status", sudo=True
        )
        found.extend(schema.parse_migrate_status(result.stdout))
        return f"{len(found)} migrations"

    (result,) = fabric_backend.run_tasks([target], task)
    if not result.ok:
        raise OperationFailed(f"{host}: migrate:status failed: {result.error}")
    if not found:
        raise OperationFailed(f"{host}: migrate:status listed no migration (is the app deployed?)")
    return MigrationStatus(host, tuple(found))
