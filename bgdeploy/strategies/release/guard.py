"""Before anything changes: the release's refusals, the deploy lock and the preflight.

:func:`guard` runs while the deploy file is read, before any operation is added, on the
designated migrate host only: no deploy holds the lock, the ref resolves to exactly one
commit, the pending migrations are listed (and the db host has room for their snapshot) and
destructive ones are refused unless ``allow_destructive``. A refusal raises
:class:`~bgdeploy.strategies.release.run.DeployRefused` and nothing runs, so a plain
``pyinfra`` run is guarded too; a commit off main and feature flags past their removal date
are logged as warnings.

Then the first operations, on every web host::

    take the deploy lock          atomically (bgdeploy.core.lock); a lock held by another
                                  deploy refuses the release
    preflight                     current points at a colour, shared/.env has its secrets,
                                  free disk, a clean live colour, the commit fetched (or
                                  pushed, ``code_delivery``); a host already at the commit
                                  is left alone (unless ``force``)

The checks are :mod:`bgdeploy.checks.preflight`'s, the ones ``bgdeploy preflight`` prints.
The ref is resolved, and the commit brought onto each host, by
:class:`bgdeploy.fleet.delivery.Delivery`: fetched by the hosts, or resolved on the
operator's machine and sent to them (``code_delivery = "push"``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pyinfra import logger

from bgdeploy import commands
from bgdeploy.checks import migrations
from bgdeploy.checks import preflight as checklist
from bgdeploy.core import approvals, journal, lock
from bgdeploy.core.errors import OperationFailed
from bgdeploy.core.explain import explain
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import delivery
from bgdeploy.strategies.release.operations import (
    add_operation,
    begin_step,
    fail_host,
    record_step,
    run_command,
)
from bgdeploy.strategies.release.run import (
    ReleaseRun,
    current,
    current_host,
    current_state,
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
    ok, out, _ = run_command(real_host, commands.lock_read(settings.lock_path))
    locked = checklist.check_lock(real_host.name, lock.parse_lock(out) if ok else None, release.env)
    if locked.failed:
        raise release.refuse("lock", locked.detail)
    facts, live_dir, error = _release_facts(real_host, settings, None)
    if error:
        raise release.refuse("error", f"{real_host.name}: {error}")

    def git(command: str) -> tuple[bool, str, str]:
        return run_command(real_host, commands.in_dir(live_dir, command))

    code = delivery.Delivery(settings)
    try:
        _, out, _ = code.resolve(release.ref, git)
    except OperationFailed as failure:
        raise release.refuse("error", str(failure)) from None
    sha, resolved = checklist.resolve_ref(release.ref, out, settings.repository)
    if sha is None:
        raise release.refuse("bad_ref", resolved.detail)
    release.sha = sha
    missing = code.ensure(_runner(real_host), live_dir, sha)
    if missing:
        raise release.refuse("error", f"{real_host.name}: {missing}")
    _check_approvals(release, git, sha, settings)
    today = datetime.now(UTC).astimezone(settings.window.tz).date()
    for advice in checklist.release_advice(git, sha, facts.get("head", ""), today, None):
        if advice.status != checklist.PASS:  # warnings only: on main, feature flag dates
            logger.warning(f"{real_host.name}: {advice.name}: {advice.detail}")
    release.report.sha = release.sha
    _check_migrations(release, real_state, real_host, settings, live_dir)
    release.save()


def _check_approvals(release: ReleaseRun, git: checklist.Git, sha: str, settings: Settings) -> None:
    """The approval rules (:mod:`bgdeploy.core.approvals`), now that the commit's trailers can
    count: refuses (exit 3) with what is missing; the verdict goes to the journal and report."""
    ok, out, _ = git(commands.git_trailers(sha))
    policy = settings.approvals
    trailers = approvals.parse_trailers(out if ok else "", policy.trailers if policy else ())
    window = release.window
    verdict = approvals.decide(
        policy,
        release.ask,
        operator=release.who,
        window_open=window.regular if window else True,
        trailers=trailers,
    )
    release.approval = verdict
    release.report.approval = verdict.to_dict()
    if not verdict.allowed:
        raise release.refuse("approval", verdict.describe())
    if policy is not None:
        logger.info(f"approval: {verdict.describe()}")


def _check_migrations(
    release: ReleaseRun, real_state: Any, real_host: Any, settings: Settings, live_dir: str
) -> None:
    assert release.sha is not None
    ok, out, err = run_command(
        real_host, commands.in_dir(live_dir, commands.migration_files(release.sha))
    )
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
    ok, out, err = run_command(
        db_host, commands.applied_migrations(settings.db_port, settings.db_name)
    )
    if not ok:
        raise release.refuse(
            "error", f"{release.db_host}: cannot read the applied migrations: {explain(out, err)}"
        )
    applied = [line.strip() for line in out.splitlines() if line.strip()]
    release.pending = migrations.pending_migrations(files, applied)
    if not release.pending:
        return
    space = commands.snapshot_space(settings.backups_dir, settings.db_name, settings.db_port)
    _, out, _ = run_command(db_host, space)
    room = checklist.check_snapshot_space(
        checklist.parse_facts(out), settings.backups_dir, True, release.db_host
    )
    if room.failed:
        raise release.refuse("error", f"{release.db_host}: {room.detail}")
    paths = [f for f in files if migrations.migration_name(f) in release.pending]
    ok, out, err = run_command(
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


def _release_facts(
    host: Any, settings: Settings, sha: str | None, prefix: str = "", idle: bool = False
) -> tuple[dict[str, Any], str, str]:
    """(facts, colour dir, error) of a web host, its repository fetched or, when the operator
    pushes, ``sha`` delivered (``idle``: the idle colour, which a blue-green deploy builds).
    With ``sha``, the commit is then present there (``target=present``) or the error says
    why not."""
    code = delivery.Delivery(settings)
    command = code.facts_command(settings.app_root, idle, checklist.SECRET_NAMES)
    if prefix:
        command = f"{prefix} && {{ {command}; }}"
    ok, out, err = run_command(host, command)
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
    fetch_error = code.fetch_error(facts, out, err)
    if fetch_error:
        return facts, live_dir, fetch_error
    if sha:
        missing = code.ensure(_runner(host), live_dir, sha)
        if missing:
            return facts, live_dir, missing
        facts["target"] = "present"
    return facts, live_dir, ""


def _runner(host: Any) -> delivery.Run:
    """Run a command (with its stdin) on a pyinfra host, for the delivery."""

    def run(command: str, stdin: str | None = None) -> tuple[bool, str, str]:
        return tuple(run_command(host, command, stdin=stdin))  # type: ignore[return-value]

    return run


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
    started = begin_step(run, "take the deploy lock")
    ok, out, err = run_command(host, commands.lock_acquire(run.settings.lock_path, info.to_json()))
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
    started = begin_step(run, "preflight")
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
