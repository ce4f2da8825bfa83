"""The on-call commands read the inventory once and connect to every host once, at once:
whole ``bgdeploy`` processes with their profile (:mod:`bgdeploy.core.timing`), against a sandbox
whose hosts refuse connections (nothing listens on their ports)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import bgdeploy
from test_sandbox_state import fake_state

from bgdeploy.core import timing


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unreachable(tmp_path: Path) -> dict[str, str]:
    """The environment of a sandbox whose two hosts cannot be reached."""
    fake_state(tmp_path, "gone")
    directory = tmp_path / "sandboxes" / "gone"
    state = json.loads((directory / "state.json").read_text())
    for host in state["hosts"]:
        host["ports"] = {kind: closed_port() for kind in host["ports"]}
    state["hosts"].append({**state["hosts"][0], "name": "web2", "container": "c3"})
    (directory / "state.json").write_text(json.dumps(state))
    (directory / "known_hosts").write_text("")
    (directory / "id_ed25519").write_text("")
    return {
        **os.environ,
        "BGDEPLOY_STATE_DIR": str(tmp_path),
        "BGDEPLOY_SANDBOX": "gone",
        "BGDEPLOY_API_TOKEN": "t",
        timing.VARIABLE: "json",
    }


def profile(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    done = bgdeploy(*args, env=env)
    found = timing.parse_json_line(done.stderr)
    assert found is not None, done.stderr
    return done.returncode, found, done.stdout + done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("status", "sandbox"),
        ("switch", "sandbox", "blue"),
        ("rollback", "sandbox"),
    ],
)
def test_one_reading_of_the_inventory_and_one_connection_round(
    unreachable: dict[str, str], args: tuple[str, ...]
) -> None:
    code, phases, output = profile(unreachable, *args)
    assert code == 1, output  # the hosts could not be reached
    assert "web1" in output  # named unreachable (the switch stops at the first host's lock)
    assert phases["inventory"]["count"] == 1, phases
    assert phases["connect"]["count"] == 1, phases  # every host at once, once
    assert "python start and imports" in phases and "whole process" in phases


def test_nothing_is_printed_without_the_variable(unreachable: dict[str, str]) -> None:
    env = {**unreachable, timing.VARIABLE: ""}
    done = bgdeploy("status", "sandbox", env=env)
    assert timing.JSON_PREFIX not in done.stderr and "whole process" not in done.stderr
