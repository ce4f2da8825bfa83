"""The blue-green colour switch behind nginx, on every web host or on none.

Each web host has two full checkouts, ``blue/`` and ``green/``. nginx's public server block
includes ``/etc/nginx/bideshgomon/live.conf`` (the live colour's document root and php-fpm
pool); the preview listener includes ``idle.conf``. A switch, on a fleet:

1. reads both colours on every host (:func:`bgdeploy.fleet.colours.read_colours`: which is
   live, which commit each holds and was built at, and the host's clock); the colour switched
   to must be built on every host;
2. on every host at once, in one round trip (:func:`bgdeploy.commands.switch_colour`): arms
   the host's watchdog, writes the new includes beside the old ones, keeps the old, renames
   the new over them (atomic), ``nginx -t``, moves ``current`` (an atomic rename) and reloads
   nginx (graceful: requests in flight finish on the old workers). A command that reaches a
   host after the switch gave up on it (:data:`SWITCH_TIMEOUT`) refuses to run, by the host's
   own clock: a host that was unreachable never switches later behind the operator's back;
3. if any host failed (or the operator pressed Ctrl-C), every host is put back where it was
   (:func:`bgdeploy.commands.switch_revert`), and the switch fails: all hosts or none;
4. on success, in one more round trip: confirms the switch (the watchdog stands down),
   removes what the switch left beside the includes, journals the switch, and signals the
   queue workers to restart after their current job (``queue:restart``, in the background:
   supervisor starts them again through ``current``, now the new colour). A failed signal is
   journaled by the host itself. A host the confirmation does not reach (its network cut
   after it switched, the operator's process gone) puts itself back after
   :data:`WATCHDOG_SECONDS` and journals why; the hosts that did confirm are switched back at
   once, so that no host is left alone on the new colour.

The old colour stays as it is, built and warm, so switching back takes a second. The same
code runs from the CLI (over Fabric) and from the blue-green deploy file (over pyinfra's
connections): an :class:`bgdeploy.fleet.executor.Executor` is how it reaches the hosts.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from bgdeploy import commands
from bgdeploy.core import journal, lock, timing
from bgdeploy.core.errors import OperationFailed, PolicyRefusal
from bgdeploy.core.render import COLOURS, IDLE_INCLUDE, LIVE_INCLUDE, colour_include
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import fabric_backend, remote
from bgdeploy.fleet.colours import HostColours, other, read_colours
from bgdeploy.fleet.executor import Executor

SWITCH_TIMEOUT = 10.0
"""Seconds each host has to answer each round trip of a switch; a host that does not is
counted failed (every host goes back)."""

DEADLINE_MARGIN = 4.0
"""A switch command refuses to start on a host later than ``SWITCH_TIMEOUT - DEADLINE_MARGIN``
seconds after it was sent (by the host's clock, as read with the colours): it finishes long
before the switch stops waiting for it."""

WATCHDOG_SECONDS = int(2 * SWITCH_TIMEOUT + DEADLINE_MARGIN)
"""Seconds after it switched that a host undoes the switch by itself unless the operator's
process confirmed it (it does so at once when every host switched): a host cut off from the
operator after it switched, while the others were put back, does not serve the new colour
alone when it comes back."""

FabricFleet = fabric_backend.FabricFleet
"""Web hosts over Fabric, one strict connection per host kept for the whole switch (what the
command line switches with)."""


def refuse_if_locked(
    colours: dict[str, HostColours], env: str, what: str, run: str | None = None
) -> None:
    """Refuse (:class:`bgdeploy.core.errors.LockHeld`, exit 3) while the deploy lock, as read with
    the colours, is held on any host by anyone but deploy ``run`` (the caller's own lock,
    :func:`bgdeploy.fleet.fleetlock.hold`): that deploy may be switching itself. A lock left by a
    deploy that died is broken with ``bgdeploy unlock ENV``."""
    holders = {name: lock.parse_lock(c.lock) for name, c in colours.items() if c.lock}
    others = {
        name: holder
        for name, holder in holders.items()
        if run is None or holder is None or holder.run != run
    }
    if others:
        raise lock.refusal(others, env, what)


@dataclass
class SwitchReport:
    """What a switch did on each host (``undone``: it failed, and every host was put back)."""

    colour: str
    previous: dict[str, str]
    results: list[remote.HostResult]
    undone: bool = False

    @property
    def ok(self) -> bool:
        return not self.undone and all(result.ok for result in self.results)


def switch(
    fleet: Executor,
    settings: Settings,
    colour: str,
    who: str | None = None,
    reason: str | None = None,
    force: bool = False,
    colours: dict[str, HostColours] | None = None,
    lock_run: str | None = None,
) -> SwitchReport:
    """Switch every web host of ``fleet`` to ``colour``: all hosts or none (see the module).

    + colours: what :func:`read_colours` said (read again when not given)
    + force: switch to a colour that is not marked built (an operator's repair)
    + lock_run: the run of the deploy lock the caller holds (:func:`bgdeploy.fleet.fleetlock.hold`):
      every host's lock, as read with the colours, must be that one (exit 3 when another
      holds it, or it is gone). None: the caller answers for the lock itself (the switch of
      a blue-green deploy, under the lock its release took; the recovery after Ctrl-C)

    A Ctrl-C (``KeyboardInterrupt``) during the switch puts every host back, journals it, and
    is raised again. Once every host serves ``colour``, a Ctrl-C leaves them there.
    """
    colours = colours or read_colours(fleet, settings)
    unreadable = [f"{c.name}: {c.error}" for c in colours.values() if c.error]
    if unreadable:
        raise OperationFailed("cannot read the colours: " + "; ".join(unreadable))
    if lock_run is not None:
        refuse_if_locked(colours, settings.env, "switched", run=lock_run)
        gone = [name for name, c in colours.items() if not c.lock]
        if gone:
            raise PolicyRefusal(
                f"this switch's deploy lock is gone on {', '.join(gone)} (broken with "
                f"`bgdeploy unlock {settings.env}`?): nothing was switched. Run it again"
            )
    not_ready = [name for name, c in colours.items() if not c.ready(colour)]
    if not_ready and not force:
        raise PolicyRefusal(
            f"{colour} is not built on {', '.join(not_ready)}: a colour that was not built and "
            "verified is never switched to (deploy it first, or --force)"
        )
    previous = {name: c.live for name, c in colours.items()}
    token = uuid.uuid4().hex[:16]
    started = time.monotonic()
    try:
        with timing.phase("switch"):
            failed = _flip(fleet, settings, colour, colours, token, who, reason)
    except KeyboardInterrupt:
        failed = {name: "interrupted (Ctrl-C)" for name in fleet.names}
        _revert(fleet, settings, colours, colour, who, reason, failed, started)
        raise
    if failed:
        results = _revert(fleet, settings, colours, colour, who, reason, failed, started)
        return SwitchReport(colour, previous, results, undone=True)
    results = [
        remote.HostResult(
            name, True, seconds=time.monotonic() - started,
            detail=f"{previous[name] or '?'} -> {colour}",
        )
        for name in fleet.names
    ]  # fmt: skip
    with timing.phase("confirm, journal, workers"):
        unconfirmed = _finish(fleet, settings, colours, colour, who, reason, results, token)
    if unconfirmed:
        _put_back(fleet, settings, colours, colour, who, reason, results, unconfirmed)
        return SwitchReport(colour, previous, results, undone=True)
    return SwitchReport(colour, previous, results)


SWITCH_BACK_ATTEMPTS = 2
"""How many times an automatic switch back is tried (:func:`switch_back`)."""


def switch_back(
    fleet: Executor,
    settings: Settings,
    colour: str,
    who: str | None = None,
    reason: str | None = None,
    colours: dict[str, HostColours] | None = None,
    attempts: int = SWITCH_BACK_ATTEMPTS,
    pause: float = 1.0,
) -> SwitchReport:
    """An automatic switch back (a release that failed once live): :func:`switch`, and when
    that was undone (a host too late for its deadline on a loaded machine, a connection lost)
    or could not read the colours, again, with the colours read afresh, up to ``attempts``
    times. Another attempt is always safe: a switch is all or none, and an undone one left
    every host on the colour it served. A refusal (the colour not built) is not retried."""
    report: SwitchReport | None = None
    for attempt in range(1, attempts + 1):
        try:
            report = switch(fleet, settings, colour, who=who, reason=reason, colours=colours)
        except OperationFailed:
            if attempt == attempts:
                raise
        else:
            if report.ok or not report.undone or attempt == attempts:
                return report
        colours = None  # read them again: the first reading is what was late
        time.sleep(pause)
    assert report is not None  # the loop returns or raises on its last attempt
    return report


def _back(facts: HostColours) -> str:
    """The colour a host goes back to when its switch is undone."""
    if facts.current in COLOURS:
        return facts.current
    return facts.live if facts.live in COLOURS else "blue"


def _flip(
    fleet: Executor,
    settings: Settings,
    colour: str,
    colours: dict[str, HostColours],
    token: str,
    who: str | None,
    reason: str | None,
) -> dict[str, str]:
    """Every host switched at once, each pending under ``token`` with its watchdog; returns
    the hosts that failed, with why."""
    live_text = colour_include(settings, colour)
    idle_text = colour_include(settings, other(colour))
    late = SWITCH_TIMEOUT - DEADLINE_MARGIN

    def one(name: str) -> tuple[bool, str]:
        facts = colours[name]
        undone = _entry(
            settings, facts, colour, who, reason, "failed",
            f"undone by this host {WATCHDOG_SECONDS} s after it switched: the operator's "
            f"confirmation never came (connection lost); back on {_back(facts)}", None,
        )  # fmt: skip
        watchdog = (
            token,
            WATCHDOG_SECONDS,
            _back(facts),
            commands.journal_append(settings, undone),
        )
        command = commands.switch_colour(
            LIVE_INCLUDE, IDLE_INCLUDE, live_text, idle_text, settings.app_root, colour,
            deadline=facts.deadline(late), watchdog=watchdog,
        )  # fmt: skip
        ok, out, err = fleet.run(name, command, sudo=True, timeout=SWITCH_TIMEOUT)
        return ok, (err or out).strip()[-300:]

    done = dict(zip(fleet.names, fleet.map(one, fleet.names), strict=True))
    return {name: why or "failed" for name, (ok, why) in done.items() if not ok}


def _revert(
    fleet: Executor,
    settings: Settings,
    colours: dict[str, HostColours],
    colour: str,
    who: str | None,
    reason: str | None,
    failed: dict[str, str],
    started: float,
) -> list[remote.HostResult]:
    """Every host back on the colour it served, and the failed switch journaled (one round
    trip). A host that cannot be put back is named: it needs `bgdeploy switch`."""

    def one(name: str) -> remote.HostResult:
        why = failed.get(name) or f"switched back ({', '.join(failed)} failed)"
        seconds = time.monotonic() - started
        entry = _entry(settings, colours[name], colour, who, reason, "failed", why, seconds)
        ok, out, err = fleet.run(
            name,
            commands.join(
                commands.switch_revert(
                    LIVE_INCLUDE, IDLE_INCLUDE, settings.app_root, _back(colours[name])
                ),
                commands.journal_append(settings, entry),
            ),
            sudo=True,
            timeout=SWITCH_TIMEOUT,
        )
        if not ok:
            why += (
                f"; could not be checked or put back on {_back(colours[name])} "
                f"({(err or out).strip()[-200:]}): if it switched, it puts itself back within "
                f"{WATCHDOG_SECONDS} s; see `bgdeploy status {settings.env}`"
            )
        return remote.HostResult(name, False, seconds=time.monotonic() - started, error=why)

    return fleet.map(one, fleet.names)


def _finish(
    fleet: Executor,
    settings: Settings,
    colours: dict[str, HostColours],
    colour: str,
    who: str | None,
    reason: str | None,
    results: list[remote.HostResult],
    token: str,
) -> list[str]:
    """After every host switched: the switch confirmed (its watchdog stands down) and its
    leftovers removed, the switch journaled, the workers told to restart (in the background;
    a failure is journaled by the host). Returns the hosts the confirmation did not reach
    (their watchdog undoes the switch there)."""
    by_host = {r.host: r for r in results}
    unconfirmed: list[str] = []

    def one(name: str) -> None:
        facts, result = colours[name], by_host[name]
        entry = _entry(settings, facts, colour, who, reason, "ok", result.summary(), result.seconds)
        workers = _entry(
            settings, facts, colour, who, reason, "partial",
            f"nginx serves {colour}, but queue:restart failed: the workers may still run "
            f"{facts.live or 'the old colour'} (`bgdeploy emergency {settings.env} restart "
            "workers`)", None,
        )  # fmt: skip
        ok, out, err = fleet.run(
            name,
            commands.join(
                commands.switch_confirm(LIVE_INCLUDE, IDLE_INCLUDE, token),
                commands.journal_append(settings, entry),
                commands.in_background(
                    commands.live_artisan(settings, "queue:restart"),
                    on_failure=commands.journal_append(settings, workers),
                ),
            ),
            sudo=True,
            timeout=SWITCH_TIMEOUT,
        )
        if ok:
            return
        why = (err or out).strip()[-200:]
        result.ok = False
        if commands.SWITCH_CONFIRMED in out:
            result.error = f"nginx serves {colour}, but: {why}"
            return
        unconfirmed.append(name)
        result.error = (
            f"the switch could not be confirmed ({why}): this host puts itself back on "
            f"{_back(facts)} within {WATCHDOG_SECONDS} s of its switch"
        )

    fleet.map(one, fleet.names)
    return unconfirmed


def _put_back(
    fleet: Executor,
    settings: Settings,
    colours: dict[str, HostColours],
    colour: str,
    who: str | None,
    reason: str | None,
    results: list[remote.HostResult],
    unconfirmed: list[str],
) -> None:
    """Some hosts switched but never heard the confirmation (their watchdog undoes the switch
    there): the hosts that did are switched back too, so that every host serves one colour."""
    by_host = {r.host: r for r in results}
    confirmed = [name for name in fleet.names if name not in unconfirmed]

    def one(name: str) -> None:
        facts, result = colours[name], by_host[name]
        back = _back(facts)
        why = f"switched back to {back}: {', '.join(unconfirmed)} did not confirm the switch"
        entry = _entry(settings, facts, colour, who, reason, "failed", why, None)
        ok, out, err = fleet.run(
            name,
            commands.join(
                commands.switch_colour(
                    LIVE_INCLUDE, IDLE_INCLUDE, colour_include(settings, back),
                    colour_include(settings, other(back)), settings.app_root, back,
                ),
                commands.switch_cleanup(LIVE_INCLUDE, IDLE_INCLUDE),
                commands.journal_append(settings, entry),
                commands.in_background(commands.live_artisan(settings, "queue:restart")),
            ),
            sudo=True,
            timeout=SWITCH_TIMEOUT,
        )  # fmt: skip
        result.ok = False
        result.error = why if ok else (
            f"{why}, but this host could not be switched back ({(err or out).strip()[-200:]}): "
            f"see `bgdeploy status {settings.env}`"
        )  # fmt: skip

    fleet.map(one, confirmed)


def _entry(
    settings: Settings,
    facts: HostColours,
    colour: str,
    who: str | None,
    reason: str | None,
    result: str,
    message: str,
    seconds: float | None,
) -> journal.JournalEntry:
    steps = [] if seconds is None else [journal.Step("switch", round(seconds, 3), result)]
    return journal.new_entry(
        "switch", who=who, host=facts.name, env=settings.env, colour=colour,
        sha=facts.heads.get(colour) or None, sha_before=facts.heads.get(facts.live) or None,
        result=result, reason=reason, message=message, steps=steps,
        details={"from": facts.live or None},
    )  # fmt: skip


def recover(
    fleet: Executor,
    settings: Settings,
    colour: str,
    who: str | None = None,
    reason: str = "interrupted deploy",
) -> SwitchReport | None:
    """After an interrupted blue-green deploy: every web host back on ``colour``, the colour
    that was live before it (a half switch undone, a finished one switched back). None when
    every host already serves ``colour`` and nothing was changed. A canary left splitting the
    clients counts as a change: every client goes back on ``colour``."""
    colours = read_colours(fleet, settings)
    if all(c.consistent and c.live == colour and not c.canary for c in colours.values()):
        return None
    return switch(fleet, settings, colour, who=who, reason=reason, force=True, colours=colours)
