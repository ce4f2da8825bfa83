"""What every step of the release is made of: running a command on a host, recording the
step's result, and adding the step to pyinfra as an operation.

A step's function runs at execute time on one host: it runs its commands through the
executor (:func:`run_command`, :func:`run_step`), records each as a
:class:`bgdeploy.core.release_report.StepResult` (:func:`record_step`) and, when one fails,
marks the host failed (:func:`fail_host`) and, before migrations, stops its batch
(:func:`abort_batch`). It returns whether it succeeded, and never raises for the host's
failure: pyinfra would drop the host, and the release must still restore it, journal and
release the lock.

Each step is added with :func:`add_operation`: every host gets every operation (so they all
share one order) and a ``when`` decides at execute time where it acts (pyinfra's ``_if``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pyinfra import logger
from pyinfra.operations import python

from bgdeploy import commands
from bgdeploy.core.explain import explain, first_line
from bgdeploy.core.release_report import StepResult
from bgdeploy.fleet import events, pyinfra_backend
from bgdeploy.fleet.executor import CommandResult
from bgdeploy.strategies.release.run import HostRun, ReleaseRun

COMMAND_TIMEOUT = 1800
"""Seconds any one command of a release may take (composer and npm on a slow mirror)."""

STAGES = {
    "Take the deploy lock": "lock",
    "Preflight": "preflight",
    "Already live?": "preflight",
    "Check out the release": "build",
    "Install dependencies": "build",
    "Receive the assets": "build",
    "Snapshot the database": "snapshot",
    "Run migrations": "migrate",
    "Go live": "go live",
    "Warm up": "build",
    "Smoke-test the idle colour": "smoke",
    "Switch colours": "switch",
    "Canary": "canary window",
    "Monitor health": "health watch",
    "Restore the previous release": "restore",
    "Write the journal": "finish",
    "Release the deploy lock": "finish",
    "Finish": "finish",
}
"""The stage of the run each operation belongs to (what the live view shows above the
hosts); an operation not listed is a stage of its own name."""


def run_command(
    host: Any,
    command: str,
    *,
    pty: bool = False,
    timeout: int = COMMAND_TIMEOUT,
    stdin: str | None = None,
) -> CommandResult:
    """Run one command of the release on ``host`` (a pyinfra ``Host``) through the executor
    (its pyinfra backend); the result unpacks as (succeeded, stdout, stderr). Never raises for
    the host's failure.

    ``pty``: under a terminal (stderr then arrives with stdout). The release's steps run so:
    when the deploy is stopped and its SSH connection closes, they get SIGHUP and stop, rather
    than go on changing the host behind the recovery's back.
    """
    return pyinfra_backend.run_on(host, command, timeout=timeout, stdin=stdin, pty=pty)


def run_step(release: ReleaseRun, run: HostRun, host: Any, step: str) -> bool:
    """Run release step ``step`` (one of :func:`bgdeploy.commands.release_steps`: ``check
    out``, ``composer install``, ``caches``, ...) on ``host`` for the release's commit, under
    a terminal, and record it; a failure marks the host failed at that step with the lines
    that explain it. Returns whether it succeeded."""
    assert release.sha is not None
    command = dict(commands.release_steps(run.settings, run.live_dir, release.sha))[step]
    started = begin_step(run, step)
    ok, out, err = run_command(host, command, pty=True)
    message = "" if ok else explain(out, err)
    record_step(run, step, started, ok, message)
    if not ok:
        fail_host(run, step, message, host)
    release.save()
    return ok


def begin_step(run: HostRun, name: str) -> float:
    """Say that step ``name`` starts on the host (the operator's live view shows it); the
    monotonic time to pass to :func:`record_step`."""
    events.emit("step_start", host=run.name, name=name)
    return time.monotonic()


def record_step(run: HostRun, name: str, started: float, ok: bool, message: str = "") -> None:
    """Add step ``name`` (begun at ``started``, a monotonic time) to the host's outcome: ok
    or failed, with the ``message`` that explains a failure."""
    run.last_step_end = time.monotonic()
    seconds = round(time.monotonic() - started, 2)
    run.outcome.steps.append(
        StepResult(name=name, seconds=seconds, result="ok" if ok else "failed", message=message)
    )
    events.emit("step_end", host=run.name, name=name, ok=ok, seconds=seconds, message=message)


def fail_host(run: HostRun, step: str, message: str, host: Any) -> None:
    """Mark the host failed at ``step`` with ``message`` (what the report and the FAILED line
    show), and log it under the pyinfra ``host``'s prefix."""
    run.outcome.failed_step = step
    run.outcome.message = message
    run.outcome.result = "failed"
    logger.error(f"{host.print_prefix}{step} failed: {message}")


def abort_batch(release: ReleaseRun, batch: int, host: str, step: str) -> None:
    """Stop ``batch``: ``step`` failed on ``host`` (the other hosts' notes say why)."""
    run = release.hosts.get(host)
    cause = first_line(run.outcome.message) if run is not None else ""
    release.aborted_batches.setdefault(
        batch, f"{step} failed on {host}" + (f": {cause}" if cause else "")
    )
    release.save()


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
    stage = STAGES.get(name, name)

    def staged(state: Any, host: Any, **kw: Any) -> bool:  # pyinfra passes these by name
        events.emit("stage", name=stage)
        return function(state, host, **kw)

    python.call(
        name=name,
        function=staged,
        _if=when,
        _ignore_errors=ignore_errors,
        **kwargs,
    )
