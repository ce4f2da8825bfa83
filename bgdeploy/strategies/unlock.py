"""``bgdeploy unlock ENV``: break a deploy lock left behind by a deploy that died.

:func:`unlock` reads the lock of every web host and shows its holder (owner, machine, pid,
ref, since when, run). A lock taken on this very machine by a process that still runs is not
stale: the unlock is refused (exit 3) unless ``--force``. Then it asks, and removes each lock
only if it is still the one shown (a lock taken since is left). Each host's journal says who
broke whose lock, and why (an ``unlock`` line).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bgdeploy.core import journal, lock
from bgdeploy.core.errors import PolicyRefusal
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.fleet import fabric_backend, fleetlock, remote, runner


@dataclass
class UnlockResult:
    """One web host's lock: whose it was (None: there was none), or why it could not be read
    or broken (``ok`` False)."""

    host: str
    ok: bool
    holder: lock.LockInfo | None = None
    error: str = ""

    def describe(self) -> str:
        if not self.ok:
            return f"FAILED: {self.error}"
        if self.holder is None:
            return "no lock"
        return f"broke the lock of {self.holder.describe()}"


def holder_line(found: fleetlock.Found) -> str:
    """One host's lock for the operator: owner, machine, pid, ref, since when, run."""
    holder = found.holder
    if found.error:
        return f"{found.host}: could not be read ({found.error})"
    if holder is None:
        return f"{found.host}: no lock"
    return (
        f"{found.host}: held by {holder.owner} on {holder.host}, pid {holder.pid}, "
        f"ref {holder.ref}, since {holder.time} (run {holder.run})"
    )


def unlock(
    env: str,
    reason: str | None = None,
    confirm: Callable[[str], Any] | None = None,
    force: bool = False,
    progress: Progress = quiet,
) -> list[UnlockResult]:
    """Break the deploy lock on every web host of ``env`` where one is left, and journal it.

    Each host's lock is read and shown (``progress``). A lock taken on this very machine by a
    process still running is not stale: :class:`PolicyRefusal` (exit 3) unless ``force``.
    Then ``confirm(question)`` is asked (it stops the unlock by raising), and each lock is
    removed only if it is still the one shown; the journal of each host says who broke
    whose lock, and ``reason``.
    """
    environment = runner.check_environment(env)
    fleet = fabric_backend.PerCommandFleet(remote.targets(env, ("web",), environment.inventory))
    paths = {name: environment.settings[name].lock_path for name in fleet.names}
    found = fleetlock.read(fleet, paths)
    for name in fleet.names:
        progress(holder_line(found[name]))
    held = {name: f for name, f in found.items() if f.holder is not None}
    results = {name: UnlockResult(name, not f.error, error=f.error) for name, f in found.items()}
    if not held:
        return [results[name] for name in fleet.names]
    alive = {name: f.holder for name, f in held.items() if f.holder and lock.holder_alive(f.holder)}
    if alive and not force:
        each = "; ".join(
            f"{name}: pid {holder.pid} of {holder.owner}" for name, holder in alive.items()
        )
        raise PolicyRefusal(
            f"the deploy lock is held by a process still running on this machine "
            f"({lock.this_machine()}: {each}): it is not stale, nothing was unlocked. Wait "
            f"for it to finish, or stop it; --force breaks the lock anyway"
        )
    if confirm is not None:
        confirm(f"Break the deploy lock of {env} on {', '.join(held)}?")
    failed = fleetlock.break_seen(fleet, paths, held)
    for name, f in held.items():
        if name in failed:
            results[name] = UnlockResult(name, False, f.holder, failed[name].error)
            continue
        results[name] = UnlockResult(name, True, f.holder)
    _journal_unlocks(fleet, environment, env, reason, force, alive, results)
    return [results[name] for name in fleet.names]


def _journal_unlocks(
    fleet: fabric_backend.PerCommandFleet,
    environment: runner.Environment,
    env: str,
    reason: str | None,
    force: bool,
    alive: Mapping[str, Any],
    results: dict[str, UnlockResult],
) -> None:
    """On each host whose lock was broken: who broke it, whose it was, and why."""
    broken = [r for r in results.values() if r.ok and r.holder is not None]

    def one(name: str) -> None:
        result = results[name]
        holder = result.holder
        assert holder is not None
        entry = journal.new_entry(
            "unlock", host=result.host, env=env,
            ref=holder.ref if holder.ref != "unknown" else None, result="ok", reason=reason,
            message=f"broke the deploy lock of {holder.describe()}",
            details={
                "run": holder.run, "lock": holder.to_json(), "holder": holder.owner,
                "forced": bool(force and result.host in alive),
            },
        )  # fmt: skip
        settings = environment.settings[result.host]
        ok, out, err = fleet.run(
            result.host, journal.journal_append_command(settings.journal_path, entry)
        )
        if not ok:
            result.ok = False
            result.error = (
                f"broke the lock of {holder.describe()}, but the journal was not written: "
                f"{(err or out).strip()[-200:]}"
            )

    fleet.map(one, [r.host for r in broken])
