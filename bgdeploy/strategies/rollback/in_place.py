"""Rolling back in place (minutes): the live colour goes back to the previous good commit.

Chosen when the colour that is not live cannot be switched back to (a host disagrees, or it
holds no built, verified release other than the live one). The target is ``--to``'s commit
or, without it, the previous good commit from the journals
(:func:`bgdeploy.strategies.rollback.policy.select_target`). On every reachable host not
already built at it, in parallel: the commit is fetched when the host lacks it (or sent by the
operator, with ``code_delivery = "push"``: :mod:`bgdeploy.fleet.delivery`), then the
release's own restore steps run (:func:`bgdeploy.commands.release_steps`: forced checkout,
composer, npm, caches, storage link, php-fpm and nginx reloads, queue workers), then
``/api/health`` is watched until it answers 200 from that commit; the colour is marked built
at it and the ``rollback`` line journaled, in one round trip.

Ctrl-C stops the commands on the hosts (each step runs under a terminal, and the process group
of the step running is recorded so that it can be stopped from a new connection), journals
the interruption and releases the lock; running the rollback again with ``--to`` the same
commit finishes it (a host whose live colour is checked out at the target but not marked
built is built again).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bgdeploy import commands
from bgdeploy.checks import smoke
from bgdeploy.core import journal, refs
from bgdeploy.core.errors import OperationFailed
from bgdeploy.core.journal import JournalEntry
from bgdeploy.core.progress import Progress
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import delivery, remote
from bgdeploy.fleet.colours import HostColours
from bgdeploy.strategies.rollback import migrations, policy
from bgdeploy.strategies.rollback.hosts import Hosts
from bgdeploy.strategies.rollback.record import RollbackReport, journal_entry
from bgdeploy.strategies.rollback.request import RollbackRequest

STEP_TIMEOUT = 1800
"""Seconds one restore step may take (composer and npm on a slow mirror), as in a release."""
JOURNAL_LINES = 5000
"""How many of the last journal lines of each host are read to choose the target."""


def in_place(
    request: RollbackRequest,
    hosts: Hosts,
    colours: dict[str, HostColours],
    to_sha: str | None,
    run: str,
    progress: Progress,
) -> RollbackReport:
    """Roll the live colour of every reachable host back to ``to_sha`` (``--to``) or the
    previous good commit, under the deploy lock of ``run``; ``--migrations`` first.
    Raises :class:`OperationFailed` when there is nothing to go back to."""
    settings = request.settings
    live = {name: c.heads.get(c.current, "") for name, c in colours.items() if not c.error}
    entries = _journals(hosts, settings)
    if to_sha:
        target = to_sha
        if to_sha in policy.bad_releases(entries):
            progress(f"{refs.short(to_sha)} was marked bad; rolling back to it as asked (--to)")
    else:
        try:
            target = policy.select_target(entries, live)
        except OperationFailed as error:
            raise OperationFailed(
                policy.nothing_message(request.env, colours, str(error))
            ) from None
    report = RollbackReport(request.env, "in place", target=target)
    moving = [
        name
        for name in hosts.names
        if not colours[name].error and not policy.built_at(colours[name], target)
    ]
    if not moving:
        if request.migrations:
            report.notes.append("--migrations: not run (it needs the code of a release left)")
        report.results = [_unmoved(name, colours[name], target) for name in hosts.names]
        report.results += hosts.down_results()
        report.notes.append("nothing to do: every reachable host serves the target already")
        return report
    if request.migrations:
        migrations.roll_back(request, hosts, colours, report, progress)
    progress(
        f"rolling back in place to {refs.short(target)} on {', '.join(moving)} "
        "(checkout, composer, npm, caches, reloads, workers, health)"
    )
    done: dict[str, remote.HostResult] = {}
    request.event("stage", name="rollback in place")
    steps = 2 + len(commands.release_steps(request.settings, "/", target, restore=True))
    request.event("plan", hosts=dict.fromkeys(moving, steps))  # fetch, the steps, health

    def one(name: str) -> None:
        done[name] = _restore_host(request, hosts, name, colours[name], target, run, report)

    pool = ThreadPoolExecutor(max_workers=len(moving))
    try:
        for future in [pool.submit(one, name) for name in moving]:
            future.result()
    except KeyboardInterrupt:
        progress("interrupted: stopping the commands on the hosts")
        hosts.stop()
        pool.shutdown(wait=True)
        _interrupted(request, hosts, moving, colours, target, run, progress)
        raise
    finally:
        pool.shutdown(wait=False)
    report.results = [
        done.get(name) or _unmoved(name, colours[name], target) for name in hosts.names
    ] + hosts.down_results()
    return report


def _interrupted(
    request: RollbackRequest,
    hosts: Hosts,
    names: list[str],
    colours: dict[str, HostColours],
    target: str,
    run: str,
    progress: Progress,
) -> None:
    """After Ctrl-C: over new connections, stop the step still running (its process group)
    and journal the interruption on every host that was being rolled back (the lock is
    released on the way out, :func:`bgdeploy.fleet.fleetlock.hold`), so that the rollback can be
    run again."""
    again = Hosts([t for t in hosts.targets if t.name in names])
    finish = f"bgdeploy rollback {request.env} --to {target}"
    message = f"interrupted (Ctrl-C): the host may be half rolled back; finish with `{finish}`"

    def one(name: str) -> None:
        settings = request.environment.settings[name]
        facts = colours[name]
        entry = journal_entry(
            request, name, target, facts.heads.get(facts.current, ""), "failed", "in place",
            colour=facts.current, message=message, extra={"run": run, "interrupted": True},
        )  # fmt: skip
        ok, _, err = again.command(
            name,
            commands.join(
                commands.stop_group(_group_file(settings, run)),
                journal.journal_append_command(settings.journal_path, entry),
            ),
        )
        progress(f"{name}: " + ("stopped" if ok else f"NOT stopped: {err.strip()}"))

    try:
        again.open_all()
        again.each(one)
    finally:
        again.close()
    progress(f"the hosts may be half rolled back: finish with `{finish}`")


def _unmoved(name: str, facts: HostColours, target: str) -> remote.HostResult:
    """A reachable host that was not rolled back: already at the target, or unreadable."""
    if facts.error:
        return remote.HostResult(name, False, error=f"{facts.error}: not rolled back")
    return remote.HostResult(name, True, detail=f"already at {refs.short(target)}")


def _journals(hosts: Hosts, settings: Settings) -> tuple[JournalEntry, ...]:
    """Every reachable web host's journal (the last lines), merged in time order."""
    command = journal.journal_read_command(settings.journal_path, JOURNAL_LINES)
    texts: dict[str, str] = {}

    def one(name: str) -> None:
        ok, out, _ = hosts.command(name, command)
        if ok:
            texts[name] = out

    hosts.each(one)
    return journal.merge_histories({n: texts[n] for n in hosts.names if n in texts}).entries


def _restore_host(
    request: RollbackRequest,
    hosts: Hosts,
    name: str,
    facts: HostColours,
    target: str,
    run: str,
    report: RollbackReport,
) -> remote.HostResult:
    """The release's restore steps with ``target`` in the live colour, health, then the
    journal line in one round trip."""
    settings = request.environment.settings[name]
    started = time.monotonic()
    directory = f"{settings.app_root}/{facts.current}"
    left = facts.heads.get(facts.current, "")
    steps: list[journal.Step] = []
    # The commit may be unknown here (--to a release this host never had): fetched, or sent
    # by the operator (code_delivery = "push"), first.
    began = request.step_started(name, "fetch")
    missing = delivery.Delivery(settings).ensure(
        lambda command, stdin=None: hosts.command(name, command, stdin=stdin, timeout=STEP_TIMEOUT),
        directory,
        target,
    )
    steps.append(journal.Step("fetch", round(time.monotonic() - began, 2),
                              "failed" if missing else "ok"))  # fmt: skip
    request.step_ended(name, "fetch", not missing, began, missing[-200:])
    failure = f"fetch failed: {missing[-300:]}" if missing else ""
    restore = commands.release_steps(settings, directory, target, restore=True)
    group = _group_file(settings, run)
    for step, command in [] if failure else restore:
        began = request.step_started(name, step)
        command = commands.join(commands.record_group(group), command)
        ok, out, err = hosts.command(name, command, pty=True, timeout=STEP_TIMEOUT)
        request.step_ended(name, step, ok, began, "" if ok else (err or out).strip()[-200:])
        steps.append(
            journal.Step(step, round(time.monotonic() - began, 2), "ok" if ok else "failed")
        )
        if not ok:
            tail = (err or out).strip().splitlines()[-1:] or ["no output"]
            failure = f"{step} failed: {tail[0][-200:]}"
            break
    if not failure:
        began = request.step_started(name, "verify health")
        healthy = smoke.wait_healthy(lambda command: hosts.run(name, command), settings, target)
        request.step_ended(name, "verify health", healthy, began)
        steps.append(journal.Step("verify health", round(time.monotonic() - began, 2),
                                  "ok" if healthy else "failed"))  # fmt: skip
        if not healthy:
            failure = f"{settings.health_path} not healthy on {refs.short(target)}"
    result = "failed" if failure else "ok"
    entry = journal_entry(
        request, name, target, left, result, "in place", colour=facts.current, steps=steps,
        snapshot=report.snapshot, message=failure or None, extra={"run": run},
    )  # fmt: skip
    finish = [
        "" if failure else commands.mark_built(directory, target),
        journal.journal_append_command(settings.journal_path, entry),
        commands.forget_group(group),
    ]
    ok, _, err = hosts.command(name, commands.join(*finish))
    detail = f"{refs.short(left)} -> {refs.short(target)}, healthy"
    if not failure and not ok:
        failure = f"rolled back, but the journal was not written: {err.strip()[-200:]}"
    return remote.HostResult(
        name, not failure, seconds=time.monotonic() - started, detail=detail,
        error=f"{failure} (the host may serve a broken release: check it)" if failure else "",
    )  # fmt: skip


def _group_file(settings: Settings, run: str) -> str:
    """Where a host records the process group of the restore step running (for Ctrl-C)."""
    return f"{settings.app_root}/.bgdeploy/rollback-{run}.pgid"
