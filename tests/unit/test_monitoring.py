"""Monitoring without Docker: the alert rules and Prometheus configuration rendered from
templates/prometheus, the Grafana dashboard in templates/grafana, the monitoring image's tag,
the state record, and the reader of the metrics text format (checked on the exposition the
sample app's /metrics gives)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from bgdeploy import sandbox
from bgdeploy.checks.gate import Thresholds
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.settings import ROOT
from bgdeploy.sandbox import image, monitoring

# The runbook's table: alert -> (threshold as written in the expression, for, severity).
RUNBOOK_TABLE = {
    "HighErrorRate": ("> 0.01", "2m", "critical"),
    "HighLatency": ("> 1.0", "3m", "warning"),
    "ApplicationDown": ("== 0", "1m", "critical"),
    "DatabaseConnectionHigh": ("> 80", "5m", "warning"),
    "QueueBacklog": ("> 1000", "10m", "warning"),
    "HighFailedJobs": ("> 0.1", "5m", "critical"),
    "CanaryDeploymentFailing": ("> 0.02", "1m", "critical"),
}


def alerts_of(text: str) -> dict[str, dict[str, str]]:
    """Each rule of a rendered rules file: its expression (one line), for and severity."""
    rules: dict[str, dict[str, str]] = {}
    for block in text.split("      - alert: ")[1:]:
        name, _, rest = block.partition("\n")
        expr = re.search(r"expr: (?:>-\n)?(.*?)\n        for:", rest, re.DOTALL)
        assert expr, block
        rules[name] = {
            "expr": " ".join(expr.group(1).split()),
            "for": re.search(r"\n        for: (\S+)", rest).group(1),  # type: ignore[union-attr]
            "severity": re.search(r"severity: (\S+)", rest).group(1),  # type: ignore[union-attr]
        }
    return rules


def test_runbook_rules_have_the_runbooks_thresholds_durations_and_severities() -> None:
    rules = alerts_of(monitoring.alert_rules(monitoring.RUNBOOK))
    assert list(rules) == list(monitoring.ALERTS) == list(RUNBOOK_TABLE)
    for name, (threshold, for_, severity) in RUNBOOK_TABLE.items():
        assert rules[name]["expr"].endswith(threshold), (name, rules[name]["expr"])
        assert rules[name]["for"] == for_, name
        assert rules[name]["severity"] == severity, name
    for rule in rules.values():
        assert 'job="bideshgomon"' in rule["expr"]


def test_rules_use_the_apps_metrics() -> None:
    rules = alerts_of(monitoring.alert_rules())
    assert 'status=~"5.."' in rules["HighErrorRate"]["expr"]
    assert "histogram_quantile(0.95" in rules["HighLatency"]["expr"]
    assert "http_request_duration_seconds_bucket" in rules["HighLatency"]["expr"]
    assert rules["ApplicationDown"]["expr"].startswith("up{")
    assert "max(database_connections" in rules["DatabaseConnectionHigh"]["expr"]
    assert "max(queue_jobs_pending" in rules["QueueBacklog"]["expr"]
    assert "rate(queue_jobs_failed_total" in rules["HighFailedJobs"]["expr"]
    assert "sum by (colour)" in rules["CanaryDeploymentFailing"]["expr"]
    assert all("[5m]" in rules[n]["expr"] for n in ("HighErrorRate", "HighFailedJobs"))


def test_error_rate_threshold_is_the_gates() -> None:
    assert monitoring.RUNBOOK.error_rate == Thresholds().max_error_rate
    strict = dataclasses.replace(monitoring.RUNBOOK, error_rate=0.005)
    rules = alerts_of(monitoring.alert_rules(strict))
    assert rules["HighErrorRate"]["expr"].endswith("> 0.005")
    assert 'summary: "Error rate above 0.5%"' in monitoring.alert_rules(strict)


def test_sandbox_rules_keep_thresholds_on_a_seconds_clock() -> None:
    runbook = alerts_of(monitoring.alert_rules(monitoring.RUNBOOK))
    fast = alerts_of(monitoring.alert_rules(monitoring.SANDBOX))
    for name in monitoring.ALERTS:
        assert fast[name]["for"].endswith("s") and int(fast[name]["for"][:-1]) <= 30, name
        threshold = RUNBOOK_TABLE[name][0]
        assert fast[name]["expr"].endswith(threshold)
        assert fast[name]["expr"] == runbook[name]["expr"].replace("[5m]", "[20s]")


def test_prometheus_config_scrapes_every_target_and_loads_the_rules() -> None:
    targets = [
        monitoring.ScrapeTarget("web1", "bgdeploy-x-web1:80"),
        monitoring.ScrapeTarget("web2", "bgdeploy-x-web2:80"),
    ]
    text = monitoring.prometheus_config(targets, monitoring.SANDBOX, env="sandbox")
    assert '- targets: ["bgdeploy-x-web1:80"]' in text
    assert 'host: "web2"' in text
    assert 'job_name: "bideshgomon"' in text
    assert "metrics_path: /metrics" in text
    assert '- "/etc/bgdeploy-monitoring/alert_rules.yml"' in text
    assert "scrape_interval: 2s" in text and "scrape_timeout: 2s" in text
    assert "evaluation_interval: 2s" in text


def test_prometheus_config_quotes_values_and_needs_a_target() -> None:
    hostile = monitoring.ScrapeTarget('web"1\n  - evil', "a:80")
    text = monitoring.prometheus_config([hostile])
    assert 'host: "web\\"1\\n  - evil"' in text
    assert "\n  - evil" not in text.replace("\\n", "")
    with pytest.raises(ConfigError, match="at least one web host"):
        monitoring.prometheus_config([])


DASHBOARD = ROOT / "templates" / "grafana" / "bideshgomon.json"
# Each panel of the dashboard, in its order, and the alerts whose thresholds it draws.
DRAWN = {
    "HTTP Request Rate": (),
    "Response Time": ("HighLatency",),
    "Error Rate": ("HighErrorRate", "CanaryDeploymentFailing"),
    "Database Performance": ("DatabaseConnectionHigh",),
    "Queue Status: pending jobs": ("QueueBacklog",),
    "Queue Status: failed jobs": ("HighFailedJobs",),
}


def test_grafana_dashboard_panels_query_prometheus_through_its_input() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [source] = dashboard["__inputs"]
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    reference = {"type": "prometheus", "uid": "${" + source["name"] + "}"}
    panels = dashboard["panels"]
    assert [panel["title"] for panel in panels] == list(DRAWN)
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] == "timeseries" and panel["description"], panel["title"]
        assert panel["datasource"] == reference, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == reference, panel["title"]
            assert f'job="{monitoring.RUNBOOK.job}"' in target["expr"], panel["title"]
            # Grafana's only variable here; the integration test replaces it with a window.
            assert set(re.findall(r"\$\w+", target["expr"])) <= {"$__rate_interval"}
            if "http_request" in target["expr"]:  # per colour: blue and green side by side
                assert "by (colour" in target["expr"], panel["title"]
                assert target["legendFormat"].startswith("{{colour}}"), panel["title"]
    assert "not by method or path" in panels[0]["description"]


def test_grafana_dashboard_draws_the_alert_rules_thresholds() -> None:
    rules = alerts_of(monitoring.alert_rules(monitoring.RUNBOOK))
    drawn_alerts = {alert for alerts in DRAWN.values() for alert in alerts}
    assert drawn_alerts == set(monitoring.ALERTS) - {"ApplicationDown"}  # up == 0: no line
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        alerts = DRAWN[panel["title"]]
        defaults = panel["fieldConfig"]["defaults"]
        base, *steps = defaults["thresholds"]["steps"]
        assert base["value"] is None, panel["title"]
        # Each rule's expression ends with "> threshold".
        expected = [float(rules[alert]["expr"].rpartition(">")[2]) for alert in alerts]
        assert [step["value"] for step in steps] == expected, panel["title"]
        assert expected == sorted(expected), panel["title"]  # Grafana wants steps rising
        assert defaults["custom"]["thresholdsStyle"]["mode"] == ("line" if alerts else "off")
        for alert in alerts:
            assert alert in panel["description"], (panel["title"], alert)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rate_window", "5 minutes", "rate_window must be a duration"),
        ("for_error_rate", "0s", "for_error_rate must be a duration"),
        ("error_rate", 5, "fraction"),
        ("p95_seconds", -1, "p95_seconds must be a finite number"),
        ("queue_backlog", float("nan"), "queue_backlog must be a finite number"),
        ("db_connections", True, "db_connections must be a number"),
        ("job", 'x"}', "job must be"),
    ],
)
def test_alert_settings_are_validated(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(monitoring.RUNBOOK, **{field: value})


def test_image_tag_follows_recipe_and_base(tmp_path: Path) -> None:
    recipe = tmp_path / "monitoring"
    shutil.copytree(monitoring.RECIPE_DIR, recipe)
    tag = monitoring.image_tag("bgdeploy/target:aaa", recipe)
    assert tag.startswith("bgdeploy/monitoring:")
    assert tag == monitoring.image_tag("bgdeploy/target:aaa", recipe)
    assert tag != monitoring.image_tag("bgdeploy/target:bbb", recipe)
    (recipe / "Dockerfile").write_text((recipe / "Dockerfile").read_text() + "# changed\n")
    assert tag != monitoring.image_tag("bgdeploy/target:aaa", recipe)


def test_recipe_installs_debians_prometheus_and_names_no_mirror() -> None:
    dockerfile = (monitoring.RECIPE_DIR / "Dockerfile").read_text()
    assert "apt-get install -y --no-install-recommends prometheus" in dockerfile
    assert "FROM ${BASE}" in dockerfile
    assert not re.search(r"https?://", dockerfile)
    assert "prometheus" not in (image.RECIPE_DIR / "packages.txt").read_text()


def test_state_records_prometheus_and_old_states_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    directory = tmp_path / "sandboxes" / "mon"
    directory.mkdir(parents=True)
    raw = {"name": "mon", "network": "bgdeploy-mon", "image": "t", "directory": str(directory)}
    (directory / "state.json").write_text(json.dumps(raw))
    assert sandbox.load_state("mon").prometheus_url is None
    record = {"container": "c", "image": "i", "ports": {"prometheus": 9}, "url": "http://x:9"}
    (directory / "state.json").write_text(json.dumps({**raw, "monitoring": record}))
    state = sandbox.load_state("mon")
    assert state.prometheus_url == "http://x:9"
    assert state.monitoring["ports"] == {"prometheus": 9}


def test_write_config_renders_both_files_readable_by_prometheus(tmp_path: Path) -> None:
    state = sandbox.SandboxState("mon", "n", "i", str(tmp_path))
    state.hosts = [
        sandbox.SandboxHost("web1", "bgdeploy-mon-web1", ["web"], {"ssh": 1, "http": 2}),
        sandbox.SandboxHost("db", "bgdeploy-mon-db", ["db"], {"ssh": 3}),
    ]
    directory = monitoring.write_config(state)
    config = (directory / monitoring.CONFIG_FILE).read_text()
    assert '["bgdeploy-mon-web1:80"]' in config and "bgdeploy-mon-db" not in config
    assert (directory / monitoring.RULES_FILE).read_text() == monitoring.alert_rules(
        monitoring.SANDBOX
    )
    assert directory.stat().st_mode & 0o777 == 0o755
    assert (directory / monitoring.RULES_FILE).stat().st_mode & 0o777 == 0o644


# What RequestMetrics::render (sandbox/app) answers: both colours and every route, zero-valued
# 200/500/503 series, cumulative buckets, the queue gauge and the database numbers.
APP_EXPOSITION = """\
# HELP http_requests_total HTTP requests answered by the application, by status, colour and route.
# TYPE http_requests_total counter
http_requests_total{colour="blue",route="home",status="200"} 42
http_requests_total{colour="blue",route="home",status="500"} 3
http_requests_total{colour="blue",route="home",status="503"} 0
http_requests_total{colour="green",route="home",status="200"} 0
http_requests_total{colour="green",route="home",status="500"} 0
http_requests_total{colour="green",route="home",status="503"} 0
# HELP http_request_duration_seconds Time from the start of a request until its response was ready.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{colour="blue",route="home",le="0.005"} 0
http_request_duration_seconds_bucket{colour="blue",route="home",le="0.01"} 5
http_request_duration_seconds_bucket{colour="blue",route="home",le="0.025"} 30
http_request_duration_seconds_bucket{colour="blue",route="home",le="0.05"} 40
http_request_duration_seconds_bucket{colour="blue",route="home",le="0.1"} 44
http_request_duration_seconds_bucket{colour="blue",route="home",le="0.25"} 45
http_request_duration_seconds_bucket{colour="blue",route="home",le="0.5"} 45
http_request_duration_seconds_bucket{colour="blue",route="home",le="1"} 45
http_request_duration_seconds_bucket{colour="blue",route="home",le="2.5"} 45
http_request_duration_seconds_bucket{colour="blue",route="home",le="5"} 45
http_request_duration_seconds_bucket{colour="blue",route="home",le="10"} 45
http_request_duration_seconds_bucket{colour="blue",route="home",le="+Inf"} 45
http_request_duration_seconds_sum{colour="blue",route="home"} 0.912345
http_request_duration_seconds_count{colour="blue",route="home"} 45
http_request_duration_seconds_bucket{colour="green",route="home",le="0.005"} 0
http_request_duration_seconds_bucket{colour="green",route="home",le="+Inf"} 0
http_request_duration_seconds_sum{colour="green",route="home"} 0
http_request_duration_seconds_count{colour="green",route="home"} 0
# HELP queue_jobs_pending Jobs in the default Redis queue not yet done (waiting, delayed and reserved).
# TYPE queue_jobs_pending gauge
queue_jobs_pending{queue="default"} 7
# HELP database_connections Sessions connected to the application's database (pg_stat_activity).
# TYPE database_connections gauge
database_connections 5
# HELP queue_jobs_failed_total Queued jobs that failed for good (rows in the failed jobs table).
# TYPE queue_jobs_failed_total counter
# queue_jobs_failed_total: the failed jobs table cannot be read.
"""  # noqa: E501 (the app's HELP lines, as they are)


def test_app_exposition_reads_as_the_rules_expect() -> None:
    families = monitoring.parse_exposition(APP_EXPOSITION)
    requests = families["http_requests_total"]
    assert requests.type == "counter"
    assert (
        "http_requests_total",
        {"colour": "blue", "route": "home", "status": "500"},
        3.0,
    ) in requests.samples
    histogram = families["http_request_duration_seconds"]
    assert histogram.type == "histogram"
    names = {name for name, _, _ in histogram.samples}
    assert names == {
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_sum",
        "http_request_duration_seconds_count",
    }
    assert families["queue_jobs_pending"].samples == [
        ("queue_jobs_pending", {"queue": "default"}, 7.0)
    ]
    assert families["database_connections"].samples == [("database_connections", {}, 5.0)]
    assert families["queue_jobs_failed_total"].samples == []
    assert families["http_requests_total"].help.startswith("HTTP requests answered")


def test_label_values_are_unescaped() -> None:
    text = '# TYPE m gauge\nm{a="x\\"y",b="1\\\\2",c="l\\nm"} +Inf\n'
    assert monitoring.parse_exposition(text)["m"].samples == [
        ("m", {"a": 'x"y', "b": "1\\2", "c": "l\nm"}, float("inf"))
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("m 1\n", "no declared family"),
        ("# TYPE m untyped\nm 1\n", "no declared family"),
        # What prometheus_client's parser refuses, in its words:
        ("# TYPE m gauge\nm{a=1} 1\n", "not a valid exposition: .*labels"),
        ("# TYPE m gauge\nm one\n", "not a valid exposition"),
        ("# TYPE m gauges\n", "not a valid exposition: .*type"),
        ('# TYPE m gauge\nm{a="1"\n', "not a valid exposition"),
        (
            '# TYPE h histogram\nh_bucket{le="1"} 5\nh_bucket{le="+Inf"} 4\nh_count 4\n',
            "not cumulative",
        ),
        ('# TYPE h histogram\nh_bucket{le="1"} 5\nh_count 5\n', "end with \\+Inf"),
        ('# TYPE h histogram\nh_bucket{le="+Inf"} 5\nh_count 6\n', "_count differs"),
    ],
)
def test_broken_expositions_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        monitoring.parse_exposition(text)
