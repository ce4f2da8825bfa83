"""Canary deploys without Docker: the split's nginx configuration, the percentage, the gate's
source and the decisions (promote, send back, what to notify)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import load_group_data

from bgdeploy import commands
from bgdeploy.checks import gate
from bgdeploy.core import render, settings, windows
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.release_report import HostOutcome, ReleaseReport
from bgdeploy.strategies import canary, deploying


def load(env: str = "prod") -> settings.Settings:
    """group_data/all.py and ENV.py, as pyinfra merges them, as settings."""
    return settings.from_data(load_group_data(env), env)


@pytest.fixture
def s() -> Any:
    return load("prod")


def test_split_sends_the_share_to_the_canary_and_the_rest_to_live(s: Any) -> None:
    text = render.canary_split(s, "blue", "green", "5")
    split = re.search(
        r'split_clients "\$\{bgdeploy_client\}" \$bgdeploy_split \{(.*?)\}', text, re.S
    )
    assert split is not None
    assert [line.strip() for line in split.group(1).strip().splitlines()] == [
        "5% green;",
        "* blue;",
    ]
    assert text.startswith("# bgdeploy canary: green 5%")


def test_split_is_keyed_on_a_client_cookie_set_on_the_first_visit(s: Any) -> None:
    text = render.canary_split(s, "blue", "green", "2.5")
    # An existing, well-formed cookie keys the split; a first visit its own random request id.
    assert re.search(r'map \$cookie_bgdeploy_client \$bgdeploy_client \{\s*"~\^\[0-9a-f\]\{32\}\$" '
                     r"\$cookie_bgdeploy_client;\s*default \$request_id;", text)  # fmt: skip
    assert 'default "bgdeploy_client=$request_id; Path=/;' in text
    assert "HttpOnly; SameSite=Lax" in text
    assert "2.5% green;" in text
    # A pin cookie (testers) overrides the split, only for the two colours.
    assert re.search(r"map \$cookie_bgdeploy_colour \$bgdeploy_colour \{\s*blue blue;\s*"
                     r"green green;\s*default \$bgdeploy_split;", text)  # fmt: skip


def test_no_canary_split_defines_nothing(s: Any) -> None:
    text = render.canary_split(s)
    assert text.startswith("# bgdeploy canary: none")
    assert "split_clients" not in text and "map " not in text


def test_canary_live_include_keeps_the_live_mark_and_routes_by_the_split(s: Any) -> None:
    text = render.canary_live_include(s, "blue", "green", "5")
    # Status, rollback and the switch read the live colour from the first mark: still blue.
    assert render.colour_of_include(text) == "blue"
    assert f"root {s.app_root}/$bgdeploy_colour/public;" in text
    assert f"fastcgi_pass unix:/run/php/{s.app_name}-$bgdeploy_colour.sock;" in text
    assert "add_header Set-Cookie $bgdeploy_client_cookie always;" in text
    # The plain include is unchanged by the canary variant's template branch.
    plain = render.colour_include(s, "green")
    assert f"root {s.app_root}/green/public;" in plain and "$bgdeploy" not in plain


def test_site_includes_the_split_at_http_level_when_present(s: Any) -> None:
    site = render.nginx_site(s)
    assert "include /etc/nginx/bideshgomon/canary*.conf;" in site
    assert site.index("canary*.conf") < site.index("server {")


def test_canary_apply_is_the_switch_pattern(s: Any) -> None:
    command = commands.canary_apply("/n/live.conf", "/n/canary.conf", "LIVE", "SPLIT")
    assert command.startswith("{ [ -e /n/canary.conf ] || : > /n/canary.conf; }")
    assert "/n/live.conf.bgdeploy-new" in command and "/n/canary.conf.bgdeploy-new" in command
    assert command.index("nginx -t") < command.index("service nginx reload")
    assert "cp -p /n/canary.conf /n/canary.conf.bgdeploy-prev" in command


@pytest.mark.parametrize("value", [5, 0.5, "12.25", 99.99])
def test_percent_accepted(value: Any) -> None:
    assert 0 < canary.check_percent(value) < 100


@pytest.mark.parametrize("value", [0, 100, -1, 150, "five", 1.234, True, None])
def test_percent_refused(value: Any) -> None:
    with pytest.raises(ConfigError, match="--canary"):
        canary.check_percent(value)


def test_percent_text() -> None:
    assert [canary.percent_text(p) for p in (5.0, 2.5, 0.25)] == ["5", "2.5", "0.25"]


def test_thresholds_from_settings(s: Any) -> None:
    limits = canary.thresholds(s)
    assert (limits.max_error_rate, limits.max_p95_seconds, limits.max_5xx) == (0.01, 0.5, 0)
    assert limits.window_seconds == 300  # the runbook's 5 minutes in prod
    assert canary.thresholds(load("sandbox")).window_seconds == 20
    with pytest.raises(ConfigError, match="window_seconds"):
        canary.thresholds(dataclasses.replace(s, canary_window=2.5))


def _checks(*verdicts: str) -> gate.GateResult:
    return gate.gate_result(
        gate.GateCheck(f"c{i}", "q", 0.0, 0.0, verdict, "r") for i, verdict in enumerate(verdicts)
    )


def test_decide() -> None:
    assert canary.decide(_checks("pass", "pass", "pass")) == canary.PROMOTE
    assert canary.decide(_checks("pass", "fail", "pass")) == canary.SEND_BACK
    assert canary.decide(_checks()) == canary.SEND_BACK  # nothing checked: never promote


class FakeClock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waited: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waited.append(round(seconds, 6))
        self.now += seconds


def test_judge_asks_prometheus_when_configured(s: Any) -> None:
    clock = FakeClock()
    configured = dataclasses.replace(
        s, prometheus_url="http://127.0.0.1:9", canary_window=7, canary_interval=30
    )
    record = canary.judge(
        configured, "blue", "green", ["http://unused"], clock=clock, sleep=clock.sleep
    )
    assert clock.waited == [7]  # an interval longer than the window: one evaluation, at its end
    result = record.result
    assert result.source == "prometheus" and not result.passed
    assert result.checks[0].name == "prometheus answers"
    assert "unreachable" in result.checks[0].reason
    assert canary.decide(result) == canary.SEND_BACK  # fails safe
    assert record.state == "send back" and not record.early


def test_judge_evaluates_every_interval_and_sends_back_when_prometheus_is_silent(s: Any) -> None:
    clock = FakeClock()
    configured = dataclasses.replace(
        s, prometheus_url="http://127.0.0.1:9", canary_window=300, canary_interval=30
    )
    seen: list[dict[str, Any]] = []
    record = canary.judge(
        configured, "blue", "green", [], clock=clock, sleep=clock.sleep,
        report=lambda r: seen.append(r.event()),
    )  # fmt: skip
    # Three evaluations without an answer, 30 s apart: sent back at 90 s, not at 300 s.
    assert clock.waited == [30, 30, 30]
    assert record.early and record.state == "send back" and record.ended_at == 90
    assert "prometheus answers failed 3 evaluations in a row" in record.reason
    assert [e["state"] for e in seen] == ["watching", "watching", "send back"]
    assert [e["checks"][0]["failing"] for e in seen] == [1, 2, 3]


def test_judge_probes_the_colour_without_prometheus(s: Any) -> None:
    quick = dataclasses.replace(s, prometheus_url=None, canary_window=1, canary_probe_rate=3)
    result = canary.judge(quick, "blue", "green", ["http://127.0.0.1:9/api/health"]).result
    assert result.source == "probe" and not result.passed
    assert "GET the public port of 1 web hosts, cookie bgdeploy_colour=green: 3 probes" in (
        result.checks[0].query_or_probe
    )
    # Both colours probed alike: 3 probes each, compared (too few requests: the required
    # error comparison fails closed, the quantiles are not evaluated).
    compared = {c.name: c for c in result.checks if c.name.endswith("vs baseline")}
    assert "3 canary probes, 3 baseline probes" in compared["error rate vs baseline"].query_or_probe
    assert compared["error rate vs baseline"].failed
    assert "not evaluated: too few requests" in compared["error rate vs baseline"].reason
    assert compared["p95 vs baseline"].verdict == "not evaluated"


def test_judge_without_the_baseline_probes_the_canary_only(s: Any) -> None:
    quick = dataclasses.replace(
        s, prometheus_url=None, canary_window=1, canary_probe_rate=3, canary_baseline=False
    )
    result = canary.judge(quick, "blue", "green", ["http://127.0.0.1:9/api/health"]).result
    assert [c.name for c in result.checks] == ["error rate", "p95 latency", "5xx responses"]


def test_a_probe_waits_twice_the_p95_limit_at_least_five_seconds(s: Any) -> None:
    assert canary.probe_timeout(s) == 5.0  # prod: p95 0.5 s
    assert canary.probe_timeout(load("sandbox")) == 60.0  # the sandbox allows a p95 of 30 s


def test_probe_url() -> None:
    assert canary.probe_url("10.0.0.5", 8080, "/api/health") == "http://10.0.0.5:8080/api/health"
    assert canary.probe_url("::1", 8080, "/h") == "http://[::1]:8080/h"


def test_journal_entry_names_percent_verdict_and_gate(s: Any) -> None:
    result = _checks("fail")
    entry = canary.journal_entry(s, "web1", "green", 5.0, "rolled back", result, sha="a" * 40)
    assert entry.event == "canary" and entry.result == "rolled_back" and entry.colour == "green"
    assert entry.details["percent"] == 5.0 and entry.details["verdict"] == "rolled back"
    assert entry.details["gate"]["passed"] is False
    assert canary.journal_entry(s, "w", "green", 5, "promoted", None).result == "ok"


def _request(canary_pct: float | None) -> deploying.DeployRequest:
    window = windows.WindowDecision(True, (), None, False, datetime.now(UTC))
    return deploying.DeployRequest(
        env="prod", ref="v2", force=False, allow_destructive=False, reason=None,
        emergency_reason=None, window=window, strategy="blue-green", canary=canary_pct,
    )  # fmt: skip


def _report(*results: str) -> ReleaseReport:
    report = ReleaseReport(env="prod", ref="v2", run="r")
    for index, result in enumerate(results):
        report.hosts[f"web{index}"] = HostOutcome(f"web{index}", roles=["web"], result=result)
    return report


@pytest.mark.parametrize(
    ("pct", "results", "kind"),
    [
        (5.0, ("ok", "ok"), "promoted"),
        (None, ("ok", "ok"), "succeeded"),
        (5.0, ("rolled_back", "rolled_back"), "rolled_back"),
        (None, ("failed", "ok"), "failed"),
        (5.0, ("unchanged", "unchanged"), None),
    ],
)
def test_what_a_finished_deploy_notifies(pct: Any, results: tuple, kind: Any) -> None:
    assert deploying.outcome_kind(_request(pct), _report(*results)) == kind


def test_a_refused_deploy_notifies_nothing() -> None:
    report = _report("pending")
    report.refusal = {"kind": "lock", "message": "locked"}
    assert deploying.outcome_kind(_request(None), report) is None


def test_canary_request_checks_before_connecting() -> None:
    with pytest.raises(ConfigError, match="--canary"):
        deploying.check_request("sandbox", "v2", strategy="in-place", canary=5)
    with pytest.raises(ConfigError, match="--canary"):
        deploying.check_request("sandbox", "v2", strategy="blue-green", canary=120)


def test_announce_names_the_canary_and_skips_unset_receivers() -> None:
    report = _report("rolled_back", "rolled_back")
    for outcome in report.web_hosts:
        outcome.message = "canary 5% on green: gate FAILED (probe): 5xx responses: 3 > 0"
        outcome.failed_step = "canary"
    results = deploying.announce(_request(5.0), "rolled_back", report, environ={})
    assert [r.target for r in results] == [
        "slack:incidents",
        "slack:deployments",
        "pagerduty:trigger",
    ]
    assert all(r.ok and r.skipped for r in results)


def test_announce_rollback_never_raises() -> None:
    from bgdeploy.fleet import remote
    from bgdeploy.strategies.rollback import RollbackReport, announce_rollback

    report = RollbackReport("prod", "switch", "a" * 40, "blue", [remote.HostResult("web1", True)])
    results = announce_rollback("prod", "bideshgomon", report, environ={})
    assert {r.target for r in results} == {"slack:incidents", "slack:deployments"}
