"""The blue-green deploy: the runbook's `./scripts/deploy-blue-green.sh v2.1.0`, automated.

    pyinfra -y inventories/ENV.py deploys/blue_green.py --data ref=v2.1.0
    (or: bgdeploy deploy ENV --strategy blue-green --ref v2.1.0)

1. Determine the live colour on every web host (hosts that disagree stop the deploy).
2. Lock and preflight, then build the idle colour at the ref with the release's own steps.
3. Snapshot and migrate once (destructive migrations are refused: both colours share it).
4. Smoke-test the idle colour through the preview listener on every host.
5. Switch every web host to it, or none; move `current`; restart the workers.
6. Monitor health for `monitor_window`; a failure switches back automatically.
7. Keep the old colour as it is, warm, for an instant switch back. Journal everything.

With `--data canary=PCT` (`bgdeploy deploy ENV --canary PCT`), step 5 is a canary: PCT % of
the clients on the new colour on every web host, the metric gate for `canary_window`, then
the switch (promoted) or every client back on the old colour (bgdeploy/strategies/canary.py).
With `--dry`, the deploy's plan is printed (`bgdeploy deploy ENV --strategy blue-green
--plan`) and nothing runs.
"""

from bgdeploy.fleet.runner import current_settings
from bgdeploy.strategies import blue_green, release

if release.dry_run():  # pyinfra --dry: the plan, no operation
    release.print_plan(current_settings, "blue-green")
else:
    run = blue_green.begin(current_settings)
    blue_green.guard(run)

    release.take_lock(run)
    release.preflight(run)
    blue_green.skip_if_live(run)

    blue_green.build_idle_colour(run)
    blue_green.smoke_test_idle(run)
    if blue_green.canary_requested():
        blue_green.canary(run)
    else:
        blue_green.switch_colours(run)
    blue_green.monitor(run)

    release.write_journal(run)
    release.release_lock(run)
    release.finish(run)
