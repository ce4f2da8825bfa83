"""Notification messages: a deploy event, and the Slack and PagerDuty bodies that tell of it.

Pure data, no network: :class:`DeployEvent` is what happened; :func:`slack_message` is the
incoming-webhook body (text from the event escaped so it cannot ping or link);
:func:`pagerduty_trigger`, :func:`pagerduty_resolve` and :func:`pagerduty_change` are Events API
v2 bodies with the deploy's stable :func:`dedup_key`. :mod:`bgdeploy.oncall.delivery` sends them;
:mod:`bgdeploy.oncall.notify` decides which go where.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KINDS = ("started", "succeeded", "promoted", "rolled_back", "failed", "window_override")
"""The deploy events that notify."""

SEVERITIES = ("critical", "error", "warning", "info")
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")

MAX_SUMMARY = 1024
"""PagerDuty's limit on ``payload.summary``."""
SLACK_SECTION_MAX = 3000
"""Slack's limit on a section block's text."""

TITLES = {
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
    + approval: the kind of deploy and who approved it
      (:func:`bgdeploy.core.approvals.summary`: ``"hotfix, approved by Karim; ..."``)
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
    approval: str = ""
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
        title = TITLES[self.kind][0].lower()
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


def dedup_key(env: str, app: str) -> str:
    """The stable PagerDuty ``dedup_key`` of deploy trouble: ``bgdeploy-<env>-<app>-deploy``."""
    return f"bgdeploy-{env}-{app}-deploy"


# Slack
# -----


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
    title, emoji = TITLES[event.kind]
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
        fields.append(("Hosts", cut(_esc(", ".join(event.hosts)), 1900)))
    if event.approval:
        fields.append(("Approval", cut(_esc(event.approval), 1900)))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": cut(headline, SLACK_SECTION_MAX)}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in fields],
        },
    ]
    if event.reason:
        text = f"*Why*: {_esc(event.reason)}"
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SLACK_SECTION_MAX)}}
        )
    if event.details:
        body = cut(_esc("\n".join(event.details)).replace("```", "'''"), SLACK_SECTION_MAX - 8)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```\n{body}\n```"}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"bgdeploy · {event.timestamp()}"}],
        }
    )
    return {"text": cut(event.summary, SLACK_SECTION_MAX), "blocks": blocks}


# PagerDuty
# ---------


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
            "summary": cut(event.summary, MAX_SUMMARY),
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
            "summary": cut(event.summary, MAX_SUMMARY),
            "timestamp": event.timestamp(),
            "source": _source(event),
            "custom_details": _custom_details(event),
        },
    }


def _custom_details(event: DeployEvent) -> dict[str, Any]:
    details: dict[str, Any] = {"env": event.env, "app": event.app, "release": event.release}
    for name in ("ref", "sha", "colour", "who", "reason", "approval"):
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


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
