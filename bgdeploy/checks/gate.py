"""The metric gate: is the colour under test healthy enough to promote?

The runbook's monitoring window (step 4) promotes a canary only while

- the error rate is at most ``max_error_rate`` (default 0.01, "error rate < 1%"),
- the p95 latency is at most ``max_p95_seconds`` (default 0.5, "latency p95 < 500ms"),
- the number of 5xx answers is at most ``max_5xx`` (default 0, "no 5xx responses").

A ``max_*`` value is the largest value that still passes: an error rate of exactly 0.01 passes,
0.0101 fails. The gate has two sources of numbers:

- **Prometheus** (:func:`evaluate_prometheus`): the queries of :mod:`bgdeploy.checks.metrics` over
  ``window_seconds``, filtered on the colour. The error rate counts 5xx answers.
- **Its own probes** (:func:`~bgdeploy.checks.probes.probe`, re-exported here, then
  :func:`evaluate_probes`), when no Prometheus is configured: GET requests at a fixed rate
  against the colour under test. Here every answer that is not 2xx, and every transport error,
  counts as an error.

The gate fails closed. Each check ends in a verdict with a reason:

===================================  =====================================================
what came back                       verdict
===================================  =====================================================
a number within the threshold        pass
a number over the threshold          fail ("0.0523 > 0.01")
NaN: series exist, no requests       ``no_traffic``: fail (default) or pass, "no traffic
                                     to judge"
no series at all (5xx count)         0 (no 5xx was ever counted): judged as 0
no series at all (ratio, quantile)   fail, "no data" (is Prometheus scraping the colour?)
a Prometheus error or no answer      fail, with the error as the reason
===================================  =====================================================

.. code:: python

    thresholds = Thresholds.from_mapping({"max_error_rate": 0.01, "window_seconds": 300})
    result = evaluate_prometheus("http://127.0.0.1:9090", "green", thresholds)
    for line in result.explain():
        print(line)
    journal_details = result.to_dict()   # JSON-safe: NaN and Inf become "NaN", "+Inf"
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import httpx

from bgdeploy.checks.metrics import (
    PrometheusError,
    Sample,
    check_colour,
    count_5xx_query,
    error_rate_query,
    instant_query,
    p95_query,
    window_text,
)
from bgdeploy.checks.probes import (
    MAX_PROBE_THREADS,
    MAX_PROBES,
    ProbeSample,
    p95_nearest_rank,
    probe,
)
from bgdeploy.core.errors import ConfigError

__all__ = [
    "COUNT_5XX",
    "ERROR_RATE",
    "FAIL",
    "MAX_PROBES",
    "MAX_PROBE_THREADS",
    "NOT_EVALUATED",
    "NO_DATA",
    "NO_TRAFFIC",
    "P95",
    "PASS",
    "GateCheck",
    "GateResult",
    "ProbeSample",
    "Thresholds",
    "evaluate_probes",
    "evaluate_prometheus",
    "gate_result",
    "judge",
    "p95_nearest_rank",
    "probe",
]

PASS = "pass"  # noqa: S105 (a verdict, not a password)
FAIL = "fail"
NOT_EVALUATED = "not evaluated"
"""A comparison with too few requests to judge (:mod:`bgdeploy.checks.baseline`): shown, it
neither passes nor fails the gate."""
NO_TRAFFIC = "no traffic to judge"
NO_DATA = "no data"

ERROR_RATE = "error rate"
P95 = "p95 latency"
COUNT_5XX = "5xx responses"


@dataclass(frozen=True)
class Thresholds:
    """What the gate accepts.

    + max_error_rate: the largest error rate that passes, as a fraction (0.01 is 1 %)
    + max_p95_seconds: the largest p95 latency that passes, in seconds
    + max_5xx: the largest number of 5xx answers that passes
    + window_seconds: the window Prometheus's rates are taken over (a whole number >= 1); for
      probes, how long to probe
    + no_traffic: ``"fail"`` (default) or ``"pass"``: the verdict when the colour had no
      requests in the window (Prometheus answers NaN)

    Invalid values raise :class:`~bgdeploy.core.errors.ConfigError` naming the key.
    """

    max_error_rate: float = 0.01
    max_p95_seconds: float = 0.5
    max_5xx: float = 0
    window_seconds: float = 300
    no_traffic: str = FAIL

    def __post_init__(self) -> None:
        check_number("max_error_rate", self.max_error_rate, 0, 1)
        check_number("max_p95_seconds", self.max_p95_seconds, 0, 3600)
        check_number("max_5xx", self.max_5xx, 0, 1e12)
        check_number("window_seconds", self.window_seconds, 1, 86_400)
        if self.window_seconds != int(self.window_seconds):
            raise ConfigError(
                f"gate setting window_seconds must be whole seconds, not {self.window_seconds!r}"
            )
        if self.no_traffic not in (FAIL, PASS):
            raise ConfigError(
                f"gate setting no_traffic must be 'fail' or 'pass', not {self.no_traffic!r}"
            )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Thresholds:
        """Thresholds from settings-like values; missing keys take the defaults.

        Unknown keys are refused (a typo must not silently keep a default).
        """
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown gate setting {unknown[0]!r} (expected one of {', '.join(sorted(known))})"
            )
        return cls(**{key: data[key] for key in known if key in data})

    @property
    def window(self) -> str:
        """``window_seconds`` as a PromQL duration (``5m``)."""
        return window_text(self.window_seconds)


@dataclass(frozen=True)
class GateCheck:
    """One question the gate asked, and its answer.

    + name: ``"error rate"``, ``"p95 latency"`` or ``"5xx responses"``
    + query_or_probe: the PromQL, or a description of the probes
    + value: the measured value (may be NaN or infinite), or None when there was none
    + threshold: the largest value that passes (a comparison with the baseline: the largest
      canary value, or the error test's significance; NaN when not evaluated)
    + verdict: ``"pass"``, ``"fail"`` or ``"not evaluated"`` (a comparison with too few
      requests: neither)
    + reason: why, in words
    + baseline: a comparison's value of the live colour over the same window, else None
    + route: the route a comparison is about (``""``: every request)
    + unmeasured: failed only because it could not be measured (a comparison required before
      a promotion, with too few requests): the end's rule, not a number over a limit
    """

    name: str
    query_or_probe: str
    value: float | None
    threshold: float
    verdict: str
    reason: str
    baseline: float | None = None
    route: str = ""
    unmeasured: bool = False

    @property
    def passed(self) -> bool:
        """True when the verdict is pass."""
        return self.verdict == PASS

    @property
    def compared(self) -> bool:
        """True for a comparison with the baseline (:mod:`bgdeploy.checks.baseline`)."""
        return self.name.endswith(" vs baseline")

    @property
    def failed(self) -> bool:
        """True when the verdict is fail (not evaluated is neither)."""
        return self.verdict not in (PASS, NOT_EVALUATED)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form: a non-finite value is the string ``"NaN"``, ``"+Inf"`` or ``"-Inf"``;
        ``baseline`` and ``route`` only for a comparison with the baseline."""
        data = {
            "name": self.name,
            "query_or_probe": self.query_or_probe,
            "value": _json_number(self.value),
            "threshold": _json_number(self.threshold),
            "verdict": self.verdict,
            "reason": self.reason,
        }
        if self.compared:
            data["baseline"] = _json_number(self.baseline)
            data["route"] = self.route
        return data


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: passed only if at least one check passed and none failed (checks
    not evaluated neither pass nor fail).

    + passed: promote (True) or send everything back (False)
    + checks: each question and its answer
    + source: ``"prometheus"`` or ``"probe"``
    """

    passed: bool
    checks: tuple[GateCheck, ...]
    source: str = ""

    def explain(self) -> list[str]:
        """Lines for the operator, one verdict line then the query per check::

        gate FAILED (prometheus): 1 of 3 checks failed
          FAIL error rate: 10.00% (max 1.00%): 0.1 > 0.01
               (sum(rate(http_requests_total{colour="green",status=~"5.."}[5m])) ...
        """
        failed = [check for check in self.checks if check.failed]
        passed = [check for check in self.checks if check.passed]
        skipped = len(self.checks) - len(failed) - len(passed)
        aside = f" ({skipped} not evaluated)" if skipped else ""
        source = f" ({self.source})" if self.source else ""
        if self.passed:
            head = f"gate passed{source}: {len(passed)} checks passed{aside}"
        elif not self.checks:
            head = f"gate FAILED{source}: nothing was checked"
        else:
            head = f"gate FAILED{source}: {len(failed)} of {len(self.checks)} checks failed{aside}"
        lines = [head]
        shown: set[str] = set()
        for check in self.checks:
            value = _format_value(check.name, check.value)
            if check.compared:
                route = f" [route {check.route}]" if check.route else ""
                base = _format_value(check.name, check.baseline)
                lines.append(
                    f"  {check.verdict.upper()} {check.name}{route}: {value} (baseline {base}): "
                    f"{check.reason}"
                )
            else:
                limit = _format_value(check.name, check.threshold)
                lines.append(
                    f"  {check.verdict.upper()} {check.name}: {value} (max {limit}): {check.reason}"
                )
            if check.query_or_probe not in shown:  # the comparisons share their queries
                lines.append(f"       {check.query_or_probe}")
                shown.add(check.query_or_probe)
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for the journal's ``details``."""
        return {
            "passed": self.passed,
            "source": self.source,
            "checks": [check.to_dict() for check in self.checks],
        }


def gate_result(checks: Iterable[GateCheck], source: str = "") -> GateResult:
    """A :class:`GateResult` from checks: passed when at least one passed and none failed
    (a check not evaluated is neither)."""
    checks = tuple(checks)
    passed = any(c.passed for c in checks) and not any(c.failed for c in checks)
    return GateResult(passed, checks, source)


def judge(
    name: str,
    query_or_probe: str,
    value: float | None,
    threshold: float,
    thresholds: Thresholds,
    *,
    empty: str = NO_DATA,
) -> GateCheck:
    """Compare one value with its threshold, with the gate's rules for NaN and missing values.

    ``value`` None means "no series": the check fails with ``empty`` as the reason.
    """
    if value is None:
        return GateCheck(name, query_or_probe, None, threshold, FAIL, empty)
    if math.isnan(value):
        verdict = FAIL if thresholds.no_traffic == FAIL else PASS
        reason = NO_TRAFFIC if verdict == FAIL else f"{NO_TRAFFIC} (passing: no_traffic=pass)"
        return GateCheck(name, query_or_probe, value, threshold, verdict, reason)
    if value <= threshold:
        return GateCheck(
            name, query_or_probe, value, threshold, PASS, f"{value:g} <= {threshold:g}"
        )
    return GateCheck(name, query_or_probe, value, threshold, FAIL, f"{value:g} > {threshold:g}")


# Prometheus


def evaluate_prometheus(
    base_url: str,
    colour: str,
    thresholds: Thresholds,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> GateResult:
    """Ask Prometheus about ``colour`` over ``thresholds.window`` and judge the answers.

    Three instant queries: error rate, p95 latency, 5xx count (see :mod:`bgdeploy.checks.metrics`).
    A query that fails makes its check fail with the error as the reason; when Prometheus does
    not answer at all (timeout, refused connection), the remaining queries are not sent and fail
    with the same reason. Never raises for Prometheus trouble; raises ValueError for a colour
    that is not blue or green.
    """
    check_colour(colour)
    window = thresholds.window
    plan = (
        (ERROR_RATE, error_rate_query(colour, window), thresholds.max_error_rate, False),
        (P95, p95_query(colour, window), thresholds.max_p95_seconds, False),
        (COUNT_5XX, count_5xx_query(colour, window), thresholds.max_5xx, True),
    )
    checks: list[GateCheck] = []
    unreachable: str | None = None
    for name, query, threshold, empty_is_zero in plan:
        if unreachable is not None:
            checks.append(GateCheck(name, query, None, threshold, FAIL, unreachable))
            continue
        try:
            samples = instant_query(base_url, query, timeout, transport=transport)
        except PrometheusError as error:
            checks.append(GateCheck(name, query, None, threshold, FAIL, str(error)))
            if error.unreachable:
                unreachable = f"not asked: {error}"
            continue
        checks.append(_judge_samples(name, query, samples, threshold, thresholds, empty_is_zero))
    return gate_result(checks, "prometheus")


def _judge_samples(
    name: str,
    query: str,
    samples: Sequence[Sample],
    threshold: float,
    thresholds: Thresholds,
    empty_is_zero: bool,
) -> GateCheck:
    if len(samples) > 1:
        return GateCheck(
            name,
            query,
            None,
            threshold,
            FAIL,
            f"expected one series, got {len(samples)}: the query must aggregate",
        )
    if not samples:
        if empty_is_zero:
            check = judge(name, query, 0.0, threshold, thresholds)
            return _with_reason(check, f"no series (counted as 0): {check.reason}")
        return judge(
            name,
            query,
            None,
            threshold,
            thresholds,
            empty=f"{NO_DATA}: no series for this colour (is Prometheus scraping it?)",
        )
    return judge(name, query, samples[0].value, threshold, thresholds)


def _with_reason(check: GateCheck, reason: str) -> GateCheck:
    return GateCheck(
        check.name, check.query_or_probe, check.value, check.threshold, check.verdict, reason
    )


# Probes


def evaluate_probes(
    samples: Sequence[ProbeSample], thresholds: Thresholds, *, target: str = "the colour"
) -> GateResult:
    """Judge probe samples against the thresholds (``window_seconds`` and ``no_traffic`` unused).

    - error rate: (answers that are not 2xx + transport errors) / samples
    - p95 latency: nearest rank (:func:`p95_nearest_rank`) over the requests that got an HTTP
      answer, whatever its status; "no data" if none did
    - 5xx responses: the answers with a status from 500 to 599

    No samples at all fails every check ("no probes were sent"). ``target`` names what was
    probed in the explanation (never put credentials in it).
    """
    total = len(samples)
    errors = sum(1 for s in samples if not s.ok)
    transport = sum(1 for s in samples if s.status is None)
    answered = [s.seconds for s in samples if s.status is not None]
    count_5xx = sum(1 for s in samples if s.status is not None and 500 <= s.status <= 599)
    what = f"GET {target}: {total} probes"
    if total == 0:
        reason = "no probes were sent"
        checks = [
            GateCheck(ERROR_RATE, what, None, thresholds.max_error_rate, FAIL, reason),
            GateCheck(P95, what, None, thresholds.max_p95_seconds, FAIL, reason),
            GateCheck(COUNT_5XX, what, None, thresholds.max_5xx, FAIL, reason),
        ]
        return gate_result(checks, "probe")
    rate_check = judge(
        ERROR_RATE,
        f"{what}, {errors} not 2xx ({transport} transport errors)",
        errors / total,
        thresholds.max_error_rate,
        thresholds,
    )
    p95_check = judge(
        P95,
        f"{what}, nearest-rank p95 of {len(answered)} answered",
        p95_nearest_rank(answered),
        thresholds.max_p95_seconds,
        thresholds,
        empty=f"{NO_DATA}: no probe got an answer",
    )
    count_check = judge(
        COUNT_5XX, f"{what}, {count_5xx} answered 5xx", count_5xx, thresholds.max_5xx, thresholds
    )
    return gate_result([rate_check, p95_check, count_check], "probe")


# Helpers


def check_number(key: str, value: Any, low: float, high: float, what: str = "gate") -> None:
    """A setting that must be a finite number from ``low`` to ``high``: else
    :class:`ConfigError` naming ``what`` setting ``key`` and its value."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ConfigError(
            f"{what} setting {key} must be a number from {low:g} to {high:g}, not {value!r}"
        )


def _json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _format_value(name: str, value: float | None) -> str:
    if value is None:
        return "none"
    if not math.isfinite(value):
        return _json_number(value)  # type: ignore[return-value]
    if name.startswith(ERROR_RATE):
        return f"{value * 100:.2f}%"
    if name == P95 or name.startswith(("p50 ", "p95 ", "p99 ")):
        return f"{value * 1000:.1f}ms"
    if "memory" in name:
        return f"{value / 1024 / 1024:.1f} MiB"
    return f"{value:g}"
