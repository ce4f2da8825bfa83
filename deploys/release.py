"""The in-place release: the runbook's "Manual Deployment", automated and made safe.

    pyinfra -y inventories/ENV.py deploys/release.py --data ref=v2.4.0   (or: bgdeploy deploy ENV)

The live colour (the target of ``current``) is updated where it stands, on every web host in
parallel (in batches of ``rolling_batch`` when that is set). Before any operation: settings,
the deploy window (``--data emergency_reason=...`` overrides it), a held lock, the ref
(resolved once to one commit) and destructive migrations (``--data allow_destructive=true``)
are checked. Whatever fails later, the previous release comes back on the hosts it left, the
journal says what happened and the lock is released. ``--data force=true`` deploys a commit
that is already live. Quote a numeric ref as JSON: ``--data 'ref="0123"'``. With ``--dry``,
the deploy's plan is printed (``bgdeploy deploy ENV --ref REF --plan``) and nothing runs.
"""

from pyinfra import host

from bgdeploy.fleet.runner import current_settings
from bgdeploy.strategies import release

# Checked before anything is added: a refusal stops the run here, on every host.
if release.dry_run():  # pyinfra --dry: the plan, no operation
    release.print_plan(current_settings, "in-place")
else:
    run = release.begin(current_settings)
    release.guard(run)

    release.take_lock(run)
    release.preflight(run)

    for batch in host.loop(range(len(run.batches))):
        release.check_out(run, batch)
        release.install_dependencies(run, batch)
        release.snapshot_database(run, batch)
        release.run_migrations(run, batch)
        release.go_live(run, batch)  # caches, storage link, reloads, workers, health
        release.restore_on_failure(run, batch)

    release.write_journal(run)
    release.release_lock(run)
    release.finish(run)
