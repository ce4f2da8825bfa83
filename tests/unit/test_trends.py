"""The canary's trends without Docker: the queue backlog and memory rules (backing up or not,
worked off, not evaluated), their queries against a Prometheus stand-in (an httpx transport),
Prometheus trouble (fail closed), the settings and the gate's use of them."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from conftest import load_group_data, prometheus

from bgdeploy.checks import gate, sources, trends
from bgdeploy.checks.trends import (
    MEMORY_VS_BASELINE,
    MIB,
    QUEUE_BACKLOG,
    Trends,
    memory_check,
    queue_check,
)
from bgdeploy.core import settings
from bgdeploy.core.errors import ConfigError
from bgdeploy.strategies import canary

RULES = Trends(max_queue_growth=100, max_memory_increase=0.5)


# The queue backlog rule


def test_a_queue_growing_through_the_window_is_backing_up() -> None:
    check = queue_check(10, 400, 8.5, RULES, source="q")
    assert check.name == QUEUE_BACKLOG and check.failed
    assert (check.value, check.threshold) == (390, 100)
    assert "10 pending at the start, 400 at the end: growth 390 (max 100)" in check.reason
    assert "trend +8.5 jobs/s: backing up" in check.reason


def test_growth_up_to_the_limit_passes() -> None:
    check = queue_check(10, 110, 3.0, RULES, source="q")
    assert check.passed and check.value == 100
    assert "not backing up" in check.reason
    assert queue_check(50, 0, -2.0, RULES, source="q").passed  # worked off


def test_a_burst_being_worked_off_is_not_a_backlog() -> None:
    # 300 more at the end than at the start, but falling since the burst: the workers keep up.
    check = queue_check(0, 300, -5.0, RULES, source="q")
    assert check.passed and "falling or flat: being worked off" in check.reason
    assert queue_check(0, 300, None, RULES, source="q").passed  # no trend: flat


def test_no_queue_series_is_not_evaluated() -> None:
    start = queue_check(None, 400, 1.0, RULES, source="q")
    assert start.verdict == gate.NOT_EVALUATED and not start.failed and not start.passed
    assert "no queue_jobs_pending at the start of the window" in start.reason
    end = queue_check(3, None, None, RULES, source="q")
    assert end.verdict == gate.NOT_EVALUATED and "at the end" in end.reason
    assert "at the start" in queue_check(math.nan, 3, 0.0, RULES, source="q").reason


# The memory rule


def test_memory_like_the_baseline_passes() -> None:
    check = memory_check(22 * MIB, 20 * MIB, RULES, source="q")
    assert check.name == MEMORY_VS_BASELINE and check.passed
    assert check.baseline == 20 * MIB and check.threshold == 30 * MIB
    assert check.reason == "22.0 MiB per worker vs 20.0 MiB (1.10x) <= the limit +50%: 30.0 MiB"
    assert check.to_dict()["baseline"] == 20 * MIB  # journaled as a comparison
    # A fresh pool warming up holds less than the warm live pool: never a regression.
    assert memory_check(8 * MIB, 20 * MIB, RULES, source="q").passed


def test_memory_well_above_the_baseline_fails() -> None:
    check = memory_check(84 * MIB, 20 * MIB, RULES, source="q")
    assert check.failed and check.value == 84 * MIB
    assert check.reason == "84.0 MiB per worker vs 20.0 MiB (4.20x) > the limit +50%: 30.0 MiB"
    lenient = Trends(max_memory_increase=4)
    assert memory_check(84 * MIB, 20 * MIB, lenient, source="q").passed


@pytest.mark.parametrize(("c", "b"), [(None, 20.0), (20.0, None), (math.nan, 20.0)])
def test_no_memory_to_compare_is_not_evaluated(c: float | None, b: float | None) -> None:
    check = memory_check(c, b, RULES, source="q")
    assert check.verdict == gate.NOT_EVALUATED
    assert "php_fpm_memory_anon_bytes" in check.reason


# Prometheus


def answers(**changes: Any) -> dict[str, Any]:
    base = {
        "deriv(queue_jobs_pending[45s])": [({}, 0.2)],
        "queue_jobs_pending offset 45s": [({}, 12.0)],
        "sum(max by (queue) (queue_jobs_pending))": [({}, 20.0)],
        "php_fpm_memory_anon_bytes": [
            ({"colour": "green"}, 12.0 * MIB),
            ({"colour": "blue"}, 15.0 * MIB),
        ],
    }
    return {**base, **changes}


def checks_of(found: dict[str, Any], **kwargs: Any) -> list[gate.GateCheck]:
    return trends.prometheus_trend_checks(
        "http://prom:9090", "green", "blue", 45, RULES, transport=prometheus(found), **kwargs
    )


def test_a_healthy_canary_passes_both_checks() -> None:
    queue, memory = checks_of(answers())
    assert (
        queue.passed
        and queue.value == 8
        and "12 pending at the start, 20 at the end" in (queue.reason)
    )
    assert memory.passed and (memory.value, memory.baseline) == (12.0 * MIB, 15.0 * MIB)
    # The queries are shown, each over the window.
    assert "offset 45s" in queue.query_or_probe and "deriv(" in queue.query_or_probe
    assert "avg_over_time(php_fpm_memory_anon_bytes" in memory.query_or_probe
    assert "[45s]" in memory.query_or_probe and "php_fpm_processes" in memory.query_or_probe


def test_a_backlog_and_a_memory_hog_fail() -> None:
    found = answers(
        **{
            "deriv(queue_jobs_pending[45s])": [({}, 9.0)],
            "sum(max by (queue) (queue_jobs_pending))": [({}, 450.0)],
            "php_fpm_memory_anon_bytes": [
                ({"colour": "green"}, 80.0 * MIB),
                ({"colour": "blue"}, 15.0 * MIB),
            ],
        }
    )
    queue, memory = checks_of(found)
    assert queue.failed and queue.value == 438
    assert memory.failed and "(5.33x) > the limit +50%: 22.5 MiB" in memory.reason
    result = gate.gate_result([queue, memory], "prometheus")
    assert not result.passed
    lines = "\n".join(result.explain())
    assert "FAIL queue backlog: 438 (max 100)" in lines
    assert "FAIL php-fpm memory vs baseline: 80.0 MiB (baseline 15.0 MiB): " in lines


def test_no_series_is_said_and_not_evaluated() -> None:
    found = answers(
        **{
            "deriv(queue_jobs_pending[45s])": [],
            "queue_jobs_pending offset 45s": [],
            "sum(max by (queue) (queue_jobs_pending))": [],
            "php_fpm_memory_anon_bytes": [({"colour": "blue"}, 15.0 * MIB)],
        }
    )
    queue, memory = checks_of(found)
    assert queue.verdict == memory.verdict == gate.NOT_EVALUATED
    assert "no queue_jobs_pending" in queue.reason and "canary none" in memory.reason


def test_prometheus_errors_fail_closed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    queue, memory = trends.prometheus_trend_checks(
        "http://prom:9090", "green", "blue", 45, RULES, transport=httpx.MockTransport(refuse)
    )
    assert queue.failed and "unreachable" in queue.reason
    assert memory.failed and memory.reason.startswith("not asked: ")

    def bad_data(request: httpx.Request) -> httpx.Response:
        body = {"status": "error", "errorType": "bad_data", "error": "parse error"}
        return httpx.Response(400, json=body)

    refused = trends.prometheus_trend_checks(
        "http://prom:9090", "green", "blue", 45, RULES, transport=httpx.MockTransport(bad_data)
    )
    assert all(c.failed and "bad_data: parse error" in c.reason for c in refused)


def test_colours_are_checked() -> None:
    with pytest.raises(ValueError, match="colour"):
        trends.prometheus_trend_checks("http://prom:9090", "red", "blue", 45, RULES)


# The rules' validation and the settings


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_queue_growth", -1), ("max_queue_growth", math.inf), ("max_memory_increase", "1"),
     ("max_memory_increase", True), ("max_memory_increase", -0.5)],
)  # fmt: skip
def test_bad_rules_are_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=f"canary setting {key} must be a number"):
        Trends(**{key: value})


def test_settings_defaults() -> None:
    prod = settings.from_data(load_group_data("prod"), "prod")
    assert (prod.canary_max_queue_growth, prod.canary_max_memory_increase) == (100, 0.5)
    assert canary.trend_rules(prod) == RULES == Trends()
    data = {**load_group_data("prod"), "canary_max_queue_growth": 20}
    assert canary.trend_rules(settings.from_data(data, "prod")).max_queue_growth == 20


@pytest.mark.parametrize(
    ("key", "value"),
    [("canary_max_queue_growth", -1), ("canary_max_memory_increase", "half"),
     ("canary_max_memory_increase", 101)],
)  # fmt: skip
def test_bad_settings_are_refused_naming_the_key(key: str, value: Any) -> None:
    data = {**load_group_data("prod"), key: value}
    with pytest.raises(ConfigError, match=key):
        settings.from_data(data, "prod")


@pytest.mark.parametrize("compared", [True, False])
def test_the_canary_gate_with_prometheus_makes_the_trend_checks(
    monkeypatch: pytest.MonkeyPatch, compared: bool
) -> None:
    data = {**load_group_data("prod"), "prometheus_url": "http://prom:9090"}
    one_look = {"canary_window": 45, "canary_interval": 45, "canary_baseline": compared}
    prod = settings.from_data({**data, **one_look}, "prod")
    passed = gate.GateCheck(gate.ERROR_RATE, "q", 0.0, 0.01, gate.PASS, "0 <= 0.01")
    monkeypatch.setattr(sources, "colour_numbers", lambda *a, **k: {})
    monkeypatch.setattr(
        sources, "evaluate_prometheus", lambda *a, **k: gate.gate_result([passed], "prometheus")
    )
    monkeypatch.setattr(sources.baseline_mod, "prometheus_checks", lambda *a, **k: [passed])
    real = trends.prometheus_trend_checks
    asked: list[tuple[Any, ...]] = []

    def stand_in(*args: Any, **kwargs: Any) -> list[gate.GateCheck]:
        asked.append(args)
        hog = [({"colour": "green"}, 9e9), ({"colour": "blue"}, 1e7)]
        return real(*args, transport=prometheus(answers(php_fpm_memory_anon_bytes=hog)), **kwargs)

    monkeypatch.setattr(trends, "prometheus_trend_checks", stand_in)
    result = canary.judge(prod, "blue", "green", [], sleep=lambda _: None).result
    assert asked == [("http://prom:9090", "green", "blue", 45, RULES)]
    names = [c.name for c in result.checks]
    assert names[-2:] == [QUEUE_BACKLOG, MEMORY_VS_BASELINE]
    assert len(names) == (4 if compared else 3)
    assert not result.passed and canary.decide(result) == canary.SEND_BACK
    # The probe gate (no Prometheus) makes no trend check.
    probing = settings.from_data({**data, "prometheus_url": None, "canary_window": 1}, "prod")
    checks = canary.judge(probing, "blue", "green", []).result.checks
    assert checks and QUEUE_BACKLOG not in [c.name for c in checks]
