"""The live view's state and lines (bgdeploy.core.progress), the run log
(bgdeploy.core.runlog), the CLI's three ways to show a run (bgdeploy.cli.live) and the events
channel between pyinfra's process and the operator's (bgdeploy.fleet.events, runner)."""

from __future__ import annotations

import io
import stat
import time
from pathlib import Path

import pytest
from rich.console import Console

from bgdeploy.cli import live
from bgdeploy.core import progress
from bgdeploy.core.runlog import RunLog, log_directory, redactor
from bgdeploy.fleet import events, runner

T0 = 1_700_000_000.0


def ev(kind: str, t: float = 0.0, **fields: object) -> dict[str, object]:
    return {"kind": kind, "t": T0 + t, **fields}


RUN = [
    ev("plan", hosts={"web1": 3, "web2": 3, "db": 3}),
    ev("op_start", 0.1, name="Take the deploy lock"),
    ev("stage", 0.1, name="lock"),
    ev("op_host_start", 0.1, host="web1", name="Take the deploy lock"),
    ev("step_start", 0.1, host="web1", name="take the deploy lock"),
    ev("step_end", 0.3, host="web1", name="take the deploy lock", ok=True, seconds=0.2),
    ev("op_host_end", 0.3, host="web1", name="Take the deploy lock", ok=True),
    ev("op_host_start", 0.1, host="db", name="Take the deploy lock"),  # skipped on db
    ev("op_start", 0.4, name="Install dependencies"),
    ev("stage", 0.4, name="build"),
    ev("op_host_start", 0.4, host="db", name="Install dependencies"),
    ev("op_host_start", 0.4, host="web1", name="Install dependencies"),
    ev("step_start", 0.5, host="web1", name="composer install"),
]


def view_of(events_: list[dict[str, object]]) -> progress.FleetView:
    view = progress.FleetView()
    for event in events_:
        view.apply(event)
    return view


def test_the_view_shows_the_stage_and_each_host_s_step_count_and_seconds() -> None:
    view = view_of(RUN)
    assert view.stage_line() == "stage: build"
    rows = {row[0]: row for row in view.rows(now=T0 + 10)}
    assert list(rows) == ["web1", "web2", "db"]  # the plan's order, every host from the start
    assert rows["web1"] == ("web1", "composer install", "1/3", "10s", "")
    # db skipped the lock (pyinfra starts a skipped operation and says nothing more).
    assert rows["db"][1:3] == ("Install dependencies", "1/3")
    assert rows["web2"][1:3] == ("waiting", "0/3")


def test_a_failed_step_is_the_host_s_last_problem_and_stays_after_the_run() -> None:
    view = view_of(
        [
            *RUN,
            ev(
                "step_end",
                3,
                host="web1",
                name="composer install",
                ok=False,
                seconds=2.5,
                message="\n  In Provider.php line 11:\n  the payments key is missing  \nmore",
            ),
            ev("step_start", 3.1, host="web1", name="restore: check out"),
        ]
    )
    rows = {row[0]: row for row in view.rows(now=T0 + 4)}
    assert rows["web1"][1] == "restore: check out"
    assert rows["web1"][4] == "composer install: In Provider.php line 11:"
    view.finish(now=T0 + 5)
    rows = {row[0]: row for row in view.rows(now=T0 + 99)}
    assert rows["web1"][1:4] == ("failed", "1/3", "5s")  # the seconds stop at the end
    assert rows["web2"][1] == "done"


def test_a_host_whose_part_of_an_operation_is_done_is_waiting() -> None:
    view = view_of(RUN[:7])  # web1 took the lock; the next operation has not started
    assert view.rows(now=T0 + 1)[0][:3] == ("web1", "waiting", "1/3")


def test_a_host_that_finishes_its_operations_stops_counting_seconds() -> None:
    view = view_of(
        [
            ev("plan", hosts={"web1": 1}),
            ev("op_host_start", 1, host="web1", name="Finish"),
            ev("op_host_end", 2, host="web1", name="Finish", ok=True),
        ]
    )
    assert view.rows(now=T0 + 50) == [("web1", "done", "1/1", "2s", "")]


def test_an_unreachable_host_fails_with_its_reason() -> None:
    view = view_of([ev("host_error", 1, host="web3", message="timed out\nmore")])
    assert view.rows(now=T0 + 2) == [("web3", "failed", "0", "0s", "timed out")]


def test_plain_lines_are_timestamped_and_say_only_what_matters() -> None:
    view = view_of(RUN)
    clock = progress.clock(T0 + 0.4)
    assert progress.plain_line(ev("stage", 0.4, name="build"), view) == f"{clock} stage: build"
    assert progress.plain_line(
        ev("step_end", 0.4, host="web2", name="migrate", ok=False, seconds=1.25, message="x\ny"),
        view,
    ) == (f"{clock} web2: migrate FAILED (1.2 s): x")
    assert progress.plain_line(
        ev("step_end", 0.4, host="web2", name="caches", ok=True, seconds=1), view
    ) == (f"{clock} web2: caches ok (1.0 s)")
    # Operations that went well are not lines; once a run has stages, neither are their starts.
    assert progress.plain_line(ev("op_host_end", host="web1", name="X", ok=True), view) is None
    assert progress.plain_line(ev("op_start", name="Go live"), view) is None
    # A run without stages (provision) shows its operations; the log file gets them all.
    assert progress.plain_line(ev("op_start", 0.4, name="nginx site"), progress.FleetView())
    assert progress.plain_line(ev("op_start", 0.4, name="Go live")) == f"{clock} Go live"
    # A warning of several lines: each line stamped.
    assert progress.plain_line(ev("say", 0.4, text="a\nb")) == f"{clock} a\n{clock} b"


def test_the_log_directory_is_the_variable_then_the_setting_then_the_checkout(
    tmp_path: Path,
) -> None:
    assert log_directory(tmp_path, None, {}) == tmp_path / ".bgdeploy" / "runs"
    assert log_directory(tmp_path, "logs/runs", {}) == tmp_path / "logs" / "runs"
    assert log_directory(tmp_path, "/var/log/bg", {}) == Path("/var/log/bg")
    env = {"BGDEPLOY_RUN_LOG_DIR": "/srv/runs"}
    assert log_directory(tmp_path, "/var/log/bg", env) == Path("/srv/runs")


def test_the_log_hides_every_secret_variable_s_value(tmp_path: Path) -> None:
    env = {
        "BGDEPLOY_DB_PASSWORD": "hunter2-db-pass",
        "BGDEPLOY_APP_KEY": "base64:QUJDREVGR0hJSktMTU5PUA==",
        "BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK": "http://127.0.0.1:9/services/T0/B0/secret",
        "BGDEPLOY_PAGERDUTY_ROUTING_KEY": "pd-key-0123456789",
        "BGDEPLOY_PAGERDUTY_URL": "http://127.0.0.1:9",  # not a secret: stays
        "BGDEPLOY_REDIS_PASSWORD": "abc",  # too short to hide without hiding other text
    }
    redact = redactor(env)
    assert redact("pw hunter2-db-pass ok") == "pw [secret BGDEPLOY_DB_PASSWORD] ok"
    assert "QUJDREVGR0hJSktMTU5PUA==" not in redact("key QUJDREVGR0hJSktMTU5PUA==")
    assert "secret" not in redact("url http://127.0.0.1:9 x").replace("[secret", "")
    with RunLog(tmp_path / "runs", "abc123", env) as log:
        log.write("posting to http://127.0.0.1:9/services/T0/B0/secret: 500")
        log.note("pd pd-key-0123456789")
    text = (tmp_path / "runs" / "abc123.log").read_text()
    assert "T0/B0/secret" not in text and "pd-key-0123456789" not in text
    assert "[secret BGDEPLOY_SLACK_DEPLOYMENTS_WEBHOOK]: 500" in text
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        RunLog(tmp_path, "../x", env)


def test_plain_output_prints_stamped_lines_and_logs_everything(tmp_path: Path) -> None:
    stream = io.StringIO()
    log = RunLog(tmp_path, "run1", {})
    output = live.RunOutput(log, "plain", stream=stream)
    with output:
        output.say("deploying v2 to sandbox")
        for event in RUN:
            output.event(event)
        output.log("\x1b[32m--> Starting operation: Go live\x1b[0m")
        output.progress("notify slack: skipped")
    output.record("host  result\nweb1  ok")
    output.close()
    shown = stream.getvalue()
    assert "\x1b[" not in shown  # no escape codes in a CI log
    assert f"{progress.clock(T0 + 0.4)} stage: build" in shown
    assert "web1: composer install" in shown
    assert "Starting operation" not in shown  # pyinfra's log only with --verbose
    assert shown.rstrip().endswith(f"log: {log.display_path()}")
    logged = log.path.read_text()
    assert "--> Starting operation: Go live" in logged and "\x1b[" not in logged
    assert "Install dependencies" in logged and "notify slack: skipped" in logged
    assert logged.rstrip().endswith("web1  ok")


def test_verbose_shows_pyinfra_s_log_and_quiet_shows_nothing(tmp_path: Path) -> None:
    stream = io.StringIO()
    with live.RunOutput(None, "plain", verbose=True, stream=stream) as output:
        output.log("[web1] Success")
    assert "[web1] Success" in stream.getvalue()
    stream = io.StringIO()
    output = live.RunOutput(RunLog(tmp_path, "q", {}), "quiet", verbose=True, stream=stream)
    with output:
        output.say("deploying")
        for event in RUN:
            output.event(event)
        output.log("[web1] Success")
    output.close()
    assert stream.getvalue() == ""
    assert "[web1] Success" in (tmp_path / "q.log").read_text()


def test_the_live_view_draws_the_stage_above_a_line_per_host() -> None:
    output = live.RunOutput(None, "live", stream=io.StringIO())
    for event in RUN:
        output.event(event)
    console = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    console.print(output.render())
    lines = [line.rstrip() for line in console.export_text().splitlines() if line.strip()]
    assert lines[0] == "stage: build"
    assert lines[1].split()[:3] == ["web1", "composer", "install"]
    assert lines[1].split()[3] == "1/3"
    assert [line.split()[0] for line in lines[1:]] == ["web1", "web2", "db"]


def test_the_mode_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("TERM", "xterm")
    assert live.choose_mode(False, Tty()) == "live"
    assert live.choose_mode(False, io.StringIO()) == "plain"
    assert live.choose_mode(True, Tty()) == "quiet"
    monkeypatch.setenv("TERM", "dumb")
    assert live.choose_mode(False, Tty()) == "plain"


class Collect:
    def __init__(self) -> None:
        self.events: list[progress.Event] = []

    def event(self, event: progress.Event) -> None:
        self.events.append(event)

    def log(self, line: str) -> None:
        pass


def test_events_written_by_pyinfra_s_process_reach_the_observer_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    path.touch()
    monkeypatch.setenv(events.EVENTS_VARIABLE, str(path))
    seen = Collect()
    tail = runner.EventTail(path, seen, interval=0.01)
    events.emit("stage", name="build")
    time.sleep(0.1)
    assert [e["kind"] for e in seen.events] == ["stage"]
    with path.open("a") as handle:  # a line pyinfra is still writing is not read half
        handle.write('{"kind": "step_start", "host": "web1", "na')
        handle.flush()
        time.sleep(0.05)
        handle.write('me": "migrate"}\nnot json\n')
    events.emit("step_end", host="web1", name="migrate", ok=True)
    tail.stop()
    assert [e["kind"] for e in seen.events] == ["stage", "step_start", "step_end"]
    assert seen.events[1]["name"] == "migrate" and seen.events[2]["ok"] is True
    assert all(abs(float(e["t"]) - time.time()) < 60 for e in seen.events if "t" in e)


def test_without_the_variable_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(events.EVENTS_VARIABLE, raising=False)
    events.emit("stage", name="build")  # a plain pyinfra run: no file, no error
    assert not any(tmp_path.iterdir())


def test_bgdeploy_s_own_lines_are_shown_and_a_failure_shows_pyinfra_s_error_lines(
    tmp_path: Path,
) -> None:
    stream = io.StringIO()
    log = RunLog(tmp_path, "say", {})
    output = live.RunOutput(log, "plain", stream=stream)
    with output:
        output.event(ev("say", 1, level="info", text="[web1] canary 5%: the gate watches it"))
        output.log("    [web1] canary 5%: the gate watches it")  # pyinfra printed it too
        output.log("    [web2] Error: nginx: [emerg] unknown directive")
        output.log("    [web2] No changes")
        output.event(ev("op_host_end", 2, host="web2", name="nginx: the site", ok=False))
    output.close()
    shown = stream.getvalue()
    assert f"{progress.clock(T0 + 1)} [web1] canary 5%: the gate watches it" in shown
    assert "  [web2] Error: nginx: [emerg] unknown directive" in shown  # the failure's why
    assert "No changes" not in shown
    assert log.path.read_text().count("the gate watches it") == 1


def test_bgdeploy_s_own_log_lines_inside_pyinfra_become_say_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(events.EVENTS_VARIABLE, str(path))
    handler = events.OwnLines()
    own = logging.LogRecord(
        "pyinfra", logging.INFO, events.__file__, 1, "\x1b[1mgate\x1b[0m ok", None, None
    )
    theirs = logging.LogRecord(
        "pyinfra", logging.INFO, "/usr/lib/pyinfra/x.py", 1, "No changes", None, None
    )
    handler.emit(own)
    handler.emit(theirs)
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and '"text": "gate ok"' in lines[0] and '"kind": "say"' in lines[0]


def test_a_rollback_s_steps_make_a_line_per_host_and_plain_lines() -> None:
    from bgdeploy.strategies.rollback.request import RollbackRequest

    stream = io.StringIO()
    output = live.RunOutput(None, "plain", stream=stream)
    request = RollbackRequest(env="prod", environment=None, observer=output)  # type: ignore[arg-type]
    request.event("stage", name="rollback in place")
    request.event("plan", hosts={"web1": 3, "web2": 3})
    began = request.step_started("web1", "check out")
    request.step_ended("web1", "check out", True, began)
    began = request.step_started("web2", "check out")
    request.step_ended("web2", "check out", False, began, "error: pathspec 'x' did not match")
    request.step_started("web1", "composer install")
    rows = {row[0]: row for row in output.view.rows()}
    assert rows["web1"][1:3] == ("composer install", "1/3")
    assert rows["web2"][2] == "1/3" and "check out: error: pathspec" in rows["web2"][4]
    text = stream.getvalue()
    assert "stage: rollback in place" in text
    assert "web1: check out ok (" in text and "web2: check out FAILED (" in text
    # Without an observer (a library call), nothing is told and nothing breaks.
    RollbackRequest(env="prod", environment=None).step_started("web1", "x")  # type: ignore[arg-type]
