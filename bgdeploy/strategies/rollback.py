"""``bgdeploy rollback ENV``: bring the previous release back, on every web host.

The deploy lock is taken on every reachable web host before anything is read
(:func:`bgdeploy.fleet.fleetlock.hold`; exit 3 naming the holder when a deploy, a switch or another
rollback holds it) and released at the end, however the rollback ends. Then, two ways back,
chosen per run from what the hosts say:

- **Switch back** (blue-green, seconds): when the colour that is not live holds a release on
  every web host, built and verified at that commit, and it is not the live one, every host
  is switched to it (all hosts or none, :func:`bgdeploy.strategies.switch.switch`) after the
  runbook's
  smoke tests passed on it through the preview listener; then ``/api/health`` must answer
  from it on every host.
- **In place** (minutes): otherwise the live colour goes back to the previous good commit:
  the release's own restore steps run (:func:`bgdeploy.commands.release_steps`: forced
  checkout, composer, npm, caches, storage link, php-fpm and nginx reloads, queue workers),
  then ``/api/health`` is watched until it answers 200 from that commit.

The previous good commit is read from the journals of every web host, merged in time order
(:func:`select_target`): the latest release that went live (a deploy, a switch or a
rollback) before the live one, leaving out every release marked bad. ``--to REF`` names the
release instead (a tag, branch or commit, checked before any connection).

Whichever way, the release left is journaled as bad (``details.bad_release`` of the
``rollback`` line on every host; a blue-green colour left is also unmarked as built), so
it is never picked as an automatic rollback target again, until it is deployed again.

``--migrations N`` first takes a verified database snapshot on the db host (as a release
does), then runs ``php artisan migrate:rollback --step=N --force`` once, on the designated
web host (``migrate_host``, or the first), with the code of the release being left (the one
that has those migrations).

One strict SSH connection per web host is opened at the start and used for everything. A host
that cannot be reached is reported failed and the others roll back (exit 1), without its
lock; a host whose key is unknown or changed stops the whole rollback before anything runs
anywhere (exit 3). Ctrl-C during an in-place rollback stops the commands on the hosts,
journals the interruption and releases the lock; running the rollback again with ``--to``
the same commit finishes it (a host whose live colour is checked out at the target but not
marked built is built again).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from bgdeploy import commands
from bgdeploy.checks import schema, smoke
from bgdeploy.core import journal, refs
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import (
    ConfigError,
    HostError,
    HostKeyRejected,
    OperationFailed,
    PolicyRefusal,
)
from bgdeploy.core.journal import JournalEntry
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import fabric_backend, fleetlock, remote, runner
from bgdeploy.fleet.executor import UNLIMITED_SECONDS, CommandResult
from bgdeploy.strategies import switch

MAX_MIGRATION_STEPS = 100
STEP_TIMEOUT = 1800
"""Seconds one restore step may take (composer and npm on a slow mirror), as in a release."""
JOURNAL_LINES = 5000
"""How many of the last journal lines of each host are read to choose the target."""


# The request, checked before any connection
# ------------------------------------------


@dataclass(frozen=True)
class RollbackRequest:
    """A checked ``bgdeploy rollback``: nothing has connected yet."""

    env: str
    environment: runner.Environment
    to: str | None = None
    migrations: int | None = None
    reason: str | None = None
    smoke: bool = True
    token: str = ""

    @property
    def settings(self) -> Settings:
        return self.environment.settings[self.environment.web[0]]


def check_request(
    env: str,
    to: str | None = None,
    migrations: int | None = None,
    reason: str | None = None,
    no_smoke: bool = False,
) -> RollbackRequest:
    """Check a rollback request without connecting to any host.

    + to: the release to go back to (validated: a hostile value exits 2 here)
    + migrations: how many migrations ``migrate:rollback --step`` undoes (1 to 100)
    + reason: journaled
    + no_smoke: skip the smoke tests before a switch back

    Raises :class:`ConfigError` (exit 2) for a bad value, environment or setting.
    """
    if to is not None:
        refs.validate_ref(to)
    if migrations is not None and not 1 <= migrations <= MAX_MIGRATION_STEPS:
        raise ConfigError(f"--migrations {migrations} must be from 1 to {MAX_MIGRATION_STEPS}")
    if reason is not None and not reason.strip():
        raise ConfigError("--reason is empty: say why")
    environment = runner.check_environment(env)
    if migrations and not environment.db:
        raise ConfigError(f"--migrations needs a db host: inventories/{env}.py has none")
    token = ""
    if not no_smoke:
        token = settings_mod.secrets_from_env(("API_TOKEN",))["API_TOKEN"]
    return RollbackRequest(
        env=env,
        environment=environment,
        to=to,
        migrations=migrations,
        reason=reason.strip() if reason else None,
        smoke=not no_smoke,
        token=token,
    )


# Choosing the release to go back to (pure, from the journals)
# ------------------------------------------------------------

LIVE_EVENTS = ("deploy_finish", "switch", "rollback")


def bad_releases(entries: Sequence[JournalEntry]) -> set[str]:
    """Commits marked bad in the journals (in time order): the release a rollback left
    (``details.bad_release``, ``sha_before``), and a release rolled back automatically
    (``deploy_fail`` with result ``rolled_back``). A later successful deploy of the same
    commit, or a rollback to it, clears the mark."""
    bad: set[str] = set()
    for entry in entries:
        if entry.event == "rollback" and entry.result == "ok":
            bad.discard(entry.sha or "")
            for sha in (entry.details.get("bad_release"), entry.sha_before):
                if isinstance(sha, str) and sha:
                    bad.add(sha)
        elif entry.event == "deploy_fail" and entry.result == "rolled_back" and entry.sha:
            bad.add(entry.sha)
        elif entry.event == "deploy_finish" and entry.result == "ok" and entry.sha:
            bad.discard(entry.sha)
    return bad


def live_releases(entries: Sequence[JournalEntry]) -> list[str]:
    """The commits that went live, in time order: successful deploys, switches, rollbacks."""
    return [
        entry.sha
        for entry in entries
        if entry.event in LIVE_EVENTS and entry.result == "ok" and entry.sha
    ]


def select_target(entries: Sequence[JournalEntry], live: dict[str, str]) -> str:
    """The commit an automatic rollback goes back to.

    + entries: every web host's journal, merged in time order
    + live: each reachable web host's live commit

    When some hosts serve a release marked bad and all the others one good release (a
    rollback that did not reach every host), that release. Otherwise the latest release that
    went live, is not live now and is not marked bad. Raises :class:`OperationFailed` when
    there is none.
    """
    bad = bad_releases(entries)
    serving = {sha for sha in live.values() if sha}
    good = serving - bad
    if serving & bad and len(good) == 1:
        return next(iter(good))
    for sha in reversed(live_releases(entries)):
        if sha not in serving and sha not in bad:
            return sha
    shown = ", ".join(sorted(refs.short(sha) for sha in bad)) or "none"
    raise OperationFailed(
        f"the journals name no good release before {', '.join(sorted(map(refs.short, serving)))}"
        f" (marked bad: {shown})"
    )


def switch_back_colour(
    colours: dict[str, switch.HostColours], to_sha: str | None = None
) -> str | None:
    """The colour every host can switch back to, or None: all hosts agree on the live colour,
    and the other one holds on each a built, verified release other than the live one (when
    ``to_sha`` is given, that one)."""
    if not colours or any(c.error or not c.consistent for c in colours.values()):
        return None
    lives = {c.live for c in colours.values()}
    if len(lives) != 1:
        return None
    live = lives.pop()
    previous = switch.other(live)
    for facts in colours.values():
        head = facts.heads.get(previous, "")
        if not facts.ready(previous) or head == facts.heads.get(live):
            return None
        if to_sha and head != to_sha:
            return None
    return previous


def parse_resolved(output: str) -> set[str]:
    """The commits :func:`bgdeploy.commands.git_resolve` printed (``kind sha`` lines)."""
    return {
        parts[1]
        for parts in (line.split() for line in output.splitlines())
        if len(parts) == 2 and refs.FULL_SHA.match(parts[1])
    }


# The web hosts: one strict connection each, for the whole rollback
# -----------------------------------------------------------------


class Hosts(fabric_backend.FabricFleet):
    """The web hosts over Fabric (strict host keys), one connection each, opened once.

    :meth:`open` connects to all in parallel; a host that cannot be reached is set aside in
    ``down`` with its typed reason (:class:`bgdeploy.core.errors.HostUnreachable` or
    :class:`bgdeploy.core.errors.HostKeyRejected`), and ``names`` keeps the reachable ones
    (what the switch runs on). The same connections carry the reads, the smoke tests, the
    switch and the journal.
    """

    def __init__(self, targets: Sequence[remote.Target]) -> None:
        super().__init__(targets)
        self.targets = list(targets)
        self.all_names = list(self.names)
        self.down: dict[str, HostError] = {}
        self.stopped = False

    def stop(self) -> None:
        """After Ctrl-C: no command starts any more, and the connections close (commands
        running under a terminal on the hosts get SIGHUP)."""
        self.stopped = True
        self.close()

    def open_all(self) -> None:
        """Connect to every host in parallel; the unreachable ones go to ``down``."""
        for name, error in zip(self.all_names, self.map(self.open, self.all_names), strict=True):
            if error is not None:
                self.down[name] = error
        self.names = [name for name in self.all_names if name not in self.down]

    @property
    def refused_keys(self) -> dict[str, HostError]:
        """Hosts whose host key was unknown or changed."""
        return {name: why for name, why in self.down.items() if isinstance(why, HostKeyRejected)}

    def command(
        self,
        name: str,
        command: str,
        stdin: str | None = None,
        pty: bool = False,
        timeout: float = remote.COMMAND_TIMEOUT,
    ) -> CommandResult:
        """Run ``command`` on ``name`` (``stdin``: its input; ``pty``: under a terminal, so it
        stops when the connection drops); nothing once the rollback was stopped."""
        if self.stopped:
            return CommandResult(name, False, stderr="interrupted (Ctrl-C)")
        return self.run(name, command, stdin=stdin, pty=pty, timeout=timeout)

    def each(self, function: Callable[[str], Any], names: Sequence[str] | None = None) -> None:
        """Run ``function(name)`` for every reachable host (or ``names``) in parallel."""
        self.map(function, list(self.names if names is None else names))


# The rollback
# ------------


@dataclass
class RollbackReport:
    """What a rollback did: the way back, the release left and the target, per host."""

    env: str
    strategy: str = ""
    target: str = ""
    colour: str = ""
    results: list[remote.HostResult] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)
    """``--migrations``: the fingerprints before and after, the migrations undone (newest
    first) and their batches."""

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(result.ok for result in self.results)

    def heading(self) -> str:
        where = f" ({self.colour})" if self.colour else ""
        return f"rollback to {refs.short(self.target)}{where}, {self.strategy}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "strategy": self.strategy,
            "target": self.target,
            "colour": self.colour or None,
            "ok": self.ok,
            "snapshot": self.snapshot or None,
            "database": self.database or None,
            "notes": self.notes,
            "hosts": [
                {
                    "host": r.host,
                    "ok": r.ok,
                    "seconds": round(r.seconds, 2),
                    "detail": r.detail,
                    "error": r.error,
                }
                for r in self.results
            ],
        }


def rollback(request: RollbackRequest, progress: Progress = quiet) -> RollbackReport:
    """Roll ``request.env`` back (see the module): switch back when the other colour holds
    the previous release everywhere, otherwise in place. Returns the per-host report; raises
    :class:`PolicyRefusal` (exit 3) for a refused host key, a held lock or a failed smoke
    test, and :class:`OperationFailed` (exit 1) when there is nothing to go back to."""
    targets = remote.targets(request.env, ("web",), request.environment.inventory)
    hosts = Hosts(targets)
    try:
        return _rollback(request, hosts, progress)
    finally:
        hosts.close()


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
    with fleetlock.hold(hosts, paths, request.env, "rollback", progress=progress) as held:
        return _locked(request, hosts, held.run, progress)


def _locked(request: RollbackRequest, hosts: Hosts, run: str, progress: Progress) -> RollbackReport:
    """The rollback, under the deploy lock (deploy ``run``) of every reachable web host."""
    colours, answers = _read(request, hosts)
    for facts in colours.values():
        if not facts.error and facts.current not in switch.COLOURS:
            facts.error = f"{request.settings.app_root}/current does not point at blue or green"
    unreadable = {name: c.error for name, c in colours.items() if c.error}
    if all(facts.error for facts in colours.values()):
        each = "; ".join(f"{name}: {c.error}" for name, c in colours.items())
        raise OperationFailed(f"no web host could be read: {each}")
    to_sha = _resolve(request, hosts, colours) if request.to else None
    previous = switch_back_colour({n: c for n, c in colours.items() if not c.error}, to_sha)
    if previous is not None and not unreadable:
        return _switch_back(request, hosts, colours, answers, previous, run, progress)
    return _in_place(request, hosts, colours, to_sha, run, progress)


def _read(
    request: RollbackRequest, hosts: Hosts
) -> tuple[dict[str, switch.HostColours], dict[str, str]]:
    """Both colours of every host and, at the same time, the smoke requests through the
    preview listener (the colour a switch back would serve): one round trip's time."""
    settings = request.settings
    facts = commands.colour_facts(
        settings.app_root, switch.LIVE_INCLUDE, switch.IDLE_INCLUDE, settings.lock_path
    )
    jobs = [(name, "facts") for name in hosts.names]
    if request.smoke:
        jobs += [(name, "smoke") for name in hosts.names]

    def one(job: tuple[str, str]) -> tuple[bool, str, str]:
        name, kind = job
        if kind == "facts":
            return hosts.command(name, facts)
        port = request.environment.settings[name].preview_port
        return hosts.command(name, commands.smoke_requests(port), stdin=request.token + "\n")

    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        done = dict(zip(jobs, pool.map(one, jobs), strict=True))
    colours: dict[str, switch.HostColours] = {}
    answers: dict[str, str] = {}
    for name in hosts.names:
        ok, out, err = done[(name, "facts")]
        colours[name] = switch.parse_facts(name, out)
        if not ok:
            colours[name].error = err.strip() or "could not read the colours"
        if (name, "smoke") in done:
            answers[name] = done[(name, "smoke")].stdout
    return colours, answers


def _resolve(request: RollbackRequest, hosts: Hosts, colours: dict[str, switch.HostColours]) -> str:
    """The one commit ``--to`` names, read in the live colour's repository of the first
    reachable host (fetched first when it does not know the ref)."""
    assert request.to is not None
    name = next(n for n in hosts.names if not colours[n].error)
    directory = f"{request.settings.app_root}/{colours[name].current or 'current'}"
    command = commands.in_dir(directory, commands.git_resolve_or_fetch(request.to))
    ok, out, err = hosts.command(name, command)
    found = parse_resolved(out)
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


# Switching back (blue-green)
# ---------------------------


def _switch_back(
    request: RollbackRequest,
    hosts: Hosts,
    colours: dict[str, switch.HostColours],
    answers: dict[str, str],
    previous: str,
    run: str,
    progress: Progress,
) -> RollbackReport:
    settings = request.settings
    live = switch.other(previous)
    report = RollbackReport(request.env, "switch back", colour=previous)
    report.target = colours[hosts.names[0]].heads.get(previous, "")
    if request.smoke:
        failed = _smoke_failures(colours, answers, previous)
        if failed:
            report.results = [
                remote.HostResult(name, name not in failed, error=failed.get(name, ""),
                                  detail="smoke tests passed")
                for name in hosts.names
            ]  # fmt: skip
            raise SmokeRefused(report, f"the previous colour {previous} failed its smoke tests")
    if request.migrations:
        _migrations(request, hosts, colours, report, progress)
    progress(f"switching every web host to {previous}")
    why = request.reason or "rollback"
    switched = switch.switch(hosts, settings, previous, reason=why, colours=colours, lock_run=run)
    report.results = switched.results + _down_results(hosts)
    if not switched.ok:
        return report
    left = f"{settings.app_root}/{live}"

    def record(name: str) -> None:
        result = next(r for r in report.results if r.host == name)
        bad, sha = colours[name].heads.get(live, ""), colours[name].heads.get(previous, "")
        began = time.monotonic()
        healthy = smoke.wait_healthy(
            lambda command: hosts.run(name, command), request.environment.settings[name], sha
        )
        steps = [
            journal.Step("switch", round(result.seconds, 3)),
            journal.Step("verify health", round(time.monotonic() - began, 3),
                         "ok" if healthy else "failed"),
        ]  # fmt: skip
        unhealthy = f"{settings.health_path} not healthy on {refs.short(sha)} after the switch"
        entry = _entry(
            request, name, sha, bad, "ok" if healthy else "failed", "switch back",
            colour=previous, steps=steps, snapshot=report.snapshot,
            message=None if healthy else unhealthy, extra={"from": live},
        )  # fmt: skip
        # The release left is never picked as a rollback target again.
        ok, _, err = hosts.command(
            name,
            commands.join(
                commands.unmark_built(left),
                journal.journal_append_command(settings.journal_path, entry),
            ),
        )
        if not healthy:
            result.ok, result.error = False, unhealthy
        elif not ok:
            result.ok = False
            result.error = f"switched, but the journal was not written: {err.strip()[-200:]}"

    hosts.each(record)
    return report


def _smoke_failures(
    colours: dict[str, switch.HostColours], answers: dict[str, str], colour: str
) -> dict[str, str]:
    failed = {}
    for name, output in answers.items():
        checks = smoke.evaluate(smoke.parse(output), colours[name].heads.get(colour), colour)
        bad = [c for c in checks if not c.ok]
        if bad:
            failed[name] = "; ".join(f"{c.name}: {c.detail}" for c in bad)
    return failed


class SmokeRefused(PolicyRefusal):
    """The colour to switch back to failed its smoke tests (``report`` says where)."""

    def __init__(self, report: RollbackReport, message: str) -> None:
        super().__init__(message)
        self.report = report


# In place
# --------


def _in_place(
    request: RollbackRequest,
    hosts: Hosts,
    colours: dict[str, switch.HostColours],
    to_sha: str | None,
    run: str,
    progress: Progress,
) -> RollbackReport:
    settings = request.settings
    live = {name: c.heads.get(c.current, "") for name, c in colours.items() if not c.error}
    entries = _journals(hosts, settings)
    if to_sha:
        target = to_sha
        if to_sha in bad_releases(entries):
            progress(f"{refs.short(to_sha)} was marked bad; rolling back to it as asked (--to)")
    else:
        try:
            target = select_target(entries, live)
        except OperationFailed as error:
            raise OperationFailed(_nothing_message(request.env, colours, str(error))) from None
    report = RollbackReport(request.env, "in place", target=target)
    moving = [
        name
        for name in hosts.names
        if not colours[name].error and not _built_at(colours[name], target)
    ]
    if not moving:
        if request.migrations:
            report.notes.append("--migrations: not run (it needs the code of a release left)")
        report.results = [_unmoved(name, colours[name], target) for name in hosts.names]
        report.results += _down_results(hosts)
        report.notes.append("nothing to do: every reachable host serves the target already")
        return report
    if request.migrations:
        _migrations(request, hosts, colours, report, progress)
    progress(
        f"rolling back in place to {refs.short(target)} on {', '.join(moving)} "
        "(checkout, composer, npm, caches, reloads, workers, health)"
    )
    done: dict[str, remote.HostResult] = {}

    def one(name: str) -> None:
        done[name] = _restore_host(request, hosts, name, colours[name], target, run, report)

    pool = ThreadPoolExecutor(max_workers=len(moving))
    try:
        for future in [pool.submit(one, name) for name in moving]:
            future.result()
    except KeyboardInterrupt:
        progress("interrupted: stopping the commands on the hosts")
        hosts.stop()
        pool.shutdown(wait=True)
        _interrupted(request, hosts, moving, colours, target, run, progress)
        raise
    finally:
        pool.shutdown(wait=False)
    report.results = [
        done.get(name) or _unmoved(name, colours[name], target) for name in hosts.names
    ] + _down_results(hosts)
    return report


def _interrupted(
    request: RollbackRequest,
    hosts: Hosts,
    names: list[str],
    colours: dict[str, switch.HostColours],
    target: str,
    run: str,
    progress: Progress,
) -> None:
    """After Ctrl-C: over new connections, stop the step still running (its process group)
    and journal the interruption on every host that was being rolled back (the lock is
    released on the way out, :func:`bgdeploy.fleet.fleetlock.hold`), so that the rollback can be
    run again."""
    again = Hosts([t for t in hosts.targets if t.name in names])
    finish = f"bgdeploy rollback {request.env} --to {target}"
    message = f"interrupted (Ctrl-C): the host may be half rolled back; finish with `{finish}`"

    def one(name: str) -> None:
        settings = request.environment.settings[name]
        facts = colours[name]
        entry = _entry(
            request, name, target, facts.heads.get(facts.current, ""), "failed", "in place",
            colour=facts.current, message=message, extra={"run": run, "interrupted": True},
        )  # fmt: skip
        ok, _, err = again.command(
            name,
            commands.join(
                commands.stop_group(_group_file(settings, run)),
                journal.journal_append_command(settings.journal_path, entry),
            ),
        )
        progress(f"{name}: " + ("stopped" if ok else f"NOT stopped: {err.strip()}"))

    try:
        again.open_all()
        again.each(one)
    finally:
        again.close()
    progress(f"the hosts may be half rolled back: finish with `{finish}`")


def _unmoved(name: str, facts: switch.HostColours, target: str) -> remote.HostResult:
    """A reachable host that was not rolled back: already at the target, or unreadable."""
    if facts.error:
        return remote.HostResult(name, False, error=f"{facts.error}: not rolled back")
    return remote.HostResult(name, True, detail=f"already at {refs.short(target)}")


def _built_at(facts: switch.HostColours, sha: str) -> bool:
    """The live colour is checked out at ``sha`` and was built and verified there (a host
    left half rolled back is not)."""
    return facts.heads.get(facts.current) == sha and facts.built.get(facts.current) == sha


def _nothing_message(env: str, colours: dict[str, switch.HostColours], why: str) -> str:
    holds_colour = any(
        c.heads.get(switch.other(c.live)) for c in colours.values() if c.live in switch.COLOURS
    )
    start = "nothing to switch back to (the other colour holds no built, verified release)"
    start = start if holds_colour else "nothing to roll back to"
    return (
        f"{start}: {why}. Roll back to a given release with `bgdeploy rollback {env} --to REF` "
        f"(`bgdeploy history {env}` lists them)"
    )


def _journals(hosts: Hosts, settings: Settings) -> tuple[JournalEntry, ...]:
    """Every reachable web host's journal (the last lines), merged in time order."""
    command = journal.journal_read_command(settings.journal_path, JOURNAL_LINES)
    texts: dict[str, str] = {}

    def one(name: str) -> None:
        ok, out, _ = hosts.command(name, command)
        if ok:
            texts[name] = out

    hosts.each(one)
    return journal.merge_histories({n: texts[n] for n in hosts.names if n in texts}).entries


def _restore_host(
    request: RollbackRequest,
    hosts: Hosts,
    name: str,
    facts: switch.HostColours,
    target: str,
    run: str,
    report: RollbackReport,
) -> remote.HostResult:
    """The release's restore steps with ``target`` in the live colour, health, then the
    journal line in one round trip."""
    settings = request.environment.settings[name]
    started = time.monotonic()
    directory = f"{settings.app_root}/{facts.current}"
    left = facts.heads.get(facts.current, "")
    steps: list[journal.Step] = []
    failure = ""
    # The commit may be unknown here (--to a release this host never had): fetched first.
    fetch = ("fetch", commands.in_dir(directory, commands.git_fetch_missing(target)))
    restore = commands.release_steps(settings, directory, target, restore=True)
    group = _group_file(settings, run)
    for step, command in [fetch, *restore]:
        began = time.monotonic()
        command = commands.join(commands.record_group(group), command)
        ok, out, err = hosts.command(name, command, pty=True, timeout=STEP_TIMEOUT)
        steps.append(
            journal.Step(step, round(time.monotonic() - began, 2), "ok" if ok else "failed")
        )
        if not ok:
            tail = (err or out).strip().splitlines()[-1:] or ["no output"]
            failure = f"{step} failed: {tail[0][-200:]}"
            break
    if not failure:
        began = time.monotonic()
        healthy = smoke.wait_healthy(lambda command: hosts.run(name, command), settings, target)
        steps.append(journal.Step("verify health", round(time.monotonic() - began, 2),
                                  "ok" if healthy else "failed"))  # fmt: skip
        if not healthy:
            failure = f"{settings.health_path} not healthy on {refs.short(target)}"
    result = "failed" if failure else "ok"
    entry = _entry(
        request, name, target, left, result, "in place", colour=facts.current, steps=steps,
        snapshot=report.snapshot, message=failure or None, extra={"run": run},
    )  # fmt: skip
    finish = [
        "" if failure else commands.mark_built(directory, target),
        journal.journal_append_command(settings.journal_path, entry),
        commands.forget_group(group),
    ]
    ok, _, err = hosts.command(name, commands.join(*finish))
    detail = f"{refs.short(left)} -> {refs.short(target)}, healthy"
    if not failure and not ok:
        failure = f"rolled back, but the journal was not written: {err.strip()[-200:]}"
    return remote.HostResult(
        name, not failure, seconds=time.monotonic() - started, detail=detail,
        error=f"{failure} (the host may serve a broken release: check it)" if failure else "",
    )  # fmt: skip


def _group_file(settings: Settings, run: str) -> str:
    """Where a host records the process group of the restore step running (for Ctrl-C)."""
    return f"{settings.app_root}/.bgdeploy/rollback-{run}.pgid"


def _entry(
    request: RollbackRequest,
    name: str,
    sha: str,
    left: str,
    result: str,
    strategy: str,
    colour: str | None = None,
    steps: list[journal.Step] | None = None,
    snapshot: dict[str, Any] | None = None,
    message: str | None = None,
    extra: dict[str, Any] | None = None,
) -> JournalEntry:
    """The ``rollback`` journal line of one host: the release left is ``bad_release``."""
    details: dict[str, Any] = {"strategy": strategy, **(extra or {})}
    if left and left != sha:
        details["bad_release"] = left
    if request.to:
        details["to"] = request.to
    if request.migrations and snapshot and snapshot.get("migrated_on") == name:
        details["migrations_rolled_back"] = request.migrations
        details["snapshot"] = snapshot.get("name")
    return journal.new_entry(
        "rollback",
        host=name,
        env=request.env,
        ref=request.to,
        sha=sha or None,
        sha_before=left or None,
        colour=colour if colour in switch.COLOURS else None,
        result=result,
        steps=steps or [],
        reason=request.reason,
        message=message
        or (f"left {refs.short(left)} (marked bad)" if details.get("bad_release") else None),
        details=details,
    )


def _down_results(hosts: Hosts) -> list[remote.HostResult]:
    return [
        remote.HostResult(name, False, error=f"{why}: not rolled back")
        for name, why in hosts.down.items()
    ]


# --migrations N
# --------------


def _on_db(target: remote.Target, command: str, what: str) -> CommandResult:
    """Run ``command`` on the db host (its own connection, no time limit: a snapshot takes
    what it takes); OperationFailed saying ``what`` when the host was not reached."""
    done = fabric_backend.PerCommandFleet([target]).run(
        target.name, command, timeout=UNLIMITED_SECONDS
    )
    if done.error is not None or done.exit_status is None:
        raise OperationFailed(f"{target.name}: {what}: {done.stderr}")
    return done


def _migrations(
    request: RollbackRequest,
    hosts: Hosts,
    colours: dict[str, switch.HostColours],
    report: RollbackReport,
    progress: Progress,
) -> None:
    """A verified snapshot on the db host, then ``migrate:rollback --step=N --force`` once,
    on the designated web host, in its live colour (the code that has those migrations)."""
    from bgdeploy.strategies.release import snapshot_name

    assert request.migrations is not None
    environment = request.environment
    settings = request.settings
    migrate_host = settings.migrate_host if settings.migrate_host in hosts.names else None
    migrate_host = migrate_host or next(n for n in environment.web if n in hosts.names)
    facts = colours[migrate_host]
    left = facts.heads.get(facts.current, "")
    db_target = remote.targets(request.env, ("db",), environment.inventory)[0]
    db = environment.settings[db_target.name]
    name = snapshot_name(left or "0" * 12)
    steps = request.migrations
    state = commands.join(
        commands.schema_fingerprint(db.db_port, db.db_name),
        commands.migrations_after(db.db_port, db.db_name, 0),
    )
    command = commands.join(
        commands.snapshot_create(db.backups_dir, name, db.db_name, db.db_port, db.snapshot_keep),
        state,
    )
    progress(f"{db_target.name}: snapshot {name}, then migrate:rollback --step={steps}")
    done = _on_db(db_target, command, "snapshot failed, no migration was rolled back")
    found = commands.SNAPSHOT_CREATED.search(done.stdout)
    before = schema.parse_fingerprint(done.stdout)
    if not done.ok or not found or before is None:
        raise OperationFailed(
            f"{db_target.name}: snapshot failed, no migration was rolled back: {done.exit_text()}"
        )
    recorded = schema.parse_batches(done.stdout)
    report.snapshot = {
        "name": found.group(1),
        "path": f"{db.backups_dir}/{found.group(1)}.dump",
        "host": db_target.name,
        "size": int(found.group(2)),
        "sha256": found.group(3),
        "migrated_on": migrate_host,
    }
    directory = f"{settings.app_root}/{facts.current}"
    progress(f"{migrate_host}: php artisan migrate:rollback --step={steps} --force")
    ok, out, err = hosts.command(
        migrate_host, commands.in_dir(directory, commands.migrate_rollback(steps)), pty=True
    )
    after_run = _on_db(db_target, state, "the database could not be read after the rollback")
    after = schema.parse_fingerprint(after_run.stdout)
    remaining = schema.parse_batches(after_run.stdout)
    undone = [(m, b) for m, b in recorded.items() if m not in remaining]
    report.database = {
        "before": asdict(before),
        "after": asdict(after) if after else None,
        "undone": [m for m, _ in undone],
        "batches": sorted({b for _, b in undone}, reverse=True),
    }
    kept = f"snapshot {found.group(1)} is kept at {db_target.name}:{report.snapshot['path']}"
    if not ok:
        raise OperationFailed(
            f"{migrate_host}: migrate:rollback failed: {(err or out).strip()[-400:]}\n"
            f"undone before it failed: {', '.join(m for m, _ in undone) or 'nothing'}; {kept} "
            f"(`bgdeploy snapshot {request.env} restore {found.group(1)}`)"
        )
    batches = ", ".join(str(b) for b in report.database["batches"]) or "none"
    report.notes.append(
        f"{len(undone)} migration(s) rolled back on {migrate_host} (batch {batches}): "
        f"{', '.join(m for m, _ in undone) or 'none'}; after snapshot {found.group(1)} "
        f"({db_target.name}, verified); database fingerprint {before.short} -> "
        f"{after.short if after else 'unreadable'}"
    )
