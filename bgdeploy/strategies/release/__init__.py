"""The in-place release (the runbook's "Manual Deployment"), step by step, for pyinfra.

``deploys/release.py`` reads like the runbook by calling these functions in order; each adds
one named pyinfra operation (or a few) to every host of the inventory. The live colour
(``<app_root>/<target of current>``) is updated where it stands::

    take the deploy lock          every web host, atomically (bgdeploy.core.lock)
    preflight                     current, APP_KEY in shared/.env, free disk, clean tree, fetch
    check out the release         the exact commit the ref resolved to, once, for every host
    install dependencies          composer install; npm ci / npm run build on one host, whose
                                  assets the others receive, checksummed (asset_paths)
    snapshot the database         on the db host, when migrations are pending (verified)
    run migrations                once, from the designated web host (migrate_host)
    go live                       caches (config/route/view/event, one PHP process),
                                  storage:link, php-fpm and nginx reloads (each configuration
                                  tested first), queue workers (stopped, queue:restart,
                                  started), /api/health through nginx until health_deadline
    restore or roll back          the previous commit and its build, when something failed
    journal, release the lock     on every web host, whatever happened

How failures are handled
------------------------

pyinfra runs each operation on every host before the next one, and drops a host whose
operation fails. A release must not drop a host half-way: it has to restore the previous
release there, journal what happened and release the lock. So every step here records its own
success or failure (shown as ``Error (ignored)`` by pyinfra) and the later steps decide, when
they run, whether they apply (pyinfra's ``_if``). The last operation, "Finish", fails every
host whose release failed, so the run still exits non-zero.

- A failure before migrations (checkout, composer, npm, the snapshot, the migration itself)
  stops the batch: migrations are not run (or, on PostgreSQL, leave the schema as it was) and
  every host of the batch goes back to its previous commit and build.
- A failure after migrations (caches, reloads, workers, health) rolls that host back to its
  previous commit, unless ``auto_rollback`` is off.
- With ``rolling_batch``, hosts go in batches of that size; a batch starts only when the
  earlier ones are healthy, and a failure stops the rollout.

Checks that run before any operation is added (so a plain ``pyinfra`` run is guarded too):
valid settings and ``--data`` values, the deploy window (``emergency_reason`` overrides it), a
lock already held, the ref resolving to exactly one commit, destructive pending migrations
(``allow_destructive`` overrides) and room for the snapshot on the db host; a commit off main
and feature flags past their removal date are logged as warnings. A refusal raises
:class:`DeployRefused` and nothing runs. These are :mod:`bgdeploy.checks.preflight`'s checks, the
ones ``bgdeploy preflight`` prints.

Data the deploy file reads (``--data key=value``): ``ref`` (default: group_data), ``force``
(deploy even when the commit is already live), ``emergency_reason``, ``reason``,
``allow_destructive``, and for ``bgdeploy deploy``: ``bgdeploy_run_id``,
``bgdeploy_report`` (a JSON file kept up to date with :class:`ReleaseReport`).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pyinfra import logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.operations import python

from bgdeploy import commands
from bgdeploy.checks import migrations, schema
from bgdeploy.checks import preflight as checklist
from bgdeploy.core import journal, lock, refs, windows
from bgdeploy.core.errors import BgdeployError
from bgdeploy.core.explain import explain, first_line
from bgdeploy.core.release_report import HostOutcome, ReleaseReport, StepResult
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import pyinfra_backend
from bgdeploy.fleet.executor import CommandResult

COMMAND_TIMEOUT = 1800
"""Seconds any one command of a release may take (composer and npm on a slow mirror)."""


class DeployRefused(PyinfraError):
    """The release was refused before anything changed (pyinfra prints the message)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# The run: one per pyinfra State, shared by every host's pass through the deploy file
# ----------------------------------------------------------------------------------------


@dataclass
class HostRun:
    """What the release knows about one host while it runs (the outcome is reported)."""

    name: str
    settings: Settings
    outcome: HostOutcome
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    last_step_end: float | None = None
    lock_acquired: bool = False
    deploying: bool = False
    live_dir: str = ""
    needs_restore: bool = False
    restored: bool = False
    restore_ok: bool = False

    @property
    def is_web(self) -> bool:
        return "web" in self.outcome.roles

    @property
    def is_db(self) -> bool:
        return "db" in self.outcome.roles


@dataclass
class ReleaseRun:
    """One release across the fleet: what was asked, what was decided, each host's state.

    Created by the first host's pass through the deploy file (:func:`begin`); the other hosts
    join it. Operations read and update it when they execute.
    """

    env: str
    ref: str
    run_id: str
    who: str
    force: bool
    allow_destructive: bool
    reason: str | None
    emergency_reason: str | None
    report_path: str | None
    web_order: list[str]
    db_host: str | None
    migrate_host: str
    batches: list[list[str]]
    report: ReleaseReport
    hosts: dict[str, HostRun] = field(default_factory=dict)
    window: windows.WindowDecision | None = None
    sha: str | None = None
    pending: list[str] = field(default_factory=list)
    destructive: list[str] = field(default_factory=list)
    aborted: str | None = None
    aborted_batches: dict[int, str] = field(default_factory=dict)
    snapshot_ok: bool = False
    fingerprint: schema.Fingerprint | None = None
    """The database before migrating (taken with the snapshot): what a failed migrate must
    leave it as."""
    migrated: bool = False
    strategy: str = "in-place"
    assets: bytes | None = None
    """The release's assets (``asset_paths``) as built on :attr:`asset_builders`, packed."""
    assets_sha256: str = ""
    asset_builders: dict[int, str] = field(default_factory=dict)

    # Decisions the operations' ``_if`` read at execute time.

    def batch_of(self, name: str) -> int | None:
        for number, batch in enumerate(self.batches):
            if name in batch:
                return number
        return None

    def earlier_batches_healthy(self, batch: int) -> bool:
        """True when no host of an earlier batch failed (the rollout goes on)."""
        for number in range(batch):
            if number in self.aborted_batches:
                return False
            for name in self.batches[number]:
                if self.hosts[name].outcome.result not in ("pending", "ok", "unchanged"):
                    return False
        return True

    def changing(self, name: str, batch: int) -> bool:
        """True when host ``name`` is being released in ``batch`` and nothing stopped it."""
        run = self.hosts.get(name)
        return (
            run is not None
            and self.aborted is None
            and self.report.refusal is None
            and run.deploying
            and self.batch_of(name) == batch
            and batch not in self.aborted_batches
            and run.outcome.failed_step is None
            and self.earlier_batches_healthy(batch)
        )

    def shares_assets(self, name: str) -> bool:
        """True when one host builds the assets and the others receive them: ``asset_paths``
        is set and the release has more than one web host."""
        return bool(self.hosts[name].settings.asset_paths) and len(self.web_order) > 1

    def builds_assets(self, name: str, batch: int) -> bool:
        """True when host ``name`` runs ``npm ci`` and ``npm run build`` in ``batch``: every
        host does unless assets are shared; then only the batch's first host still being
        released, and only until the assets were built once (later batches receive them)."""
        if not self.shares_assets(name):
            return True
        if self.assets is not None:
            return False
        if batch not in self.asset_builders:
            first = next((n for n in self.batches[batch] if self.changing(n, batch)), None)
            if first is None:
                return False
            self.asset_builders[batch] = first
        return self.asset_builders[batch] == name

    def batch_deploys(self, batch: int) -> bool:
        return any(self.changing(name, batch) for name in self.batches[batch])

    def save(self) -> None:
        """Write the report file, when there is one (``bgdeploy_report``)."""
        if self.report_path:
            for run in self.hosts.values():
                end = run.finished if run.finished is not None else time.monotonic()
                run.outcome.seconds = round(end - run.started, 2)
            self.report.sha = self.sha
            self.report.migrations = list(self.pending)
            self.report.save(self.report_path)

    def refuse(self, kind: str, message: str) -> DeployRefused:
        """Record a refusal and return the exception to raise."""
        if self.report.refusal is None:
            self.report.refusal = {"kind": kind, "message": message}
        self.save()
        return DeployRefused(kind, message)


# The run state
# -------------
#
# One :class:`ReleaseRun` per pyinfra run, shared by every host's operations: kept here, by
# pyinfra ``State``, rather than as an attribute of pyinfra's own objects.

_RUNS: weakref.WeakKeyDictionary[Any, ReleaseRun] = weakref.WeakKeyDictionary()


def current_state() -> Any:
    """The pyinfra ``State`` of the run in progress (not the context proxy)."""
    from pyinfra.context import ctx_state

    return ctx_state.get()


def current_host() -> Any:
    """The pyinfra ``Host`` whose operations are being added or run (not the proxy)."""
    from pyinfra.context import ctx_host

    return ctx_host.get()


def current() -> tuple[ReleaseRun, str]:
    """The release this pyinfra run makes, and the current host's name: what every step
    function starts with."""
    return _RUNS[current_state()], current_host().name


def _data_bool(data: Any, key: str) -> bool:
    value = data.get(key, False)
    if value in (None, False, "", 0, "false", "no"):
        return False
    if value in (True, 1, "true", "yes"):
        return True
    raise DeployRefused("config", f"--data {key}={value!r}: must be true or false")


def _data_text(data: Any, key: str) -> str | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not value.strip():
        raise DeployRefused("config", f"--data {key}={value!r}: must be text")
    return value.strip()


def _batches(web: list[str], size: int | None, first: str) -> list[list[str]]:
    """Web hosts in rolling batches of ``size`` (all at once when None), ``first`` in batch 0."""
    ordered = [first, *[name for name in web if name != first]] if first in web else list(web)
    if not size:
        return [ordered] if ordered else []
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def begin(settings_factory: Callable[[], Settings], strategy: str = "in-place") -> ReleaseRun:
    """Join (or start) the release this pyinfra run makes, for the current host.

    Reads and checks this host's settings (``settings_factory``, normally
    :func:`bgdeploy.fleet.runner.current_settings`) and the ``--data`` values, and decides the
    deploy
    window. Raises :class:`DeployRefused` on a wrong value or outside the window; nothing has
    been added or run then.
    """
    real_state, real_host = current_state(), current_host()
    try:
        settings = settings_factory()
    except BgdeployError as error:
        raise DeployRefused("config", str(error)) from None
    run: ReleaseRun | None = _RUNS.get(real_state)
    if run is None:
        run = _new_run(real_state, real_host, settings, strategy)
        _RUNS[real_state] = run
    roles = [group for group in ("web", "db") if group in real_host.groups]
    outcome = run.report.host(real_host.name, roles)
    outcome.batch = run.batch_of(real_host.name)
    run.hosts[real_host.name] = HostRun(real_host.name, settings, outcome)
    return run


def _new_run(
    real_state: Any, real_host: Any, settings: Settings, strategy: str = "in-place"
) -> ReleaseRun:
    data = real_host.data
    raw_ref = data.get("ref", settings.ref)
    if isinstance(raw_ref, int) and not isinstance(raw_ref, bool):
        raise DeployRefused(
            "config",
            f"ref {raw_ref!r} reached the deploy as a number (pyinfra parses --data values): "
            f"quote it as JSON, --data 'ref=\"{raw_ref}\"'",
        )
    try:
        ref = refs.validate_ref(raw_ref)
    except BgdeployError as error:
        raise DeployRefused("config", str(error)) from None
    run_id = str(data.get("bgdeploy_run_id") or lock.new_run_id())
    if not re.match(r"^[A-Za-z0-9_-]{1,64}\Z", run_id):
        raise DeployRefused("config", f"bgdeploy_run_id {run_id!r} is not valid")
    inventory = real_state.inventory
    active = {h.name for h in inventory.iter_activated_hosts()} or {h.name for h in inventory}
    web = [h.name for h in inventory.get_group("web", []) if h.name in active]
    db = [h.name for h in inventory.get_group("db", [])]
    migrate_host = settings.migrate_host or (web[0] if web else "")
    if settings.migrate_host and settings.migrate_host not in web:
        if settings.migrate_host not in {h.name for h in inventory.get_group("web", [])}:
            raise DeployRefused(
                "config",
                f"migrate_host {settings.migrate_host!r} is not a web host of "
                f"inventories/{settings.env}.py",
            )
        migrate_host = web[0] if web else ""
    report_path = data.get("bgdeploy_report")
    run = ReleaseRun(
        env=settings.env,
        ref=ref,
        run_id=run_id,
        who=journal.operator_name(),
        force=_data_bool(data, "force"),
        allow_destructive=_data_bool(data, "allow_destructive"),
        reason=_data_text(data, "reason"),
        emergency_reason=_data_text(data, "emergency_reason"),
        report_path=str(report_path) if report_path else None,
        web_order=web,
        db_host=db[0] if db else None,
        migrate_host=migrate_host,
        # Blue-green switches every web host at once: one batch.
        batches=_batches(
            web, None if strategy == "blue-green" else settings.rolling_batch, migrate_host
        ),
        report=ReleaseReport(env=settings.env, ref=ref, run=run_id),
        strategy=strategy,
    )
    run.report.who = run.who
    decision = windows.decide(settings.window, datetime.now(UTC), run.emergency_reason)
    run.window = decision
    if not decision.allowed:
        raise run.refuse("window", decision.describe())
    if not web:
        raise run.refuse("config", f"inventories/{settings.env}.py has no web host in this run")
    return run


# Running commands
# ----------------


def _sh(
    host: Any, command: str, *, pty: bool = False, timeout: int = COMMAND_TIMEOUT
) -> CommandResult:
    """Run one release command on ``host`` through the executor (its pyinfra backend); the
    result unpacks as (succeeded, stdout, stderr). Never raises for the host's failure.

    ``pty``: under a terminal (stderr then arrives with stdout). The release's steps run so:
    when the deploy is stopped and its SSH connection closes, they get SIGHUP and stop, rather
    than go on changing the host behind the recovery's back.
    """
    return pyinfra_backend.run_on(host, command, timeout=timeout, pty=pty)


def record_step(run: HostRun, name: str, started: float, ok: bool, message: str = "") -> None:
    """Add step ``name`` (begun at ``started``, a monotonic time) to the host's outcome: ok
    or failed, with the ``message`` that explains a failure."""
    run.last_step_end = time.monotonic()
    run.outcome.steps.append(
        StepResult(
            name=name,
            seconds=round(time.monotonic() - started, 2),
            result="ok" if ok else "failed",
            message=message,
        )
    )


def fail_host(run: HostRun, step: str, message: str, host: Any) -> None:
    """Mark the host failed at ``step`` with ``message`` (what the report and the FAILED line
    show), and log it under the pyinfra ``host``'s prefix."""
    run.outcome.failed_step = step
    run.outcome.message = message
    run.outcome.result = "failed"
    logger.error(f"{host.print_prefix}{step} failed: {message}")


def _step_command(release: ReleaseRun, run: HostRun, step: str) -> str:
    """The command of a release step (:func:`bgdeploy.commands.release_steps`) on a host."""
    assert release.sha is not None
    return dict(commands.release_steps(run.settings, run.live_dir, release.sha))[step]


def _command_step(
    release: ReleaseRun,
    run: HostRun,
    host: Any,
    step: str,
    command: str,
) -> bool:
    started = time.monotonic()
    ok, out, err = _sh(host, command, pty=True)
    message = "" if ok else explain(out, err)
    record_step(run, step, started, ok, message)
    if not ok:
        fail_host(run, step, message, host)
    release.save()
    return ok


# Operations
# ----------
#
# Each function adds one pyinfra operation to the current host (every host gets every
# operation, so they all share one order); ``_if`` decides at execute time where it acts.


def add_operation(
    name: str,
    function: Callable[..., bool],
    when: Callable[[], bool],
    ignore_errors: bool = True,
    **kwargs: Any,
) -> None:
    """Add operation ``name`` to the current host: ``function(**kwargs)`` runs at execute
    time where ``when()`` says so (every host gets every operation, so they share one
    order)."""
    python.call(
        name=name,
        function=function,
        _if=when,
        _ignore_errors=ignore_errors,
        **kwargs,
    )


def guard(release: ReleaseRun) -> None:
    """Before any operation: on the designated migrate host, check that no deploy holds the
    lock, resolve the ref to exactly one commit, list the pending migrations and refuse
    destructive ones (unless ``allow_destructive``). Reads only (and fetches into the live
    colour's ``.git``); raises :class:`DeployRefused`. The checks are
    :mod:`bgdeploy.checks.preflight`'s, the same ``bgdeploy preflight`` prints."""

    real_host, real_state = current_host(), current_state()
    if real_host.name != release.migrate_host:
        return
    settings = release.hosts[real_host.name].settings
    ok, out, _ = _sh(real_host, commands.lock_read(settings.lock_path))
    locked = checklist.check_lock(real_host.name, lock.parse_lock(out) if ok else None, release.env)
    if locked.failed:
        raise release.refuse("lock", locked.detail)
    facts, live_dir, error = _release_facts(real_host, settings, None)
    if error:
        raise release.refuse("error", f"{real_host.name}: {error}")

    def git(command: str) -> tuple[bool, str, str]:
        return _sh(real_host, commands.in_dir(live_dir, command))

    _, out, _ = git(commands.git_resolve(release.ref))
    sha, resolved = checklist.resolve_ref(release.ref, out, settings.repository)
    if sha is None:
        raise release.refuse("bad_ref", resolved.detail)
    release.sha = sha
    today = datetime.now(UTC).astimezone(settings.window.tz).date()
    for advice in checklist.release_advice(git, sha, facts.get("head", ""), today, None):
        if advice.status != checklist.PASS:  # warnings only: on main, feature flag dates
            logger.warning(f"{real_host.name}: {advice.name}: {advice.detail}")
    release.report.sha = release.sha
    _check_migrations(release, real_state, real_host, settings, live_dir)
    release.save()


def _check_migrations(
    release: ReleaseRun, real_state: Any, real_host: Any, settings: Settings, live_dir: str
) -> None:
    assert release.sha is not None
    ok, out, err = _sh(real_host, commands.in_dir(live_dir, commands.migration_files(release.sha)))
    if not ok:
        raise release.refuse(
            "error", f"{real_host.name}: cannot list migrations: {explain(out, err)}"
        )
    files = [line.strip() for line in out.splitlines() if line.strip().endswith(".php")]
    if not files:
        return
    if release.db_host is None:
        raise release.refuse("config", f"inventories/{release.env}.py has no host in group 'db'")
    db_host = real_state.inventory.get_host(release.db_host)
    if db_host not in real_state.activated_hosts:
        raise release.refuse(
            "config", f"the db host {release.db_host} is not part of this run (--limit?)"
        )
    ok, out, err = _sh(db_host, commands.applied_migrations(settings.db_port, settings.db_name))
    if not ok:
        raise release.refuse(
            "error", f"{release.db_host}: cannot read the applied migrations: {explain(out, err)}"
        )
    applied = [line.strip() for line in out.splitlines() if line.strip()]
    release.pending = migrations.pending_migrations(files, applied)
    if not release.pending:
        return
    space = commands.snapshot_space(settings.backups_dir, settings.db_name, settings.db_port)
    _, out, _ = _sh(db_host, space)
    room = checklist.check_snapshot_space(
        checklist.parse_facts(out), settings.backups_dir, True, release.db_host
    )
    if room.failed:
        raise release.refuse("error", f"{release.db_host}: {room.detail}")
    paths = [f for f in files if migrations.migration_name(f) in release.pending]
    ok, out, err = _sh(
        real_host, commands.in_dir(live_dir, commands.show_files(release.sha, paths))
    )
    if not ok:
        raise release.refuse(
            "error", f"{real_host.name}: cannot read migrations: {explain(out, err)}"
        )
    scans = [
        migrations.scan_source(source, name) for name, source in checklist.split_files(out).items()
    ]
    for scan in scans:
        if scan.needs_review and not scan.allowed:
            logger.warning(f"{real_host.name}: migration to review: {migrations.format_scan(scan)}")
    check = checklist.check_destructive(scans, release.allow_destructive, release.strategy)
    if check.failed:
        raise release.refuse("destructive", check.detail)
    if check.status == checklist.WARN and check.items:
        release.destructive = list(check.items)
        logger.warning(f"destructive migrations {check.detail}")


_split_files = checklist.split_files  # files of commands.show_files, by file name


def _release_facts(
    host: Any, settings: Settings, sha: str | None, prefix: str = "", idle: bool = False
) -> tuple[dict[str, Any], str, str]:
    """(facts, live colour dir, error) of a web host, fetching its repository (``idle``: of
    the idle colour, which a blue-green deploy builds)."""
    command = commands.release_facts(
        settings.app_root, settings.repository, idle, checklist.SECRET_NAMES
    )
    if prefix:
        command = f"{prefix} && {{ {command}; }}"
    if sha:
        command = (
            f"{{ {command}; }}; d=$({commands.live_colour_dir(settings.app_root, idle)}) && "
            f'if git -C "$d" cat-file -e {commands.q(sha + "^{commit}")} 2>/dev/null; '
            "then echo target=present; else echo target=missing; fi"
        )
    ok, out, err = _sh(host, command)
    facts = checklist.parse_facts(out)
    colour = facts.get("colour", "")
    live_dir = f"{settings.app_root}/{colour}"
    if colour not in ("blue", "green"):
        return (
            facts,
            live_dir,
            (
                f"{settings.app_root}/current does not point at blue or green"
                f" ({colour or 'missing'}): run `bgdeploy provision {settings.env}` first"
            ),
        )
    if not ok and facts.get("fetch") is None:
        return facts, live_dir, f"preflight command failed: {explain(out, err)}"
    if facts.get("fetch") != "ok":
        return facts, live_dir, f"git fetch from {settings.repository} failed: {explain(out, err)}"
    return facts, live_dir, ""


def take_lock(release: ReleaseRun) -> None:
    """Take the deploy lock on every web host (atomic create; owner, pid, host, ref, time)."""
    _, name = current()
    add_operation(
        "Take the deploy lock",
        _take_lock,
        lambda: release.hosts[name].is_web,
        release=release,
    )


def _take_lock(state: Any, host: Any, release: ReleaseRun) -> bool:
    run = release.hosts[host.name]
    run.started = time.monotonic()
    info = lock.new_lock(release.ref, release.run_id)
    started = time.monotonic()
    ok, out, err = _sh(host, commands.lock_acquire(run.settings.lock_path, info.to_json()))
    try:
        acquired, holder = lock.parse_acquire_output(out) if ok else (False, None)
    except ValueError:
        acquired, holder = False, None
    record_step(run, "take the deploy lock", started, acquired)
    if acquired:
        run.lock_acquired = True
        release.save()
        return True
    if not ok:
        fail_host(run, "take the deploy lock", explain(out, err), host)
        release.aborted = release.aborted or f"could not take the lock on {host.name}"
        release.save()
        return False
    who = holder.describe() if holder else "another deploy (its lock is being written)"
    message = (
        f"the deploy lock on {host.name} is held by {who}: wait for that deploy to finish "
        f"(or, if it died, `bgdeploy unlock {release.env}`)"
    )
    run.outcome.result = "refused"
    run.outcome.failed_step = "take the deploy lock"
    run.outcome.message = message
    logger.error(f"{host.print_prefix}{message}")
    release.refuse("lock", message)
    return False


def preflight(release: ReleaseRun) -> None:
    """Preflight on every web host, before anything changes: ``current`` points at a colour,
    ``shared/.env`` has its secrets, enough free disk, the live colour has no local changes,
    the repository is fetched and has the commit. A host already at the commit is left alone
    (unless ``force``)."""
    _, name = current()
    add_operation(
        "Preflight",
        _preflight,
        lambda: release.hosts[name].lock_acquired and release.report.refusal is None,
        release=release,
    )


def _preflight(state: Any, host: Any, release: ReleaseRun) -> bool:
    run = release.hosts[host.name]
    settings = run.settings
    started = time.monotonic()
    start_entry = journal.new_entry(
        "deploy_start",
        who=release.who,
        host=host.name,
        env=release.env,
        ref=release.ref,
        sha=release.sha,
        result="started",
        reason=release.reason or release.emergency_reason,
        details={"run": release.run_id, "strategy": release.strategy},
    )
    prefix = journal.journal_append_command(settings.journal_path, start_entry)
    idle = release.strategy == "blue-green"
    facts, live_dir, error = _release_facts(host, settings, release.sha, prefix, idle=idle)
    run.live_dir = live_dir
    run.outcome.colour = facts.get("colour") or None
    run.outcome.sha_before = facts.get("head") or None
    run.outcome.sha_after = run.outcome.sha_before
    problems = [error] if error else []
    if not error:
        # The same checks as `bgdeploy preflight`: secrets, disk, clean checkout, the commit.
        facts.setdefault("target", "missing")
        checks = checklist.host_checks(host.name, facts, settings, live_dir, release.sha)
        problems += [check.detail for check in checks if check.failed]
    if problems:
        message = "\n".join(problems)
        record_step(run, "preflight", started, False, message)
        fail_host(run, "preflight", message, host)
        release.aborted = release.aborted or f"preflight failed on {host.name}"
        release.save()
        return False
    record_step(run, "preflight", started, True)
    if (
        not idle
        and run.outcome.sha_before == release.sha
        and facts.get("built") == release.sha
        and not release.force
    ):
        run.outcome.result = "unchanged"
        run.outcome.message = f"already at {release.sha}"
        logger.info(f"{host.print_prefix}already at {release.sha}: nothing to do")
    else:
        run.deploying = True
    release.save()
    return True


def check_out(release: ReleaseRun, batch: int) -> None:
    """Check out the exact commit in the live colour (local changes make it fail), and link
    ``.env`` and ``storage`` to ``shared/``."""
    _, name = current()
    add_operation(
        "Check out the release",
        _check_out,
        lambda: release.changing(name, batch),
        release=release,
        batch=batch,
    )


def _check_out(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    run = release.hosts[host.name]
    run.outcome.code_changed = True
    ok = _command_step(release, run, host, "check out", _step_command(release, run, "check out"))
    if ok:
        run.outcome.sha_after = release.sha
    else:
        abort_batch(release, batch, host.name, "check out")
    return ok


def abort_batch(release: ReleaseRun, batch: int, host: str, step: str) -> None:
    """Stop ``batch``: ``step`` failed on ``host`` (the other hosts' notes say why)."""
    run = release.hosts.get(host)
    cause = first_line(run.outcome.message) if run is not None else ""
    release.aborted_batches.setdefault(
        batch, f"{step} failed on {host}" + (f": {cause}" if cause else "")
    )
    release.save()


def install_dependencies(release: ReleaseRun, batch: int) -> None:
    """``composer install --no-dev --optimize-autoloader`` on every host; ``npm ci`` and
    ``npm run build`` on one host when ``asset_paths`` is set and there are several web hosts
    (its build, packed and checksummed, is then copied to the others: ``Receive the assets``),
    else on every host. One operation: the hosts that only run composer do not wait for the
    building host between steps (its npm work runs beside their composer)."""
    _, name = current()
    add_operation(
        "Install dependencies",
        _install,
        lambda: release.changing(name, batch),
        release=release,
        batch=batch,
    )
    add_operation(
        "Receive the assets",
        _receive_assets,
        lambda: (
            release.changing(name, batch)
            and release.shares_assets(name)
            and release.assets is not None
            and release.asset_builders.get(batch) != name
        ),
        release=release,
        batch=batch,
    )


def _install(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    for step in ("composer install", "npm ci", "npm run build"):
        if not release.changing(host.name, batch):
            return False
        if step != "composer install" and not release.builds_assets(host.name, batch):
            continue
        if not _build_step(state, host, release, batch, step):
            return False
    return True


def _build_step(state: Any, host: Any, release: ReleaseRun, batch: int, step: str) -> bool:
    run = release.hosts[host.name]
    ok = _command_step(release, run, host, step, _step_command(release, run, step))
    if ok and step == "npm run build" and release.shares_assets(host.name):
        ok = _pack_assets(release, run, host)
    if not ok:
        abort_batch(release, batch, host.name, step)
    return ok


def _pack_assets(release: ReleaseRun, run: HostRun, host: Any) -> bool:
    """On the host that built them: the assets packed and brought here, once for all hosts."""
    started = time.monotonic()
    archive = f"{run.live_dir}/{commands.ASSETS_ARCHIVE}"
    ok, out, err = _sh(host, commands.pack_assets(run.live_dir, run.settings.asset_paths))
    packed = io.BytesIO()
    if ok:
        try:
            ok = bool(host.get_file(archive, packed))
        except Exception as error:
            ok, err = False, f"{type(error).__name__}: {error}"
        _sh(host, f"rm -f {commands.q(archive)}")
    message = "" if ok else f"packing the assets failed: {explain(out, err)}"
    record_step(run, "pack the assets", started, ok, message)
    if not ok:
        fail_host(run, "pack the assets", message, host)
        return False
    release.assets = packed.getvalue()
    release.assets_sha256 = hashlib.sha256(release.assets).hexdigest()
    logger.info(
        f"{host.print_prefix}assets built here, packed ({len(release.assets)} bytes) for the "
        "other web hosts"
    )
    return True


def _receive_assets(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    """The assets built on another host, copied here and unpacked over ``asset_paths`` once
    their checksum matches."""
    run = release.hosts[host.name]
    assert release.assets is not None
    started = time.monotonic()
    archive = f"{run.live_dir}/{commands.ASSETS_ARCHIVE}"
    try:
        ok, err = bool(host.put_file(io.BytesIO(release.assets), archive)), ""
    except Exception as error:
        ok, err = False, f"{type(error).__name__}: {error}"
    out = ""
    if ok:
        command = commands.unpack_assets(
            run.live_dir, run.settings.asset_paths, release.assets_sha256
        )
        ok, out, err = _sh(host, command)
    message = "" if ok else f"the assets could not be received: {explain(out, err)}"
    record_step(run, "receive the assets", started, ok, message)
    if not ok:
        fail_host(run, "receive the assets", message, host)
        abort_batch(release, batch, host.name, "receive the assets")
    release.save()
    return ok


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
    started = time.monotonic()
    ok, out, err = _sh(host, command)
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
    started = time.monotonic()
    ok, out, err = _sh(host, commands.in_dir(run.live_dir, commands.migrate()), pty=True)
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
    ok, out, err = _sh(
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
        ok, out, err = _sh(host, command, pty=True)
        if ok:
            check.undone = recorded
        else:
            check.problem = f"migrate:rollback failed: {explain(out, err)}"
    snapshot = (release.report.snapshot or {}).get("path")
    ok, out, err = _sh(
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


LIVE_STEPS = ("caches", "storage link", "reload php-fpm", "reload nginx", "restart workers")
"""After migrations, on each host: the release goes live (:func:`go_live`)."""

WARM_UP_STEPS = ("caches", "storage link", "reload php-fpm")
"""After migrations, on each host: a blue-green colour gets ready (:func:`warm_up`)."""


def go_live(release: ReleaseRun, batch: int) -> None:
    """Each host, in order: ``config:cache``, ``route:cache``, ``view:cache`` and
    ``event:cache`` (one PHP process), ``storage:link``, php-fpm tested and reloaded
    gracefully, nginx tested and reloaded, the queue workers restarted on the new code
    (:func:`bgdeploy.commands.restart_live_workers`), then ``/api/health`` through nginx
    (127.0.0.1, the public port) retried until ``health_deadline``: 200, and the
    ``X-Release`` header (when the app sends one) naming the new commit.

    One operation: each host goes through its steps without waiting for the others between
    them. Its first failure stops it there; :func:`restore_on_failure` puts the previous
    release back on it (unless ``auto_rollback`` is off)."""
    _phase("Go live", release, batch, LIVE_STEPS, health=True)


def warm_up(release: ReleaseRun, batch: int) -> None:
    """Each host, in order (one operation, as :func:`go_live`): the caches, ``storage:link``,
    php-fpm tested and reloaded (the blue-green colour it serves gets the new code)."""
    _phase("Warm up", release, batch, WARM_UP_STEPS, health=False)


def _phase(
    label: str, release: ReleaseRun, batch: int, steps: tuple[str, ...], health: bool
) -> None:
    """One operation running ``steps`` (and the health check) on each host being released."""
    _, name = current()
    add_operation(
        label,
        _run_steps,
        lambda: release.changing(name, batch),
        release=release,
        batch=batch,
        steps=steps,
        health=health,
    )


def _run_steps(
    state: Any, host: Any, release: ReleaseRun, batch: int, steps: tuple[str, ...], health: bool
) -> bool:
    run = release.hosts[host.name]
    for step in steps:
        if not release.changing(host.name, batch):
            return False
        ok = _command_step(release, run, host, step, _step_command(release, run, step))
        if not ok:
            run.needs_restore = True
            return False
    return _verify_health(state, host, release) if health else True


def _probe_until(host: Any, settings: Settings, sha: str | None) -> tuple[bool, str]:
    """Poll the health endpoint until it is healthy on ``sha`` or the deadline passes."""
    deadline = time.monotonic() + settings.health_deadline
    command = commands.health_probe(settings.public_port, settings.health_path)
    last = "no answer"
    while True:
        _, out, _ = _sh(host, command, timeout=30)
        status, _, release_header = (out.strip().splitlines() or [""])[-1].partition(" ")
        release_header = release_header.strip()
        if status == "200" and (not release_header or not sha or release_header == sha):
            return True, f"{settings.health_path} 200"
        if status == "200":
            last = f"{settings.health_path} 200 but X-Release is {release_header[:12]}"
        elif status in ("", "000"):
            last = f"{settings.health_path} did not answer"
        else:
            last = f"{settings.health_path} answered {status}"
        if time.monotonic() + settings.health_interval > deadline:
            return False, f"{last} (for {settings.health_deadline:g} s)"
        time.sleep(settings.health_interval)


def _verify_health(state: Any, host: Any, release: ReleaseRun) -> bool:
    run = release.hosts[host.name]
    started = time.monotonic()
    ok, message = _probe_until(host, run.settings, release.sha)
    record_step(run, "verify health", started, ok, "" if ok else message)
    if ok:
        run.outcome.result = "ok"
        run.outcome.message = message
    else:
        fail_host(run, "verify health", message, host)
        run.needs_restore = True
    release.save()
    return ok


def restore_on_failure(release: ReleaseRun, batch: int) -> None:
    """Put the previous release back where this one failed: the previous commit, composer,
    npm, caches, reloads, workers, health. After a failure before migrations on any host of
    the batch, every host of the batch is restored; after a failure once live (caches,
    reloads, health), that host is rolled back unless ``auto_rollback`` is off."""
    _, name = current()

    def applies() -> bool:
        run = release.hosts[name]
        if release.batch_of(name) != batch or not run.outcome.code_changed or run.restored:
            return False
        if batch in release.aborted_batches:
            return True
        return run.needs_restore and run.settings.auto_rollback

    add_operation("Restore the previous release", _restore, applies, release=release, batch=batch)


def _restore(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    run = release.hosts[host.name]
    run.restored = True
    outcome = run.outcome
    before_migrations = batch in release.aborted_batches
    cause = outcome.failed_step or release.aborted_batches.get(batch, "")
    if outcome.failed_step is None:
        outcome.failed_step = "aborted"
        outcome.message = f"{release.aborted_batches[batch]}; this host was restored too"
    if not outcome.sha_before:
        outcome.result = "failed"
        outcome.message += "\nno previous release to restore (first deploy of this colour)"
        release.save()
        return False
    settings = run.settings
    steps = commands.release_steps(settings, run.live_dir, outcome.sha_before, restore=True)
    logger.warning(
        f"{host.print_prefix}restoring the previous release {outcome.sha_before[:12]} "
        f"({cause} failed)"
    )
    for step, command in steps:
        started = time.monotonic()
        ok, out, err = _sh(host, command, pty=True)
        record_step(run, f"restore: {step}", started, ok, "" if ok else explain(out, err))
        if not ok:
            return _restore_failed(release, run, host, f"restore: {step}", explain(out, err))
    outcome.sha_after = outcome.sha_before
    started = time.monotonic()
    ok, message = _probe_until(host, settings, outcome.sha_before)
    record_step(run, "restore: verify health", started, ok, "" if ok else message)
    if not ok:
        return _restore_failed(release, run, host, "restore: verify health", message)
    run.restore_ok = True
    if before_migrations:
        outcome.result = "failed"
        outcome.message += f"\nthe previous release {outcome.sha_before[:12]} was restored"
    else:
        outcome.result = "rolled_back"
        outcome.message += (
            f"\nrolled back automatically to {outcome.sha_before[:12]} (healthy again)"
        )
    logger.warning(f"{host.print_prefix}previous release {outcome.sha_before[:12]} restored")
    release.save()
    return True


def _restore_failed(release: ReleaseRun, run: HostRun, host: Any, step: str, error: str) -> bool:
    run.outcome.result = "failed"
    run.outcome.message += (
        f"\nRESTORE FAILED at {step}: {error}\nthe host may serve a broken release: check it "
        f"and run `bgdeploy rollback {release.env}`"
    )
    logger.error(f"{host.print_prefix}restore failed at {step}: {error}")
    release.save()
    return False


def write_journal(release: ReleaseRun) -> None:
    """Append the release to the journal of every web host: steps and durations, the commits
    before and after, who, the result (and the snapshot, migrations and overrides)."""
    _, name = current()
    add_operation(
        "Write the journal",
        _write_journal,
        lambda: release.hosts[name].is_web,
        release=release,
    )


def _finalise(release: ReleaseRun, run: HostRun) -> None:
    """Give every host that is still pending its final result."""
    outcome = run.outcome
    if outcome.result != "pending":
        return
    if release.report.refusal is not None:
        outcome.result = "skipped"
        outcome.message = f"refused: {release.report.refusal['message']}"
    elif release.aborted is not None:
        outcome.result = "skipped"
        outcome.message = f"not started: {release.aborted}"
    elif outcome.failed_step:
        outcome.result = "failed"
    else:
        batch = release.batch_of(run.name)
        outcome.result = "skipped"
        if batch is not None and batch in release.aborted_batches:
            outcome.message = f"not started: {release.aborted_batches[batch]}"
        else:
            outcome.message = "not started: an earlier batch failed"


def journal_entries(release: ReleaseRun, run: HostRun) -> list[journal.JournalEntry]:
    """The journal lines a release writes on one web host."""
    outcome = run.outcome
    common: dict[str, Any] = {
        "who": release.who,
        "host": run.name,
        "env": release.env,
        "ref": release.ref,
        "colour": outcome.colour if outcome.colour in ("blue", "green") else None,
    }
    entries = []
    if release.emergency_reason and release.window and release.window.emergency:
        entries.append(
            journal.new_entry(
                "window_override",
                result="ok",
                reason=release.emergency_reason,
                message="; ".join(release.window.reasons),
                details={"run": release.run_id},
                **common,
            )
        )
    if release.destructive:
        entries.append(
            journal.new_entry(
                "destructive_override",
                result="ok",
                reason=release.reason or release.emergency_reason,
                message="--allow-destructive: " + ", ".join(release.destructive),
                details={"run": release.run_id},
                **common,
            )
        )
    snapshot = release.report.snapshot
    if snapshot and run.name == release.migrate_host:
        entries.append(
            journal.new_entry(
                "snapshot",
                sha=release.sha,
                result="ok",
                message=f"{snapshot['host']}:{snapshot['path']}",
                details={"run": release.run_id, **snapshot},
                **common,
            )
        )
    migrate_step = next((s for s in outcome.steps if s.name == "migrate"), None)
    if migrate_step is not None:
        entries.append(
            journal.new_entry(
                "migrate",
                sha=release.sha,
                result=migrate_step.result,
                message=migrate_step.message or None,
                steps=[journal.Step(migrate_step.name, migrate_step.seconds, migrate_step.result)],
                details={
                    "run": release.run_id,
                    "migrations": release.pending,
                    **({"database": release.report.database} if release.report.database else {}),
                },
                **common,
            )
        )
    if outcome.result == "rolled_back":
        entries.append(
            journal.new_entry(
                "rollback",
                sha=outcome.sha_after,
                sha_before=release.sha,
                result="ok",
                reason=f"automatic: {outcome.failed_step} failed",
                details={"run": release.run_id, "automatic": True},
                **common,
            )
        )
    success = outcome.result in ("ok", "unchanged")
    journal_result = {
        "ok": "ok",
        "unchanged": "skipped",
        "rolled_back": "rolled_back",
        "refused": "refused",
        "skipped": "skipped",
    }.get(outcome.result, "failed")
    details: dict[str, Any] = {"run": release.run_id, "strategy": release.strategy}
    if outcome.failed_step:
        details["failed_step"] = outcome.failed_step
    if snapshot:
        details["snapshot"] = snapshot["name"]
    if release.pending:
        details["migrations"] = release.pending
    if outcome.batch is not None and len(release.batches) > 1:
        details["batch"] = outcome.batch
    entries.append(
        journal.new_entry(
            "deploy_finish" if success else "deploy_fail",
            sha=outcome.sha_after if success else release.sha,
            sha_before=outcome.sha_before,
            result=journal_result,
            steps=[journal.Step(s.name, s.seconds, s.result) for s in outcome.steps],
            reason=release.reason or release.emergency_reason,
            message=(outcome.message or None) if outcome.result != "ok" else None,
            details=details,
            **common,
        )
    )
    return entries


def _write_journal(state: Any, host: Any, release: ReleaseRun) -> bool:
    run = release.hosts[host.name]
    _finalise(release, run)
    appends = [
        journal.journal_append_command(run.settings.journal_path, entry)
        for entry in journal_entries(release, run)
    ]
    outcome = run.outcome
    if outcome.result == "ok" or run.restore_ok:
        # The live colour is built and healthy at this commit: deploying it again is a no-op.
        appends.insert(0, commands.mark_built(run.live_dir, outcome.sha_after or ""))
    command = commands.join(*appends)
    ok, out, err = _sh(host, command)
    if not ok:
        logger.error(f"{host.print_prefix}journal not written: {explain(out, err)}")
    release.save()
    return ok


def release_lock(release: ReleaseRun) -> None:
    """Remove the deploy lock this deploy holds (never another deploy's)."""
    _, name = current()
    add_operation(
        "Release the deploy lock",
        _release_lock,
        lambda: release.hosts[name].lock_acquired,
        release=release,
    )


def _release_lock(state: Any, host: Any, release: ReleaseRun) -> bool:
    run = release.hosts[host.name]
    ok, out, err = _sh(host, commands.lock_release(run.settings.lock_path, release.run_id))
    if ok and "released" in out:
        run.lock_acquired = False
    else:
        logger.error(
            f"{host.print_prefix}the deploy lock was not released ({explain(out, err)}): "
            f"`bgdeploy unlock {release.env}` removes it"
        )
    release.save()
    return ok


def finish(release: ReleaseRun) -> None:
    """Report each host's result; a host whose release failed fails here (exit non-zero)."""
    _, name = current()
    # Not ignored: a host that fails here counts for pyinfra's exit code.
    add_operation(
        "Finish", _finish, lambda: name in release.hosts, ignore_errors=False, release=release
    )


def _finish(state: Any, host: Any, release: ReleaseRun) -> bool:
    run = release.hosts[host.name]
    if not run.is_web:
        # The db host: its snapshot (if one was needed) decided its result.
        if run.outcome.result == "pending":
            run.outcome.result = "unchanged"
        run.finished = run.last_step_end or time.monotonic()
        release.save()
        return True
    _finalise(release, run)
    # A host's duration: from its lock to its last step (not the other batches' time).
    run.finished = run.last_step_end or time.monotonic()
    release.save()
    outcome = run.outcome
    if outcome.result in ("ok", "unchanged"):
        logger.info(f"{host.print_prefix}{outcome.result}: {refs.short(outcome.sha_after)}")
        return True
    logger.error(
        f"{host.print_prefix}release {outcome.result}"
        + (f" at {outcome.failed_step}" if outcome.failed_step else "")
        + f": {(outcome.message.splitlines() or [''])[0]}"
    )
    return False
