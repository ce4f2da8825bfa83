"""Is the database as it was before the deploy? Schema fingerprints, and the verdict.

A deploy that fails in ``php artisan migrate`` must leave the database as it found it, and
must not say so without having checked. Before migrating, the db host computes a
*fingerprint* of the database (:func:`bgdeploy.commands.schema_fingerprint`): a sha256 of its
schema (``pg_dump --schema-only``, without comments, owners or privileges) and of the rows of
Laravel's ``migrations`` table (name and batch), with the highest batch and the number of rows.

When ``migrate`` fails, the migrations this run recorded (every batch above the highest one
before it: Laravel gives one run one batch) are undone with the code of the release being
deployed (their ``down()`` lives there), and the fingerprint is computed again.

- Equal: ``database as before the deploy: verified``.
- Not equal (a migration that was not transactional, a ``down()`` that does not undo its
  ``up()``), or not computable (the database did not answer): ``database NOT as before the
  deploy``, what differs, and the snapshot taken just before with the command that restores
  it. The deploy exits 1 either way; the verdict is in the report and the journal.

.. code:: python

    check = DatabaseCheck(before=parse_fingerprint(out1), after=parse_fingerprint(out2),
                          undone=["2026_01_01_000000_add_tracking_code"])
    check.verified   # True when both fingerprints are known and equal
    check.verdict()  # one line for the operator
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

FINGERPRINT = "bgdeploy-fingerprint:"
"""The line :func:`bgdeploy.commands.schema_fingerprint` prints: ``DIGEST BATCH ROWS``."""

MIGRATION_ROW = "bgdeploy-migration:"
"""A row of :func:`bgdeploy.commands.migrations_after`: ``NAME BATCH``."""

SCHEMA_DIFF = "bgdeploy-schema-diff:"
"""A line of the schema that differs from the snapshot's (``<`` before, ``>`` now)."""

_FINGERPRINT = re.compile(rf"^{FINGERPRINT} ([0-9a-f]{{64}}) (\d+) (\d+)$", re.MULTILINE)

VERIFIED = "database as before the deploy: verified"
NOT_AS_BEFORE = "database NOT as before the deploy"


@dataclass(frozen=True)
class Fingerprint:
    """The database at one moment: ``digest`` of schema and migrations table, the highest
    ``batch`` recorded (0 when there is none) and the number of ``rows``."""

    digest: str
    batch: int
    rows: int

    @property
    def short(self) -> str:
        return self.digest[:12]


def parse_fingerprint(output: str) -> Fingerprint | None:
    """The fingerprint in a command's output (the last one printed), or None."""
    found = _FINGERPRINT.findall(output or "")
    if not found:
        return None
    digest, batch, rows = found[-1]
    return Fingerprint(digest, int(batch), int(rows))


def parse_batches(output: str) -> dict[str, int]:
    """Migration -> batch, from :func:`bgdeploy.commands.migrations_after`'s lines, in its
    order (the order ``migrate:rollback`` undoes them: newest first)."""
    found = {}
    for line in (output or "").splitlines():
        if line.startswith(MIGRATION_ROW):
            name, _, batch = line[len(MIGRATION_ROW) :].strip().rpartition(" ")
            if name and batch.isdigit():
                found[name] = int(batch)
    return found


def parse_rows(output: str) -> list[str]:
    """The migration names of :func:`bgdeploy.commands.migrations_after`, newest first."""
    return list(parse_batches(output))


def parse_diff(output: str, limit: int = 12) -> list[str]:
    """The schema lines that differ from the snapshot's, at most ``limit``."""
    lines = [
        line[len(SCHEMA_DIFF) :].strip()
        for line in (output or "").splitlines()
        if line.startswith(SCHEMA_DIFF)
    ]
    return lines[:limit]


@dataclass
class DatabaseCheck:
    """What a failed migration left: the fingerprints before and after the undo, which
    migrations were undone, which are still recorded, and any problem on the way.

    + before, after: the fingerprints (None when they could not be computed)
    + undone: migrations of this run that ``migrate:rollback`` undid, newest first
    + left: migrations of this run still recorded after the undo
    + problem: why the undo or the check did not go through, in words
    + diff: schema lines that differ from the snapshot taken before (``<`` then, ``>`` now)
    """

    before: Fingerprint | None
    after: Fingerprint | None = None
    undone: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    problem: str = ""
    diff: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        """True when the database's fingerprint is the one taken before migrating."""
        return self.before is not None and self.after is not None and self.before == self.after

    def verdict(self) -> str:
        """One line: ``database as before the deploy: verified (...)`` or what is not."""
        undone = (
            f"; undone with the release's own down(): {', '.join(self.undone)}"
            if self.undone
            else "; no migration of this run had been recorded"
        )
        if self.verified:
            assert self.after is not None
            return f"{VERIFIED} (fingerprint {self.after.short}{undone})"
        reasons = []
        if self.problem:
            reasons.append(self.problem)
        if self.before is None:
            reasons.append("no fingerprint was taken before migrating")
        elif self.after is None:
            reasons.append("its fingerprint could not be computed after the failure")
        elif self.before != self.after:
            reasons.append(f"its fingerprint changed ({self.before.short} -> {self.after.short})")
        if self.left:
            reasons.append(f"still recorded: {', '.join(self.left)}")
        if self.diff:
            reasons.append("schema differs: " + " | ".join(self.diff))
        return f"{NOT_AS_BEFORE}: " + "; ".join(reasons) + (undone if self.undone else "")

    def advice(self, env: str, snapshot: dict[str, Any] | None) -> str:
        """Where the snapshot taken before migrating is; when the database is not verified,
        the command that restores it."""
        if self.verified:
            if not snapshot:
                return ""
            return (
                f"snapshot {snapshot.get('name')} is kept at "
                f"{snapshot.get('host')}:{snapshot.get('path')}"
            )
        if not snapshot:
            return "no snapshot was taken: check the database by hand"
        return (
            f"the snapshot taken just before, {snapshot.get('name')} "
            f"({snapshot.get('host')}:{snapshot.get('path')}), restores it: "
            f"`bgdeploy snapshot {env} restore {snapshot.get('name')}`"
        )

    def to_dict(self) -> dict[str, Any]:
        """For the report and the journal."""
        data = asdict(self)
        data["verified"] = self.verified
        data["verdict"] = self.verdict()
        return data


@dataclass(frozen=True)
class MigrationState:
    """One migration as ``php artisan migrate:status`` shows it: ``ran`` in ``batch`` (None
    while pending)."""

    name: str
    ran: bool
    batch: int | None


_STATUS_TABLE_ROW = re.compile(r"^\|\s*(Yes|No)\s*\|\s*(\S+)\s*\|\s*(\d*)\s*\|\s*\Z")
_STATUS_DOTTED_ROW = re.compile(
    r"^\s*(\d{4}_\d{2}_\d{2}_\w+)\s+\.+\s+(?:\[(\d+)\]\s+)?(Ran|Pending)\s*\Z"
)


def parse_migrate_status(output: str) -> list[MigrationState]:
    """The rows of ``migrate:status``, in its order: Laravel 8's table (``| Yes | NAME | 1 |``)
    or the dotted lines of Laravel 9 and later (``NAME ...... [1] Ran``, ``NAME .. Pending``)."""
    found = []
    for line in output.splitlines():
        table = _STATUS_TABLE_ROW.match(line)
        if table:
            ran, name, batch = table.groups()
            found.append(MigrationState(name, ran == "Yes", int(batch) if batch else None))
            continue
        dotted = _STATUS_DOTTED_ROW.match(line)
        if dotted:
            name, batch, state = dotted.groups()
            found.append(MigrationState(name, state == "Ran", int(batch) if batch else None))
    return found
