"""What an in-place release did, host by host: the data behind ``bgdeploy deploy``'s table.

``deploys/release.py`` records every step on every host as it runs (its name, how long it took,
whether it worked) and, when given ``--data bgdeploy_report=PATH``, keeps the whole record up to
date in that JSON file. ``bgdeploy deploy`` reads it back to print the per-host table (or
``--json``) and to choose its exit code; after a Ctrl-C it tells the recovery which host had
changed what.

.. code::

    host  sha before      sha after     result       seconds  note
    web1  1a2b3c4d5e6f  ->  9f8e7d6c5b4a  ok              21.4  migrated (snapshot 2026...)
    web2  1a2b3c4d5e6f  ->  1a2b3c4d5e6f  rolled_back     35.0  verify health: ... 503
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bgdeploy.core.explain import first_line
from bgdeploy.core.files import write_atomic
from bgdeploy.core.refs import short

HOST_RESULTS = (
    "pending",
    "ok",
    "unchanged",
    "failed",
    "rolled_back",
    "refused",
    "skipped",
    "interrupted",
)
"""What a host's release can end as.

``ok``: the new release is live and healthy. ``unchanged``: the host was already at that
commit (nothing done). ``failed``: a step failed (the previous release was restored when the
failure came before migrations). ``rolled_back``: the new release failed after it went live
and the previous one was put back. ``refused``: a policy (the lock) stopped it before any
change. ``skipped``: not attempted (another host or an earlier batch failed first).
``interrupted``: the deploy was stopped (Ctrl-C) and recovered.
"""

REFUSAL_EXIT_CODES = {
    "lock": 3,
    "window": 3,
    "destructive": 3,
    "approval": 3,
    "bad_ref": 2,
    "config": 2,
}
"""The exit code of each kind of refusal (DESIGN.md: 2 bad input, 3 policy)."""


@dataclass
class StepResult:
    """One step on one host: its runbook name, duration, result and what went wrong."""

    name: str
    seconds: float
    result: str = "ok"
    message: str = ""


@dataclass
class HostOutcome:
    """One host's release.

    + host: inventory name
    + roles: its groups among ``web`` and ``db``
    + colour: the live colour that was updated in place
    + sha_before, sha_after: the commit live before, and live now
    + result: one of :data:`HOST_RESULTS`
    + failed_step: the step that failed, when one did
    + message: what happened, in words
    + steps: every step run, in order
    + seconds: wall time from the lock to the end
    + batch: the rolling batch the host was in (0 without rolling)
    + code_changed: the live colour's checkout was touched (a restore is needed on failure)
    """

    host: str
    roles: list[str] = field(default_factory=list)
    colour: str | None = None
    sha_before: str | None = None
    sha_after: str | None = None
    result: str = "pending"
    failed_step: str | None = None
    message: str = ""
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    batch: int | None = None
    code_changed: bool = False

    @property
    def is_web(self) -> bool:
        return "web" in self.roles

    @property
    def failed(self) -> bool:
        """True when this host's release did not succeed (refusals included)."""
        return self.result in ("failed", "rolled_back", "refused", "interrupted")


@dataclass
class ReleaseReport:
    """The whole release: what was asked, what it resolved to, and each host's outcome.

    + env, ref, run, who: the environment, the ref asked for, the deploy's id, the operator
    + sha: the commit the ref resolved to (once, for every host)
    + hosts: host name -> :class:`HostOutcome`
    + refusal: ``{"kind", "message"}`` when the release was refused before any change
      (kinds: ``lock``, ``window``, ``destructive``, ``approval``, ``bad_ref``,
      ``config``)
    + error: why the release failed, in one line, when it did
    + migrations: the migrations that were pending
    + snapshot: ``{"name", "path", "host", "size", "sha256"}`` of the snapshot taken
    + migrated_on: the host that ran ``migrate``
    + database: after a failed ``migrate``, what :class:`bgdeploy.checks.schema.DatabaseCheck` found
      (``verified``, ``verdict``, the fingerprints, the migrations undone)
    + approval: the kind of deploy, its severity, approvers and rollback plan
      (:meth:`bgdeploy.core.approvals.ApprovalDecision.to_dict`), once decided
    """

    env: str
    ref: str
    run: str
    who: str = ""
    sha: str | None = None
    hosts: dict[str, HostOutcome] = field(default_factory=dict)
    refusal: dict[str, str] | None = None
    error: str = ""
    migrations: list[str] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None
    migrated_on: str | None = None
    database: dict[str, Any] | None = None
    approval: dict[str, Any] | None = None

    def host(self, name: str, roles: list[str] | None = None) -> HostOutcome:
        """The outcome of ``name``, created when missing."""
        if name not in self.hosts:
            self.hosts[name] = HostOutcome(host=name, roles=list(roles or []))
        return self.hosts[name]

    @property
    def web_hosts(self) -> list[HostOutcome]:
        return [outcome for outcome in self.hosts.values() if outcome.is_web]

    @property
    def ok(self) -> bool:
        """True when nothing was refused and every web host ended ``ok`` or ``unchanged``."""
        return (
            self.refusal is None
            and bool(self.web_hosts)
            and all(outcome.result in ("ok", "unchanged") for outcome in self.web_hosts)
        )

    def exit_code(self) -> int:
        """0 success, 1 a failure, 2 bad input (a ref that does not exist), 3 a policy refusal."""
        if self.refusal is not None:
            return REFUSAL_EXIT_CODES.get(self.refusal.get("kind", ""), 1)
        return 0 if self.ok else 1

    def summary(self) -> str:
        """One line: ``deployed v2 (9f8e7d6c5b4a) to 2 hosts`` or why not."""
        label = f"{self.ref} ({short(self.sha)})" if self.sha else self.ref
        if self.refusal is not None:
            return f"deploy of {self.ref} refused: {self.refusal.get('message', '')}"
        webs = self.web_hosts
        if self.ok:
            if all(outcome.result == "unchanged" for outcome in webs):
                return f"{label}: already live on every host, nothing changed"
            return f"deployed {label} to {len(webs)} host(s)"
        failed = [o for o in webs if o.failed]
        text = f"deploy of {label} FAILED on {', '.join(o.host for o in failed) or 'the fleet'}"
        if self.error:
            return f"{text}: {self.error}"
        return text + self._causes(failed)

    def _causes(self, failed: list[HostOutcome]) -> str:
        """``: <why>`` when every failed host says the same (its note's first line), else
        ``: web1: <why>; web2: <why>``; empty when none says anything."""
        causes: dict[str, list[str]] = {}
        for outcome in failed:
            cause = first_line(note(outcome, self))
            if cause:
                causes.setdefault(cause, []).append(outcome.host)
        if len(causes) == 1 and len(next(iter(causes.values()))) == len(failed):
            return f": {next(iter(causes))}"
        return (": " if causes else "") + "; ".join(
            f"{', '.join(hosts)}: {cause}" for cause, hosts in causes.items()
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``--json``): hosts as a list, in inventory order."""
        data = asdict(self)
        data["hosts"] = [asdict(outcome) for outcome in self.hosts.values()]
        data["ok"] = self.ok
        data["exit_code"] = self.exit_code()
        data["summary"] = self.summary()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReleaseReport:
        """Read back :meth:`to_dict` (unknown keys ignored)."""
        hosts: dict[str, HostOutcome] = {}
        for item in data.get("hosts", []):
            steps = [StepResult(**step) for step in item.get("steps", [])]
            known = {k: v for k, v in item.items() if k in HostOutcome.__dataclass_fields__}
            known["steps"] = steps
            outcome = HostOutcome(**known)
            hosts[outcome.host] = outcome
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "hosts"}
        return cls(hosts=hosts, **fields)

    def save(self, path: str | Path) -> None:
        """Write the report as JSON, atomically (a reader never sees half a file), 0600."""
        write_atomic(path, json.dumps(self.to_dict(), indent=2), mode=0o600)

    @classmethod
    def load(cls, path: str | Path) -> ReleaseReport | None:
        """Read a report file; None when it is missing or empty."""
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        return cls.from_dict(json.loads(text))


def note(outcome: HostOutcome, report: ReleaseReport) -> str:
    """The last column of the table: what the operator should know about this host."""
    if outcome.result == "ok":
        if report.migrated_on == outcome.host and report.snapshot:
            return f"migrated (snapshot {report.snapshot.get('name')})"
        return "healthy"
    if outcome.result == "unchanged":
        return f"already at {short(outcome.sha_after or report.sha)}"
    text = outcome.message or ""
    if outcome.failed_step and not text.startswith(outcome.failed_step):
        text = f"{outcome.failed_step}: {text}" if text else outcome.failed_step
    return text


def format_table(report: ReleaseReport) -> str:
    """The per-host table ``bgdeploy deploy`` ends with, then the one-line summary.

    Columns: host, sha before -> sha after, result, seconds, note (first line only).
    """
    rows = [("host", "sha before", "", "sha after", "result", "seconds", "note")]
    for outcome in report.hosts.values():
        if not outcome.is_web:
            continue
        first = (note(outcome, report).splitlines() or [""])[0]
        rows.append(
            (
                outcome.host,
                short(outcome.sha_before),
                "->",
                short(outcome.sha_after),
                outcome.result,
                f"{outcome.seconds:.1f}",
                first,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i == 5 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(report.summary())
    return "\n".join(lines)
