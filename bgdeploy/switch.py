"""The blue-green colour switch behind nginx, on every web host or on none.

Each web host has two full checkouts, ``blue/`` and ``green/``. nginx's public server block
includes ``/etc/nginx/bideshgomon/live.conf`` (the live colour's document root and php-fpm
pool); the preview listener includes ``idle.conf``. A switch, on a fleet:

1. reads both colours on every host (which is live, which commit each holds and was built at);
   the colour switched to must be built on every host;
2. writes the new includes beside the old ones on every host (nothing changes yet);
3. on every host at once: renames them over the old ones (atomic), ``nginx -t``, reloads nginx
   (graceful: requests in flight finish on the old workers). If any host fails, the hosts that
   switched are switched back, and the switch fails: all hosts or none;
4. moves ``current`` (an atomic rename) and signals the queue workers to restart after their
   current job (``queue:restart``; supervisor starts them again through ``current``), so the
   scheduler and the workers run the new colour; journals the switch on every host.

The old colour stays as it is, built and warm, so switching back takes seconds. The same code
runs from the CLI (over Fabric) and from the blue-green deploy file (over pyinfra's
connections): :class:`Fleet` is how it reaches the hosts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from bgdeploy import commands, journal, remote
from bgdeploy.errors import ConfigError, OperationFailed, PolicyRefusal
from bgdeploy.render import IDLE_INCLUDE, LIVE_INCLUDE, colour_include
from bgdeploy.settings import Settings

COLOURS = ("blue", "green")
T = TypeVar("T")


def other(colour: str) -> str:
    """The other colour."""
    if colour not in COLOURS:
        raise ConfigError(f"colour {colour!r} is not blue or green")
    return "green" if colour == "blue" else "blue"


class Fleet(Protocol):
    """How the switch reaches the web hosts: run a command on one, run a function on all."""

    names: list[str]

    def run(self, name: str, command: str, sudo: bool = False) -> tuple[bool, str, str]: ...

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]: ...


class FabricFleet:
    """Web hosts over Fabric: one strict connection per host, kept for the whole switch."""

    def __init__(self, targets: Sequence[remote.Target]) -> None:
        self.names = [target.name for target in targets]
        self.connections = {target.name: remote.connect(target) for target in targets}

    def run(self, name: str, command: str, sudo: bool = False) -> tuple[bool, str, str]:
        connection = self.connections[name]
        try:
            text = commands.as_root(command) if sudo else command
            result = connection.run(text, hide=True, warn=True, in_stream=False, timeout=120)
        except Exception as error:
            return False, "", remote.describe_error(error)
        return result.exited == 0, result.stdout, result.stderr

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]:
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(names)))) as pool:
            return list(pool.map(function, names))

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()


@dataclass
class HostColours:
    """What one web host says about its colours."""

    name: str
    current: str = ""
    live: str = ""
    idle: str = ""
    heads: dict[str, str] = field(default_factory=dict)
    built: dict[str, str] = field(default_factory=dict)
    error: str = ""

    def ready(self, colour: str) -> bool:
        """The colour is checked out and was built and verified at that commit."""
        head = self.heads.get(colour, "")
        return bool(head) and self.built.get(colour) == head

    @property
    def consistent(self) -> bool:
        return self.live in COLOURS and self.live == self.current and self.idle == other(self.live)


def parse_facts(name: str, output: str) -> HostColours:
    """Read :func:`bgdeploy.commands.colour_facts` output."""
    found = HostColours(name)
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key in ("current", "live", "idle"):
            setattr(found, key, value)
        elif key.endswith("_head"):
            found.heads[key.removesuffix("_head")] = value
        elif key.endswith("_built"):
            found.built[key.removesuffix("_built")] = value
    return found


def read_colours(fleet: Fleet, settings: Settings) -> dict[str, HostColours]:
    """Both colours of every web host, read in parallel."""
    command = commands.colour_facts(settings.app_root, LIVE_INCLUDE, IDLE_INCLUDE)

    def one(name: str) -> HostColours:
        ok, out, err = fleet.run(name, command)
        facts = parse_facts(name, out)
        if not ok:
            facts.error = err.strip() or "could not read the colours"
        return facts

    return dict(zip(fleet.names, fleet.map(one, fleet.names), strict=True))


def live_colour(colours: dict[str, HostColours]) -> str:
    """The one live colour of the fleet; refuses (exit 3) when hosts disagree, naming each."""
    unreadable = [f"{c.name}: {c.error}" for c in colours.values() if c.error]
    if unreadable:
        raise OperationFailed("cannot read the live colour: " + "; ".join(unreadable))
    seen = {
        c.live if c.consistent else f"{c.live or '?'}/current={c.current or '?'}"
        for c in colours.values()
    }
    if len(seen) != 1 or next(iter(seen)) not in COLOURS:
        each = ", ".join(
            f"{c.name} {c.live or '?'}"
            + ("" if c.consistent else f" (current -> {c.current or '?'})")
            for c in colours.values()
        )
        raise PolicyRefusal(
            f"the web hosts disagree on the live colour ({each}): nothing was changed. Repair "
            "with `bgdeploy switch ENV blue|green`, which puts every host on one colour."
        )
    return next(iter(seen))


@dataclass
class SwitchReport:
    """What a switch did on each host."""

    colour: str
    previous: dict[str, str]
    results: list[remote.HostResult]
    undone: bool = False

    @property
    def ok(self) -> bool:
        return not self.undone and all(result.ok for result in self.results)


def switch(
    fleet: Fleet,
    settings: Settings,
    colour: str,
    who: str | None = None,
    reason: str | None = None,
    force: bool = False,
    colours: dict[str, HostColours] | None = None,
) -> SwitchReport:
    """Switch every web host of ``fleet`` to ``colour``: all hosts or none (see the module).

    ``force``: switch to a colour that is not marked built (an operator's repair).
    """
    idle_colour = other(colour)
    colours = colours or read_colours(fleet, settings)
    unreadable = [f"{c.name}: {c.error}" for c in colours.values() if c.error]
    if unreadable:
        raise OperationFailed("cannot read the colours: " + "; ".join(unreadable))
    not_ready = [name for name, c in colours.items() if not c.ready(colour)]
    if not_ready and not force:
        raise PolicyRefusal(
            f"{colour} is not built on {', '.join(not_ready)}: a colour that was not built and "
            "verified is never switched to (deploy it first, or --force)"
        )
    previous = {name: c.live for name, c in colours.items()}
    live_text = colour_include(settings, colour)
    idle_text = colour_include(settings, idle_colour)
    started = {name: time.monotonic() for name in fleet.names}

    def prepare(name: str) -> tuple[bool, str]:
        ok, out, err = fleet.run(
            name,
            commands.switch_prepare(LIVE_INCLUDE, IDLE_INCLUDE, live_text, idle_text),
            sudo=True,
        )
        return ok, (err or out).strip()

    def apply(name: str) -> tuple[bool, str]:
        ok, out, err = fleet.run(name, commands.switch_apply(LIVE_INCLUDE, IDLE_INCLUDE), sudo=True)
        return ok, (err or out).strip()

    def cleanup(name: str) -> None:
        fleet.run(name, commands.switch_cleanup(LIVE_INCLUDE, IDLE_INCLUDE), sudo=True)

    prepared = dict(zip(fleet.names, fleet.map(prepare, fleet.names), strict=True))
    failed = {name: why for name, (ok, why) in prepared.items() if not ok}
    if not failed:
        applied = dict(zip(fleet.names, fleet.map(apply, fleet.names), strict=True))
        failed = {name: why for name, (ok, why) in applied.items() if not ok}
        if failed:
            switched = [name for name, (ok, _) in applied.items() if ok]
            fleet.map(
                lambda name: fleet.run(
                    name, commands.switch_undo(LIVE_INCLUDE, IDLE_INCLUDE), sudo=True
                ),
                switched,
            )
    fleet.map(cleanup, fleet.names)
    if failed:
        results = [
            remote.HostResult(
                name, False, seconds=time.monotonic() - started[name],
                error=failed.get(name) or f"switched back ({', '.join(failed)} failed)",
            )
            for name in fleet.names
        ]  # fmt: skip
        _journal_all(fleet, settings, colours, colour, who, reason, "failed", results)
        return SwitchReport(colour, previous, results, undone=True)

    def after(name: str) -> remote.HostResult:
        ok, out, err = fleet.run(
            name,
            # queue:restart: each worker exits after its current job and supervisor starts it
            # again through `current`, now the new colour (no waiting here for the jobs).
            commands.join(
                commands.move_current(settings.app_root, colour),
                commands.live_artisan(settings, "queue:restart"),
            ),
            sudo=True,
        )
        detail = f"{previous[name] or '?'} -> {colour}"
        return remote.HostResult(
            name, ok, seconds=time.monotonic() - started[name], detail=detail,
            error="" if ok else f"nginx serves {colour}, but: {(err or out).strip()[-200:]}",
        )  # fmt: skip

    results = fleet.map(after, fleet.names)
    _journal_all(fleet, settings, colours, colour, who, reason, "ok", results)
    return SwitchReport(colour, previous, results)


def _journal_all(
    fleet: Fleet,
    settings: Settings,
    colours: dict[str, HostColours],
    colour: str,
    who: str | None,
    reason: str | None,
    result: str,
    results: list[remote.HostResult],
) -> None:
    by_host = {r.host: r for r in results}

    def one(name: str) -> None:
        facts = colours[name]
        entry = journal.new_entry(
            "switch", who=who, host=name, env=settings.env, colour=colour,
            sha=facts.heads.get(colour) or None, sha_before=facts.heads.get(facts.live) or None,
            result=result if by_host[name].ok or result == "failed" else "failed",
            reason=reason, message=by_host[name].summary(),
            steps=[journal.Step("switch", round(by_host[name].seconds, 3), result)],
            details={"from": facts.live or None},
        )  # fmt: skip
        ok, _, err = fleet.run(name, commands.journal_append(settings, entry), sudo=True)
        if not ok:
            by_host[name].error += f" (journal not written: {err.strip()[-120:]})"

    fleet.map(one, fleet.names)
