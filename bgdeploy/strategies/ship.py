"""``bgdeploy ship ENV --ref REF``: the runbook's automatic deployment, end to end, for one commit.

The runbook's recommended path ("merge to main, the pipeline deploys to staging, runs the
integration and E2E tests there, deploys a 5 % canary to production, watches it, promotes or
rolls back, and tells #deployments"), as one command a CI job runs::

    preflight         ENV's pre-deployment checklist (bgdeploy preflight, blue-green): a
                      failed check refuses (exit 3) before anything changes
    staging deploy    a blue-green deploy of REF to the staging environment (group_data
                      ``staging_environment`` or ``--staging``): built, smoke-tested on the
                      idle colour, switched, watched; a failure is switched back there
    staging checks    the commands of group_data ``staging_checks`` (an E2E suite), run here
                      one after the other, told the staging URLs and the release; any exit
                      but 0 stops the ship
    canary            a blue-green canary deploy of REF to ENV (``--canary PCT``, default
                      ``canary_percent``: 5 %): the metric gate over ``canary_window``, then
                      promoted or every client sent back

A stage that fails stops the ship: nothing after it runs, so a release that fails on staging
never reaches ENV (its colours and journal untouched), and a canary that is sent back leaves
staging on the release (staging is where it is looked at). Every deploy announces itself as
``bgdeploy deploy`` does; a failed staging check is announced as a failed deploy of staging.
Both deploys share the ship's run id (their journal lines say ``"run": ID``), and each
environment's web hosts get a ``ship`` journal line with the stages' results.

Exit codes as everywhere: 0 shipped (or already live), 1 a stage failed (what failed is
rolled back or sent back), 2 bad input, 3 refused by a policy (window, approvals, lock, a
failed preflight check), all before anything changed; 130 after a Ctrl-C (the deploy under
way puts its hosts back, as ``bgdeploy deploy`` does, and nothing after it runs).

Secrets: each deploy runs with the variables of its own environment. The staging deploy gets
``BGDEPLOY_STAGING_<NAME>`` in place of ``BGDEPLOY_<NAME>`` when set, and never ENV's own
(an inventory such as the sandbox's may supply its own).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bgdeploy.checks import preflight
from bgdeploy.core import journal, lock
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import BgdeployError, ConfigError
from bgdeploy.core.progress import Progress, RunObserver, quiet
from bgdeploy.core.release_report import ReleaseReport
from bgdeploy.core.settings import ROOT, SECRET_VARIABLES, Settings
from bgdeploy.fleet import fabric_backend, remote, runner
from bgdeploy.oncall import hooks, notify
from bgdeploy.oncall.hooks import HookResult as CheckRun
from bgdeploy.strategies import deploying

STAGES = ("preflight", "staging deploy", "staging checks", "canary")
OUTPUT_LINES = 12
"""How many of a failed staging check's last output lines are shown."""


@dataclass(frozen=True)
class ShipRequest:
    """A checked ``bgdeploy ship``: both deploys, checked without connecting."""

    env: str
    ref: str
    production: deploying.DeployRequest
    staging: deploying.DeployRequest | None
    checks: tuple[tuple[str, ...], ...]
    check_timeout: float
    environ: Mapping[str, str]
    """The environment ship started with (before any inventory added its secrets)."""
    run_log_dir: str | None = None
    """ENV's ``run_log_dir``: where the ship's log goes."""
    observer: RunObserver | None = None
    log_path: str = ""


@dataclass
class Stage:
    """One stage's outcome: ``ok``, ``failed``, ``refused`` or ``skipped`` (not reached)."""

    name: str
    env: str
    result: str = "skipped"
    seconds: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "env": self.env, "result": self.result,
                "seconds": round(self.seconds, 1), "detail": self.detail}  # fmt: skip


@dataclass
class ShipReport:
    """The whole ship: each stage, the run id both deploys share, the exit code."""

    env: str
    ref: str
    run_id: str
    stages: list[Stage] = field(default_factory=list)
    sha: str = ""
    exit_code: int = 0

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    @property
    def shipped(self) -> bool:
        return self.exit_code == 0

    def summary(self) -> str:
        failed = next((s for s in self.stages if s.result in ("failed", "refused")), None)
        release = f"{self.ref} ({self.sha[:12]})" if self.sha else self.ref
        if failed is None:
            return f"shipped {release} to {self.env} (run {self.run_id})"
        return f"ship of {release} stopped at {failed.name} ({failed.result}): run {self.run_id}"

    def format_table(self) -> str:
        """One row per stage, then the summary::

        stage           env      result   seconds  detail
        preflight       prod     ok           2.1  12 checks passed
        """
        lines = [f"{'stage':<15} {'env':<16} {'result':<8} {'seconds':>7}  detail"]
        for stage in self.stages:
            first, *rest = stage.detail.splitlines() or [""]
            lines.append(
                f"{stage.name:<15} {stage.env:<16} {stage.result:<8} {stage.seconds:7.1f}  {first}"
            )
            lines += [" " * 51 + line for line in rest]
        lines.append(self.summary())
        lines.append(f"journal: bgdeploy history {self.env} (run {self.run_id})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "ref": self.ref, "sha": self.sha, "run": self.run_id,
                "shipped": self.shipped, "exit_code": self.exit_code,
                "summary": self.summary(),
                "stages": [stage.to_dict() for stage in self.stages]}  # fmt: skip


def check_request(
    env: str,
    ref: str,
    *,
    staging: str | None = None,
    canary: float | None = None,
    approved_by: str | None = None,
    environ: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> ShipRequest:
    """Check both deploys without connecting: ENV's canary deploy (window, approvals that no
    commit can supply, the canary's share) and the staging deploy. Raises
    :class:`ConfigError` (exit 2) or :class:`~bgdeploy.core.errors.PolicyRefusal` (exit 3)."""
    pristine = dict(os.environ if environ is None else environ)
    environment = runner.check_environment(env, {"ref": ref})
    settings = environment.settings[environment.web[0]]
    percent = canary if canary is not None else settings.canary_percent
    production = deploying.check_request(
        env, ref, strategy="blue-green", canary=percent, approved_by=approved_by, now=now
    )
    staging_env = staging or settings.staging_environment
    if staging_env == env:
        raise ConfigError(f"the staging environment of {env} cannot be {env} itself")
    staging_request = None
    if staging_env is not None:
        with environment_of(staging_env, env, pristine):
            staging_request = deploying.check_request(
                staging_env, ref, strategy="blue-green", approved_by=approved_by, now=now
            )
    if settings.staging_checks and staging_request is None:
        raise ConfigError(
            f"group_data of {env} lists staging_checks but no staging_environment: "
            "set it, or pass --staging ENV"
        )
    return ShipRequest(
        env=env,
        ref=production.ref,
        production=production,
        staging=staging_request,
        checks=settings.staging_checks,
        check_timeout=settings.staging_check_timeout,
        environ=pristine,
        run_log_dir=settings.run_log_dir,
    )


def ship(
    request: ShipRequest,
    progress: Progress = quiet,
    observer: RunObserver | None = None,
    run_id: str | None = None,
    log_path: str = "",
    on_stage: Callable[[str, str], None] | None = None,
) -> ShipReport:
    """Run the stages in order, stopping at the first that does not pass (see the module).

    ``observer`` follows both deploys' pyinfra logs and events (the CLI's live view and the
    ship's log file, ``log_path``, journaled by both); ``on_stage(name, env)`` is told when a
    stage starts (the live view starts a new set of host lines)."""
    report = ShipReport(request.env, request.ref, run_id or lock.new_run_id())
    request = dataclasses.replace(request, observer=observer, log_path=log_path)
    staging_env = request.staging.env if request.staging else "-"
    report.stages = [
        Stage("preflight", request.env),
        Stage("staging deploy", staging_env),
        Stage("staging checks", staging_env),
        Stage("canary", request.env),
    ]
    steps = (
        ("preflight", _preflight),
        ("staging deploy", _staging_deploy),
        ("staging checks", _staging_checks),
        ("canary", _canary),
    )
    for name, step in steps:
        stage = report.stage(name)
        if on_stage is not None:
            on_stage(name, stage.env)
        progress(f"== ship {report.run_id}: {name} ({stage.env})")
        started = time.monotonic()
        try:
            code = step(request, report, stage, progress)
        except BgdeployError as error:
            stage.result = "refused" if error.exit_code == 3 else "failed"
            stage.detail, code = str(error), error.exit_code
        except deploying.Interrupted as interrupted:  # Ctrl-C: that deploy's hosts recovered
            stage.result, stage.detail = "failed", f"interrupted: {interrupted.report.summary()}"
            code = 130
        stage.seconds = time.monotonic() - started
        first = stage.detail.splitlines()[0] if stage.detail else ""
        progress(f"   {name}: {stage.result} ({stage.seconds:.1f} s) {first}".rstrip())
        if code != 0:
            report.exit_code = code
            break
    _journal(request, report, progress)
    return report


# Stages
# ------


def _preflight(request: ShipRequest, report: ShipReport, stage: Stage, progress: Progress) -> int:
    checked, environment = preflight.check_request(request.env, request.ref, "blue-green")
    checklist = preflight.run(checked, environment)
    report.sha = checklist.sha or ""
    code = checklist.exit_code()
    problems = [c for c in checklist.checks if c.status != preflight.PASS]
    stage.detail = "; ".join(
        f"{c.name} {c.status}: {(c.detail.splitlines() or [''])[0]}" for c in problems
    )
    if code == 0:
        stage.result = "ok"
        stage.detail = stage.detail or f"{len(checklist.checks)} checks passed"
    else:
        stage.result = "refused" if code == 3 else "failed"
    return code


def _staging_deploy(
    request: ShipRequest, report: ShipReport, stage: Stage, progress: Progress
) -> int:
    if request.staging is None:
        stage.detail = "no staging_environment: straight to the canary"
        return 0
    with environment_of(request.staging.env, request.env, request.environ):
        deployed = deploying.deploy(
            request.staging, progress=progress, observer=request.observer,
            run_id=report.run_id, log_path=request.log_path,
        )  # fmt: skip
    return _deploy_result(deployed, stage, report)


def _staging_checks(
    request: ShipRequest, report: ShipReport, stage: Stage, progress: Progress
) -> int:
    if request.staging is None or not request.checks:
        stage.detail = "none configured (group_data staging_checks)"
        return 0
    variables = {**request.environ, **_check_variables(request, report)}
    lines = []
    for argv in request.checks:
        result = run_check(argv, variables, request.check_timeout)
        line = describe_check(argv, result)
        progress(f"   staging check {line}")
        lines.append(line)
        if not result.ok:
            stage.result, stage.detail = "failed", "\n".join(lines + output_tail(result))
            _announce_check_failure(request, report, line)
            return 1
    stage.result, stage.detail = "ok", "\n".join(lines)
    return 0


def _canary(request: ShipRequest, report: ShipReport, stage: Stage, progress: Progress) -> int:
    with environment_of(request.env, request.env, request.environ):
        deployed = deploying.deploy(
            request.production, progress=progress, observer=request.observer,
            run_id=report.run_id, log_path=request.log_path,
        )  # fmt: skip
    return _deploy_result(deployed, stage, report)


def _deploy_result(deployed: ReleaseReport, stage: Stage, report: ShipReport) -> int:
    report.sha = deployed.sha or report.sha
    code = deployed.exit_code()
    stage.result = "ok" if code == 0 else "refused" if code == 3 else "failed"
    stage.detail = deployed.summary()
    return code


# Staging checks
# --------------


def run_check(argv: tuple[str, ...], variables: Mapping[str, str], timeout: float) -> CheckRun:
    """Run one staging check from the deploy repository, as a hook runs
    (:func:`bgdeploy.oncall.hooks.run_process`: a session of its own, stopped over its time).
    Never raises."""
    return hooks.run_process(argv, variables, timeout, ROOT)


def describe_check(argv: tuple[str, ...], result: CheckRun) -> str:
    """``npm run e2e: passed (95.2 s)`` or ``...: FAILED (exit 1, 30.1 s)``."""
    command = " ".join(argv)
    if result.ok:
        return f"{command}: passed ({result.seconds:.1f} s)"
    return f"{command}: FAILED ({result.problem or f'exit {result.code}'}, {result.seconds:.1f} s)"


def output_tail(result: CheckRun) -> list[str]:
    """A failed check's last lines of output, indented."""
    return [f"    {line}" for line in result.output.strip().splitlines()[-OUTPUT_LINES:]]


def _check_variables(request: ShipRequest, report: ShipReport) -> dict[str, str]:
    """What a staging check is told: the staging URL (``app_url``), each staging web host's
    public address as this machine reaches it, the release and the run."""
    assert request.staging is not None
    environment = runner.check_environment(request.staging.env)
    settings: Settings = environment.settings[environment.web[0]]
    urls = []
    for target in remote.targets(request.staging.env):
        port = target.data.get("http_port") or settings.public_port
        urls.append(f"http://{target.hostname}:{port}")
    return {
        "BGDEPLOY_STAGE": "staging-check",
        "BGDEPLOY_ENV": request.staging.env,
        "BGDEPLOY_REF": request.ref,
        "BGDEPLOY_RELEASE": report.sha,
        "BGDEPLOY_RUN_ID": report.run_id,
        "BGDEPLOY_STAGING_URL": settings.app_url,
        "BGDEPLOY_STAGING_HOSTS": " ".join(urls),
    }


def _announce_check_failure(request: ShipRequest, report: ShipReport, line: str) -> None:
    assert request.staging is not None
    event = notify.DeployEvent(
        "failed", env=request.staging.env, app=request.staging.app, ref=request.ref,
        sha=report.sha, who=journal.operator_name(), reason=f"staging check failed: {line}",
        details=[f"ship {report.run_id}: {request.env} was not touched"],
    )  # fmt: skip
    notify.notify(event)


# Secrets per environment, and the journal
# ----------------------------------------


@contextlib.contextmanager
def environment_of(target: str, production: str, pristine: Mapping[str, str]) -> Iterator[None]:
    """Run the block with the process environment ship started with, the secrets being
    ``target``'s: for an environment other than ``production``, ``BGDEPLOY_STAGING_<NAME>``
    in place of ``BGDEPLOY_<NAME>``, and never production's own (its inventory may supply
    them, as the sandbox's does)."""
    saved = dict(os.environ)
    values = dict(pristine)
    if target != production:
        for variable in SECRET_VARIABLES.values():
            staging_value = pristine.get(variable.replace("BGDEPLOY_", "BGDEPLOY_STAGING_", 1))
            values.pop(variable, None)
            if staging_value:
                values[variable] = staging_value
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _journal(request: ShipRequest, report: ShipReport, progress: Progress) -> None:
    """A ``ship`` line on the web hosts of every environment a stage reached."""
    reached = {stage.env for stage in report.stages if stage.result != "skipped"} - {"-"}
    stages = [stage.to_dict() for stage in report.stages]
    for env in sorted(reached):
        try:
            hosts = remote.targets(env)
        except BgdeployError as error:
            progress(f"   journal of {env} not written: {error}")
            continue
        paths = {h.name: settings_mod.from_data(h.data, env).journal_path for h in hosts}

        def command(host: remote.Target, env: str = env, paths: dict[str, str] = paths) -> str:
            entry = journal.new_entry(
                "ship", host=host.name, env=env, ref=request.ref, sha=report.sha or None,
                result="ok" if report.shipped else "failed",
                message=report.summary(), details={"run": report.run_id, "stages": stages},
            )  # fmt: skip
            return journal.journal_append_command(paths[host.name], entry)

        for result in fabric_backend.run_all(hosts, command):
            if not result.ok:
                progress(f"   journal of {result.host} not written: {result.summary()}")
