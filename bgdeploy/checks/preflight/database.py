"""The migrations a deploy would run, and whether they may run.

================  ======================================================================
check             what is read, and when it fails or warns
================  ======================================================================
migrations        the pending migrations: files of the commit under ``database/migrations``
                  that the database's ``migrations`` table lacks (what ``migrate`` would
                  run); a migration file changed or deleted between the live commit and
                  the new one warns (a migration that already ran never runs again)
destructive       the pending migrations' ``up()`` scanned (:mod:`bgdeploy.checks.migrations`):
                  a drop or rename fails, unless in place with ``--allow-destructive`` (it
                  warns; a verified snapshot is taken first); blue-green refuses them always
                  (both colours share the database); raw SQL or row deletion to read by
                  hand warns; a migration marked ``// bgdeploy: allow-destructive <reason>``
                  passes, its reason shown
================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bgdeploy.checks import migrations
from bgdeploy.checks.preflight.report import FAIL, PASS, WARN, Check

MIGRATIONS_DIR = "database/migrations"


def check_migrations(
    pending: Sequence[str], changed: Iterable[tuple[str, str]] = (), host: str | None = None
) -> Check:
    """The pending migrations (pass, listing them); migration files modified (``M``) or
    deleted (``D``) since the live commit warn: a migration that already ran never runs
    again. ``changed``: ``(status, path)`` pairs of :func:`parse_name_status`."""
    pending_set = set(pending)
    edited = [
        f"{path.rsplit('/', 1)[-1]} {'changed' if status == 'M' else 'deleted'} since the live "
        "release: migrate will not run it again"
        for status, path in changed
        if status in ("M", "D") and migrations.migration_name(path) not in pending_set
    ]
    listed = f"{len(pending)} pending: {', '.join(pending)}" if pending else "none pending"
    if pending:
        listed += " (a verified snapshot is taken first)"
    if edited:
        return Check("migrations", WARN, "\n".join([listed, *edited]), host, tuple(pending))
    return Check("migrations", PASS, listed, host, tuple(pending))


def parse_name_status(output: str) -> list[tuple[str, str]]:
    """``git diff --name-status`` lines as ``(status letter, path)`` pairs."""
    found = []
    for line in output.splitlines():
        status, _, path = line.partition("\t")
        if path:
            found.append((status.strip()[:1], path.strip()))
    return found


def destructive_refusal(text: str, strategy: str) -> str:
    """Why a deploy refuses destructive migrations (``text``: the scanner's lines)."""
    if strategy == "blue-green":
        return (
            "blue-green refuses migrations that drop or rename: both colours share the "
            "database, and the live colour would break on the new schema.\n"
            f"{text}\nSplit the change (add now, drop in a later release), or deploy in-place "
            "with --allow-destructive."
        )
    return (
        "pending migrations drop or rename (the running release may break, and only the "
        f"snapshot can bring the data back):\n{text}\n"
        "Deploy with --allow-destructive (a verified snapshot is taken first), or mark a "
        "reviewed migration with '// bgdeploy: allow-destructive <reason>'."
    )


def check_destructive(
    scans: Sequence[migrations.MigrationScan],
    allow_destructive: bool = False,
    strategy: str = "in-place",
    host: str | None = None,
) -> Check:
    """The scanner's verdict on the pending migrations.

    Fails on a drop or rename not marked reviewed (``// bgdeploy: allow-destructive``),
    unless in place with ``allow_destructive`` (then it warns); blue-green never allows them.
    Raw SQL or row deletion to read by hand warns. ``items``: the blocking migrations.
    """
    blocking = [scan for scan in scans if scan.destructive and not scan.allowed]
    review = [scan for scan in scans if scan.needs_review and not scan.allowed]
    reviewed = [scan for scan in scans if scan.allowed]
    notes = [migrations.format_scan(scan) for scan in reviewed]
    if blocking:
        text = "\n".join(migrations.format_scan(scan) for scan in blocking)
        names = tuple(scan.name for scan in blocking)
        if allow_destructive and strategy != "blue-green":
            detail = f"allowed by --allow-destructive (a verified snapshot comes first):\n{text}"
            return Check("destructive", WARN, detail, host, names)
        return Check("destructive", FAIL, destructive_refusal(text, strategy), host, names)
    if review:
        text = "\n".join(migrations.format_scan(scan) for scan in review)
        return Check(
            "destructive",
            WARN,
            "\n".join([f"raw SQL or row deletion to read before deploying:\n{text}", *notes]),
            host,
            tuple(scan.name for scan in review),
        )
    summary = "no pending migration drops or renames" if scans else "no pending migrations"
    return Check("destructive", PASS, "\n".join([summary, *notes]), host)
