"""``bgdeploy rollback ENV``: bring the previous release back, on every web host.

The deploy lock is taken on every reachable web host before anything is read
(:func:`bgdeploy.fleet.fleetlock.hold`; exit 3 naming the holder when a deploy, a switch or another
rollback holds it) and released at the end, however the rollback ends; only the smoke tests'
GET requests start beside it, as soon as the hosts are connected (they take the longest), and
are judged against what is read under it. Then, two ways back,
chosen per run from what the hosts say (:mod:`~bgdeploy.strategies.rollback.policy`):

- **Switch back** (blue-green, seconds): when the colour that is not live holds a release on
  every web host, built and verified at that commit, and it is not the live one, every host
  is switched to it (all hosts or none) after the runbook's smoke tests passed on it through
  the preview listener; then ``/api/health`` must answer from it on every host
  (:mod:`~bgdeploy.strategies.rollback.switch_back`).
- **In place** (minutes): otherwise the live colour goes back to the previous good commit:
  the release's own restore steps run, then ``/api/health`` is watched until it answers 200
  from that commit (:mod:`~bgdeploy.strategies.rollback.in_place`).

The previous good commit is read from the journals of every web host, merged in time order
(:func:`~bgdeploy.strategies.rollback.policy.select_target`): the latest release that went
live (a deploy, a switch or a rollback) before the live one, leaving out every release marked
bad. ``--to REF`` names the release instead (a tag, branch or commit, checked before any
connection: :mod:`~bgdeploy.strategies.rollback.request`).

Whichever way, the release left is journaled as bad (``details.bad_release`` of the
``rollback`` line on every host; a blue-green colour left is also unmarked as built), so
it is never picked as an automatic rollback target again, until it is deployed again
(:mod:`~bgdeploy.strategies.rollback.record`).

``--migrations N`` first takes a verified database snapshot on the db host (as a release
does), then runs ``php artisan migrate:rollback --step=N --force`` once, on the designated
web host, with the code of the release being left
(:mod:`~bgdeploy.strategies.rollback.migrations`).

One strict SSH connection per web host is opened at the start and used for everything
(:mod:`~bgdeploy.strategies.rollback.hosts`). A host that cannot be reached is reported failed
and the others roll back (exit 1), without its lock; a host whose key is unknown or changed
stops the whole rollback before anything runs anywhere (exit 3). Ctrl-C during an in-place
rollback stops the commands on the hosts, journals the interruption and releases the lock;
running the rollback again with ``--to`` the same commit finishes it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from bgdeploy import commands
from bgdeploy.core import timing
from bgdeploy.core.errors import ConfigError, OperationFailed, PolicyRefusal
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.render import COLOURS
from bgdeploy.fleet import delivery, fleetlock, remote
from bgdeploy.fleet.colours import HostColours, facts_command, from_output
from bgdeploy.fleet.executor import CommandResult
from bgdeploy.oncall import hooks
from bgdeploy.strategies.rollback import in_place, policy, switch_back
from bgdeploy.strategies.rollback.hosts import Hosts
from bgdeploy.strategies.rollback.record import RollbackReport, announce_rollback
from bgdeploy.strategies.rollback.request import RollbackRequest, check_request
from bgdeploy.strategies.rollback.switch_back import SmokeRefused

__all__ = [
    "RollbackReport",
    "RollbackRequest",
    "SmokeRefused",
    "announce_rollback",
    "check_request",
    "rollback",
]


def rollback(request: RollbackRequest, progress: Progress = quiet) -> RollbackReport:
    """Roll ``request.env`` back (see the module): switch back when the other colour holds
    the previous release everywhere, otherwise in place. Returns the per-host report; raises
    :class:`PolicyRefusal` (exit 3) for a refused host key, a held lock or a failed smoke
    test, and :class:`OperationFailed` (exit 1) when there is nothing to go back to."""
    targets = remote.targets(request.env, ("web",), request.environment.inventory)
    hosts = Hosts(targets)
    try:
        report = _rollback(request, hosts, progress)
    finally:
        hosts.close()
    if report.ok:  # the lock is released: a hook may take its time
        settings = request.settings
        context = hooks.Context(
            env=request.env, release=report.target, strategy=report.strategy,
            colour=report.colour, result="ok",
        )  # fmt: skip
        with timing.phase("hooks"):
            hooks.run_stage(
                "post-rollback", context, settings.hooks, settings.hook_timeout, progress=progress
            )
    return report


def _rollback(request: RollbackRequest, hosts: Hosts, progress: Progress) -> RollbackReport:
    hosts.open_all()
    if hosts.refused_keys:
        each = "; ".join(f"{name}: {why}" for name, why in hosts.refused_keys.items())
        raise PolicyRefusal(f"rollback refused, nothing was run on any host: {each}")
    if not hosts.names:
        each = "; ".join(f"{name}: {why}" for name, why in hosts.down.items())
        raise OperationFailed(f"no web host could be reached: {each}")
    for name, why in hosts.down.items():
        progress(f"{name}: {why}: the other hosts roll back without it")
    paths = {name: request.environment.settings[name].lock_path for name in hosts.names}
    smoke = _Smoke(request, hosts)
    read = dict.fromkeys(hosts.names, facts_command(request.settings))  # in the lock's trip
    try:
        with fleetlock.hold(
            hosts, paths, request.env, "rollback", progress=progress, read=read
        ) as held:
            colours = {name: from_output(name, True, held.read[name]) for name in hosts.names}
            return _locked(request, hosts, held.run, progress, smoke, colours)
    finally:
        smoke.pool.shutdown(wait=False, cancel_futures=True)


class _Smoke:
    """The smoke requests of every host through its preview listener, sent as soon as the
    hosts are connected, beside the lock and the reading of the colours (they take the
    longest: a Laravel request each, five per host). Only GET requests: nothing changes. What
    they answered is judged against the colours read under the lock: an answer from another
    release than the one the colour holds then fails (:func:`bgdeploy.checks.smoke.evaluate`)."""

    def __init__(self, request: RollbackRequest, hosts: Hosts) -> None:
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(hosts.names)))
        self.futures: dict[str, Future[CommandResult]] = {}
        if not request.smoke:
            return
        for name in hosts.names:
            port = request.environment.settings[name].preview_port
            command = commands.smoke_requests(port)
            self.futures[name] = self.pool.submit(self._one, hosts, name, command, request.token)

    @staticmethod
    def _one(hosts: Hosts, name: str, command: str, token: str) -> CommandResult:
        with timing.phase("smoke tests"):
            return hosts.command(name, command, stdin=token + "\n")

    def answers(self) -> dict[str, str]:
        """Each host's answers (waits for them)."""
        return {name: future.result().stdout for name, future in self.futures.items()}


def _locked(
    request: RollbackRequest,
    hosts: Hosts,
    run: str,
    progress: Progress,
    smoke: _Smoke,
    colours: dict[str, HostColours],
) -> RollbackReport:
    """The rollback, under the deploy lock (deploy ``run``) of every reachable web host
    (``colours``: each host's, read as it was taken)."""
    answers = smoke.answers()
    for facts in colours.values():
        if not facts.error and facts.current not in COLOURS:
            facts.error = f"{request.settings.app_root}/current does not point at blue or green"
    unreadable = {name: c.error for name, c in colours.items() if c.error}
    if all(facts.error for facts in colours.values()):
        each = "; ".join(f"{name}: {c.error}" for name, c in colours.items())
        raise OperationFailed(f"no web host could be read: {each}")
    to_sha = _resolve(request, hosts, colours) if request.to else None
    readable = {n: c for n, c in colours.items() if not c.error}
    previous = policy.switch_back_colour(readable, to_sha)
    if previous is not None and not unreadable:
        return switch_back.switch_back(request, hosts, colours, answers, previous, run, progress)
    return in_place.in_place(request, hosts, colours, to_sha, run, progress)


def _resolve(request: RollbackRequest, hosts: Hosts, colours: dict[str, HostColours]) -> str:
    """The one commit ``--to`` names, read in the live colour's repository of the first
    reachable host (fetched first when it does not know the ref), or in the operator's cache
    clone when the operator pushes the code (:mod:`bgdeploy.fleet.delivery`)."""
    assert request.to is not None
    name = next(n for n in hosts.names if not colours[n].error)
    directory = f"{request.settings.app_root}/{colours[name].current or 'current'}"
    code = delivery.Delivery(request.settings)
    ok, out, err = code.resolve(
        request.to,
        lambda command: hosts.command(name, commands.in_dir(directory, command)),
        fetch_unknown=True,
    )
    found = policy.parse_resolved(out)
    if not ok and not found:
        raise OperationFailed(f"{name}: could not resolve {request.to!r}: {err.strip()[-300:]}")
    if not found:
        raise ConfigError(f"--to {request.to!r} is not a branch, tag or commit of the repository")
    if len(found) > 1:
        raise ConfigError(
            f"--to {request.to!r} names several commits ({', '.join(sorted(found))}): "
            "give the commit"
        )
    return found.pop()
