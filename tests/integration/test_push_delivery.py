"""Servers that cannot reach the repository at all: ``code_delivery = "push"``.

A sandbox of this module's own, started with ``--no-repository``: nothing is mounted into the
web hosts and nothing there could fetch (their ``repository`` is a path on this machine only).
``group_data/sandbox.py`` then sets ``code_delivery = "push"``: the operator's machine fetches
the sandbox's ``app.git`` into its cache clone, resolves the ref there and sends each web host
a bundle of what it lacks. With ``code_delivery = "fetch"`` (a deploy repository of the test's
own whose ``group_data/sandbox.py`` says so), the same fleet fails at preflight naming the
repository.

Each test puts the fleet in the state it needs (a deploy of a release already live changes
nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import PROVISION, ROOT, commit, journal, own_sandbox, run, sandbox_run_env, sh

WEB = ("web1", "web2")


@pytest.fixture(scope="module")
def fleet_without_repository(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("push", docker_client, PROVISION, repository=False) as state:
        yield state


@pytest.fixture
def fetching_root(tmp_path: Path) -> Path:
    """A deploy repository of the test's own, the same as this checkout but for
    ``code_delivery = "fetch"`` in ``group_data/sandbox.py`` (where an operator sets it)."""
    for part in ("inventories", "deploys", "templates", "sandbox"):
        (tmp_path / part).symlink_to(ROOT / part)
    (tmp_path / "group_data").mkdir()
    for path in (ROOT / "group_data").glob("*.py"):
        text = path.read_text()
        if path.name == "sandbox.py":
            text += '\ncode_delivery = "fetch"\n'
        (tmp_path / "group_data" / path.name).write_text(text)
    return tmp_path


def served(state: sandbox.SandboxState) -> dict[str, tuple[int, str, str]]:
    """Each web host's /api/health through its public port: (status, X-Colour, X-Release)."""
    found = {}
    for web in state.group("web"):
        answer = httpx.get(f"http://127.0.0.1:{web.ports['http']}/api/health", timeout=15)
        found[web.name] = (
            answer.status_code,
            answer.headers.get("X-Colour", ""),
            answer.headers.get("X-Release", ""),
        )
    return found


def bgdeploy(state: sandbox.SandboxState, *args: str, env: dict[str, str] | None = None) -> Any:
    return run(["bgdeploy", *args], env={**sandbox_run_env(state), **(env or {})})


def deploy(state: sandbox.SandboxState, ref: str, *extra: str) -> None:
    proc = bgdeploy(state, "deploy", "sandbox", "--ref", ref, *extra)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]


def test_the_web_hosts_have_no_repository_and_fetch_fails_at_preflight_naming_it(
    fleet_without_repository: sandbox.SandboxState, fetching_root: Path
) -> None:
    state = fleet_without_repository
    repository = state.app_repository  # on this machine only
    for web in WEB:
        mounted = f"test -e {sandbox.CONTAINER_REPOSITORY} || test -e {repository}"
        code, out = sh(state, web, mounted)
        assert code == 1, out
    fetching = {"BGDEPLOY_ROOT": str(fetching_root)}
    proc = bgdeploy(state, "preflight", "sandbox", "--ref", "v1", "--json", env=fetching)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    failed = [c for c in json.loads(proc.stdout)["checks"] if c["status"] == "fail"]
    assert {c["host"] for c in failed} == set(WEB), failed
    for check in failed:
        assert check["detail"].startswith(f"git fetch from {repository} failed: "), check
    before = {web: len(journal(state, web)) for web in WEB}
    proc = bgdeploy(state, "deploy", "sandbox", "--ref", "v1", env=fetching)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"git fetch from {repository} failed" in proc.stdout + proc.stderr
    assert {web: len(journal(state, web)) for web in WEB} == before  # refused before any step


def test_push_deploys_v1_then_v2_in_place(fleet_without_repository: sandbox.SandboxState) -> None:
    state = fleet_without_repository
    v1, v2 = state.releases["v1"], state.releases["v2"]
    deploy(state, "v1")
    (colour,) = {c for _, c, _ in served(state).values()}
    assert served(state) == {web: (200, colour, v1) for web in WEB}
    proc = bgdeploy(state, "preflight", "sandbox", "--ref", "v2", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checked = json.loads(proc.stdout)
    assert checked["sha"] == v2, checked
    main = next(c for c in checked["checks"] if c["check"] == "main")
    assert main["status"] == "pass", main  # origin/main travelled with the commit
    deploy(state, "v2")
    assert served(state) == {web: (200, colour, v2) for web in WEB}
    for web in WEB:
        code, out = sh(state, web, "git -C /var/www/bideshgomon/current rev-parse HEAD")
        assert (code, out.strip()) == (0, v2)


def test_push_blue_green_then_rollback_to_v1(
    fleet_without_repository: sandbox.SandboxState,
) -> None:
    state = fleet_without_repository
    deploy(state, "v2")  # in place: the starting point (nothing changes when it is live)
    (old,) = {c for _, c, _ in served(state).values()}
    # A release that exists only in this machine's repository, pushed into the idle colour.
    tag, sha = commit(state, {"public/push.txt": "pushed\n"}, "push: a release", prefix="push")
    deploy(state, tag, "--strategy", "blue-green")
    new = "green" if old == "blue" else "blue"
    assert served(state) == {web: (200, new, sha) for web in WEB}

    proc = bgdeploy(state, "rollback", "sandbox", "--to", "v1", "--reason", "push test")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    v1 = state.releases["v1"]
    assert served(state) == {web: (200, new, v1) for web in WEB}
    for web in WEB:
        (entry,) = [e for e in journal(state, web) if e["event"] == "rollback"][-1:]
        assert (entry["sha"], entry["result"]) == (v1, "ok"), entry
        fetch = next(step for step in entry["steps"] if step["name"] == "fetch")
        assert fetch["result"] == "ok", entry  # v1 sent to the new colour, which lacked it
