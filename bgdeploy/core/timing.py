"""Where a command's time goes: a phase timer for the on-call commands.

``BGDEPLOY_PROFILE=1 bgdeploy rollback ENV`` (or ``bgdeploy --profile rollback ENV``) prints,
when the process exits, a table on stderr: each phase of the command (Python's start and the
imports, the inventory, connecting, reading the colours, the smoke tests, the switch, the
confirmation, health and the journal...), when it started (seconds since the process
started), how long it took, and its share of the whole process. Phases that run at the same
time (the smoke tests beside the colours) overlap: their shares add up to more than 100 %.
``BGDEPLOY_PROFILE=json`` prints the same as one JSON line instead (what ``bench/oncall.py``
reads). Without either nothing is printed and a phase costs two clock readings.

In the code::

    with timing.phase("inventory"):
        environment = runner.check_environment(env)

A phase entered several times (one per host) is shown once: from its first start to its last
end, with how many times it ran.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TextIO

VARIABLE = "BGDEPLOY_PROFILE"
"""The environment variable that turns the profile on (``1``: a table; ``json``: one line)."""

JSON_PREFIX = "bgdeploy-profile "
"""What the JSON line of ``BGDEPLOY_PROFILE=json`` starts with."""


def process_started() -> float:
    """When this process started, on :func:`time.monotonic`'s clock (Linux: from
    ``/proc/self/stat``, to the kernel's clock tick); elsewhere when this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            fields = handle.read().rpartition(")")[2].split()
        ticks = int(fields[19])  # field 22 (starttime), counted after "pid (comm)"
        since_boot = ticks / os.sysconf("SC_CLK_TCK")
        ago = time.clock_gettime(time.CLOCK_BOOTTIME) - since_boot
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED
    return time.monotonic() - max(0.0, ago)


_IMPORTED = time.monotonic()


@dataclass
class Phase:
    """One phase as shown: its first start and last end (seconds since the process started)
    and how many times it ran."""

    name: str
    start: float
    end: float
    count: int = 1

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Profile:
    """The phases of one process (thread-safe: hosts' threads record theirs)."""

    def __init__(self, origin: float | None = None) -> None:
        self.origin = process_started() if origin is None else origin
        self.phases: dict[str, Phase] = {}
        self._lock = threading.Lock()

    def record(self, name: str, start: float, end: float) -> None:
        """Phase ``name`` ran from ``start`` to ``end`` (:func:`time.monotonic` readings)."""
        begin, finish = start - self.origin, end - self.origin
        with self._lock:
            found = self.phases.get(name)
            if found is None:
                self.phases[name] = Phase(name, begin, finish)
            else:
                found.start, found.end = min(found.start, begin), max(found.end, finish)
                found.count += 1

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.record(name, started, time.monotonic())

    def total(self, now: float | None = None) -> float:
        """Seconds since the process started."""
        return (time.monotonic() if now is None else now) - self.origin

    def rows(self, now: float | None = None) -> list[Phase]:
        """The phases in the order they started, and the whole process last."""
        whole = Phase("whole process", 0.0, self.total(now))
        with self._lock:
            found = sorted(self.phases.values(), key=lambda p: (p.start, p.end))
        return [*found, whole]

    def table(self, now: float | None = None) -> str:
        rows = self.rows(now)
        whole = rows[-1].seconds or 1e-9
        names = [row.name + (f" (x{row.count})" if row.count > 1 else "") for row in rows]
        width = max(len(name) for name in names)
        lines = [f"{'phase':<{width}}  {'from':>6}  {'seconds':>7}  {'share':>5}"]
        for name, row in zip(names, rows, strict=True):
            lines.append(
                f"{name:<{width}}  {row.start:6.3f}  {row.seconds:7.3f}  "
                f"{100 * row.seconds / whole:4.0f}%"
            )
        return "\n".join(lines)

    def to_dict(self, now: float | None = None) -> dict[str, dict[str, float]]:
        return {
            row.name: {"from": round(row.start, 4), "seconds": round(row.seconds, 4),
                       "count": row.count}
            for row in self.rows(now)
        }  # fmt: skip


PROFILE = Profile()
"""This process's phases (recorded whether or not they are printed: it costs nothing)."""

_printing: list[str] = []


def phase(name: str) -> AbstractContextManager[None]:
    """A context manager timing phase ``name`` of this process (see the module)."""
    return PROFILE.phase(name)


def record(name: str, start: float, end: float) -> None:
    """Phase ``name`` ran from ``start`` to ``end`` (:func:`time.monotonic` readings)."""
    PROFILE.record(name, start, end)


def mode(environ: dict[str, str] | None = None) -> str:
    """``table``, ``json`` or ``""`` (off), from :data:`VARIABLE`."""
    value = (os.environ if environ is None else environ).get(VARIABLE, "").strip().lower()
    if value in ("", "0", "no", "false", "off"):
        return ""
    return "json" if value == "json" else "table"


def enable(how: str = "table", stream: TextIO | None = None) -> None:
    """Print the profile on ``stream`` (stderr) when the process exits; once."""
    if _printing:
        return
    _printing.append(how)
    atexit.register(print_profile, how, stream)


def print_profile(how: str = "table", stream: TextIO | None = None) -> None:
    """Print this process's profile (``how``: ``table`` or ``json``) on ``stream`` (stderr)."""
    out = sys.stderr if stream is None else stream
    if how == "json":
        out.write(JSON_PREFIX + json.dumps(PROFILE.to_dict()) + "\n")
    else:
        out.write(PROFILE.table() + "\n")
    out.flush()


def parse_json_line(text: str) -> dict[str, dict[str, float]] | None:
    """The profile of ``BGDEPLOY_PROFILE=json`` found in ``text`` (a process's stderr)."""
    for line in reversed(text.splitlines()):
        if line.startswith(JSON_PREFIX):
            found: dict[str, dict[str, float]] = json.loads(line.removeprefix(JSON_PREFIX))
            return found
    return None
