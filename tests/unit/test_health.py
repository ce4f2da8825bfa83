"""`bgdeploy health`: the app's health report read per host and per check (200 and 503)."""

from __future__ import annotations

import json

from bgdeploy.checks import health

HEALTHY = {
    "status": "healthy",
    "timestamp": "2026-11-28T07:00:00Z",
    "response_time_ms": 12,
    "checks": {
        name: {"status": "healthy", "message": f"{name} ok"}
        for name in ("database", "cache", "queue", "storage")
    },
}


def test_a_healthy_host() -> None:
    out = json.dumps(HEALTHY) + "\nbgdeploy-health 200 4f1c2e9abc green 0.012\n"
    report = health.parse("web1", out)
    assert report.ok and report.colour == "green" and report.release == "4f1c2e9abc"
    assert [c.name for c in report.checks] == ["database", "cache", "queue", "storage"]
    assert report.describe() == "healthy (200, green 4f1c2e9, 12 ms)"


def test_a_503_body_is_parsed_and_the_failing_check_shown() -> None:
    body = json.loads(json.dumps(HEALTHY))
    body["status"] = "unhealthy"
    body["checks"]["database"] = {"status": "unhealthy", "message": "connection refused"}
    report = health.parse("web2", json.dumps(body) + "\nbgdeploy-health 503 abc blue 0.2\n")
    assert not report.ok and report.http_status == 503
    failed = [c for c in report.checks if not c.ok]
    assert [(c.name, c.message) for c in failed] == [("database", "connection refused")]
    assert report.to_dict()["checks"]["database"]["status"] == "unhealthy"


def test_no_answer_and_no_json_are_unhealthy() -> None:
    silent = health.parse("web1", "\nbgdeploy-health 000   0.0001\n")
    assert not silent.ok and "did not answer" in silent.problem
    html = health.parse("web1", "<html>502 Bad Gateway</html>\nbgdeploy-health 502   0.01\n")
    assert not html.ok and "not the health JSON" in html.problem
    assert not health.parse("web1", "").ok


def test_a_report_without_every_check_is_unhealthy() -> None:
    body = {"status": "healthy", "checks": {"database": {"status": "healthy", "message": ""}}}
    report = health.parse("web1", json.dumps(body) + "\nbgdeploy-health 200 a blue 0.1\n")
    assert not report.ok and "cache, queue, storage" in report.problem
