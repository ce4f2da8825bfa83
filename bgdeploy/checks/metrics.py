"""Prometheus HTTP API: instant queries and the runbook's PromQL, per colour.

The metric gate (:mod:`bgdeploy.checks.gate`) asks Prometheus three questions about the colour under
test, over a window (runbook, "Automatic Deployment", step 4):

.. code:: python

    error_rate_query("green", "5m")
    # (sum(rate(http_requests_total{colour="green",status=~"5.."}[5m])) or vector(0))
    #   / sum(rate(http_requests_total{colour="green"}[5m]))
    p95_query("green", "5m")
    # histogram_quantile(0.95, sum by (le)
    #   (rate(http_request_duration_seconds_bucket{colour="green"}[5m])))
    count_5xx_query("green", "5m")
    # sum(increase(http_requests_total{colour="green",status=~"5.."}[5m]))

    samples = instant_query("http://127.0.0.1:9090", error_rate_query("green", "5m"), timeout=10)
    samples[0].value  # 0.0021 -- a float: NaN (no traffic) and +Inf are kept as such

What the answers mean:

- ``[]`` (no series): nothing matched. For the 5xx count this is 0 (no 5xx series exists yet);
  for the ratio and the quantile it means Prometheus has no data for the colour at all (not
  scraped, wrong label).
- ``NaN``: series exist but had no requests in the window (0/0): there is no traffic to judge.
- The error rate's numerator is ``... or vector(0)``: without it, a colour that never answered
  a 5xx (so has no 5xx series) would give an empty result instead of 0.

Every failure -- a Prometheus error answer (``bad_data`` 400, ``execution`` 422, ``timeout``
503), a proxy's non-JSON page, a timeout, a refused connection -- raises
:class:`PrometheusError` with a message that says which and what to do; the gate fails closed
on it. Credentials in the base URL (``http://user:pass@host``) never appear in a message.
"""

from __future__ import annotations

import functools
import json
import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from bgdeploy.core.errors import OperationFailed

if TYPE_CHECKING:
    import httpx  # imported where used: importing it costs a tenth of a second

COLOURS = ("blue", "green")

_WINDOW = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w|y))+\Z")
_NON_ZERO = re.compile(r"[1-9]")


class PrometheusError(OperationFailed):
    """A query that did not give an answer.

    + kind: ``"bad_data"``, ``"execution"``, ``"timeout"``, ... (Prometheus's ``errorType``), or
      ``"proxy"`` (a non-JSON answer), ``"bad_response"`` (JSON that is not the API's envelope),
      ``"timeout"`` (no answer in time), ``"connection"`` (could not connect), ``"bad_url"``
    + http_status: the HTTP status, or None when there was no answer
    + detail: Prometheus's ``error`` text, or a description of the answer
    """

    def __init__(self, message: str, *, kind: str, http_status: int | None, detail: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status
        self.detail = detail

    @property
    def unreachable(self) -> bool:
        """True when Prometheus did not answer at all (timeout, connection error, bad URL)."""
        return self.http_status is None and self.kind in {"timeout", "connection", "bad_url"}


@dataclass(frozen=True)
class Sample:
    """One element of an instant query's result.

    + labels: the series' labels (``{}`` after ``sum``; a scalar has none)
    + value: the value as a float (``NaN``, ``+Inf`` and ``-Inf`` included)
    + timestamp: the evaluation time, seconds since the epoch
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    value: float = math.nan
    timestamp: float = 0.0


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certificates verified), built once per process.

    Building one costs tens of milliseconds; the gate and the notifications make many short
    clients.
    """
    import httpx

    return httpx.create_ssl_context()


def redact_url(url: str) -> str:
    """``url`` without user, password, query and fragment: safe to show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "<invalid URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_colour(colour: str) -> str:
    """``colour`` if it is ``"blue"`` or ``"green"``; else ValueError."""
    if colour not in COLOURS:
        raise ValueError(f"colour must be blue or green, not {colour!r}")
    return colour


def check_window(window: str) -> str:
    """``window`` if it is a PromQL duration (``30s``, ``5m``, ``1h30m``) longer than zero.

    The window of ``rate()`` should span at least two scrapes (with a 15 s scrape interval,
    ``30s`` or more; Prometheus's advice is four intervals).
    """
    if not isinstance(window, str) or not _WINDOW.match(window) or not _NON_ZERO.search(window):
        raise ValueError(f"window must be a duration such as 30s, 5m or 1h, not {window!r}")
    return window


def window_text(seconds: float) -> str:
    """A whole number of seconds as a PromQL duration: 300 -> ``5m``, 90 -> ``90s``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"window must be a number of seconds, not {seconds!r}")
    if not math.isfinite(seconds) or seconds < 1 or seconds != int(seconds):
        raise ValueError(f"window must be a whole number of seconds >= 1, not {seconds!r}")
    whole = int(seconds)
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def error_rate_query(colour: str, window: str) -> str:
    """The share of the colour's requests that answered 5xx over ``window`` (0.01 is 1 %).

    Empty when the colour has no series at all; ``NaN`` when it had no requests in the window.
    """
    check_colour(colour)
    check_window(window)
    return (
        f'(sum(rate(http_requests_total{{colour="{colour}",status=~"5.."}}[{window}]))'
        f" or vector(0))"
        f' / sum(rate(http_requests_total{{colour="{colour}"}}[{window}]))'
    )


def p95_query(colour: str, window: str, quantile: float = 0.95) -> str:
    """The colour's request duration quantile (p95 by default) in seconds over ``window``.

    Estimated by Prometheus from the histogram buckets (linear inside a bucket); ``NaN`` without
    requests in the window, ``+Inf`` when the quantile falls in the ``+Inf`` bucket.
    """
    check_colour(colour)
    check_window(window)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, not {quantile!r}")
    return (
        f"histogram_quantile({quantile:g}, sum by (le) "
        f'(rate(http_request_duration_seconds_bucket{{colour="{colour}"}}[{window}])))'
    )


def count_5xx_query(colour: str, window: str) -> str:
    """How many 5xx answers the colour gave over ``window`` (empty when it never gave one).

    ``increase()`` extrapolates to the window's edges, so the value need not be a whole number.
    """
    check_colour(colour)
    check_window(window)
    return f'sum(increase(http_requests_total{{colour="{colour}",status=~"5.."}}[{window}]))'


def requests_by_query(window: str, *, errors: bool) -> str:
    """Requests of both colours over ``window`` per colour and route (``errors``: the 5xx
    only), for the canary's comparison with its baseline (:mod:`bgdeploy.checks.baseline`).

    Metrics without a ``route`` label come back with ``route`` missing: one series per colour.
    """
    check_window(window)
    status = ',status=~"5.."' if errors else ""
    return (
        f"sum by (colour, route) "
        f'(increase(http_requests_total{{colour=~"blue|green"{status}}}[{window}]))'
    )


def buckets_query(window: str) -> str:
    """Requests of both colours over ``window`` per colour, route and latency bucket
    (cumulative, as the histogram's ``le``): how many took longer than a limit."""
    check_window(window)
    return (
        "sum by (colour, route, le) "
        f'(increase(http_request_duration_seconds_bucket{{colour=~"blue|green"}}[{window}]))'
    )


def quantile_by_query(quantile: float, window: str, *, by_route: bool) -> str:
    """The request duration ``quantile`` of both colours over ``window``, per colour (and per
    route with ``by_route``)."""
    check_window(window)
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1, not {quantile!r}")
    by = "colour, route, le" if by_route else "colour, le"
    return (
        f"histogram_quantile({quantile:g}, sum by ({by}) "
        f'(rate(http_request_duration_seconds_bucket{{colour=~"blue|green"}}[{window}])))'
    )


def instant_query(
    base_url: str,
    promql: str,
    timeout: float = 10.0,
    *,
    transport: httpx.BaseTransport | None = None,
) -> list[Sample]:
    """Evaluate ``promql`` now: ``POST {base_url}/api/v1/query`` (form-encoded).

    Prometheus is asked to give up a little before ``timeout`` (its ``timeout`` parameter), so a
    slow query comes back as its own 503 ``timeout`` error rather than a client timeout.
    Returns one :class:`Sample` per series of a ``vector`` result, or one for a ``scalar``;
    raises :class:`PrometheusError` for anything else. ``transport`` is for tests.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    shown = redact_url(base_url)
    where = f"Prometheus at {shown}"
    url = base_url.rstrip("/") + "/api/v1/query"
    server_ms = max(100, int(timeout * 1000) - 500)
    form = {"query": promql, "timeout": f"{server_ms}ms"}
    import httpx  # here: importing it costs a tenth of a second (the rollback has no need)

    try:
        with httpx.Client(
            transport=transport, timeout=timeout, follow_redirects=False, verify=ssl_context()
        ) as client:
            response = client.post(url, data=form)
    except httpx.TimeoutException:
        raise PrometheusError(
            f"{where} did not answer within {timeout:g}s (query timed out)",
            kind="timeout",
            http_status=None,
            detail="client timeout",
        ) from None
    except httpx.InvalidURL:
        raise PrometheusError(
            f"the Prometheus URL {shown!r} is not a valid URL",
            kind="bad_url",
            http_status=None,
            detail="invalid URL",
        ) from None
    except httpx.HTTPError as error:
        detail = _transport_detail(error, base_url)
        raise PrometheusError(
            f"{where} is unreachable ({detail}): is it running, and is the URL right?",
            kind="connection",
            http_status=None,
            detail=detail,
        ) from None
    return parse_response(response.status_code, response.headers, response.content, where)


def parse_response(
    status: int, headers: Mapping[str, str], content: bytes, where: str = "Prometheus"
) -> list[Sample]:
    """Read an ``/api/v1/query`` answer (see :func:`instant_query`)."""
    try:
        body: Any = json.loads(content)
    except ValueError:
        kind = headers.get("content-type", "unknown type").split(";")[0].strip() or "unknown type"
        snippet = _snippet(content)
        raise PrometheusError(
            f"{where} answered HTTP {status} with {kind}, not the API's JSON"
            f"{': ' + snippet if snippet else ''} (a proxy or load balancer in the way?)",
            kind="proxy",
            http_status=status,
            detail=snippet,
        ) from None
    if not isinstance(body, dict) or body.get("status") not in {"success", "error"}:
        raise PrometheusError(
            f"{where} answered HTTP {status} with JSON that is not a Prometheus API response",
            kind="bad_response",
            http_status=status,
            detail=_snippet(content),
        )
    if body["status"] == "error" or status >= 400:
        error_type = str(body.get("errorType") or "unknown")
        error_text = str(body.get("error") or "no error text")
        hint = {
            "bad_data": "the query or a parameter is invalid",
            "execution": "the query could not be executed",
            "timeout": "the query timed out on the server",
            "canceled": "the query was canceled",
            "unavailable": "the server is not ready",
        }.get(error_type, "")
        raise PrometheusError(
            f"{where} refused the query: HTTP {status} {error_type}: {error_text}"
            + (f" ({hint})" if hint else ""),
            kind=error_type,
            http_status=status,
            detail=error_text,
        )
    return _samples(body.get("data"), where, status)


def _samples(data: Any, where: str, status: int) -> list[Sample]:
    def bad(why: str) -> PrometheusError:
        return PrometheusError(
            f"{where} answered with an unexpected result: {why}",
            kind="bad_response",
            http_status=status,
            detail=why,
        )

    if not isinstance(data, dict):
        raise bad("no data object")
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        return [Sample({}, *_point(result, bad))]
    if result_type != "vector":
        raise bad(f"resultType {result_type!r}, expected an instant vector or a scalar")
    if not isinstance(result, list):
        raise bad("result is not a list")
    samples = []
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("metric", {}), dict):
            raise bad("a series is not an object with a metric")
        if "value" not in item:
            raise bad("a series has no value (a native histogram?)")
        labels = {str(key): str(value) for key, value in item.get("metric", {}).items()}
        samples.append(Sample(labels, *_point(item["value"], bad)))
    return samples


def _point(point: Any, bad: Any) -> tuple[float, float]:
    """``[timestamp, "value"]`` -> (value, timestamp)."""
    if not isinstance(point, list) or len(point) != 2 or not isinstance(point[1], str):
        raise bad(f"value {point!r} is not [timestamp, string]")
    try:
        return float(point[1]), float(point[0])
    except (TypeError, ValueError):
        raise bad(f"value {point!r} is not a number") from None


def _transport_detail(error: httpx.HTTPError, url: str) -> str:
    text = str(error) or type(error).__name__
    for secret in {url, url.rstrip("/"), redact_url(url)}:
        if secret:
            text = text.replace(secret, "<url>")
    return f"{type(error).__name__}: {text}"


def _snippet(content: bytes, limit: int = 120) -> str:
    """A short, printable description of a body: an HTML page's title, else its first words."""
    text = content.decode("utf-8", "replace")
    title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
    if title:
        text = title.group(1)
    text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text[:limit] + ("..." if len(text) > limit else "")
