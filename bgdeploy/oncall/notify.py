"""Notifications: Slack incoming webhooks and PagerDuty (Events API v2 and change events).

What goes where (runbook, "Automatic Deployment" step 5 and "Automatic Rollback"):

=====================  ======================  ==================================================
event                  Slack                   PagerDuty
=====================  ======================  ==================================================
``started``            deployments             --
``succeeded``          deployments             resolve the open alert, change event "deployed"
``promoted``           deployments             resolve the open alert, change event "deployed"
``rolled_back``        incidents, deployments  trigger (critical) when the rollback was automatic
``failed``             incidents, deployments  --
``window_override``    incidents, deployments  -- (an emergency deploy outside the deploy window)
=====================  ======================  ==================================================

The PagerDuty alert has a stable ``dedup_key`` per environment and application
(:func:`dedup_key`: ``bgdeploy-prod-bideshgomon-deploy``): every automatic rollback updates
the same open alert, and the next successful deploy resolves it.

Configuration comes from the environment only (secrets never sit in group_data):

=====================================  ==========================================================
``BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK``  incoming webhook URL of #deployments
``BGDEPLOY_SLACK_INCIDENTS_WEBHOOK``    incoming webhook URL of #incidents
``BGDEPLOY_PAGERDUTY_ROUTING_KEY``      Events API v2 integration key
``BGDEPLOY_PAGERDUTY_URL``              events API base URL (default
                                        ``https://events.pagerduty.com``; tests point it at a
                                        local receiver)
=====================================  ==========================================================

A channel that is not configured is skipped (``NotifyResult(skipped=True)``). A notification
that fails -- Slack answering anything but 200, PagerDuty anything but 202, a timeout, a
refused connection -- comes back as ``NotifyResult(ok=False)``: nothing here raises for a
failed notification, and a deploy never fails because of one. A 429 is retried once after its
``Retry-After`` (at most :data:`MAX_RETRY_AFTER` seconds). Webhook URLs and routing keys never
appear in a result, a message or an exception: ``"Slack (deployments) failed: HTTP 404
channel_not_found"``.

The messages are built in :mod:`bgdeploy.oncall.messages` (pure data) and sent by
:mod:`bgdeploy.oncall.delivery`; this module reads the configuration and sends what an event
calls for. Their public names are re-exported here.

.. code:: python

    event = DeployEvent("rolled_back", env="prod", app="bideshgomon", ref="v2.4.0",
                        colour="green", automatic=True,
                        reason="canary failed the metric gate", details=result.explain())
    for outcome in notify(event):
        print(outcome.line())
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from bgdeploy.oncall.delivery import (
    MAX_RETRY_AFTER,
    NotifyResult,
    retry_after,
    send_pagerduty,
    send_slack,
)
from bgdeploy.oncall.messages import (
    EVENT_ACTIONS,
    KINDS,
    MAX_SUMMARY,
    SEVERITIES,
    SLACK_SECTION_MAX,
    DeployEvent,
    dedup_key,
    pagerduty_change,
    pagerduty_resolve,
    pagerduty_trigger,
    slack_channels,
    slack_message,
)

__all__ = [
    "EVENT_ACTIONS",
    "KINDS",
    "MAX_RETRY_AFTER",
    "MAX_SUMMARY",
    "PAGERDUTY_DEFAULT_URL",
    "PAGERDUTY_KEY_ENV",
    "PAGERDUTY_URL_ENV",
    "SEVERITIES",
    "SLACK_DEPLOYMENTS_ENV",
    "SLACK_INCIDENTS_ENV",
    "SLACK_SECTION_MAX",
    "DeployEvent",
    "NotifyResult",
    "dedup_key",
    "notify",
    "pagerduty_change",
    "pagerduty_resolve",
    "pagerduty_trigger",
    "retry_after",
    "send_pagerduty",
    "send_slack",
    "slack_channels",
    "slack_message",
]

SLACK_DEPLOYMENTS_ENV = "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK"
SLACK_INCIDENTS_ENV = "BGDEPLOY_SLACK_INCIDENTS_WEBHOOK"
PAGERDUTY_KEY_ENV = "BGDEPLOY_PAGERDUTY_ROUTING_KEY"
PAGERDUTY_URL_ENV = "BGDEPLOY_PAGERDUTY_URL"
PAGERDUTY_DEFAULT_URL = "https://events.pagerduty.com"


def notify(
    event: DeployEvent, environ: Mapping[str, str] | None = None, *, timeout: float = 5.0
) -> list[NotifyResult]:
    """Send every notification ``event`` calls for (see the table above); never raises.

    Channels come from ``environ`` (default ``os.environ``); unconfigured ones are skipped.
    """
    env = os.environ if environ is None else environ
    results: list[NotifyResult] = []
    for channel in slack_channels(event.kind):
        name = SLACK_DEPLOYMENTS_ENV if channel == "deployments" else SLACK_INCIDENTS_ENV
        webhook = env.get(name, "").strip()
        if not webhook:
            results.append(
                NotifyResult(
                    f"slack:{channel}", True, f"not configured ({name} unset)", skipped=True
                )
            )
            continue
        results.append(send_slack(webhook, slack_message(event), channel=channel, timeout=timeout))
    results.extend(_pagerduty(event, env, timeout))
    return results


def _pagerduty(event: DeployEvent, env: Mapping[str, str], timeout: float) -> list[NotifyResult]:
    if event.kind == "rolled_back" and event.automatic:
        actions = ["trigger"]
    elif event.kind in ("succeeded", "promoted"):
        actions = ["resolve", "change"]
    else:
        return []
    key = env.get(PAGERDUTY_KEY_ENV, "").strip()
    if not key:
        return [
            NotifyResult(
                f"pagerduty:{action}",
                True,
                f"not configured ({PAGERDUTY_KEY_ENV} unset)",
                skipped=True,
            )
            for action in actions
        ]
    base = env.get(PAGERDUTY_URL_ENV, "").strip() or PAGERDUTY_DEFAULT_URL
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).hostname:
        return [
            NotifyResult(f"pagerduty:{action}", False, f"{PAGERDUTY_URL_ENV} is not an http(s) URL")
            for action in actions
        ]
    results = []
    for action in actions:
        if action == "trigger":
            results.append(send_pagerduty(base, pagerduty_trigger(event, key), timeout=timeout))
        elif action == "resolve":
            results.append(send_pagerduty(base, pagerduty_resolve(event, key), timeout=timeout))
        elif key.startswith("R"):
            results.append(
                NotifyResult(
                    "pagerduty:change",
                    True,
                    "not sent: change events cannot go to a ruleset routing key",
                    skipped=True,
                )
            )
        else:
            results.append(
                send_pagerduty(base, pagerduty_change(event, key), change=True, timeout=timeout)
            )
    return results
