"""`bgdeploy deploy`'s checks before any connection, and the release's decisions."""

from __future__ import annotations

from datetime import datetime

import pytest
from click.testing import CliRunner

from bgdeploy.cli import cli
from bgdeploy.core import journal
from bgdeploy.core.errors import ConfigError, PolicyRefusal
from bgdeploy.core.release_report import ReleaseReport
from bgdeploy.fleet import runner
from bgdeploy.strategies import deploying
from bgdeploy.strategies.release import HostRun, ReleaseRun, journal_entries
from bgdeploy.strategies.release.run import rolling_batches

THURSDAY_NOON = datetime.fromisoformat("2026-12-03T12:00+06:00")
THURSDAY_EVENING = datetime.fromisoformat("2026-12-03T16:00+06:00")


def test_prod_inside_the_window() -> None:
    request = deploying.check_request("prod", "v2.4.0", now=THURSDAY_NOON)
    assert request.ref == "v2.4.0"
    assert request.window.regular
    data = request.data("run1", "/tmp/r.json")
    assert data == {
        "ref": "v2.4.0",
        "force": False,
        "allow_destructive": False,
        "bgdeploy_run_id": "run1",
        "bgdeploy_report": "/tmp/r.json",
    }


def test_prod_outside_the_window_is_refused_with_the_next_one() -> None:
    with pytest.raises(PolicyRefusal) as refused:
        deploying.check_request("prod", "v2.4.0", now=THURSDAY_EVENING)
    assert refused.value.exit_code == 3
    assert "outside the deploy window" in str(refused.value)
    assert "next window opens Tue 2026-12-08 10:00 +06" in str(refused.value)


def test_emergency_with_a_reason_overrides_the_window() -> None:
    request = deploying.check_request(
        "prod",
        "v2.4.1",
        emergency=True,
        severity="P0",
        reason="payments down",
        now=THURSDAY_EVENING,
    )
    assert request.window.emergency and request.window.allowed
    assert request.emergency_reason == "payments down"
    assert request.data("r", "p")["emergency_reason"] == "payments down"


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"env": "prod", "ref": "main; rm -rf /"}, "not allowed in a ref"),
        ({"env": "prod", "ref": "--upload-pack=x"}, "not allowed in a ref"),
        ({"env": "nowhere", "ref": "v1"}, "unknown environment"),
        ({"env": "../etc", "ref": "v1"}, "not a valid name"),
        ({"env": "prod", "ref": "v1", "emergency": True}, "--emergency needs --reason"),
        ({"env": "prod", "ref": "v1", "reason": "  "}, "--reason is empty"),
    ],
)
def test_bad_input_is_refused_before_any_connection(kwargs: dict, says: str) -> None:
    env, ref = kwargs.pop("env"), kwargs.pop("ref")
    with pytest.raises(ConfigError, match=says) as error:
        deploying.check_request(env, ref, now=THURSDAY_NOON, **kwargs)
    assert error.value.exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["deploy", "prod", "--ref", "main;reboot"],
        ["deploy", "prod", "--ref", "-x"],
        ["deploy", "nowhere", "--ref", "v1"],
        ["deploy", "prod", "--ref", "v1", "--emergency"],
    ],
)
def test_cli_exit_2_without_starting_pyinfra(args: list[str], monkeypatch) -> None:
    def no_pyinfra(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("pyinfra must not start on bad input")

    monkeypatch.setattr(runner, "run_deploy", no_pyinfra)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output


# The release's decisions, without pyinfra
# ----------------------------------------


def test_batches_put_the_migrate_host_first() -> None:
    web = ["web1", "web2", "web3", "web4", "web5"]
    assert rolling_batches(web, None, "web1") == [web]
    assert rolling_batches(web, 2, "web3") == [["web3", "web1"], ["web2", "web4"], ["web5"]]
    assert rolling_batches(web, 10, "web1") == [web]


def release_run(batches: list[list[str]]) -> ReleaseRun:
    settings = next(iter(runner.check_environment("staging").settings.values()))
    report = ReleaseReport(env="staging", ref="v2", run="r1")
    run = ReleaseRun(
        env="staging",
        ref="v2",
        run_id="r1",
        who="rahim@laptop",
        force=False,
        allow_destructive=False,
        reason=None,
        emergency_reason=None,
        report_path=None,
        web_order=[name for batch in batches for name in batch],
        db_host="db",
        migrate_host=batches[0][0],
        batches=batches,
        report=report,
        sha="c" * 40,
    )
    for name in run.web_order:
        host = HostRun(name, settings, report.host(name, ["web"]), deploying=True)
        run.hosts[name] = host
    return run


def test_a_failed_batch_stops_the_rollout() -> None:
    run = release_run([["web1"], ["web2"]])
    assert run.changing("web1", 0) and not run.changing("web1", 1)
    assert not run.changing("web2", 0)
    run.hosts["web1"].outcome.result = "ok"
    assert run.changing("web2", 1)
    run.hosts["web1"].outcome.result = "rolled_back"
    assert not run.changing("web2", 1)


def test_an_aborted_batch_or_a_refusal_stops_everything() -> None:
    run = release_run([["web1", "web2"]])
    run.aborted_batches[0] = "composer install failed on web2"
    assert not run.changing("web1", 0)
    run = release_run([["web1", "web2"]])
    run.report.refusal = {"kind": "lock", "message": "held"}
    assert not run.changing("web1", 0)
    run = release_run([["web1", "web2"]])
    run.hosts["web1"].deploying = False  # already at the commit
    assert not run.changing("web1", 0) and run.changing("web2", 0)


def test_journal_lines_of_a_rolled_back_host() -> None:
    run = release_run([["web1", "web2"]])
    run.report.snapshot = {"name": "s1", "path": "/b/s1.dump", "host": "db"}
    run.pending = ["2026_01_01_000000_add_x"]
    outcome = run.hosts["web1"].outcome
    outcome.colour, outcome.sha_before, outcome.sha_after = "blue", "a" * 40, "a" * 40
    outcome.result, outcome.failed_step = "rolled_back", "verify health"
    from bgdeploy.core.release_report import StepResult

    outcome.steps = [StepResult("migrate", 1.5), StepResult("verify health", 20.0, "failed")]
    entries = journal_entries(run, run.hosts["web1"])
    assert [e.event for e in entries] == ["snapshot", "migrate", "rollback", "deploy_fail"]
    last = entries[-1]
    assert last.result == "rolled_back" and last.sha_before == "a" * 40
    assert last.details["failed_step"] == "verify health"
    assert [step.name for step in last.steps] == ["migrate", "verify health"]
    assert last.who == "rahim@laptop" and last.colour == "blue"
    # Every line is one valid journal line.
    for entry in entries:
        assert journal.JournalEntry.from_json(entry.to_json_line()) == entry


def test_journal_line_of_an_unchanged_host() -> None:
    run = release_run([["web1"]])
    outcome = run.hosts["web1"].outcome
    outcome.result, outcome.message = "unchanged", f"already at {'c' * 40}"
    (entry,) = journal_entries(run, run.hosts["web1"])
    assert entry.event == "deploy_finish" and entry.result == "skipped"
    assert entry.message == f"already at {'c' * 40}"


def test_an_emergency_override_is_journaled_with_its_reason() -> None:
    from bgdeploy.core import windows

    run = release_run([["web1"]])
    policy = runner.check_environment("prod")
    window = next(iter(policy.settings.values())).window
    run.window = windows.decide(window, THURSDAY_EVENING, emergency_reason="payments down")
    run.emergency_reason = "payments down"
    outcome = run.hosts["web1"].outcome
    outcome.result, outcome.colour = "ok", "green"
    entries = journal_entries(run, run.hosts["web1"])
    assert [e.event for e in entries] == ["window_override", "deploy_finish"]
    assert entries[0].reason == "payments down"
    assert "outside the deploy window" in (entries[0].message or "")
    assert entries[1].reason == "payments down"
