"""Preflight: the runbook's pre-deployment checklist, where a machine can check it.

``bgdeploy preflight ENV --ref REF`` reads what a deploy of REF would meet, changes nothing
on the servers but fetching the repository into the colour's ``.git`` (as a deploy does), and
prints one line per check, each ``pass``, ``warn`` or ``fail``:

================  ======================================================================
check             what is read, and when it fails or warns
================  ======================================================================
ref               REF names exactly one commit of the repository (fail: none, or several)
main              the commit is reachable from ``origin/main``: the runbook merges to
                  main before deploying (warn when not)
migrations        the pending migrations: files of REF under ``database/migrations`` that
                  the database's ``migrations`` table lacks (what ``migrate`` would run);
                  a migration file changed or deleted between the live commit and REF
                  warns (a migration that already ran never runs again)
destructive       the pending migrations' ``up()`` scanned (:mod:`bgdeploy.checks.migrations`):
                  a drop or rename fails, unless in place with ``--allow-destructive``
                  (warn); blue-green refuses them always; raw SQL to review warns
feature flags     ``config/features.php`` of REF, read as text: flags past their
                  ``remove_after`` date, and flags new since the live commit without one
                  (warn)
secrets           ``shared/.env`` on every web host holds APP_KEY, DB_PASSWORD,
                  REDIS_PASSWORD and API_TOKEN (values are never read back)
window            the deploy window (:mod:`bgdeploy.core.windows`) now
lock              no deploy holds the lock on any web host
disk              ``min_free_disk_mb`` free under ``app_root`` on every web host
clean checkout    no local changes in the colour the deploy would check out into
snapshot disk     the db host's backups directory has room for the snapshot taken before
                  migrations (twice the last dump, or the database's size): fail when
                  migrations are pending, warn otherwise
================  ======================================================================

Exit 0 when nothing fails (warnings included), 3 when a check fails (a deploy would be
refused or would fail its preflight), 1 when a host could not be read, 2 on bad input (a
hostile ``--ref``, an unknown environment) before any connection.

The deploy runs the same check functions (:func:`check_lock`, :func:`resolve_ref`,
:func:`check_destructive`, :func:`host_checks`) at its start: ``bgdeploy.strategies.release.guard``
and its per-host preflight, so this checklist and a deploy never disagree.

=================================  ==============================================================
module                             what it holds
=================================  ==============================================================
:mod:`.report`                     one check's result; the checklist, its table, JSON and exit code
:mod:`.servers`                    window, lock, secrets, disk, clean checkout, snapshot disk
:mod:`.database`                   pending migrations, and the scanner's verdict on them
:mod:`.features`                   ``config/features.php`` read as text, the feature flags check
:mod:`.commit`                     the ref's one commit, on main, the advice a deploy logs
:mod:`.reading`                    the hosts read over Fabric, and the whole checklist
=================================  ==============================================================

Each name is importable from here (``from bgdeploy.checks import preflight``;
``preflight.check_lock(...)``, the same in the CLI, the deploy and the tests) or from its module.
"""

from __future__ import annotations

from bgdeploy.checks.preflight.commit import (
    MAIN_BRANCH,
    Git,
    check_on_main,
    release_advice,
    resolve_ref,
    split_files,
)
from bgdeploy.checks.preflight.database import (
    MIGRATIONS_DIR,
    check_destructive,
    check_migrations,
    destructive_refusal,
    parse_name_status,
)
from bgdeploy.checks.preflight.features import (
    FEATURES_FILE,
    Expression,
    FeaturesError,
    Flag,
    check_flags,
    parse_features,
)
from bgdeploy.checks.preflight.reading import (
    STRATEGIES,
    Request,
    check_request,
    run,
)
from bgdeploy.checks.preflight.report import (
    FAIL,
    ORDER,
    PASS,
    WARN,
    Check,
    Checklist,
    Status,
)
from bgdeploy.checks.preflight.servers import (
    SECRET_NAMES,
    check_lock,
    check_snapshot_space,
    check_window,
    host_checks,
    parse_facts,
)

__all__ = [
    "FAIL",
    "FEATURES_FILE",
    "MAIN_BRANCH",
    "MIGRATIONS_DIR",
    "ORDER",
    "PASS",
    "SECRET_NAMES",
    "STRATEGIES",
    "WARN",
    "Check",
    "Checklist",
    "Expression",
    "FeaturesError",
    "Flag",
    "Git",
    "Request",
    "Status",
    "check_destructive",
    "check_flags",
    "check_lock",
    "check_migrations",
    "check_on_main",
    "check_request",
    "check_snapshot_space",
    "check_window",
    "destructive_refusal",
    "host_checks",
    "parse_facts",
    "parse_features",
    "parse_name_status",
    "release_advice",
    "resolve_ref",
    "run",
    "split_files",
]
