"""After Ctrl-C in ``bgdeploy deploy``: put back what the interrupted deploy changed.

When the operator presses Ctrl-C, :func:`bgdeploy.strategies.deploying.deploy` stops pyinfra
(its build commands run under a terminal on the hosts, so they stop with it) and calls
:func:`recover`, which goes over every web host again over SSH (Fabric, strict host keys):

- a host whose lock this deploy does not hold is left alone (another deploy's lock is never
  touched; a host the deploy had not locked yet is reported skipped);
- in place, a host that was not done goes back to its previous commit and build, with the
  release's own restore steps (:func:`bgdeploy.commands.release_steps`), and must answer
  ``/api/health`` from it; a host that finished before the interruption is left as it is;
- blue-green, the idle colour being built was never live and stays as it is (not marked
  built); every web host is put back on the colour live before the deploy, whether the
  interrupt cut a switch short or came after it (:func:`bgdeploy.strategies.switch.recover`);
- the interruption is journaled (a ``deploy_fail`` line) and the lock released.

The live release keeps serving; the report says, per host, what was put back.
"""

from __future__ import annotations

import time
from typing import Any

from bgdeploy import commands
from bgdeploy.checks import smoke
from bgdeploy.core import journal, lock
from bgdeploy.core.errors import BgdeployError
from bgdeploy.core.explain import explain, first_line
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.release_report import ReleaseReport, StepResult
from bgdeploy.core.render import COLOURS
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import fabric_backend, remote, runner
from bgdeploy.fleet.colours import other
from bgdeploy.fleet.executor import UNLIMITED_SECONDS
from bgdeploy.strategies import switch


def recover(
    env: str, report: ReleaseReport, progress: Progress = quiet, strategy: str = "in-place"
) -> ReleaseReport:
    """Put back what an interrupted deploy changed, host by host, over SSH (Fabric).

    On every web host whose lock this deploy holds (``report.run``): a host that was not done
    goes back to its previous commit and build (the same steps as the release's restore, from
    :func:`bgdeploy.commands.release_steps`) and is checked healthy; the interruption is
    journaled; the lock is released. Another deploy's lock is never touched.

    Blue-green: the idle colour being built was never live and stays as it is (not marked
    built); every web host is put back on the colour live before the deploy, whether the
    interrupt cut a switch short or came after it (:func:`bgdeploy.strategies.switch.recover`).
    """
    environment = runner.check_environment(env)
    targets = remote.targets(env, ("web",))
    blue_green = strategy == "blue-green"
    colours = _recover_colours(env, environment, report, progress) if blue_green else ""

    def task(host: fabric_backend.Host) -> str:
        settings = environment.settings[host.name]
        outcome = report.host(host.name, ["web"])
        held = host.run(commands.lock_read(settings.lock_path)).reached()
        holder = lock.parse_lock(held.stdout)
        if holder is None or holder.run != report.run:
            if outcome.result == "pending":
                outcome.result = "skipped"
                outcome.message = "interrupted before this host was locked"
            return outcome.message
        if blue_green:
            detail = _blue_green_note(outcome, colours)
        else:
            detail = _recover_host(host, settings, outcome, report, progress)
        entry = journal.new_entry(
            "deploy_fail",
            host=host.name,
            env=env,
            ref=report.ref,
            sha=report.sha,
            sha_before=outcome.sha_before,
            colour=outcome.colour if outcome.colour in ("blue", "green") else None,
            result="failed",
            steps=[journal.Step(s.name, s.seconds, s.result) for s in outcome.steps],
            message=f"interrupted (Ctrl-C): {detail}",
            details={"run": report.run, "strategy": strategy, "interrupted": True},
        )
        host.run(
            commands.join(
                journal.journal_append_command(settings.journal_path, entry),
                commands.lock_release(settings.lock_path, report.run),
            )
        ).reached()
        return detail

    for result in fabric_backend.run_tasks(targets, task):
        outcome = report.host(result.host, ["web"])
        if not result.ok:
            outcome.result = "failed"
            outcome.message = f"recovery failed: {result.error}"
        progress(f"{result.host}: {outcome.message or outcome.result}")
    report.error = "interrupted (Ctrl-C)"
    return report


def _recover_colours(env: str, environment: Any, report: ReleaseReport, progress: Progress) -> str:
    """Every web host back on the colour live before the blue-green deploy; says what serves."""
    # The colour the deploy built (each outcome keeps it); the other one was live.
    built = {
        o.colour
        for o in report.web_hosts
        if o.colour in COLOURS and o.result not in ("ok", "unchanged", "rolled_back")
    }
    if len(built) != 1:
        return "the live colour serves, as before"
    live = other(built.pop())
    fleet = switch.FabricFleet(remote.targets(env, ("web",)))
    try:
        done = switch.recover(
            fleet, environment.settings[environment.web[0]], live, who=report.who or None,
            reason="interrupted deploy (Ctrl-C)",
        )  # fmt: skip
    except BgdeployError as error:
        done, problem = None, str(error)
    else:
        problem = "" if done is None or done.ok else "; ".join(r.summary() for r in done.results)
    finally:
        fleet.close()
    if problem:
        note = f"NOT every web host is back on {live}: {problem}"
    elif done is None:
        note = f"{live} serves, as before (the switch had not begun)"
    else:
        note = f"{live} serves again (switched back)"
    progress(note)
    return note


def _blue_green_note(outcome: Any, colours: str) -> str:
    if outcome.result in ("ok", "unchanged", "rolled_back"):
        outcome.message = f"{outcome.result} before the interruption; left as it is"
    else:
        outcome.result = "interrupted"
        outcome.message = f"interrupted; {colours}"
    return outcome.message


def _recover_host(
    host: fabric_backend.Host,
    settings: Settings,
    outcome: Any,
    report: ReleaseReport,
    progress: Progress,
) -> str:
    if outcome.result in ("ok", "unchanged", "rolled_back"):
        outcome.message = f"{outcome.result} before the interruption; left as it is"
        return outcome.message
    outcome.result = "interrupted"
    if not outcome.code_changed:
        outcome.message = "interrupted before anything changed"
        return outcome.message
    if not outcome.sha_before or not outcome.colour:
        outcome.message = "interrupted during the first deploy of this colour: nothing to restore"
        return outcome.message
    directory = f"{settings.app_root}/{outcome.colour}"
    progress(f"{outcome.host}: restoring {outcome.sha_before[:12]} in {directory}")
    for step, command in commands.release_steps(
        settings, directory, outcome.sha_before, restore=True
    ):
        started = time.monotonic()
        done = host.run(command, pty=True, timeout=UNLIMITED_SECONDS).reached()
        ok = done.ok
        why = "" if ok else explain(done.stdout, done.stderr)
        outcome.steps.append(
            StepResult(f"restore: {step}", round(time.monotonic() - started, 2),
                       "ok" if ok else "failed", why)
        )  # fmt: skip
        if not ok:
            outcome.result = "failed"
            outcome.message = (
                f"interrupted; RESTORE FAILED at {step}: {first_line(why)}; the host may serve "
                "a broken release"
            )
            return outcome.message
    healthy = smoke.wait_healthy(host.run, settings, outcome.sha_before)
    outcome.sha_after = outcome.sha_before
    outcome.message = f"interrupted; previous release {outcome.sha_before[:12]} restored" + (
        "" if healthy else ", but it is NOT healthy"
    )
    if not healthy:
        outcome.result = "failed"
    return outcome.message
