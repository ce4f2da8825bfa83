"""A release going live on each host, and coming back where it failed::

    go live                       caches (config/route/view/event, one PHP process),
                                  storage:link, php-fpm and nginx reloads (each configuration
                                  tested first), queue workers (stopped, queue:restart,
                                  started), /api/health through nginx until health_deadline
    warm up                       blue-green: the caches, storage:link, php-fpm reloaded
    restore or roll back          the previous commit and its build, when something failed

Each host goes through its steps in one operation, without waiting for the others between
them; its first failure stops it there. After a failure before migrations every host of the
batch is restored; after a failure once live, that host is rolled back to its previous commit
(and checked healthy) unless ``auto_rollback`` is off.
"""

from __future__ import annotations

import time
from typing import Any

from pyinfra import logger

from bgdeploy import commands
from bgdeploy.core.explain import explain
from bgdeploy.core.settings import Settings
from bgdeploy.strategies.release.operations import (
    add_operation,
    begin_step,
    fail_host,
    record_step,
    run_command,
    run_step,
)
from bgdeploy.strategies.release.run import HostRun, ReleaseRun, current

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
        ok = run_step(release, run, host, step)
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
        _, out, _ = run_command(host, command, timeout=30)
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
    started = begin_step(run, "verify health")
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
        started = begin_step(run, f"restore: {step}")
        ok, out, err = run_command(host, command, pty=True)
        record_step(run, f"restore: {step}", started, ok, "" if ok else explain(out, err))
        if not ok:
            return _restore_failed(release, run, host, f"restore: {step}", explain(out, err))
    outcome.sha_after = outcome.sha_before
    started = begin_step(run, "restore: verify health")
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
