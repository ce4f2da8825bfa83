"""``bgdeploy deploy``: the operator's side of a deploy (in place, blue-green or canary).

:func:`check_request` checks everything it can without connecting (the ref's syntax, the
inventory, every host's settings, the deploy window); :func:`deploy` then runs the strategy's
deploy file (``deploys/release.py`` or ``deploys/blue_green.py``) through pyinfra, exactly as
an operator would by hand, and reads back the per-host record the deploy file keeps
(:class:`~bgdeploy.core.release_report.ReleaseReport`). Bad input raises
:class:`~bgdeploy.core.errors.ConfigError` (exit 2) and a closed window
:class:`~bgdeploy.core.errors.PolicyRefusal` (exit 3), both before pyinfra starts.

People are told when the deploy starts and how it ended (:func:`announce`; an emergency
deploy's window override too, :func:`announce_override`).

When the operator presses Ctrl-C, pyinfra is stopped (its build commands run under a terminal
on the hosts, so they stop with it) and :func:`bgdeploy.strategies.recovery.recover` puts
every host the deploy had touched back on its previous commit and build, journals the
interruption and releases the lock: the live release keeps serving.

A lock left behind by a deploy that died is broken with ``bgdeploy unlock``
(:mod:`bgdeploy.strategies.unlock`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgdeploy.core import approvals, journal, lock, refs, windows
from bgdeploy.core.errors import ConfigError, OperationFailed, PolicyRefusal
from bgdeploy.core.progress import Progress, RunObserver, quiet
from bgdeploy.core.release_report import ReleaseReport
from bgdeploy.fleet import runner
from bgdeploy.oncall import hooks as hooks_mod
from bgdeploy.oncall import notify
from bgdeploy.strategies import canary as canary_mod
from bgdeploy.strategies import recovery

DEPLOY_FILE = "deploys/release.py"
DEPLOY_FILES = {"in-place": DEPLOY_FILE, "blue-green": "deploys/blue_green.py"}
STRATEGIES = tuple(DEPLOY_FILES)


@dataclass(frozen=True)
class DeployRequest:
    """A checked ``bgdeploy deploy``: what pyinfra will be asked to do."""

    env: str
    ref: str
    force: bool
    allow_destructive: bool
    reason: str | None
    emergency_reason: str | None
    window: windows.WindowDecision
    strategy: str = "in-place"
    app: str = "bideshgomon"
    canary: float | None = None
    hooks: Mapping[str, list[str]] = field(default_factory=dict)
    """group_data's ``hooks`` (:mod:`bgdeploy.oncall.hooks`), beside ``hooks/STAGE/``."""
    hook_timeout: float = hooks_mod.DEFAULT_TIMEOUT
    run_log_dir: str | None = None
    """group_data's ``run_log_dir``: where the run's log goes (:mod:`bgdeploy.core.runlog`)."""
    ask: approvals.Ask = field(default_factory=approvals.Ask)
    """The kind of deploy and what the operator said for it (:mod:`bgdeploy.core.approvals`)."""

    @property
    def deploy_file(self) -> str:
        """The pyinfra deploy file of the strategy."""
        return DEPLOY_FILES[self.strategy]

    def data(self, run_id: str, report_path: str, log_path: str = "") -> dict[str, Any]:
        """The ``--data`` values for ``deploys/release.py`` (``log_path``: the run's log
        file, which the journal names)."""
        data: dict[str, Any] = {
            "ref": self.ref,
            "force": self.force,
            "allow_destructive": self.allow_destructive,
            "bgdeploy_run_id": run_id,
            "bgdeploy_report": report_path,
        }
        if log_path:
            data["bgdeploy_log"] = log_path
        if self.reason:
            data["reason"] = self.reason
        if self.emergency_reason:
            data["emergency_reason"] = self.emergency_reason
        if self.canary is not None:
            data["canary"] = self.canary
        data.update(self.ask.to_data())
        return data


def check_request(
    env: str,
    ref: str | None,
    *,
    force: bool = False,
    allow_destructive: bool = False,
    emergency: bool = False,
    reason: str | None = None,
    now: datetime | None = None,
    strategy: str = "in-place",
    canary: float | None = None,
    hotfix: bool = False,
    severity: str | None = None,
    approved_by: str | None = None,
    rollback_plan: str | None = None,
) -> DeployRequest:
    """Check a deploy request without connecting to any host.

    + env: the inventory (``inventories/ENV.py``)
    + ref: branch, tag or commit; None deploys group_data's ``ref``
    + emergency, reason, severity: ``--emergency --severity P0..P3 --reason TEXT`` overrides
      the deploy window
    + hotfix, approved_by, rollback_plan: the kind of deploy and its approvals
      (:mod:`bgdeploy.core.approvals`); approvals the commit's trailers may still supply are
      counted on the migrate host, once the commit is known

    Raises :class:`ConfigError` (exit 2) for a bad ref, environment, setting or option, and
    :class:`PolicyRefusal` (exit 3) outside the deploy window, with the next window, or when
    an approval rule is not met.
    """
    if strategy not in DEPLOY_FILES:
        raise ConfigError(f"--strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if strategy == "blue-green" and allow_destructive:
        raise ConfigError(
            "--allow-destructive is for in-place deploys: blue-green never runs migrations "
            "that drop or rename (the live colour shares the database)"
        )
    if canary is not None:
        canary = canary_mod.check_percent(canary)
        if strategy != "blue-green":
            raise ConfigError("--canary is a blue-green deploy: not with --strategy in-place")
    if ref is not None:
        refs.validate_ref(ref)
    if reason is not None and not reason.strip():
        raise ConfigError("--reason is empty: say why")
    if emergency and not reason:
        raise ConfigError("--emergency needs --reason TEXT: the override is journaled")
    ask = approvals.Ask.from_options(
        hotfix=hotfix,
        emergency=emergency,
        severity=severity,
        approved_by=approved_by,
        rollback_plan=rollback_plan,
    )
    data: dict[str, Any] = {"force": force, "allow_destructive": allow_destructive}
    if ref is not None:
        data["ref"] = ref
    environment = runner.check_environment(env, data)
    settings = environment.settings[environment.web[0]]
    if canary is not None:
        canary_mod.thresholds(settings)  # a window or threshold the gate cannot take: exit 2
        canary_mod.window_rules(settings)
    chosen = refs.validate_ref(ref if ref is not None else settings.ref)
    emergency_reason = reason.strip() if emergency and reason else None
    decision = windows.decide(
        settings.window, now or datetime.now(UTC), emergency_reason=emergency_reason
    )
    if not decision.allowed:
        raise PolicyRefusal(decision.describe() + "\n" + approvals.EMERGENCY_HINT)
    approval = approvals.decide(
        settings.approvals,
        ask,
        operator=journal.operator_name(),
        window_open=decision.regular,
        trailers=None,
    )
    if not approval.allowed:
        raise PolicyRefusal(approval.describe())
    return DeployRequest(
        env=env,
        ref=chosen,
        force=force,
        allow_destructive=allow_destructive,
        reason=reason.strip() if reason and not emergency else None,
        emergency_reason=emergency_reason,
        window=decision,
        strategy=strategy,
        app=settings.app_name,
        canary=canary,
        hooks=settings.hooks,
        hook_timeout=settings.hook_timeout,
        run_log_dir=settings.run_log_dir,
        ask=ask,
    )


class Interrupted(Exception):
    """The deploy was stopped with Ctrl-C; ``report`` says what the recovery did."""

    def __init__(self, report: ReleaseReport) -> None:
        super().__init__("interrupted")
        self.report = report


def deploy(
    request: DeployRequest,
    stream: bool = True,
    progress: Progress = quiet,
    observer: RunObserver | None = None,
    run_id: str | None = None,
    log_path: str = "",
) -> ReleaseReport:
    """Run the release and return its report (see :meth:`ReleaseReport.exit_code`).

    ``observer`` follows pyinfra's log and the run's events (the CLI's live view and log
    file); ``run_id`` names the run (a new one by default; ``bgdeploy ship`` gives its own to
    both its deploys); ``log_path``, the run's log file, is journaled on every host.

    Raises :class:`Interrupted` after a Ctrl-C, once the hosts are recovered, and
    :class:`PolicyRefusal` (exit 3, no host touched) when a pre-deploy hook fails.
    """
    run_id = run_id or lock.new_run_id()
    hooks_mod.refuse_unless_ok(run_hooks("pre-deploy", request, run_id, progress=progress))
    for outcome in announce(request, "started"):
        progress(outcome.line())
    with tempfile.TemporaryDirectory(prefix="bgdeploy-release-") as tmp:
        report_path = str(Path(tmp) / "report.json")
        data = request.data(run_id, report_path, log_path)
        try:
            result = runner.run_deploy(
                request.env,
                request.deploy_file,
                data,
                stream=stream,
                checked=True,
                observer=observer,
            )
        except KeyboardInterrupt:
            progress("interrupted: stopping pyinfra and restoring the hosts it changed")
            report = ReleaseReport.load(report_path) or ReleaseReport(
                env=request.env, ref=request.ref, run=run_id
            )
            recovery.recover(request.env, report, progress, strategy=request.strategy)
            raise Interrupted(report) from None
        report = ReleaseReport.load(report_path)
    if report is None:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise OperationFailed(
            f"pyinfra stopped before the release started (exit {result.returncode}):\n{tail}"
        )
    if request.window.emergency and report.refusal is None:
        for outcome in announce_override(request, report):
            progress(outcome.line())
    if report.refusal is None and result.returncode != 0 and report.ok:
        # pyinfra failed where the release did not record it (a lost connection).
        report.error = report.error or f"pyinfra exited {result.returncode}"
        for outcome in report.web_hosts:
            if outcome.host in result.failed_hosts and outcome.result in ("ok", "unchanged"):
                outcome.result = "failed"
    kind = outcome_kind(request, report)
    for outcome in announce(request, kind, report) if kind else []:
        progress(outcome.line())
    if kind in ("succeeded", "promoted"):
        run_hooks("post-deploy", request, run_id, report, kind, progress)
    elif kind in ("rolled_back", "failed"):
        run_hooks("on-failure", request, run_id, report, kind, progress)
    return report


def run_hooks(
    stage: str,
    request: DeployRequest,
    run_id: str,
    report: ReleaseReport | None = None,
    result: str = "",
    progress: Progress = quiet,
) -> hooks_mod.StageResult:
    """The operator's hooks of ``stage`` for this deploy (:mod:`bgdeploy.oncall.hooks`): told
    the release, the colour that serves after it and the outcome."""
    colours = {o.colour for o in report.web_hosts if o.colour} if report is not None else set()
    context = hooks_mod.Context(
        env=request.env, ref=request.ref, release=(report.sha if report else "") or "",
        strategy=request.strategy, colour=colours.pop() if len(colours) == 1 else "",
        run_id=run_id, result=result, canary=request.canary,
    )  # fmt: skip
    return hooks_mod.run_stage(
        stage, context, request.hooks, request.hook_timeout, progress=progress
    )


def outcome_kind(request: DeployRequest, report: ReleaseReport) -> str | None:
    """What to tell people when a deploy ended: ``promoted`` (a canary) or ``succeeded``,
    ``rolled_back`` (bgdeploy put the previous release back by itself: pages on-call),
    ``failed``; None when nothing changed (already live) or the deploy was refused."""
    if report.refusal is not None:
        return None
    webs = report.web_hosts
    if report.ok:
        if webs and all(outcome.result == "unchanged" for outcome in webs):
            return None
        return "promoted" if request.canary is not None else "succeeded"
    if any(outcome.result == "rolled_back" for outcome in webs):
        return "rolled_back"
    return "failed"


def announce(
    request: DeployRequest,
    kind: str,
    report: ReleaseReport | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[notify.NotifyResult]:
    """Tell #deployments (and, for a rollback or failure, #incidents and PagerDuty) what
    became of the deploy (:mod:`bgdeploy.oncall.notify`): the release, the colour, the hosts and,
    for
    a rollback or failure, each host's account (the canary gate's failed checks). Unconfigured
    receivers are skipped; a failing one is a line in the output, never a failed deploy."""
    webs = report.web_hosts if report is not None else []
    colours = {outcome.colour for outcome in webs if outcome.colour}
    details: list[str] = []
    if kind in ("rolled_back", "failed"):
        details = list(dict.fromkeys(f"{o.host}: {o.message}" for o in webs if o.message))
    failed_steps = {o.failed_step for o in webs if o.failed_step}
    try:
        event = notify.DeployEvent(
            kind,
            env=request.env,
            app=request.app,
            ref=request.ref,
            sha=(report.sha if report is not None else "") or "",
            colour=colours.pop() if len(colours) == 1 else "",
            who=(report.who if report is not None else "") or journal.operator_name(),
            reason=", ".join(sorted(failed_steps)) + " failed" if failed_steps else "",
            details=details,
            hosts=[o.host for o in webs],
            canary=request.canary,
            automatic=kind == "rolled_back",
            approval=approval_line(request, report),
        )
    except ValueError as error:
        return [notify.NotifyResult("notify", False, f"not sent: {error}")]
    return notify.notify(event, environ)


def approval_line(request: DeployRequest, report: ReleaseReport | None) -> str:
    """The deploy's kind and approvals for a notification: as decided on the hosts (trailers
    counted) once known, else as asked on the command line; empty for a plain regular deploy
    that nobody approved (no rule asked for it)."""
    approval = report.approval if report is not None else None
    if approval is None:
        ask = request.ask
        approval = {
            **ask.to_data(),
            "kind": ask.kind,
            "approvers": [{"name": name} for name in ask.approved_by],
        }
    if approval.get("kind") == "regular" and not approval.get("approvers"):
        return ""
    return approvals.summary(approval)


def announce_override(
    request: DeployRequest, report: ReleaseReport, environ: Mapping[str, str] | None = None
) -> list[notify.NotifyResult]:
    """Tell #incidents and #deployments that a deploy overrode the deploy window (the journal
    already says so, as ``window_override``): why the window was closed, the operator's
    reason, the release and hosts. Unconfigured webhooks are skipped; never raises."""
    if not request.window.emergency:
        return []
    event = notify.DeployEvent(
        "window_override",
        env=request.env,
        app=request.app,
        ref=request.ref,
        sha=report.sha or "",
        who=report.who or journal.operator_name(),
        reason=request.emergency_reason or "",
        details=[f"overriding: {reason}" for reason in request.window.reasons],
        hosts=[outcome.host for outcome in report.web_hosts],
        approval=approval_line(request, report),
    )
    return notify.notify(event, environ)
