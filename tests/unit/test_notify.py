"""Slack and PagerDuty notifications, received by a real local HTTP server.

Slack and PagerDuty themselves are not reachable from tests: a receiver on 127.0.0.1 stands in
for both, records every request, and answers as they document (Slack: 200 ``ok`` or a
plain-text error code; PagerDuty: 202 with a JSON status). Payloads are checked against the
documented formats.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bgdeploy.oncall import delivery
from bgdeploy.oncall.notify import (
    MAX_SUMMARY,
    DeployEvent,
    NotifyResult,
    dedup_key,
    notify,
    pagerduty_change,
    pagerduty_resolve,
    pagerduty_trigger,
    retry_after,
    send_pagerduty,
    send_slack,
    slack_message,
)

ROUTING_KEY = "e93facc04764012d7bfb002500d5d1a6"  # 32 characters, not a ruleset key (R...)
DEPLOY_HOOK_PATH = "/services/T0DEPLOY/B0DEPLOY/deploySecretToken123"
INCIDENT_HOOK_PATH = "/services/T0INCID/B0INCID/incidentSecretToken456"
AT = datetime(2026, 12, 3, 4, 12, 9, tzinfo=UTC)

Answer = tuple[int, dict[str, str], bytes]
SLACK_OK: Answer = (200, {"Content-Type": "text/plain"}, b"ok")


def pd_ok(key: str = "bgdeploy-prod-bideshgomon-deploy") -> Answer:
    body = {"status": "success", "message": "Event processed", "dedup_key": key}
    return 202, {"Content-Type": "application/json"}, json.dumps(body).encode()


class Receiver:
    """Records every POST; answers from ``answers[path]`` (a list: one answer per request, the
    last one repeated), else Slack's ``ok`` for /services/..., PagerDuty's 202 otherwise."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.answers: dict[str, list[Answer]] = {}
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "json": json.loads(raw),
                        "at": time.monotonic(),
                    }
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                queue = receiver.answers.get(self.path)
                if queue:
                    status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
                elif self.path.startswith("/services/"):
                    status, headers, body = SLACK_OK
                else:
                    status, headers, body = pd_ok()
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def paths(self) -> list[str]:
        return [request["path"] for request in self.requests]

    def environ(self, **extra: str) -> dict[str, str]:
        env = {
            "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK": self.url + DEPLOY_HOOK_PATH,
            "BGDEPLOY_SLACK_INCIDENTS_WEBHOOK": self.url + INCIDENT_HOOK_PATH,
            "BGDEPLOY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "BGDEPLOY_PAGERDUTY_URL": self.url,
        }
        env.update(extra)
        return env


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def event(kind: str = "promoted", **values) -> DeployEvent:
    base = {
        "env": "prod",
        "app": "bideshgomon",
        "ref": "v2.4.0",
        "sha": "4f1c2e9a0b7d3c5e1f2a4b6c8d0e2f4a6b8c0d1e",
        "colour": "green",
        "who": "rahim@ops-laptop",
        "hosts": ("web1", "web2"),
        "canary": 5,
        "at": AT,
    }
    base.update(values)
    return DeployEvent(kind, **base)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


SECRETS = (ROUTING_KEY, "deploySecretToken123", "incidentSecretToken456", "T0DEPLOY", "B0INCID")


def assert_no_secrets(results: list[NotifyResult]) -> None:
    for result in results:
        shown = repr(result) + result.line() + json.dumps(result.to_dict())
        for secret in SECRETS:
            assert secret not in shown, (secret, shown)


# Documented formats


def check_slack_payload(payload: dict) -> None:
    """Slack incoming webhook with blocks: a fallback text and valid section/context blocks."""
    assert isinstance(payload["text"], str) and payload["text"].strip()
    blocks = payload["blocks"]
    assert isinstance(blocks, list) and 1 <= len(blocks) <= 50
    for block in blocks:
        assert block["type"] in {"section", "context"}
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert block["text"]["type"] == "mrkdwn"
                assert 1 <= len(block["text"]["text"]) <= 3000
            if "fields" in block:
                assert 1 <= len(block["fields"]) <= 10
                for field in block["fields"]:
                    assert field["type"] == "mrkdwn" and 1 <= len(field["text"]) <= 2000
        else:
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert element["type"] == "mrkdwn" and element["text"]


def check_iso8601(text: str) -> None:
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None


def check_pd_event(body: dict) -> None:
    """Events API v2 (``/v2/enqueue``)."""
    assert isinstance(body["routing_key"], str) and body["routing_key"]
    assert body["event_action"] in {"trigger", "acknowledge", "resolve"}
    assert isinstance(body["dedup_key"], str) and 0 < len(body["dedup_key"]) <= 255
    if body["event_action"] != "trigger":
        assert "payload" not in body
        return
    payload = body["payload"]
    assert isinstance(payload["summary"], str) and 0 < len(payload["summary"]) <= 1024
    assert isinstance(payload["source"], str) and payload["source"]
    assert payload["severity"] in {"critical", "error", "warning", "info"}
    check_iso8601(payload["timestamp"])
    for key in ("component", "group", "class"):
        assert isinstance(payload.get(key, ""), str)
    assert isinstance(payload.get("custom_details", {}), dict)
    assert len(json.dumps(body).encode()) < 512 * 1024


def check_pd_change(body: dict) -> None:
    """Change events (``/v2/change/enqueue``)."""
    assert isinstance(body["routing_key"], str) and body["routing_key"]
    assert "event_action" not in body and "dedup_key" not in body
    payload = body["payload"]
    assert isinstance(payload["summary"], str) and 0 < len(payload["summary"]) <= 1024
    check_iso8601(payload["timestamp"])
    assert isinstance(payload.get("source", ""), str)
    assert isinstance(payload.get("custom_details", {}), dict)


# What goes where


def test_started_goes_to_deployments_only(receiver):
    results = notify(event("started"), receiver.environ(), timeout=2)
    assert receiver.paths() == [DEPLOY_HOOK_PATH]
    assert [(r.target, r.ok, r.status) for r in results] == [("slack:deployments", True, 200)]
    assert results[0].message == "Slack (deployments): HTTP 200 ok"
    request = receiver.requests[0]
    assert request["content_type"] == "application/json"
    check_slack_payload(request["json"])
    assert "deploy started" in request["json"]["text"]
    assert_no_secrets(results)


def test_promoted_resolves_and_sends_a_change_event(receiver):
    results = notify(event("promoted"), receiver.environ(), timeout=2)
    assert receiver.paths() == [DEPLOY_HOOK_PATH, "/v2/enqueue", "/v2/change/enqueue"]
    assert [r.target for r in results] == [
        "slack:deployments",
        "pagerduty:resolve",
        "pagerduty:change",
    ]
    assert all(r.ok and not r.skipped for r in results)
    assert [r.status for r in results] == [200, 202, 202]
    resolve, change = receiver.requests[1]["json"], receiver.requests[2]["json"]
    check_pd_event(resolve)
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "bgdeploy-prod-bideshgomon-deploy",
    }
    check_pd_change(change)
    assert change["payload"]["summary"] == (
        "bideshgomon prod: canary promoted: v2.4.0 (4f1c2e9) on green (canary 5%)"
    )
    assert change["payload"]["timestamp"] == "2026-12-03T04:12:09Z"
    assert change["payload"]["custom_details"]["hosts"] == ["web1", "web2"]
    assert_no_secrets(results)


def test_automatic_rollback_pages_and_tells_both_channels(receiver):
    gate_lines = ["gate FAILED (prometheus): 1 of 3 checks failed", "  FAIL error rate: 10.00%"]
    rolled_back = event(
        "rolled_back", automatic=True, reason="canary failed the metric gate", details=gate_lines
    )
    results = notify(rolled_back, receiver.environ(), timeout=2)
    assert receiver.paths() == [INCIDENT_HOOK_PATH, DEPLOY_HOOK_PATH, "/v2/enqueue"]
    assert [r.target for r in results] == [
        "slack:incidents",
        "slack:deployments",
        "pagerduty:trigger",
    ]
    assert all(r.ok for r in results)
    for request in receiver.requests[:2]:
        check_slack_payload(request["json"])
        assert "10.00%" in json.dumps(request["json"]["blocks"])
    trigger = receiver.requests[2]["json"]
    check_pd_event(trigger)
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == dedup_key("prod", "bideshgomon")
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"] == (
        "bideshgomon prod: automatic rollback: v2.4.0 (4f1c2e9) on green (canary 5%): "
        "canary failed the metric gate"
    )
    assert trigger["payload"]["custom_details"]["gate"] == gate_lines
    assert (
        trigger["payload"]["group"] == "prod" and trigger["payload"]["component"] == "bideshgomon"
    )
    assert_no_secrets(results)


def test_the_dedup_key_is_stable_so_success_resolves_the_rollback_alert(receiver):
    env = receiver.environ()
    notify(event("rolled_back", automatic=True, ref="v2.4.0"), env, timeout=2)
    notify(event("rolled_back", automatic=True, ref="v2.4.1"), env, timeout=2)
    notify(event("succeeded", ref="v2.4.2", canary=None), env, timeout=2)
    alerts = [r["json"] for r in receiver.requests if r["path"] == "/v2/enqueue"]
    assert [a["event_action"] for a in alerts] == ["trigger", "trigger", "resolve"]
    assert {a["dedup_key"] for a in alerts} == {"bgdeploy-prod-bideshgomon-deploy"}
    assert dedup_key("staging", "bideshgomon") == "bgdeploy-staging-bideshgomon-deploy"


def test_manual_rollback_and_failure_do_not_page(receiver):
    notify(event("rolled_back", automatic=False), receiver.environ(), timeout=2)
    notify(event("failed", reason="composer install failed on web2"), receiver.environ(), timeout=2)
    assert receiver.paths() == [INCIDENT_HOOK_PATH, DEPLOY_HOOK_PATH] * 2
    assert "Deploy failed" in receiver.requests[2]["json"]["blocks"][0]["text"]["text"]


def test_nothing_configured_is_skipped_not_failed(receiver):
    results = notify(event("promoted"), {}, timeout=2)
    assert receiver.requests == []
    assert [(r.target, r.ok, r.skipped) for r in results] == [
        ("slack:deployments", True, True),
        ("pagerduty:resolve", True, True),
        ("pagerduty:change", True, True),
    ]
    assert results[0].message == "not configured (BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK unset)"
    assert results[0].line().startswith("notify slack:deployments: skipped: ")


def test_ruleset_keys_get_no_change_event(receiver):
    results = notify(
        event("promoted"),
        receiver.environ(BGDEPLOY_PAGERDUTY_ROUTING_KEY="R" + "x" * 31),
        timeout=2,
    )
    assert receiver.paths() == [DEPLOY_HOOK_PATH, "/v2/enqueue"]
    assert results[-1].skipped and "ruleset" in results[-1].message


def test_reads_os_environ_by_default(receiver, monkeypatch):
    for name, value in receiver.environ().items():
        monkeypatch.setenv(name, value)
    results = notify(event("started"))
    assert results[0].ok and receiver.paths() == [DEPLOY_HOOK_PATH]


# Failures never raise, never show secrets


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
        (500, "rollup_error"),
    ],
)
def test_slack_errors_are_reported(receiver, status, code):
    receiver.answers[DEPLOY_HOOK_PATH] = [(status, {"Content-Type": "text/plain"}, code.encode())]
    results = notify(event("started"), receiver.environ(), timeout=2)
    assert len(results) == 1
    result = results[0]
    assert not result.ok and result.status == status and result.attempts == 1
    assert result.message == f"Slack (deployments) failed: HTTP {status} {code}"
    assert_no_secrets(results)


def test_a_failing_channel_does_not_stop_the_others(receiver):
    receiver.answers[INCIDENT_HOOK_PATH] = [(500, {}, b"rollup_error")]
    receiver.answers["/v2/enqueue"] = [(500, {}, b"")]
    results = notify(event("rolled_back", automatic=True), receiver.environ(), timeout=2)
    assert [r.ok for r in results] == [False, True, False]
    assert results[2].message == "PagerDuty failed: HTTP 500"


def test_pagerduty_400_shows_its_errors_without_the_key(receiver):
    body = {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": [f"'routing_key' {ROUTING_KEY} is not a valid integration key"],
    }
    receiver.answers["/v2/enqueue"] = [
        (400, {"Content-Type": "application/json"}, json.dumps(body).encode())
    ]
    results = notify(event("rolled_back", automatic=True), receiver.environ(), timeout=2)
    result = results[-1]
    assert not result.ok and result.status == 400 and result.attempts == 1
    assert result.message.startswith(
        "PagerDuty failed: HTTP 400 invalid event: Event object is invalid: "
    )
    assert "<redacted>" in result.message
    assert_no_secrets(results)


def test_pagerduty_200_is_not_202(receiver):
    receiver.answers["/v2/change/enqueue"] = [(200, {}, b"{}")]
    results = notify(event("promoted"), receiver.environ(), timeout=2)
    assert not results[-1].ok and results[-1].status == 200


def test_429_is_retried_once_after_retry_after(receiver):
    receiver.answers[DEPLOY_HOOK_PATH] = [
        (429, {"Retry-After": "0.2"}, b"rate_limited"),
        SLACK_OK,
    ]
    results = notify(event("started"), receiver.environ(), timeout=2)
    assert results[0].ok and results[0].attempts == 2
    first, second = receiver.requests
    assert second["at"] - first["at"] >= 0.19
    assert second["json"] == first["json"]


def test_429_twice_fails(receiver):
    receiver.answers["/v2/enqueue"] = [(429, {"Retry-After": "0"}, b"")]
    results = notify(event("rolled_back", automatic=True), receiver.environ(), timeout=2)
    assert not results[-1].ok and results[-1].attempts == 2 and results[-1].status == 429
    assert receiver.paths().count("/v2/enqueue") == 2


def test_retry_after_is_capped(receiver, monkeypatch):
    monkeypatch.setattr(delivery, "MAX_RETRY_AFTER", 0.2)
    receiver.answers[DEPLOY_HOOK_PATH] = [(429, {"Retry-After": "3600"}, b""), SLACK_OK]
    started = time.monotonic()
    results = notify(event("started"), receiver.environ(), timeout=2)
    assert results[0].ok and time.monotonic() - started < 1.5


def test_timeout_is_a_failure(receiver):
    receiver.delay = 1.0
    started = time.monotonic()
    results = notify(event("started"), receiver.environ(), timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert not results[0].ok and results[0].status is None
    assert results[0].message == "Slack (deployments) failed: no answer within 0.3s"


def test_connection_refused_is_a_failure():
    url = f"http://127.0.0.1:{closed_port()}"
    env = {
        "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK": url + DEPLOY_HOOK_PATH,
        "BGDEPLOY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "BGDEPLOY_PAGERDUTY_URL": url,
    }
    results = notify(event("promoted"), env, timeout=1)
    assert [r.ok for r in results] == [False, False, False]
    assert results[0].message.startswith("Slack (deployments) failed: ConnectError")
    assert_no_secrets(results)
    assert all(url not in r.message for r in results)


def test_bad_urls_never_raise():
    env = {
        "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK": "hooks.example/deploySecretToken123",
        "BGDEPLOY_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "BGDEPLOY_PAGERDUTY_URL": "not a url",
    }
    results = notify(event("promoted"), env, timeout=1)
    assert [r.ok for r in results] == [False, False, False]
    assert "BGDEPLOY_PAGERDUTY_URL is not an http(s) URL" in results[1].message
    assert_no_secrets(results)


def test_send_functions_directly(receiver):
    slack = send_slack(
        receiver.url + DEPLOY_HOOK_PATH, slack_message(event()), channel="deployments", timeout=2
    )
    pd = send_pagerduty(receiver.url, pagerduty_trigger(event(), ROUTING_KEY), timeout=2)
    change = send_pagerduty(
        receiver.url, pagerduty_change(event(), ROUTING_KEY), change=True, timeout=2
    )
    assert (slack.ok, pd.ok, change.ok) == (True, True, True)
    assert (pd.target, change.target) == ("pagerduty:trigger", "pagerduty:change")
    assert pd.message == "PagerDuty: HTTP 202 success: Event processed"


# Payload details


def test_summary_is_cut_to_1024_and_slack_sections_to_3000():
    long = event(
        "rolled_back",
        automatic=True,
        reason="x" * 5000,
        details=[f"line {i} " + "y" * 80 for i in range(200)],
        hosts=[f"web{i}" for i in range(500)],
    )
    trigger = pagerduty_trigger(long, ROUTING_KEY)
    check_pd_event(trigger)
    assert len(trigger["payload"]["summary"]) == MAX_SUMMARY
    check_pd_change(pagerduty_change(long, ROUTING_KEY))
    check_slack_payload(slack_message(long))


def test_severity_enum():
    for severity in ("critical", "error", "warning", "info"):
        check_pd_event(pagerduty_trigger(event(), ROUTING_KEY, severity=severity))
    with pytest.raises(ValueError, match="severity"):
        pagerduty_trigger(event(), ROUTING_KEY, severity="high")


def test_resolve_is_minimal():
    assert set(pagerduty_resolve(event(), ROUTING_KEY)) == {
        "routing_key",
        "event_action",
        "dedup_key",
    }


def test_slack_text_is_escaped():
    message = slack_message(event("failed", reason="<!channel> a & b <http://evil|click>"))
    blob = json.dumps(message["blocks"])
    assert "<!channel>" not in blob and "&lt;!channel&gt; a &amp; b" in blob
    assert "<http://evil" not in blob
    # The fallback text is plain.
    assert message["text"].endswith("<!channel> a & b <http://evil|click>")


def test_slack_message_shape():
    message = slack_message(event("promoted", details=["gate passed (probe): 3 checks passed"]))
    check_slack_payload(message)
    head = message["blocks"][0]["text"]["text"]
    assert head == ":white_check_mark: *Canary promoted*: `bideshgomon` *prod*"
    fields = [f["text"] for f in message["blocks"][1]["fields"]]
    assert fields[:2] == ["*Release*\n`v2.4.0 (4f1c2e9)`", "*Environment*\nprod"]
    assert "*Canary*\n5%" in fields and "*By*\nrahim@ops-laptop" in fields
    assert message["blocks"][2]["text"]["text"].startswith("```\ngate passed")
    assert message["blocks"][-1]["type"] == "context"


def test_timestamps_are_iso_8601_utc():
    dhaka = datetime(2026, 12, 3, 16, 12, 9, tzinfo=timezone(timedelta(hours=6)))
    assert event(at=dhaka).timestamp() == "2026-12-03T10:12:09Z"
    now = DeployEvent("started", env="prod", app="bideshgomon")
    check_iso8601(now.timestamp())
    assert now.release == "unknown release"


def test_event_validation():
    with pytest.raises(ValueError, match="unknown deploy event"):
        DeployEvent("exploded", env="prod", app="a")
    with pytest.raises(ValueError, match="env and app"):
        DeployEvent("started", env="", app="a")
    with pytest.raises(ValueError, match="timezone-aware"):
        DeployEvent("started", env="prod", app="a", at=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, 1.0),
        ("", 1.0),
        ("2", 2.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("120", 5.0),
        ("soon", 1.0),
        ("nan", 1.0),
    ],
)
def test_retry_after_values(value, seconds):
    assert retry_after(value, cap=5.0) == seconds


def test_retry_after_http_date():
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    assert 1.0 <= retry_after(later, cap=5.0) <= 3.0
    past = format_datetime(datetime.now(UTC) - timedelta(seconds=30), usegmt=True)
    assert retry_after(past, cap=5.0) == 0.0
