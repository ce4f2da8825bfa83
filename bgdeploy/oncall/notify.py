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

.. code:: python

    event = DeployEvent("rolled_back", env="prod", app="bideshgomon", ref="v2.4.0",
                        colour="green", automatic=True,
                        reason="canary failed the metric gate", details=result.explain())
    for outcome in notify(event):
        print(outcome.line())
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from bgdeploy.checks.metrics import ssl_context

SLACK_DEPLOYMENTS_ENV = "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK"
SLACK_INCIDENTS_ENV = "BGDEPLOY_SLACK_INCIDENTS_WEBHOOK"
PAGERDUTY_KEY_ENV = "BGDEPLOY_PAGERDUTY_ROUTING_KEY"
PAGERDUTY_URL_ENV = "BGDEPLOY_PAGERDUTY_URL"
PAGERDUTY_DEFAULT_URL = "https://events.pagerduty.com"

KINDS = ("started", "succeeded", "promoted", "rolled_back", "failed", "window_override")
"""The deploy events that notify."""

SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")

MAX_SUMMARY = 1024
"""PagerDuty's limit on ``payload.summary``."""

MAX_RETRY_AFTER = 5.0
"""The longest a 429's ``Retry-After`` is waited for (once)."""

SLACK_SECTION_MAX = 3000
"""Slack's limit on a section block's text."""

_TITLES = {
    "started": ("Deploy started", ":rocket:"),
    "succeeded": ("Deploy succeeded", ":white_check_mark:"),
    "promoted": ("Canary promoted", ":white_check_mark:"),
    "rolled_back": ("Deploy rolled back", ":rotating_light:"),
    "failed": ("Deploy failed", ":x:"),
    "window_override": ("Deploy window overridden", ":warning:"),
}


@dataclass(frozen=True)
class DeployEvent:
    """Something that happened to a deploy, to tell people about.

    + kind: one of :data:`KINDS`
    + env, app: the environment (``prod``) and application name (``bideshgomon``)
    + ref, sha: the release asked for and its commit
    + colour: the colour deployed (or rolled back from)
    + who: the operator (``user@machine``)
    + reason: why (``--reason``; for a rollback or failure, what went wrong)
    + details: lines to show as they are (the gate's
    :meth:`~bgdeploy.checks.gate.GateResult.explain`)
    + hosts: the web hosts involved
    + canary: the canary percentage, if any
    + automatic: a rollback done by bgdeploy itself (pages on-call), not by an operator
    + source: PagerDuty's ``source`` (default ``<app>-<env>``)
    + at: when (default now, UTC)
    """

    kind: str
    env: str
    app: str
    ref: str = ""
    sha: str = ""
    colour: str = ""
    who: str = ""
    reason: str = ""
    details: Sequence[str] = ()
    hosts: Sequence[str] = ()
    canary: float | None = None
    automatic: bool = False
    source: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown deploy event {self.kind!r} (expected one of {KINDS})")
        if not self.env or not self.app:
            raise ValueError("a deploy event needs env and app")
        if self.at.utcoffset() is None:
            raise ValueError("a deploy event's time must be timezone-aware")
        object.__setattr__(self, "details", tuple(str(line) for line in self.details))
        object.__setattr__(self, "hosts", tuple(str(host) for host in self.hosts))

    @property
    def release(self) -> str:
        """``ref (sha7)``, or whichever of the two is known."""
        short = self.sha[:7]
        if self.ref and short and not self.ref.startswith(short):
            return f"{self.ref} ({short})"
        return self.ref or short or "unknown release"

    @property
    def summary(self) -> str:
        """One line: ``bideshgomon prod: deploy rolled back: v2.4.0 (4f1c2e9) on green: why``."""
        title = _TITLES[self.kind][0].lower()
        if self.automatic and self.kind == "rolled_back":
            title = "automatic rollback"
        text = f"{self.app} {self.env}: {title}: {self.release}"
        if self.colour:
            text += f" on {self.colour}"
        if self.canary is not None:
            text += f" (canary {self.canary:g}%)"
        if self.reason:
            text += f": {self.reason}"
        return " ".join(text.split())

    def timestamp(self) -> str:
        """``at`` in ISO 8601, UTC: ``2026-12-03T04:12:09Z``."""
        return self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class NotifyResult:
    """What became of one notification.

    + target: ``"slack:deployments"``, ``"slack:incidents"``, ``"pagerduty:trigger"``,
      ``"pagerduty:resolve"``, ``"pagerduty:change"``
    + ok: delivered (or skipped)
    + message: what happened, safe to print (no URL, no key)
    + status: the HTTP status of the last answer, or None
    + attempts: requests sent (2 after a 429 retried)
    + skipped: not configured, so not sent
    """

    target: str
    ok: bool
    message: str
    status: int | None = None
    attempts: int = 0
    skipped: bool = False

    def line(self) -> str:
        """One line for the operator."""
        mark = "skipped" if self.skipped else ("ok" if self.ok else "FAILED")
        return f"notify {self.target}: {mark}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``--json`` and the journal."""
        return {
            "target": self.target,
            "ok": self.ok,
            "skipped": self.skipped,
            "status": self.status,
            "attempts": self.attempts,
            "message": self.message,
        }


def dedup_key(env: str, app: str) -> str:
    """The stable PagerDuty ``dedup_key`` of deploy trouble: ``bgdeploy-<env>-<app>-deploy``."""
    return f"bgdeploy-{env}-{app}-deploy"


# Slack


def slack_channels(kind: str) -> tuple[str, ...]:
    """The Slack channels (``"deployments"``, ``"incidents"``) an event kind goes to."""
    if kind not in KINDS:
        raise ValueError(f"unknown deploy event {kind!r}")
    if kind in ("rolled_back", "failed", "window_override"):
        return ("incidents", "deployments")
    return ("deployments",)


def slack_message(event: DeployEvent) -> dict[str, Any]:
    """The incoming-webhook body: ``{"text": fallback, "blocks": [...]}``.

    ``text`` is the plain one-line summary (notifications and clients without blocks show it);
    the blocks show the title, the release, environment, colour and operator, the reason and
    the details (in a code block, cut to Slack's 3,000 characters per section). Text from the
    event is escaped for Slack (``&``, ``<``, ``>``), so it cannot ping or link.
    """
    title, emoji = _TITLES[event.kind]
    if event.automatic and event.kind == "rolled_back":
        title = "Automatic rollback"
    headline = f"{emoji} *{title}*: `{_esc(event.app)}` *{_esc(event.env)}*"
    fields = [
        ("Release", f"`{_esc(event.release)}`"),
        ("Environment", _esc(event.env)),
    ]
    if event.colour:
        fields.append(("Colour", _esc(event.colour)))
    if event.canary is not None:
        fields.append(("Canary", f"{event.canary:g}%"))
    if event.who:
        fields.append(("By", _esc(event.who)))
    if event.hosts:
        fields.append(("Hosts", _cut(_esc(", ".join(event.hosts)), 1900)))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(headline, SLACK_SECTION_MAX)}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields],
        },
    ]
    if event.reason:
        text = f"*Why*: {_esc(event.reason)}"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, SLACK_SECTION_MAX)}}
        )
    if event.details:
        body = _cut(_esc("\n".join(event.details)).replace("```", "'''"), SLACK_SECTION_MAX - 8)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```\n{body}\n```"}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"bgdeploy · {event.timestamp()}"}],
        }
    )
    return {"text": _cut(event.summary, SLACK_SECTION_MAX), "blocks": blocks}


def send_slack(
    webhook_url: str, payload: Mapping[str, Any], *, channel: str, timeout: float = 5.0
) -> NotifyResult:
    """POST ``payload`` to a Slack incoming webhook; ok only on HTTP 200.

    Slack's failures are plain-text codes (``invalid_payload``, ``channel_not_found``,
    ``channel_is_archived``, ...), shown in the message. Never raises.
    """
    target = f"slack:{channel}"
    label = f"Slack ({channel})"
    return _post(target, label, webhook_url, payload, 200, timeout, secrets=(webhook_url,))


# PagerDuty


def pagerduty_trigger(
    event: DeployEvent, routing_key: str, severity: str = "critical"
) -> dict[str, Any]:
    """An Events API v2 ``trigger`` with the deploy's stable :func:`dedup_key`.

    ``payload.summary`` is cut to 1,024 characters; ``custom_details`` carries the release,
    colour, operator, hosts, reason and the gate's lines.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {severity!r}")
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(event.env, event.app),
        "client": "bgdeploy",
        "payload": {
            "summary": _cut(event.summary, MAX_SUMMARY),
            "source": _source(event),
            "severity": severity,
            "timestamp": event.timestamp(),
            "component": event.app,
            "group": event.env,
            "class": "deploy",
            "custom_details": _custom_details(event),
        },
    }


def pagerduty_resolve(event: DeployEvent, routing_key: str) -> dict[str, Any]:
    """An Events API v2 ``resolve`` of the deploy alert (harmless when none is open)."""
    return {
        "routing_key": routing_key,
        "event_action": "resolve",
        "dedup_key": dedup_key(event.env, event.app),
    }


def pagerduty_change(event: DeployEvent, routing_key: str) -> dict[str, Any]:
    """A change event (``/v2/change/enqueue``): "deployed X", shown beside incidents."""
    return {
        "routing_key": routing_key,
        "payload": {
            "summary": _cut(event.summary, MAX_SUMMARY),
            "timestamp": event.timestamp(),
            "source": _source(event),
            "custom_details": _custom_details(event),
        },
    }


def send_pagerduty(
    base_url: str,
    payload: Mapping[str, Any],
    *,
    change: bool = False,
    timeout: float = 5.0,
) -> NotifyResult:
    """POST an alert event to ``{base_url}/v2/enqueue`` (or a change event to
    ``/v2/change/enqueue``); ok only on HTTP 202. Never raises.
    """
    if change:
        target, path = "pagerduty:change", "/v2/change/enqueue"
    else:
        target, path = f"pagerduty:{payload.get('event_action', 'event')}", "/v2/enqueue"
    key = str(payload.get("routing_key", ""))
    url = base_url.rstrip("/") + path
    return _post(target, "PagerDuty", url, payload, 202, timeout, secrets=(key, base_url))


# Everything at once


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


# Sending


def _post(
    target: str,
    label: str,
    url: str,
    payload: Mapping[str, Any],
    expect: int,
    timeout: float,
    *,
    secrets: Sequence[str],
) -> NotifyResult:
    attempts = 0
    retried = False
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, verify=ssl_context()) as client:
            while True:
                attempts += 1
                try:
                    response = client.post(url, json=dict(payload))
                except httpx.TimeoutException:
                    return NotifyResult(
                        target,
                        False,
                        f"{label} failed: no answer within {timeout:g}s",
                        None,
                        attempts,
                    )
                except httpx.HTTPError as error:
                    detail = _redact(f"{type(error).__name__}: {error}", secrets, url)
                    return NotifyResult(target, False, f"{label} failed: {detail}", None, attempts)
                if response.status_code == 429 and not retried:
                    retried = True
                    time.sleep(retry_after(response.headers.get("retry-after"), MAX_RETRY_AFTER))
                    continue
                break
    except Exception as error:  # an invalid URL, a payload that is not JSON: still never raise
        detail = _redact(f"{type(error).__name__}: {error}", secrets, url)
        return NotifyResult(target, False, f"{label} failed: {detail}", None, attempts)
    text = _redact(_body_text(response), secrets, url)
    status = response.status_code
    if status == expect:
        return NotifyResult(
            target, True, f"{label}: HTTP {status}" + (f" {text}" if text else ""), status, attempts
        )
    return NotifyResult(
        target,
        False,
        f"{label} failed: HTTP {status}" + (f" {text}" if text else ""),
        status,
        attempts,
    )


def retry_after(value: str | None, cap: float = MAX_RETRY_AFTER) -> float:
    """Seconds to wait for a ``Retry-After`` header (seconds or an HTTP date), 0..``cap``.

    Missing or unreadable: 1 second.
    """
    if not value:
        return min(1.0, cap)
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return min(1.0, cap)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return min(1.0, cap)
    return max(0.0, min(seconds, cap))


def _body_text(response: httpx.Response, limit: int = 200) -> str:
    """A short description of an answer's body: Slack's code, PagerDuty's message and errors."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [str(data[key]) for key in ("status", "message") if data.get(key)]
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(str(item) for item in errors))
        text = ": ".join(parts)
    else:
        text = response.content.decode("utf-8", "replace")
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return _cut(text, limit)


def _redact(text: str, secrets: Sequence[str], url: str) -> str:
    """``text`` without the URL, the secrets, or any long token of the URL's path."""
    parts = urlsplit(url)
    tokens = [url, *secrets]
    tokens += [
        piece for piece in re.split(r"[/?&=]", parts.path + "?" + parts.query) if len(piece) >= 6
    ]
    for token in sorted({t for t in tokens if t}, key=len, reverse=True):
        text = text.replace(token, "<redacted>")
    return text


def _custom_details(event: DeployEvent) -> dict[str, Any]:
    details: dict[str, Any] = {"env": event.env, "app": event.app, "release": event.release}
    for name in ("ref", "sha", "colour", "who", "reason"):
        value = getattr(event, name)
        if value:
            details[name] = value
    if event.canary is not None:
        details["canary_percent"] = event.canary
    if event.hosts:
        details["hosts"] = list(event.hosts)
    if event.details:
        details["gate"] = list(event.details)
    details["automatic"] = event.automatic
    return details


def _source(event: DeployEvent) -> str:
    return event.source or f"{event.app}-{event.env}"


def _esc(text: str) -> str:
    """Escape the three characters Slack's mrkdwn gives a meaning to."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
