"""The database steps of a release: snapshot, migrate, and the undo of a failed migrate::

    snapshot the database         on the db host, when migrations are pending: pg_dump -Fc,
                                  verified, with the database's fingerprint before migrating
    run migrations                php artisan migrate --force, once, from the migrate host

Migrations are all or nothing, per deploy: when ``migrate`` fails,
:func:`undo_failed_migrate` rolls back the migrations this run recorded, with the release's
own code, and compares the database's fingerprint with the one taken with the snapshot
(:mod:`bgdeploy.checks.schema`); the report and the journal say whether the database is as
it was, and what to do when it is not. A failed snapshot or migrate stops the batch: the
previous release is restored (in place) or nothing is switched (blue-green).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pyinfra import logger

from bgdeploy import commands
from bgdeploy.checks import schema
from bgdeploy.core.explain import explain
from bgdeploy.strategies.release.operations import (
    abort_batch,
    add_operation,
    begin_step,
    fail_host,
    record_step,
    run_command,
)
from bgdeploy.strategies.release.run import ReleaseRun, current, current_state


def snapshot_database(release: ReleaseRun, batch: int) -> None:
    """When migrations are pending: a verified ``pg_dump -Fc`` snapshot on the db host
    (free disk checked first, sha256 sidecar, 0600, the last ``snapshot_keep`` kept)."""
    _, name = current()
    add_operation(
        "Snapshot the database",
        _snapshot,
        lambda: (
            name == release.db_host
            and bool(release.pending)
            and release.batch_of(release.migrate_host) == batch
            and release.batch_deploys(batch)
        ),
        release=release,
        batch=batch,
    )


def snapshot_name(sha: str, now: datetime | None = None) -> str:
    """``<UTC time>-<sha12>``: the release a snapshot was taken for, sortable by time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment.strftime('%Y%m%dT%H%M%SZ')}-{sha[:12]}"


def _snapshot(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    run = release.hosts[host.name]
    settings = run.settings
    assert release.sha is not None
    name = snapshot_name(release.sha)
    command = commands.join(
        commands.snapshot_create(
            settings.backups_dir, name, settings.db_name, settings.db_port, settings.snapshot_keep
        ),
        # What the database looks like before migrating: a failed migrate must leave it so.
        commands.schema_fingerprint(settings.db_port, settings.db_name),
    )
    started = begin_step(release.hosts[host.name], "snapshot")
    ok, out, err = run_command(host, command)
    found = commands.SNAPSHOT_CREATED.search(out)
    fingerprint = schema.parse_fingerprint(out)
    if ok and found and fingerprint:
        release.snapshot_ok = True
        release.fingerprint = fingerprint
        run.outcome.result = "ok"
        release.report.snapshot = {
            "name": found.group(1),
            "path": f"{settings.backups_dir}/{found.group(1)}.dump",
            "host": host.name,
            "size": int(found.group(2)),
            "sha256": found.group(3),
        }
        record_step(run, "snapshot", started, True)
        logger.info(
            f"{host.print_prefix}snapshot {name}.dump verified ({found.group(2)} bytes); "
            f"database fingerprint {fingerprint.short} (batch {fingerprint.batch})"
        )
        release.save()
        return True
    message = f"database snapshot failed: {explain(out, err)}"
    record_step(run, "snapshot", started, False, message)
    run.outcome.result, run.outcome.failed_step = "failed", "snapshot"
    logger.error(f"{host.print_prefix}{message}")
    release.report.error = f"{message} (migrations not run)"
    abort_batch(release, batch, host.name, "snapshot")
    for name_in_batch in release.batches[batch]:
        other = release.hosts[name_in_batch].outcome
        if other.failed_step is None:
            other.failed_step, other.message = "snapshot", message
    release.save()
    return False


def run_migrations(release: ReleaseRun, batch: int) -> None:
    """``php artisan migrate --force``, once, from the designated web host, after the
    snapshot."""
    _, name = current()
    add_operation(
        "Run migrations",
        _migrate,
        lambda: (
            name == release.migrate_host
            and bool(release.pending)
            and release.snapshot_ok
            and release.changing(name, batch)
        ),
        release=release,
        batch=batch,
    )


def _migrate(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    run = release.hosts[host.name]
    started = begin_step(run, "migrate")
    ok, out, err = run_command(host, commands.in_dir(run.live_dir, commands.migrate()), pty=True)
    if ok:
        release.migrated = True
        release.report.migrated_on = host.name
        record_step(run, "migrate", started, True)
        release.save()
        return True
    cause = explain(out, err)
    failure = f"php artisan migrate failed: {cause}"
    logger.error(f"{host.print_prefix}migrate failed: {cause}")
    check = undo_failed_migrate(state, host, release)
    verdict = check.verdict()
    advice = check.advice(release.env, release.report.snapshot)
    message = "\n".join(
        line for line in (failure, verdict, advice, _after_failed_migrate(release)) if line
    )
    release.report.database = check.to_dict()
    (logger.info if check.verified else logger.error)(f"{host.print_prefix}{verdict}")
    record_step(run, "migrate", started, False, message)
    fail_host(run, "migrate", message, host)
    release.report.error = "; ".join(line for line in (failure, verdict, advice) if line).replace(
        "\n", " "
    )
    abort_batch(release, batch, host.name, "migrate")
    return False


def _after_failed_migrate(release: ReleaseRun) -> str:
    if release.strategy == "blue-green":
        return "nothing was switched: the live colour keeps serving the previous release"
    return "the previous release is being restored"


UNDO_WAIT = 30
"""Seconds the undo of a failed migrate waits for PostgreSQL to answer (it may have been the
reason ``migrate`` failed)."""


def undo_failed_migrate(state: Any, host: Any, release: ReleaseRun) -> schema.DatabaseCheck:
    """After ``php artisan migrate`` failed on ``host``: undo the migrations this run recorded
    (every batch above the one before it) with the release's own code, in the directory it was
    migrated from, then compare the database's fingerprint with the one taken before.
    Never raises; the :class:`bgdeploy.checks.schema.DatabaseCheck` says what was found."""
    run = release.hosts[host.name]
    settings = run.settings
    check = schema.DatabaseCheck(before=release.fingerprint)
    if release.fingerprint is None or release.db_host is None:
        return check
    db_host = current_state().inventory.get_host(release.db_host)
    before = release.fingerprint
    ok, out, err = run_command(
        db_host,
        commands.migrations_after(settings.db_port, settings.db_name, before.batch, UNDO_WAIT),
        timeout=UNDO_WAIT + 60,
    )
    recorded = schema.parse_rows(out) if ok else []
    if not ok:
        check.problem = f"the migrations table could not be read: {explain(out, err)}"
    elif recorded:
        logger.warning(
            f"{host.print_prefix}undoing the {len(recorded)} migration(s) this run recorded: "
            + ", ".join(recorded)
        )
        command = commands.in_dir(run.live_dir, commands.migrate_rollback(len(recorded)))
        ok, out, err = run_command(host, command, pty=True)
        if ok:
            check.undone = recorded
        else:
            check.problem = f"migrate:rollback failed: {explain(out, err)}"
    snapshot = (release.report.snapshot or {}).get("path")
    ok, out, err = run_command(
        db_host,
        commands.join(
            commands.schema_fingerprint(
                settings.db_port, settings.db_name, compare_with=snapshot, wait=UNDO_WAIT
            ),
            commands.migrations_after(settings.db_port, settings.db_name, before.batch),
        ),
        timeout=UNDO_WAIT + 120,
    )
    check.after = schema.parse_fingerprint(out)
    if check.after is None:
        problem = f"the database could not be read: {explain(out, err)}"
        check.problem = f"{check.problem}; {problem}" if check.problem else problem
        return check
    check.left = schema.parse_rows(out)
    if not check.verified:
        check.diff = schema.parse_diff(out)
    return check
