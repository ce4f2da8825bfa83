"""The blue-green deploy and the colour switch, on a sandbox of their own.

The fleet (2 web hosts, a db host) is provisioned and given v1 in place (blue live). Then:
a blue-green deploy of v2 builds green, smoke-tests it and switches every host; explicit
switches go back and forth; a load test through 10 switches drops no request; a colour that
fails its smoke tests is never switched to; a release that fails health only once it is live
is switched back automatically; hosts that disagree, and destructive migrations, are refused
before anything changes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bgdeploy import sampleapp, sandbox

from .conftest import run, sandbox_run_env, sh, unique_name

WEB = ("web1", "web2")
LIVE_CONF = "/etc/nginx/bideshgomon/live.conf"


@pytest.fixture(scope="module")
def bg(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    name = unique_name("bg")
    state = sandbox.up(name, web=2, client=docker_client)
    try:
        env = sandbox_run_env(state)
        proc = run(["bgdeploy", "provision", "sandbox"], env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v1"], env=env)
        assert proc.returncode == 0, proc.stderr[-4000:]
        yield state
    finally:
        sandbox.down(name, client=docker_client)


def served_by(state: sandbox.SandboxState, path: str = "/") -> dict[str, tuple[int, str, str]]:
    """Each web host through its public port: (status, X-Colour, X-Release)."""
    found = {}
    for web in state.group("web"):
        response = httpx.get(f"http://127.0.0.1:{web.ports['http']}{path}", timeout=15)
        found[web.name] = (
            response.status_code,
            response.headers.get("X-Colour", ""),
            response.headers.get("X-Release", ""),
        )
    return found


def blue_green(state: sandbox.SandboxState, ref: str, *extra: str) -> Any:
    return run(
        [
            "pyinfra",
            "-y",
            "inventories/sandbox.py",
            "deploys/blue_green.py",
            "--data",
            f"ref={ref}",
            *extra,
        ],
        env=sandbox_run_env(state),
    )


def switch(state: sandbox.SandboxState, colour: str, *extra: str) -> Any:
    return run(["bgdeploy", "switch", "sandbox", colour, *extra], env=sandbox_run_env(state))


def live_colour(state: sandbox.SandboxState) -> set[str]:
    return {colour for _, colour, _ in served_by(state).values()}


def test_blue_green_deploy_switches_every_host(bg: sandbox.SandboxState) -> None:
    assert live_colour(bg) == {"blue"}
    proc = blue_green(bg, "v2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for status, colour, release in served_by(bg).values():
        assert (status, colour, release) == (200, "green", bg.releases["v2"])
    # The old colour stays as it was, warm: v1 in blue, through the preview listener.
    for web in bg.group("web"):
        response = httpx.get(f"http://127.0.0.1:{web.ports['preview']}/", timeout=15)
        assert response.headers["X-Colour"] == "blue"
        assert response.headers["X-Release"] == bg.releases["v1"]
    _, out = sh(bg, "web1", "readlink /var/www/bideshgomon/current")
    assert out.strip() == "green"
    history = run(["bgdeploy", "history", "sandbox", "--json"], env=sandbox_run_env(bg))
    switches = [e for e in json.loads(history.stdout) if e["event"] == "switch"]
    assert {e["host"] for e in switches} == set(WEB) and all(
        e["colour"] == "green" for e in switches
    )
    again = blue_green(bg, "v2")
    assert again.returncode == 0 and "already live" in again.stderr + again.stdout


def test_explicit_switch_back_and_forth(bg: sandbox.SandboxState) -> None:
    proc = switch(bg, "blue", "--reason", "back to v1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {v[1:] for v in served_by(bg).values()} == {("blue", bg.releases["v1"])}
    proc = switch(bg, "green")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {v[1:] for v in served_by(bg).values()} == {("green", bg.releases["v2"])}
    assert "nothing to do" in switch(bg, "green").stdout


def test_zero_dropped_requests_through_ten_switches(bg: sandbox.SandboxState) -> None:
    """A bounded load test: threads, a fresh connection per request, 127.0.0.1 only."""
    urls = [f"http://127.0.0.1:{w.ports['http']}/" for w in bg.group("web")]
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "bad": 0, "errors": 0}
    seen: dict[str, list[str]] = {url: [] for url in urls}

    def load(url: str) -> None:
        deadline = time.monotonic() + 300
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.get(url, headers={"Connection": "close"})
                except httpx.HTTPError:
                    with lock:
                        counts["errors"] += 1
                    continue
                with lock:
                    counts["ok" if response.status_code == 200 else "bad"] += 1
                    colour = response.headers.get("X-Colour", "")
                    if not seen[url] or seen[url][-1] != colour:
                        seen[url].append(colour)

    threads = [threading.Thread(target=load, args=(url,)) for url in urls for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for number in range(10):
            colour = "blue" if number % 2 == 0 else "green"
            proc = switch(bg, colour, "--no-smoke")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            # Once the switch returns, every host serves the new colour to new requests.
            assert {answer[1] for answer in served_by(bg).values()} == {colour}
        while counts["ok"] + counts["bad"] + counts["errors"] < 5000:
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert counts["bad"] == 0 and counts["errors"] == 0, counts
    assert counts["ok"] >= 5000, counts
    for url, colours in seen.items():
        # Requests in flight finish on the colour they started on, so the load threads may
        # see the colours interleave around a switch; both colours, many times, never a third.
        assert set(colours) == {"blue", "green"} and len(colours) >= 11, (url, colours)


def test_colour_failing_smoke_tests_is_never_switched_to(bg: sandbox.SandboxState) -> None:
    before = served_by(bg)
    broken = sampleapp.add_commit(
        bg.app_repository,
        {"app/Http/Controllers/MeController.php": ME_CONTROLLER_500},
        "Break the authenticated API",
        parent="v2",
        branch="bg-smoke",
    )
    proc = blue_green(bg, broken)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "smoke tests failed" in text and "api authentication" in text, text[-3000:]
    assert "Switch colours" in text and "switching back" not in text
    assert served_by(bg) == before


def test_failed_health_once_live_switches_back(bg: sandbox.SandboxState) -> None:
    before = served_by(bg)
    broken = sampleapp.add_commit(
        bg.app_repository,
        {"app/Http/Controllers/HealthController.php": HEALTH_FAILS_ON_PUBLIC_PORT},
        "Health fails on the public listener only",
        parent="v2",
        branch="bg-health",
    )
    proc = blue_green(bg, broken)
    assert proc.returncode != 0
    assert "switching back" in proc.stderr + proc.stdout, (proc.stderr + proc.stdout)[-3000:]
    assert served_by(bg) == before


def test_hosts_that_disagree_are_refused_before_anything_changes(bg: sandbox.SandboxState) -> None:
    before = served_by(bg)
    (live,) = {colour for _, colour, _ in before.values()}
    other = "blue" if live == "green" else "green"
    current = "/var/www/bideshgomon/current"
    code, out = sh(
        bg, "web2", f"sudo ln -sfn {other} {current}.x && sudo mv -T {current}.x {current}"
    )
    assert code == 0, out
    try:
        proc = blue_green(bg, "v1")
        assert proc.returncode != 0
        text = proc.stdout + proc.stderr
        assert "disagree" in text and f"web1 {live}" in text and f"current -> {other}" in text
        _, after = sh(bg, "web2", f"readlink {current}")
        assert after.strip() == other, "nothing may change on a host"
        assert served_by(bg) == before
    finally:
        assert switch(bg, live, "--no-smoke").returncode == 0
    assert served_by(bg) == before


def test_destructive_migration_is_refused_for_blue_green(bg: sandbox.SandboxState) -> None:
    before = served_by(bg)
    destructive = sampleapp.add_commit(
        bg.app_repository,
        {"database/migrations/2026_01_01_000000_drop_passport_country.php": DROP_COLUMN},
        "Drop a column",
        parent="v2",
        branch="bg-destructive",
    )
    _, journal_before = sh(bg, "web1", "wc -l < /var/www/bideshgomon/.bgdeploy/journal.jsonl")
    proc = blue_green(bg, destructive)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "dropColumn" in text and "blue-green refuses" in text
    _, journal_after = sh(bg, "web1", "wc -l < /var/www/bideshgomon/.bgdeploy/journal.jsonl")
    assert journal_before == journal_after, "nothing may change on a host"
    assert served_by(bg) == before


ME_CONTROLLER_500 = """<?php

namespace App\\Http\\Controllers;

use Illuminate\\Http\\JsonResponse;

class MeController extends Controller
{
    public function __invoke(): JsonResponse
    {
        return new JsonResponse(['message' => 'broken'], 500);
    }
}
"""

HEALTH_FAILS_ON_PUBLIC_PORT = """<?php

namespace App\\Http\\Controllers;

use App\\Services\\HealthCheck;
use Illuminate\\Http\\JsonResponse;
use Illuminate\\Http\\Request;

class HealthController extends Controller
{
    public function __invoke(Request $request, HealthCheck $health): JsonResponse
    {
        if ((string) $request->server('SERVER_PORT') === '80') {
            return new JsonResponse(['status' => 'unhealthy', 'checks' => []], 503);
        }
        $result = $health->run(defined('LARAVEL_START') ? LARAVEL_START : null);

        return new JsonResponse($result, $result['status'] === HealthCheck::HEALTHY ? 200 : 503);
    }
}
"""

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


def test_cli_strategy_script_and_rollback(bg: sandbox.SandboxState) -> None:
    before = served_by(bg)
    (live,) = {colour for _, colour, _ in before.values()}
    other = "blue" if live == "green" else "green"
    (release,) = {sha for _, _, sha in before.values()}
    ref = "v2" if release == bg.releases["v1"] else "v1"
    env = sandbox_run_env(bg)
    deploy = ["bgdeploy", "deploy", "sandbox", "--strategy", "blue-green", "--ref", ref]
    proc = run(deploy, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {v[1:] for v in served_by(bg).values()} == {(other, bg.releases[ref])}
    # The runbook's own interface: --rollback switches back to the colour left, in seconds.
    proc = run(["scripts/deploy-blue-green.sh", "--rollback", "--env", "sandbox"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert served_by(bg) == before
    history = json.loads(run(["bgdeploy", "history", "sandbox", "--json"], env=env).stdout)
    rollbacks = [e for e in history if e["event"] == "rollback"]
    assert {e["details"]["bad_release"] for e in rollbacks[-2:]} == {bg.releases[ref]}
    # The release left is never a rollback target again.
    again = run(["bgdeploy", "rollback", "sandbox"], env=env)
    assert again.returncode == 1 and "nothing to switch back to" in again.stderr
    assert served_by(bg) == before
