"""A canary's window in the live view (bgdeploy.core.progress.CanaryView, FleetView) and its
lines without a terminal (plain_line), and how the terminal draws it (bgdeploy.cli.live)."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bgdeploy.cli import live
from bgdeploy.core import progress
from bgdeploy.core.runlog import RunLog

T0 = 1_700_000_000.0

CHECKS = [
    {"name": "error rate", "route": "", "verdict": "pass", "value": 0.0, "threshold": 0.01},
    {"name": "p95 latency", "route": "", "verdict": "pass", "value": 0.034, "threshold": 0.5},
    {"name": "5xx responses", "route": "", "verdict": "pass", "value": 0, "threshold": 0},
    {
        "name": "error rate vs baseline",
        "route": "features",
        "verdict": "fail",
        "value": 0.25,
        "threshold": 0.00167,
        "failing": 2,
    },
    {"name": "p99 vs baseline", "verdict": "not evaluated", "value": None, "threshold": "NaN"},
    {"name": "p50 vs baseline", "verdict": "pass", "value": 0.24863, "threshold": 0.342812},
]


def canary(t: float, elapsed: float, state: str = "watching", **fields: Any) -> dict[str, Any]:
    """A ``canary`` event as the gate writes it, ``t`` seconds after T0."""
    return {
        "kind": "canary",
        "t": T0 + t,
        "source": "probe",
        "colour": "green",
        "live": "blue",
        "percent": 5.0,
        "elapsed": elapsed,
        "window": 45,
        "evaluation": 3,
        "colours": {
            "blue": {"requests": 2300, "error_rate": 0.001, "p95": 0.030},
            "green": {"requests": 120, "error_rate": 0.0, "p95": 0.034},
        },
        "checks": CHECKS,
        "state": state,
        "reason": "",
        **fields,
    }


def text_of(renderable: Any, width: int = 120) -> list[str]:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(renderable)
    return [line.rstrip() for line in console.export_text().splitlines() if line.strip()]


def test_the_view_keeps_the_latest_canary_event_and_its_clock_ticks_between_events() -> None:
    view = progress.FleetView()
    view.apply(canary(10, 10))
    view.apply(canary(12, 12))
    assert view.canary is not None
    c = view.canary
    assert c.headline(now=T0 + 12) == "canary 5% green vs blue  12 s of 45 s (33 s left)"
    # No event for 3 s: the time gone still moves, from the event's own time.
    assert c.headline(now=T0 + 15) == "canary 5% green vs blue  15 s of 45 s (30 s left)"
    assert c.seconds(now=T0 + 500) == 45 and c.left(now=T0 + 500) == 0  # never past the window
    # The canary colour first, then the live one, whatever order the event gave.
    assert [name for name, _ in c.ordered_colours()] == ["green", "blue"]
    assert c.colours["blue"].cells() == ("2300", "0.10%", "30ms")
    assert c.summary() == "4 pass, 1 fail (error rate vs baseline [features]), 1 not evaluated"


def test_each_check_in_its_unit_and_its_consecutive_failures() -> None:
    checks = {c.label: c for c in progress.CanaryView.from_event(canary(0, 0)).checks}
    assert checks["error rate"].numbers() == ("0.00%", "1.00%")
    assert checks["p95 latency"].numbers() == ("34ms", "500ms")
    assert checks["5xx responses"].numbers() == ("0", "0")
    compared = checks["error rate vs baseline [features]"]
    assert compared.numbers() == ("25.00%", "p < 0.00167") and compared.failing == 2
    # "NaN" (a non-finite threshold in JSON), null and a missing count: not known.
    assert checks["p99 vs baseline"].numbers() == ("-", "-")
    assert checks["p99 vs baseline"].failing == 0
    assert checks["p50 vs baseline"].numbers() == ("249ms", "343ms")


def test_an_event_missing_fields_or_with_nulls_is_shown_as_far_as_it_goes() -> None:
    view = progress.FleetView()
    view.apply({"kind": "canary", "t": T0})
    c = view.canary
    assert c is not None and not c.ended
    assert c.headline(now=T0 + 3) == "canary ?  3 s"
    assert progress.plain_line({"kind": "canary", "t": T0}) == (
        f"{progress.clock(T0)} canary 0 s: 0 pass, 0 fail, 0 not evaluated"
    )
    # The live colour left out (no baseline comparison), numbers not known yet, junk.
    odd = canary(
        1,
        None,
        live=None,
        percent="x",
        window=None,
        colours={"green": {"requests": None, "error_rate": None, "p95": "NaN"}, "blue": None},
        checks=[None, {"name": "error rate", "value": "+Inf", "verdict": "pass"}],
    )
    c = progress.CanaryView.from_event(odd)
    assert c.headline(now=T0 + 1) == "canary green  0 s"
    assert c.colours["green"].cells() == ("-", "-", "-")
    assert c.colours["blue"].cells() == ("-", "-", "-")
    assert [check.label for check in c.checks] == ["check", "error rate"]
    assert c.checks[1].numbers() == ("-", "-")
    assert text_of(live.canary_panel(c, now=T0 + 1))[0].startswith("canary green  0 s")
    assert "green - req - p95 -" in (progress.plain_line(odd) or "")


def test_the_last_event_says_the_outcome_and_its_clock_stops() -> None:
    view = progress.FleetView()
    view.apply(canary(10, 10))
    reason = "error rate vs baseline failed 3 evaluations in a row"
    view.apply(canary(21, 20.6, "send back", reason=reason))
    c = view.canary
    assert c is not None and c.ended and c.outcome == "sent back"
    assert c.headline(now=T0 + 99) == "canary 5% green vs blue  21 s of 45 s: sent back"
    assert c.left(now=T0 + 99) == 0
    lines = text_of(live.canary_panel(c, now=T0 + 99))
    assert lines[-1] == f"sent back: {reason}"
    line = progress.plain_line(canary(21, 20.6, "send back", reason=reason), view)
    assert line is not None and line.endswith(f"| sent back: {reason}")
    # The last evaluation may come a little after the window's end: never more than it.
    view.apply(canary(46, 45.6, "promote"))
    assert view.canary is not None
    assert view.canary.headline() == "canary 5% green vs blue  45 s of 45 s: promoted"
    assert " canary 45/45 s: " in (progress.plain_line(canary(46, 45.6, "promote")) or "")
    assert text_of(live.canary_panel(view.canary, now=T0 + 99))[-1] == "promoted"  # type: ignore[arg-type]


def test_a_run_that_ends_during_the_window_stops_its_clock() -> None:
    view = progress.FleetView()
    view.apply(canary(10, 10))
    view.finish(now=T0 + 14)
    assert view.canary is not None
    assert view.canary.headline(now=T0 + 60) == "canary 5% green vs blue  14 s of 45 s (31 s left)"


def test_without_a_terminal_a_canary_line_at_most_every_few_seconds_the_last_always() -> None:
    view = progress.FleetView()
    shown = []
    for t in (0, 2, 4, 5, 7, 9.9, 11, 14.2, 15.5):
        event = canary(t, t)
        view.apply(event)
        shown.append(progress.plain_line(event, view))
    final = canary(16, 16, "promote", reason="every check passed")
    view.apply(final)
    shown.append(progress.plain_line(final, view))
    times = [
        t for t, line in zip((0, 2, 4, 5, 7, 9.9, 11, 14.2, 15.5, 16), shown, strict=True) if line
    ]
    # (4.99 s after the last counts as 5: evaluations every 5 s come a little early too.)
    assert times == [0, 5, 9.9, 15.5, 16]
    assert shown[0] == (
        f"{progress.clock(T0)} canary 0/45 s: green 120 req 0.00% p95 34ms | "
        "blue 2300 req 0.10% p95 30ms | 4 pass, 1 fail (error rate vs baseline [features]), "
        "1 not evaluated"
    )
    assert shown[-1] is not None and shown[-1].endswith("| promoted: every check passed")
    # The log file's line (no view): every evaluation.
    assert all(progress.plain_line(canary(t, t)) for t in (0, 2, 4))


def test_plain_output_throttles_the_canary_lines_and_logs_them_all(tmp_path: Path) -> None:
    stream = io.StringIO()
    log = RunLog(tmp_path, "cv", {})
    with live.RunOutput(log, "plain", stream=stream) as output:
        output.event({"kind": "stage", "t": T0, "name": "canary window"})
        for t in range(0, 21, 2):
            output.event(canary(t, t))
        output.event(canary(21, 21, "promote"))
    output.close()
    shown = [line for line in stream.getvalue().splitlines() if "/45 s: " in line]
    assert [line.split()[2] for line in shown] == ["0/45", "6/45", "12/45", "18/45", "21/45"]
    assert "\x1b[" not in stream.getvalue()
    logged = [line for line in log.path.read_text().splitlines() if "/45 s: " in line]
    assert len(logged) == 12 and logged[-1] == shown[-1]


def test_the_live_view_draws_the_window_below_the_hosts_and_redraws_its_clock() -> None:
    output = live.RunOutput(None, "live", stream=io.StringIO())
    now = time.time()
    output.event({"kind": "plan", "t": now - 30, "hosts": {"web1": 3, "web2": 3}})
    output.event({"kind": "stage", "t": now - 30, "name": "canary window"})
    output.event({**canary(0, 12), "t": now})
    lines = text_of(output.render())
    assert lines[0] == "stage: canary window"
    assert [line.split()[0] for line in lines[1:3]] == ["web1", "web2"]
    assert lines[3].startswith("canary 5% green vs blue  12 s of 45 s (33 s left)")
    assert "━" in lines[3]  # the bar of the time gone
    assert lines[4].split() == ["colour", "requests", "error", "rate", "p95"]
    assert lines[5].split() == ["green", "120", "0.00%", "34ms"]
    assert lines[6].split() == ["blue", "2300", "0.10%", "30ms"]
    assert lines[7].split() == ["check", "value", "threshold", "verdict", "failing"]
    rows = [line.split() for line in lines[8:]]
    assert rows[0] == ["error", "rate", "0.00%", "1.00%", "pass", "0"]
    assert rows[1] == ["p95", "latency", "34ms", "500ms", "pass", "0"]
    assert rows[3][-3:] == ["0.00167", "fail", "2"]
    assert rows[4][-4:] == ["-", "not", "evaluated", "0"]
    # The same event, seconds later: the time gone moved on.
    c = output.view.canary
    assert c is not None
    later = text_of(live.canary_panel(c, now=now + 5))
    assert later[0].startswith("canary 5% green vs blue  17 s of 45 s (28 s left)")


def test_many_checks_show_the_failed_and_overall_ones_and_count_the_rest() -> None:
    routes = [
        {"name": "p95 vs baseline", "route": f"r{i}", "verdict": "pass", "value": 0.1}
        for i in range(20)
    ]
    routes[17] = {**routes[17], "verdict": "fail", "failing": 1}
    c = progress.CanaryView.from_event(canary(0, 0, checks=[*CHECKS, *routes]))
    lines = text_of(live.canary_panel(c, now=T0))
    rows = lines[lines.index(next(x for x in lines if x.startswith("check "))) + 1 :]
    assert len(rows) == live.CHECK_ROWS + 1
    assert any(row.startswith("p95 vs baseline [r17]") for row in rows)
    assert rows[-1].split()[:2] == ["14", "more"] and "14 pass, 0 fail" in rows[-1]


def test_a_line_printed_while_the_view_is_redrawn_does_not_hang_the_run() -> None:
    """rich's refresh holds its lock while it draws the view (which reads the view's state);
    a line printed above the view takes that lock too: the run's thread must not hold the
    view's state meanwhile (it did: a canary's lines at the end of its window hung a run)."""
    output = live.RunOutput(None, "live", stream=io.StringIO())
    output.start()
    assert output._live is not None
    rich_lock = output._live._lock
    applying, drawn = threading.Event(), threading.Event()
    taken = output.view.apply

    def slow_apply(event: progress.Event) -> None:  # the run's thread, in the view's state
        applying.set()
        drawn.wait(0.5)  # while a refresh holds rich's lock and waits for the view
        taken(event)

    def refresh() -> None:  # rich's refresh thread: its lock, then the view
        with rich_lock:
            applying.wait(5)
            drawn.set()
            output.render()

    output.view.apply = slow_apply  # type: ignore[method-assign]
    refresher = threading.Thread(target=refresh, daemon=True)
    refresher.start()
    run = threading.Thread(
        target=output.event, args=({"kind": "say", "t": T0, "text": "gate passed"},), daemon=True
    )
    run.start()
    run.join(10)
    refresher.join(10)
    assert not run.is_alive() and not refresher.is_alive(), "the run hung"
    output.stop()
