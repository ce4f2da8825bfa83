"""What the fleet serves: the live colour of every web host, the commit each colour holds,
and which hosts are behind the fleet (``bgdeploy status ENV``).

Read only: one round trip per web host (:func:`bgdeploy.fleet.colours.read_colours`),
nothing changed. It lives beside the switch because it reads the colours the switch moves.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bgdeploy.core import approvals
from bgdeploy.core.render import COLOURS
from bgdeploy.fleet import fabric_backend, remote, runner
from bgdeploy.fleet.colours import HostColours, fleet_release, live_colour, read_colours
from bgdeploy.oncall import reviews

NOT_READY_NOTE = "* not built and verified at that commit"


@dataclass
class FleetStatus:
    """Each web host's colours (``colours``), the commit the fleet serves (``release``, see
    :func:`bgdeploy.fleet.colours.fleet_release`), and the hosts whose live commit is not
    that one (``behind``)."""

    colours: dict[str, HostColours]
    release: str | None
    behind: dict[str, bool]
    reviews: list[approvals.ReviewDue] | None = None
    """The post-deployment reviews still due, when they were read (not in :meth:`to_dict`)."""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form: per host, its colours and whether it is behind."""
        return {
            name: {**dataclasses.asdict(c), "behind": self.behind[name]}
            for name, c in self.colours.items()
        }

    def format_table(self) -> str:
        """One line per web host: live colour, the commit of each colour (``*``: not built
        and verified at it), and a note (unreadable, ``current`` elsewhere, behind)."""
        lines = [f"{'host':<12} {'live':<6} {'blue':<14} {'green':<14} note"]
        for name, c in self.colours.items():
            note = c.error or ("" if c.consistent else f"current -> {c.current or '?'}")
            if c.scale and not c.error:
                note = f"{note}; scaled: {c.scale}".lstrip("; ")
            if self.behind[name]:
                note = f"behind: the fleet serves {(self.release or '')[:12]}; {note}".rstrip("; ")
            cells = [
                (c.heads.get(colour) or "-")[:12] + ("" if c.ready(colour) else "*")
                for colour in COLOURS
            ]
            lines.append(f"{name:<12} {c.live or '?':<6} {cells[0]:<14} {cells[1]:<14} {note}")
        if any(
            not c.ready(colour) and c.heads.get(colour)
            for c in self.colours.values()
            for colour in COLOURS
        ):
            lines.append(NOT_READY_NOTE)
        return "\n".join(lines)

    def check(self) -> str:
        """The fleet's one live colour. Raises :class:`bgdeploy.core.errors.OperationFailed`
        (exit 1) when a host could not be read, :class:`bgdeploy.core.errors.PolicyRefusal`
        (exit 3) when the hosts disagree (:func:`bgdeploy.fleet.colours.live_colour`)."""
        return live_colour(self.colours)


def read(env: str, reviews_due: bool = False) -> FleetStatus:
    """Read the colours of every web host of ``env`` (in parallel, over Fabric) and say which
    hosts are behind the fleet's release; with ``reviews_due``, also the post-deployment
    reviews still due (:func:`bgdeploy.oncall.reviews.due`), read at the same time over the
    same connections (one per host, all opened at once)."""
    environment = runner.check_environment(env)
    settings = environment.settings[environment.web[0]]
    targets = remote.targets(env, ("web",), environment.inventory)
    fleet = fabric_backend.FabricFleet(targets)
    due = None
    try:
        fleet.open_all()
        with ThreadPoolExecutor(max_workers=1) as pool:
            if reviews_due:
                due = pool.submit(reviews.due, env, targets, fleet)
            colours = read_colours(fleet, settings)
            found = due.result()[0] if due is not None else None
    finally:
        fleet.close()
    release = fleet_release(colours)
    behind = {
        name: bool(release) and not c.error and c.heads.get(c.live) != release
        for name, c in colours.items()
    }
    return FleetStatus(colours, release, behind, found)
