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
  gate, a failed step, a restore): shown as it is (it is in pyinfra's log already).

Every event has ``t``, the wall-clock time (seconds since the epoch) it happened.
"""

from __future__ import annotations

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


@dataclass
class FleetView:
    """The state of a run, from its events: the stage, and a :class:`HostLine` per host."""

    stage: str = ""
    hosts: dict[str, HostLine] = field(default_factory=dict)
    operation: str = ""
    activity: str = ""
    """The last line of a run that has no pyinfra events (a rollback over Fabric)."""
    ended: bool = False

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

    def stage_line(self) -> str:
        """The line above the hosts: the stage, else the operation running."""
        return f"stage: {self.stage or self.operation or self.activity or 'starting'}"


def clock(when: float) -> str:
    """``HH:MM:SS`` of a wall-clock time, in the machine's time zone."""
    return datetime.fromtimestamp(when).strftime("%H:%M:%S")


def plain_line(event: Event, view: FleetView | None = None) -> str | None:
    """The timestamped line a log without a terminal (CI) gets for ``event``, or None when
    it says nothing worth a line (a host starting or ending an operation that went well; an
    operation starting, once the run has stages of its own). Without ``view``: the line the
    log file gets, every operation included."""
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
    return None
