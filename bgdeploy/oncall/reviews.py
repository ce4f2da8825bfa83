"""Post-deployment reviews: the runbook's "post-deployment review within 24 h" for hotfixes.

A hotfix or emergency deploy that shipped leaves a review due (its journal line says when:
:mod:`bgdeploy.core.approvals`). ``bgdeploy status`` and ``bgdeploy preflight`` show every
review still due, overdue ones first, until ``bgdeploy review ENV RUN_ID`` records it: a
``review`` line on every web host's journal, with who reviewed and their notes, which
``history`` and the postmortem's timeline show.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from bgdeploy.checks.preflight import WARN, Check
from bgdeploy.core import approvals, journal, timing
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import ConfigError
from bgdeploy.fleet import fabric_backend, remote
from bgdeploy.fleet.executor import CommandResult, Executor
from bgdeploy.oncall import history

RUN_ID = r"^[A-Za-z0-9_-]{1,64}\Z"
SCAN_LINES = 5000
"""How many of each journal's last lines ``bgdeploy review RUN_ID`` searches."""
NEEDLES = ('"review_due":', '"event":"review"')
"""The journal lines that can leave or close a review due (a deploy's, a review's)."""


def due(
    env: str, hosts: list[remote.Target] | None = None, fleet: Executor | None = None
) -> tuple[list[approvals.ReviewDue], list[remote.HostResult]]:
    """The reviews still due in ``env``'s journals (oldest first), and the hosts whose
    journal could not be read (a review may hide there). Reads only the lines that can say
    so (a review due, a review) from each web host: one short round trip, for ``status``.
    ``hosts``: the web hosts, when the caller read the inventory already; ``fleet``: their
    connections, when the caller holds them open (``status`` reads the colours over them at
    the same time), else a connection per host for this read."""
    hosts = hosts if hosts is not None else remote.targets(env)
    paths = {host.name: settings_mod.from_data(host.data, env).journal_path for host in hosts}
    command = {name: journal.journal_select_command(path, NEEDLES) for name, path in paths.items()}
    with timing.phase("reviews"):
        if fleet is None:
            results = fabric_backend.run_all(hosts, lambda host: command[host.name])
        else:
            results = fleet.map(lambda name: _result(fleet.run(name, command[name])), list(paths))
    merged = journal.merge_histories({r.host: r.stdout for r in results if r.ok})
    return approvals.reviews_due(merged.entries), [r for r in results if not r.ok]


def _result(done: CommandResult) -> remote.HostResult:
    why = str(done.error) if done.error is not None else ""
    if not done.ok and not why:
        why = done.exit_text()
    return remote.HostResult(done.host, done.ok, done.stdout, done.stderr, done.exit_status,
                             done.seconds, error=why, failure=done.error)  # fmt: skip


def describe_due(items: list[approvals.ReviewDue], now: datetime | None = None) -> list[str]:
    """One line per review due, overdue first."""
    moment = now or datetime.now(UTC)
    ordered = sorted(items, key=lambda item: (not item.overdue(moment), item.due))
    return [item.describe(moment) for item in ordered]


def preflight_checks(env: str) -> list[Check]:
    """The reviews still due as warnings of ``bgdeploy preflight`` (one per run), and a
    warning for a host whose journal could not be read."""
    items, unreadable = due(env)
    checks = [Check("review", WARN, line) for line in describe_due(items)]
    checks += [
        Check("review", WARN, f"journal not read: {result.summary()}", result.host)
        for result in unreadable
    ]
    return checks


def record(env: str, run_id: str, notes: str | None = None) -> list[remote.HostResult]:
    """Record the review of run ``run_id``: a ``review`` line on every web host's journal.

    Raises :class:`ConfigError` (exit 2) for a run id that is not valid, a run that left no
    review due, or one already reviewed, before anything is written."""
    if not re.match(RUN_ID, run_id):
        raise ConfigError(f"{run_id!r} is not a run id (bgdeploy history shows them)")
    if notes is not None and not notes.strip():
        raise ConfigError("--notes is empty: say what the review found, or leave it out")
    found = history.read(env, last=SCAN_LINES)
    entries = found.entries
    for entry in entries:
        if entry.event == "review" and entry.details.get("run") == run_id:
            raise ConfigError(
                f"run {run_id} was reviewed already, by {entry.who} at "
                f"{entry.at.strftime('%Y-%m-%d %H:%M UTC')}"
            )
    pending = {item.run: item for item in approvals.reviews_due(entries)}
    if run_id not in pending:
        hint = f" ({len(found.unreadable)} host(s) could not be read)" if found.unreadable else ""
        raise ConfigError(
            f"run {run_id} left no review due in {env}'s journals{hint}: only a hotfix or "
            "emergency deploy that shipped does"
        )
    item = pending[run_id]
    hosts = remote.targets(env)
    paths = {host.name: settings_mod.from_data(host.data, env).journal_path for host in hosts}
    stamp = datetime.now(UTC)

    def command(host: remote.Target) -> str:
        entry = journal.new_entry(
            "review",
            host=host.name,
            env=env,
            ref=item.release,
            result="ok",
            reason=" ".join(notes.split()) if notes else None,
            message=f"{item.kind} by {item.who}, due {item.due.strftime('%Y-%m-%d %H:%M UTC')}",
            details={"run": run_id, "overdue": item.overdue(stamp)},
            at=stamp,
        )
        return journal.journal_append_command(paths[host.name], entry)

    results = fabric_backend.run_all(hosts, command)
    for result in results:
        if result.ok:
            result.detail = f"review of run {run_id} recorded"
    return results
