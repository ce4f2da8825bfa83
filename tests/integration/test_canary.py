"""Canary deploys, the metric gate and the deploy notifications, on a sandbox of their own.

The fleet (2 web hosts, a db host, Prometheus) is provisioned and given v1 in place (blue
live). The sandbox's canary window is 20 s (group_data/sandbox.py). Each test starts from the
state it needs (:func:`settle`), whatever the one before it left: no test depends on another's
outcome.

- a healthy canary (probe gate) is promoted: every request on the new colour at the end;
- the split: 5 % of 2,000 first visits on the canary colour (within 2 points), and one client
  (its cookie) keeps its colour over many requests; sent back, everyone on the live colour;
- a release whose every 10th request answers 500 is sent back by the probe gate, and again
  by the Prometheus gate, the values shown; the Prometheus case also notifies a local
  receiver (PagerDuty trigger; a Slack receiver answering 500 does not fail anything);
- a healthy canary judged by Prometheus is promoted, and notified (Slack, PagerDuty resolve
  and change event);
- Prometheus stopped during the window: the gate fails safe, everyone on the old colour.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox
from bgdeploy.fleet import remote, runner
from bgdeploy.sandbox import sampleapp
from bgdeploy.strategies import canary, switch

from .conftest import (
    BIN,
    DEPLOY_V1,
    PROVISION,
    ROOT,
    other_release,
    own_sandbox,
    public_urls,
    run,
    sandbox_run_env,
    settle,
    sh,
)

JOURNAL = "/var/www/bideshgomon/.bgdeploy/journal.jsonl"
CANARY_CONF = "/etc/nginx/bideshgomon/canary.conf"

FAIL_EVERY_TENTH = """<?php

namespace App\\Http\\Middleware;

use Closure;
use Illuminate\\Http\\Request;

/**
 * Every 10th request to this host (counted in Redis) answers 500: a release that is broken
 * for 10 % of its requests, yet passes the five smoke tests.
 */
class FailEveryTenth
{
    public function handle(Request $request, Closure $next)
    {
        if ($request->path() !== 'metrics') {
            $n = app('redis')->connection()->incr('KEY:'.gethostname());
            if ($n % 10 === 0) {
                return response('every tenth request fails', 500);
            }
        }

        return $next($request);
    }
}
"""


@pytest.fixture(scope="module")
def cn(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("cn", docker_client, PROVISION, DEPLOY_V1, monitoring=True) as state:
        yield state


def colours_served(state: sandbox.SandboxState, requests: int = 10) -> Counter[str]:
    """X-Colour of ``requests`` first visits to each web host (no cookie)."""
    found: Counter[str] = Counter()
    for url in public_urls(state):
        for _ in range(requests):
            found[httpx.get(url, timeout=15).headers.get("X-Colour", "")] += 1
    return found


def canary_pyinfra(state: sandbox.SandboxState, ref: str, percent: float) -> Any:
    """The canary deploy through pyinfra, judged by its own probes (no Prometheus)."""
    return run(
        [
            "pyinfra", "-y", "inventories/sandbox.py", "deploys/blue_green.py",
            "--data", f"ref={ref}", "--data", f"canary={percent}", "--data", 'prometheus_url=""',
        ],
        env=sandbox_run_env(state),
    )  # fmt: skip


def canary_journal(state: sandbox.SandboxState, host: str = "web1") -> list[dict[str, Any]]:
    _, out = sh(state, host, f"cat {JOURNAL}")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [entry for entry in entries if entry["event"] == "canary"]


def failing_ref(state: sandbox.SandboxState, branch: str) -> str:
    """A commit on v2 whose every 10th request per host answers 500 (a counter of its own)."""
    kernel = subprocess.run(
        ["git", "-C", state.app_repository, "show", "v2:app/Http/Kernel.php"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    first = "\\App\\Http\\Middleware\\RecordRequestMetrics::class,\n"
    assert first in kernel
    kernel = kernel.replace(
        first, first + "        \\App\\Http\\Middleware\\FailEveryTenth::class,\n", 1
    )
    middleware = FAIL_EVERY_TENTH.replace("KEY", f"fail-every-tenth-{uuid.uuid4().hex[:8]}")
    return sampleapp.add_commit(
        state.app_repository,
        {"app/Http/Kernel.php": kernel, "app/Http/Middleware/FailEveryTenth.php": middleware},
        "Every 10th request answers 500",
        parent="v2",
        branch=branch,
    )


@contextlib.contextmanager
def load(state: sandbox.SandboxState, rate: float = 10.0) -> Iterator[Counter[str]]:
    """First visits (no cookie) to the web hosts' public ports, ``rate`` per second in all,
    while the block runs: traffic for Prometheus to judge. Yields X-Colour counts."""
    seen: Counter[str] = Counter()
    stop = threading.Event()
    urls = public_urls(state)

    def loop(index: int) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    answer = client.get(urls[index % len(urls)], headers={"Connection": "close"})
                    seen[f"{answer.headers.get('X-Colour', '')} {answer.status_code}"] += 1
                client.cookies.clear()  # every request a first visit: split afresh
                index += 1
                stop.wait(2.0 / rate)

    workers = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(2)]
    for worker in workers:
        worker.start()
    try:
        yield seen
    finally:
        stop.set()
        for worker in workers:
            worker.join(15)


class Receiver:
    """Local webhooks on 127.0.0.1: each POST recorded (path, JSON body); paths starting with
    ``/broken`` answer 500, PagerDuty paths 202, the rest 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append((self.path, json.loads(body or b"null")))
                status = 500 if self.path.startswith("/broken") else 200
                if self.path.startswith("/v2/"):
                    status = 202
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self, prefix: str) -> list[Any]:
        return [body for path, body in self.posts if path.startswith(prefix)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.close()


def notify_env(receiver: Receiver, deployments: str = "/slack/deployments") -> dict[str, str]:
    return {
        "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK": receiver.url + deployments,
        "BGDEPLOY_SLACK_INCIDENTS_WEBHOOK": receiver.url + "/slack/incidents",
        "BGDEPLOY_PAGERDUTY_ROUTING_KEY": "test-routing-key-0123456789",
        "BGDEPLOY_PAGERDUTY_URL": receiver.url,
    }


def test_healthy_canary_is_promoted(cn: sandbox.SandboxState) -> None:
    old, release, new = settle(cn)
    assert set(colours_served(cn, 3)) == {old}
    proc = canary_pyinfra(cn, other_release(cn, release), 50)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "gate passed (probe)" in text, text[-4000:]
    # All traffic on the new colour, and no split left in nginx.
    assert colours_served(cn, 10) == Counter({new: 20})
    for web in ("web1", "web2"):
        _, conf = sh(cn, web, f"cat {CANARY_CONF}")
        assert "# bgdeploy canary: none" in conf
        entry = canary_journal(cn, web)[-1]
        assert (entry["colour"], entry["result"]) == (new, "ok")
        assert entry["details"]["percent"] == 50
        assert entry["details"]["verdict"] == "promoted"
        assert entry["details"]["gate"]["passed"] is True


def fabric_fleet(state: sandbox.SandboxState) -> tuple[switch.FabricFleet, Any]:
    """The web hosts over Fabric, and their settings, as the library's callers get them."""
    saved = dict(os.environ)
    os.environ.update(sandbox_run_env(state))
    try:
        environment = runner.check_environment("sandbox")
        settings = environment.settings["web1"]
        fleet = switch.FabricFleet(remote.targets("sandbox", ("web",), environment.inventory))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return fleet, settings


def test_split_is_five_percent_and_sticky(cn: sandbox.SandboxState) -> None:
    """One colour live, the other built: 5 % of the clients on the other, sticky by cookie."""
    old, _, new = settle(cn, both_colours=True)
    fleet, settings = fabric_fleet(cn)
    os.environ.update(sandbox_run_env(cn))
    try:
        started = canary.start(fleet, settings, old, new, 5)
        assert all(r.ok for r in started), started
        urls = public_urls(cn, "/api/canary-split-check")

        def first_visit(index: int) -> tuple[str, str]:
            answer = httpx.get(urls[index % 2], timeout=30)
            return answer.headers.get("X-Colour", ""), answer.cookies.get(canary.CLIENT_COOKIE, "")

        with ThreadPoolExecutor(max_workers=8) as pool:
            visits = list(pool.map(first_visit, range(2000)))
        colours = Counter(colour for colour, _ in visits)
        assert set(colours) == {"blue", "green"}, colours
        share = 100 * colours[new] / 2000
        assert abs(share - 5) <= 2, f"{share:.2f}% on the canary colour: {colours}"
        cookies = {colour: cookie for colour, cookie in visits if cookie}
        assert len({cookie for _, cookie in visits}) == 2000, "every first visit gets its own id"
        for colour, cookie in cookies.items():
            for index in range(40):
                answer = httpx.get(
                    urls[index % 2], cookies={canary.CLIENT_COOKIE: cookie}, timeout=30
                )
                assert answer.headers.get("X-Colour") == colour
                assert canary.CLIENT_COOKIE not in answer.cookies, "the cookie is set once"
    finally:
        back = canary.send_back(fleet, settings, old)
        fleet.close()
    assert all(r.ok for r in back), back
    assert colours_served(cn, 20) == Counter({old: 40})


def test_switch_ends_a_canary_left_behind(cn: sandbox.SandboxState) -> None:
    """A canary left splitting (its deploy killed): `bgdeploy switch ENV LIVE` is the repair,
    not "already serves LIVE: nothing to do"."""
    old, _, new = settle(cn, both_colours=True)
    fleet, settings = fabric_fleet(cn)
    try:
        assert all(r.ok for r in canary.start(fleet, settings, old, new, 50))
    finally:
        fleet.close()
    assert set(colours_served(cn, 10)) == {old, new}
    args = ["bgdeploy", "switch", "sandbox", old, "--no-smoke", "--reason", "stuck canary"]
    proc = run(args, env=sandbox_run_env(cn))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing to do" not in proc.stdout
    assert colours_served(cn, 10) == Counter({old: 20})
    for web in ("web1", "web2"):
        _, conf = sh(cn, web, "cat /etc/nginx/bideshgomon/live.conf")
        assert "# bgdeploy canary:" not in conf and f"# bgdeploy colour: {old}" in conf


def test_failing_canary_is_sent_back_by_the_probe_gate(cn: sandbox.SandboxState) -> None:
    old, _, new = settle(cn)
    ref = failing_ref(cn, "cn-probe")
    proc = canary_pyinfra(cn, ref, 50)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-4000:]
    assert "gate FAILED (probe)" in text, text[-4000:]
    assert "FAIL 5xx responses" in text and "FAIL error rate: " in text, text[-4000:]
    assert f"every client back on {old}" in text
    assert colours_served(cn, 10) == Counter({old: 20})
    entry = canary_journal(cn)[-1]
    assert (entry["colour"], entry["result"]) == (new, "rolled_back")
    assert entry["details"]["verdict"] == "rolled back"
    checks = {c["name"]: c for c in entry["details"]["gate"]["checks"]}
    assert checks["5xx responses"]["verdict"] == "fail" and checks["5xx responses"]["value"] > 0


def test_failing_canary_is_sent_back_by_prometheus_and_pages(
    cn: sandbox.SandboxState, receiver: Receiver
) -> None:
    old, _, new = settle(cn)
    ref = failing_ref(cn, "cn-prometheus")
    env = {**sandbox_run_env(cn), **notify_env(receiver, deployments="/broken/deployments")}
    with load(cn, rate=10) as seen:
        proc = run(["bgdeploy", "deploy", "sandbox", "--ref", ref, "--canary", "50"], env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-4000:]
    assert "gate FAILED (prometheus)" in text, text[-4000:]
    assert f'http_requests_total{{colour="{new}",status=~"5.."}}' in text
    assert "FAIL 5xx responses" in text, text[-4000:]
    assert seen[" 500"] > 0 and seen[f"{new} 200"] > 0, seen  # the 500s skip the headers
    assert colours_served(cn, 10) == Counter({old: 20})
    # A receiver answering 500 is a line in the output, not a failed deploy (exit 1 above is
    # the rollback's: the table says rolled back).
    assert "notify slack:deployments: FAILED" in text
    assert "rolled_back" in text or "rolled back" in text
    (trigger,) = receiver.paths("/v2/enqueue")
    assert trigger["event_action"] == "trigger"
    assert trigger["routing_key"] == "test-routing-key-0123456789"
    assert trigger["dedup_key"] == "bgdeploy-sandbox-bideshgomon-deploy"
    assert trigger["payload"]["severity"] == "critical"
    (incident,) = receiver.paths("/slack/incidents")
    assert "blocks" in incident and "text" in incident
    assert "canary" in json.dumps(incident)


def test_healthy_canary_judged_by_prometheus_is_promoted_and_notified(
    cn: sandbox.SandboxState, receiver: Receiver
) -> None:
    _, release, new = settle(cn)
    ref = other_release(cn, release)
    env = {**sandbox_run_env(cn), **notify_env(receiver)}
    with load(cn, rate=10) as seen:
        proc = run(["bgdeploy", "deploy", "sandbox", "--ref", ref, "--canary", "50"], env=env)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-4000:]
    assert "gate passed (prometheus)" in text, text[-4000:]
    assert seen[f"{new} 200"] > 0, seen
    assert colours_served(cn, 10) == Counter({new: 20})
    slack = receiver.paths("/slack/deployments")
    assert len(slack) == 2, slack
    assert "started" in slack[0]["text"].lower() and "promoted" in slack[1]["text"].lower()
    (resolve,) = [p for p in receiver.paths("/v2/enqueue") if p["event_action"] == "resolve"]
    assert resolve["dedup_key"] == "bgdeploy-sandbox-bideshgomon-deploy"
    (change,) = receiver.paths("/v2/change/enqueue")
    assert change["routing_key"] == "test-routing-key-0123456789"
    assert not receiver.paths("/slack/incidents")


def test_ctrl_c_during_the_canary_sends_every_client_back(cn: sandbox.SandboxState) -> None:
    old, release, _ = settle(cn)
    ref = other_release(cn, release)
    env = {**os.environ, "PYINFRA_PROGRESS": "off", **sandbox_run_env(cn)}
    args = [str(BIN / "bgdeploy"), "deploy", "sandbox", "--ref", ref, "--canary", "50"]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if "the gate watches" in line:
            proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    text = "".join(lines)
    assert proc.returncode == 130, text[-4000:]
    assert colours_served(cn, 10) == Counter({old: 20})
    for web in ("web1", "web2"):
        _, conf = sh(cn, web, "cat /etc/nginx/bideshgomon/live.conf")
        assert "# bgdeploy canary:" not in conf and f"# bgdeploy colour: {old}" in conf


def test_prometheus_unreachable_fails_safe(cn: sandbox.SandboxState, docker_client: Any) -> None:
    """Prometheus stopped during the window: no promotion, everyone back on the old colour."""
    old, release, _ = settle(cn)
    ref = other_release(cn, release)
    env = {**os.environ, "PYINFRA_PROGRESS": "off", **sandbox_run_env(cn)}
    args = [str(BIN / "bgdeploy"), "deploy", "sandbox", "--ref", ref, "--canary", "50"]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    prometheus = docker_client.containers.get(cn.monitoring["container"])
    with load(cn, rate=5):
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "the gate watches" in line:
                prometheus.stop(timeout=2)
        out = proc.stdout.read() if proc.stdout else ""
        proc.wait(timeout=60)
    text = out + "".join(lines)
    assert proc.returncode == 1, text[-4000:]
    assert "gate FAILED (prometheus)" in text, text[-4000:]
    assert f"every client back on {old}" in text
    assert "Prometheus" in text and ("unreachable" in text or "not asked" in text), text[-3000:]
    assert colours_served(cn, 10) == Counter({old: 20})


def test_health_per_host_and_check(cn: sandbox.SandboxState) -> None:
    env = sandbox_run_env(cn)
    proc = run(["bgdeploy", "health", "sandbox"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for web in ("web1", "web2"):
        for check in ("database", "cache", "queue", "storage"):
            assert re.search(rf"^{web}\s+ok\s+{check}\s", proc.stdout, re.M), proc.stdout
    # The database down: every host answers 503; the body is parsed, the failing check shown.
    code, out = sh(cn, "db", "sudo service postgresql stop")
    assert code == 0, out
    try:
        proc = run(["bgdeploy", "health", "sandbox", "--json"], env=env)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        reports = json.loads(proc.stdout)
        for report in reports:
            assert report["http_status"] == 503 and report["status"] == "unhealthy"
            assert report["checks"]["database"]["status"] == "unhealthy"
            assert report["checks"]["storage"]["status"] == "healthy"
        proc = run(["bgdeploy", "health", "sandbox"], env=env)
        assert proc.returncode == 1
        assert re.search(r"^web1\s+FAILED\s+database\s", proc.stdout, re.M), proc.stdout
    finally:
        sh(cn, "db", "sudo service postgresql start")
