"""``bgdeploy deploy`` and ``bgdeploy unlock``: the operator's side of the in-place release.

:func:`deploy` checks everything it can without connecting (the ref's syntax, the inventory,
every host's settings, the deploy window), then runs ``deploys/release.py`` through pyinfra,
exactly as an operator would by hand, and reads back the per-host record the deploy file keeps
(:class:`~bgdeploy.core.release_report.ReleaseReport`). Bad input raises
:class:`~bgdeploy.core.errors.ConfigError` (exit 2) and a closed window
:class:`~bgdeploy.core.errors.PolicyRefusal` (exit 3), both before pyinfra starts.

When the operator presses Ctrl-C, pyinfra is stopped (its build commands run under a terminal
on the hosts, so they stop with it) and :func:`recover` puts every host the deploy had touched
back on its previous commit and build, journals the interruption and releases the lock: the
live release keeps serving.

:func:`unlock` breaks a lock left behind by a deploy that died: it shows the holders, refuses
a holder whose process still runs on this machine, asks, and journals who broke whose lock.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgdeploy import commands
from bgdeploy.core import journal, lock, refs, windows
from bgdeploy.core.errors import BgdeployError, ConfigError, OperationFailed, PolicyRefusal
from bgdeploy.core.explain import explain, first_line
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.release_report import ReleaseReport, StepResult
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import fabric_backend, fleetlock, remote, runner
from bgdeploy.fleet.executor import UNLIMITED_SECONDS, CommandResult
from bgdeploy.oncall import notify
from bgdeploy.strategies import canary as canary_mod
from bgdeploy.strategies import switch

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

    @property
    def deploy_file(self) -> str:
        """The pyinfra deploy file of the strategy."""
        return DEPLOY_FILES[self.strategy]

    def data(self, run_id: str, report_path: str) -> dict[str, Any]:
        """The ``--data`` values for ``deploys/release.py``."""
        data: dict[str, Any] = {
            "ref": self.ref,
            "force": self.force,
            "allow_destructive": self.allow_destructive,
            "bgdeploy_run_id": run_id,
            "bgdeploy_report": report_path,
        }
        if self.reason:
            data["reason"] = self.reason
        if self.emergency_reason:
            data["emergency_reason"] = self.emergency_reason
        if self.canary is not None:
            data["canary"] = self.canary
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
) -> DeployRequest:
    """Check a deploy request without connecting to any host.

    + env: the inventory (``inventories/ENV.py``)
    + ref: branch, tag or commit; None deploys group_data's ``ref``
    + emergency, reason: ``--emergency --reason TEXT`` overrides the deploy window

    Raises :class:`ConfigError` (exit 2) for a bad ref, environment, setting or option, and
    :class:`PolicyRefusal` (exit 3) outside the deploy window, with the next window.
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
    data: dict[str, Any] = {"force": force, "allow_destructive": allow_destructive}
    if ref is not None:
        data["ref"] = ref
    environment = runner.check_environment(env, data)
    settings = environment.settings[environment.web[0]]
    if canary is not None:
        canary_mod.thresholds(settings)  # a window or threshold the gate cannot take: exit 2
    chosen = refs.validate_ref(ref if ref is not None else settings.ref)
    emergency_reason = reason.strip() if emergency and reason else None
    decision = windows.decide(
        settings.window, now or datetime.now(UTC), emergency_reason=emergency_reason
    )
    if not decision.allowed:
        raise PolicyRefusal(
            decision.describe() + "\n(an emergency deploy: --emergency --reason TEXT)"
        )
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
    )


class Interrupted(Exception):
    """The deploy was stopped with Ctrl-C; ``report`` says what the recovery did."""

    def __init__(self, report: ReleaseReport) -> None:
        super().__init__("interrupted")
        self.report = report


def deploy(
    request: DeployRequest, stream: bool = True, progress: Progress = quiet
) -> ReleaseReport:
    """Run the release and return its report (see :meth:`ReleaseReport.exit_code`).

    Raises :class:`Interrupted` after a Ctrl-C, once the hosts are recovered.
    """
    run_id = lock.new_run_id()
    for outcome in announce(request, "started"):
        progress(outcome.line())
    with tempfile.TemporaryDirectory(prefix="bgdeploy-release-") as tmp:
        report_path = str(Path(tmp) / "report.json")
        data = request.data(run_id, report_path)
        try:
            result = runner.run_deploy(
                request.env, request.deploy_file, data, stream=stream, checked=True
            )
        except KeyboardInterrupt:
            progress("interrupted: stopping pyinfra and restoring the hosts it changed")
            report = ReleaseReport.load(report_path) or ReleaseReport(
                env=request.env, ref=request.ref, run=run_id
            )
            recover(request.env, report, progress, strategy=request.strategy)
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
    return report


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
        )
    except ValueError as error:
        return [notify.NotifyResult("notify", False, f"not sent: {error}")]
    return notify.notify(event, environ)


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
    )
    return notify.notify(event, environ)


# After Ctrl-C
# ------------


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
        if o.colour in switch.COLOURS and o.result not in ("ok", "unchanged", "rolled_back")
    }
    if len(built) != 1:
        return "the live colour serves, as before"
    live = switch.other(built.pop())
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
    healthy = _wait_healthy(host.run, settings, outcome.sha_before)
    outcome.sha_after = outcome.sha_before
    outcome.message = f"interrupted; previous release {outcome.sha_before[:12]} restored" + (
        "" if healthy else ", but it is NOT healthy"
    )
    if not healthy:
        outcome.result = "failed"
    return outcome.message


def _wait_healthy(run: Callable[[str], CommandResult], settings: Settings, sha: str) -> bool:
    from bgdeploy.checks.smoke import wait_healthy

    return wait_healthy(run, settings, sha)


# Breaking a stale lock
# ---------------------


@dataclass
class UnlockResult:
    """One web host's lock: whose it was (None: there was none), or why it could not be read
    or broken (``ok`` False)."""

    host: str
    ok: bool
    holder: lock.LockInfo | None = None
    error: str = ""

    def describe(self) -> str:
        if not self.ok:
            return f"FAILED: {self.error}"
        if self.holder is None:
            return "no lock"
        return f"broke the lock of {self.holder.describe()}"


def holder_line(found: fleetlock.Found) -> str:
    """One host's lock for the operator: owner, machine, pid, ref, since when, run."""
    holder = found.holder
    if found.error:
        return f"{found.host}: could not be read ({found.error})"
    if holder is None:
        return f"{found.host}: no lock"
    return (
        f"{found.host}: held by {holder.owner} on {holder.host}, pid {holder.pid}, "
        f"ref {holder.ref}, since {holder.time} (run {holder.run})"
    )


def unlock(
    env: str,
    reason: str | None = None,
    confirm: Callable[[str], Any] | None = None,
    force: bool = False,
    progress: Progress = quiet,
) -> list[UnlockResult]:
    """Break the deploy lock on every web host of ``env`` where one is left, and journal it.

    Each host's lock is read and shown (``progress``). A lock taken on this very machine by a
    process still running is not stale: :class:`PolicyRefusal` (exit 3) unless ``force``.
    Then ``confirm(question)`` is asked (it stops the unlock by raising), and each lock is
    removed only if it is still the one shown; the journal of each host says who broke
    whose lock, and ``reason``.
    """
    environment = runner.check_environment(env)
    fleet = fabric_backend.PerCommandFleet(remote.targets(env, ("web",), environment.inventory))
    paths = {name: environment.settings[name].lock_path for name in fleet.names}
    found = fleetlock.read(fleet, paths)
    for name in fleet.names:
        progress(holder_line(found[name]))
    held = {name: f for name, f in found.items() if f.holder is not None}
    results = {name: UnlockResult(name, not f.error, error=f.error) for name, f in found.items()}
    if not held:
        return [results[name] for name in fleet.names]
    alive = {name: f.holder for name, f in held.items() if f.holder and lock.holder_alive(f.holder)}
    if alive and not force:
        each = "; ".join(
            f"{name}: pid {holder.pid} of {holder.owner}" for name, holder in alive.items()
        )
        raise PolicyRefusal(
            f"the deploy lock is held by a process still running on this machine "
            f"({lock.this_machine()}: {each}): it is not stale, nothing was unlocked. Wait "
            f"for it to finish, or stop it; --force breaks the lock anyway"
        )
    if confirm is not None:
        confirm(f"Break the deploy lock of {env} on {', '.join(held)}?")
    failed = fleetlock.break_seen(fleet, paths, held)
    for name, f in held.items():
        if name in failed:
            results[name] = UnlockResult(name, False, f.holder, failed[name].error)
            continue
        results[name] = UnlockResult(name, True, f.holder)
    _journal_unlocks(fleet, environment, env, reason, force, alive, results)
    return [results[name] for name in fleet.names]


def _journal_unlocks(
    fleet: fabric_backend.PerCommandFleet,
    environment: runner.Environment,
    env: str,
    reason: str | None,
    force: bool,
    alive: Mapping[str, Any],
    results: dict[str, UnlockResult],
) -> None:
    """On each host whose lock was broken: who broke it, whose it was, and why."""
    broken = [r for r in results.values() if r.ok and r.holder is not None]

    def one(name: str) -> None:
        result = results[name]
        holder = result.holder
        assert holder is not None
        entry = journal.new_entry(
            "unlock", host=result.host, env=env,
            ref=holder.ref if holder.ref != "unknown" else None, result="ok", reason=reason,
            message=f"broke the deploy lock of {holder.describe()}",
            details={
                "run": holder.run, "lock": holder.to_json(), "holder": holder.owner,
                "forced": bool(force and result.host in alive),
            },
        )  # fmt: skip
        settings = environment.settings[result.host]
        ok, out, err = fleet.run(
            result.host, journal.journal_append_command(settings.journal_path, entry)
        )
        if not ok:
            result.ok = False
            result.error = (
                f"broke the lock of {holder.describe()}, but the journal was not written: "
                f"{(err or out).strip()[-200:]}"
            )

    fleet.map(one, [r.host for r in broken])
