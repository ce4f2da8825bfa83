"""Canary analysis against the baseline without Docker: the statistical rules (allowed, refused,
too few requests), the gate's treatment of "not evaluated", the Prometheus comparisons per route
(answers from a local transport) and the probes' comparison."""

from __future__ import annotations

import json
import math
import re
from statistics import NormalDist
from typing import Any

import httpx
import pytest
from conftest import load_group_data, prometheus

from bgdeploy.checks import baseline, gate, window
from bgdeploy.checks.baseline import Baseline, Counts, error_check, fisher_one_sided, latency_check
from bgdeploy.core import settings
from bgdeploy.core.errors import ConfigError
from bgdeploy.strategies import canary

RULES = Baseline(min_requests=100, significance=0.01, max_latency_increase=0.2, latency_slack=0.002)


# Fisher's exact test, one-sided


def test_fisher_matches_the_hypergeometric_tail_by_hand() -> None:
    # 3 errors of 10 on the canary, none of 10 on the baseline: all 3 errors fell on the
    # canary, C(17,7) / C(20,10) = 19448 / 184756.
    assert fisher_one_sided(3, 10, 0, 10) == pytest.approx(19448 / 184756)
    # The whole distribution sums to 1: P(X >= 0) with some errors on the canary side.
    assert fisher_one_sided(1, 50, 4, 50) <= 1.0
    assert fisher_one_sided(0, 50, 4, 50) == 1.0  # no canary error: nothing to explain


def test_fisher_is_small_only_when_the_canary_has_more_errors() -> None:
    assert fisher_one_sided(25, 100, 0, 100) < 1e-6
    assert fisher_one_sided(5, 100, 5, 100) > 0.5  # equal rates
    assert fisher_one_sided(1, 100, 10, 100) > 0.99  # the canary better than the baseline
    # Large counts stay finite and exact enough (log space).
    assert 0.0 <= fisher_one_sided(600, 50_000, 500, 50_000) < 0.01


@pytest.mark.parametrize(
    "args", [(-1, 10, 0, 10), (11, 10, 0, 10), (1, 10, 3, 2), (1.5, 10, 0, 10), (True, 1, 0, 1)]
)
def test_fisher_refuses_counts_that_are_not_counts(args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError):
        fisher_one_sided(*args)


# The error-rate comparison


def test_error_rate_like_the_baseline_is_allowed() -> None:
    check = error_check(Counts(400, 3), Counts(400, 2), RULES, tests=1, source="q")
    assert check.verdict == gate.PASS and check.passed
    assert check.value == pytest.approx(3 / 400) and check.baseline == pytest.approx(2 / 400)
    assert "canary 3/400 errors, baseline 2/400" in check.reason
    assert "one-sided Fisher exact p = " in check.reason and ">= 0.01" in check.reason


def test_error_rate_well_above_the_baseline_is_refused() -> None:
    check = error_check(Counts(120, 30), Counts(120, 0), RULES, tests=1, source="q", route="x")
    assert check.verdict == gate.FAIL and check.failed
    assert check.route == "x" and check.threshold == 0.01
    assert re.search(r"p = [0-9.e-]+ < 0\.01 \(0\.01 over 1 comparisons\)", check.reason)


def test_the_significance_is_shared_among_the_comparisons() -> None:
    # p of 8/200 vs 1/200 is about 0.019: under 0.05 alone, not under 0.05 over 5 comparisons.
    rules = Baseline(min_requests=100, significance=0.05)
    p = fisher_one_sided(8, 200, 1, 200)
    assert 0.01 < p < 0.05
    assert error_check(Counts(200, 8), Counts(200, 1), rules, tests=1, source="q").failed
    shared = error_check(Counts(200, 8), Counts(200, 1), rules, tests=5, source="q")
    assert shared.passed and shared.threshold == pytest.approx(0.01)


def test_too_few_requests_is_not_evaluated_never_a_pass() -> None:
    for canary_side, base_side in (
        (Counts(99, 50), Counts(500, 0)),
        (Counts(500, 0), Counts(3, 0)),
    ):
        check = error_check(canary_side, base_side, RULES, tests=1, source="q", route="r")
        assert check.verdict == gate.NOT_EVALUATED
        assert not check.passed and not check.failed
        assert (
            "not evaluated: too few requests" in check.reason
            and "at least 100 each" in check.reason
        )


def test_the_overall_comparison_is_required_like_traffic() -> None:
    check = error_check(Counts(20, 0), Counts(20, 0), RULES, tests=1, source="q", required=True)
    assert check.failed and "required before a promotion" in check.reason
    lenient = gate.Thresholds(no_traffic="pass")
    check = error_check(
        Counts(20, 0), Counts(20, 0), RULES, tests=1, source="q", required=True, thresholds=lenient
    )
    assert check.passed and "no_traffic=pass" in check.reason


# The latency comparison


def p95(canary: float, base: float, slow: int, total: int = 300, tests: int = 1) -> gate.GateCheck:
    """The p95 comparison, ``slow`` of the canary's ``total`` requests above the limit."""
    return latency_check(
        "p95 vs baseline", 0.95, canary, base, total, total, RULES,
        above=lambda _: slow, tests=tests, source="q",
    )  # fmt: skip


def test_binomial_tail_by_hand() -> None:
    assert baseline.binomial_tail(0, 10, 0.05) == 1.0
    assert baseline.binomial_tail(2, 2, 0.5) == pytest.approx(0.25)
    assert baseline.binomial_tail(1, 3, 0.5) == pytest.approx(7 / 8)
    assert baseline.binomial_tail(4, 3, 0.5) == 0.0


def test_latency_within_the_allowed_increase_is_allowed() -> None:
    check = p95(0.115, 0.1, slow=10)
    assert check.passed and check.threshold == pytest.approx(0.12)
    assert "115.0ms vs 100.0ms (1.15x" in check.reason
    assert "limit +20% or +2ms: 120.0ms" in check.reason


def test_latency_forty_percent_above_is_refused() -> None:
    # 60 of 300 canary requests above the limit, where a p95 at the limit allows 5 % (15).
    check = p95(0.14, 0.1, slow=60)
    assert check.failed and check.value == 0.14 and check.baseline == 0.1
    assert "(1.40x" in check.reason and "60 canary requests above it" in check.reason
    assert re.search(r"binomial p = [0-9.e-]+ < 0\.01", check.reason)


def test_a_quantile_high_by_chance_is_not_a_regression() -> None:
    # p95 estimated 23 % above the baseline's (a few slow requests on a shared machine), but
    # 18 of 241 above the limit is what a p95 at the limit gives often enough.
    check = latency_check(
        "p95 vs baseline", 0.95, 0.1234, 0.1002, 241, 235, RULES,
        above=lambda _: 18, tests=9, source="q",
    )  # fmt: skip
    assert check.passed, check.reason


def test_a_small_difference_in_seconds_never_fails() -> None:
    # 4 ms -> 6 ms is +50 %, but not over the 2 ms slack.
    assert p95(0.006, 0.004, slow=100).passed
    assert p95(0.0065, 0.004, slow=100).failed
    # A 21 ms median 40 % slower is over it (+20 % is 4.2 ms there): the relative margin rules.
    assert p95(0.0294, 0.021, slow=100).failed


def test_a_quantile_needs_requests_above_it() -> None:
    assert RULES.needed() == 100 and RULES.needed(0.95) == 100 and RULES.needed(0.99) == 500
    assert Baseline(min_requests=50).needed(0.95) == 100
    check = latency_check(
        "p99 vs baseline", 0.99, 5.0, 0.1, 400, 400, RULES, above=lambda _: 400, tests=1,
        source="q",
    )  # fmt: skip
    assert check.verdict == gate.NOT_EVALUATED and "at least 500 each" in check.reason
    missing = latency_check(
        "p95 vs baseline", 0.95, math.nan, 0.1, 400, 400, RULES, above=lambda _: 0, tests=1,
        source="q",
    )  # fmt: skip
    assert missing.verdict == gate.NOT_EVALUATED and "no p95 to compare" in missing.reason


def test_requests_above_a_limit_from_cumulative_buckets() -> None:
    one = [(0.1, 50.0), (0.2, 90.0), (math.inf, 100.0)]
    above = baseline._above(one + one)  # two series (two routes), summed per le
    # 100 under 0.1 s, 180 under 0.2 s, 200 in all; linear inside a bucket.
    assert above(0.1) == pytest.approx(100) and above(0.15) == pytest.approx(60)
    assert above(0.05) == pytest.approx(150) and above(5.0) == pytest.approx(20)
    assert baseline._above([])(0.1) == 0.0


@pytest.mark.parametrize(
    ("key", "value"),
    [("min_requests", 0), ("significance", 0.0), ("significance", 0.9), ("latency_slack", -1)],
)
def test_bad_rules_are_refused(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        Baseline(**{key: value})


# The gate with comparisons


def test_not_evaluated_neither_passes_nor_fails_the_gate() -> None:
    ok = gate.GateCheck("error rate", "q", 0.0, 0.01, gate.PASS, "0 <= 0.01")
    skipped = gate.GateCheck("p99 vs baseline", "q", None, math.nan, gate.NOT_EVALUATED, "few")
    bad = gate.GateCheck("p95 vs baseline", "q", 0.2, 0.12, gate.FAIL, "x", baseline=0.1)
    assert gate.gate_result([ok, skipped]).passed
    assert not gate.gate_result([skipped]).passed  # nothing passed: never promote
    assert not gate.gate_result([ok, skipped, bad]).passed
    lines = gate.gate_result([ok, skipped, bad], "prometheus").explain()
    assert lines[0] == "gate FAILED (prometheus): 1 of 3 checks failed (1 not evaluated)"
    assert "  FAIL p95 vs baseline: 200.0ms (baseline 100.0ms): x" in lines
    assert "  NOT EVALUATED p99 vs baseline: none (baseline none): few" in lines
    assert lines.count("       q") == 1  # a query shared by several checks is shown once
    data = bad.to_dict()
    assert (data["baseline"], data["route"], data["threshold"]) == (0.1, "", 0.12)
    assert "baseline" not in ok.to_dict()  # the absolute checks' journal form is unchanged
    assert json.dumps(skipped.to_dict())  # NaN threshold journaled as "NaN"


def test_summary_names_the_failing_route() -> None:
    bad = gate.GateCheck("error rate vs baseline", "q", 0.25, 0.01, gate.FAIL, "why", route="f")
    ok = gate.GateCheck("error rate", "q", 0.0, 0.01, gate.PASS, "0 <= 0.01")
    result = gate.gate_result([ok, bad], "prometheus")
    assert (
        canary.summary(result) == "gate FAILED (prometheus): error rate vs baseline [route f]: why"
    )


# Prometheus


def series(**values: float) -> list[tuple[dict[str, str], float]]:
    """``green_home=120.0`` -> ({colour: green, route: home}, 120.0)."""
    out = []
    for key, value in values.items():
        colour, _, route = key.partition("_")
        out.append(({"colour": colour, "route": route} if route else {"colour": colour}, value))
    return out


def buckets(**values: tuple[int, int]) -> list[tuple[dict[str, str], float]]:
    """``green_home=(fast, slow)``: ``fast`` requests under 0.1 s, ``slow`` under 1 s."""
    out = []
    for key, (fast, slow) in values.items():
        colour, _, route = key.partition("_")
        for le, count in (("0.1", fast), ("1", fast + slow), ("+Inf", fast + slow)):
            out.append(({"colour": colour, "route": route, "le": le}, float(count)))
    return out


def answers(**changes: Any) -> dict[str, Any]:
    base = {
        'status=~"5.."': series(
            green_home=0.0, blue_home=0.0, green_features=30.2, blue_features=0.0
        ),
        "sum by (colour, route) (increase": series(
            green_home=150.4, blue_home=149.6, green_features=120.0, blue_features=118.0
        ),
        "histogram_quantile(0.95, sum by (colour, route, le)": series(
            green_home=0.1, blue_home=0.1, green_features=0.05, blue_features=0.05
        ),
        "histogram_quantile(0.99, sum by (colour, route, le)": series(
            green_home=0.2, blue_home=0.2, green_features=0.1, blue_features=0.1
        ),
        "histogram_quantile(0.5, sum by (colour, route, le)": series(
            green_home=0.05, blue_home=0.05, green_features=0.03, blue_features=0.03
        ),
        "histogram_quantile(0.5, sum by (colour, le)": series(green=0.04, blue=0.04),
        "histogram_quantile(0.95, sum by (colour, le)": series(green=0.09, blue=0.09),
        "histogram_quantile(0.99, sum by (colour, le)": series(green=0.19, blue=0.19),
        "sum by (colour, route, le)": buckets(green_home=(140, 10), blue_home=(140, 10)),
    }
    return {**base, **changes}


def test_prometheus_comparisons_per_route_find_the_broken_route() -> None:
    checks = baseline.prometheus_checks(
        "http://prometheus", "green", "blue", gate.Thresholds(window_seconds=30), RULES,
        transport=prometheus(answers()),
    )  # fmt: skip
    found = {(c.name, c.route): c for c in checks}
    overall = found[("error rate vs baseline", "")]
    assert "canary 30/270 errors, baseline 0/268" in overall.reason and overall.failed
    features = found[("error rate vs baseline", "features")]
    assert features.failed and "canary 30/120 errors, baseline 0/118" in features.reason
    assert "over 9 comparisons" in features.reason  # errors, p50, p95 of 3 (p99: too few)
    assert found[("error rate vs baseline", "home")].passed
    assert found[("p95 vs baseline", "home")].passed
    assert found[("p99 vs baseline", "home")].verdict == gate.NOT_EVALUATED  # 150 < 500
    assert "increase(http_requests_total" in overall.query_or_probe
    assert 'colour=~"blue|green"' in overall.query_or_probe


def test_prometheus_comparisons_see_a_slower_release() -> None:
    slower = answers(**{
        'status=~"5.."': series(green_home=0.0, blue_home=0.0),
        "sum by (colour, route) (increase": series(green_home=300.0, blue_home=300.0),
        "histogram_quantile(0.95, sum by (colour, route, le)": series(
            green_home=0.14, blue_home=0.1
        ),
        "histogram_quantile(0.95, sum by (colour, le)": series(green=0.14, blue=0.1),
        "histogram_quantile(0.5, sum by (colour, route, le)": series(
            green_home=0.07, blue_home=0.05
        ),
        "histogram_quantile(0.5, sum by (colour, le)": series(green=0.07, blue=0.05),
        "sum by (colour, route, le)": buckets(green_home=(200, 100), blue_home=(285, 15)),
    })  # fmt: skip
    checks = baseline.prometheus_checks(
        "http://prometheus", "green", "blue", gate.Thresholds(window_seconds=30), RULES,
        transport=prometheus(slower),
    )  # fmt: skip
    failed = sorted((c.name, c.route) for c in checks if c.failed)
    assert failed == [
        ("p50 vs baseline", ""),
        ("p50 vs baseline", "home"),
        ("p95 vs baseline", ""),
        ("p95 vs baseline", "home"),
    ]


def test_metrics_without_routes_are_compared_overall() -> None:
    plain = answers(**{
        'status=~"5.."': series(green=0.0, blue=0.0),
        "sum by (colour, route) (increase": series(green=200.0, blue=200.0),
    })  # fmt: skip
    checks = baseline.prometheus_checks(
        "http://prometheus", "green", "blue", gate.Thresholds(window_seconds=30), RULES,
        transport=prometheus(plain),
    )  # fmt: skip
    assert {c.route for c in checks} == {""}
    assert [c.name for c in checks] == [
        "error rate vs baseline",
        "p50 vs baseline",
        "p95 vs baseline",
        "p99 vs baseline",
    ]


def test_prometheus_trouble_fails_the_comparison() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    checks = baseline.prometheus_checks(
        "http://prometheus", "green", "blue", gate.Thresholds(), RULES,
        transport=httpx.MockTransport(refuse),
    )  # fmt: skip
    assert len(checks) == 1 and checks[0].failed and "unreachable" in checks[0].reason


# Probes


def probes(count: int, seconds: float, errors: int = 0) -> list[gate.ProbeSample]:
    return [
        gate.ProbeSample(i * 0.1, seconds, status=500 if i < errors else 200) for i in range(count)
    ]


def test_probes_of_both_colours_are_compared_alike() -> None:
    thresholds = gate.Thresholds()
    same = baseline.probe_checks(probes(200, 0.1), probes(200, 0.1), thresholds, RULES, target="t")
    assert [c.verdict for c in same] == [gate.PASS, gate.PASS, gate.PASS, gate.NOT_EVALUATED]
    assert [c.name for c in same[1:]] == ["p50 vs baseline", "p95 vs baseline", "p99 vs baseline"]
    assert "0 canary requests above it" in same[2].reason
    assert same[0].query_or_probe == "GET t: 200 canary probes, 200 baseline probes"
    slow = baseline.probe_checks(probes(200, 0.15), probes(200, 0.1), thresholds, RULES, target="t")
    assert slow[1].failed and slow[2].failed and slow[2].value == 0.15
    broken = baseline.probe_checks(
        probes(200, 0.1, errors=20), probes(200, 0.1), thresholds, RULES, target="t"
    )
    assert broken[0].failed
    few = baseline.probe_checks(probes(30, 0.1), probes(30, 0.1), thresholds, RULES, target="t")
    assert few[0].failed and "too few requests" in few[0].reason  # required: never a pass


# Settings


def test_settings_defaults_and_the_sandbox() -> None:
    prod = settings.from_data(load_group_data("prod"), "prod")
    assert (prod.canary_baseline, prod.canary_min_requests) == (True, 100)
    assert (prod.canary_significance, prod.canary_max_latency_increase) == (0.01, 0.2)
    assert prod.canary_latency_slack == 0.002
    rules = canary.baseline_rules(prod)
    assert rules == RULES
    sandbox = settings.from_data(load_group_data("sandbox"), "sandbox")
    assert sandbox.canary_min_requests == 50
    # The window: evaluated every 30 s in prod (10 looks in 5 minutes), every 5 s here.
    assert canary.window_rules(prod) == window.WindowRules(300, 30, 3, 100)
    assert canary.window_rules(sandbox) == window.WindowRules(20, 5, 3, 50)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("canary_min_requests", 0),
        ("canary_min_requests", 2.5),
        ("canary_significance", 0.9),
        ("canary_max_latency_increase", -0.1),
        ("canary_baseline", "yes"),
        ("canary_interval", 0),
        ("canary_interval", "often"),
        ("canary_failure_limit", 0),
        ("canary_failure_limit", 1.5),
    ],
)
def test_bad_canary_settings_are_refused_naming_the_key(key: str, value: Any) -> None:
    data = {**load_group_data("prod"), key: value}
    with pytest.raises(ConfigError, match=key):
        settings.from_data(data, "prod")


def spread(count: int, median: float, sigma: float = 0.5) -> list[gate.ProbeSample]:
    """``count`` probes whose latencies follow a log-normal of ``median`` and ``sigma``
    (evenly spaced quantiles: the same numbers every run)."""
    normal = NormalDist()
    return [
        gate.ProbeSample(i * 0.1, median * math.exp(sigma * normal.inv_cdf((i + 0.5) / count)),
                         status=200)
        for i in range(count)
    ]  # fmt: skip


def test_forty_percent_slower_on_every_request_fails_the_median_not_only_the_tail() -> None:
    """The rule's power: 300 canary requests, each 40 % slower than the baseline's 3000 (a
    wide spread, as on a loaded machine: sigma 0.7), are sent back by the p50 comparison; the
    p95 alone would not (about 8 % of the canary above the baseline's p95 + 20 %, where 5 %
    is allowed: not conclusive out of 300)."""
    base = spread(3000, 0.05, 0.7)
    slower = [
        gate.ProbeSample(s.started, s.seconds * 1.4, status=200) for s in spread(300, 0.05, 0.7)
    ]
    checks = {c.name: c for c in baseline.probe_checks(slower, base, gate.Thresholds(), RULES,
                                                       target="t")}  # fmt: skip
    assert checks["p50 vs baseline"].failed, checks["p50 vs baseline"].reason
    assert not checks["p95 vs baseline"].failed, checks["p95 vs baseline"].reason
    healthy = baseline.probe_checks(
        spread(300, 0.05, 0.7), base, gate.Thresholds(), RULES, target="t"
    )
    assert not [c for c in healthy if c.failed]
