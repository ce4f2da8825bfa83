"""The blue-green deploy: build the idle colour, smoke-test it, switch, watch, keep the old.

``deploys/blue_green.py`` reads like the runbook's ``deploy-blue-green.sh``::

    determine the live colour     on every web host, before anything changes: hosts that
                                  disagree stop the deploy (``bgdeploy switch`` repairs that)
    lock, preflight               as the in-place release, for the idle colour
    build the idle colour         check out, composer, npm, caches: the release's own steps
    snapshot and migrate          once; destructive migrations are refused outright (both
                                  colours share the database: the live one must keep working)
    smoke-test the idle colour    the runbook's five smoke tests through the preview listener;
                                  a colour that fails is never switched to
    switch                        every web host or none (:mod:`bgdeploy.strategies.switch`)
    monitor                       health on every host for ``monitor_window``; a failure
                                  switches back automatically
    keep the old colour           untouched and warm, for ``bgdeploy rollback``

The build steps are :mod:`bgdeploy.strategies.release`'s, run with the idle colour as their
directory.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyinfra import logger

from bgdeploy import commands
from bgdeploy.checks import smoke, window
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import BgdeployError
from bgdeploy.fleet import events
from bgdeploy.fleet.colours import HostColours, live_colour, other, read_colours
from bgdeploy.fleet.pyinfra_backend import PyinfraFleet
from bgdeploy.strategies import canary as canary_mod
from bgdeploy.strategies import release, switch
from bgdeploy.strategies.release import ReleaseRun

T = TypeVar("T")


@dataclass
class BlueGreen:
    """What the blue-green deploy decided, shared by every host's operations."""

    live: str = ""
    idle: str = ""
    colours: dict[str, HostColours] = field(default_factory=dict)
    already: bool = False
    smoke_failed: list[str] = field(default_factory=list)
    switched: bool = False
    switched_back: bool = False


_DECISIONS: weakref.WeakKeyDictionary[Any, BlueGreen] = weakref.WeakKeyDictionary()


def state_of(run: ReleaseRun) -> BlueGreen:
    """What this pyinfra run's blue-green deploy decided (one per pyinfra ``State``, beside
    ``run``)."""
    return _DECISIONS.setdefault(release.current_state(), BlueGreen())


def begin(settings_factory: Callable[[], settings_mod.Settings]) -> ReleaseRun:
    """Join (or start) the blue-green deploy for the current host; checks as the release."""
    run = release.begin(settings_factory, strategy="blue-green")
    run.allow_destructive = False  # never for blue-green: the live colour shares the schema
    return run


def guard(run: ReleaseRun) -> None:
    """Before any operation: the release's checks (lock, ref, destructive migrations, which
    are refused outright here), and one live colour on every web host."""

    # Destructive migrations are refused in blue-green's words (bgdeploy.checks.preflight).
    release.guard(run)
    if release.current_host().name != run.migrate_host:
        return
    bg = state_of(run)
    settings = run.hosts[run.migrate_host].settings
    fleet = PyinfraFleet(release.current_state(), run.web_order)
    bg.colours = read_colours(fleet, settings)
    try:
        bg.live = live_colour(bg.colours)
    except BgdeployError as error:
        raise run.refuse("colours", str(error)) from None
    bg.idle = other(bg.live)
    bg.already = not run.force and all(
        c.heads.get(bg.live) == run.sha and c.ready(bg.live) for c in bg.colours.values()
    )


def _add(name: str, function: Callable[..., bool], when: Callable[[], bool], **kwargs: Any) -> None:
    release.add_operation(name, function, when, **kwargs)


def skip_if_live(run: ReleaseRun) -> None:
    """A commit that every host already serves (built and verified) changes nothing."""
    _, name = release.current()
    _add(
        "Already live?",
        _skip_if_live,
        lambda: state_of(run).already and run.hosts[name].is_web,
        run=run,
    )


def _skip_if_live(state: Any, host: Any, run: ReleaseRun) -> bool:
    bg = state_of(run)
    hostrun = run.hosts[host.name]
    hostrun.deploying = False
    hostrun.outcome.result = "unchanged"
    hostrun.outcome.colour = bg.live
    hostrun.outcome.sha_before = hostrun.outcome.sha_after = run.sha
    hostrun.outcome.message = f"already live at {run.sha} ({bg.live})"
    logger.info(f"{host.print_prefix}already live at {run.sha} ({bg.live}): nothing to do")
    return True


def build_idle_colour(run: ReleaseRun) -> None:
    """The release's own steps, in the idle colour: check out, composer, npm, snapshot and
    migrations (once), caches, storage link, a graceful php-fpm reload."""
    release.check_out(run, 0)
    release.install_dependencies(run, 0)
    release.snapshot_database(run, 0)
    release.run_migrations(run, 0)
    release.warm_up(run, 0)  # caches, storage link, php-fpm reload


def smoke_test_idle(run: ReleaseRun) -> None:
    """The five smoke tests through each host's preview listener; a pass marks the colour
    built and verified at the commit (only such a colour is ever switched to)."""
    _, name = release.current()
    _add("Smoke-test the idle colour", _smoke, lambda: run.changing(name, 0), run=run)


def _smoke(state: Any, host: Any, run: ReleaseRun) -> bool:
    bg = state_of(run)
    hostrun = run.hosts[host.name]
    settings = hostrun.settings
    started = release.begin_step(hostrun, "smoke tests")
    token = settings_mod.secrets_from_env(("API_TOKEN",))["API_TOKEN"]
    fleet = PyinfraFleet(state, [host.name])
    _, out, _ = fleet.run(
        host.name, commands.smoke_requests(settings.preview_port), stdin=token + "\n"
    )
    checks = smoke.evaluate(smoke.parse(out), run.sha, bg.idle)
    failed = [c for c in checks if not c.ok]
    if failed:
        message = "; ".join(f"{c.name}: {c.detail}" for c in failed)
        release.record_step(hostrun, "smoke tests", started, False, message)
        release.fail_host(hostrun, "smoke tests", f"the {bg.idle} colour failed: {message}", host)
        release.abort_batch(run, 0, host.name, "smoke tests")
        bg.smoke_failed.append(host.name)
        return False
    ok, out, err = fleet.run(host.name, commands.mark_built(hostrun.live_dir, run.sha or ""))
    release.record_step(hostrun, "smoke tests", started, ok, "" if ok else (err or out))
    return ok


def switch_colours(run: ReleaseRun) -> None:
    """Switch every web host to the new colour, or none (run once, for the whole fleet)."""
    _, name = release.current()
    _add("Switch colours", _switch, lambda: _ready_to_switch(run, name), run=run)


def _ready_to_switch(run: ReleaseRun, name: str) -> bool:
    """Once, on the first web host: every web host built and verified the idle colour."""
    bg = state_of(run)
    return (
        name == run.web_order[0]
        and not bg.already
        and run.report.refusal is None
        and run.aborted is None
        and 0 not in run.aborted_batches
        and all(
            run.hosts[h].deploying and run.hosts[h].outcome.failed_step is None
            for h in run.web_order
        )
    )


def _switch(state: Any, host: Any, run: ReleaseRun) -> bool:
    bg = state_of(run)
    settings = run.hosts[host.name].settings
    fleet = PyinfraFleet(state, run.web_order)
    colours = read_colours(fleet, settings)
    for name in run.web_order:
        release.begin_step(run.hosts[name], "switch")
    report = switch.switch(
        fleet, settings, bg.idle, who=run.who, reason=run.reason, colours=colours
    )
    for result in report.results:
        hostrun = run.hosts[result.host]
        release.record_step(
            hostrun, "switch", time.monotonic() - result.seconds, result.ok, result.error
        )
        hostrun.outcome.colour = bg.idle
        if result.ok:
            hostrun.outcome.sha_before = colours[result.host].heads.get(bg.live) or None
            hostrun.outcome.sha_after = run.sha
        else:
            release.fail_host(hostrun, "switch", result.error, host)
    bg.switched = not report.undone
    run.save()
    return report.ok


def monitor(run: ReleaseRun) -> None:
    """Watch health on every web host for ``monitor_window`` seconds after the switch; a
    failure switches every host back to the old colour (still built and warm)."""
    _, name = release.current()
    _add(
        "Monitor health",
        _monitor,
        lambda: name == run.web_order[0] and state_of(run).switched,
        run=run,
    )


def _monitor(state: Any, host: Any, run: ReleaseRun) -> bool:
    bg = state_of(run)
    settings = run.hosts[host.name].settings
    fleet = PyinfraFleet(state, run.web_order)
    probe = commands.health_probe(settings.public_port, settings.health_path)
    deadline = time.monotonic() + settings.monitor_window
    for name in run.web_order:
        release.begin_step(run.hosts[name], "monitor health")
    started = time.monotonic()
    problem = ""
    while True:
        answers = dict(
            zip(run.web_order, fleet.map(lambda n: fleet.run(n, probe), run.web_order), strict=True)
        )
        for name, (_, out, _) in answers.items():
            status, _, served = (out.strip().splitlines() or [""])[-1].partition(" ")
            if status != "200" or (served.strip() and served.strip() != run.sha):
                problem = f"{name}: {settings.health_path} answered {status or 'nothing'}"
        if problem or time.monotonic() >= deadline:
            break
        time.sleep(settings.health_interval)
    for name in run.web_order:
        hostrun = run.hosts[name]
        release.record_step(hostrun, "monitor health", started, not problem, problem)
        if not problem:
            hostrun.outcome.result = "ok"
            hostrun.outcome.message = f"{bg.idle} live, healthy for {settings.monitor_window:g} s"
    if not problem:
        run.save()
        return True
    logger.error(f"health failed after the switch ({problem}): switching back to {bg.live}")
    report = switch.switch_back(
        fleet, settings, bg.live, who=run.who, reason=f"automatic: {problem}"
    )
    bg.switched_back = report.ok
    # The release that failed once live is never switched or rolled back to again.
    bad_dir = f"{settings.app_root}/{bg.idle}"
    fleet.map(lambda n: fleet.run(n, commands.unmark_built(bad_dir), sudo=True), run.web_order)
    for result in report.results:
        hostrun = run.hosts[result.host]
        hostrun.outcome.failed_step = "monitor health"
        hostrun.outcome.sha_after = hostrun.outcome.sha_before
        # outcome.colour stays the colour this deploy built (a recovery reads it).
        if result.ok:
            hostrun.outcome.result = "rolled_back"
            hostrun.outcome.message = f"{problem}; switched back to {bg.live} automatically"
        else:
            hostrun.outcome.result = "failed"
            hostrun.outcome.message = f"{problem}; SWITCH BACK FAILED: {result.error}"
    run.save()
    return False


# Canary (bgdeploy/strategies/canary.py)


def canary_requested() -> bool:
    """True when the deploy was given ``--data canary=PCT``."""

    return release.current_host().data.get("canary") not in (None, "", False)


def canary(run: ReleaseRun) -> None:
    """Instead of a switch: ``canary`` % of the clients on the idle colour on every web host,
    the metric gate for ``canary_window``, then the switch (promoted; :func:`monitor` watches
    health as after any switch) or every client back on the live colour."""
    _, name = release.current()
    _add("Canary", _canary, lambda: _ready_to_switch(run, name), run=run)


@dataclass
class _Canary:
    """A canary under way, as its outcomes need it (:func:`_promote`, :func:`_send_back`, the
    split that failed): the fleet, the settings, each host's colours read before the split,
    the percentage and when the split began."""

    run: ReleaseRun
    fleet: PyinfraFleet
    settings: settings_mod.Settings
    colours: dict[str, HostColours]
    percent: float
    started: float
    watched: window.Watch | None = None

    @property
    def bg(self) -> BlueGreen:
        return state_of(self.run)

    @property
    def pct(self) -> str:
        return canary_mod.percent_text(self.percent)

    def record_step(self, name: str, ok: bool, message: str) -> None:
        """The ``canary`` step, from the split until now, in host ``name``'s outcome."""
        release.record_step(self.run.hosts[name], "canary", self.started, ok, message)

    def end(self, verdict: str, result: Any, message: str) -> None:
        """Journal the canary on every web host (``verdict``; ``result``: the gate's, None
        when it did not run) and save the run's report."""
        bg = self.bg

        def one(name: str) -> None:
            entry = canary_mod.journal_entry(
                self.settings, name, bg.idle, self.percent, verdict, result, who=self.run.who,
                sha=self.run.sha, sha_before=self.colours[name].heads.get(bg.live) or None,
                message=message, reason=self.run.reason, watched=self.watched,
            )  # fmt: skip
            self.fleet.run(name, commands.journal_append(self.settings, entry), sudo=True)

        self.fleet.map(one, self.run.web_order)
        self.run.save()


def _canary(state: Any, host: Any, run: ReleaseRun) -> bool:
    bg = state_of(run)
    settings = run.hosts[host.name].settings
    percent = canary_mod.check_percent(host.data.get("canary"))
    fleet = PyinfraFleet(state, run.web_order)
    colours = read_colours(fleet, settings)
    for name in run.web_order:
        release.begin_step(run.hosts[name], "canary")
    trial = _Canary(run, fleet, settings, colours, percent, started=time.monotonic())
    results = canary_mod.start(fleet, settings, bg.live, bg.idle, percent)
    if not all(result.ok for result in results):
        for result in results:
            trial.record_step(result.host, False, result.error)
            release.fail_host(
                run.hosts[result.host],
                "canary",
                f"the split was not applied (every host left as it was): {result.error}; a "
                f"site provisioned before canaries does not include the split: run `bgdeploy "
                f"provision {settings.env}`",
                host,
            )
        trial.end("failed", None, "split failed")
        return False
    for name in run.web_order:  # an interrupted deploy's recovery reads it (switch.recover)
        run.hosts[name].outcome.colour = bg.idle
    run.save()
    urls = [_probe_url(fleet, name, settings) for name in run.web_order]
    source = f"Prometheus {settings.prometheus_url}" if settings.prometheus_url else "probes"
    logger.info(
        f"canary: {trial.pct}% of clients on {bg.idle} on every web host; the gate watches it "
        f"for {settings.canary_window:g} s ({source}), evaluating every "
        f"{settings.canary_interval:g} s"
    )

    def report(record: window.Watch) -> None:  # the live view, or a line a plain run shows
        if events.active():
            events.emit("canary", percent=percent, **record.event())
        else:
            logger.info(f"{host.print_prefix}{record.line()}")

    try:
        trial.watched = canary_mod.judge(settings, bg.live, bg.idle, urls, report=report)
    except BaseException:
        canary_mod.send_back(fleet, settings, bg.live)
        raise
    result = trial.watched.result
    for line in [*result.explain(), *trial.watched.report()]:
        (logger.info if result.passed else logger.warning)(f"{host.print_prefix}{line}")
    if canary_mod.decide(result) == canary_mod.PROMOTE and not trial.watched.early:
        return _promote(state, host, trial, result)
    return _send_back(trial, result)


def _probe_url(fleet: PyinfraFleet, name: str, settings: settings_mod.Settings) -> str:
    data = fleet.hosts[name].data
    address = data.get("ssh_hostname") or name
    port = data.get("http_port") or settings.public_port  # both colours probed alike
    return canary_mod.probe_url(str(address), int(port), settings.health_path)


def _promote(state: Any, host: Any, trial: _Canary, result: Any) -> bool:
    """The gate passed: every web host switched to the idle colour, the split cleared (or,
    when the switch failed, every client back on the live colour)."""
    bg, run = trial.bg, trial.run
    logger.info(f"canary {trial.pct}% passed the gate: switching every web host to {bg.idle}")
    ok = _switch(state, host, run)
    if ok:
        canary_mod.clear_split(trial.fleet, trial.settings)
    else:
        canary_mod.send_back(trial.fleet, trial.settings, bg.live)
    message = canary_mod.summary(result) + ("" if ok else "; the switch failed: all on the old")
    for name in run.web_order:
        trial.record_step(name, ok, message)
        if ok:
            run.hosts[name].outcome.message = f"canary {trial.pct}% promoted: {bg.idle} live"
    trial.end("promoted" if ok else "failed", result, message)
    return ok


def _send_back(trial: _Canary, result: Any) -> bool:
    """The gate failed: every client back on the live colour, and the release that failed
    its canary unmarked as built, so it is never switched or rolled back to."""
    bg, run, fleet, settings, pct = trial.bg, trial.run, trial.fleet, trial.settings, trial.pct
    why = canary_mod.summary(result)
    watched = trial.watched
    if watched is not None and watched.early:
        why = f"sent back at {watched.ended_at:.0f} s of {watched.rules.window:g} s: {why}"
    logger.error(f"canary {pct}% failed the gate: every client back on {bg.live} ({why})")
    back = {r.host: r for r in canary_mod.send_back(fleet, settings, bg.live)}
    if watched is not None:
        watched.back(time.monotonic() - watched.began)
        for line in watched.report()[1:]:
            logger.warning(f"canary {pct}%: {line}")
    bad_dir = f"{settings.app_root}/{bg.idle}"
    fleet.map(lambda n: fleet.run(n, commands.unmark_built(bad_dir), sudo=True), run.web_order)
    for name in run.web_order:
        trial.record_step(name, False, why)
        outcome = run.hosts[name].outcome
        outcome.failed_step = "canary"
        outcome.colour = bg.idle
        outcome.sha_before = outcome.sha_after = trial.colours[name].heads.get(bg.live)
        if back[name].ok:
            outcome.result = "rolled_back"
            outcome.message = f"canary {pct}% on {bg.idle}: {why}; all back on {bg.live}"
        else:
            outcome.result = "failed"
            outcome.message = (
                f"canary {pct}%: {why}; PUTTING {bg.live} BACK FAILED: {back[name].error} "
                f"(`bgdeploy switch {settings.env} {bg.live}`)"
            )
    trial.end("rolled back" if all(r.ok for r in back.values()) else "failed", result, why)
    return False
