"""An emergency deploy outside the deploy window is journaled and notified: the Slack webhooks
(#incidents and #deployments) get the override, received here by a real HTTP server on
127.0.0.1 standing in for Slack."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bgdeploy.core.release_report import ReleaseReport
from bgdeploy.oncall import notify
from bgdeploy.strategies import deploying

THURSDAY_NOON = datetime.fromisoformat("2026-12-03T12:00+06:00")
THURSDAY_EVENING = datetime.fromisoformat("2026-12-03T16:00+06:00")
SHA = "4f1c2e9a" + "0" * 32


class Receiver:
    """Slack's incoming webhooks, on 127.0.0.1: records each POST, answers 200 ``ok``."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, Any]]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack() -> Iterator[Receiver]:
    receiver = Receiver()
    try:
        yield receiver
    finally:
        receiver.close()


def hooks(receiver: Receiver) -> dict[str, str]:
    return {
        notify.SLACK_DEPLOYMENTS_ENV: f"{receiver.url}/services/T0/B0/deployments",
        notify.SLACK_INCIDENTS_ENV: f"{receiver.url}/services/T0/B1/incidents",
    }


def report() -> ReleaseReport:
    done = ReleaseReport(env="prod", ref="v2.4.1", run="r1", sha=SHA, who="rahim@ops-laptop")
    for host in ("web1", "web2"):
        done.host(host, ["web"]).result = "ok"
    return done


def test_emergency_override_notifies_incidents_and_deployments(slack: Receiver) -> None:
    request = deploying.check_request(
        "prod", "v2.4.1", emergency=True, reason="payments down", now=THURSDAY_EVENING
    )
    results = deploying.announce_override(request, report(), hooks(slack))
    assert [(r.target, r.ok, r.status) for r in results] == [
        ("slack:incidents", True, 200),
        ("slack:deployments", True, 200),
    ]
    assert [path.rsplit("/", 1)[-1] for path, _ in slack.received] == [
        "incidents",
        "deployments",
    ]
    _, body = slack.received[0]
    assert body["text"] == (
        "bideshgomon prod: deploy window overridden: v2.4.1 (4f1c2e9): payments down"
    )
    text = json.dumps(body["blocks"])
    assert "Deploy window overridden" in text and "rahim@ops-laptop" in text
    assert "web1, web2" in text
    assert "overriding: outside the deploy window" in text


def test_regular_deploy_sends_nothing(slack: Receiver) -> None:
    request = deploying.check_request("prod", "v2.4.1", now=THURSDAY_NOON)
    assert deploying.announce_override(request, report(), hooks(slack)) == []
    # An emergency inside the window is a regular deploy: nothing was overridden.
    request = deploying.check_request(
        "prod", "v2.4.1", emergency=True, reason="hotfix", now=THURSDAY_NOON
    )
    assert deploying.announce_override(request, report(), hooks(slack)) == []
    assert slack.received == []


def test_unconfigured_webhooks_are_skipped() -> None:
    request = deploying.check_request(
        "prod", "v2.4.1", emergency=True, reason="payments down", now=THURSDAY_EVENING
    )
    results = deploying.announce_override(request, report(), {})
    assert all(r.skipped and r.ok for r in results) and len(results) == 2
