"""Postmortems: the runbook's template, with the timeline filled from the journals.

The document is ``templates/postmortem/postmortem.md.j2``, rendered like every other file
(:mod:`bgdeploy.core.render`); this module chooses and words what goes into it.

After an incident, ``bgdeploy postmortem ENV --since TIME`` writes the runbook's postmortem
document in markdown. What the machines know is filled in: the date, how long the recorded
events lasted, and a timeline in Asia/Dhaka time of the deploys, failures, rollbacks, switches,
flag changes, emergency actions and window overrides, with their hosts and durations. What only
people know (severity, impact, root cause, lessons) is left as ``_TODO: ..._`` prompts.

Events recorded on several hosts at nearly the same time (a fleet-wide switch) become one
timeline line listing the hosts::

    - **10:22:04** - Rollback to v2.3.1 (9b0d3e7) completed by rahim@ops (web1, web2, 12s)

.. code:: python

    entries = merge(histories)  # bgdeploy.core.journal
    print(render_postmortem(entries, "prod", since=parse_at("2026-12-03T09:00", "Asia/Dhaka")))
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from bgdeploy.core import approvals, schedule
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.journal import JournalEntry, release_label
from bgdeploy.core.render import render

COLLAPSE_SECONDS = 60
"""Events this close together (same event, release and result, different hosts) share a line."""

_BY_WHOM = frozenset(
    {
        "deploy_start",
        "rollback",
        "switch",
        "canary",
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
_RESOLUTION_EVENTS = frozenset(
    {"rollback", "switch", "flag", "emergency", "snapshot_restore", "canary"}
)
_SUMMARY_NAMES = {
    "deploy_start": ("deploy started", "deploys started"),
    "deploy_finish": ("deploy finished", "deploys finished"),
    "deploy_fail": ("deploy failed", "deploys failed"),
    "rollback": ("rollback", "rollbacks"),
    "switch": ("traffic switch", "traffic switches"),
    "canary": ("canary change", "canary changes"),
    "migrate": ("migration run", "migration runs"),
    "snapshot": ("snapshot", "snapshots"),
    "snapshot_restore": ("snapshot restore", "snapshot restores"),
    "flag": ("feature flag change", "feature flag changes"),
    "unlock": ("lock release", "lock releases"),
    "lock_broken": ("broken lock", "broken locks"),
    "emergency": ("emergency action", "emergency actions"),
    "window_override": ("deploy window override", "deploy window overrides"),
    "destructive_override": ("destructive migration override", "destructive migration overrides"),
    "review": ("post-deployment review", "post-deployment reviews"),
    "ship": ("ship", "ships"),
}


@dataclass(frozen=True)
class TimelineItem:
    """One timeline line: an event, on one or more hosts, at (nearly) one time.

    + at: when the first of them happened
    + text: what happened, in plain words
    + event: the journal event
    + hosts: the hosts it happened on, by name
    + seconds: the longest duration among them (the sum of each entry's steps), if known
    """

    at: datetime
    text: str
    event: str
    hosts: tuple[str, ...] = ()
    seconds: float | None = None

    def render(self, tz: tzinfo, day: datetime | None = None) -> str:
        """``- **HH:MM:SS** - text (hosts, duration)`` in ``tz``; the date too when not ``day``."""
        local = self.at.astimezone(tz)
        stamp = local.strftime("%H:%M:%S")
        if day is not None and local.date() != day.date():
            stamp = local.strftime("%Y-%m-%d %H:%M:%S")
        extra = [", ".join(self.hosts)] if self.hosts else []
        if self.seconds is not None:
            extra.append(format_seconds(self.seconds))
        suffix = f" ({', '.join(extra)})" if extra else ""
        return f"- **{stamp}** - {self.text}{suffix}"


def render_postmortem(
    entries: Iterable[JournalEntry],
    env: str,
    since: datetime,
    until: datetime | None = None,
    tz: str = "Asia/Dhaka",
    *,
    title: str | None = None,
    collapse_seconds: float = COLLAPSE_SECONDS,
) -> str:
    """The runbook's postmortem template in markdown, filled from journal entries.

    + entries: journal entries (any order; :func:`bgdeploy.core.journal.merge` gives them)
    + env: the environment; entries of other environments are left out
    + since, until: the window of the incident, timezone-aware (``until`` default: no end)
    + tz: the time zone of the timeline (the runbook's is Asia/Dhaka)
    + title: the brief title (default: a prompt)
    + collapse_seconds: events this close together on different hosts share one line
    """
    zone = schedule.zone(tz)
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.utcoffset() is None:
            raise ConfigError(f"postmortem {name} {moment.isoformat()} has no time zone")
    if until is not None and until < since:
        raise ConfigError(
            f"postmortem --until {until.isoformat()} is before --since {since.isoformat()}"
        )
    chosen = sorted(
        (
            entry
            for entry in entries
            if entry.env in (None, env)
            and entry.at >= since
            and (until is None or entry.at <= until)
        ),
        key=lambda entry: entry.at,
    )
    items = timeline(chosen, collapse_seconds=collapse_seconds)

    first = chosen[0].at.astimezone(zone) if chosen else since.astimezone(zone)
    window_end = (until or (chosen[-1].at if chosen else since)).astimezone(zone)
    if chosen:
        span = chosen[-1].at - chosen[0].at
        minutes = int(span.total_seconds()) // 60
        duration = (
            f"{minutes // 60:02d}:{minutes % 60:02d} "
            f"({first:%H:%M:%S} to {chosen[-1].at.astimezone(zone):%H:%M:%S} {zone}, "
            "first to last journal event)"
        )
    else:
        duration = "_TODO: HH:MM (no journal events in the window)_"
    hosts = sorted({entry.host for entry in chosen if entry.host})
    return render(
        "postmortem/postmortem.md.j2",
        None,
        title=title,
        date=f"{first:%Y-%m-%d}",
        duration=duration,
        env=env,
        since=f"{since.astimezone(zone):%Y-%m-%d %H:%M}",
        until=f"{window_end:%Y-%m-%d %H:%M}",
        zone=str(zone),
        hosts=hosts,
        summary=_journal_summary(items),
        timeline=[item.render(zone, first) for item in items],
        resolution=[item.render(zone, first) for item in items if _is_resolution(item)],
    )


def timeline(
    entries: Iterable[JournalEntry], collapse_seconds: float = COLLAPSE_SECONDS
) -> list[TimelineItem]:
    """Timeline items in time order, one per event, hosts collapsed.

    Entries with the same event, release, colour, result, reason, message and operator, on
    different hosts, within ``collapse_seconds`` of the first of them, share one item listing
    the hosts; its duration is the longest of theirs.
    """
    groups: list[tuple[tuple[object, ...], list[JournalEntry]]] = []
    window = timedelta(seconds=collapse_seconds)
    for entry in sorted(entries, key=lambda entry: entry.at):
        key = _collapse_key(entry)
        joined = False
        for group_key, members in reversed(groups):
            if entry.at - members[0].at > window:
                break
            hosts = {member.host for member in members}
            if group_key == key and entry.host is not None and entry.host not in hosts:
                members.append(entry)
                joined = True
                break
        if not joined:
            groups.append((key, [entry]))
    items = []
    for _, members in groups:
        durations = [member.seconds for member in members if member.seconds is not None]
        items.append(
            TimelineItem(
                at=members[0].at,
                text=describe_event(members[0]),
                event=members[0].event,
                hosts=tuple(sorted(member.host for member in members if member.host)),
                seconds=max(durations) if durations else None,
            )
        )
    return items


def describe_event(entry: JournalEntry) -> str:
    """What happened, in plain words: ``"Deploy of v2.4.0 (4f1c2e9) FAILED: migrate failed"``."""
    release = release_label(entry)
    release = "" if release == "-" else release
    of_release = f" of {release}" if release else ""
    details = entry.details
    result = entry.result
    text: str
    if entry.event == "deploy_start":
        strategy = details.get("strategy")
        text = f"Deploy{of_release} started"
        if strategy:
            text += f" ({strategy}"
            text += f", to {entry.colour})" if entry.colour else ")"
        elif entry.colour:
            text += f" (to {entry.colour})"
    elif entry.event == "deploy_finish":
        text = f"Deploy{of_release} finished" + _result_words(result, ok="")
        approval = details.get("approval")
        if isinstance(approval, Mapping):
            text += f" ({approvals.summary(approval)})"
    elif entry.event == "deploy_fail":
        text = f"Deploy{of_release} FAILED"
        if result == "rolled_back":
            text += ", rolled back automatically"
    elif entry.event == "rollback":
        text = f"Rollback to {release}" if release else "Rollback"
        if entry.sha_before:
            text += f" from {entry.sha_before[:7]}"
        text += _result_words(result, ok=" completed")
    elif entry.event == "switch":
        target = entry.colour or "the other colour"
        text = f"Traffic switched to {target}" + (f" ({release})" if release else "")
        text += _result_words(result, ok="")
    elif entry.event == "canary":
        percent = details.get("percent", details.get("pct"))
        share = f" at {percent}% of traffic" if percent is not None else ""
        text = f"Canary{of_release}{share}" + _result_words(result, ok="")
    elif entry.event == "migrate":
        text = f"Migrations ran{' for ' + release if release else ''}" + _result_words(
            result, ok=""
        )
    elif entry.event in ("snapshot", "snapshot_restore"):
        snapshot = details.get("snapshot") or details.get("name") or details.get("id")
        name = f" {snapshot}" if snapshot else ""
        verb = "taken" if entry.event == "snapshot" else "restored"
        text = f"Database snapshot{name} {verb}" + _result_words(result, ok="")
    elif entry.event == "flag":
        flag = details.get("flag") or details.get("name")
        action = details.get("action")
        if flag and action:
            text = f"Feature flag {flag}: {action}"
        elif flag:
            text = f"Feature flag {flag} changed"
        else:
            text = "Feature flag change"
        text += _result_words(result, ok="")
    elif entry.event == "unlock":
        text = "Deploy lock released by hand" + _result_words(result, ok="")
    elif entry.event == "lock_broken":
        text = "Stale deploy lock broken" + _result_words(result, ok="")
    elif entry.event == "emergency":
        action = details.get("action")
        text = f"Emergency action: {action}" if action else "Emergency action"
        text += _result_words(result, ok="")
    elif entry.event == "window_override":
        text = "Deploy window overridden for an emergency deploy" + (
            f"{of_release}" if release else ""
        )
    elif entry.event == "ship":
        text = f"Ship{of_release} (staging, then the canary)" + _result_words(result, ok="")
    elif entry.event == "review":
        text = f"Post-deployment review of run {details.get('run') or '?'} recorded"
    elif entry.event == "destructive_override":
        text = f"Destructive migrations allowed by override{' for ' + release if release else ''}"
    else:  # pragma: no cover - every event is handled above
        text = entry.event.replace("_", " ")
    if entry.who and entry.event in _BY_WHOM:
        text += f" by {entry.who}"
    if entry.event == "canary":
        text += _window_words(details.get("window"))
    if entry.message and _adds(text, entry.message):
        text += f": {_flat(entry.message)}"
    if entry.reason:
        text += f"; reason: {_flat(entry.reason)}"
    return text


def _adds(text: str, message: str) -> bool:
    """Whether ``message`` says something ``text`` does not (``"disable visa_v2"`` after
    ``"Feature flag visa_v2: disable"`` does not)."""
    said = set(re.findall(r"[\w.-]+", text.lower()))
    return not set(re.findall(r"[\w.-]+", message.lower())) <= said


def format_seconds(seconds: float) -> str:
    """``"41s"``, ``"4m 12s"``, ``"1h 02m"``."""
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _window_words(window: Any) -> str:
    """How a canary's window ended (its ``window`` details): ``; sent back early at 15 s of
    120 s, every client back 11.8 s after the first failure``; empty when the entry has none."""
    if not isinstance(window, dict) or window.get("ended_at") is None:
        return ""
    ended, length = window.get("ended_at"), window.get("window")
    if not isinstance(ended, int | float) or not isinstance(length, int | float):
        return ""
    words = f"; {'sent back early' if window.get('early') else 'window ended'} at {ended:.0f} s"
    words += f" of {length:g} s"
    seconds = window.get("seconds_to_back")
    if isinstance(seconds, int | float):
        words += f", every client back {seconds:.1f} s after the first failure"
    return words


def _result_words(result: str | None, ok: str) -> str:
    if result in (None, "ok"):
        return ok
    if result == "started":
        return " started"
    return " " + ("FAILED" if result == "failed" else result.replace("_", " "))


def _collapse_key(entry: JournalEntry) -> tuple[object, ...]:
    return (
        entry.event,
        entry.ref,
        entry.sha,
        entry.sha_before,
        entry.colour,
        entry.result,
        entry.reason,
        entry.message,
        entry.who,
        describe_event(entry),
    )


def _is_resolution(item: TimelineItem) -> bool:
    return item.event in _RESOLUTION_EVENTS or (
        item.event == "deploy_fail" and "rolled back" in item.text
    )


def _journal_summary(items: list[TimelineItem]) -> str:
    if not items:
        return "From the journals: nothing was recorded in this window."
    counts: dict[str, int] = {}
    for item in items:
        counts[item.event] = counts.get(item.event, 0) + 1
    parts = []
    for event, count in counts.items():
        singular, plural = _SUMMARY_NAMES.get(event, (event, event))
        parts.append(f"{count} {singular if count == 1 else plural}")
    hosts = sorted({host for item in items for host in item.hosts})
    where = f" on {', '.join(hosts)}" if hosts else ""
    return f"From the journals: {', '.join(parts)}{where}."


def _flat(text: str) -> str:
    return " ".join(text.split())
