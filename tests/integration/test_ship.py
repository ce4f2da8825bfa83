"""`bgdeploy ship`: the runbook's automatic path, with one sandbox standing in for production
and a second for staging (inventories/sandbox_staging.py), both provisioned and serving v1.

- a good release goes staging (blue-green, then the staging checks, told the staging hosts'
  URLs and the release) -> a canary on production -> promoted (exit 0), both deploys and both
  environments' `ship` journal lines under one run id;
- a release that fails a staging check never reaches production: its colours and journal are
  untouched (exit 1);
- a release that fails production's canary (a fault only production's hosts have) is sent back
  there (exit 1) and staging keeps it.

Each test makes its own release (the same commit in both sandboxes' repositories) and checks
the fleets from what they serve, whatever the test before left.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox
from bgdeploy.sandbox import sampleapp

from .conftest import (
    DEPLOY_V1,
    PROVISION,
    journal,
    own_deploy_repository,
    own_sandbox,
    run,
    sandbox_run_env,
    sh,
)
from .test_canary import FAIL_EVERY_TENTH

FAULT_MARKER = "/tmp/bgdeploy-production-only-fault"


@pytest.fixture(scope="module")
def fleets(docker_client: Any) -> Iterator[tuple[sandbox.SandboxState, sandbox.SandboxState]]:
    with contextlib.ExitStack() as stack:
        prod = stack.enter_context(own_sandbox("sp", docker_client, PROVISION, DEPLOY_V1))
        staging = stack.enter_context(own_sandbox("ss", docker_client, PROVISION, DEPLOY_V1))
        yield prod, staging


def ship_env(prod: sandbox.SandboxState, staging: sandbox.SandboxState, root: Path | None = None):
    env = {**sandbox_run_env(prod), "BGDEPLOY_STAGING_SANDBOX": staging.name}
    if root is not None:
        env["BGDEPLOY_ROOT"] = str(root)
    return env


def release_on_both(
    prod: sandbox.SandboxState, staging: sandbox.SandboxState, files: dict[str, str], message: str
) -> tuple[str, str]:
    """The same commit on v2 in both sandboxes' repositories, under one new tag: (tag, sha)."""
    tag = f"ship-{uuid.uuid4().hex[:6]}"
    shas = {
        sampleapp.add_commit(Path(s.app_repository), files, message, tag=tag, parent="v2")
        for s in (prod, staging)
    }
    assert len(shas) == 1, shas
    return tag, shas.pop()


def served(state: sandbox.SandboxState, requests: int = 4) -> set[str]:
    """X-Release of first visits (no cookie) to every web host's public port."""
    return {
        httpx.get(f"http://127.0.0.1:{w.ports['http']}/api/health", timeout=15).headers.get(
            "X-Release", ""
        )
        for w in state.group("web")
        for _ in range(requests)
    }


def ship_lines(state: sandbox.SandboxState) -> list[dict]:
    return [e for e in journal(state, "web1") if e["event"] == "ship"]


def test_a_good_release_goes_through_staging_and_its_checks_to_a_promoted_canary(
    fleets: tuple[sandbox.SandboxState, sandbox.SandboxState], tmp_path: Path
) -> None:
    prod, staging = fleets
    tag, sha = release_on_both(prod, staging, {"public/ship.txt": "good\n"}, "A good release")
    seen = tmp_path / "seen"
    # A staging check told the staging hosts' URLs: every one must serve the release.
    check = (
        "import os, urllib.request\n"
        "hosts = os.environ['BGDEPLOY_STAGING_HOSTS'].split()\n"
        "got = {urllib.request.urlopen(h + '/api/health').headers['X-Release'] for h in hosts}\n"
        f"open({str(seen)!r}, 'w').write(' '.join(sorted(got)) + '\\n' + "
        "os.environ['BGDEPLOY_RELEASE'])\n"
        "raise SystemExit(0 if got == {os.environ['BGDEPLOY_RELEASE']} else 1)\n"
    )
    root = own_deploy_repository(
        tmp_path / "repo", f"staging_checks = [[{sys.executable!r}, '-c', {check!r}]]"
    )
    proc = run(["bgdeploy", "ship", "sandbox", "--ref", tag, "--canary", "50", "--json"],
               env=ship_env(prod, staging, root))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    import json

    report = json.loads(proc.stdout)
    assert [(s["stage"], s["result"]) for s in report["stages"]] == [
        ("preflight", "ok"), ("staging deploy", "ok"), ("staging checks", "ok"), ("canary", "ok"),
    ]  # fmt: skip
    assert seen.read_text() == f"{sha}\n{sha}"
    assert served(prod) == {sha} and served(staging) == {sha}
    run_id = report["run"]
    for state in (prod, staging):
        [line] = [e for e in ship_lines(state) if e["details"]["run"] == run_id]
        assert line["result"] == "ok" and line["sha"] == sha
        finished = [e for e in journal(state, "web1") if e["event"] == "deploy_finish"]
        assert finished[-1]["details"]["run"] == run_id and finished[-1]["sha"] == sha


def test_a_release_failing_a_staging_check_never_reaches_production(
    fleets: tuple[sandbox.SandboxState, sandbox.SandboxState], tmp_path: Path
) -> None:
    prod, staging = fleets
    tag, sha = release_on_both(prod, staging, {"public/ship.txt": "e2e fails\n"}, "E2E fails")
    root = own_deploy_repository(
        tmp_path, "staging_checks = [['sh', '-c', 'echo checkout page broken; exit 4']]"
    )
    before, lines = served(prod), len(journal(prod, "web1"))
    proc = run(["bgdeploy", "ship", "sandbox", "--ref", tag], env=ship_env(prod, staging, root))
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-5000:]
    assert "staging checks  sandbox_staging  failed" in proc.stdout, proc.stdout
    assert "sh -c echo checkout page broken; exit 4: FAILED (exit 4" in proc.stdout
    assert "checkout page broken" in proc.stdout
    # The whole ship in one log file, named at the end: the staging deploy's pyinfra log too.
    log = Path(proc.stderr.strip().splitlines()[-1].removeprefix("log: "))
    text = log.read_text()
    assert "staging checks" in text and "Starting operation" in text and sha[:12] in text
    assert "canary          sandbox          skipped" in proc.stdout
    assert served(staging) == {sha}  # staging keeps it, to be looked at
    # Production: not one request, not one journal line (but the ship's own).
    assert served(prod) == before
    after = journal(prod, "web1")
    assert [e["event"] for e in after[lines:]] == ["ship"]
    assert after[-1]["result"] == "failed"


def production_only_fault(
    prod: sandbox.SandboxState, staging: sandbox.SandboxState
) -> tuple[str, str]:
    """A release whose every 10th request answers 500 where FAULT_MARKER exists (only on
    production's hosts): staging's smoke tests and health watch see nothing, production's
    smoke tests pass and its canary's probes fail."""
    kernel = subprocess.run(
        ["git", "-C", prod.app_repository, "show", "v2:app/Http/Kernel.php"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    first = "\\App\\Http\\Middleware\\RecordRequestMetrics::class,\n"
    kernel = kernel.replace(
        first, first + "        \\App\\Http\\Middleware\\FailEveryTenth::class,\n", 1
    )
    middleware = FAIL_EVERY_TENTH.replace("KEY", f"prod-fault-{uuid.uuid4().hex[:8]}").replace(
        "if ($request->path() !== 'metrics') {",
        f"if ($request->path() !== 'metrics' && is_file('{FAULT_MARKER}')) {{",
    )
    assert FAULT_MARKER in middleware
    files = {"app/Http/Kernel.php": kernel, "app/Http/Middleware/FailEveryTenth.php": middleware}
    return release_on_both(prod, staging, files, "Every 10th request fails, in production only")


def test_a_release_failing_the_canary_is_sent_back_and_staging_keeps_it(
    fleets: tuple[sandbox.SandboxState, sandbox.SandboxState],
) -> None:
    prod, staging = fleets
    tag, sha = production_only_fault(prod, staging)
    for web in ("web1", "web2"):
        assert sh(prod, web, f"touch {FAULT_MARKER} && chmod 644 {FAULT_MARKER}")[0] == 0
    try:
        before = served(prod)
        proc = run(["bgdeploy", "ship", "sandbox", "--ref", tag, "--canary", "50"],
                   env=ship_env(prod, staging))  # fmt: skip
    finally:
        for web in ("web1", "web2"):
            sh(prod, web, f"rm -f {FAULT_MARKER}")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-5000:]
    assert "gate FAILED (probe)" in text, text[-5000:]
    assert "staging deploy  sandbox_staging  ok" in proc.stdout, proc.stdout
    assert "canary          sandbox          failed" in proc.stdout, proc.stdout
    assert served(prod) == before and sha not in before
    assert served(staging) == {sha}
