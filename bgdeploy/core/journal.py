"""The deploy journal: one JSON line per event, on every host involved.

Every deploy, switch, rollback, snapshot, flag change, unlock and emergency action appends one
line to ``<app_root>/.bgdeploy/journal.jsonl`` on each host it touched: who did what, when (UTC),
to which release and colour, with what result, how long each step took and why. The journals are
the memory ``bgdeploy history`` and ``bgdeploy postmortem`` read back, merged across hosts.

A line looks like this (keys sorted, empty fields left out)::

    {"at":"2026-12-03T04:12:09Z","colour":"green","env":"prod","event":"deploy_finish",
     "host":"web1","ref":"v2.4.0","result":"ok","sha":"4f1c2e9a...","sha_before":"9b0d...",
     "steps":[{"name":"composer install","result":"ok","seconds":41.2}],"who":"rahim@ops-laptop"}

The same command builder, :func:`journal_append_command`, serves the pyinfra deploys and the
Fabric tasks.

.. code:: python

    entry = new_entry("switch", host="web1", env="prod", colour="green", result="ok")
    server.shell(commands=[journal_append_command(journal_path(app_root), entry)])
"""

from __future__ import annotations

import getpass
import json
import math
import os
import posixpath
import shlex
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from bgdeploy.core import approvals
from bgdeploy.core.settings import JOURNAL_FILE, STATE_DIR

EVENTS = frozenset(
    {
        "deploy_start",
        "deploy_finish",
        "deploy_fail",
        "switch",
        "canary",
        "rollback",
        "migrate",
        "snapshot",
        "snapshot_restore",
        "flag",
        "unlock",
        "lock_broken",
        "emergency",
        "window_override",
        "destructive_override",
        "review",
        "ship",
    }
)
"""The events a journal line may record."""

RESULTS = frozenset({"ok", "failed", "refused", "skipped", "rolled_back", "partial", "started"})
"""The results an event may have."""

COLOURS = frozenset({"blue", "green"})


class JournalError(ValueError):
    """A journal line that cannot be read, or an entry that cannot be written."""


@dataclass(frozen=True)
class Step:
    """One step of an operation and how long it took.

    + name: the runbook's name for it (``"composer install"``, ``"migrate"``)
    + seconds: wall-clock duration
    + result: ``"ok"``, ``"failed"``, ``"skipped"`` ...
    """

    name: str
    seconds: float
    result: str = "ok"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"name", "seconds", "result"}``."""
        return {"name": self.name, "seconds": self.seconds, "result": self.result}


@dataclass(frozen=True)
class JournalEntry:
    """One event on one host.

    + event: one of :data:`EVENTS`
    + at: when, timezone-aware (stored in UTC)
    + who: the operator, ``user@machine``
    + host: the inventory name of the host (filled in from where the line was read if missing)
    + env: the environment (``prod``, ``staging``, ``sandbox``)
    + ref, sha: the release asked for and the commit it resolved to
    + sha_before: the commit that was live before
    + colour: ``"blue"`` or ``"green"``, for blue-green events
    + result: one of :data:`RESULTS`
    + steps: per-step durations (:class:`Step`, or mappings with ``name``, ``seconds``,
      ``result``)
    + reason: why (``--reason``, the emergency reason, the refusal)
    + message: what happened, in words (an error's text)
    + details: anything else, JSON-serialisable (a snapshot id, a flag name, a percentage)

    Invalid values raise :class:`JournalError`.
    """

    event: str
    at: datetime
    who: str | None = None
    host: str | None = None
    env: str | None = None
    ref: str | None = None
    sha: str | None = None
    sha_before: str | None = None
    colour: str | None = None
    result: str | None = None
    steps: tuple[Step, ...] = ()
    reason: str | None = None
    message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise JournalError(
                f"unknown journal event {self.event!r} "
                f"(expected one of {', '.join(sorted(EVENTS))})"
            )
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise JournalError(f"journal time {self.at!r} must be a timezone-aware datetime")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        for name in ("who", "host", "env", "ref", "sha", "sha_before", "reason", "message"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise JournalError(f"journal field {name} {value!r} must be text")
        if self.colour is not None and self.colour not in COLOURS:
            raise JournalError(f"journal colour {self.colour!r} must be blue or green")
        if self.result is not None and self.result not in RESULTS:
            raise JournalError(
                f"unknown journal result {self.result!r} "
                f"(expected one of {', '.join(sorted(RESULTS))})"
            )
        object.__setattr__(self, "steps", tuple(_step(step) for step in self.steps))
        if not isinstance(self.details, Mapping):
            raise JournalError(f"journal details {self.details!r} must be a dict")
        try:
            json.dumps(self.details, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise JournalError(f"journal details are not JSON-serialisable: {error}") from None

    @property
    def seconds(self) -> float | None:
        """The total duration of the steps, or None without steps."""
        return sum(step.seconds for step in self.steps) if self.steps else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``at`` as ISO 8601 with ``Z``, empty fields left out."""
        data: dict[str, Any] = {"event": self.event, "at": _utc_text(self.at)}
        for item in fields(self):
            if item.name in data:
                continue
            value = getattr(self, item.name)
            if value is None or value == () or value == {}:
                continue
            if item.name == "steps":
                value = [step.to_dict() for step in value]
            elif item.name == "details":
                value = dict(value)
            data[item.name] = value
        return data

    def to_json_line(self) -> str:
        """One line of JSON with sorted keys, no newline (free text newlines are escaped)."""
        text = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        # Characters some readers treat as line breaks never appear raw in a journal line.
        return (
            text.replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
            .replace("\x85", "\\u0085")
        )

    @classmethod
    def from_json(cls, line: str) -> JournalEntry:
        """Read one journal line; unknown keys are ignored (newer writers may add some).

        A broken line raises :class:`JournalError` saying what is wrong.
        """
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            raise JournalError(f"not JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(data, dict):
            raise JournalError(f"not a JSON object but {type(data).__name__}")
        for key in ("event", "at"):
            if key not in data:
                raise JournalError(f"missing {key!r}")
        try:
            at = datetime.fromisoformat(data["at"])
        except (TypeError, ValueError):
            raise JournalError(f"'at' {data['at']!r} is not an ISO 8601 time") from None
        known = {item.name for item in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["at"] = at
        if values.get("details") is None:
            values.pop("details", None)
        if values.get("steps") is None:
            values.pop("steps", None)
        elif not isinstance(values["steps"], list):
            raise JournalError(f"'steps' {values['steps']!r} is not a list")
        try:
            return cls(**values)
        except TypeError as error:
            raise JournalError(str(error)) from None


@dataclass(frozen=True)
class BadLine:
    """A journal line that could not be read: where, what, why."""

    host: str | None
    number: int
    text: str
    error: str

    def __str__(self) -> str:
        where = f"{self.host}: " if self.host else ""
        shown = self.text if len(self.text) <= 80 else self.text[:79] + "…"
        return f"{where}journal line {self.number}: {self.error}: {shown}"


@dataclass(frozen=True)
class MergedHistory:
    """Journal entries of several hosts in time order, and the lines that could not be read."""

    entries: tuple[JournalEntry, ...]
    bad_lines: tuple[BadLine, ...]


# Writing
# -------


def new_entry(
    event: str, *, at: datetime | None = None, who: str | None = None, **values: Any
) -> JournalEntry:
    """An entry for something happening now, by the current operator.

    + event: one of :data:`EVENTS`
    + at: when (default: now)
    + who: the operator (default: :func:`operator_name`)
    + values: the other :class:`JournalEntry` fields
    """
    return JournalEntry(
        event=event,
        at=at or datetime.now(UTC),
        who=who or operator_name(),
        **values,
    )


def operator_name() -> str:
    """``user@machine`` of whoever runs bgdeploy here (``$BGDEPLOY_OPERATOR`` overrides)."""
    override = os.environ.get("BGDEPLOY_OPERATOR")
    if override:
        return override
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def journal_path(app_root: str) -> str:
    """``<app_root>/.bgdeploy/journal.jsonl``."""
    return posixpath.join(app_root, STATE_DIR, JOURNAL_FILE)


def journal_append_command(path: str, entry: JournalEntry) -> str:
    """A POSIX shell command appending ``entry`` as one line to the journal at ``path``.

    The directory is created when missing. The line is written by one ``printf`` with
    ``O_APPEND``, so concurrent writers do not interleave inside a line. Every value is quoted
    with :func:`shlex.quote`: operator text (reasons, messages) never reaches the shell as code.
    """
    directory = posixpath.dirname(path) or "."
    return (
        f"mkdir -p {shlex.quote(directory)} && "
        f"printf '%s\\n' {shlex.quote(entry.to_json_line())} >> {shlex.quote(path)}"
    )


def journal_read_command(path: str, last: int | None = None) -> str:
    """A POSIX shell command printing the journal at ``path`` (nothing when it does not exist).

    + last: only the last N lines
    """
    quoted = shlex.quote(path)
    reader = f"tail -n {int(last)} {quoted}" if last is not None else f"cat {quoted}"
    return f"if [ -f {quoted} ]; then {reader}; fi"


def journal_select_command(path: str, needles: Sequence[str]) -> str:
    """A POSIX shell command printing only the journal lines at ``path`` that contain one of
    ``needles`` (fixed strings; nothing when the file does not exist or nothing matches)."""
    quoted = shlex.quote(path)
    patterns = " ".join(f"-e {shlex.quote(needle)}" for needle in needles)
    return f"if [ -f {quoted} ]; then grep -F {patterns} {quoted} || true; fi"


# Reading
# -------


def parse_journal(
    lines: Iterable[str], host: str | None = None
) -> tuple[list[JournalEntry], list[BadLine]]:
    """Read a journal's lines, keeping going past broken ones.

    + lines: the raw lines (or the whole text split into lines)
    + host: the host they came from, filled into entries without one

    Returns the entries in file order and the lines that could not be read. Blank lines are
    skipped.
    """
    entries: list[JournalEntry] = []
    bad: list[BadLine] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        try:
            entry = JournalEntry.from_json(line)
        except JournalError as error:
            bad.append(BadLine(host=host, number=number, text=line, error=str(error)))
            continue
        if entry.host is None and host is not None:
            entry = replace(entry, host=host)
        entries.append(entry)
    return entries, bad


def merge_histories(histories: Mapping[str, Iterable[str] | str]) -> MergedHistory:
    """Merge several hosts' journals into one history in time order.

    + histories: host name -> that host's journal lines (or its whole text)

    Entries with the same time keep the mapping's host order, then file order. Broken lines are
    collected in ``bad_lines``, never fatal.
    """
    entries: list[JournalEntry] = []
    bad: list[BadLine] = []
    for host, lines in histories.items():
        if isinstance(lines, str):
            lines = lines.splitlines()
        host_entries, host_bad = parse_journal(lines, host)
        entries.extend(host_entries)
        bad.extend(host_bad)
    entries.sort(key=lambda entry: entry.at)
    return MergedHistory(entries=tuple(entries), bad_lines=tuple(bad))


def merge(histories: Mapping[str, Iterable[str] | str]) -> list[JournalEntry]:
    """The entries of :func:`merge_histories` as a list (use that to see the broken lines)."""
    return list(merge_histories(histories).entries)


# Showing
# -------

_COLUMNS = ("TIME (UTC)", "HOST", "EVENT", "RELEASE", "COLOUR", "RESULT", "WHO", "REASON")
_REASON_WIDTH = 100


def format_history(entries: Sequence[JournalEntry]) -> str:
    """The history as a table for ``bgdeploy history``, oldest first.

    .. code::

        TIME (UTC)           HOST  EVENT          RELEASE           COLOUR  RESULT  WHO   REASON
        2026-12-03 04:12:09  web1  deploy_finish  v2.4.0 (4f1c2e9)  green   ok      rahim
    """
    if not entries:
        return "no journal entries"
    rows = [_COLUMNS] + [
        (
            entry.at.strftime("%Y-%m-%d %H:%M:%S"),
            entry.host or "-",
            entry.event,
            release_label(entry),
            entry.colour or "-",
            entry.result or "-",
            entry.who or "-",
            _short(_note(entry), _REASON_WIDTH),
        )
        for entry in entries
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def format_history_json(entries: Sequence[JournalEntry]) -> str:
    """The history as a JSON array for ``bgdeploy history --json``."""
    return json.dumps([entry.to_dict() for entry in entries], indent=2, ensure_ascii=False)


def release_label(entry: JournalEntry) -> str:
    """``"v2.4.0 (4f1c2e9)"``, ``"v2.4.0"``, ``"4f1c2e9"`` or ``"-"``."""
    ref, sha = entry.ref, entry.sha
    if ref and sha and not sha.startswith(ref):
        return f"{ref} ({sha[:7]})"
    if sha:
        return sha[:7]
    return ref or "-"


def _note(entry: JournalEntry) -> str:
    """The reason (or message), the release a rollback left as bad, and a deploy's approval
    (kind, approvers, review due)."""
    text = entry.reason or entry.message or ""
    bad = entry.details.get("bad_release")
    if isinstance(bad, str) and bad and bad[:7] not in text:
        text = f"{text} (left {bad[:7]}: bad)".strip()
    approval = entry.details.get("approval")
    if isinstance(approval, Mapping):
        text = f"{text} [{approvals.summary(approval)}]".strip()
    return text


def _short(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _step(value: Any) -> Step:
    if isinstance(value, Step):
        return value
    if not isinstance(value, Mapping):
        raise JournalError(f"journal step {value!r} must be a dict with name, seconds, result")
    name, seconds, result = value.get("name"), value.get("seconds"), value.get("result", "ok")
    if not isinstance(name, str) or not name:
        raise JournalError(f"journal step {value!r} has no name")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
    ):
        raise JournalError(f"journal step {name!r} seconds {seconds!r} is not a number")
    if not isinstance(result, str):
        raise JournalError(f"journal step {name!r} result {result!r} is not text")
    return Step(name=name, seconds=float(seconds), result=result)


def _utc_text(moment: datetime) -> str:
    timespec = "microseconds" if moment.microsecond else "seconds"
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=timespec) + "Z"
