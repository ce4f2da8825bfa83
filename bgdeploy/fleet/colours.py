"""The colours of the web hosts, as they are: which is live, what each holds, who serves what.

Each web host has two full checkouts, ``blue/`` and ``green/``; nginx serves one of them (the
live colour, ``live.conf``) and previews the other (``idle.conf``). One round trip per host
(:func:`read_colours`, running :func:`bgdeploy.commands.colour_facts`) reads, for each host:

- which colour ``current`` points at, and which colour each nginx include serves;
- the commit checked out in each colour, the commit it was last built and verified at, and when;
- the host's clock (a switch sets its deadlines by it), a canary's split, and the deploy lock.

Nothing here changes a host. The switch (:mod:`bgdeploy.strategies.switch`), the blue-green
deploy, rollback and ``bgdeploy status`` read the fleet this way; so does preflight
(:mod:`bgdeploy.checks.preflight`), for the commit a host serves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bgdeploy import commands
from bgdeploy.core import timing
from bgdeploy.core.errors import ConfigError, OperationFailed, PolicyRefusal
from bgdeploy.core.render import COLOURS, IDLE_INCLUDE, LIVE_INCLUDE
from bgdeploy.core.settings import Settings
from bgdeploy.fleet.executor import Executor

READ_TIMEOUT = 10.0
"""Seconds each web host has to answer the read of its colours; one that does not is
reported unreadable (its ``error``)."""


def other(colour: str) -> str:
    """The other colour."""
    if colour not in COLOURS:
        raise ConfigError(f"colour {colour!r} is not blue or green")
    return "green" if colour == "blue" else "blue"


@dataclass
class HostColours:
    """What one web host says about its colours (``clock``: its time then, in epoch seconds,
    and ``read_at`` ours)."""

    name: str
    current: str = ""
    live: str = ""
    idle: str = ""
    heads: dict[str, str] = field(default_factory=dict)
    built: dict[str, str] = field(default_factory=dict)
    built_at: dict[str, int] = field(default_factory=dict)
    error: str = ""
    clock: int | None = None
    read_at: float = field(default_factory=time.time)
    canary: str = ""
    """``green 5%`` while a canary splits the clients (:mod:`bgdeploy.strategies.canary`), else
    empty."""
    lock: str = ""
    """The deploy lock's content when it was read and someone holds it, else empty."""
    scale: str = ""
    """What ``bgdeploy scale`` set on the host (``workers=4 php_fpm_max_children=6``), else
    empty (:mod:`bgdeploy.oncall.scale`)."""

    def ready(self, colour: str) -> bool:
        """The colour is checked out and was built and verified at that commit."""
        head = self.heads.get(colour, "")
        return bool(head) and self.built.get(colour) == head

    @property
    def consistent(self) -> bool:
        return self.live in COLOURS and self.live == self.current and self.idle == other(self.live)

    def deadline(self, seconds: float) -> int | None:
        """The host's clock ``seconds`` from now (None when its clock was not read)."""
        if self.clock is None:
            return None
        return int(self.clock + (time.time() - self.read_at) + seconds)


def parse_facts(name: str, output: str) -> HostColours:
    """Read :func:`bgdeploy.commands.colour_facts` output."""
    found = HostColours(name)
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if key in ("current", "live", "idle", "canary", "lock", "scale"):
            setattr(found, key, value)
        elif key == "now" and value.isdigit():
            found.clock = int(value)
        elif key.endswith("_head"):
            found.heads[key.removesuffix("_head")] = value
        elif key.endswith("_built"):
            found.built[key.removesuffix("_built")] = value
        elif key.endswith("_built_at") and value.isdigit():
            found.built_at[key.removesuffix("_built_at")] = int(value)
    return found


def facts_command(settings: Settings) -> str:
    """The command that reads a web host's colours (:func:`bgdeploy.commands.colour_facts`)."""
    return commands.colour_facts(
        settings.app_root, LIVE_INCLUDE, IDLE_INCLUDE, settings.lock_path, settings.scale_path
    )


def from_output(name: str, ok: bool, out: str, err: str = "") -> HostColours:
    """A host's colours from what :func:`facts_command` printed (``ok``: it ran; else the
    host's ``error`` says why)."""
    facts = parse_facts(name, out)
    if not ok:
        facts.error = err.strip() or "could not read the colours"
    return facts


def read_colours(fleet: Executor, settings: Settings) -> dict[str, HostColours]:
    """Both colours of every web host of ``fleet``, read in parallel (a host that cannot be
    read has its ``error``)."""
    command = facts_command(settings)

    def one(name: str) -> HostColours:
        with timing.phase("colours"):
            ok, out, err = fleet.run(name, command, timeout=READ_TIMEOUT)
        return from_output(name, ok, out, err)

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


def fleet_release(colours: dict[str, HostColours]) -> str | None:
    """The commit the fleet serves: the one live on most web hosts; on a tie, the one built
    last (a host that missed a release is behind it). None when no host's live colour is known.
    """
    live: dict[str, tuple[int, int]] = {}
    for c in colours.values():
        sha = c.heads.get(c.live, "") if c.live in COLOURS and not c.error else ""
        if sha:
            count, built = live.get(sha, (0, 0))
            live[sha] = (count + 1, max(built, c.built_at.get(c.live, 0)))
    return max(live, key=lambda sha: live[sha]) if live else None
