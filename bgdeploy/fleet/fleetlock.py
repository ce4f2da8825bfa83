"""The deploy lock on every web host at once, for the commands that change the fleet.

``bgdeploy switch``, ``bgdeploy rollback`` (both ways), ``bgdeploy snapshot ENV restore`` and
``bgdeploy db ENV fresh`` change what the fleet serves or its database. Each runs inside
:func:`hold`, taken before it reads any state::

    with fleetlock.hold(fleet, paths, env, "switch green", what="switched") as held:
        found = read_colours(fleet, settings)
        ...
        switch.switch(fleet, settings, "green", colours=found, lock_run=held.run)

:func:`hold` creates the lock file (:mod:`bgdeploy.core.lock`) on every web host, or on none: the
first host in inventory order first, then the others in parallel. Two commands started
together both start with the first host, so exactly one of them gets it and then the others;
the other is refused at once. When one host refuses, the lock is given back on the hosts
where it was taken and :class:`bgdeploy.core.errors.LockHeld` (exit 3) names the holders; a host
that cannot be reached fails the command (:class:`bgdeploy.core.errors.OperationFailed`, exit 1)
with nothing changed. The lock is released on every host whatever happens inside the
``with`` block: success, an error, Ctrl-C (``KeyboardInterrupt``). Only this run's lock is
removed (:func:`bgdeploy.commands.lock_release` checks its ``run``), never another's.

A blue-green deploy takes the lock per host with its own pyinfra operation
(:func:`bgdeploy.strategies.release.take_lock`) and calls :func:`bgdeploy.strategies.switch.switch`
under it: that
switch does not take the lock a second time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from bgdeploy import commands
from bgdeploy.core import lock, timing
from bgdeploy.core.errors import OperationFailed
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.fleet.executor import Executor

LOCK_TIMEOUT = 15.0
"""Seconds each host has to answer a lock command; one that does not counts as failed."""


@dataclass
class Held:
    """The deploy lock this command holds on ``hosts`` (``info.run``: its id).

    After the ``with`` block, ``not_released`` names the hosts where it could not be removed
    (with why): ``bgdeploy unlock ENV`` removes it there.
    """

    info: lock.LockInfo
    env: str
    hosts: list[str]
    not_released: dict[str, str] = field(default_factory=dict)
    read: dict[str, str] = field(default_factory=dict)
    """Each host's output of the ``read`` command :func:`hold` ran once the lock was taken
    there (in the same round trip)."""

    @property
    def run(self) -> str:
        return self.info.run


@dataclass
class _Answer:
    """One host's answer to the acquire command: taken, held by someone (``holder``, None
    when unreadable), or failed (``error``: the lock may or may not have been created)."""

    name: str
    taken: bool = False
    held: bool = False
    holder: lock.LockInfo | None = None
    error: str = ""
    read: str = ""


@contextmanager
def hold(
    fleet: Executor,
    paths: Mapping[str, str],
    env: str,
    ref: str,
    what: str = "changed",
    progress: Progress = quiet,
    read: Mapping[str, str] | None = None,
) -> Iterator[Held]:
    """Hold the deploy lock on every host of ``paths`` (web host -> its lock file) while the
    ``with`` block runs (see the module).

    + fleet: how the hosts are reached (commands run as the SSH user, who owns the lock)
    + env: the environment, named in the refusal's advice (``bgdeploy unlock ENV``)
    + ref: what the lock says is being done (``switch green``, ``rollback``)
    + what: for the refusal, "nothing was <what>"
    + progress: told where the lock could not be released
    + read: a read-only command per host, run there once the lock is taken, in the same round
      trip (:attr:`Held.read`: its output): what the lock protects, read under it without a
      round trip of its own

    Raises :class:`bgdeploy.core.errors.LockHeld` (exit 3) when someone holds it on any host,
    :class:`OperationFailed` (exit 1) when a host could not be asked; nothing is held then.
    """
    names = list(paths)
    held = Held(lock.new_lock(ref, lock.new_run_id()), env, names)
    answers: dict[str, _Answer] = {}
    try:
        with timing.phase("lock"):
            _acquire(fleet, paths, held.info, answers, read or {})
    except BaseException:
        _release(fleet, paths, held, _maybe_taken(names, answers), progress)
        raise
    refused = {n: a for n, a in answers.items() if not a.taken}
    if refused:
        asked = [n for n in names if n in answers]  # the first host refused: only it was
        _release(fleet, paths, held, _maybe_taken(asked, answers), progress)
        holders = {n: a.holder for n, a in refused.items() if a.held}
        if holders:
            raise lock.refusal(holders, env, what)
        each = "; ".join(f"{n}: {a.error}" for n, a in refused.items())
        raise OperationFailed(
            f"the deploy lock could not be taken ({each}): nothing was {what}. Check that "
            f"host (`bgdeploy status {env}`), then run the command again"
        )
    held.read = {name: answer.read for name, answer in answers.items()}
    try:
        yield held
    finally:
        with timing.phase("unlock"):
            _release(fleet, paths, held, names, progress)


def _acquire(
    fleet: Executor,
    paths: Mapping[str, str],
    info: lock.LockInfo,
    answers: dict[str, _Answer],
    read: Mapping[str, str],
) -> None:
    """The first host, then (when it was taken there) the others in parallel."""
    command = {
        name: commands.lock_acquire(path, info.to_json(), read.get(name))
        for name, path in paths.items()
    }

    def one(name: str) -> _Answer:
        ok, out, err = fleet.run(name, command[name], timeout=LOCK_TIMEOUT)
        if not ok:
            return _Answer(name, error=(err or out).strip()[-300:] or "the lock command failed")
        try:
            taken, holder = lock.parse_acquire_output(out)
        except ValueError as error:
            return _Answer(name, error=str(error))
        after = out.partition(f"\n{commands.LOCK_THEN}\n")[2] if taken else ""
        return _Answer(name, taken=taken, held=not taken, holder=holder, read=after)

    names = list(paths)
    first = one(names[0])
    answers[first.name] = first
    if not first.taken:
        return
    for answer in fleet.map(one, names[1:]):
        answers[answer.name] = answer


def _maybe_taken(names: list[str], answers: Mapping[str, _Answer]) -> list[str]:
    """The hosts where the lock may be this run's: taken, or not known (no answer, or an
    interruption before one came)."""
    return [n for n in names if n not in answers or answers[n].taken or answers[n].error]


def _release(
    fleet: Executor, paths: Mapping[str, str], held: Held, names: list[str], progress: Progress
) -> None:
    """This run's lock removed on ``names`` (another run's is left); where it could not be,
    or was no longer this run's, the operator is told."""
    if not names:
        return

    def one(name: str) -> tuple[str, str]:
        command = commands.lock_release(paths[name], held.run)
        ok, out, err = fleet.run(name, command, timeout=LOCK_TIMEOUT)
        return name, "" if ok else ((err or out).strip()[-200:] or "the release command failed")

    for name, error in fleet.map(one, names):
        if error:
            held.not_released[name] = error
            progress(
                f"{name}: the deploy lock was NOT released ({error}): once nothing runs there, "
                f"remove it with `bgdeploy unlock {held.env}`"
            )


# Reading and breaking it (``bgdeploy unlock``)
# ---------------------------------------------


@dataclass
class Found:
    """One web host's deploy lock as read: its raw content ("" when there is none), the
    holder it names, or why it could not be read."""

    host: str
    content: str = ""
    holder: lock.LockInfo | None = None
    error: str = ""


def read(fleet: Executor, paths: Mapping[str, str]) -> dict[str, Found]:
    """Every host's deploy lock, read in parallel (nothing is changed)."""

    def one(name: str) -> Found:
        ok, out, err = fleet.run(name, commands.lock_read(paths[name]), timeout=LOCK_TIMEOUT)
        if not ok:
            return Found(name, error=(err or out).strip()[-300:] or "the lock could not be read")
        return Found(name, out, lock.parse_lock(out))

    return {found.host: found for found in fleet.map(one, list(paths))}


def break_seen(
    fleet: Executor, paths: Mapping[str, str], seen: Mapping[str, Found]
) -> dict[str, Found]:
    """Remove the lock on each host of ``seen`` where it still is the one read then; returns,
    for each host where it was not removed, the lock found instead (``error`` says why)."""

    def one(name: str) -> Found | None:
        command = commands.lock_break_if(paths[name], seen[name].content)
        ok, out, err = fleet.run(name, command, timeout=LOCK_TIMEOUT)
        first, _, rest = out.strip().partition("\n")
        if ok and first.strip() == commands.LOCK_BROKEN:
            return None
        if ok and first.strip() == commands.LOCK_CHANGED:
            now = lock.parse_lock(rest)
            why = f"now held by {now.describe()}" if now else "it was released meanwhile"
            return Found(name, rest, now, f"the lock changed since it was read ({why})")
        return Found(name, error=(err or out).strip()[-300:] or "the lock could not be broken")

    names = list(seen)
    return {n: f for n, f in zip(names, fleet.map(one, names), strict=True) if f is not None}
