"""Database snapshots on the db host, and a reset of the database for non-production.

``bgdeploy snapshot ENV create|list|verify ID|restore ID`` works on the snapshots in
``backups_dir`` (``/var/backups/bideshgomon``) on the inventory's db host: ``<name>.dump``
(``pg_dump -Fc``) and its ``<name>.dump.sha256`` sidecar, the very files a release takes
before it migrates (:func:`bgdeploy.commands.snapshot_create`).

- ``create`` takes a verified snapshot now (``<UTC time>-manual`` unless named).
- ``list`` shows them, newest first.
- ``verify`` checks the sha256 against the sidecar and that ``pg_restore`` reads the dump
  (its table of contents and the whole of it).
- ``restore`` verifies the snapshot, takes the deploy lock on every web host (no deploy can
  run meanwhile), restores into a scratch database, and only when that succeeded puts every
  web host in maintenance mode (``php artisan down``), swaps the scratch database in under
  the live name, and brings every host back up (``php artisan up``, workers restarted), also
  when something failed. The database it replaced is kept as ``<db_name>_before_restore``
  until the next restore. A snapshot that fails verification, or that ``pg_restore`` cannot
  restore, leaves the live database untouched.

``bgdeploy db ENV fresh [--seed]`` runs ``php artisan migrate:fresh`` only where the settings
say ``production = False`` (staging, the sandbox); elsewhere it is refused (exit 3) before any
host is reached.

Each action is journaled on every web host (``history`` and ``postmortem`` show it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bgdeploy import commands
from bgdeploy.core import journal
from bgdeploy.core.errors import ConfigError, OperationFailed, PolicyRefusal
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import fabric_backend, fleetlock, remote, runner
from bgdeploy.fleet.executor import CommandResult

CREATED = commands.SNAPSHOT_CREATED
VERIFIED = re.compile(r"^bgdeploy-verify: (\S+) ok (\d+) ([0-9a-f]{64})$", re.MULTILINE)
SCRATCH_SUFFIX = "_restore"
BEFORE_SUFFIX = "_before_restore"
RESTORE_TIMEOUT = 6 * 3600.0

Confirm = Callable[[str], Any]


@dataclass(frozen=True)
class Snapshot:
    """One snapshot on the db host."""

    name: str
    size: int
    taken: str
    sidecar: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "taken": self.taken, "sha256": self.sidecar}


@dataclass
class Place:
    """Where an environment's snapshots live: its db host and its web hosts, checked."""

    env: str
    db: remote.Target
    web: list[remote.Target]
    settings: dict[str, Settings]

    @property
    def db_settings(self) -> Settings:
        return self.settings[self.db.name]


def place(env: str) -> Place:
    """Load and validate ``inventories/ENV.py`` (connecting to nothing): its first db host
    holds the snapshots."""
    environment = runner.check_environment(env)
    if not environment.db:
        raise ConfigError(f"inventories/{env}.py has no host in the group 'db'")
    targets = remote.targets(env, ("web", "db"))
    by_name = {target.name: target for target in targets}
    web = [by_name[name] for name in environment.web]
    return Place(env, by_name[environment.db[0]], web, environment.settings)


def default_name(now: datetime | None = None) -> str:
    """``<UTC time>-manual``: sorts with the releases' ``<UTC time>-<sha12>`` snapshots."""
    return f"{(now or datetime.now(UTC)).astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-manual"


def database_names(settings: Settings) -> tuple[str, str]:
    """The scratch database a restore fills, and the name the replaced database keeps."""
    scratch, before = settings.db_name + SCRATCH_SUFFIX, settings.db_name + BEFORE_SUFFIX
    for name in (scratch, before):
        if len(name) > 63:
            raise ConfigError(
                f"db_name {settings.db_name!r} is too long to restore a snapshot beside it "
                f"({name!r} exceeds PostgreSQL's 63 characters)"
            )
    return scratch, before


def parse_list(output: str) -> list[Snapshot]:
    """Read :func:`bgdeploy.commands.snapshot_list` output."""
    found = []
    for line in output.splitlines():
        if not line.startswith(commands.SNAPSHOT_LIST_PREFIX):
            continue
        fields = line.removeprefix(commands.SNAPSHOT_LIST_PREFIX).split("|")
        if len(fields) == 4 and fields[1].isdigit():
            found.append(Snapshot(fields[0], int(fields[1]), fields[2], fields[3] == "yes"))
    return found


def format_list(snapshots: Sequence[Snapshot]) -> str:
    """The snapshots as a table, newest first."""
    if not snapshots:
        return "no snapshots"
    width = max(len("snapshot"), *(len(s.name) for s in snapshots))
    lines = [f"{'snapshot':<{width}}  {'bytes':>12}  {'taken (UTC)':<20}  sha256"]
    for s in snapshots:
        sidecar = "yes" if s.sidecar else "MISSING"
        lines.append(f"{s.name:<{width}}  {s.size:>12}  {s.taken:<20}  {sidecar}")
    return "\n".join(lines)


# Running on the hosts ---------------------------------------------------------------------


def _run(
    host: fabric_backend.Host, command: str, timeout: float = fabric_backend.TASK_COMMAND_TIMEOUT
) -> CommandResult:
    """Run ``command`` as root; a non-zero exit raises
    :class:`bgdeploy.core.errors.CommandFailed`, an unreachable host its typed error."""
    return host.check(command, sudo=True, timeout=timeout)


def _on_db(where: Place, task: Callable[[fabric_backend.Host, Settings], str]) -> remote.HostResult:
    """Run ``task(host, settings)`` on the db host."""
    return fabric_backend.run_tasks([where.db], lambda h: task(h, where.settings[h.name]))[0]


def _journal(
    where: Place, event: str, result: str, message: str, details: dict[str, Any]
) -> list[remote.HostResult]:
    """Append one entry to every web host's journal."""

    def task(host: fabric_backend.Host) -> str:
        target = host.target
        settings = where.settings[target.name]
        entry = journal.new_entry(
            event, host=target.name, env=where.env, result=result, message=message,
            details=details,
        )  # fmt: skip
        _run(host, commands.journal_append(settings, entry))
        return "journaled"

    return fabric_backend.run_tasks(where.web, task)


def _failed(results: Sequence[remote.HostResult]) -> list[remote.HostResult]:
    return [result for result in results if not result.ok]


# create, list, verify -----------------------------------------------------------------------


def create(env: str, name: str | None = None) -> list[remote.HostResult]:
    """Take a verified snapshot on the db host now (the release's own snapshot command)."""
    snapshot = commands.snapshot_id(name) if name else default_name()
    where = place(env)
    found: dict[str, Any] = {}

    def task(host: fabric_backend.Host, settings: Settings) -> str:
        command = commands.snapshot_create(
            settings.backups_dir, snapshot, settings.db_name, settings.db_port,
            settings.snapshot_keep,
        )  # fmt: skip
        match = CREATED.search(_run(host, command).stdout)
        if not match:
            raise OperationFailed(f"the snapshot command did not confirm {snapshot}")
        found.update(size=int(match.group(2)), sha256=match.group(3))
        return f"created {snapshot}.dump ({match.group(2)} bytes, sha256 {match.group(3)[:12]})"

    result = _on_db(where, task)
    details = {"action": "create", "name": snapshot, "db_host": where.db.name, **found}
    path = f"{where.db.name}:{where.db_settings.backups_dir}/{snapshot}.dump"
    message = path if result.ok else f"snapshot {snapshot} failed: {result.error}"
    logged = _journal(where, "snapshot", "ok" if result.ok else "failed", message, details)
    return [result, *_failed(logged)]


def list_snapshots(env: str) -> list[Snapshot]:
    """The snapshots on the db host, newest first."""
    where = place(env)
    output: list[str] = []

    def task(host: fabric_backend.Host, settings: Settings) -> str:
        output.append(_run(host, commands.snapshot_list(settings.backups_dir)).stdout)
        return "listed"

    result = _on_db(where, task)
    if not result.ok:
        raise OperationFailed(f"{where.db.name}: snapshots not listed: {result.error}")
    return parse_list(output[0])


def _verify(host: fabric_backend.Host, settings: Settings, name: str) -> str:
    result = _run(host, commands.snapshot_verify(settings.backups_dir, name))
    match = VERIFIED.search(result.stdout)
    if not match:
        raise OperationFailed(f"the verify command did not confirm {name}")
    return f"{name}.dump verified ({match.group(2)} bytes, sha256 {match.group(3)[:12]})"


def verify(env: str, name: str) -> list[remote.HostResult]:
    """Verify one snapshot on the db host (sha256, ``pg_restore --list``, a full read)."""
    snapshot = commands.snapshot_id(name)
    where = place(env)
    result = _on_db(where, lambda host, settings: _verify(host, settings, snapshot))
    details = {"action": "verify", "name": snapshot, "db_host": where.db.name}
    message = result.detail if result.ok else f"verify {snapshot}: {result.error}"
    logged = _journal(where, "snapshot", "ok" if result.ok else "failed", message, details)
    return [result, *_failed(logged)]


# restore ----------------------------------------------------------------------------------


@dataclass
class Restore:
    """What a restore did: the db host's and each web host's result."""

    name: str
    db: remote.HostResult | None = None
    web: dict[str, remote.HostResult] = field(default_factory=dict)
    swapped: bool = False
    error: str = ""
    log: str = ""
    """The operator's log file of this restore, journaled (``details.log``)."""

    @property
    def results(self) -> list[remote.HostResult]:
        return [r for r in (self.db, *self.web.values()) if r is not None]

    @property
    def ok(self) -> bool:
        return self.swapped and not self.error and all(r.ok for r in self.results)


def restore(
    env: str, name: str, confirm: Confirm, progress: Progress = quiet, log: str = ""
) -> Restore:
    """Restore snapshot ``name`` into ``env``'s database (see the module's description).

    ``confirm(question)`` is asked once the snapshot is verified; it stops the restore by
    raising (the CLI's prompt, or nothing with ``--yes``). Raises :class:`OperationFailed`
    when the snapshot fails verification (nothing touched), :class:`bgdeploy.core.errors.LockHeld`
    (exit 3) when a deploy holds the lock on any web host (taken after the question, released
    however the restore ends). Once started, a failure is in the returned :class:`Restore`
    (``error``; each host's result): the live database is then untouched.
    """
    snapshot = commands.snapshot_id(name)
    where = place(env)
    db = where.db_settings
    scratch, before = database_names(db)
    progress(f"{where.db.name}: verifying {snapshot}")
    checked = _on_db(where, lambda c, s: _verify(c, s, snapshot))
    if not checked.ok:
        _journal_restore(where, snapshot, "refused", f"not restored: {checked.error}", before)
        raise OperationFailed(
            f"{where.db.name}: snapshot {snapshot} failed verification ({checked.error}): "
            "not restored, the live database is untouched"
        )
    confirm(
        f"Restore {snapshot} into {env}'s database {db.db_name} on {where.db.name}? Every web "
        "host goes into maintenance mode for the swap, and what was written since the "
        f"snapshot is replaced (the current database is kept as {before})."
    )
    report = Restore(snapshot, log=log)
    paths = {target.name: where.settings[target.name].lock_path for target in where.web}
    fleet = fabric_backend.PerCommandFleet(where.web)
    with fleetlock.hold(
        fleet, paths, env, f"snapshot-restore {snapshot}", what="restored", progress=progress
    ):
        _restore_locked(where, report, scratch, before, progress)
    return report


def _restore_locked(
    where: Place, report: Restore, scratch: str, before: str, progress: Progress
) -> None:
    """The restore, under the deploy lock of every web host (:func:`restore`)."""
    snapshot, db = report.name, where.db_settings
    down: list[str] = []
    try:
        progress(f"{where.db.name}: restoring {snapshot} into {scratch}")
        report.db = _on_db(where, lambda c, s: _fill_scratch(c, s, snapshot, scratch, before))
        if not report.db.ok:
            raise OperationFailed(
                f"{where.db.name}: {snapshot} could not be restored ({report.db.error}): "
                "the live database is untouched"
            )
        progress("every web host: maintenance mode (php artisan down)")
        _maintenance_down(where, report, down)
        progress(f"{where.db.name}: swapping {scratch} in as {db.db_name}")
        report.db = _on_db(where, lambda c, s: _swap(c, s, scratch, before))
        report.swapped = report.db.ok
        if not report.swapped:
            raise OperationFailed(
                f"{where.db.name}: the swap failed ({report.db.error}): the live database "
                "is untouched"
            )
        report.db.detail = f"restored {snapshot}; the replaced database is kept as {before}"
    except OperationFailed as error:
        report.error = str(error)
    finally:
        if not report.swapped and report.db is not None:
            _on_db(where, lambda c, s: _run(c, commands.drop_database(s.db_port, scratch)))
        progress("every web host: back up (php artisan up), workers restarted")
        _finish(where, report, down, before)


def _fill_scratch(
    host: fabric_backend.Host, settings: Settings, snapshot: str, scratch: str, before: str
) -> str:
    command = commands.snapshot_restore_scratch(
        settings.backups_dir, snapshot, settings.db_port, scratch, settings.db_user, before
    )
    started = time.monotonic()
    _run(host, command, timeout=RESTORE_TIMEOUT)
    return f"{snapshot} restored into {scratch} in {time.monotonic() - started:.1f} s"


def _swap(host: fabric_backend.Host, settings: Settings, scratch: str, before: str) -> str:
    _run(host, commands.database_swap(settings.db_port, settings.db_name, scratch, before))
    return "swapped"


def _maintenance_down(where: Place, report: Restore, down: list[str]) -> None:
    """``php artisan down`` on every web host; ``down`` collects the hosts this restore put in
    maintenance mode (those already in it are left as they were)."""

    def task(host: fabric_backend.Host) -> str:
        target = host.target
        out = _run(host, commands.maintenance_down(where.settings[target.name])).stdout
        if "bgdeploy-maintenance: down" in out:
            down.append(target.name)
            return "maintenance mode"
        return "was already in maintenance mode (left so)"

    results = fabric_backend.run_tasks(where.web, task)
    report.web = {result.host: result for result in results}
    failed = _failed(results)
    if failed:
        raise OperationFailed(
            "maintenance mode failed on "
            + "; ".join(f"{r.host}: {r.error}" for r in failed)
            + ": not swapped, the live database is untouched"
        )


def _finish(where: Place, report: Restore, down: list[str], before: str) -> None:
    """On every web host, whatever happened: ``php artisan up`` where this restore put the
    app down, the queue workers restarted after a swap, the journal written (the lock is
    released next, by :func:`bgdeploy.fleet.fleetlock.hold`)."""
    result = "ok" if report.swapped else "failed"
    if report.swapped:
        message = f"restored {report.name}; the replaced database is kept as {before}"
    else:
        message = f"{report.name} not restored: {report.error or 'interrupted'}"
    entry_details = _restore_details(where, report.name, before)
    if report.log:
        entry_details["log"] = report.log

    def task(host: fabric_backend.Host) -> str:
        target = host.target
        settings = where.settings[target.name]
        done = []
        try:
            if target.name in down:
                _run(host, commands.maintenance_up(settings))
                done.append("up again")
            if report.swapped:  # their connections to the replaced database were ended
                _run(host, commands.restart_workers(settings))
                done.append("workers restarted")
        finally:
            entry = journal.new_entry(
                "snapshot_restore", host=target.name, env=where.env, result=result,
                message=message, details=entry_details,
            )  # fmt: skip
            _run(host, commands.journal_append(settings, entry))
        before_text = report.web[target.name].summary() if target.name in report.web else ""
        return "; ".join(x for x in (before_text, *done) if x)

    for outcome in fabric_backend.run_tasks(where.web, task):
        earlier = report.web.get(outcome.host)
        if earlier is not None and not earlier.ok:
            continue  # keep the first failure of that host
        report.web[outcome.host] = outcome


def _restore_details(where: Place, snapshot: str, before: str) -> dict[str, Any]:
    return {"name": snapshot, "db_host": where.db.name, "replaced_kept_as": before}


def _journal_restore(where: Place, snapshot: str, result: str, message: str, before: str) -> None:
    _journal(where, "snapshot_restore", result, message, _restore_details(where, snapshot, before))


# migrate:fresh (environments marked production = False only) -------------------------------


def check_fresh_allowed(env: str) -> runner.Environment:
    """The environment, when every host's settings say ``production = False``; otherwise a
    :class:`PolicyRefusal` (exit 3). Connects to nothing."""
    environment = runner.check_environment(env)
    refuse_production(environment.settings.values(), env)
    return environment


def refuse_production(settings: Iterable[Settings], env: str) -> None:
    """Refuse ``migrate:fresh`` when any host of ``env`` is marked ``production = True``."""
    if any(s.production for s in settings):
        raise PolicyRefusal(
            f"{env} is marked production (group_data: production = True): migrate:fresh drops "
            "every table and runs only where production = False (staging, the sandbox)"
        )


def migrate_fresh(
    environment: runner.Environment, seed: bool, progress: Progress = quiet
) -> list[remote.HostResult]:
    """``php artisan migrate:fresh --force [--seed]`` once, from the migrate host (the first
    web host unless ``migrate_host``), journaled there, under the deploy lock of every web
    host (:func:`bgdeploy.fleet.fleetlock.hold`: exit 3 while a deploy holds it)."""
    host = environment.migrate_host
    web = remote.targets(environment.name, ("web",), environment.inventory)
    target = [t for t in web if t.name == host]
    settings = environment.settings[host]
    refuse_production([settings], environment.name)

    def task(host: fabric_backend.Host) -> str:
        target = host.target
        started = time.monotonic()
        outcome, what = "failed", "migrate:fresh" + (" --seed" if seed else "")
        try:
            _run(host, commands.migrate_fresh(settings, seed), timeout=RESTORE_TIMEOUT)
            outcome = "ok"
        finally:
            entry = journal.new_entry(
                "migrate", host=target.name, env=environment.name, result=outcome,
                message=what, details={"action": "migrate:fresh", "seed": seed},
                steps=[{"name": what, "seconds": round(time.monotonic() - started, 3),
                        "result": outcome}],
            )  # fmt: skip
            _run(host, commands.journal_append(settings, entry))
        return f"{what}: every table dropped and migrated again" + (", seeded" if seed else "")

    paths = {t.name: environment.settings[t.name].lock_path for t in web}
    with fleetlock.hold(
        fabric_backend.PerCommandFleet(web),
        paths,
        environment.name,
        "migrate:fresh",
        progress=progress,
    ):
        return fabric_backend.run_tasks(target, task)
