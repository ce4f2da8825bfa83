"""`bgdeploy preflight` and `bgdeploy postmortem` on a sandbox of their own.

The fleet (2 web hosts, a db host) is provisioned and given v1 in place. Preflight: a clean
ref passes, a ref with a dropColumn migration fails (in place, and always for blue-green) and
warns with --allow-destructive, a new flag without a removal date warns, a held lock and an
unknown ref fail with exit 3, a hostile --ref exits 2 before any SSH login. Postmortem: after
deploying v1 and v2, a deploy that fails its health check and is rolled back automatically,
and the kill switch of a flag, the timeline lists those events in order, at the journals' UTC
times plus 6 hours (Asia/Dhaka).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bgdeploy import sandbox
from bgdeploy.sandbox import sampleapp

from .conftest import (
    LOCK,
    V2_MIGRATION,
    commit,
    journal,
    logins,
    run,
    sandbox_run_env,
    sh,
    unique_name,
)

WEB = ("web1", "web2")
FLAG = "visa_new_flow_20250601"
DHAKA = timedelta(hours=6)

DROP_COLUMN = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->dropColumn('passport_country');
        });
    }

    public function down()
    {
    }
};
"""

BROKEN_HEALTH = """<?php

namespace App\\Http\\Controllers;

use Illuminate\\Http\\JsonResponse;

class HealthController extends Controller
{
    public function __invoke(): JsonResponse
    {
        return new JsonResponse(['status' => 'unhealthy', 'checks' => []], 503);
    }
}
"""


@pytest.fixture(scope="module")
def pf(docker_client: Any) -> Iterator[tuple[sandbox.SandboxState, datetime]]:
    """The fleet with v1 deployed, and the moment (UTC) before that deploy started."""
    name = unique_name("pf")
    state = sandbox.up(name, web=2, client=docker_client)
    try:
        env = sandbox_run_env(state)
        proc = run(["bgdeploy", "provision", "sandbox"], env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v1"], env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        yield state, started
    finally:
        sandbox.down(name, client=docker_client)


def preflight(state: sandbox.SandboxState, *args: str) -> tuple[int, dict[str, Any], str]:
    """``bgdeploy preflight sandbox ARGS --json``: exit code, the checklist, stderr."""
    proc = run(["bgdeploy", "preflight", "sandbox", *args, "--json"], env=sandbox_run_env(state))
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON\n{proc.stdout}\n{proc.stderr[-3000:]}") from None
    return proc.returncode, data, proc.stderr


def by_name(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for check in data["checks"]:
        found.setdefault(check["check"], []).append(check)
    return found


def statuses(data: dict[str, Any], name: str) -> set[str]:
    return {check["status"] for check in by_name(data)[name]}


def deploy(state: sandbox.SandboxState, ref: str) -> subprocess.CompletedProcess[str]:
    return run(["bgdeploy", "deploy", "sandbox", "--ref", ref], env=sandbox_run_env(state))


# Preflight
# ---------


def test_clean_ref_passes(pf: tuple[sandbox.SandboxState, datetime]) -> None:
    state, _ = pf
    code, data, err = preflight(state, "--ref", "v2")
    assert code == 0, err
    assert data["sha"] == state.releases["v2"] and data["status"] in ("pass", "warn")
    checks = by_name(data)
    assert checks["ref"][0]["status"] == "pass"
    assert checks["main"][0]["status"] == "pass"  # v2 is on main
    assert set(checks["migrations"][0]["items"]) <= {V2_MIGRATION}
    for name in ("destructive", "window", "snapshot disk"):
        assert statuses(data, name) == {"pass"}, (name, data)
    for name in ("secrets", "lock", "disk", "clean checkout"):
        assert statuses(data, name) == {"pass"}
        assert {check["host"] for check in checks[name]} == set(WEB)
    # The sample app's flags are past their remove_after dates: a warning, not a failure.
    assert checks["feature flags"][0]["status"] == "warn"
    assert (
        "visa_new_flow_20250601: remove_after 2025-07-01 passed"
        in (checks["feature flags"][0]["detail"])
    )
    table = run(["bgdeploy", "preflight", "sandbox", "--ref", "v2"], env=sandbox_run_env(state))
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].startswith(f"preflight of v2 ({state.releases['v2'][:12]})")
    assert re.search(r"^feature flags\s+WARN\s+web1\s+visa_new_flow", table.stdout, re.M)
    assert table.stdout.rstrip().endswith("ready to deploy (exit 0)")


def test_destructive_migration_and_new_flag(pf: tuple[sandbox.SandboxState, datetime]) -> None:
    state, _ = pf
    features = (sampleapp.APP_DIR / "config" / "features.php").read_text()
    features = features.replace(
        "\n];",
        "\n    'payments_v3' => [\n        'enabled' => false,\n"
        "        'rollout_percentage' => 0,\n    ],\n\n];",
    )
    tag, sha = commit(
        state,
        {
            "database/migrations/2026_01_01_000000_drop_passport_country.php": DROP_COLUMN,
            "config/features.php": features,
        },
        "Drop a column, add a flag without a removal date",
    )
    before = {name: len(journal(state, name)) for name in WEB}
    code, data, err = preflight(state, "--ref", tag)
    assert code == 3, err
    assert data["sha"] == sha
    destructive = by_name(data)["destructive"][0]
    assert destructive["status"] == "fail"
    assert destructive["items"] == ["2026_01_01_000000_drop_passport_country.php"]
    assert "$table->dropColumn('passport_country') — destructive" in destructive["detail"]
    assert "2026_01_01_000000_drop_passport_country" in by_name(data)["migrations"][0]["items"]
    assert statuses(data, "main") == {"warn"}  # a tag off main
    flags = by_name(data)["feature flags"][0]
    assert flags["status"] == "warn" and flags["items"] == ["payments_v3"]
    assert "payments_v3: new flag has no remove_after" in flags["detail"]

    code, data, err = preflight(state, "--ref", tag, "--allow-destructive")
    assert code == 0, err
    assert statuses(data, "destructive") == {"warn"}

    code, data, err = preflight(state, "--ref", tag, "--strategy", "blue-green")
    assert code == 3, err
    assert by_name(data)["destructive"][0]["detail"].startswith("blue-green refuses")
    # Read only: no journal line, no lock, the live release untouched.
    assert {name: len(journal(state, name)) for name in WEB} == before
    assert all(sh(state, name, f"test -e {LOCK}")[0] != 0 for name in WEB)


def test_held_lock_fails_with_exit_3(pf: tuple[sandbox.SandboxState, datetime]) -> None:
    state, _ = pf
    stale = (
        '{"host":"old-laptop","owner":"carol@old-laptop","pid":1,"ref":"v1",'
        '"run":"deadbeef0000","time":"2026-01-01T00:00:00Z"}'
    )
    code, out = sh(state, "web2", f"printf '%s\\n' '{stale}' > {LOCK}")
    assert code == 0, out
    try:
        code, data, err = preflight(state, "--ref", "v2")
        assert code == 3, err
        locks = {check["host"]: check for check in by_name(data)["lock"]}
        assert locks["web1"]["status"] == "pass"
        assert locks["web2"]["status"] == "fail"
        assert "held by carol@old-laptop (pid 1 on old-laptop)" in locks["web2"]["detail"]
    finally:
        sh(state, "web2", f"rm -f {LOCK}")


def test_unknown_ref_fails(pf: tuple[sandbox.SandboxState, datetime]) -> None:
    state, _ = pf
    code, data, err = preflight(state, "--ref", "no-such-release")
    assert code == 3, err
    assert data["sha"] is None
    ref = by_name(data)["ref"][0]
    assert ref["status"] == "fail"
    assert ref["detail"].startswith("ref 'no-such-release' is not a branch, tag or commit")


def test_hostile_ref_exits_2_before_any_connection(
    pf: tuple[sandbox.SandboxState, datetime], docker_client: Any
) -> None:
    state, _ = pf
    before = logins(docker_client, state)
    for ref in ("main; rm -rf /", "$(touch /tmp/pwned)", "--upload-pack=touch /tmp/x", "v2..v1"):
        proc = run(["bgdeploy", "preflight", "sandbox", "--ref", ref], env=sandbox_run_env(state))
        assert proc.returncode == 2, (ref, proc.stderr)
        assert "ref" in proc.stderr and not proc.stdout
    assert logins(docker_client, state) == before  # no SSH session reached any host


# Postmortem after a real sequence
# --------------------------------


def timeline(text: str) -> list[tuple[str, str]]:
    """The timeline's ``(HH:MM:SS, text)`` lines."""
    section = text.split("## Timeline (Asia/Dhaka Time)", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- \*\*(\d\d:\d\d:\d\d)\*\* - (.*)$", section, re.M)


def dhaka(at: str) -> str:
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    return (moment + DHAKA).strftime("%H:%M:%S")


def first_at(entries: list[dict[str, Any]], **match: Any) -> str:
    """The Dhaka time of the earliest journal entry whose fields equal ``match``."""
    found = [e for e in entries if all(e.get(k) == v for k, v in match.items())]
    assert found, match
    return dhaka(min(e["at"] for e in found))


def test_postmortem_timeline_of_a_real_sequence(
    pf: tuple[sandbox.SandboxState, datetime],
) -> None:
    state, started = pf
    env = sandbox_run_env(state)
    v1, v2 = state.releases["v1"], state.releases["v2"]
    proc = deploy(state, "v2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    broken, broken_sha = commit(
        state, {"app/Http/Controllers/HealthController.php": BROKEN_HEALTH}, "Health broken"
    )
    proc = deploy(state, broken)
    assert proc.returncode == 1, proc.stderr[-4000:]
    proc = run(["bgdeploy", "flags", "sandbox", "disable", FLAG], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        since = (started + DHAKA).strftime("%Y-%m-%dT%H:%M:%S+06:00")
        proc = run(["bgdeploy", "postmortem", "sandbox", "--since", since], env=env)
        assert proc.returncode == 0, proc.stderr
    finally:
        run(["bgdeploy", "flags", "sandbox", "reset", FLAG], env=env)
    text = proc.stdout
    lines = timeline(text)
    entries = [
        e
        for name in (*WEB, "db")
        for e in journal(state, name)
        if datetime.fromisoformat(e["at"].replace("Z", "+00:00")) >= started
    ]

    def find(fragment: str) -> int:
        hits = [i for i, (_, line) in enumerate(lines) if fragment in line]
        assert hits, (fragment, text)
        return hits[0]

    expected = [
        (f"Deploy of v1 ({v1[:7]}) started", first_at(entries, event="deploy_start", ref="v1")),
        (f"Deploy of v1 ({v1[:7]}) finished", first_at(entries, event="deploy_finish", ref="v1")),
        (f"Deploy of v2 ({v2[:7]}) started", first_at(entries, event="deploy_start", ref="v2")),
        (f"Deploy of v2 ({v2[:7]}) finished", first_at(entries, event="deploy_finish", ref="v2")),
        (
            f"Deploy of {broken} ({broken_sha[:7]}) started",
            first_at(entries, event="deploy_start", ref=broken),
        ),
        ("Rollback to", first_at(entries, event="rollback", ref=broken)),
        (
            f"Deploy of {broken} ({broken_sha[:7]}) FAILED, rolled back automatically",
            first_at(entries, event="deploy_fail", ref=broken),
        ),
        (f"Feature flag {FLAG}: disable", first_at(entries, event="flag")),
    ]
    positions = [find(fragment) for fragment, _ in expected]
    assert positions == sorted(positions), lines  # in the order they happened
    for (fragment, at), position in zip(expected, positions, strict=True):
        assert lines[position][0] == at, (fragment, lines[position], at)
    # Every line's time is a journal time plus 6 hours; fleet-wide events name both hosts.
    known = {dhaka(e["at"]) for e in entries}
    assert all(at in known for at, _ in lines), (lines, known)
    assert "(web1, web2" in lines[positions[3]][1]
    day = (started + DHAKA).strftime("%Y-%m-%d")
    assert f"**Date:** {day}" in text and "**Environment:** sandbox" in text
    resolution = text.split("## Resolution", 1)[1].split("\n## ", 1)[0]
    assert f"Feature flag {FLAG}: disable" in resolution and "Rollback to" in resolution
