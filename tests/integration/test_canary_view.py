"""What the operator sees of a canary's window, on the session fleet (the sandbox's 20 s
window, the gate's own probes of both colours, an evaluation every few seconds): in a terminal
(a pseudo-terminal drawn by pyte, as in test_progress) the window redrawn in place, its time
gone and left ticking between evaluations, each colour's requests, error rate and p95, each
check's state, then the outcome; without a terminal, one stamped line per evaluation a few
seconds apart, the last with the outcome, and every evaluation in the run's log file."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from bgdeploy import sandbox

from .conftest import ROOT, other_release, run, sandbox_run_env
from .test_progress import in_terminal, screens, starting_release

HEADLINE = re.compile(
    r"^canary 50% (blue|green) vs (blue|green)\s+(\d+) s of (\d+) s \((\d+) s left\)"
)
OUTCOME = re.compile(
    r"^canary 50% (blue|green) vs (blue|green)\s+(\d+) s of (\d+) s: (promoted|sent back)"
)
COLOUR_ROW = re.compile(r"^(blue|green)\s+(\d+)\s+(\d+\.\d\d)%\s+(\d+)ms")
CHECK_ROW = re.compile(
    r"^(error rate|p95 latency|5xx responses)\s{2,}.*\s(pass|fail|not evaluated)\s+\d+$"
)
PLAIN = re.compile(
    r"^(\d\d):(\d\d):(\d\d) canary (\d+)/(\d+) s: (blue|green) (\d+) req (\S+) p95 (\S+) \| "
    r"(blue|green) (\d+) req (\S+) p95 (\S+) \| (\d+) pass, (\d+) fail.*, (\d+) not evaluated"
)


def canary_screens(output: bytes, step: int = 512) -> tuple[list[str], dict[int, set[str]]]:
    """The final screen, and for each screen row every canary headline or colour row it
    showed on the way (the terminal fed ``step`` bytes at a time, as they came)."""
    return screens(output, step, HEADLINE, COLOUR_ROW)


def test_in_a_terminal_the_canary_s_window_is_redrawn_in_place(
    provisioned: sandbox.SandboxState,
) -> None:
    state = provisioned
    ref = other_release(state, starting_release(state))
    code, output = in_terminal(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--canary", "50"],
        env=sandbox_run_env(state),
        timeout=420,
    )
    final, seen = canary_screens(output)
    text = "\n".join(final)
    assert code == 0, text
    # The headline, on one screen row, through many seconds of the window: the time ticks
    # between evaluations (one every few seconds), and gone + left is always the window.
    ticks = {row: lines for row, lines in seen.items() if any(HEADLINE.match(x) for x in lines)}
    assert ticks, text
    lines = max(ticks.values(), key=len)
    headlines = [m for m in (HEADLINE.match(line) for line in lines) if m]
    window = {int(m.group(4)) for m in headlines}
    assert window == {20}, headlines  # the sandbox's canary_window
    gone = sorted({int(m.group(3)) for m in headlines})
    assert len(gone) >= 8, gone  # far more than the window's 3 or 4 evaluations
    assert all(abs(int(m.group(3)) + int(m.group(5)) - 20) <= 1 for m in headlines), headlines
    colours = {m.group(1) for m in headlines} | {m.group(2) for m in headlines}
    assert colours == {"blue", "green"}, headlines
    canary_colour = headlines[0].group(1)
    # Each colour's numbers, on a row of its own redrawn as the probes add up.
    numbers: dict[str, set[int]] = {}
    for lines in seen.values():
        for match in (COLOUR_ROW.match(line) for line in lines):
            if match:
                numbers.setdefault(match.group(1), set()).add(int(match.group(2)))
    assert sorted(numbers) == ["blue", "green"], seen
    assert all(len(counts) >= 2 and max(counts) > 0 for counts in numbers.values()), numbers
    assert b"\x1b[1A" in output or b"\x1b[2K" in output  # the cursor went back up
    # The screen as the run left it: the window with its outcome, each colour, each check.
    outcome = [m for m in (OUTCOME.match(line) for line in final) if m]
    assert len(outcome) == 1 and outcome[0].group(5) == "promoted", text
    assert outcome[0].group(1) == canary_colour, text
    rows = [m for m in (COLOUR_ROW.match(line) for line in final) if m]
    assert sorted(m.group(1) for m in rows) == ["blue", "green"], text
    assert all(int(m.group(2)) > 0 for m in rows), text
    checks = {m.group(1): m.group(2) for m in (CHECK_ROW.match(line) for line in final) if m}
    assert checks == {"error rate": "pass", "p95 latency": "pass", "5xx responses": "pass"}, text
    assert final.index(next(x for x in final if OUTCOME.match(x))) < final.index(
        next(x for x in final if x.startswith("host  sha before"))
    ), text
    assert f"deployed {ref}" in text


def test_without_a_terminal_a_line_per_evaluation_a_few_seconds_apart(
    provisioned: sandbox.SandboxState,
) -> None:
    state = provisioned
    ref = other_release(state, starting_release(state))
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--canary", "50"],
        env=sandbox_run_env(state),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "\x1b[" not in proc.stderr + proc.stdout  # no escape codes in a CI log
    lines = [line for line in proc.stderr.splitlines() if " canary " in line and " req " in line]
    found = [PLAIN.match(line) for line in lines]
    assert lines and all(found), lines
    matches = [m for m in found if m]
    assert len(matches) >= 3, lines  # a 20 s window, an evaluation every few seconds
    assert {int(m.group(5)) for m in matches} == {20}, lines
    gone = [int(m.group(4)) for m in matches]
    assert gone == sorted(gone) and gone[-1] >= 15, lines
    # Both colours' numbers, the canary's first; the probes add up.
    assert all({m.group(6), m.group(10)} == {"blue", "green"} for m in matches), lines
    assert int(matches[-1].group(7)) > int(matches[0].group(7)) > 0, lines
    assert int(matches[-1].group(11)) > 0, lines
    assert all(m.group(8).endswith("%") and m.group(9).endswith("ms") for m in matches[:-1])
    # At most about one every 5 s (stamps to the second), the last with the outcome.
    stamps = [int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) for m in matches]
    assert all((b - a) % 86400 >= 4 for a, b in itertools.pairwise(stamps[:-1])), lines
    assert "| promoted" in lines[-1], lines
    assert not any("| promoted" in line or "| sent back" in line for line in lines[:-1]), lines
    # The log file has every evaluation's line, as the screen's.
    log = Path(proc.stderr.splitlines()[-1].removeprefix("log: "))
    log = log if log.is_absolute() else ROOT / log
    logged = [x for x in log.read_text().splitlines() if PLAIN.match(x)]
    assert len(logged) >= len(lines) and lines[-1] in logged, logged
