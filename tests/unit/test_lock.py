"""The deploy lock: its content, and its shell commands run for real (locally, with sh)."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bgdeploy import commands
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.lock import (
    ACQUIRED,
    HELD,
    LockInfo,
    new_lock,
    new_run_id,
    parse_acquire_output,
    parse_lock,
)


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=False)


def test_lock_holds_owner_pid_host_ref_time_and_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDEPLOY_OPERATOR", "rahim@ops-laptop")
    info = new_lock("v2.4.0", "abc123", now=datetime(2026, 12, 3, 4, 12, 9, 500, UTC), pid=4242)
    data = json.loads(info.to_json())
    assert data == {
        "owner": "rahim@ops-laptop",
        "pid": 4242,
        "host": info.host,
        "ref": "v2.4.0",
        "time": "2026-12-03T04:12:09Z",
        "run": "abc123",
    }
    assert '"run":"abc123"' in info.to_json()  # what the release command matches
    assert "\n" not in info.to_json()
    text = info.describe()
    assert "rahim@ops-laptop" in text and "pid 4242" in text and "v2.4.0" in text


def test_parse_round_trip_and_foreign_locks() -> None:
    info = new_lock("main", new_run_id())
    assert parse_lock(info.to_json() + "\n") == info
    assert parse_lock("") is None
    assert parse_lock("  \n") is None
    foreign = parse_lock("deployer: alice")
    assert foreign is not None and "deployer: alice" in foreign.owner
    partial = parse_lock('{"owner": "bob", "pid": "x"}')
    assert partial == LockInfo("bob", 0, "unknown", "unknown", "unknown", "unknown")


def test_parse_acquire_output() -> None:
    info = new_lock("v1", "r1")
    assert parse_acquire_output(f"{ACQUIRED}\n") == (True, None)
    assert parse_acquire_output(f"{HELD}\n{info.to_json()}\n") == (False, info)
    assert parse_acquire_output(f"{HELD}\n") == (False, None)
    with pytest.raises(ValueError):
        parse_acquire_output("sh: permission denied")


def test_acquire_then_held_then_released_only_by_its_run(tmp_path: Path) -> None:
    path = str(tmp_path / "app" / ".bgdeploy" / "lock")
    first, second = new_lock("v1", "run1"), new_lock("v2", "run2")

    done = sh(commands.lock_acquire(path, first.to_json()))
    assert done.returncode == 0 and parse_acquire_output(done.stdout) == (True, None)
    done = sh(commands.lock_acquire(path, second.to_json()))
    assert done.returncode == 0 and parse_acquire_output(done.stdout) == (False, first)

    # The refused deploy cannot remove the holder's lock (Deployer's auto-unlock race).
    assert sh(commands.lock_release(path, "run2")).stdout.strip() == "not held"
    assert Path(path).exists()
    assert sh(commands.lock_read(path)).stdout.strip() == first.to_json()
    assert sh(commands.lock_release(path, "run1")).stdout.strip() == "released"
    assert not Path(path).exists()
    assert sh(commands.lock_read(path)).stdout == ""


def test_only_one_of_many_simultaneous_deploys_gets_the_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    infos = [new_lock("v1", f"run{i}") for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        outputs = list(
            pool.map(lambda info: sh(commands.lock_acquire(path, info.to_json())).stdout, infos)
        )
    winners = [info for info, out in zip(infos, outputs, strict=True) if out.startswith(ACQUIRED)]
    assert len(winners) == 1
    assert parse_lock(Path(path).read_text()) == winners[0]


def test_break_prints_the_holder_and_removes_it(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    info = new_lock("v1", "stale")
    sh(commands.lock_acquire(path, info.to_json()))
    done = sh(commands.lock_break(path))
    assert parse_lock(done.stdout) == info
    assert not Path(path).exists()
    assert sh(commands.lock_break(path)).stdout == ""


def test_hostile_values_stay_data(tmp_path: Path) -> None:
    path = str(tmp_path / "dir with space" / "lock")
    hostile = LockInfo("$(touch pwned)", 1, "h", "`id`", "t", "r1")
    done = sh(commands.lock_acquire(path, hostile.to_json()))
    assert done.stdout.startswith(ACQUIRED)
    assert parse_lock(Path(path).read_text()) == hostile
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ConfigError):
        commands.lock_release(path, "x'; rm -rf /")
