"""Deploy windows and blackouts: when a regular deploy may run.

The runbook's schedule, as data. Regular deploys run Tuesday to Thursday, 10:00 to 16:00 Dhaka
time; nothing is deployed on government holidays, during high-traffic events (the Eid visa
rush), on Friday evenings or after 18:00. An emergency deploy may run at any time, with a
reason, and the override is journaled.

The policy is read from pyinfra ``group_data`` (plain Python values), validated once, and then
asked about a moment in time. No host is contacted.

The schedule itself (``deploy_windows``, ``blackouts``, ``timezone`` in ``group_data``) is read
and validated by :mod:`bgdeploy.core.schedule`; its names are re-exported here.

Use:

.. code:: python

    policy = WindowPolicy.from_data(host.data.dict(), source="group_data/prod.py")
    decision = decide(policy, datetime.now(UTC))
    if not decision.allowed:
        raise PolicyRefusal(decision.describe())
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from bgdeploy.core.errors import ConfigError
from bgdeploy.core.schedule import (
    DAY_NAMES,
    DAY_SECONDS,
    DEFAULT_TIMEZONE,
    AnnualBlackout,
    Blackout,
    DateRangeBlackout,
    Span,
    WeeklyBlackout,
    WeeklyRange,
    WindowPolicy,
    zone,
)

__all__ = [
    "DAY_NAMES",
    "DEFAULT_TIMEZONE",
    "SEARCH_DAYS",
    "AnnualBlackout",
    "Blackout",
    "DateRangeBlackout",
    "Span",
    "WeeklyBlackout",
    "WeeklyRange",
    "WindowDecision",
    "WindowPolicy",
    "blackouts_in",
    "decide",
    "parse_at",
]

SEARCH_DAYS = 400
"""How far ahead :func:`decide` looks for the next open window before giving up."""

_AT_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{1,2})(:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(Z|[+-][\d:]+)?",
    flags=re.IGNORECASE,
)


@dataclass(frozen=True)
class WindowDecision:
    """Whether a deploy may run at a moment, why not, and when it may.

    + allowed: a deploy may run (regularly, or because an emergency overrode a refusal)
    + reasons: why a regular deploy is refused (kept when an emergency overrides them, for the
      journal); empty when it is allowed
    + next_open: the next moment a regular deploy is allowed, in the policy's time zone; None
      when a regular deploy is allowed right now, or when no window opens within 400 days
    + emergency: an emergency reason overrode a refusal
    + at: the moment asked about, in the policy's time zone
    + closes_at: when a regular deploy is allowed, the moment the open window closes (None when
      it never closes within 400 days)
    + emergency_reason: the reason given for the emergency override, if any
    """

    allowed: bool
    reasons: tuple[str, ...]
    next_open: datetime | None
    emergency: bool
    at: datetime
    closes_at: datetime | None = None
    emergency_reason: str | None = None

    @property
    def regular(self) -> bool:
        """True when a regular deploy is allowed (no override needed)."""
        return self.allowed and not self.emergency

    def describe(self) -> str:
        """The decision in one or two lines, as the operator reads it.

        .. code::

            deploy refused at Thu 2026-12-03 16:00 +06 (Asia/Dhaka): outside the deploy window (...)
            next window opens Tue 2026-12-08 10:00 +06, in 4 days 18 h
        """
        when = _stamp(self.at)
        if self.emergency:
            return (
                f"emergency deploy allowed at {when}, overriding: {'; '.join(self.reasons)}\n"
                f"reason: {self.emergency_reason}"
            )
        if self.allowed:
            if self.closes_at is None:
                return f"deploy allowed at {when}"
            return (
                f"deploy allowed at {when}; the window closes at {_stamp(self.closes_at)}, "
                f"in {_humanize(self.closes_at - self.at)}"
            )
        first = f"deploy refused at {when}: {'; '.join(self.reasons)}"
        if self.next_open is None:
            return f"{first}\nno deploy window opens in the next {SEARCH_DAYS} days"
        return (
            f"{first}\nnext window opens {_stamp(self.next_open)}, "
            f"in {_humanize(self.next_open - self.at)}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for ``--json`` output and journal details."""
        return {
            "allowed": self.allowed,
            "emergency": self.emergency,
            "emergency_reason": self.emergency_reason,
            "reasons": list(self.reasons),
            "at": self.at.isoformat(),
            "next_open": self.next_open.isoformat() if self.next_open else None,
            "closes_at": self.closes_at.isoformat() if self.closes_at else None,
        }


# Decisions
# ---------


def decide(
    policy: WindowPolicy,
    at: datetime,
    emergency_reason: str | None = None,
) -> WindowDecision:
    """Decide whether a deploy may run at ``at``.

    + policy: the validated :class:`WindowPolicy`
    + at: the moment, timezone-aware (any zone: it is converted to the policy's)
    + emergency_reason: why this deploy cannot wait (``--emergency --reason TEXT``); it turns a
      refusal into an allowed emergency deploy, keeping the reasons for the journal

    A regular deploy is allowed inside a window and outside every blackout. Times are compared
    to the second: with a window ending at 16:00, 15:59:59 is inside and 16:00:00 is not.

    A naive ``at`` or an empty emergency reason raises :class:`~bgdeploy.core.errors.ConfigError`.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(f"the time {at.isoformat()} has no time zone: give an offset like +06:00")
    if emergency_reason is not None and not emergency_reason.strip():
        raise ConfigError(
            "emergency_reason is empty: an emergency deploy needs a reason (--reason TEXT)"
        )
    if emergency_reason is not None:
        emergency_reason = emergency_reason.strip()
    tz = policy.tz
    local = at.astimezone(tz)
    today = local.date()
    second = local.hour * 3600 + local.minute * 60 + local.second

    reasons: list[str] = []
    if policy.windows and not _covers(_window_spans(policy, today), second):
        plural = "s" if len(policy.windows) > 1 else ""
        reasons.append(f"outside the deploy window{plural} ({policy.describe_windows()})")
    for blackout in policy.blackouts:
        if _covers(blackout.spans(today), second):
            reasons.append(f"blackout: {blackout.describe(today)}")

    if not reasons:
        return WindowDecision(
            allowed=True,
            reasons=(),
            next_open=None,
            emergency=False,
            at=local,
            closes_at=_closes_at(policy, today, second),
            emergency_reason=emergency_reason,
        )
    return WindowDecision(
        allowed=emergency_reason is not None,
        reasons=tuple(reasons),
        next_open=_next_open(policy, today, second),
        emergency=emergency_reason is not None,
        at=local,
        emergency_reason=emergency_reason,
    )


def parse_at(text: str, tz: str | tzinfo = DEFAULT_TIMEZONE) -> datetime:
    """Parse a ``--at`` (or ``--since``) time.

    + text: ``2026-12-03T15:59+06:00``, ``2026-12-03T15:59Z``, ``2026-12-03T15:59`` or
      ``2026-12-03 15:59`` (seconds optional); a date alone (``2026-12-03``) is its midnight;
      ``now`` is the current time
    + tz: the zone for times given without an offset (the policy's, by default Asia/Dhaka)

    Returns a timezone-aware datetime. Bad text raises :class:`~bgdeploy.core.errors.ConfigError`.
    """
    local_zone = zone(tz)
    stripped = text.strip()
    if stripped.lower() == "now":
        return datetime.now(UTC).astimezone(local_zone)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", stripped):
        stripped += "T00:00"
    match = _AT_RE.fullmatch(stripped)
    if not match:
        raise ConfigError(
            f"time {text!r} is not understood: use 2026-12-03T15:59+06:00, "
            f"2026-12-03T15:59 (in {local_zone}), 2026-12-03 or 'now'"
        )
    try:
        day, hour, rest, offset = match.groups()
        parsed = datetime.fromisoformat(f"{day}T{int(hour):02d}{rest}{(offset or '').upper()}")
    except ValueError as error:
        raise ConfigError(f"time {text!r} is not a valid date and time: {error}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=local_zone)
    return parsed


# Searching
# ---------


@dataclass(frozen=True)
class BlackoutDays:
    """One blackout of a year (:func:`blackouts_in`): its days (``first`` to ``last``,
    inclusive; both None for a weekly one), what it is, and where it comes from."""

    first: date | None
    last: date | None
    what: str
    source: str

    def to_dict(self) -> dict[str, str | None]:
        """The ``--json`` form: dates as ``YYYY-MM-DD`` (None for a weekly blackout)."""
        return {
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "what": self.what,
            "source": self.source,
        }

    def describe(self) -> str:
        """``"2026-12-16             Victory Day  [holidays calendar BD]"``, one line."""
        if self.first is None or self.last is None:
            days = "every week"
        elif self.first == self.last:
            days = self.first.isoformat()
        else:
            days = f"{self.first.isoformat()} to {self.last.isoformat()}"
        return f"{days:<24} {self.what}  [{self.source}]"


def blackouts_in(policy: WindowPolicy, year: int) -> list[BlackoutDays]:
    """Every blackout of ``year``, in date order after the weekly ones: what ``bgdeploy window
    ENV --list YEAR`` prints. Dates from the holidays calendar carry its ``(estimated)``."""
    found: list[BlackoutDays] = []
    for blackout in policy.blackouts:
        if isinstance(blackout, WeeklyBlackout):
            found.append(BlackoutDays(None, None, blackout.describe(), policy.source))
        elif isinstance(blackout, DateRangeBlackout):
            if blackout.first.year <= year <= blackout.last.year:
                found.append(
                    BlackoutDays(blackout.first, blackout.last, blackout.name, policy.source)
                )
        elif isinstance(blackout, AnnualBlackout):
            with contextlib.suppress(ValueError):  # 29 February, not a leap year
                day = date(year, blackout.month, blackout.day)
                found.append(BlackoutDays(day, day, blackout.name, policy.source))
        else:
            found.extend(BlackoutDays(*row) for row in blackout.listing(year))
    return sorted(found, key=lambda b: (b.first is not None, b.first or date.min, b.what))


def _window_spans(policy: WindowPolicy, day: date) -> list[Span]:
    if not policy.windows:
        return [(0, DAY_SECONDS)]
    return _merge(span for window in policy.windows for span in window.spans(day))


def _open_spans(policy: WindowPolicy, day: date) -> list[Span]:
    """The parts of a local day when a regular deploy is allowed."""
    holes = _merge(span for blackout in policy.blackouts for span in blackout.spans(day))
    return _subtract(_window_spans(policy, day), holes)


def _next_open(policy: WindowPolicy, today: date, second: int) -> datetime | None:
    for offset in range(SEARCH_DAYS + 1):
        day = today + timedelta(days=offset)
        for start, end in _open_spans(policy, day):
            if offset > 0 or end > second:
                return _local(day, max(start, second) if offset == 0 else start, policy.tz)
    return None


def _closes_at(policy: WindowPolicy, today: date, second: int) -> datetime | None:
    day, cursor = today, second
    for _ in range(SEARCH_DAYS + 1):
        span = next(((s, e) for s, e in _open_spans(policy, day) if s <= cursor < e), None)
        if span is None:
            return _local(day, cursor, policy.tz)
        if span[1] < DAY_SECONDS:
            return _local(day, span[1], policy.tz)
        day, cursor = day + timedelta(days=1), 0
    return None


def _local(day: date, second: int, tz: ZoneInfo) -> datetime:
    if second >= DAY_SECONDS:
        day, second = day + timedelta(days=1), second - DAY_SECONDS
    naive = datetime.combine(day, time()) + timedelta(seconds=second)
    # Round trip through UTC so a wall time inside a DST gap lands on a real instant.
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def _covers(spans: Iterable[Span], second: int) -> bool:
    return any(start <= second < end for start, end in spans)


def _merge(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: list[Span], holes: list[Span]) -> list[Span]:
    result: list[Span] = []
    for start, end in spans:
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                result.append((cursor, hole_start))
            cursor = max(cursor, hole_end)
        if cursor < end:
            result.append((cursor, end))
    return result


# Text
# ----
def _stamp(moment: datetime) -> str:
    """``"Thu 2026-12-03 15:59 +06 (Asia/Dhaka)"``."""
    offset = moment.strftime("%z")
    short = offset[:3] if offset.endswith("00") else f"{offset[:3]}:{offset[3:]}"
    zone = f" ({moment.tzinfo})" if isinstance(moment.tzinfo, ZoneInfo) else ""
    seconds = f":{moment.second:02d}" if moment.second else ""
    return f"{moment:%a %Y-%m-%d %H:%M}{seconds} {short}{zone}"


def _humanize(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() + 59) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        unit = "day" if days == 1 else "days"
        return f"{days} {unit} {hours} h" if hours else f"{days} {unit}"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
