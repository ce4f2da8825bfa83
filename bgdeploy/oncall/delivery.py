"""Delivery of notifications: one JSON POST, its answer read, never an exception.

:func:`send_slack` (ok only on HTTP 200) and :func:`send_pagerduty` (ok only on 202) post a body
built by :mod:`bgdeploy.oncall.messages` and return a :class:`NotifyResult`. A 429 is retried
once after its ``Retry-After`` (at most :data:`MAX_RETRY_AFTER` seconds); a timeout, a refused
connection or another answer is a failed result. Webhook URLs and routing keys never appear in
a result: they are redacted from every message.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bgdeploy.checks.metrics import ssl_context
from bgdeploy.oncall.messages import cut

if TYPE_CHECKING:
    import httpx  # imported where used: importing it costs a tenth of a second

MAX_RETRY_AFTER = 5.0
"""The longest a 429's ``Retry-After`` is waited for (once)."""


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
    import httpx

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
    return cut(text, limit)


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
