"""The operator's switch (``bgdeploy switch ENV COLOUR``): every web host to one colour, or
none, under the fleet's deploy lock.

1. the deploy lock is taken on every web host (:func:`bgdeploy.fleet.fleetlock.hold`): while a
   deploy, a rollback or another switch holds it, :class:`bgdeploy.core.errors.LockHeld`
   (exit 3) names the holder;
2. the colours are read; when every host already serves ``colour``, nothing is done;
3. ``colour`` is smoke-tested through the preview listener (unless told not to): a failure
   refuses the switch (:class:`SmokeRefused`, exit 3, with each host's result);
4. :func:`bgdeploy.strategies.switch.switch` switches every host, or puts every host back;
5. the lock is released on every host, however it ended.

The blue-green deploy and the rollback switch through
:func:`bgdeploy.strategies.switch.switch` under locks of their own.
"""

from __future__ import annotations

from bgdeploy.checks import smoke
from bgdeploy.core import timing
from bgdeploy.core.errors import PolicyRefusal
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.fleet import fleetlock, remote, runner
from bgdeploy.fleet.colours import facts_command, from_output
from bgdeploy.oncall import hooks
from bgdeploy.strategies import switch


class SmokeRefused(PolicyRefusal):
    """The colour to switch to failed its smoke tests: nothing was switched (exit 3).
    ``results``: each web host's smoke tests."""

    def __init__(self, colour: str, results: list[remote.HostResult]) -> None:
        super().__init__(f"{colour} failed its smoke tests: not switched")
        self.colour = colour
        self.results = results


def switch_to(
    env: str,
    colour: str,
    smoke_test: bool = True,
    force: bool = False,
    reason: str | None = None,
    progress: Progress = quiet,
) -> switch.SwitchReport | None:
    """Switch every web host of ``env`` to ``colour`` (see the module).

    + smoke_test: smoke-test ``colour`` first, through the preview listener (on the hosts
      where it is not live yet)
    + force: switch even to a colour not marked built (an operator's repair)
    + reason: why, journaled
    + progress: told where the lock could not be released

    Returns the switch's report, or None when every web host already served ``colour``.
    """
    environment = runner.check_environment(env)
    settings = environment.settings[environment.web[0]]
    fleet = switch.FabricFleet(remote.targets(env, ("web",), environment.inventory))
    paths = {name: environment.settings[name].lock_path for name in fleet.names}
    try:
        fleet.open_all()  # every host at once; one that cannot be reached fails the lock
        read = dict.fromkeys(fleet.names, facts_command(settings))  # in the lock's round trip
        with fleetlock.hold(
            fleet, paths, env, f"switch {colour}", what="switched", progress=progress, read=read
        ) as held:
            colours = {name: from_output(name, True, held.read[name]) for name in fleet.names}
            if all(c.consistent and c.live == colour and not c.canary for c in colours.values()):
                return None
            if smoke_test:
                smoke_colour = colour if any(c.live != colour for c in colours.values()) else None
                with timing.phase("smoke tests"):
                    results, _ = smoke.run(env, idle=True, colour=smoke_colour)
                if any(not r.ok for r in results):
                    raise SmokeRefused(colour, results)
            report = switch.switch(
                fleet, settings, colour, reason=reason, force=force, colours=colours,
                lock_run=held.run,
            )  # fmt: skip
    finally:
        fleet.close()
    if report.ok:  # the lock is released: a hook may take its time
        heads = {c.heads.get(colour, "") for c in colours.values()}
        context = hooks.Context(
            env=env, release=heads.pop() if len(heads) == 1 else "", strategy="switch",
            colour=colour, run_id=held.run, result="ok",
        )  # fmt: skip
        with timing.phase("hooks"):
            hooks.run_stage(
                "post-switch", context, settings.hooks, settings.hook_timeout, progress=progress
            )
    return report
