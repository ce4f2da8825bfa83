"""``bgdeploy db ENV rollback --step N | --batch N``: the database's own rollback, the code
left as it is.

The runbook's ``php artisan migrate:rollback --batch=5``, made safe the way ``rollback
--migrations`` is (:mod:`bgdeploy.strategies.rollback.migrations`): under the deploy lock of
every web host, after a verified snapshot on the db host, ``migrate:rollback --step=K`` once
on the migrate host in its live colour, with the schema fingerprint before and after and the
migrations undone, by batch, in the report. ``--step N`` undoes the last N migrations;
``--batch N`` undoes batch N and every later one (never a batch in the middle, under later
ones that may depend on it): K is counted in the ``migrations`` table first. The live code
is not changed: its migrations that were undone are pending afterwards (``bgdeploy db ENV
status``), and the next deploy runs them again. Journaled on the migrate host (``migrate``,
action ``rollback``).
"""

from __future__ import annotations

from bgdeploy import commands
from bgdeploy.checks import schema
from bgdeploy.core import journal
from bgdeploy.core.errors import ConfigError, OperationFailed, PolicyRefusal
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.fleet import fleetlock, remote, runner
from bgdeploy.fleet.colours import read_colours
from bgdeploy.strategies.rollback import migrations
from bgdeploy.strategies.rollback.hosts import Hosts
from bgdeploy.strategies.rollback.record import RollbackReport
from bgdeploy.strategies.rollback.request import MAX_MIGRATION_STEPS, RollbackRequest


def steps_for(batches: dict[str, int], step: int | None, batch: int | None) -> int:
    """How many migrations ``--step`` or ``--batch`` means, given the ``migrations`` table
    (name -> batch). Exactly one of them; ``--batch N``: every migration of batch N or later.
    Raises :class:`ConfigError` (exit 2) for a bad option, :class:`OperationFailed` (exit 1)
    when there is nothing to undo."""
    check(step, batch)
    if step is not None:
        if step > len(batches):
            raise OperationFailed(f"--step {step}: the database records {len(batches)} migrations")
        return step
    assert batch is not None
    count = sum(1 for b in batches.values() if b >= batch)
    if count == 0:
        last = max(batches.values(), default=0)
        raise OperationFailed(f"no migration in batch {batch} or later (the last batch is {last})")
    if count > MAX_MIGRATION_STEPS:
        raise ConfigError(
            f"--batch {batch} means {count} migrations: at most {MAX_MIGRATION_STEPS}"
        )
    return count


def check(step: int | None, batch: int | None) -> None:
    """The options alone, before connecting (:func:`steps_for` with nothing recorded yet)."""
    if (step is None) == (batch is None):
        raise ConfigError("give --step N or --batch N (one of them)")
    if step is not None and not 1 <= step <= MAX_MIGRATION_STEPS:
        raise ConfigError(f"--step {step} must be from 1 to {MAX_MIGRATION_STEPS}")
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch {batch} must be 1 or more")


def database_only(
    env: str,
    step: int | None = None,
    batch: int | None = None,
    reason: str | None = None,
    progress: Progress = quiet,
) -> RollbackReport:
    """Undo migrations on ``env``'s database, the code left as it is (see the module)."""
    check(step, batch)
    environment = runner.check_environment(env)
    if not environment.db:
        raise ConfigError(f"db rollback needs a db host: inventories/{env}.py has none")
    hosts = Hosts(remote.targets(env, ("web",), environment.inventory))
    try:
        hosts.open_all()
        if hosts.refused_keys or hosts.down:
            each = "; ".join(
                f"{n}: {why}" for n, why in {**hosts.down, **hosts.refused_keys}.items()
            )
            raise PolicyRefusal(f"db rollback refused, nothing was run: {each}")
        paths = {name: environment.settings[name].lock_path for name in hosts.names}
        with fleetlock.hold(hosts, paths, env, "db rollback", progress=progress):
            return _locked(env, environment, hosts, step, batch, reason, progress)
    finally:
        hosts.close()


def _locked(
    env: str,
    environment: runner.Environment,
    hosts: Hosts,
    step: int | None,
    batch: int | None,
    reason: str | None,
    progress: Progress,
) -> RollbackReport:
    settings = environment.settings[environment.web[0]]
    db_target = remote.targets(env, ("db",), environment.inventory)[0]
    db = environment.settings[db_target.name]
    table = migrations.on_db(
        db_target, commands.migrations_after(db.db_port, db.db_name, 0), "cannot read migrations"
    )
    steps = steps_for(schema.parse_batches(table.stdout), step, batch)
    colours = read_colours(hosts, settings)
    request = RollbackRequest(env, environment, migrations=steps, reason=reason)
    host = environment.migrate_host
    report = RollbackReport(env, strategy="database only", colour=colours[host].current)
    report.target = colours[host].heads.get(colours[host].current, "")
    outcome = "failed"
    try:
        migrations.roll_back(request, hosts, colours, report, progress)
        outcome = "ok"
    finally:
        undone = report.database.get("undone", [])
        entry = journal.new_entry(
            "migrate", host=host, env=env, result=outcome, reason=reason,
            message=f"db rollback: {len(undone)} migration(s) undone",
            details={"action": "rollback", "steps": steps, "batch": batch,
                     "undone": undone, "snapshot": report.snapshot.get("name")},
        )  # fmt: skip
        append = journal.journal_append_command(environment.settings[host].journal_path, entry)
        hosts.command(host, append)
    report.results = [remote.HostResult(host, True, detail=report.notes[-1])]
    return report
