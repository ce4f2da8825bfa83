"""The in-place release (the runbook's "Manual Deployment"), step by step, for pyinfra.

``deploys/release.py`` reads like the runbook by calling these functions in order; each adds
one named pyinfra operation (or a few) to every host of the inventory. The live colour
(``<app_root>/<target of current>``) is updated where it stands::

    take the deploy lock          every web host, atomically (bgdeploy.core.lock)
    preflight                     current, APP_KEY in shared/.env, free disk, clean tree, fetch
    check out the release         the exact commit the ref resolved to, once, for every host
    install dependencies          composer install; npm ci / npm run build on one host, whose
                                  assets the others receive, checksummed (asset_paths)
    snapshot the database         on the db host, when migrations are pending (verified)
    run migrations                once, from the designated web host (migrate_host)
    go live                       caches (config/route/view/event, one PHP process),
                                  storage:link, php-fpm and nginx reloads (each configuration
                                  tested first), queue workers (stopped, queue:restart,
                                  started), /api/health through nginx until health_deadline
    restore or roll back          the previous commit and its build, when something failed
    journal, release the lock     on every web host, whatever happened

How failures are handled
------------------------

pyinfra runs each operation on every host before the next one, and drops a host whose
operation fails. A release must not drop a host half-way: it has to restore the previous
release there, journal what happened and release the lock. So every step here records its own
success or failure (shown as ``Error (ignored)`` by pyinfra) and the later steps decide, when
they run, whether they apply (pyinfra's ``_if``). The last operation, "Finish", fails every
host whose release failed, so the run still exits non-zero.

- A failure before migrations (checkout, composer, npm, the snapshot, the migration itself)
  stops the batch: migrations are not run (or, on PostgreSQL, leave the schema as it was) and
  every host of the batch goes back to its previous commit and build.
- A failure after migrations (caches, reloads, workers, health) rolls that host back to its
  previous commit, unless ``auto_rollback`` is off.
- With ``rolling_batch``, hosts go in batches of that size; a batch starts only when the
  earlier ones are healthy, and a failure stops the rollout.

Checks that run before any operation is added (so a plain ``pyinfra`` run is guarded too):
valid settings and ``--data`` values, the deploy window (``emergency_reason`` overrides it), a
lock already held, the ref resolving to exactly one commit, destructive pending migrations
(``allow_destructive`` overrides) and room for the snapshot on the db host; a commit off main
and feature flags past their removal date are logged as warnings. A refusal raises
:class:`DeployRefused` and nothing runs. These are :mod:`bgdeploy.checks.preflight`'s checks, the
ones ``bgdeploy preflight`` prints.

Data the deploy file reads (``--data key=value``): ``ref`` (default: group_data), ``force``
(deploy even when the commit is already live), ``emergency_reason``, ``reason``,
``allow_destructive``, and for ``bgdeploy deploy``: ``bgdeploy_run_id``,
``bgdeploy_report`` (a JSON file kept up to date with
:class:`bgdeploy.core.release_report.ReleaseReport`).

The modules
-----------

=================================  ==============================================================
module                             what it holds
=================================  ==============================================================
:mod:`.run`                        the run shared by every host (:class:`ReleaseRun`), begin,
                                   the rolling batches, :class:`DeployRefused`
:mod:`.operations`                 running a command, recording a step, adding an operation
:mod:`.guard`                      the refusals before any operation, the lock, preflight
:mod:`.build`                      check out, install dependencies, the shared assets
:mod:`.database`                   snapshot, migrate, the undo of a failed migrate
:mod:`.live`                       go live (or warm up), health, restore on failure
:mod:`.finish`                     the journal, the lock released, each host's result
:mod:`.dry`                        ``pyinfra --dry``: the plan instead of the operations
=================================  ==============================================================

Each step is importable from here (``from bgdeploy.strategies import release``;
``release.check_out(run, batch)``), as the deploy files and the blue-green strategy use them,
or from its module.
"""

from __future__ import annotations

from bgdeploy.strategies.release.build import check_out, install_dependencies
from bgdeploy.strategies.release.database import (
    run_migrations,
    snapshot_database,
    snapshot_name,
    undo_failed_migrate,
)
from bgdeploy.strategies.release.dry import dry_run, print_plan
from bgdeploy.strategies.release.finish import finish, journal_entries, release_lock, write_journal
from bgdeploy.strategies.release.guard import guard, preflight, take_lock
from bgdeploy.strategies.release.live import go_live, restore_on_failure, warm_up
from bgdeploy.strategies.release.operations import (
    abort_batch,
    add_operation,
    begin_step,
    fail_host,
    record_step,
)
from bgdeploy.strategies.release.run import (
    DeployRefused,
    HostRun,
    ReleaseRun,
    begin,
    current,
    current_host,
    current_state,
)

__all__ = [
    "DeployRefused",
    "HostRun",
    "ReleaseRun",
    "abort_batch",
    "add_operation",
    "begin",
    "begin_step",
    "check_out",
    "current",
    "current_host",
    "current_state",
    "dry_run",
    "fail_host",
    "finish",
    "go_live",
    "guard",
    "install_dependencies",
    "journal_entries",
    "preflight",
    "print_plan",
    "record_step",
    "release_lock",
    "restore_on_failure",
    "run_migrations",
    "snapshot_database",
    "snapshot_name",
    "take_lock",
    "undo_failed_migrate",
    "warm_up",
    "write_journal",
]
