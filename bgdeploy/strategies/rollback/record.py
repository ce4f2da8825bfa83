"""What a rollback leaves behind: the per-host report the operator sees
(:class:`RollbackReport`), each web host's ``rollback`` journal line (:func:`journal_entry`)
and the message to #deployments and #incidents (:func:`announce_rollback`).

Whichever way the rollback went, the release left is journaled as bad (``details.bad_release``
of the ``rollback`` line on every host), so it is never picked as an automatic rollback target
again (:func:`bgdeploy.strategies.rollback.policy.bad_releases`), until it is deployed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bgdeploy.core import journal, refs
from bgdeploy.core.journal import JournalEntry
from bgdeploy.core.render import COLOURS
from bgdeploy.fleet import remote
from bgdeploy.oncall import notify
from bgdeploy.strategies.rollback.request import RollbackRequest


@dataclass
class RollbackReport:
    """What a rollback did: the way back, the release left and the target, per host."""

    env: str
    strategy: str = ""
    target: str = ""
    colour: str = ""
    results: list[remote.HostResult] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)
    """``--migrations``: the fingerprints before and after, the migrations undone (newest
    first) and their batches."""

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(result.ok for result in self.results)

    def heading(self) -> str:
        where = f" ({self.colour})" if self.colour else ""
        return f"rollback to {refs.short(self.target)}{where}, {self.strategy}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "strategy": self.strategy,
            "target": self.target,
            "colour": self.colour or None,
            "ok": self.ok,
            "snapshot": self.snapshot or None,
            "database": self.database or None,
            "notes": self.notes,
            "hosts": [
                {
                    "host": r.host,
                    "ok": r.ok,
                    "seconds": round(r.seconds, 2),
                    "detail": r.detail,
                    "error": r.error,
                }
                for r in self.results
            ],
        }


def journal_entry(
    request: RollbackRequest,
    name: str,
    sha: str,
    left: str,
    result: str,
    strategy: str,
    colour: str | None = None,
    steps: list[journal.Step] | None = None,
    snapshot: dict[str, Any] | None = None,
    message: str | None = None,
    extra: dict[str, Any] | None = None,
) -> JournalEntry:
    """The ``rollback`` journal line of one host: the release left is ``bad_release``."""
    details: dict[str, Any] = {"strategy": strategy, **(extra or {})}
    if request.log:
        details["log"] = request.log
    if left and left != sha:
        details["bad_release"] = left
    if request.to:
        details["to"] = request.to
    if request.migrations and snapshot and snapshot.get("migrated_on") == name:
        details["migrations_rolled_back"] = request.migrations
        details["snapshot"] = snapshot.get("name")
    return journal.new_entry(
        "rollback",
        host=name,
        env=request.env,
        ref=request.to,
        sha=sha or None,
        sha_before=left or None,
        colour=colour if colour in COLOURS else None,
        result=result,
        steps=steps or [],
        reason=request.reason,
        message=message
        or (f"left {refs.short(left)} (marked bad)" if details.get("bad_release") else None),
        details=details,
    )


def announce_rollback(
    env: str,
    app: str,
    report: RollbackReport,
    reason: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[notify.NotifyResult]:
    """Tell #deployments and #incidents about ``bgdeploy rollback`` (an operator's, so no
    page): the release gone back to, its colour, each host's account when one failed.
    Never raises."""
    failed = [f"{r.host}: {r.error}" for r in report.results if not r.ok]
    try:
        event = notify.DeployEvent(
            "rolled_back" if report.ok else "failed",
            env=env,
            app=app,
            sha=report.target or "",
            colour=report.colour or "",
            who=journal.operator_name(),
            reason=reason or ("" if report.ok else "the rollback failed"),
            details=failed,
            hosts=[r.host for r in report.results],
        )
    except ValueError as error:
        return [notify.NotifyResult("notify", False, f"not sent: {error}")]
    return notify.notify(event, environ)
