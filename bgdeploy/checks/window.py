"""The canary window: judged at intervals, sent back early, promoted only at its end.

A canary is watched for ``canary_window`` seconds (the runbook's 5 minutes). The gate does not
look once at the end: every ``canary_interval`` seconds (30 s in production, 5 s in the
sandbox) it evaluates what the window has shown so far, with the same checks as at the end
(:mod:`bgdeploy.checks.gate`'s limits, :mod:`bgdeploy.checks.baseline`'s comparisons) over the
seconds since the window began: Prometheus's numbers, or the probes answered so far. Each
evaluation is shown live (:meth:`Watch.event`, :meth:`Watch.line`) and journaled
(:meth:`Watch.to_dict`).

**Early send-back.** A check that fails ``canary_failure_limit`` evaluations in a row (default
3) ends the window at once, and every client goes back to the old colour. Before the end, a
failure counts (:func:`counts_against`) when it is

- a number over its limit: an error rate or p95 once the canary had ``canary_min_requests``
  requests (2 errors in 3 requests is not a rate yet); a 5xx count at once (it only grows);
- a comparison with the baseline that fails its test: before the end each comparison is
  tested at ``canary_significance`` shared among the evaluations before the end as well
  (Bonferroni), so a healthy canary is sent back early by chance less than
  ``canary_significance`` of the time (and, with the end's own test, a false alarm of the
  whole window stays under twice that);
- Prometheus not answering (the check ``prometheus answers``): a monitoring outage is not a
  pass, and three evaluations without an answer send the canary back.

A check without a number yet (no request in the seconds so far, too few requests to compare)
neither counts nor breaks a run of failures; a pass breaks it.

**Promotion only at the end.** However good the evaluations before it, a canary is promoted
only by the evaluation over the whole window, with the gate's usual rules (it fails closed; a
required comparison that could not be made fails).

**Time to send back.** The report gives the second the first failure was seen (the first
failed probe; with Prometheus, the first evaluation that saw a canary error or counted a
failure), the second the window ended and why, and the second every client was on the old
colour again (:meth:`Watch.back`): the time from the first failure to every client back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bgdeploy.checks.gate import (
    COUNT_5XX,
    GateCheck,
    GateResult,
    check_number,
    gate_result,
)

ANSWERS = "prometheus answers"
"""The check of an evaluation Prometheus did not answer (it fails; three in a row send back)."""

WATCHING = "watching"
PROMOTE = "promote"
SEND_BACK = "send back"

Clock = Callable[[], float]
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class WindowRules:
    """How the window is watched (settings ``canary_window``, ``canary_interval``,
    ``canary_failure_limit``, ``canary_min_requests``)."""

    window: float
    interval: float
    failure_limit: int = 3
    min_requests: int = 100

    def __post_init__(self) -> None:
        check_number("canary_window", self.window, 1, 86_400, what="canary")
        check_number("canary_interval", self.interval, 1, 86_400, what="canary")
        check_number("canary_failure_limit", self.failure_limit, 1, 1000, what="canary")
        check_number("canary_min_requests", self.min_requests, 1, 1e9, what="canary")

    @property
    def looks(self) -> int:
        """Evaluations before the last one (the one at the window's end)."""
        return max(0, math.ceil(self.window / self.interval - 1e-9) - 1)

    def due(self, number: int) -> float:
        """Seconds into the window of evaluation ``number`` (1, 2, ...): every interval, the
        last at the window's end."""
        return min(float(self.window), number * float(self.interval))


@dataclass(frozen=True)
class ColourNumbers:
    """One colour's requests over the seconds so far, for the operator: requests, errors (5xx
    with Prometheus; not 2xx with probes) and p95 (None when unknown)."""

    requests: int
    errors: int
    p95: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        p95 = self.p95 if self.p95 is not None and math.isfinite(self.p95) else None
        return {"requests": self.requests, "error_rate": self.error_rate, "p95": p95}


@dataclass(frozen=True)
class Reading:
    """What a source found at one evaluation: the gate's result, each colour's numbers, and
    (probes) the second the first failed canary request was sent."""

    result: GateResult
    colours: Mapping[str, ColourNumbers] = field(default_factory=dict)
    first_error: float | None = None


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: its number, when (seconds into the window), what was read, and
    whether it was the one at the window's end."""

    number: int
    elapsed: float
    reading: Reading
    final: bool

    @property
    def result(self) -> GateResult:
        return self.reading.result


def counts_against(check: GateCheck, canary_requests: int, min_requests: int) -> bool | None:
    """Before the window's end: True when ``check`` is a failure that counts towards an early
    send-back, False when it passed (a run of failures ends), None when it says nothing yet
    (see the module)."""
    if check.passed:
        return False
    if not check.failed:  # not evaluated
        return None
    if check.name == ANSWERS:
        return True
    if check.unmeasured:
        return None  # too few requests to compare yet: only the window's end fails it
    if check.value is None or not math.isfinite(check.value):
        return None  # no number yet (no traffic, no series): nothing to judge
    if check.compared or check.name == COUNT_5XX:
        return True
    return True if canary_requests >= min_requests else None


Key = tuple[str, str]


@dataclass
class Watch:
    """The record of one window: its evaluations, each check's run of failures, and how it
    ended. :meth:`add` takes each evaluation and says whether the window ends."""

    rules: WindowRules
    canary: str
    live: str
    source: str = ""
    evaluations: list[Evaluation] = field(default_factory=list)
    streaks: dict[Key, int] = field(default_factory=dict)
    first_failure: float | None = None
    ended_at: float | None = None
    early: bool = False
    reason: str = ""
    back_at: float | None = None
    began: float = 0.0
    """The clock's reading when the window began (:func:`watch`'s ``clock``)."""

    @property
    def result(self) -> GateResult:
        """The result of the last evaluation (the one that decided), or an empty failed one."""
        if not self.evaluations:
            return gate_result([], self.source)
        return self.evaluations[-1].result

    @property
    def state(self) -> str:
        """``watching``, or how the window ended: ``promote`` or ``send back``."""
        if self.ended_at is None:
            return WATCHING
        return PROMOTE if self.result.passed and not self.early else SEND_BACK

    def add(self, evaluation: Evaluation) -> bool:
        """Record ``evaluation``; True when the window ends with it (its end, or an early
        send-back: :attr:`reason` says which and why)."""
        self.evaluations.append(evaluation)
        reading = evaluation.reading
        canary = reading.colours.get(self.canary)
        requests = canary.requests if canary is not None else 0
        seen: list[float] = []
        if reading.first_error is not None:
            seen.append(reading.first_error)
        if canary is not None and canary.errors:
            seen.append(evaluation.elapsed)
        tripped: list[tuple[GateCheck, int]] = []
        for check in evaluation.result.checks:
            key = (check.name, check.route)
            counted = True if evaluation.final and check.failed else None
            if not evaluation.final:
                counted = counts_against(check, requests, self.rules.min_requests)
            if counted:
                self.streaks[key] = self.streaks.get(key, 0) + 1
                seen.append(evaluation.elapsed)
                if self.streaks[key] >= self.rules.failure_limit:
                    tripped.append((check, self.streaks[key]))
            elif counted is False:
                self.streaks[key] = 0
        if seen and self.first_failure is None:
            self.first_failure = min(seen)
        if evaluation.final:
            self.ended_at = evaluation.elapsed
            passed = evaluation.result.passed
            self.reason = (
                f"the whole window ({self.rules.window:g} s) passed"
                if passed
                else "the evaluation over the whole window failed"
            )
            return True
        if tripped:
            check, count = tripped[0]
            route = f" [route {check.route}]" if check.route else ""
            self.ended_at = evaluation.elapsed
            self.early = True
            self.reason = (
                f"{check.name}{route} failed {count} evaluations in a row "
                f"(the last at {evaluation.elapsed:.0f} s: {check.reason})"
            )
            return True
        return False

    def back(self, elapsed: float) -> None:
        """Every client is on the old colour again, ``elapsed`` seconds into the window."""
        self.back_at = elapsed

    # What the operator sees

    def event(self) -> dict[str, Any]:
        """The live view's ``canary`` event for the last evaluation."""
        last = self.evaluations[-1] if self.evaluations else None
        checks = [
            {
                "name": c.name,
                "route": c.route,
                "verdict": c.verdict,
                "value": _number(c.value),
                "threshold": _number(c.threshold),
                "failing": self.streaks.get((c.name, c.route), 0),
            }
            for c in (last.result.checks if last else ())
        ]
        return {
            "source": self.source,
            "colour": self.canary,
            "live": self.live,
            "elapsed": round(last.elapsed, 2) if last else 0.0,
            "window": self.rules.window,
            "evaluation": last.number if last else 0,
            "colours": {k: v.to_dict() for k, v in (last.reading.colours if last else {}).items()},
            "checks": checks,
            "state": self.state,
            "reason": self.reason,
        }

    def line(self) -> str:
        """One plain line for the last evaluation (logs, CI)."""
        if not self.evaluations:
            return f"canary {self.canary}: not evaluated yet"
        last = self.evaluations[-1]
        colours = " | ".join(
            f"{colour} {_numbers_text(last.reading.colours[colour])}"
            for colour in (self.canary, self.live)
            if colour in last.reading.colours
        )
        checks = last.result.checks
        failing = [f"{c.name}{f' [{c.route}]' if c.route else ''}" for c in checks if c.failed]
        passed = sum(1 for c in checks if c.passed)
        skipped = len(checks) - passed - len(failing)
        verdicts = f"{passed} pass, {len(failing)} fail, {skipped} not evaluated"
        if failing:
            verdicts += f" ({', '.join(failing)})"
        head = f"canary {last.elapsed:.0f}/{self.rules.window:g} s, evaluation {last.number}"
        tail = f": {self.state}, {self.reason}" if self.ended_at is not None else ""
        return f"{head}: {colours or 'no numbers'}: {verdicts}{tail}"

    def report(self) -> list[str]:
        """How the window ended, in lines: when, why, and how fast every client was back."""
        if self.ended_at is None:
            return []
        how = "ended early" if self.early else "ended"
        lines = [f"window {how} at {self.ended_at:.1f} s of {self.rules.window:g} s: {self.reason}"]
        if self.state == PROMOTE:
            return lines
        if self.first_failure is not None:
            lines.append(f"first failure seen at {self.first_failure:.1f} s")
        if self.back_at is not None:
            since = ""
            if self.first_failure is not None:
                since = f": {self.back_at - self.first_failure:.1f} s after the first failure"
            lines.append(f"every client back on {self.live} at {self.back_at:.1f} s{since}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The window for the journal: the rules, each evaluation (second, verdict, failed
        checks, each colour's numbers) and how it ended."""
        return {
            "window": self.rules.window,
            "interval": self.rules.interval,
            "failure_limit": self.rules.failure_limit,
            "evaluations": [
                {
                    "n": e.number,
                    "elapsed": round(e.elapsed, 2),
                    "passed": e.result.passed,
                    "failed": [
                        f"{c.name}{f' [{c.route}]' if c.route else ''}"
                        for c in e.result.checks
                        if c.failed
                    ],
                    "colours": {k: v.to_dict() for k, v in e.reading.colours.items()},
                }
                for e in self.evaluations
            ],
            "early": self.early,
            "ended_at": _rounded(self.ended_at),
            "reason": self.reason,
            "first_failure": _rounded(self.first_failure),
            "back_at": _rounded(self.back_at),
            "seconds_to_back": (
                _rounded(self.back_at - self.first_failure)
                if self.back_at is not None and self.first_failure is not None
                else None
            ),
        }


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rounded(value: float | None) -> float | None:
    """To the tenth of a second, as :meth:`Watch.report` prints it: the journal and the
    report never disagree (15.2549 rounded twice, to 15.25 and then 15.2, did)."""
    return None if value is None else round(value, 1)


def _numbers_text(numbers: ColourNumbers) -> str:
    rate = numbers.error_rate
    p95 = numbers.p95
    rate_text = "-" if rate is None else f"{rate * 100:.2f}%"
    p95_text = "-" if p95 is None or not math.isfinite(p95) else f"{p95 * 1000:.0f}ms"
    return f"{numbers.requests} req {rate_text} p95 {p95_text}"


# Sources


class Source(Protocol):
    """Where an evaluation's numbers come from."""

    name: str

    def read(self, elapsed: float, final: bool) -> Reading:
        """The gate over the first ``elapsed`` seconds (``final``: the whole window)."""

    def close(self) -> None:
        """Stop whatever the source runs in the background."""


# The loop


def watch(
    source: Source,
    rules: WindowRules,
    canary: str,
    live: str,
    *,
    report: Callable[[Watch], None] | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
) -> Watch:
    """Watch the canary for the window: an evaluation every ``rules.interval`` seconds, the
    last at the window's end, each passed to ``report``; ends early when a check fails
    ``rules.failure_limit`` evaluations in a row. Closes ``source``. The returned record's
    :attr:`Watch.state` says promote or send back."""
    began = clock()
    record = Watch(rules, canary, live, source.name, began=began)
    try:
        number = 0
        while True:
            number += 1
            due = rules.due(number)
            wait = began + due - clock()
            if wait > 0:
                sleep(wait)
            final = due >= rules.window
            reading = source.read(clock() - began, final)
            ended = record.add(Evaluation(number, clock() - began, reading, final))
            if report is not None:
                report(record)
            if ended:
                return record
    finally:
        source.close()


__all__ = [
    "ANSWERS",
    "PROMOTE",
    "SEND_BACK",
    "WATCHING",
    "ColourNumbers",
    "Evaluation",
    "Reading",
    "Watch",
    "WindowRules",
    "counts_against",
    "watch",
]
