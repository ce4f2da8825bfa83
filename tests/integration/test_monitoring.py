"""Monitoring on a sandbox of its own: `sandbox up --monitoring`, /metrics, Prometheus, alerts.

The fleet (2 web hosts, a db host, Prometheus) is provisioned and given v1 in place. Then:
promtool accepts the rendered rules, the configuration and the app's real /metrics; Prometheus
scrapes both web hosts; the live colour's request counter grows with the requests sent;
driving 5xx through GET /api/boom makes HighErrorRate fire (the sandbox's rules use seconds);
every query of the Grafana dashboard answers; `sandbox status` shows Prometheus; `down`
removes its container.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox
from bgdeploy.checks import metrics
from bgdeploy.core.settings import ROOT
from bgdeploy.sandbox import monitoring

from .conftest import DEPLOY_V1, PROVISION, own_sandbox, run, sandbox_run_env

DEADLINE = 90.0
DASHBOARD = ROOT / "templates" / "grafana" / "bideshgomon.json"


@pytest.fixture(scope="module")
def monitored(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("mon", docker_client, PROVISION, DEPLOY_V1, monitoring=True) as state:
        yield state


def prometheus(state: sandbox.SandboxState, docker_client: Any) -> Any:
    return docker_client.containers.get(state.monitoring["container"])


def promtool(state: sandbox.SandboxState, docker_client: Any, *args: str) -> tuple[int, str]:
    code, output = prometheus(state, docker_client).exec_run(["promtool", *args])
    return code, output.decode(errors="replace")


def promtool_stdin(
    state: sandbox.SandboxState, docker_client: Any, path: str, *args: str
) -> tuple[int, str]:
    """promtool with a file of the container on its standard input."""
    command = " ".join(["promtool", *args]) + f" < {path}"
    code, output = prometheus(state, docker_client).exec_run(["sh", "-c", command])
    return code, output.decode(errors="replace")


def query(state: sandbox.SandboxState, promql: str) -> list[metrics.Sample]:
    assert state.prometheus_url
    return metrics.instant_query(state.prometheus_url, promql, timeout=10)


def wait_for(what: str, check: Callable[[], Any], tick: Callable[[], None] | None = None) -> Any:
    """Call ``check`` (after ``tick``, when given) until it returns something true."""
    deadline = time.monotonic() + DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        if tick:
            tick()
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"{what}: not within {DEADLINE:.0f} s (last: {last!r})")


def web_urls(state: sandbox.SandboxState) -> list[str]:
    return [f"http://127.0.0.1:{web.ports['http']}" for web in state.group("web")]


def live_colour(state: sandbox.SandboxState) -> str:
    colours = {httpx.get(url + "/", timeout=15).headers["X-Colour"] for url in web_urls(state)}
    assert len(colours) == 1, colours
    return colours.pop()


def test_rendered_rules_and_config_pass_promtool(
    monitored: sandbox.SandboxState, docker_client: Any
) -> None:
    rules = f"{monitoring.CONFIG_DIR}/{monitoring.RULES_FILE}"
    code, output = promtool(monitored, docker_client, "check", "rules", rules)
    assert code == 0, output
    assert f"SUCCESS: {len(monitoring.ALERTS)} rules found" in output
    config = f"{monitoring.CONFIG_DIR}/{monitoring.CONFIG_FILE}"
    code, output = promtool(monitored, docker_client, "check", "config", config)
    assert code == 0, output
    loaded = httpx.get(f"{monitored.prometheus_url}/api/v1/rules", timeout=10).json()
    names = [rule["name"] for group in loaded["data"]["groups"] for rule in group["rules"]]
    assert names == list(monitoring.ALERTS)


def test_app_metrics_pass_promtool(monitored: sandbox.SandboxState, docker_client: Any) -> None:
    for web, url in zip(monitored.group("web"), web_urls(monitored), strict=True):
        response = httpx.get(url + "/metrics", timeout=15)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = monitoring.parse_exposition(response.text)
        for name in ("http_requests_total", "http_request_duration_seconds", "queue_jobs_pending"):
            assert name in families, (web.name, sorted(families))
        # Read from the real PostgreSQL: this request's own session is one of them.
        [(_, _, connections)] = families["database_connections"].samples
        assert connections >= 1
        assert families["queue_jobs_failed_total"].samples == [("queue_jobs_failed_total", {}, 0.0)]
        # promtool reads stdin: the file goes through the mounted configuration directory.
        sample = f"{web.name}.metrics.txt"
        path = Path(monitored.monitoring["config_dir"]) / sample
        path.write_text(response.text)
        path.chmod(0o644)
        code, output = promtool_stdin(
            monitored, docker_client, f"{monitoring.CONFIG_DIR}/{sample}", "check", "metrics"
        )
        assert code == 0, f"{web.name}: {output}"


def test_prometheus_scrapes_both_web_hosts(monitored: sandbox.SandboxState) -> None:
    url = monitored.prometheus_url
    assert url
    both_up = {"web1": "up", "web2": "up"}
    wait_for("both web hosts up", lambda: monitoring.targets_health(url) == both_up)
    up = query(monitored, 'up{job="bideshgomon"}')
    assert sorted((s.labels["host"], s.value) for s in up) == [("web1", 1.0), ("web2", 1.0)]


def test_live_colour_request_counter_grows(monitored: sandbox.SandboxState) -> None:
    colour = live_colour(monitored)
    promql = f'sum(http_requests_total{{colour="{colour}",status="200"}})'

    def counted() -> float:
        samples = query(monitored, promql)
        return samples[0].value if samples else 0.0

    before = wait_for("the live colour's counter", lambda: query(monitored, promql))[0].value
    for url in web_urls(monitored):
        for _ in range(15):
            assert httpx.get(url + "/api/features", timeout=15).status_code == 200
    wait_for("30 more requests counted", lambda: counted() >= before + 30)


def test_5xx_through_boom_fire_high_error_rate(monitored: sandbox.SandboxState) -> None:
    colour = live_colour(monitored)
    urls = web_urls(monitored)

    def errors() -> None:
        for url in urls:
            response = httpx.get(url + "/api/boom", timeout=15)
            assert response.status_code == 500
            assert response.headers["X-Colour"] == colour

    def firing() -> set[str]:
        body = httpx.get(f"{monitored.prometheus_url}/api/v1/alerts", timeout=10).json()
        names = {a["labels"]["alertname"] for a in body["data"]["alerts"] if a["state"] == "firing"}
        return names if "HighErrorRate" in names else set()

    names = wait_for("HighErrorRate firing", firing, tick=errors)
    assert "CanaryDeploymentFailing" in names  # 100 % of the colour's recent answers are 5xx
    # The gate's own query sees the same errors for the live colour.
    rate = query(monitored, metrics.error_rate_query(colour, monitoring.SANDBOX.rate_window))
    assert rate and rate[0].value > monitoring.SANDBOX.error_rate


def test_every_grafana_panel_query_returns_data(monitored: sandbox.SandboxState) -> None:
    """Each target of the dashboard, Grafana's $__rate_interval as 1m, after 200s, 404s, 500s."""
    urls = web_urls(monitored)
    queries = {
        f"{panel['title']} {target['refId']}": target["expr"].replace("$__rate_interval", "1m")
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    }

    def traffic() -> None:
        for url in urls:
            for path, status in (("/api/features", 200), ("/api/boom", 500), ("/nowhere", 404)):
                assert httpx.get(url + path, timeout=15).status_code == status, path

    deadline = time.monotonic() + DEADLINE
    while True:
        traffic()
        empty = [name for name, promql in queries.items() if not query(monitored, promql)]
        if not empty:
            break
        assert time.monotonic() < deadline, f"no data within {DEADLINE:.0f} s: {empty}"
        time.sleep(1)


def test_status_shows_prometheus(monitored: sandbox.SandboxState) -> None:
    env = sandbox_run_env(monitored)
    proc = run(["bgdeploy", "sandbox", "status", "--name", monitored.name, "--json"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)["monitoring"]
    assert report["ready"] is True
    assert report["url"] == monitored.prometheus_url
    assert report["targets"] == {"web1": "up", "web2": "up"}
    proc = run(["bgdeploy", "sandbox", "status", "--name", monitored.name], env=env)
    assert f"prometheus: {monitored.prometheus_url}  ready" in proc.stdout


def test_down_removes_prometheus(monitored: sandbox.SandboxState, docker_client: Any) -> None:
    """Last: it takes the module's sandbox down (the fixture's own down then finds nothing)."""
    container = monitored.monitoring["container"]
    assert prometheus(monitored, docker_client).status == "running"
    removed = sandbox.down(monitored.name, client=docker_client)
    assert f"container {container}" in removed
    assert not docker_client.containers.list(all=True, filters={"name": container})
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{monitored.prometheus_url}/-/ready", timeout=3)
