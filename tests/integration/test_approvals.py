"""Approvals on real deploys, on the session's fleet, under the runbook's rules (group_data
``approvals = "runbook"`` in a deploy repository of the test's own: the sandbox itself asks
for none): a commit's trailers count, the operator does not approve their own deploy, a
refusal leaves every host as it was; a hotfix leaves a review due that ``status`` shows until
``bgdeploy review`` records it, and history and the postmortem tell it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import LOCK, commit, own_deploy_repository, run, sandbox_run_env, settle, sh

WEB = ("web1", "web2")
KARIM = "Karim Ahmed <karim@example.com>"


@pytest.fixture
def runbook_rules(tmp_path: Path) -> Path:
    return own_deploy_repository(tmp_path, 'approvals = "runbook"')


def served(state: sandbox.SandboxState) -> set[str]:
    return {
        httpx.get(f"http://127.0.0.1:{w.ports['http']}/api/health", timeout=15).headers.get(
            "X-Release", ""
        )
        for w in state.group("web")
    }


def deployed(state: sandbox.SandboxState) -> None:
    """The fleet serving a release (the session's fleet may be provisioned only), settled."""
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v2"], env=sandbox_run_env(state))
    assert proc.returncode == 0, proc.stderr[-4000:]
    settle(state)


def finished(state: sandbox.SandboxState, sha: str) -> dict:
    """web1's deploy_finish line of the deploy of ``sha``."""
    from .conftest import journal

    lines = [e for e in journal(state, "web1") if e["event"] == "deploy_finish"]
    assert lines and lines[-1]["sha"] == sha, lines[-1:]
    return lines[-1]


def test_regular_deploys_count_trailers_and_refuse_without_touching_a_host(
    provisioned: sandbox.SandboxState, runbook_rules: Path
) -> None:
    state = provisioned
    deployed(state)
    before = served(state)
    tag, sha = commit(
        state,
        {"public/approved.txt": "approved\n"},
        f"A reviewed change\n\nReviewed-by: {KARIM}\nSigned-off-by: Someone <s@example.com>\n",
        prefix="approved",
    )
    env = {**sandbox_run_env(state), "BGDEPLOY_ROOT": str(runbook_rules)}
    rahim = {**env, "BGDEPLOY_OPERATOR": "rahim@ops-laptop"}

    # One approval (the trailer) of the two a regular deploy needs: refused, exit 3.
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", tag], env=rahim)
    assert proc.returncode == 3, proc.stdout + proc.stderr[-3000:]
    assert "needs 2 approval(s), has 1 (Karim Ahmed <karim@example.com>)" in proc.stderr
    # The operator's own name and the trailer's person named again do not count either.
    salma = {**env, "BGDEPLOY_OPERATOR": "salma@ops-laptop"}
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", tag, "--approved-by", "Salma,karim"], env=salma
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr[-3000:]
    assert "Salma: runs this deploy, cannot approve it" in proc.stderr
    assert served(state) == before
    assert all(sh(state, web, f"test -e {LOCK}")[0] != 0 for web in WEB)

    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", tag, "--approved-by", "Salma"], env=rahim)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert served(state) == {sha}
    approval = finished(state, sha)["details"]["approval"]
    assert approval == {
        "kind": "regular",
        "approvers": [
            {"name": "Salma", "source": "--approved-by"},
            {"name": KARIM, "source": "Reviewed-by"},
        ],
    }
    history = run(["bgdeploy", "history", "sandbox", "--last", "5"], env=env)
    assert "regular, approved by Salma, Karim Ahmed" in history.stdout, history.stdout


def test_a_hotfix_needs_its_plan_and_leaves_a_review_due_until_recorded(
    provisioned: sandbox.SandboxState, runbook_rules: Path
) -> None:
    state = provisioned
    deployed(state)
    tag, sha = commit(state, {"public/hotfix.txt": "fixed\n"}, "Hotfix: visa form", prefix="hf")
    env = {**sandbox_run_env(state), "BGDEPLOY_ROOT": str(runbook_rules)}
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", tag, "--hotfix", "--approved-by", "Salma"],
        env=env,
    )
    assert proc.returncode == 3 and "rollback plan" in proc.stderr, proc.stderr[-3000:]
    plan = "bgdeploy rollback sandbox (no migration)"
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", tag, "--hotfix", "--approved-by", "Salma",
         "--rollback-plan", plan],
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    line = finished(state, sha)
    approval, run_id = line["details"]["approval"], line["details"]["run"]
    assert approval["kind"] == "hotfix" and approval["rollback_plan"] == plan
    assert approval["review_due"].endswith("Z")

    status = run(["bgdeploy", "status", "sandbox"], env=env)
    assert "review due by" in status.stdout and run_id in status.stdout, status.stdout
    checklist = run(["bgdeploy", "preflight", "sandbox", "--ref", tag], env=env)
    assert "review due by" in checklist.stdout and run_id in checklist.stdout, checklist.stdout
    listed = run(["bgdeploy", "review", "sandbox"], env=env)
    assert f"hotfix {tag}" in listed.stdout and run_id in listed.stdout, listed.stdout

    proc = run(["bgdeploy", "review", "sandbox", run_id, "--notes", "cause found"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    again = run(["bgdeploy", "review", "sandbox", run_id], env=env)
    assert again.returncode == 2 and "reviewed already" in again.stderr, again.stderr
    assert run_id not in run(["bgdeploy", "review", "sandbox"], env=env).stdout
    assert "review due" not in run(["bgdeploy", "status", "sandbox"], env=env).stdout
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    postmortem = run(["bgdeploy", "postmortem", "sandbox", "--since", since], env=env)
    assert f"Post-deployment review of run {run_id} recorded" in postmortem.stdout
    assert f"hotfix, approved by Salma; rollback plan: {plan}" in postmortem.stdout
