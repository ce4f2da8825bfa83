"""How long operations tell the operator what they are doing.

A :data:`Progress` is a callback that takes one line of text (the CLI prints it; tests collect
it); :func:`quiet`, the default of every long operation, drops it.

A pyinfra run (``bgdeploy deploy``, ``provision``) also reports *events*, one JSON object a
line (:mod:`bgdeploy.fleet.events` writes them in the pyinfra process), which
:class:`FleetView` turns into what the operator sees: the run's stage and, per host, the step
it is on, the operations done of its total, its seconds and the last problem. The CLI draws
that view (:mod:`bgdeploy.cli.live`); this module only keeps the state, so it is tested
without a terminal. The events, by ``kind``:

- ``plan``: ``hosts``, each host's number of operations (its total);
- ``stage``: ``name``, the stage of the run (lock, preflight, build, snapshot, migrate, ...);
- ``op_start``: ``name``, an operation starts (on every host that has it);
- ``op_host_start`` / ``op_host_end``: ``host``, ``name`` (and ``ok``): one host starts or
  finishes the operation (a host that skips it starts it only);
- ``step_start`` / ``step_end``: ``host``, ``name`` (and ``ok``, ``seconds``, ``message``):
  one of the release's steps (``composer install``, ``migrate``, ...) on one host;
- ``host_error``: ``host``, ``message``: the host could not be reached;
- ``say``: ``level``, ``text``: a line bgdeploy's own code logged inside pyinfra (a canary's
  gate, a failed step, a restore): shown as it is (it is in pyinfra's log already);
- ``canary``: one evaluation of a canary's gate during its window (and a last one, with the
  outcome): ``colour``, ``live``, ``percent``, ``source``, ``elapsed`` and ``window``
  (seconds), ``evaluation``, ``colours`` (per colour: ``requests``, ``error_rate``, ``p95``
  in seconds), ``checks`` (each: ``name``, ``route``, ``verdict``, ``value``, ``threshold``,
  ``failing``: consecutive failed evaluations), ``state`` (``watching``, ``promote`` or
  ``send back``) and ``reason``. :class:`CanaryView` keeps the latest; any field may be
  missing or null.

Every event has ``t``, the wall-clock time (seconds since the epoch) it happened.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

Progress = Callable[[str], None]
Event = Mapping[str, Any]


def quiet(_line: str) -> None:
    """A :data:`Progress` that says nothing."""


class RunObserver(Protocol):
    """Who follows a pyinfra run as it goes: its events and its log lines."""

    def event(self, event: Event) -> None:
        """One event of the run (see the module's docstring)."""

    def log(self, line: str) -> None:
        """One line pyinfra printed (without its line break)."""


def first_line(text: str, width: int = 120) -> str:
    """The first non-empty line of ``text``, cut to ``width`` characters."""
    for line in (text or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


@dataclass
class HostLine:
    """What one host is doing, as the live view shows it."""

    name: str
    total: int = 0
    done: int = 0
    operation: str = ""
    step: str = ""
    started: float | None = None
    finished: float | None = None
    problem: str = ""
    failed: bool = False
    in_operation: bool = False

    @property
    def current(self) -> str:
        """The finest thing known to run now: the release's step, else the operation."""
        if self.finished is not None:
            return "failed" if self.failed else "done"
        return self.step or self.operation or "waiting"

    def seconds(self, now: float) -> float:
        """Seconds since the host's first event (until its last, once finished)."""
        if self.started is None:
            return 0.0
        return max(0.0, (self.finished if self.finished is not None else now) - self.started)

    def counts(self) -> str:
        """Operations done of the total (``3/15``)."""
        return f"{self.done}/{self.total}" if self.total else str(self.done)


CANARY_LINE_EVERY = 5.0
"""Without a terminal, a canary's evaluations make a line at most about this often (seconds;
the first and the last always)."""

WATCHING = "watching"
_QUANTILE = re.compile(r"p\d+\b")
OUTCOMES = {"promote": "promoted", "send back": "sent back"}
"""A canary's last states, and how the view says them."""


def _number(value: Any) -> float | None:
    """A finite number from an event's field, else None (null, missing, ``"NaN"``, text)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def percent_text(rate: float | None) -> str:
    """A share as a percentage (``0.10%``), ``-`` when not known."""
    return "-" if rate is None else f"{rate * 100:.2f}%"


def ms_text(seconds: float | None) -> str:
    """Seconds as milliseconds (``34ms``), ``-`` when not known."""
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"


@dataclass(frozen=True)
class ColourNumbers:
    """One colour's traffic over a canary's window so far (None: not known)."""

    requests: int | None = None
    error_rate: float | None = None
    p95: float | None = None
    """Seconds."""

    @classmethod
    def from_event(cls, fields: Any) -> ColourNumbers:
        """From one colour's entry of a ``canary`` event's ``colours``."""
        fields = fields if isinstance(fields, Mapping) else {}
        requests = _number(fields.get("requests"))
        return cls(
            None if requests is None else int(requests),
            _number(fields.get("error_rate")),
            _number(fields.get("p95")),
        )

    def cells(self) -> tuple[str, str, str]:
        """Requests, error rate (%) and p95 (ms) as the view shows them."""
        requests = "-" if self.requests is None else str(self.requests)
        return requests, percent_text(self.error_rate), ms_text(self.p95)


@dataclass(frozen=True)
class CanaryCheck:
    """One of the gate's checks at the last evaluation."""

    name: str
    route: str = ""
    verdict: str = "not evaluated"
    value: float | None = None
    threshold: float | None = None
    failing: int = 0
    """Consecutive evaluations it has failed."""

    @classmethod
    def from_event(cls, fields: Any) -> CanaryCheck:
        """From one entry of a ``canary`` event's ``checks``."""
        fields = fields if isinstance(fields, Mapping) else {}
        failing = _number(fields.get("failing"))
        return cls(
            name=str(fields.get("name") or "check"),
            route=str(fields.get("route") or ""),
            verdict=str(fields.get("verdict") or "not evaluated"),
            value=_number(fields.get("value")),
            threshold=_number(fields.get("threshold")),
            failing=0 if failing is None else int(failing),
        )

    @property
    def label(self) -> str:
        """Its name, and its route when it is about one (``p95 vs baseline [features]``)."""
        return f"{self.name} [{self.route}]" if self.route else self.name

    def numbers(self) -> tuple[str, str]:
        """The value and the threshold in the check's unit: a share in %, a latency (or a
        quantile: ``p50 vs baseline``) in ms,
        a count as it is; an error rate compared with the baseline has a significance as its
        threshold (``p < 0.00167``). ``-`` when not known."""
        name = self.name.lower()
        if "error rate" in name:
            value = percent_text(self.value)
            if "baseline" in name:
                return value, "-" if self.threshold is None else f"p < {self.threshold:.3g}"
            return value, percent_text(self.threshold)
        if "latency" in name or _QUANTILE.match(name):
            return ms_text(self.value), ms_text(self.threshold)
        return (
            "-" if self.value is None else f"{self.value:g}",
            "-" if self.threshold is None else f"{self.threshold:g}",
        )


@dataclass
class CanaryView:
    """A canary's window as the last ``canary`` event told it (see the module)."""

    colour: str = ""
    live: str = ""
    percent: float | None = None
    source: str = ""
    elapsed: float = 0.0
    window: float = 0.0
    evaluation: int = 0
    colours: dict[str, ColourNumbers] = field(default_factory=dict)
    checks: list[CanaryCheck] = field(default_factory=list)
    state: str = WATCHING
    reason: str = ""
    t: float = 0.0
    """When the event was written (wall clock)."""
    stopped: float | None = None
    """When the run ended, for a window it left unfinished: its clock stops there."""

    @classmethod
    def from_event(cls, event: Event) -> CanaryView:
        """The view of one ``canary`` event; missing or null fields are left unknown."""
        colours = event.get("colours")
        checks = event.get("checks")
        evaluation = _number(event.get("evaluation"))
        return cls(
            colour=str(event.get("colour") or ""),
            live=str(event.get("live") or ""),
            percent=_number(event.get("percent")),
            source=str(event.get("source") or ""),
            elapsed=max(0.0, _number(event.get("elapsed")) or 0.0),
            window=max(0.0, _number(event.get("window")) or 0.0),
            evaluation=0 if evaluation is None else int(evaluation),
            colours={
                str(name): ColourNumbers.from_event(numbers)
                for name, numbers in (colours.items() if isinstance(colours, Mapping) else ())
            },
            checks=[
                CanaryCheck.from_event(check)
                for check in (checks if isinstance(checks, list) else [])
            ],
            state=str(event.get("state") or WATCHING),
            reason=str(event.get("reason") or ""),
            t=_number(event.get("t")) or time.time(),
        )

    @property
    def ended(self) -> bool:
        """True once the gate decided (promote or send back)."""
        return self.state != WATCHING

    @property
    def outcome(self) -> str:
        """``promoted``, ``sent back`` (or the state as it came), ``""`` while watching."""
        return OUTCOMES.get(self.state, self.state) if self.ended else ""

    def seconds(self, now: float | None = None) -> float:
        """Seconds of the window gone at ``now``: the event's, plus the time since it was
        written while the gate still watches (at most the window); where it ended, once the
        gate decided or the run stopped."""
        if self.ended:  # (its last evaluation may come a little after the window's end)
            return min(self.elapsed, self.window) if self.window else self.elapsed
        now = time.time() if now is None else now
        if self.stopped is not None:
            now = min(now, self.stopped)
        gone = self.elapsed + max(0.0, now - self.t)
        return min(gone, self.window) if self.window else gone

    def left(self, now: float | None = None) -> float:
        """Seconds of the window still to go at ``now`` (0 once decided)."""
        if self.ended:
            return 0.0
        return max(0.0, self.window - self.seconds(now))

    def title(self) -> str:
        """``canary 5% green vs blue`` (the colours it knows)."""
        share = "" if self.percent is None else f" {self.percent:g}%"
        colours = self.colour or "?"
        if self.live:
            colours += f" vs {self.live}"
        return f"canary{share} {colours}"

    def headline(self, now: float | None = None) -> str:
        """``canary 5% green vs blue  12 s of 45 s (33 s left)``; once decided, the outcome
        instead of the time left."""
        gone = self.seconds(now)
        of = f" of {self.window:.0f} s" if self.window else ""
        if self.ended:
            return f"{self.title()}  {gone:.0f} s{of}: {self.outcome}"
        left = f" ({self.left(now):.0f} s left)" if self.window else ""
        return f"{self.title()}  {gone:.0f} s{of}{left}"

    def ordered_colours(self) -> list[tuple[str, ColourNumbers]]:
        """The canary colour first, then the live one, then any other the event named."""
        first = [c for c in (self.colour, self.live) if c in self.colours]
        rest = [c for c in self.colours if c not in first]
        return [(name, self.colours[name]) for name in (*first, *rest)]

    def verdicts(self) -> dict[str, int]:
        """How many checks passed, failed and were not evaluated."""
        counts = {"pass": 0, "fail": 0, "not evaluated": 0}
        for check in self.checks:
            counts[check.verdict] = counts.get(check.verdict, 0) + 1
        return counts

    def summary(self) -> str:
        """``9 pass, 1 fail (error rate), 3 not evaluated``: the failing checks named."""
        counts = self.verdicts()
        failing = [c.label for c in self.checks if c.verdict == "fail"]
        parts = [f"{counts.pop('pass')} pass"]
        fail = f"{counts.pop('fail')} fail"
        parts.append(fail + (f" ({', '.join(failing)})" if failing else ""))
        parts.append(f"{counts.pop('not evaluated')} not evaluated")
        parts += [f"{n} {verdict}" for verdict, n in counts.items()]
        return ", ".join(parts)


@dataclass
class FleetView:
    """The state of a run, from its events: the stage, and a :class:`HostLine` per host."""

    stage: str = ""
    hosts: dict[str, HostLine] = field(default_factory=dict)
    operation: str = ""
    activity: str = ""
    """The last line of a run that has no pyinfra events (a rollback over Fabric)."""
    ended: bool = False
    canary: CanaryView | None = None
    """The canary's window, from its latest ``canary`` event (None: no canary watched)."""
    canary_due: bool = False
    """Whether the latest ``canary`` event deserves a line without a terminal: the first, the
    last, and otherwise one at least :data:`CANARY_LINE_EVERY` seconds after the last shown."""
    _canary_shown: float | None = None

    def host(self, name: str) -> HostLine:
        if name not in self.hosts:
            self.hosts[name] = HostLine(name)
        return self.hosts[name]

    def apply(self, event: Event) -> None:
        """Take one event into the view (an unknown kind is ignored)."""
        kind = event.get("kind")
        when = float(event.get("t") or time.time())
        name = str(event.get("name") or "")
        if kind == "plan":
            for host, total in dict(event.get("hosts") or {}).items():
                line = self.host(str(host))
                line.total = int(total)
                line.started = line.started or when
            return
        if kind == "stage":
            self.stage = name
            return
        if kind == "op_start":
            self.operation = name
            return
        if kind == "canary":
            self._take_canary(event)
            return
        host = event.get("host")
        if not host:
            return
        line = self.host(str(host))
        line.started = line.started or when
        if kind == "op_host_start":
            if line.in_operation:  # the one before was skipped here: pyinfra ends it silently
                line.done += 1
            line.operation, line.step, line.in_operation = name, "", True
        elif kind == "op_host_end":
            line.done += 1 if line.in_operation else 0
            # Its part is done; the others may still be in the operation.
            line.operation, line.step, line.in_operation = "", "", False
            if not event.get("ok", True):
                line.failed = True
                line.problem = line.problem or f"{name} failed"
            if line.total and line.done >= line.total:
                line.finished = when
        elif kind == "step_start":
            line.step = name
        elif kind == "step_end":
            line.step = ""
            if not event.get("ok", True):
                line.failed = True
                line.problem = f"{name}: {first_line(str(event.get('message') or 'failed'))}"
        elif kind == "host_error":
            line.failed = True
            line.finished = when
            line.problem = first_line(str(event.get("message") or "unreachable"))

    def _take_canary(self, event: Event) -> None:
        canary = CanaryView.from_event(event)
        last = self._canary_shown
        # (A little short of the period: evaluations every 5 s come 4.99 s apart too.)
        self.canary_due = canary.ended or last is None or canary.t - last >= CANARY_LINE_EVERY * 0.9
        if self.canary_due:
            self._canary_shown = canary.t
        self.canary = canary

    def rows(self, now: float | None = None) -> list[tuple[str, str, str, str, str]]:
        """One row per host, in the order they were first seen: host, step, done/total,
        seconds, last problem."""
        now = time.time() if now is None else now
        return [
            (h.name, h.current, h.counts(), f"{h.seconds(now):.0f}s", h.problem)
            for h in self.hosts.values()
        ]

    def finish(self, now: float | None = None) -> None:
        """The run ended: every host's line stops where it is (its seconds too)."""
        now = time.time() if now is None else now
        self.ended = True
        for line in self.hosts.values():
            if line.finished is None:
                line.finished = now
            line.step, line.in_operation = "", False
        if self.canary is not None and not self.canary.ended and self.canary.stopped is None:
            self.canary.stopped = now

    def stage_line(self) -> str:
        """The line above the hosts: the stage, else the operation running."""
        return f"stage: {self.stage or self.operation or self.activity or 'starting'}"


def clock(when: float) -> str:
    """``HH:MM:SS`` of a wall-clock time, in the machine's time zone."""
    return datetime.fromtimestamp(when).strftime("%H:%M:%S")


def plain_line(event: Event, view: FleetView | None = None) -> str | None:
    """The timestamped line a log without a terminal (CI) gets for ``event``, or None when
    it says nothing worth a line (a host starting or ending an operation that went well; an
    operation starting, once the run has stages of its own; a canary's evaluation too soon
    after the last one shown, :attr:`FleetView.canary_due`). ``view`` is the view that has
    taken ``event``. Without ``view``: the line the log file gets, every operation and every
    canary evaluation included."""
    kind = event.get("kind")
    stamp = clock(float(event.get("t") or time.time()))
    name = str(event.get("name") or "")
    host = str(event.get("host") or "")
    if kind == "stage":
        return f"{stamp} stage: {name}"
    if kind == "step_start":
        return f"{stamp} {host}: {name}"
    if kind == "step_end":
        seconds = float(event.get("seconds") or 0)
        if event.get("ok", True):
            return f"{stamp} {host}: {name} ok ({seconds:.1f} s)"
        why = first_line(str(event.get("message") or ""))
        return f"{stamp} {host}: {name} FAILED ({seconds:.1f} s)" + (f": {why}" if why else "")
    if kind == "op_host_end" and not event.get("ok", True):
        return f"{stamp} {host}: {name} FAILED"
    if kind == "op_start" and (view is None or not view.stage):
        return f"{stamp} {name}"  # provision: its operations are its stages
    if kind == "say":  # every line stamped (a warning may hold several)
        return "\n".join(f"{stamp} {line}" for line in str(event.get("text") or "").splitlines())
    if kind == "host_error":
        return f"{stamp} {host}: unreachable: {first_line(str(event.get('message') or ''))}"
    if kind == "canary" and (view is None or view.canary_due):
        return f"{stamp} {canary_line(CanaryView.from_event(event))}"
    return None


def canary_line(canary: CanaryView) -> str:
    """One evaluation of a canary's window in a line: ``canary 12/45 s: green 120 req 0.00%
    p95 34ms | blue 2300 req 0.10% p95 30ms | 9 pass, 0 fail, 3 not evaluated`` (and, the
    last, ``| promoted: why``)."""
    parts = [
        f"{name} {numbers.cells()[0]} req {numbers.cells()[1]} p95 {numbers.cells()[2]}"
        for name, numbers in canary.ordered_colours()
    ]
    parts.append(canary.summary())
    if canary.ended:
        parts.append(canary.outcome + (f": {canary.reason}" if canary.reason else ""))
    gone = canary.seconds(canary.t)  # as the event said it (at most the window)
    window = f"{gone:.0f}/{canary.window:.0f} s" if canary.window else f"{gone:.0f} s"
    return f"canary {window}: " + " | ".join(parts)
