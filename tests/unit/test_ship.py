"""`bgdeploy ship` without hosts: its settings, the secrets each environment's deploy sees,
the staging checks' runs, the stage table, and what is refused before connecting."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import pytest
from conftest import load_group_data

from bgdeploy.core import settings
from bgdeploy.core.errors import ConfigError, PolicyRefusal
from bgdeploy.strategies import ship


def test_settings_of_the_pipeline() -> None:
    prod = settings.from_data(load_group_data("prod"), "prod")
    assert prod.staging_environment == "staging" and prod.canary_percent == 5.0
    assert prod.staging_checks == () and prod.staging_check_timeout == 1800
    data = {**load_group_data("prod"), "staging_checks": ["npm run e2e -- --base-url 'x y'",
                                                          ["./e2e.sh", "--fast"]]}  # fmt: skip
    parsed = settings.from_data(data, "prod").staging_checks
    assert parsed == (("npm", "run", "e2e", "--", "--base-url", "x y"), ("./e2e.sh", "--fast"))


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("staging_checks", "npm run e2e", "must be a list of commands"),
        ("staging_checks", [[]], "is not a command"),
        ("staging_checks", ["echo 'unclosed"], "No closing quotation"),
        ("staging_environment", "../prod", "must be an environment's name"),
        ("canary_percent", 0, "must be a number from 0.1 to 100"),
    ],
)
def test_broken_pipeline_settings_name_their_key(key: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError, match=key) as error:
        settings.from_data({**load_group_data("prod"), key: value}, "prod")
    assert says in str(error.value)


def test_the_staging_deploy_never_sees_productions_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pristine = {
        "PATH": os.environ["PATH"],
        "BGDEPLOY_APP_KEY": "prod-key",
        "BGDEPLOY_API_TOKEN": "prod-token",
        "BGDEPLOY_STAGING_API_TOKEN": "st-token",
    }
    monkeypatch.setenv("BGDEPLOY_DB_PASSWORD", "set-by-an-inventory-later")
    with ship.environment_of("staging", "prod", pristine):
        assert os.environ.get("BGDEPLOY_API_TOKEN") == "st-token"
        assert "BGDEPLOY_APP_KEY" not in os.environ  # prod's, and staging has none of its own
        assert "BGDEPLOY_DB_PASSWORD" not in os.environ
    assert os.environ["BGDEPLOY_DB_PASSWORD"] == "set-by-an-inventory-later"  # restored
    with ship.environment_of("prod", "prod", pristine):
        assert os.environ["BGDEPLOY_APP_KEY"] == "prod-key"
        assert os.environ["BGDEPLOY_API_TOKEN"] == "prod-token"


def test_a_staging_check_passes_fails_or_is_stopped() -> None:
    env = {"PATH": os.environ["PATH"], "BGDEPLOY_RELEASE": "abc"}
    ok = ship.run_check((sys.executable, "-c", "import os; print(os.environ['BGDEPLOY_RELEASE'])"),
                        env, 10)  # fmt: skip
    assert ok.ok and ok.output.strip() == "abc"
    assert ship.describe_check(("e2e",), ok).startswith("e2e: passed (")
    failed = ship.run_check(("sh", "-c", "echo broken; exit 4"), env, 10)
    assert not failed.ok
    assert ship.describe_check(("sh", "-c", "x"), failed).startswith("sh -c x: FAILED (exit 4")
    assert ship.output_tail(failed) == ["    broken"]
    # Over its time, the check and what it started are stopped.
    slow = ship.run_check(("sh", "-c", "sleep 30 & sleep 30"), env, 0.5)
    assert slow.code is None
    assert "still running after 0.5 s: stopped" in ship.describe_check(("sh",), slow)
    assert slow.seconds < 10
    missing = ship.run_check(("/nonexistent/e2e",), env, 5)
    assert not missing.ok and "No such file" in missing.problem


def test_the_stage_table() -> None:
    report = ship.ShipReport("prod", "v2.4.1", "run1", sha="4f1c2e9a" * 5, exit_code=1)
    report.stages = [
        ship.Stage("preflight", "prod", "ok", 2.14, "12 checks passed"),
        ship.Stage("staging deploy", "staging", "ok", 61.0, "deployed v2.4.1 to 2 host(s)"),
        ship.Stage("staging checks", "staging", "failed", 30.2, "e2e: FAILED (exit 1)\n    x"),
        ship.Stage("canary", "prod"),
    ]
    table = report.format_table().splitlines()
    assert table[0].split() == ["stage", "env", "result", "seconds", "detail"]
    assert table[1] == "preflight       prod             ok           2.1  12 checks passed"
    assert table[3].startswith("staging checks  staging          failed      30.2  e2e: FAILED")
    assert table[4].strip() == "x"
    assert table[5].startswith("canary          prod             skipped")
    assert table[6] == "ship of v2.4.1 (4f1c2e9a4f1c) stopped at staging checks (failed): run run1"
    assert report.to_dict()["shipped"] is False


THURSDAY_NOON = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def test_refused_before_connecting() -> None:
    with pytest.raises(ConfigError, match="cannot be prod itself"):
        ship.check_request("prod", "v2.4.1", staging="prod", now=THURSDAY_NOON)
    with pytest.raises(ConfigError, match="--canary"):
        ship.check_request("prod", "v2.4.1", canary=0, now=THURSDAY_NOON)
    with pytest.raises(ConfigError, match="not allowed in a ref"):
        ship.check_request("prod", "main;reboot", now=THURSDAY_NOON)
    # Production's window closes at 16:00 Dhaka; ship never overrides it.
    evening = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    with pytest.raises(PolicyRefusal, match="outside the deploy window"):
        ship.check_request("prod", "v2.4.1", now=evening)
    request = ship.check_request("prod", "v2.4.1", now=THURSDAY_NOON)
    assert request.production.canary == 5.0 and request.production.strategy == "blue-green"
    assert request.staging is not None and request.staging.env == "staging"
    assert request.staging.canary is None and request.staging.strategy == "blue-green"
