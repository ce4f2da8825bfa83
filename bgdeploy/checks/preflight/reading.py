"""``bgdeploy preflight ENV --ref REF``: every host read over Fabric, and the whole checklist.

:func:`check_request` checks what was asked before any connection: the strategy, the ref's
syntax, the inventory and its settings (exit 2 on bad input, such as a hostile ``--ref``).
:func:`run` then reads, in parallel:

- each web host: the deploy lock, its colours (:func:`bgdeploy.fleet.colours.parse_facts`:
  the live commit), and :func:`bgdeploy.commands.release_facts`, which fetches the
  repository into the colour's ``.git`` as a deploy does (the only change it makes; with
  ``code_delivery = "push"`` nothing is fetched: :mod:`bgdeploy.fleet.delivery`);
- the db host: the applied migrations and the room for a snapshot;

and, on the migrate host, in a second connection, what depends on the commit: the ref (resolved
on the host, or in the operator's cache clone and the commit sent, when pushing), main, the
feature flags, the pending migrations and the scanner's verdict. A host that cannot be
reached is a ``reach`` line (exit 1); the hosts that were read are still checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bgdeploy import commands
from bgdeploy.checks import migrations
from bgdeploy.checks.preflight import database, servers
from bgdeploy.checks.preflight.commit import release_advice, resolve_ref, split_files
from bgdeploy.checks.preflight.report import FAIL, ORDER, PASS, Check, Checklist
from bgdeploy.core import lock, refs, windows
from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.render import IDLE_INCLUDE, LIVE_INCLUDE
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import colours, delivery, fabric_backend, remote, runner
from bgdeploy.fleet.executor import CommandResult

STRATEGIES = ("in-place", "blue-green")


def _run(
    via: fabric_backend.Host, command: str, timeout: float = 300, stdin: str | None = None
) -> CommandResult:
    """Run a read on a host through the executor (unpacks as ok, stdout, stderr); a host that
    cannot be reached raises its typed error, and the checklist says it was not reached."""
    return via.run(command, timeout=timeout, stdin=stdin).reached()


def _last_line(*texts: str) -> str:
    for text in texts:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        if lines:
            return lines[-1].strip()
    return ""


@dataclass
class _WebFacts:
    holder: lock.LockInfo | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    colour_dir: str = ""
    live_sha: str = ""
    error: str = ""
    colours: colours.HostColours | None = None


def _read_web(
    via: fabric_backend.Host, settings: Settings, idle: bool, found: _WebFacts, name: str
) -> str:
    ok, out, _ = _run(via, commands.lock_read(settings.lock_path))
    found.holder = lock.parse_lock(out) if ok else None
    _, out, _ = _run(via, commands.colour_facts(settings.app_root, LIVE_INCLUDE, IDLE_INCLUDE))
    live = colours.parse_facts(name, out)
    found.colours = live
    found.live_sha = live.heads.get(live.current, "")
    code = delivery.Delivery(settings)
    ok, out, err = _run(via, code.facts_command(settings.app_root, idle, servers.SECRET_NAMES))
    found.facts = servers.parse_facts(out)
    colour = found.facts.get("colour", "")
    found.colour_dir = f"{settings.app_root}/{colour}"
    if colour not in ("blue", "green"):
        found.error = (
            f"{settings.app_root}/current does not point at blue or green "
            f"({colour or 'missing'}): run `bgdeploy provision {settings.env}` first"
        )
    else:
        found.error = code.fetch_error(found.facts, "", _last_line(err, out))
    return "read"


@dataclass
class _DbFacts:
    applied: list[str] = field(default_factory=list)
    space: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _read_db(via: fabric_backend.Host, settings: Settings, found: _DbFacts) -> str:
    ok, out, err = _run(via, commands.applied_migrations(settings.db_port, settings.db_name))
    if not ok:
        found.error = f"cannot read the applied migrations: {_last_line(err, out)}"
    found.applied = [line.strip() for line in out.splitlines() if line.strip()]
    _, out, _ = _run(
        via,
        commands.snapshot_space(settings.backups_dir, settings.db_name, settings.db_port),
    )
    found.space = servers.parse_facts(out)
    return "read"


@dataclass(frozen=True)
class Request:
    """A checked ``bgdeploy preflight``."""

    env: str
    ref: str
    strategy: str = "in-place"
    allow_destructive: bool = False


def check_request(
    env: str, ref: str | None, strategy: str = "in-place", allow_destructive: bool = False
) -> tuple[Request, runner.Environment]:
    """Check the request without connecting: the ref's syntax, the inventory and settings."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if ref is not None:
        refs.validate_ref(ref)
    environment = runner.check_environment(env, {"ref": ref} if ref is not None else None)
    settings = environment.settings[environment.web[0]]
    chosen = refs.validate_ref(ref if ref is not None else settings.ref)
    return Request(env, chosen, strategy, allow_destructive), environment


def run(
    request: Request, environment: runner.Environment, now: datetime | None = None
) -> Checklist:
    """Read every host and return the checklist (see the module's table)."""
    first = environment.settings[environment.web[0]]
    migrate_host = first.migrate_host if first.migrate_host in environment.web else None
    migrate_host = migrate_host or environment.web[0]
    checklist = Checklist(request.env, request.ref, request.strategy)
    moment = now or datetime.now(UTC)
    checklist.checks.append(servers.check_window(windows.decide(first.window, moment)))

    idle = request.strategy == "blue-green"
    web_facts = {name: _WebFacts() for name in environment.web}
    db_name = environment.db[0] if environment.db else None
    db_facts = _DbFacts()
    targets = remote.targets(request.env, ("web", "db"))
    wanted = [t for t in targets if t.name in environment.web or t.name == db_name]

    def read(via: fabric_backend.Host) -> str:
        target = via.target
        settings = environment.settings[target.name]
        if target.name in web_facts:
            _read_web(via, settings, idle, web_facts[target.name], target.name)
        if target.name == db_name:
            _read_db(via, settings, db_facts)
        return "read"

    for result in fabric_backend.run_tasks(wanted, read):
        if not result.ok:
            checklist.unreachable.append(result.host)
            checklist.checks.append(Check("reach", FAIL, result.error, result.host))
    _web_checks(checklist, environment, web_facts)
    checklist.colours = {n: f.colours for n, f in web_facts.items() if f.colours is not None}
    migrate = web_facts[migrate_host]
    if migrate_host not in checklist.unreachable and not migrate.error:
        _commit_checks(checklist, request, environment, migrate_host, migrate, db_facts, moment)
    checklist.checks.sort(key=lambda check: ORDER.index(check.name))
    return checklist


def _web_checks(
    checklist: Checklist, environment: runner.Environment, web_facts: dict[str, _WebFacts]
) -> None:
    """The lock, then each web host's secrets, disk and checkout."""
    reached = [name for name in environment.web if name not in checklist.unreachable]
    for name in reached:
        checklist.checks.append(servers.check_lock(name, web_facts[name].holder, checklist.env))
    for name in reached:
        found = web_facts[name]
        if found.error:
            checklist.checks.append(Check("checkout", FAIL, found.error, name))
        else:
            settings = environment.settings[name]
            checklist.checks += servers.host_checks(name, found.facts, settings, found.colour_dir)


def _commit_checks(
    checklist: Checklist,
    request: Request,
    environment: runner.Environment,
    migrate_host: str,
    migrate: _WebFacts,
    db_facts: _DbFacts,
    moment: datetime,
) -> None:
    """What depends on the commit, read on the migrate host (a second connection)."""
    settings = environment.settings[migrate_host]
    db_name = environment.db[0] if environment.db else None
    target = next(t for t in remote.targets(request.env, ("web",)) if t.name == migrate_host)
    ref_checks: list[Check] = []

    def read_ref(via: fabric_backend.Host) -> str:
        ref_checks.extend(
            _ref_checks(via, request, settings, migrate, db_facts, db_name, moment, migrate_host)
        )
        return "read"

    (result,) = fabric_backend.run_tasks([target], read_ref)
    if not result.ok:
        checklist.unreachable.append(migrate_host)
        checklist.checks.append(Check("reach", FAIL, result.error, migrate_host))
    checklist.checks.extend(ref_checks)
    resolved = next((c for c in ref_checks if c.name == "ref" and c.status == PASS), None)
    checklist.sha = resolved.items[0] if resolved else None


def _ref_checks(
    via: fabric_backend.Host,
    request: Request,
    settings: Settings,
    migrate: _WebFacts,
    db: _DbFacts,
    db_name: str | None,
    moment: datetime,
    host: str,
) -> list[Check]:
    """Everything that depends on the commit, read on the migrate host."""
    where = migrate.colour_dir

    def git(command: str) -> CommandResult:
        return _run(via, commands.in_dir(where, command))

    code = delivery.Delivery(settings)
    try:
        _, out, _ = code.resolve(request.ref, git)
    except OperationFailed as failure:
        return [Check("ref", FAIL, str(failure), host)]
    sha, ref_check = resolve_ref(request.ref, out, settings.repository, host)
    if sha is not None:
        # Pushed: the commit is sent to this colour now, as a deploy would (fetched: it is).
        missing = code.ensure(lambda c, stdin=None: _run(via, c, stdin=stdin), where, sha)
        if missing:
            ref_check = Check("ref", FAIL, missing, host)
            sha = None
    checks = [ref_check]
    if sha is None:
        return checks
    live_sha = migrate.live_sha
    today = moment.astimezone(settings.window.tz).date()
    checks += release_advice(git, sha, live_sha, today, host)

    ok, out, err = git(commands.migration_files(sha))
    files = [line.strip() for line in out.splitlines() if line.strip().endswith(".php")]
    if not ok:
        checks.append(Check("migrations", FAIL, f"cannot list migrations: {_last_line(err)}", host))
        return checks
    if db_name is None:
        checks.append(Check("migrations", FAIL, f"inventories/{request.env}.py has no db host"))
        return checks
    if db.error:
        checks.append(Check("migrations", FAIL, db.error, db_name))
        return checks
    pending = migrations.pending_migrations(files, db.applied)
    changed: list[tuple[str, str]] = []
    if live_sha and refs.SHA.match(live_sha):
        _, out, _ = git(commands.git_changed_files(live_sha, sha, database.MIGRATIONS_DIR))
        changed = database.parse_name_status(out)
    checks.append(database.check_migrations(pending, changed, host))

    paths = [f for f in files if migrations.migration_name(f) in set(pending)]
    ok, out, err = git(commands.show_files(sha, paths))
    if not ok:
        checks.append(
            Check("destructive", FAIL, f"cannot read migrations: {_last_line(err)}", host)
        )
    else:
        scans = [migrations.scan_source(text, name) for name, text in split_files(out).items()]
        checks.append(
            database.check_destructive(scans, request.allow_destructive, request.strategy, host)
        )
    checks.append(
        servers.check_snapshot_space(db.space, settings.backups_dir, bool(pending), db_name)
    )
    return checks
