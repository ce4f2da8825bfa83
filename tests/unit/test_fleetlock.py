"""The fleet-wide deploy lock (:mod:`bgdeploy.fleet.fleetlock`), its real shell commands run
locally.

Each "host" is a directory; the fake fleet runs every command with ``sh`` on this machine, so
the atomic create, the run-checked release and the conditional break are the real ones.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from bgdeploy import commands
from bgdeploy.core import lock
from bgdeploy.core.errors import LockHeld, OperationFailed, PolicyRefusal
from bgdeploy.fleet import fleetlock

T = TypeVar("T")
NAMES = ("web1", "web2", "web3")


class LocalFleet:
    """Web hosts as lock paths on this machine (``paths``); :attr:`down` hosts fail every
    command like an unreachable host, :attr:`interrupt` raises Ctrl-C for a command."""

    def __init__(self, root: Path, names: Sequence[str] = NAMES) -> None:
        self.names = list(names)
        self.paths = {name: str(root / name / ".bgdeploy" / "lock") for name in names}
        self.down: set[str] = set()
        self.interrupt: Callable[[str, str], bool] = lambda name, command: False
        self.commands: list[tuple[str, str]] = []
        self.guard = threading.Lock()

    def run(
        self, name: str, command: str, sudo: bool = False, timeout: float | None = None
    ) -> tuple[bool, str, str]:
        with self.guard:
            self.commands.append((name, command))
        if self.interrupt(name, command):
            raise KeyboardInterrupt
        if name in self.down:
            return False, "", "no answer in 15 s: unreachable"
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)
        return done.returncode == 0, done.stdout, done.stderr

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]:
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return list(pool.map(function, names))

    def lock_of(self, name: str) -> lock.LockInfo | None:
        path = Path(self.paths[name])
        return lock.parse_lock(path.read_text()) if path.exists() else None

    def hold_foreign(self, name: str, info: lock.LockInfo) -> None:
        path = Path(self.paths[name])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(info.to_json() + "\n")


@pytest.fixture
def fleet(tmp_path: Path) -> LocalFleet:
    return LocalFleet(tmp_path)


FOREIGN = lock.LockInfo("dave@ci", 7, "ci", "v3", "2026-01-01T00:00:00Z", "cafe00000000")


def test_held_on_every_host_inside_and_released_after(fleet: LocalFleet) -> None:
    with fleetlock.hold(fleet, fleet.paths, "staging", "switch green") as held:
        for name in NAMES:
            found = fleet.lock_of(name)
            assert found is not None and found.run == held.run and found.ref == "switch green"
    assert all(fleet.lock_of(name) is None for name in NAMES)
    assert held.not_released == {}


def test_refused_on_one_host_is_given_back_where_taken(fleet: LocalFleet) -> None:
    fleet.hold_foreign("web3", FOREIGN)
    entered = False
    with (
        pytest.raises(LockHeld) as refused,
        fleetlock.hold(fleet, fleet.paths, "staging", "rollback"),
    ):
        entered = True
    assert not entered, "nothing runs under a lock not held everywhere"
    assert refused.value.holders == {"web3": FOREIGN}
    assert isinstance(refused.value, PolicyRefusal) and refused.value.exit_code == 3
    assert FOREIGN.describe() in str(refused.value)
    assert "bgdeploy unlock staging" in str(refused.value)
    assert fleet.lock_of("web1") is None and fleet.lock_of("web2") is None  # given back
    assert fleet.lock_of("web3") == FOREIGN  # another's lock is never removed


def test_the_first_host_decides_before_the_others_are_asked(fleet: LocalFleet) -> None:
    fleet.hold_foreign("web1", FOREIGN)
    with (
        pytest.raises(LockHeld) as refused,
        fleetlock.hold(fleet, fleet.paths, "staging", "switch blue"),
    ):
        pass
    assert refused.value.holders == {"web1": FOREIGN}
    assert {name for name, _ in fleet.commands} == {"web1"}
    assert fleet.lock_of("web1") == FOREIGN


def test_released_when_the_block_fails(fleet: LocalFleet) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        fleetlock.hold(fleet, fleet.paths, "staging", "db fresh"),
    ):
        assert fleet.lock_of("web2") is not None
        raise RuntimeError("boom")
    assert all(fleet.lock_of(name) is None for name in NAMES)


def test_released_on_ctrl_c_in_the_block(fleet: LocalFleet) -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        fleetlock.hold(fleet, fleet.paths, "staging", "rollback"),
    ):
        raise KeyboardInterrupt
    assert all(fleet.lock_of(name) is None for name in NAMES)


def test_released_on_ctrl_c_while_it_is_being_taken(fleet: LocalFleet) -> None:
    def on_web3_acquire(name: str, command: str) -> bool:
        return name == "web3" and "bgdeploy-lock: acquired" in command

    fleet.interrupt = on_web3_acquire
    with (
        pytest.raises(KeyboardInterrupt),
        fleetlock.hold(fleet, fleet.paths, "staging", "rollback"),
    ):
        pytest.fail("the block must not run")
    assert all(fleet.lock_of(name) is None for name in NAMES)
    released = [name for name, command in fleet.commands if "released" in command]
    assert "web1" in released and "web2" in released


def test_unreachable_host_fails_and_the_others_are_given_back(fleet: LocalFleet) -> None:
    fleet.down = {"web2"}
    with (
        pytest.raises(OperationFailed) as failed,
        fleetlock.hold(fleet, fleet.paths, "staging", "switch green", what="switched"),
    ):
        pass
    assert not isinstance(failed.value, PolicyRefusal) and failed.value.exit_code == 1
    assert "web2: no answer in 15 s: unreachable" in str(failed.value)
    assert "nothing was switched" in str(failed.value)
    assert fleet.lock_of("web1") is None and fleet.lock_of("web3") is None


def test_a_lock_that_cannot_be_released_is_reported(fleet: LocalFleet) -> None:
    said: list[str] = []
    with fleetlock.hold(
        fleet, fleet.paths, "staging", "switch green", progress=said.append
    ) as held:
        fleet.down = {"web2"}
    assert list(held.not_released) == ["web2"]
    assert any("web2" in line and "bgdeploy unlock staging" in line for line in said)
    assert fleet.lock_of("web1") is None and fleet.lock_of("web2") is not None


def test_of_two_commands_started_together_exactly_one_holds_it(fleet: LocalFleet) -> None:
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def command(ref: str) -> None:
        start.wait()
        try:
            with fleetlock.hold(fleet, fleet.paths, "staging", ref):
                time.sleep(0.5)
                outcomes.append("held")
        except LockHeld:
            outcomes.append("refused")

    threads = [threading.Thread(target=command, args=(ref,)) for ref in ("blue", "green")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["held", "refused"]
    assert all(fleet.lock_of(name) is None for name in NAMES)


def test_read_and_break_only_the_lock_that_was_shown(fleet: LocalFleet) -> None:
    fleet.hold_foreign("web2", FOREIGN)
    fleet.hold_foreign("web3", FOREIGN)
    found = fleetlock.read(fleet, fleet.paths)
    assert found["web1"].holder is None and found["web2"].holder == FOREIGN
    # Between reading and breaking, web3's lock is released and a new deploy takes it.
    newer = lock.LockInfo("erin@ci", 9, "ci", "v4", "2026-01-02T00:00:00Z", "beef00000000")
    fleet.hold_foreign("web3", newer)
    seen = {name: f for name, f in found.items() if f.holder is not None}
    left = fleetlock.break_seen(fleet, fleet.paths, seen)
    assert fleet.lock_of("web2") is None
    assert fleet.lock_of("web3") == newer, "a lock taken since it was shown is left"
    assert list(left) == ["web3"] and left["web3"].holder == newer
    assert "changed since it was read" in left["web3"].error


def test_lock_break_if_compares_the_whole_content(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text(FOREIGN.to_json() + "\n")
    other = FOREIGN.to_json().replace("dave", "dave2")
    command = commands.lock_break_if(str(path), other)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
    assert out.startswith(commands.LOCK_CHANGED) and path.exists()
    command = commands.lock_break_if(str(path), FOREIGN.to_json() + "\n")
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True).stdout
    assert out.strip() == commands.LOCK_BROKEN and not path.exists()


def test_a_holder_is_alive_only_on_this_machine_with_its_process_running() -> None:
    here = lock.this_machine()
    me = lock.LockInfo("me@here", os.getpid(), here, "v1", "t", "r")
    assert lock.holder_alive(me)
    assert not lock.holder_alive(me, machine="another-machine")
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = lock.LockInfo("me@here", finished.pid, here, "v1", "t", "r")
    assert not lock.holder_alive(dead)
    assert not lock.holder_alive(lock.LockInfo("x", 0, here, "v1", "t", "r"))


@pytest.mark.parametrize(
    ("args", "stdin", "code", "said"),
    [
        ([], "", 2, "pass --yes"),  # nothing to ask on: refused, never broken
        ([], "n\n", 1, "Aborted"),
        ([], "y\n", 0, "broke the lock"),
        (["--yes"], "", 0, "broke the lock"),
    ],
)
def test_unlock_asks_first(
    monkeypatch: pytest.MonkeyPatch, args: list[str], stdin: str, code: int, said: str
) -> None:
    from click.testing import CliRunner

    from bgdeploy import cli
    from bgdeploy.strategies import unlock as unlock_mod

    broken: list[bool] = []

    def unlock(env: str, reason: str | None, **kwargs: object) -> list[unlock_mod.UnlockResult]:
        kwargs["confirm"]("Break the deploy lock of staging on web2?")  # type: ignore[operator]
        broken.append(True)
        return [unlock_mod.UnlockResult("web2", True, FOREIGN)]

    monkeypatch.setattr(unlock_mod, "unlock", unlock)
    result = CliRunner().invoke(cli.cli, ["unlock", "staging", *args], input=stdin)
    assert result.exit_code == code, result.output
    assert said in result.output
    assert broken == ([True] if code == 0 else [])
