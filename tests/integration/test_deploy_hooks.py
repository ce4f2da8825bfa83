"""Hooks around a real deploy, on the session's fleet: a failing pre-deploy hook stops the
deploy before any host changes; a post-deploy hook is told the release it follows.

The hooks live in a deploy repository of the test's own (``BGDEPLOY_ROOT``: this checkout's
inventories, group_data, deploys and templates linked in, and a ``hooks/`` directory), so
that no other test's deploy runs them.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import LOCK, journal, own_deploy_repository, run, sandbox_run_env, sh

WEB = ("web1", "web2")


@pytest.fixture
def deploy_repository(tmp_path: Path) -> Path:
    return own_deploy_repository(tmp_path)


def hook(root: Path, stage: str, name: str, body: str) -> None:
    path = root / "hooks" / stage / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def served(state: sandbox.SandboxState) -> set[str]:
    return {
        httpx.get(f"http://127.0.0.1:{w.ports['http']}/api/health", timeout=15).headers.get(
            "X-Release", ""
        )
        for w in state.group("web")
    }


def test_a_failing_pre_deploy_hook_stops_the_deploy_and_post_deploy_is_told(
    provisioned: sandbox.SandboxState, deploy_repository: Path
) -> None:
    state = provisioned
    plain = run(["bgdeploy", "deploy", "sandbox", "--ref", "v2"], env=sandbox_run_env(state))
    assert plain.returncode == 0, plain.stderr[-4000:]
    env = {**sandbox_run_env(state), "BGDEPLOY_ROOT": str(deploy_repository)}
    count = {web: len(journal(state, web)) for web in WEB}
    hook(
        deploy_repository, "pre-deploy", "10-freeze", "echo 'release freeze: ask #releases'; exit 3"
    )
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v1"], env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "hook pre-deploy 10-freeze: FAILED (exit 3)" in proc.stderr
    assert "release freeze: ask #releases" in proc.stderr
    assert "pre-deploy hook 10-freeze failed (exit 3): nothing was changed" in proc.stderr
    # No host was touched: same release, no journal line, no lock.
    assert served(state) == {state.releases["v2"]}
    assert {web: len(journal(state, web)) for web in WEB} == count
    assert all(sh(state, web, f"test -e {LOCK}")[0] != 0 for web in WEB)

    (deploy_repository / "hooks" / "pre-deploy" / "10-freeze").unlink()
    seen = deploy_repository / "seen"
    hook(deploy_repository, "post-deploy", "50-record", f"env | grep ^BGDEPLOY_ | sort > {seen}")
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v1"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "hook post-deploy 50-record: ok" in proc.stderr
    told = dict(line.split("=", 1) for line in seen.read_text().splitlines())
    assert told["BGDEPLOY_STAGE"] == "post-deploy" and told["BGDEPLOY_ENV"] == "sandbox"
    assert told["BGDEPLOY_REF"] == "v1" and told["BGDEPLOY_RELEASE"] == state.releases["v1"]
    assert told["BGDEPLOY_STRATEGY"] == "in-place" and told["BGDEPLOY_RESULT"] == "succeeded"
    assert len(told["BGDEPLOY_RUN_ID"]) == 12
    assert served(state) == {state.releases["v1"]}
