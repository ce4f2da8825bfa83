"""Canary analysis: the colour under test compared with the live colour over the same window.

The runbook's absolute limits (:mod:`bgdeploy.checks.gate`) miss a release that makes every
request 30 % slower but stays under 500 ms, or that breaks a route few clients call. The stable
colour serves the same traffic, on the same machines, at the same time: what it does is the
baseline. Each comparison below is made overall and, where the metrics carry a ``route`` label,
route by route.

**Error rate** (a statistical test): the canary's errors are compared with the baseline's by a
one-sided Fisher exact test (the hypergeometric tail: given all the errors of both colours,
how likely is it that the canary got at least as many of them by chance?). The check fails when
that probability is below the significance, ``significance`` (default 0.01) shared evenly among
all the comparisons evaluated (Bonferroni: 0.01 over 4 comparisons is 0.0025 each; one with
too few requests makes no test), so the chance of a false alarm for the whole analysis stays
under ``significance``. Equal error rates never fail;
no errors on the canary never fail.

**Latency** (a binomial test): the limit is the baseline's p50 (p95, p99) raised by
``max_latency_increase`` (default 0.2: 20 %), at least by ``latency_slack`` seconds (default
0.002: a 4 ms p95 becoming 6 ms is noise; a larger slack would hide the relative margin for a
fast app: with 10 ms, a 21 ms median could grow by 48 % unseen, and a release 40 % slower on
every request of the sandbox app was promoted that way). A canary whose p50 were at the limit
would have at most half of its requests above it (p95: 5 %); the check fails when the
canary's quantile is above the limit and its requests above the limit are more than a
one-sided binomial test at the shared significance explains. The median is the powerful one
for a release that is slower on every request: 40 % slower puts well over half of its
requests above the baseline's median + 20 %, which a few hundred requests show, while the
tail quantiles need thousands for the same difference (they stay for a release that is slow
on a few requests only).

**Too few requests**: a comparison needs ``min_requests`` requests on each side (default 100),
and a quantile at least :data:`MIN_TAIL` requests above it on each side (p95: 100, p99: 500), else
it is *not evaluated*: shown, never a pass. The overall error-rate comparison is required: not
evaluated, it fails the gate as "no traffic to judge" does (the gate's ``no_traffic``); the others
(routes, quantiles) not evaluated neither pass nor fail.

The numbers come from Prometheus (:func:`prometheus_checks`: counts and quantiles per colour and
route over the window) or from the gate's probes of both colours (:func:`probe_checks`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from bgdeploy.checks.gate import (
    FAIL,
    NOT_EVALUATED,
    PASS,
    GateCheck,
    ProbeSample,
    Thresholds,
    check_number,
    p95_nearest_rank,
)
from bgdeploy.checks.metrics import (
    PrometheusError,
    Sample,
    buckets_query,
    check_colour,
    instant_query,
    quantile_by_query,
    requests_by_query,
)

ERROR_VS_BASELINE = "error rate vs baseline"
P50_VS_BASELINE = "p50 vs baseline"
P95_VS_BASELINE = "p95 vs baseline"
P99_VS_BASELINE = "p99 vs baseline"
QUANTILES = ((0.5, P50_VS_BASELINE), (0.95, P95_VS_BASELINE), (0.99, P99_VS_BASELINE))

MIN_TAIL = 5
"""Requests above a quantile each side needs before that quantile is compared (p99: 500)."""

OVERALL = ""
"""The route of the comparisons over every request."""


@dataclass(frozen=True)
class Baseline:
    """How the canary is compared with the baseline (settings ``canary_*``).

    + min_requests: requests each side needs before a comparison is made
    + significance: the chance of a false alarm on the error rate, for the whole analysis
    + max_latency_increase: how much above the baseline's a quantile may be (0.2: 20 %)
    + latency_slack: seconds of difference that never fail a latency comparison
    """

    min_requests: int = 100
    significance: float = 0.01
    max_latency_increase: float = 0.2
    latency_slack: float = 0.002

    def __post_init__(self) -> None:
        checks = (
            ("min_requests", self.min_requests, 1, 1e9),
            ("significance", self.significance, 1e-9, 0.5),
            ("max_latency_increase", self.max_latency_increase, 0, 100),
            ("latency_slack", self.latency_slack, 0, 3600),
        )
        for key, value, low, high in checks:
            check_number(key, value, low, high, what="canary")

    def tests(self, sides: Iterable[int]) -> int:
        """How many comparisons will be made (share the significance), given the smaller side's
        requests of each route: an error comparison, and each quantile with enough requests.
        A comparison not evaluated makes no test (at least 1)."""
        wanted = [None, *(quantile for quantile, _ in QUANTILES)]
        made = sum(1 for side in sides for q in wanted if side >= self.needed(q))
        return max(1, made)

    def needed(self, quantile: float | None = None) -> int:
        """Requests each side needs: ``min_requests``, and for a quantile, enough that
        :data:`MIN_TAIL` of them lie above it."""
        if quantile is None:
            return int(self.min_requests)
        return max(int(self.min_requests), math.ceil(MIN_TAIL / (1 - quantile) - 1e-9))


# The statistics


def fisher_one_sided(
    canary_errors: int, canary_total: int, base_errors: int, base_total: int
) -> float:
    """P(the canary gets at least ``canary_errors`` of all the errors by chance): the upper tail
    of the hypergeometric distribution (Fisher's exact test, one-sided), given both totals and
    the errors of both colours together. 1.0 when the canary has no errors."""
    for value in (canary_errors, canary_total, base_errors, base_total):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"counts must be whole numbers >= 0, not {value!r}")
    if canary_errors > canary_total or base_errors > base_total:
        raise ValueError("errors cannot exceed requests")
    if canary_errors == 0:
        return 1.0
    population = canary_total + base_total
    errors = canary_errors + base_errors
    denominator = _log_comb(population, canary_total)
    top = min(errors, canary_total)
    terms = [
        _log_comb(errors, k) + _log_comb(population - errors, canary_total - k) - denominator
        for k in range(canary_errors, top + 1)
    ]
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(t - peak) for t in terms))


def _log_comb(n: int, k: int) -> float:
    if k < 0 or k > n:
        return -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


@dataclass(frozen=True)
class Counts:
    """Requests and errors of one colour on one route over the window."""

    total: int
    errors: int

    @property
    def rate(self) -> float:
        return self.errors / self.total if self.total else math.nan


def error_check(
    canary: Counts,
    base: Counts,
    rules: Baseline,
    *,
    tests: int,
    source: str,
    route: str = OVERALL,
    required: bool = False,
    thresholds: Thresholds | None = None,
) -> GateCheck:
    """The error-rate comparison of one route (see the module). ``tests``: how many error
    comparisons share the significance; ``required``: too few requests fails (per the gate's
    ``no_traffic``) instead of "not evaluated"."""
    alpha = rules.significance / max(1, tests)
    counts = f"canary {canary.errors}/{canary.total} errors, baseline {base.errors}/{base.total}"
    needed = rules.needed()
    if min(canary.total, base.total) < needed:
        why = f"not evaluated: too few requests ({counts}; at least {needed} each)"
        return _not_evaluated(
            ERROR_VS_BASELINE,
            source,
            canary.rate,
            base.rate,
            alpha,
            why,
            route,
            required,
            thresholds,
        )
    p = fisher_one_sided(canary.errors, canary.total, base.errors, base.total)
    test = f"one-sided Fisher exact p = {p:.3g}"
    limit = f"{alpha:.3g} ({rules.significance:g} over {tests} comparisons)"
    if p < alpha:
        verdict, reason = FAIL, f"{counts}: {test} < {limit}"
    else:
        verdict, reason = PASS, f"{counts}: {test} >= {limit}"
    return GateCheck(
        ERROR_VS_BASELINE,
        source,
        canary.rate,
        alpha,
        verdict,
        reason,
        baseline=base.rate,
        route=route,
    )


def binomial_tail(successes: int, trials: int, chance: float) -> float:
    """P(Binomial(trials, chance) >= successes): how likely ``successes`` or more are by chance."""
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    terms = [
        _log_comb(trials, k) + k * math.log(chance) + (trials - k) * math.log1p(-chance)
        for k in range(successes, trials + 1)
    ]
    peak = max(terms)
    return min(1.0, math.exp(peak) * sum(math.exp(x - peak) for x in terms))


Above = Callable[[float], float]
"""How many of the canary's requests took longer than a number of seconds."""


def latency_check(
    name: str,
    quantile: float,
    canary: float | None,
    base: float | None,
    canary_total: int,
    base_total: int,
    rules: Baseline,
    *,
    above: Above,
    tests: int,
    source: str,
    route: str = OVERALL,
) -> GateCheck:
    """The comparison of one quantile (``canary`` and ``base`` in seconds; None or NaN when
    there was none). The limit is the baseline's quantile raised by ``max_latency_increase``
    (at least by ``latency_slack`` seconds). A canary whose quantile were at that limit would
    have at most ``1 - quantile`` of its requests above it: the check fails when the canary's
    requests above it (``above(limit)``) are more than a binomial test at the significance
    (shared among ``tests``) explains, so a quantile that is high by chance (a few slow requests
    on a shared machine) is not a regression."""
    needed = rules.needed(quantile)
    counts = f"canary {canary_total} requests, baseline {base_total}"
    if min(canary_total, base_total) < needed:
        why = f"not evaluated: too few requests ({counts}; at least {needed} each)"
        return _not_evaluated(name, source, canary, base, None, why, route, False, None)
    if canary is None or base is None or not math.isfinite(canary) or not math.isfinite(base):
        why = f"not evaluated: no {name.split()[0]} to compare (canary {canary}, baseline {base})"
        return _not_evaluated(name, source, canary, base, None, why, route, False, None)
    allowed = max(base * (1 + rules.max_latency_increase), base + rules.latency_slack)
    alpha = rules.significance / max(1, tests)
    slow = min(canary_total, max(0, round(above(allowed))))
    share = 1 - quantile
    p = binomial_tail(slow, canary_total, share)
    ratio = canary / base if base > 0 else math.inf
    shown = (
        f"{canary * 1000:.1f}ms vs {base * 1000:.1f}ms ({ratio:.2f}x; {counts}); limit "
        f"+{rules.max_latency_increase * 100:g}% or +{rules.latency_slack * 1000:g}ms: "
        f"{allowed * 1000:.1f}ms; {slow} canary requests above it, expected at most "
        f"{share * 100:g}%: binomial p = {p:.3g}"
    )
    limit = f"{alpha:.3g} ({rules.significance:g} over {tests} comparisons)"
    verdict = FAIL if canary > allowed and p < alpha else PASS
    sign = "<" if verdict == FAIL else ">="
    return GateCheck(
        name, source, canary, allowed, verdict, f"{shown} {sign} {limit}", baseline=base,
        route=route,
    )  # fmt: skip


def _not_evaluated(
    name: str,
    source: str,
    canary: float | None,
    base: float | None,
    threshold: float | None,
    why: str,
    route: str,
    required: bool,
    thresholds: Thresholds | None,
) -> GateCheck:
    verdict = NOT_EVALUATED
    if required:
        passing = thresholds is not None and thresholds.no_traffic == PASS
        verdict = PASS if passing else FAIL
        why += " (passing: no_traffic=pass)" if passing else " (required before a promotion)"
    limit = math.nan if threshold is None else threshold
    return GateCheck(
        name, source, canary, limit, verdict, why, baseline=base, route=route,
        unmeasured=verdict == FAIL,
    )  # fmt: skip


# Prometheus


def prometheus_checks(
    base_url: str,
    canary: str,
    live: str,
    thresholds: Thresholds,
    rules: Baseline,
    *,
    timeout: float = 10.0,
    transport: httpx.BaseTransport | None = None,
) -> list[GateCheck]:
    """The comparisons of ``canary`` with ``live`` over ``thresholds.window``, from Prometheus.

    Queries (instant, both colours at once): requests and 5xx per colour and route
    (``increase()``, rounded to whole requests), and p95 and p99 per colour and route and per
    colour. A route label missing from the metrics means overall comparisons only. When
    Prometheus fails, one failed check says why (the gate fails closed)."""
    check_colour(canary)
    check_colour(live)
    window = thresholds.window
    plan = {
        "total": requests_by_query(window, errors=False),
        "errors": requests_by_query(window, errors=True),
        "buckets": buckets_query(window),
    }
    for quantile, _ in QUANTILES:
        plan[f"{quantile}/route"] = quantile_by_query(quantile, window, by_route=True)
        plan[f"{quantile}/all"] = quantile_by_query(quantile, window, by_route=False)
    answers: dict[str, list[Sample]] = {}
    for key, query in plan.items():
        try:
            answers[key] = instant_query(base_url, query, timeout, transport=transport)
        except PrometheusError as error:
            return [GateCheck(ERROR_VS_BASELINE, query, None, math.nan, FAIL, str(error))]
    totals = _by_colour_route(answers["total"])
    errors = _by_colour_route(answers["errors"])

    def counts(colour: str, route: str | None) -> Counts:
        def pick(found: Mapping[tuple[str, str], float]) -> int:
            values = [v for (c, r), v in found.items() if c == colour and route in (None, r)]
            return round(sum(v for v in values if math.isfinite(v)))

        total = pick(totals)
        return Counts(total, min(total, pick(errors)))

    routes = sorted({r for (_, r), v in totals.items() if r and v > 0})
    compared = [OVERALL, *routes]
    sides = [
        min(counts(canary, None if r == OVERALL else r).total,
            counts(live, None if r == OVERALL else r).total)
        for r in compared
    ]  # fmt: skip
    tests = rules.tests(sides)
    buckets: dict[tuple[str, str | None], list[tuple[float, float]]] = {}
    for sample in answers["buckets"]:
        labels = sample.labels
        for key in (
            (labels.get("colour", ""), labels.get("route", "")),
            (labels.get("colour", ""), None),
        ):
            buckets.setdefault(key, []).append((_le(labels.get("le", "")), sample.value))
    checks: list[GateCheck] = []
    for route in compared:
        key = None if route == OVERALL else route
        c, b = counts(canary, key), counts(live, key)
        checks.append(
            error_check(
                c,
                b,
                rules,
                tests=tests,
                source=f"{plan['total']} ; {plan['errors']}",
                route=route,
                required=route == OVERALL,
                thresholds=thresholds,
            )
        )
        for quantile, name in QUANTILES:
            query = plan[f"{quantile}/{'all' if route == OVERALL else 'route'}"]
            found = _by_colour_route(
                answers[f"{quantile}/{'all' if route == OVERALL else 'route'}"]
            )
            checks.append(
                latency_check(
                    name,
                    quantile,
                    found.get((canary, route)),
                    found.get((live, route)),
                    c.total,
                    b.total,
                    rules,
                    above=_above(buckets.get((canary, key), [])),
                    tests=tests,
                    source=f"{query} ; {plan['buckets']}",
                    route=route,
                )
            )
    return checks


def _le(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _above(pairs: Iterable[tuple[float, float]]) -> Above:
    """From cumulative bucket counts (le, count; several series summed per le): how many
    requests took longer than ``seconds``, linear inside a bucket (as ``histogram_quantile``)."""
    summed: dict[float, float] = {}
    for le, count in pairs:
        if not math.isnan(le) and math.isfinite(count):
            summed[le] = summed.get(le, 0.0) + count
    cumulative = sorted(summed.items())

    def above(seconds: float) -> float:
        if not cumulative:
            return 0.0
        total = cumulative[-1][1]
        lower, below = 0.0, 0.0
        for le, count in cumulative:
            if seconds < le:
                if math.isinf(le):
                    return total - below
                within = (seconds - lower) / (le - lower) if le > lower else 1.0
                return total - (below + (count - below) * within)
            lower, below = le, count
        return total - below

    return above


def _by_colour_route(samples: Iterable[Sample]) -> dict[tuple[str, str], float]:
    return {(s.labels.get("colour", ""), s.labels.get("route", "")): s.value for s in samples}


# Probes


def probe_checks(
    canary: Sequence[ProbeSample],
    base: Sequence[ProbeSample],
    thresholds: Thresholds,
    rules: Baseline,
    *,
    target: str,
) -> list[GateCheck]:
    """The comparisons of the canary's probes with the baseline's, probed alike over the same
    window: the error rate (every answer that is not 2xx, and every transport error), and the
    nearest-rank p95 and p99 of the answered probes. One route: what was probed."""
    source = f"GET {target}: {len(canary)} canary probes, {len(base)} baseline probes"
    c = Counts(len(canary), sum(1 for s in canary if not s.ok))
    b = Counts(len(base), sum(1 for s in base if not s.ok))
    checks = [
        error_check(
            c,
            b,
            rules,
            tests=rules.tests([min(c.total, b.total)]),
            source=source,
            required=True,
            thresholds=thresholds,
        )
    ]
    canary_seconds = [s.seconds for s in canary if s.status is not None]
    base_seconds = [s.seconds for s in base if s.status is not None]

    def above(seconds: float) -> float:
        return sum(1 for value in canary_seconds if value > seconds)

    for quantile, name in QUANTILES:
        checks.append(
            latency_check(
                name,
                quantile,
                p95_nearest_rank(canary_seconds, quantile),
                p95_nearest_rank(base_seconds, quantile),
                len(canary_seconds),
                len(base_seconds),
                rules,
                above=above,
                tests=rules.tests([min(len(canary_seconds), len(base_seconds))]),
                source=source,
            )
        )
    return checks
