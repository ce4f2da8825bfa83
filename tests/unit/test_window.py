"""The canary window judged at intervals (bgdeploy/checks/window.py, checks/sources.py)."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bgdeploy.checks import gate, sources, window
from bgdeploy.checks.baseline import Baseline, Counts, error_check
from bgdeploy.core.errors import ConfigError

RULES = window.WindowRules(window=300, interval=30, failure_limit=3, min_requests=100)


def check(name: str, verdict: str, value: float | None = 0.5, **more: Any) -> gate.GateCheck:
    return gate.GateCheck(name, "q", value, 0.01, verdict, "why", **more)


def reading(*checks: gate.GateCheck, requests: int = 500, errors: int = 0) -> window.Reading:
    colours = {"green": window.ColourNumbers(requests, errors, 0.05)}
    return window.Reading(gate.gate_result(checks, "prometheus"), colours)


def test_rules_count_the_evaluations_and_refuse_nonsense() -> None:
    assert RULES.looks == 9 and RULES.due(1) == 30 and RULES.due(10) == 300
    assert window.WindowRules(window=20, interval=30).due(1) == 20  # one evaluation, at the end
    assert window.WindowRules(window=20, interval=30).looks == 0
    for bad in ({"interval": 0}, {"failure_limit": 0}, {"window": -1}, {"interval": math.nan}):
        with pytest.raises(ConfigError, match="canary setting"):
            window.WindowRules(**{"window": 300, "interval": 30, **bad})


@pytest.mark.parametrize(
    ("made", "requests", "counts"),
    [
        (check("error rate", "pass"), 500, False),  # a pass ends a run of failures
        (check("p50 vs baseline", "not evaluated", None), 500, None),
        (check("error rate", "fail", 0.5), 500, True),
        (check("error rate", "fail", 0.5), 3, None),  # 2 errors in 3 requests: no rate yet
        (check("p95 latency", "fail", 2.0), 99, None),
        (check("5xx responses", "fail", 4.0), 3, True),  # a count only grows
        (check("error rate", "fail", math.nan), 500, None),  # no traffic so far
        (check("error rate", "fail", None), 500, None),  # no series yet
        (check("error rate vs baseline", "fail", 0.2, baseline=0.0), 3, True),
        (check(window.ANSWERS, "fail", None), 0, True),  # Prometheus silent: not a pass
    ],
)
def test_what_counts_against_the_canary_before_the_end(
    made: gate.GateCheck, requests: int, counts: bool | None
) -> None:
    assert window.counts_against(made, requests, 100) is counts


def evaluate(record: window.Watch, number: int, *checks: gate.GateCheck, **kw: Any) -> bool:
    final = RULES.due(number) >= RULES.window
    return record.add(window.Evaluation(number, RULES.due(number), reading(*checks, **kw), final))


def test_a_check_failing_three_evaluations_in_a_row_ends_the_window_early() -> None:
    record = window.Watch(RULES, "green", "blue", "prometheus")
    bad = check("error rate", "fail", 0.3)
    assert not evaluate(record, 1, bad, errors=150)
    assert not evaluate(record, 2, check("error rate", "pass", 0.0))  # the run is broken
    assert not evaluate(record, 3, bad, errors=150)
    assert not evaluate(record, 4, check("error rate", "not evaluated", None), errors=150)
    assert not evaluate(record, 5, bad, errors=150)
    assert evaluate(record, 6, bad, errors=150)
    assert record.early and record.state == window.SEND_BACK and record.ended_at == 180
    assert record.reason.startswith("error rate failed 3 evaluations in a row (the last at 180 s")
    assert record.first_failure == 30  # the first evaluation that saw canary errors
    record.back(181.5)
    assert record.report() == [
        record.report()[0],
        "first failure seen at 30.0 s",
        "every client back on blue at 181.5 s: 151.5 s after the first failure",
    ]
    saved = record.to_dict()
    assert saved["early"] and saved["seconds_to_back"] == 151.5
    assert [e["failed"] for e in saved["evaluations"]][:2] == [["error rate"], []]


@pytest.mark.parametrize("back_at", [15.2549, 15.3549, 15.2451, 15.25, 15.35, 181.5])
def test_the_journal_says_the_times_the_report_prints(back_at: float) -> None:
    """A full run failed on 15.2549: the journal rounded it to 15.25, the report printed 15.3."""
    record = window.Watch(RULES, "green", "blue", "prometheus")
    bad = check("error rate", "fail", 0.3)
    for number in (1, 2, 3):
        evaluate(record, number, bad, errors=150)
    record.ended_at, record.first_failure = back_at - 0.3049, back_at - 11.9451
    record.back(back_at)
    saved = record.to_dict()
    lines = record.report()
    assert f"at {saved['ended_at']:.1f} s of 300 s" in lines[0]
    assert lines[1] == f"first failure seen at {saved['first_failure']:.1f} s"
    assert lines[2].startswith(f"every client back on blue at {saved['back_at']:.1f} s: ")
    assert lines[2].endswith(f": {saved['seconds_to_back']:.1f} s after the first failure")


def test_a_required_comparison_short_of_requests_waits_for_the_end() -> None:
    """A loaded run sent a healthy canary back at 16 s of 20: its required error comparison
    had 46 requests of the 50 it needs at each of three evaluations. Too few requests so far
    is no failure; at the window's end it still fails (fails closed)."""
    rules = Baseline()
    short = Counts(total=rules.needed() - 4, errors=0)
    required = error_check(short, short, rules, tests=1, source="prometheus", required=True)
    assert (
        required.failed
        and required.unmeasured
        and "required before a promotion" in (required.reason)
    )
    assert window.counts_against(required, 10_000, 100) is None
    record = window.Watch(RULES, "green", "blue", "prometheus")
    good = check("error rate", "pass", 0.0)
    for number in range(1, 10):
        assert not evaluate(record, number, good, required)
    assert record.state == window.WATCHING and record.first_failure is None
    assert evaluate(record, 10, good, required)
    assert record.state == window.SEND_BACK and not record.early and record.ended_at == 300
    measured = error_check(
        Counts(total=1000, errors=300), Counts(total=1000, errors=0), rules, tests=1,
        source="prometheus", required=True,
    )  # fmt: skip
    assert measured.failed and not measured.unmeasured
    assert window.counts_against(measured, 1000, 100) is True


def test_promotion_only_by_the_whole_window() -> None:
    record = window.Watch(RULES, "green", "blue", "prometheus")
    good = check("error rate", "pass", 0.0)
    for number in range(1, 10):
        assert not evaluate(record, number, good)
        assert record.state == window.WATCHING
    assert evaluate(record, 10, good)
    assert record.state == window.PROMOTE and not record.early and record.ended_at == 300
    assert record.report() == ["window ended at 300.0 s of 300 s: the whole window (300 s) passed"]


def test_the_end_decides_even_after_good_evaluations() -> None:
    record = window.Watch(RULES, "green", "blue", "prometheus")
    for number in range(1, 10):
        evaluate(record, number, check("error rate", "pass", 0.0))
    # The whole window's comparison fails (not evaluated is not a pass: required ones fail).
    assert evaluate(record, 10, check("error rate vs baseline", "fail", None, baseline=0.0))
    assert record.state == window.SEND_BACK and not record.early


def test_the_event_and_the_line_show_each_colour_and_check() -> None:
    record = window.Watch(RULES, "green", "blue", "prometheus")
    numbers = {
        "green": window.ColourNumbers(120, 3, 0.034),
        "blue": window.ColourNumbers(2300, 0, None),
    }
    checks = [check("error rate", "fail", 0.025), check("p50 vs baseline", "not evaluated", None)]
    found = window.Reading(gate.gate_result(checks, "prometheus"), numbers)
    record.add(window.Evaluation(1, 30.2, found, final=False))
    event = record.event()
    assert event["elapsed"] == 30.2 and event["window"] == 300 and event["state"] == "watching"
    assert event["colours"]["green"] == {"requests": 120, "error_rate": 0.025, "p95": 0.034}
    assert event["colours"]["blue"]["p95"] is None
    assert event["checks"][0]["failing"] == 1 and event["checks"][1]["value"] is None
    assert record.line() == (
        "canary 30/300 s, evaluation 1: green 120 req 2.50% p95 34ms | blue 2300 req 0.00% "
        "p95 -: 0 pass, 1 fail, 1 not evaluated (error rate)"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Scripted:
    """A source answering each evaluation from a list, recording when it was asked."""

    name = "prometheus"

    def __init__(self, readings: list[window.Reading]) -> None:
        self.readings = readings
        self.asked: list[tuple[float, bool]] = []
        self.closed = False

    def read(self, elapsed: float, final: bool) -> window.Reading:
        self.asked.append((elapsed, final))
        return self.readings[len(self.asked) - 1]

    def close(self) -> None:
        self.closed = True


def test_watch_asks_every_interval_and_closes_the_source() -> None:
    rules = window.WindowRules(window=20, interval=5, failure_limit=2, min_requests=10)
    silent = window.Reading(gate.gate_result([check(window.ANSWERS, "fail", None)], "prometheus"))
    source = Scripted([reading(check("error rate", "pass", 0.0)), silent, silent])
    clock = FakeClock()
    lines: list[str] = []
    record = window.watch(
        source, rules, "green", "blue", clock=clock, sleep=clock.sleep,
        report=lambda r: lines.append(r.line()),
    )  # fmt: skip
    assert source.asked == [(5, False), (10, False), (15, False)] and source.closed
    assert record.early and record.ended_at == 15 and len(lines) == 3
    assert "prometheus answers failed 2 evaluations in a row" in lines[-1]


# The probes, against a real HTTP server


@pytest.fixture
def broken_server() -> Iterator[str]:
    """Answers 500 to every request."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/health"
    server.shutdown()


def test_probes_send_a_broken_canary_back_before_the_window_ends(broken_server: str) -> None:
    rules = window.WindowRules(window=30, interval=1, failure_limit=2, min_requests=3)
    source = sources.ProbeSource(
        [broken_server], "green", "blue", gate.Thresholds(window_seconds=30),
        Baseline(min_requests=3), rules, rate=10.0, timeout=2.0,
        pin=lambda colour: {"Cookie": f"bgdeploy_colour={colour}"}, target="t ",
    )  # fmt: skip
    record = window.watch(source, rules, "green", "blue")
    assert record.early and record.ended_at is not None and record.ended_at < 5
    assert record.first_failure is not None and record.first_failure < 1
    assert record.evaluations[-1].reading.colours["green"].errors >= 3
    assert source.cancel.is_set()


GEVENT_RUN = """
from gevent import monkey; monkey.patch_all()
import threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from bgdeploy.checks import gate, sources, window
from bgdeploy.checks.baseline import Baseline

class Broken(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_port}/api/health"
rules = window.WindowRules(window=60, interval=1, failure_limit=2, min_requests=3)
source = sources.ProbeSource(
    [url], "green", "blue", gate.Thresholds(window_seconds=60), Baseline(min_requests=3),
    rules, rate=10.0, timeout=2.0, pin=lambda colour: {}, target="t ",
)
record = window.watch(source, rules, "green", "blue")
print(record.state, record.early)
"""


def test_probes_sent_back_early_inside_pyinfra_let_the_process_end() -> None:
    """pyinfra runs the gate under gevent's patched threads: once sent back early, every
    probe stops and the process ends (a probe waiting on its cancel event once hung a deploy
    for its whole 10-minute limit)."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_RUN], capture_output=True, text=True, timeout=40,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "send back True"
    assert time.monotonic() - began < 20  # not the 60 s window
