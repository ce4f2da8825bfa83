"""An emergency deploy outside the deploy window is journaled and notified: the Slack webhooks
(#incidents and #deployments) get the override, received here by a real HTTP server on
127.0.0.1 standing in for Slack."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from conftest import WebhookReceiver

from bgdeploy.core.release_report import ReleaseReport
from bgdeploy.oncall import notify
from bgdeploy.strategies import deploying

THURSDAY_NOON = datetime.fromisoformat("2026-12-03T12:00+06:00")
THURSDAY_EVENING = datetime.fromisoformat("2026-12-03T16:00+06:00")
SHA = "4f1c2e9a" + "0" * 32


@pytest.fixture
def slack(webhooks: WebhookReceiver) -> WebhookReceiver:
    """Slack's incoming webhooks (:class:`WebhookReceiver`)."""
    return webhooks


def hooks(receiver: WebhookReceiver) -> dict[str, str]:
    return {
        notify.SLACK_DEPLOYMENTS_ENV: f"{receiver.url}/services/T0/B0/deployments",
        notify.SLACK_INCIDENTS_ENV: f"{receiver.url}/services/T0/B1/incidents",
    }


def report() -> ReleaseReport:
    done = ReleaseReport(env="prod", ref="v2.4.1", run="r1", sha=SHA, who="rahim@ops-laptop")
    for host in ("web1", "web2"):
        done.host(host, ["web"]).result = "ok"
    return done


def payments_down() -> deploying.DeployRequest:
    """A P0 emergency deploy on Thursday evening, outside the window."""
    return deploying.check_request(
        "prod", "v2.4.1", emergency=True, severity="P0", reason="payments down",
        now=THURSDAY_EVENING,
    )  # fmt: skip


def test_emergency_override_notifies_incidents_and_deployments(slack: WebhookReceiver) -> None:
    request = payments_down()
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


def test_regular_deploy_sends_nothing(slack: WebhookReceiver) -> None:
    request = deploying.check_request("prod", "v2.4.1", now=THURSDAY_NOON)
    assert deploying.announce_override(request, report(), hooks(slack)) == []
    # An emergency inside the window is a regular deploy: nothing was overridden.
    request = deploying.check_request(
        "prod", "v2.4.1", emergency=True, severity="P0", reason="hotfix", now=THURSDAY_NOON
    )
    assert deploying.announce_override(request, report(), hooks(slack)) == []
    assert slack.received == []


def test_unconfigured_webhooks_are_skipped() -> None:
    request = payments_down()
    results = deploying.announce_override(request, report(), {})
    assert all(r.skipped and r.ok for r in results) and len(results) == 2
