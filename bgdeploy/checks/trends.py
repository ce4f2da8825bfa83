"""Canary analysis over time: is the queue backing up, do the canary's php-fpm workers hold more
memory than the live colour's?

The runbook's canary window watches two things besides errors and latency: "queue not backing
up" and "memory usage stable". Both are judged from Prometheus at each evaluation of the
window (:mod:`bgdeploy.checks.window`: over the seconds so far, the whole window at its end),
from what the application exports at ``/metrics`` (every web host; Prometheus scrapes each):

- ``queue_jobs_pending{queue}``: jobs in the Redis queue not yet done (waiting, delayed and
  reserved). One queue for the whole fleet, so every web host shows the same value (``max``).
- ``php_fpm_processes{colour}``, ``php_fpm_memory_bytes{colour}`` and
  ``php_fpm_memory_anon_bytes{colour}``: the colour's php-fpm workers on the host, the sum of
  their resident memory (VmRSS) and of their anonymous resident memory (RssAnon: each worker's
  own heap, without the opcache and file pages the workers share), read from ``/proc``.

**Queue backlog** (``queue backlog``): the pending jobs at the end of the window minus those at
its start (``offset``) is the growth. The check fails when the growth is above
``max_queue_growth`` jobs (default 100) *and* the backlog rose through the window: the
least-squares slope over the window (``deriv()``) is above 0 (a burst that is being worked off
is not a backlog). The queue is the fleet's: whatever fills it during the window (the canary,
the live colour, the scheduler) counts.

**Memory** (``php-fpm memory vs baseline``): the canary's memory per worker over the window
(the window's average of the memory over the window's average of the workers, all web hosts
together) is compared with the live colour's, which serves the same traffic on the same hosts.
The check fails when it is above the live colour's by more than ``max_memory_increase``
(default 0.5: 50 %). It compares RssAnon, each worker's own memory: a release that makes its
workers hold more memory shows there, while the shared pages (the opcache, the PHP binary)
that a fresh pool touches as it warms up do not. There is no rule on the canary's memory rising
through the window: a fresh pool's workers start small and grow as they warm up, so a rise is
what a healthy canary does too.

Measured in the sandbox (2 web hosts, a 50 % canary under 16 requests/s of first visits, a
45 s window, 2 to 5 workers per colour per host): a healthy canary's workers held 8.3, 8.3 and
8.5 MiB each against the live colour's 8.2, 8.0 and 8.4 MiB in three runs (1.01x to 1.04x); a fresh
pool's idle worker holds 6.6 MiB (9 MB resident) and, once it serves, about 33-35 MB resident
like the live colour's, of which 8-9 MiB its own. A release whose requests need 57 MB for a
moment (PHP's allocator keeps the chunks for the worker's next request) held 62.2 MiB per worker
against 8.3 (7.5x). The queue of a healthy canary grew by 0 jobs; a release queueing 20 jobs
of 0.2 s per request grew it by 6,327 (+142 jobs/s) with one worker per host.

Not evaluated (shown, neither pass nor fail): no ``queue_jobs_pending`` series at the start or
the end of the window; no memory series or no workers for either colour (an application that
does not export them). When Prometheus fails, the check fails with the error (the gate fails
closed). Without Prometheus (the probe gate) these checks are not made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bgdeploy.checks.gate import FAIL, NOT_EVALUATED, PASS, GateCheck, check_number
from bgdeploy.checks.metrics import (
    PrometheusError,
    Sample,
    check_colour,
    instant_query,
    window_text,
)

QUEUE_BACKLOG = "queue backlog"
MEMORY_VS_BASELINE = "php-fpm memory vs baseline"

MIB = 1024 * 1024


@dataclass(frozen=True)
class Trends:
    """What the canary's trends may do over the window (settings ``canary_*``).

    + max_queue_growth: how many more pending jobs the queue may hold at the end of the window
      than at its start (while it rises) before the check fails
    + max_memory_increase: how much more memory per php-fpm worker the canary may hold than the
      live colour (0.5: 50 %)
    """

    max_queue_growth: float = 100
    max_memory_increase: float = 0.5

    def __post_init__(self) -> None:
        check_number("max_queue_growth", self.max_queue_growth, 0, 1e12, what="canary")
        check_number("max_memory_increase", self.max_memory_increase, 0, 100, what="canary")


# The rules


def queue_check(
    start: float | None, end: float | None, slope: float | None, rules: Trends, *, source: str
) -> GateCheck:
    """The queue backlog rule (see the module): ``start`` and ``end`` are the pending jobs at
    the window's start and end, ``slope`` the backlog's trend over the window in jobs per
    second; None when there was no series."""
    limit = float(rules.max_queue_growth)
    if start is None or end is None or not math.isfinite(start) or not math.isfinite(end):
        edge = "start" if start is None or not math.isfinite(start) else "end"
        why = (
            f"not evaluated: no queue_jobs_pending at the {edge} of the window (does the"
            " application export it?)"
        )
        return GateCheck(QUEUE_BACKLOG, source, None, limit, NOT_EVALUATED, why)
    growth = end - start
    trend = slope if slope is not None and math.isfinite(slope) else 0.0
    shown = (
        f"{start:g} pending at the start, {end:g} at the end: growth {growth:g} "
        f"(max {limit:g}), trend {trend:+.3g} jobs/s"
    )
    if growth > limit and trend > 0:
        return GateCheck(QUEUE_BACKLOG, source, growth, limit, FAIL, f"{shown}: backing up")
    why = "not backing up" if growth <= limit else "falling or flat: being worked off"
    return GateCheck(QUEUE_BACKLOG, source, growth, limit, PASS, f"{shown}: {why}")


def memory_check(
    canary: float | None, base: float | None, rules: Trends, *, source: str
) -> GateCheck:
    """The memory rule (see the module): ``canary`` and ``base`` are the bytes per php-fpm
    worker of each colour over the window; None or NaN when there was none."""
    if canary is None or base is None or not math.isfinite(canary) or not math.isfinite(base):
        why = (
            f"not evaluated: no php-fpm memory per worker to compare (canary {_mib(canary)}, "
            f"baseline {_mib(base)}): does the application export php_fpm_memory_anon_bytes?"
        )
        return GateCheck(MEMORY_VS_BASELINE, source, canary, math.nan, NOT_EVALUATED, why,
                         baseline=base)  # fmt: skip
    allowed = base * (1 + rules.max_memory_increase)
    ratio = canary / base if base > 0 else math.inf
    verdict, sign = (FAIL, ">") if canary > allowed else (PASS, "<=")
    reason = (
        f"{_mib(canary)} per worker vs {_mib(base)} ({ratio:.2f}x) {sign} the limit "
        f"+{rules.max_memory_increase * 100:g}%: {_mib(allowed)}"
    )
    return GateCheck(MEMORY_VS_BASELINE, source, canary, allowed, verdict, reason, baseline=base)


def _mib(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "none"
    return f"{value / MIB:.1f} MiB"


# PromQL


def queue_queries(window: str) -> tuple[str, str, str]:
    """The pending jobs at the window's end and start (the fleet's: the largest value any web
    host shows, summed over the queues), and their least-squares slope over the window."""
    pending = "queue_jobs_pending"
    return (
        f"sum(max by (queue) ({pending}))",
        f"sum(max by (queue) ({pending} offset {window}))",
        f"sum(max by (queue) (deriv({pending}[{window}])))",
    )


def memory_query(window: str) -> str:
    """The php-fpm memory per worker of both colours over ``window``: the window's average
    anonymous memory of the colour's workers on every host, over their average number."""
    return (
        f'sum by (colour) (avg_over_time(php_fpm_memory_anon_bytes{{colour=~"blue|green"}}'
        f"[{window}])) / sum by (colour) "
        f'(avg_over_time(php_fpm_processes{{colour=~"blue|green"}}[{window}]) > 0)'
    )


# Prometheus


def prometheus_trend_checks(
    base_url: str,
    canary: str,
    live: str,
    window_seconds: float,
    rules: Trends,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> list[GateCheck]:
    """The queue backlog and memory checks of ``canary`` (against ``live``) over the
    ``window_seconds`` just past (the window so far), from Prometheus. A query that fails
    makes its check fail with the error; once Prometheus did not answer at all, the rest are
    not asked. Never raises for Prometheus trouble; ValueError for a colour that is not blue
    or green."""
    check_colour(canary)
    check_colour(live)
    window = window_text(window_seconds)
    end_query, start_query, slope_query = queue_queries(window)
    queue_source = f"{start_query} ; {end_query} ; {slope_query}"
    memory_source = memory_query(window)
    unreachable: list[str] = []

    def ask(query: str) -> list[Sample]:
        if unreachable:
            raise PrometheusError(unreachable[0], kind="connection", http_status=None, detail="")
        try:
            return instant_query(base_url, query, timeout, transport=transport)
        except PrometheusError as error:
            if error.unreachable:
                unreachable.append(f"not asked: {error}")
            raise

    checks: list[GateCheck] = []
    try:
        end, start, slope = (_one(ask(q)) for q in (end_query, start_query, slope_query))
        checks.append(queue_check(start, end, slope, rules, source=queue_source))
    except PrometheusError as error:
        checks.append(
            GateCheck(QUEUE_BACKLOG, queue_source, None, rules.max_queue_growth, FAIL, str(error))
        )
    try:
        found = {s.labels.get("colour", ""): s.value for s in ask(memory_source)}
        checks.append(memory_check(found.get(canary), found.get(live), rules, source=memory_source))
    except PrometheusError as error:
        checks.append(
            GateCheck(MEMORY_VS_BASELINE, memory_source, None, math.nan, FAIL, str(error))
        )
    return checks


def _one(samples: Sequence[Sample]) -> float | None:
    """The value of an aggregated answer; None for no series."""
    return samples[0].value if samples else None
