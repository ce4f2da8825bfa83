"""The in-place release (deploys/release.py, `bgdeploy deploy`) on the provisioned session fleet.

Each test leaves the fleet serving release v2 (after the first one), so they can run in any
order after it. Broken releases are commits added to the sandbox's repository for the test:
one whose migration fails, one whose health check answers 503, one whose composer install
takes 30 s (to be interrupted), one with a destructive migration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgdeploy import commands, sandbox
from bgdeploy.core import explain
from bgdeploy.core import lock as lock_mod
from bgdeploy.sandbox import sampleapp

from .conftest import (
    APP_ROOT,
    BACKUPS,
    LOCK,
    ROOT,
    V2_MIGRATION,
    commit,
    journal,
    logins,
    psql,
    q,
    run,
    sandbox_run_env,
    sh,
    ssh,
    unique_name,
)

WEB = ("web1", "web2")

BROKEN_MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->string('tracking_code')->nullable();
        });
        Schema::table('no_such_table', function (Blueprint $table) {
            $table->string('x')->nullable();
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

BOOT_FAILURE = "bgdeploy-boot-failure: the payments gateway key is missing"

THROWING_PROVIDER = f"""<?php

namespace App\\Providers;

use Illuminate\\Support\\ServiceProvider;

class PaymentsServiceProvider extends ServiceProvider
{{
    public function register()
    {{
        throw new \\RuntimeException('{BOOT_FAILURE}');
    }}
}}
"""

DESTRUCTIVE_MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::dropIfExists('legacy_visa_notes');
    }

    public function down()
    {
    }
};
"""


# Helpers
# -------


def deploy(
    state: sandbox.SandboxState, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``bgdeploy deploy sandbox ARGS --json``: the process and its JSON report."""
    proc = run(
        ["bgdeploy", "deploy", "sandbox", *args, "--json"],
        env={**sandbox_run_env(state), **(env or {})},
    )
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report\n{proc.stdout}\n{proc.stderr[-4000:]}") from None
    return proc, report


def hosts(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in report["hosts"] if "web" in h["roles"]}


def served(state: sandbox.SandboxState) -> dict[str, tuple[int, str]]:
    """Each web host's /api/health through the public port: (status, X-Release)."""
    found = {}
    for web in state.group("web"):
        response = httpx.get(f"http://127.0.0.1:{web.ports['http']}/api/health", timeout=15)
        found[web.name] = (response.status_code, response.headers.get("X-Release", ""))
    return found


def schema(state: sandbox.SandboxState) -> str:
    code, out = sh(state, "db", "cd / && sudo -u postgres pg_dump --schema-only bideshgomon")
    assert code == 0, out
    # pg_dump's \restrict line carries a random key on every run.
    return "\n".join(
        line for line in out.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))
    )


def lock_exists(state: sandbox.SandboxState, host: str) -> bool:
    return sh(state, host, f"test -e {LOCK}")[0] == 0


def snapshots(state: sandbox.SandboxState) -> list[str]:
    code, out = sh(state, "db", f"sudo ls -1 {BACKUPS}")
    assert code == 0, out
    return sorted(line for line in out.split() if line.endswith(".dump"))


def slow_composer(state: sandbox.SandboxState) -> tuple[str, str]:
    """A commit whose composer install sleeps 30 s (a post-autoload-dump script)."""
    composer = json.loads((sampleapp.APP_DIR / "composer.json").read_text())
    composer["scripts"]["post-autoload-dump"].append("sleep 30")
    return commit(state, {"composer.json": json.dumps(composer, indent=4) + "\n"}, "slow")


def wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def start_deploy(state: sandbox.SandboxState, ref: str, operator: str) -> subprocess.Popen[str]:
    """``bgdeploy deploy`` in the background (a real process that Ctrl-C can reach)."""
    env = {
        **os.environ,
        "PYINFRA_PROGRESS": "off",
        "BGDEPLOY_OPERATOR": operator,
        **sandbox_run_env(state),
    }
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "bgdeploy"), "deploy", "sandbox", "--ref", ref],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def at_v2(provisioned: sandbox.SandboxState) -> sandbox.SandboxState:
    """The fleet serving v2 (a no-op when it already does, as every test leaves it)."""
    proc, _report = deploy(provisioned, "--ref", "v2")
    assert proc.returncode == 0, proc.stderr[-6000:]
    return provisioned


# The happy path
# --------------


def test_v1_then_v2_on_two_web_hosts(provisioned: sandbox.SandboxState) -> None:
    state = provisioned
    v1, v2 = state.releases["v1"], state.releases["v2"]
    before = snapshots(state)
    proc, report = deploy(state, "--ref", "v1")
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert {name: h["result"] for name, h in hosts(report).items()} == {"web1": "ok", "web2": "ok"}
    assert served(state) == {"web1": (200, v1), "web2": (200, v1)}

    proc, report = deploy(state, "--ref", "v2")
    assert proc.returncode == 0, proc.stderr[-6000:]
    # Every host serves v2 through nginx's public port, and is healthy.
    assert served(state) == {"web1": (200, v2), "web2": (200, v2)}
    for name, outcome in hosts(report).items():
        assert (outcome["result"], outcome["sha_before"], outcome["sha_after"]) == ("ok", v1, v2)
        assert outcome["colour"] == "blue"
        assert not lock_exists(state, name)
    # The v2 migration ran once, from web1 only, after a verified snapshot.
    assert report["migrations"] == [V2_MIGRATION]
    assert report["migrated_on"] == "web1"
    assert psql(state, f"SELECT count(*) FROM migrations WHERE migration = '{V2_MIGRATION}'") == "1"
    steps = {name: [s["name"] for s in h["steps"]] for name, h in hosts(report).items()}
    assert "migrate" in steps["web1"] and "migrate" not in steps["web2"]
    # The assets were built once, on web1, and web2 received a verified copy: byte for byte
    # the same build, served by both.
    assert {"npm ci", "npm run build", "pack the assets"} <= set(steps["web1"])
    assert not {"npm ci", "npm run build"} & set(steps["web2"])
    assert "receive the assets" in steps["web2"]
    listing = f"cd {APP_ROOT}/blue/public/build && find . -type f | sort | xargs sha256sum"
    built = {name: sh(state, name, listing) for name in WEB}
    assert built["web1"][0] == 0 and built["web1"] == built["web2"], built
    assert "app" in built["web1"][1]
    snapshot = report["snapshot"]
    assert snapshot["host"] == "db" and snapshot["name"].endswith(v2[:12])
    assert f"{snapshot['name']}.dump" in set(snapshots(state)) - set(before)
    path = snapshot["path"]
    check = (
        f"cd {BACKUPS} && sha256sum -c {path}.sha256 && stat -c '%a %U' {path} {path}.sha256 "
        f"&& pg_restore -f /dev/null {path} && echo readable"
    )
    code, out = sh(state, "db", f"cd / && sudo -u postgres sh -c {q(check)}")
    assert code == 0, out
    assert out.split().count("600") == 2 and "readable" in out and ": OK" in out
    # Each host journaled the deploy: who, shas, steps with durations.
    for name in WEB:
        finish = journal(state, name)[-1]
        assert finish["event"] == "deploy_finish" and finish["result"] == "ok"
        assert (finish["sha_before"], finish["sha"]) == (v1, v2)
        assert finish["who"] and all(s["seconds"] >= 0 for s in finish["steps"])
        assert [s["name"] for s in finish["steps"]][:3] == [
            "take the deploy lock",
            "preflight",
            "check out",
        ]
    events = [e["event"] for e in journal(state, "web1")[-4:]]
    assert events == ["deploy_start", "snapshot", "migrate", "deploy_finish"]


def test_same_ref_again_changes_nothing(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    probe = (
        f"stat -c %Y {APP_ROOT}/blue/vendor/autoload.php {APP_ROOT}/blue/public/build/manifest.json"
        " && cat /run/php/php8.2-fpm.pid /run/nginx.pid"
    )
    before = {name: sh(state, name, probe)[1] for name in WEB}
    count = {name: len(journal(state, name)) for name in WEB}
    proc, report = deploy(state, "--ref", "v2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for outcome in hosts(report).values():
        assert outcome["result"] == "unchanged"
        assert "already at" in outcome["message"]
        assert [s["name"] for s in outcome["steps"]] == ["take the deploy lock", "preflight"]
    assert {name: sh(state, name, probe)[1] for name in WEB} == before
    for name in WEB:
        lines = journal(state, name)[count[name] :]
        assert [line["event"] for line in lines] == ["deploy_start", "deploy_finish"]
        assert lines[-1]["message"] == f"already at {state.releases['v2']}"
    assert "already live on every host" in report["summary"]


# Failures
# --------


def test_failed_migration_leaves_schema_and_live_release(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    tag, _ = commit(
        state,
        {"database/migrations/2025_08_01_000000_add_tracking_code.php": BROKEN_MIGRATION},
        "A migration that fails half-way",
    )
    schema_before = schema(state)
    proc, report = deploy(state, "--ref", tag)
    assert proc.returncode == 1, proc.stderr[-4000:]
    # PostgreSQL rolled the failed migration back: the schema is exactly as it was.
    assert schema(state) == schema_before
    assert "tracking_code" not in schema_before
    assert served(state) == {name: (200, state.releases["v2"]) for name in WEB}
    # The snapshot taken before it is named in the error, and kept.
    name = report["snapshot"]["name"]
    assert name in report["error"] and f"{name}.dump" in snapshots(state)
    outcomes = hosts(report)
    assert outcomes["web1"]["failed_step"] == "migrate"
    assert "restored" in outcomes["web1"]["message"]
    assert outcomes["web2"]["result"] == "failed"  # restored too: nobody stays on the new code
    for outcome in outcomes.values():
        assert outcome["sha_after"] == state.releases["v2"]
        assert not lock_exists(state, outcome["host"])
    fail = journal(state, "web1")[-1]
    assert fail["event"] == "deploy_fail" and fail["details"]["failed_step"] == "migrate"


def test_failed_health_rolls_back_every_host(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    tag, sha = commit(
        state, {"app/Http/Controllers/HealthController.php": BROKEN_HEALTH}, "Health check broken"
    )
    proc, report = deploy(state, "--ref", tag)
    assert proc.returncode == 1, proc.stderr[-4000:]
    for name, outcome in hosts(report).items():
        assert outcome["result"] == "rolled_back"
        assert outcome["failed_step"] == "verify health"
        assert "answered 503" in outcome["message"]
        assert outcome["sha_after"] == state.releases["v2"]
        events = [line["event"] for line in journal(state, name)[-2:]]
        assert events == ["rollback", "deploy_fail"]
    assert served(state) == {name: (200, state.releases["v2"]) for name in WEB}
    assert report["sha"] == sha


def throwing_provider(state: sandbox.SandboxState) -> tuple[str, str]:
    """A commit whose AppServiceProvider registers a provider that throws when the
    application boots: ``composer install`` fails (its post-autoload-dump script,
    ``artisan package:discover``, boots the application, cached configuration or not)."""
    provider = (sampleapp.APP_DIR / "app" / "Providers" / "AppServiceProvider.php").read_text()
    anchor = "    public function register()\n    {\n"
    assert anchor in provider
    provider = provider.replace(
        anchor, f"{anchor}        $this->app->register(PaymentsServiceProvider::class);\n\n"
    )
    files = {
        "app/Providers/PaymentsServiceProvider.php": THROWING_PROVIDER,
        "app/Providers/AppServiceProvider.php": provider,
    }
    return commit(state, files, "A service provider that throws at boot")


def test_boot_failure_is_named_in_the_table_the_last_line_and_json(
    at_v2: sandbox.SandboxState,
) -> None:
    """The exception's message, not composer's last line ("Nothing to install, update or
    remove"), is what each host's note, the final FAILED line and --json say."""
    state = at_v2
    v2 = state.releases["v2"]
    tag, sha = throwing_provider(state)
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", tag], env=sandbox_run_env(state))
    assert proc.returncode == 1, proc.stderr[-4000:]
    table = proc.stdout.splitlines()
    for name in WEB:
        (row,) = [line for line in table if line.startswith(f"{name} ")]
        assert "failed" in row and BOOT_FAILURE in row, table
    last = table[-1]
    assert "FAILED on" in last and f": composer install: {BOOT_FAILURE}" in last, table
    assert "Nothing to install" not in proc.stdout
    assert served(state) == {name: (200, v2) for name in WEB}

    proc, report = deploy(state, "--ref", tag)
    assert proc.returncode == 1, proc.stderr[-4000:]
    assert report["sha"] == sha and BOOT_FAILURE in report["summary"]
    for name, outcome in hosts(report).items():
        assert outcome["result"] == "failed" and outcome["failed_step"] == "composer install"
        assert outcome["message"].startswith(BOOT_FAILURE), outcome["message"]
        assert "post-autoload-dump event returned with error code 1" in outcome["message"]
        assert f"the previous release {v2[:12]} was restored" in outcome["message"]
        assert outcome["sha_after"] == v2 and not lock_exists(state, name)
        fail = journal(state, name)[-1]
        assert fail["event"] == "deploy_fail" and BOOT_FAILURE in fail["message"]
    assert served(state) == {name: (200, v2) for name in WEB}


def test_step_commands_are_not_wrapped_at_the_ptys_width(at_v2: sandbox.SandboxState) -> None:
    """Under an 80-column pty (as the release's steps run), the console width artisan and
    composer use (Symfony's Terminal) is 80 in a plain command and TERMINAL_COLUMNS in one
    built as the steps' are (``commands.wide``), whatever stty said before it."""
    width = (
        'php -r \'require "vendor/autoload.php"; '
        "echo (new Symfony\\Component\\Console\\Terminal())->getWidth(), PHP_EOL;'"
    )
    plain = f"cd {APP_ROOT}/blue && stty cols 80 && {width}"
    step = commands.in_dir(f"{APP_ROOT}/blue", f"stty cols 80 && {commands.wide(width)}")
    client = ssh(at_v2, "web1")
    try:
        found = []
        for command in (plain, step):
            _, stdout, _ = client.exec_command(command, get_pty=True, timeout=60)
            found.append(stdout.read().decode().split())
    finally:
        client.close()
    assert found == [["80"], [str(explain.TERMINAL_COLUMNS)]]


# The lock and Ctrl-C
# -------------------


def test_second_deploy_exits_3_naming_the_holder(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    tag, _ = slow_composer(state)
    first = start_deploy(state, tag, "alice@ops-laptop")
    try:
        wait_for(lambda: lock_exists(state, "web1"), "the first deploy's lock")
        before = len(journal(state, "web2"))
        second, report = deploy(state, "--ref", "v2", "--force")
        assert second.returncode == 3, second.stderr[-4000:]
        assert "held by alice@ops-laptop" in second.stderr
        assert report["refusal"]["kind"] == "lock"
        assert len(journal(state, "web2")) == before  # refused before any host was touched
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=300)
    assert not any(lock_exists(state, name) for name in WEB)
    assert served(state) == {name: (200, state.releases["v2"]) for name in WEB}


def test_ctrl_c_during_composer_releases_lock_and_keeps_serving(
    at_v2: sandbox.SandboxState,
) -> None:
    state = at_v2
    tag, _ = slow_composer(state)
    proc = start_deploy(state, tag, "bob@ops-laptop")
    try:
        for name in WEB:
            wait_for(lambda name=name: sh(state, name, "pgrep -f 'sleep 30'")[0] == 0, "composer")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-4000:]
    assert "interrupted" in out
    for name in WEB:
        assert not lock_exists(state, name)
        assert sh(state, name, "pgrep -f 'sleep 30'")[0] != 0  # composer stopped with us
        last = journal(state, name)[-1]
        assert last["event"] == "deploy_fail" and last["details"]["interrupted"] is True
    assert served(state) == {name: (200, state.releases["v2"]) for name in WEB}


def test_stale_lock_is_broken_only_on_request(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    stale = (
        '{"host":"old-laptop","owner":"carol@old-laptop","pid":1,"ref":"v1",'
        '"run":"deadbeef0000","time":"2026-01-01T00:00:00Z"}'
    )
    code, out = sh(state, "web2", f"printf '%s\\n' {q(stale)} > {LOCK}")
    assert code == 0, out
    proc, _report = deploy(state, "--ref", "v2", "--force")
    assert proc.returncode == 3
    assert "carol@old-laptop" in proc.stderr
    assert not lock_exists(state, "web1")  # the refused deploy left nothing behind
    assert lock_exists(state, "web2")  # and did not break the other lock

    unlocked = run(["bgdeploy", "unlock", "sandbox", "--yes"], env=sandbox_run_env(state))
    assert unlocked.returncode == 0, unlocked.stderr
    assert "web2  broke the lock of carol@old-laptop" in unlocked.stdout
    assert "web1  no lock" in unlocked.stdout
    assert not lock_exists(state, "web2")
    entry = journal(state, "web2")[-1]
    assert entry["event"] == "unlock" and "carol@old-laptop" in entry["message"]


def unlock(
    state: sandbox.SandboxState, *args: str, answer: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``bgdeploy unlock sandbox ARGS`` as gina@ops-desk; ``answer`` on its stdin (None: no
    stdin at all, as from cron or CI)."""
    env = {**os.environ, **sandbox_run_env(state), "BGDEPLOY_OPERATOR": "gina@ops-desk"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "bgdeploy"), "unlock", "sandbox", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
        input=answer, stdin=subprocess.DEVNULL if answer is None else None,
    )  # fmt: skip


def write_lock(state: sandbox.SandboxState, host: str, pid: int, owner: str) -> str:
    """A deploy lock on ``host`` taken from this machine by process ``pid``; its text."""
    held = lock_mod.LockInfo(
        owner, pid, lock_mod.this_machine(), "v2", "2026-12-03T04:12:09Z", lock_mod.new_run_id()
    ).to_json()
    code, out = sh(
        state, host, f"mkdir -p {APP_ROOT}/.bgdeploy && printf '%s\\n' {q(held)} > {LOCK}"
    )
    assert code == 0, out
    return held


def test_unlock_refuses_a_holder_still_running_on_this_machine(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    for name in WEB:
        sh(state, name, f"rm -f {LOCK}")
    holder = subprocess.Popen(["sleep", "300"])
    try:
        held = write_lock(state, "web1", holder.pid, "hana@ops-laptop")
        refused = unlock(state, "--yes")
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert f"pid {holder.pid}" in refused.stderr and "still running" in refused.stderr
        assert "--force" in refused.stderr
        assert sh(state, "web1", f"cat {LOCK}")[1].strip() == held  # left as it was
        # A deploy cannot go on meanwhile: the lock is what it says.
        second, _ = deploy(state, "--ref", "v2", "--force")
        assert second.returncode == 3 and "hana@ops-laptop" in second.stderr
        forced = unlock(state, "--yes", "--force", "--reason", "its terminal hangs")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "web1  broke the lock of hana@ops-laptop" in forced.stdout
        assert not lock_exists(state, "web1")
        entry = journal(state, "web1")[-1]
        assert (entry["event"], entry["who"]) == ("unlock", "gina@ops-desk")
        assert entry["details"]["forced"] is True and entry["reason"] == "its terminal hangs"
    finally:
        holder.kill()
        holder.wait()
        sh(state, "web1", f"rm -f {LOCK}")


def test_unlock_shows_the_holder_and_asks(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    for name in WEB:
        sh(state, name, f"rm -f {LOCK}")
    finished = subprocess.Popen(["true"])
    finished.wait()  # its pid runs no more: the lock is stale
    held = write_lock(state, "web2", finished.pid, "ivan@ops-laptop")
    try:
        silent = unlock(state)  # nothing to ask on, no --yes
        assert silent.returncode == 2, silent.stdout + silent.stderr
        assert "--yes" in silent.stderr
        said_no = unlock(state, answer="n\n")
        assert said_no.returncode == 1, said_no.stdout + said_no.stderr
        # Each host's lock was shown: owner, machine, pid, ref, since when.
        shown = f"web2: held by ivan@ops-laptop on {lock_mod.this_machine()}, pid {finished.pid}"
        assert shown in said_no.stderr and "ref v2, since 2026-12-03T04:12:09Z" in said_no.stderr
        assert "web1: no lock" in said_no.stderr and "Break the deploy lock" in said_no.stderr
        assert sh(state, "web2", f"cat {LOCK}")[1].strip() == held
        before = len(journal(state, "web2"))
        said_yes = unlock(state, "--reason", "ivan's laptop died", answer="y\n")
        assert said_yes.returncode == 0, said_yes.stdout + said_yes.stderr
        assert "web2  broke the lock of ivan@ops-laptop" in said_yes.stdout
        assert "web1  no lock" in said_yes.stdout
        assert not lock_exists(state, "web2")
        (entry,) = journal(state, "web2")[before:]
        assert (entry["event"], entry["who"], entry["result"]) == ("unlock", "gina@ops-desk", "ok")
        assert "ivan@ops-laptop" in entry["message"] and entry["reason"] == "ivan's laptop died"
        assert lock_mod.parse_lock(entry["details"]["lock"]) == lock_mod.parse_lock(held)
        assert unlock(state, "--yes").stdout.count("no lock") == 2  # nothing left to break
    finally:
        sh(state, "web2", f"rm -f {LOCK}")


# Input and policy
# ----------------


def test_bad_input_exits_2_and_reaches_no_host(
    at_v2: sandbox.SandboxState, docker_client: Any
) -> None:
    state = at_v2
    bad_inventory = ROOT / "inventories" / f"{unique_name('it_badkey').replace('-', '_')}.py"
    bad_inventory.write_text(
        "from bgdeploy.sandbox import inventory_hosts\n"
        f"_groups = inventory_hosts({state.name!r})\n"
        "web = [(name, {**data, 'helth_deadline': 5}) for name, data in _groups['web']]\n"
        "db = _groups['db']\n"
    )
    before = logins(docker_client, state)
    try:
        cases = [
            (["deploy", "sandbox", "--ref", "main; rm -rf /"], "not allowed in a ref"),
            (["deploy", "sandbox", "--ref", "$(touch /tmp/pwned)"], "not allowed in a ref"),
            (["deploy", "sandbox", "--ref", "--upload-pack=touch /tmp/x"], "not allowed"),
            (["deploy", "sandbox", "--ref", "v2..v1"], "'..'"),
            (["deploy", "nowhere", "--ref", "v2"], "unknown environment"),
            (["deploy", "sandbox", "--ref", "v2", "--emergency"], "--emergency needs --reason"),
            (["deploy", bad_inventory.stem, "--ref", "v2"], "did you mean 'health_deadline'"),
        ]
        for args, says in cases:
            proc = run(["bgdeploy", *args], env=sandbox_run_env(state))
            assert proc.returncode == 2, (args, proc.stderr)
            assert says in proc.stderr, (args, proc.stderr)
            assert "Connecting" not in proc.stderr  # pyinfra never started
    finally:
        bad_inventory.unlink()
    assert logins(docker_client, state) == before  # no SSH session reached any host


def test_unknown_ref_exits_2_and_changes_nothing(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    count = {name: len(journal(state, name)) for name in WEB}
    proc, report = deploy(state, "--ref", "no-such-release")
    assert proc.returncode == 2
    assert "'no-such-release' is not a branch, tag or commit" in proc.stderr
    assert report["refusal"]["kind"] == "bad_ref"
    assert {name: len(journal(state, name)) for name in WEB} == count
    assert not any(lock_exists(state, name) for name in WEB)
    assert served(state) == {name: (200, state.releases["v2"]) for name in WEB}


def test_destructive_migration_needs_allow_destructive(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    tag, sha = commit(
        state,
        {"database/migrations/2025_09_01_000000_drop_legacy_visa_notes.php": DESTRUCTIVE_MIGRATION},
        "Drop a legacy table",
    )
    count = {name: len(journal(state, name)) for name in WEB}
    dumps = snapshots(state)
    proc, report = deploy(state, "--ref", tag)
    assert proc.returncode == 3, proc.stderr[-4000:]
    assert "dropIfExists" in proc.stderr and "--allow-destructive" in proc.stderr
    assert report["refusal"]["kind"] == "destructive"
    assert {name: len(journal(state, name)) for name in WEB} == count
    assert snapshots(state) == dumps
    assert served(state) == {name: (200, state.releases["v2"]) for name in WEB}

    proc, report = deploy(state, "--ref", tag, "--allow-destructive", "--reason", "table unused")
    try:
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert report["snapshot"]["name"].endswith(sha[:12])
        override = [e for e in journal(state, "web1")[count["web1"] :] if "override" in e["event"]]
        assert override[0]["event"] == "destructive_override"
        assert override[0]["reason"] == "table unused"
    finally:
        proc, _ = deploy(state, "--ref", "v2")
        assert proc.returncode == 0, proc.stderr[-4000:]


def test_plain_pyinfra_run_refused_in_a_blackout(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    count = {name: len(journal(state, name)) for name in WEB}
    blackout = '[{"name": "release freeze", "start": "2000-01-01", "end": "2099-12-31"}]'
    proc = run(
        ["pyinfra", "-y", "inventories/sandbox.py", "deploys/release.py", "--data", "ref=v2",
         "--data", "force=true", "--data", f"blackouts={blackout}"],
        env=sandbox_run_env(state),
    )  # fmt: skip
    assert proc.returncode != 0
    assert "deploy refused at" in proc.stderr and "blackout: release freeze" in proc.stderr
    assert "Starting operation" not in proc.stderr
    assert {name: len(journal(state, name)) for name in WEB} == count
    assert not any(lock_exists(state, name) for name in WEB)


def test_rolling_batches_stop_at_the_first_unhealthy_batch(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    tag, _ = commit(
        state, {"app/Http/Controllers/HealthController.php": BROKEN_HEALTH}, "Health check broken"
    )
    count = len(journal(state, "web2"))
    proc = run(
        ["pyinfra", "-y", "inventories/sandbox.py", "deploys/release.py", "--data", f"ref={tag}",
         "--data", "rolling_batch=1", "--data", "health_deadline=5"],
        env=sandbox_run_env(state),
    )  # fmt: skip
    assert proc.returncode == 1
    assert served(state) == {name: (200, state.releases["v2"]) for name in WEB}
    web1 = journal(state, "web1")[-1]
    assert web1["event"] == "deploy_fail" and web1["result"] == "rolled_back"
    web2 = journal(state, "web2")[count:]
    assert [line["event"] for line in web2] == ["deploy_start", "deploy_fail"]
    assert web2[-1]["result"] == "skipped" and "earlier batch" in web2[-1]["message"]
    assert [s["name"] for s in web2[-1]["steps"]] == ["take the deploy lock", "preflight"]
