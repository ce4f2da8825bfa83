"""``bgdeploy rollback ENV --migrations N``: undo the last N migrations, after a snapshot.

First a verified database snapshot on the db host (as a release takes one), then
``php artisan migrate:rollback --step=N --force`` once, on the designated web host
(``migrate_host``, or the first reachable one), in its live colour: the code of the release
being left, the one that has those migrations. This runs before the switch back or the
in-place restore; when nothing is rolled back (every host serves the target already), the
migrations are not touched either.

The report says which migrations were undone (newest first), their batches and the schema
fingerprint before and after. When ``migrate:rollback`` fails the rollback stops there,
naming what was undone before it failed and the snapshot to restore
(``bgdeploy snapshot ENV restore NAME``).
"""

from __future__ import annotations

from dataclasses import asdict

from bgdeploy import commands
from bgdeploy.checks import schema
from bgdeploy.core.errors import OperationFailed
from bgdeploy.core.progress import Progress
from bgdeploy.fleet import fabric_backend, remote
from bgdeploy.fleet.colours import HostColours
from bgdeploy.fleet.executor import UNLIMITED_SECONDS, CommandResult
from bgdeploy.strategies.rollback.hosts import Hosts
from bgdeploy.strategies.rollback.record import RollbackReport
from bgdeploy.strategies.rollback.request import RollbackRequest


def roll_back(
    request: RollbackRequest,
    hosts: Hosts,
    colours: dict[str, HostColours],
    report: RollbackReport,
    progress: Progress,
) -> None:
    """A verified snapshot on the db host, then ``migrate:rollback --step=N --force`` once,
    on the designated web host, in its live colour (the code that has those migrations).
    Fills ``report.snapshot``, ``report.database`` and a note; raises
    :class:`OperationFailed` when the snapshot or the migrations failed."""
    from bgdeploy.strategies.release import snapshot_name

    assert request.migrations is not None
    environment = request.environment
    settings = request.settings
    migrate_host = settings.migrate_host if settings.migrate_host in hosts.names else None
    migrate_host = migrate_host or next(n for n in environment.web if n in hosts.names)
    facts = colours[migrate_host]
    left = facts.heads.get(facts.current, "")
    db_target = remote.targets(request.env, ("db",), environment.inventory)[0]
    db = environment.settings[db_target.name]
    name = snapshot_name(left or "0" * 12)
    steps = request.migrations
    state = commands.join(
        commands.schema_fingerprint(db.db_port, db.db_name),
        commands.migrations_after(db.db_port, db.db_name, 0),
    )
    command = commands.join(
        commands.snapshot_create(db.backups_dir, name, db.db_name, db.db_port, db.snapshot_keep),
        state,
    )
    progress(f"{db_target.name}: snapshot {name}, then migrate:rollback --step={steps}")
    done = on_db(db_target, command, "snapshot failed, no migration was rolled back")
    found = commands.SNAPSHOT_CREATED.search(done.stdout)
    before = schema.parse_fingerprint(done.stdout)
    if not done.ok or not found or before is None:
        raise OperationFailed(
            f"{db_target.name}: snapshot failed, no migration was rolled back: {done.exit_text()}"
        )
    recorded = schema.parse_batches(done.stdout)
    report.snapshot = {
        "name": found.group(1),
        "path": f"{db.backups_dir}/{found.group(1)}.dump",
        "host": db_target.name,
        "size": int(found.group(2)),
        "sha256": found.group(3),
        "migrated_on": migrate_host,
    }
    directory = f"{settings.app_root}/{facts.current}"
    progress(f"{migrate_host}: php artisan migrate:rollback --step={steps} --force")
    ok, out, err = hosts.command(
        migrate_host, commands.in_dir(directory, commands.migrate_rollback(steps)), pty=True
    )
    after_run = on_db(db_target, state, "the database could not be read after the rollback")
    after = schema.parse_fingerprint(after_run.stdout)
    remaining = schema.parse_batches(after_run.stdout)
    undone = [(m, b) for m, b in recorded.items() if m not in remaining]
    report.database = {
        "before": asdict(before),
        "after": asdict(after) if after else None,
        "undone": [m for m, _ in undone],
        "batches": sorted({b for _, b in undone}, reverse=True),
    }
    kept = f"snapshot {found.group(1)} is kept at {db_target.name}:{report.snapshot['path']}"
    if not ok:
        raise OperationFailed(
            f"{migrate_host}: migrate:rollback failed: {(err or out).strip()[-400:]}\n"
            f"undone before it failed: {', '.join(m for m, _ in undone) or 'nothing'}; {kept} "
            f"(`bgdeploy snapshot {request.env} restore {found.group(1)}`)"
        )
    batches = ", ".join(str(b) for b in report.database["batches"]) or "none"
    report.notes.append(
        f"{len(undone)} migration(s) rolled back on {migrate_host} (batch {batches}): "
        f"{', '.join(m for m, _ in undone) or 'none'}; after snapshot {found.group(1)} "
        f"({db_target.name}, verified); database fingerprint {before.short} -> "
        f"{after.short if after else 'unreadable'}"
    )


def on_db(target: remote.Target, command: str, what: str) -> CommandResult:
    """Run ``command`` on the db host (its own connection, no time limit: a snapshot takes
    what it takes); OperationFailed saying ``what`` when the host was not reached."""
    done = fabric_backend.PerCommandFleet([target]).run(
        target.name, command, timeout=UNLIMITED_SECONDS
    )
    if done.error is not None or done.exit_status is None:
        raise OperationFailed(f"{target.name}: {what}: {done.stderr}")
    return done
