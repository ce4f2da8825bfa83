"""Rolling back blue-green: switch every web host back to the colour that is not live (seconds).

Chosen when that colour holds a release on every web host, built and verified at that commit,
and it is not the live one (:func:`bgdeploy.strategies.rollback.policy.switch_back_colour`).
The runbook's smoke tests must pass on it through the preview listener first (they ran beside the
lock and the reading of the colours; ``--no-smoke`` skips them): a colour that fails them is never
switched to (:class:`SmokeRefused`, exit 3). Then every host is switched, all or none
(:func:`bgdeploy.strategies.switch.switch`), and ``/api/health`` must answer from that
release on every host. The colour left is unmarked as built, so that it is never switched or
rolled back to again, and the ``rollback`` journal line of each host marks it bad.
"""

from __future__ import annotations

import time

from bgdeploy import commands
from bgdeploy.checks import smoke
from bgdeploy.core import journal, refs, timing
from bgdeploy.core.errors import PolicyRefusal
from bgdeploy.core.progress import Progress
from bgdeploy.fleet import remote
from bgdeploy.fleet.colours import HostColours, other
from bgdeploy.strategies import switch
from bgdeploy.strategies.rollback import migrations
from bgdeploy.strategies.rollback.hosts import Hosts
from bgdeploy.strategies.rollback.record import RollbackReport, journal_entry
from bgdeploy.strategies.rollback.request import RollbackRequest


class SmokeRefused(PolicyRefusal):
    """The colour to switch back to failed its smoke tests (``report`` says where)."""

    def __init__(self, report: RollbackReport, message: str) -> None:
        super().__init__(message)
        self.report = report


def switch_back(
    request: RollbackRequest,
    hosts: Hosts,
    colours: dict[str, HostColours],
    answers: dict[str, str],
    previous: str,
    run: str,
    progress: Progress,
) -> RollbackReport:
    """Switch every reachable web host to ``previous`` under the deploy lock of ``run``,
    after its smoke tests (``answers``: each host's smoke requests through the preview
    listener) and ``--migrations``; then health and the journal line on each host."""
    settings = request.settings
    live = other(previous)
    report = RollbackReport(request.env, "switch back", colour=previous)
    report.target = colours[hosts.names[0]].heads.get(previous, "")
    if request.smoke:
        failed = _smoke_failures(colours, answers, previous)
        if failed:
            report.results = [
                remote.HostResult(name, name not in failed, error=failed.get(name, ""),
                                  detail="smoke tests passed")
                for name in hosts.names
            ]  # fmt: skip
            raise SmokeRefused(report, f"the previous colour {previous} failed its smoke tests")
    if request.migrations:
        migrations.roll_back(request, hosts, colours, report, progress)
    progress(f"switching every web host to {previous}")
    request.event("stage", name=f"switch back to {previous}")
    request.event("plan", hosts=dict.fromkeys(hosts.names, 2))  # the switch, health
    began = {name: request.step_started(name, "switch") for name in hosts.names}
    why = request.reason or "rollback"
    switched = switch.switch(hosts, settings, previous, reason=why, colours=colours, lock_run=run)
    for result in switched.results:
        request.step_ended(result.host, "switch", result.ok, began[result.host], result.error)
    report.results = switched.results + hosts.down_results()
    if not switched.ok:
        return report
    left = f"{settings.app_root}/{live}"

    def record(name: str) -> None:
        result = next(r for r in report.results if r.host == name)
        bad, sha = colours[name].heads.get(live, ""), colours[name].heads.get(previous, "")
        began = request.step_started(name, "verify health")
        with timing.phase("health"):
            healthy = smoke.wait_healthy(
                lambda command: hosts.run(name, command), request.environment.settings[name], sha
            )
        request.step_ended(name, "verify health", healthy, began)
        steps = [
            journal.Step("switch", round(result.seconds, 3)),
            journal.Step("verify health", round(time.monotonic() - began, 3),
                         "ok" if healthy else "failed"),
        ]  # fmt: skip
        unhealthy = f"{settings.health_path} not healthy on {refs.short(sha)} after the switch"
        entry = journal_entry(
            request, name, sha, bad, "ok" if healthy else "failed", "switch back",
            colour=previous, steps=steps, snapshot=report.snapshot,
            message=None if healthy else unhealthy, extra={"from": live},
        )  # fmt: skip
        # The release left is never picked as a rollback target again.
        with timing.phase("journal"):
            ok, _, err = hosts.command(
                name,
                commands.join(
                    commands.unmark_built(left),
                    journal.journal_append_command(settings.journal_path, entry),
                ),
            )
        if not healthy:
            result.ok, result.error = False, unhealthy
        elif not ok:
            result.ok = False
            result.error = f"switched, but the journal was not written: {err.strip()[-200:]}"

    hosts.each(record)
    return report


def _smoke_failures(
    colours: dict[str, HostColours], answers: dict[str, str], colour: str
) -> dict[str, str]:
    """Each host whose smoke requests (``answers``) failed on ``colour``, with what failed."""
    failed = {}
    for name, output in answers.items():
        checks = smoke.evaluate(smoke.parse(output), colours[name].heads.get(colour), colour)
        bad = [c for c in checks if not c.ok]
        if bad:
            failed[name] = "; ".join(f"{c.name}: {c.detail}" for c in bad)
    return failed
