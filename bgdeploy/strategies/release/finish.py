"""The end of a release, on every web host whatever happened::

    write the journal             the deploy's lines: steps and durations, the commits before
                                  and after, who, the result, and the snapshot, migrations,
                                  overrides and automatic rollback when there were any
    release the lock              the lock this deploy holds (never another deploy's)
    finish                        each host's result; a host whose release failed fails here

"Finish" is the one operation whose failure pyinfra does not ignore, so a run with a failed
host exits non-zero. A host that never started (a refusal, a failed preflight or an earlier
batch) is reported as skipped, with the reason.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pyinfra import logger

from bgdeploy import commands
from bgdeploy.core import journal, refs
from bgdeploy.core.explain import explain
from bgdeploy.strategies.release.operations import add_operation, run_command
from bgdeploy.strategies.release.run import HostRun, ReleaseRun, current


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
    if release.log_path:
        details["log"] = release.log_path
    if outcome.failed_step:
        details["failed_step"] = outcome.failed_step
    if snapshot:
        details["snapshot"] = snapshot["name"]
    if release.pending:
        details["migrations"] = release.pending
    if outcome.batch is not None and len(release.batches) > 1:
        details["batch"] = outcome.batch
    approval = approval_details(release, shipped=outcome.result == "ok")
    if approval:
        details["approval"] = approval
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


def approval_details(release: ReleaseRun, shipped: bool) -> dict[str, Any] | None:
    """The journal's ``details["approval"]``: the kind of deploy, severity, approvers, rollback
    plan and, for a hotfix or emergency deploy that shipped, when its review is due (the same
    moment on every host). None when no rule applied and nothing was said."""
    decision = release.approval
    if decision is None:
        return None
    data = decision.to_dict()
    if data == {"kind": "regular", "approvers": []}:
        return None
    if shipped and decision.review_within_hours:
        if release.review_due is None:
            release.review_due = decision.review_due(datetime.now(UTC).replace(microsecond=0))
        if release.review_due is not None:
            data["review_due"] = release.review_due.isoformat().replace("+00:00", "Z")
            release.report.approval = data
    return data


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
    ok, out, err = run_command(host, command)
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
    ok, out, err = run_command(host, commands.lock_release(run.settings.lock_path, release.run_id))
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
