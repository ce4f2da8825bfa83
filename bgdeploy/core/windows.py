"""Deploy windows and blackouts: when a regular deploy may run.

The runbook's schedule, as data. Regular deploys run Tuesday to Thursday, 10:00 to 16:00 Dhaka
time; nothing is deployed on government holidays, during high-traffic events (the Eid visa
rush), on Friday evenings or after 18:00. An emergency deploy may run at any time, with a
reason, and the override is journaled.

The policy is read from pyinfra ``group_data`` (plain Python values), validated once, and then
asked about a moment in time. No host is contacted.

Settings
--------

``deploy_windows``
    A list of weekly windows; a deploy is allowed inside any of them. Each window has ``days``
    (a list of ``mon``, ``tue`` ... ``sun``, full names or ranges like ``"tue-thu"``), a
    ``start`` and an ``end`` time as ``"HH:MM"``. ``end`` is exclusive and may be ``"24:00"``;
    an ``end`` before ``start`` runs past midnight into the next day. ``None`` or an empty list
    means no window restriction (staging, the sandbox); blackouts still apply.

``blackouts``
    A list of periods when no regular deploy runs, even inside a window. Each has a ``name``
    (shown to the operator) and one of three shapes:

    + a date range: ``start`` and ``end`` as ``"YYYY-MM-DD"``, inclusive, whole days in the
      policy's time zone (``end`` may be left out for a single day);
    + a fixed date every year: ``annual`` as ``"MM-DD"``;
    + a weekly time range: ``start`` and ``end`` as ``"HH:MM"`` like a window, on the listed
      ``days``, or every day when ``days`` is left out.

``timezone``
    The IANA time zone the windows and blackouts are written in (default ``"Asia/Dhaka"``).

Example (``group_data/prod.py``):

.. code:: python

    timezone = "Asia/Dhaka"
    deploy_windows = [
        {"days": ["tue", "wed", "thu"], "start": "10:00", "end": "16:00"},
    ]
    blackouts = [
        {"name": "Friday evening", "days": ["fri"], "start": "16:00", "end": "24:00"},
        {"name": "After hours", "start": "18:00", "end": "24:00"},
        {"name": "Language Martyrs' Day", "annual": "02-21"},
        {"name": "Independence Day", "annual": "03-26"},
        {"name": "Pohela Boishakh", "annual": "04-14"},
        {"name": "May Day", "annual": "05-01"},
        {"name": "Victory Day", "annual": "12-16"},
        {"name": "Eid al-Fitr visa rush", "start": "2026-03-16", "end": "2026-03-24"},
        {"name": "Eid al-Adha visa rush", "start": "2026-05-22", "end": "2026-05-31"},
    ]

Use:

.. code:: python

    policy = WindowPolicy.from_data(host.data.dict(), source="group_data/prod.py")
    decision = decide(policy, datetime.now(UTC))
    if not decision.allowed:
        raise PolicyRefusal(decision.describe())
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bgdeploy.core.errors import ConfigError

DEFAULT_TIMEZONE = "Asia/Dhaka"
"""The time zone used when ``group_data`` sets none: the team's, and the runbook's."""

SEARCH_DAYS = 400
"""How far ahead :func:`decide` looks for the next open window before giving up."""

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
_DAY_SECONDS = 24 * 3600
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_DAY_RE = re.compile(r"(\d{2})-(\d{2})")
_AT_RE = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{1,2})(:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(Z|[+-][\d:]+)?",
    flags=re.IGNORECASE,
)
_WINDOW_KEYS = frozenset({"days", "start", "end"})
_BLACKOUT_KEYS = frozenset({"name", "days", "start", "end", "annual"})

Span = tuple[int, int]
"""A half-open range of seconds after local midnight, ``[start, end)``."""


# Shapes
# ------


@dataclass(frozen=True)
class WeeklyRange:
    """A time-of-day range on some weekdays, in the policy's local time.

    ``days`` are weekday numbers (0 is Monday), ``start`` and ``end`` minutes after midnight
    (``end`` is exclusive, at most 1440). When ``end`` is before ``start`` the range runs past
    midnight: ``fri 22:00-02:00`` covers Friday 22:00 to Saturday 02:00.
    """

    days: tuple[int, ...]
    start: int
    end: int

    def spans(self, day: date) -> list[Span]:
        """The parts of ``day`` (a local date) this range covers."""
        weekday = day.weekday()
        if self.start < self.end:
            return [(self.start * 60, self.end * 60)] if weekday in self.days else []
        spans = []
        if (weekday - 1) % 7 in self.days:
            spans.append((0, self.end * 60))
        if weekday in self.days:
            spans.append((self.start * 60, _DAY_SECONDS))
        return spans

    def describe(self) -> str:
        """``"Tue-Thu 10:00-16:00"``, ``"daily 18:00-24:00"``."""
        return f"{_days_label(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)}"


@dataclass(frozen=True)
class DateRangeBlackout:
    """No regular deploy on the whole days ``first`` to ``last`` (inclusive, local dates)."""

    name: str
    first: date
    last: date

    def spans(self, day: date) -> list[Span]:
        """The parts of ``day`` this blackout covers: all of it, or none."""
        return [(0, _DAY_SECONDS)] if self.first <= day <= self.last else []

    def describe(self, day: date | None = None) -> str:
        """``"Victory Day (2026-12-16)"``, ``"Eid visa rush (2026-03-16 to 2026-03-24)"``."""
        if self.first == self.last:
            return f"{self.name} ({self.first.isoformat()})"
        return f"{self.name} ({self.first.isoformat()} to {self.last.isoformat()})"


@dataclass(frozen=True)
class AnnualBlackout:
    """No regular deploy on the same month and day every year (a fixed-date holiday).

    A 29 February holiday applies in leap years only.
    """

    name: str
    month: int
    day: int

    def spans(self, day: date) -> list[Span]:
        """The parts of ``day`` this blackout covers: all of it, or none."""
        return [(0, _DAY_SECONDS)] if (day.month, day.day) == (self.month, self.day) else []

    def describe(self, day: date | None = None) -> str:
        """``"Victory Day (2026-12-16, every year)"``, or ``"Victory Day (12-16 every year)"``."""
        if day is not None:
            return f"{self.name} ({day.isoformat()}, every year)"
        return f"{self.name} ({self.month:02d}-{self.day:02d} every year)"


@dataclass(frozen=True)
class WeeklyBlackout:
    """No regular deploy during a weekly time range (``Friday evening``, ``After hours``)."""

    name: str
    weekly: WeeklyRange

    def spans(self, day: date) -> list[Span]:
        """The parts of ``day`` this blackout covers."""
        return self.weekly.spans(day)

    def describe(self, day: date | None = None) -> str:
        """``"Friday evening (Fri 16:00-24:00)"``."""
        return f"{self.name} ({self.weekly.describe()})"


Blackout = DateRangeBlackout | AnnualBlackout | WeeklyBlackout


@dataclass(frozen=True)
class WindowPolicy:
    """When regular deploys may run: weekly windows minus blackouts, in one time zone.

    Build it with :meth:`from_data`; ask it with :func:`decide`. An empty ``windows`` means no
    window restriction (blackouts still apply).
    """

    windows: tuple[WeeklyRange, ...]
    blackouts: tuple[Blackout, ...]
    timezone: str = DEFAULT_TIMEZONE
    source: str = "group_data"

    @property
    def tz(self) -> ZoneInfo:
        """The policy's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def restricted(self) -> bool:
        """True when deploys are limited to the listed windows."""
        return bool(self.windows)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], source: str = "group_data") -> WindowPolicy:
        """Read and validate ``deploy_windows``, ``blackouts`` and ``timezone``.

        + data: the group data, a mapping (or pyinfra's ``host.data``: only ``.get`` is used)
        + source: where the data came from, named in error messages

        Missing keys take their defaults: no window restriction, no blackouts, Asia/Dhaka.
        Any wrong value raises :class:`~bgdeploy.core.errors.ConfigError` naming the key, the value
        and ``source``, e.g. ``group_data/prod.py: deploy_windows[0].start '25:00' is not a time
        HH:MM``.
        """
        timezone = _parse_timezone(data.get("timezone", DEFAULT_TIMEZONE), source)
        windows = _parse_windows(data.get("deploy_windows"), source)
        blackouts = _parse_blackouts(data.get("blackouts"), source)
        return cls(windows=windows, blackouts=blackouts, timezone=timezone, source=source)

    def describe_windows(self) -> str:
        """``"Tue-Thu 10:00-16:00 Asia/Dhaka"``, or ``"no window restriction"``."""
        if not self.windows:
            return "no window restriction"
        return ", ".join(window.describe() for window in self.windows) + f" {self.timezone}"

    def describe(self) -> str:
        """One line for operators: the windows and the blackouts.

        ``"deploy windows: Tue-Thu 10:00-16:00 Asia/Dhaka; 9 blackouts"``
        """
        count = len(self.blackouts)
        noun = "blackout" if count == 1 else "blackouts"
        blackouts = f"{count} {noun}" if count else "no blackouts"
        if not self.windows:
            return (
                f"deploy windows: none, deploys allowed at any time ({self.timezone}); {blackouts}"
            )
        return f"deploy windows: {self.describe_windows()}; {blackouts}"


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
    zone = _zone(tz)
    stripped = text.strip()
    if stripped.lower() == "now":
        return datetime.now(UTC).astimezone(zone)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", stripped):
        stripped += "T00:00"
    match = _AT_RE.fullmatch(stripped)
    if not match:
        raise ConfigError(
            f"time {text!r} is not understood: use 2026-12-03T15:59+06:00, "
            f"2026-12-03T15:59 (in {zone}), 2026-12-03 or 'now'"
        )
    try:
        day, hour, rest, offset = match.groups()
        parsed = datetime.fromisoformat(f"{day}T{int(hour):02d}{rest}{(offset or '').upper()}")
    except ValueError as error:
        raise ConfigError(f"time {text!r} is not a valid date and time: {error}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed


# Searching
# ---------


def _window_spans(policy: WindowPolicy, day: date) -> list[Span]:
    if not policy.windows:
        return [(0, _DAY_SECONDS)]
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
        if span[1] < _DAY_SECONDS:
            return _local(day, span[1], policy.tz)
        day, cursor = day + timedelta(days=1), 0
    return None


def _local(day: date, second: int, tz: ZoneInfo) -> datetime:
    if second >= _DAY_SECONDS:
        day, second = day + timedelta(days=1), second - _DAY_SECONDS
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


# Validation
# ----------


def _parse_timezone(value: Any, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{source}: timezone {value!r} is not a time zone name like 'Asia/Dhaka'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{source}: timezone {value!r} is not a known time zone (e.g. 'Asia/Dhaka')"
        ) from None
    return value


def _parse_windows(value: Any, source: str) -> tuple[WeeklyRange, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ConfigError(
            f"{source}: deploy_windows {value!r} is not a list of windows like "
            "{'days': ['tue', 'wed', 'thu'], 'start': '10:00', 'end': '16:00'} (or None)"
        )
    windows = []
    for index, item in enumerate(value):
        key = f"deploy_windows[{index}]"
        entry = _entry(item, key, _WINDOW_KEYS, source)
        for required in ("days", "start", "end"):
            if required not in entry:
                raise ConfigError(f"{source}: {key}.{required} is missing")
        windows.append(_weekly(entry, key, source))
    return tuple(windows)


def _parse_blackouts(value: Any, source: str) -> tuple[Blackout, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ConfigError(
            f"{source}: blackouts {value!r} is not a list of blackouts like "
            "{'name': 'Victory Day', 'annual': '12-16'}"
        )
    blackouts: list[Blackout] = []
    for index, item in enumerate(value):
        key = f"blackouts[{index}]"
        entry = _entry(item, key, _BLACKOUT_KEYS, source)
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{source}: {key}.name {name!r} must be a non-empty name")
        name = name.strip()
        if "annual" in entry:
            extra = sorted(k for k in ("days", "start", "end") if k in entry)
            if extra:
                raise ConfigError(
                    f"{source}: {key} mixes 'annual' with {', '.join(map(repr, extra))}: "
                    "an annual blackout is a whole day"
                )
            month, day = _month_day(entry["annual"], f"{key}.annual", source)
            blackouts.append(AnnualBlackout(name=name, month=month, day=day))
            continue
        if "start" not in entry:
            raise ConfigError(
                f"{source}: {key}.start is missing: give 'start' (a date YYYY-MM-DD or a time "
                "HH:MM) or 'annual' (MM-DD)"
            )
        start = entry["start"]
        if _is_date_value(start):
            if "days" in entry:
                raise ConfigError(
                    f"{source}: {key} has 'days' with a date range: 'days' goes with times HH:MM"
                )
            first = _date(start, f"{key}.start", source)
            last = _date(entry.get("end", start), f"{key}.end", source)
            if last < first:
                raise ConfigError(f"{source}: {key}.end {entry['end']!r} is before start {start!r}")
            blackouts.append(DateRangeBlackout(name=name, first=first, last=last))
            continue
        if "end" not in entry:
            raise ConfigError(f"{source}: {key}.end is missing")
        if _is_date_value(entry["end"]):
            raise ConfigError(
                f"{source}: {key}.end {entry['end']!r} is a date but start {start!r} is not"
            )
        with_days = {"days": list(DAY_NAMES), **entry}
        blackouts.append(WeeklyBlackout(name=name, weekly=_weekly(with_days, key, source)))
    return tuple(blackouts)


def _entry(item: Any, key: str, allowed: frozenset[str], source: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{source}: {key} {item!r} is not a dict")
    unknown = sorted(str(k) for k in item if k not in allowed)
    if unknown:
        raise ConfigError(
            f"{source}: {key} has unknown key {', '.join(map(repr, unknown))} "
            f"(expected {', '.join(sorted(allowed))})"
        )
    return item


def _weekly(entry: Mapping[str, Any], key: str, source: str) -> WeeklyRange:
    days = _days(entry["days"], f"{key}.days", source)
    start = _minutes(entry["start"], f"{key}.start", source, allow_24=False)
    end = _minutes(entry["end"], f"{key}.end", source, allow_24=True)
    if end == 0:
        end = 24 * 60
    if start == end:
        raise ConfigError(
            f"{source}: {key} starts and ends at {_hhmm(start)}: use 00:00 to 24:00 for a whole day"
        )
    return WeeklyRange(days=days, start=start, end=end)


def _days(value: Any, key: str, source: str) -> tuple[int, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes) or not value:
        raise ConfigError(
            f"{source}: {key} {value!r} is not a list of day names like ['tue', 'wed', 'thu']"
        )
    days: set[int] = set()
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{source}: {key}[{index}] {item!r} is not a day name")
        parts = [part.strip() for part in item.split("-")]
        numbers = [_day_number(part) for part in parts]
        if len(parts) > 2 or None in numbers:
            raise ConfigError(
                f"{source}: {key}[{index}] {item!r} is not a day name "
                f"({', '.join(DAY_NAMES)}) or a range like 'tue-thu'"
            )
        first, last = numbers[0], numbers[-1]
        assert first is not None and last is not None
        days.update((first + step) % 7 for step in range((last - first) % 7 + 1))
    return tuple(sorted(days))


def _day_number(text: str) -> int | None:
    lowered = text.lower()
    if lowered in DAY_NAMES:
        return DAY_NAMES.index(lowered)
    if lowered in _FULL_DAY_NAMES:
        return _FULL_DAY_NAMES.index(lowered)
    return None


def _minutes(value: Any, key: str, source: str, *, allow_24: bool) -> int:
    if isinstance(value, time):
        return value.hour * 60 + value.minute
    match = _TIME_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if minutes < 60 and (hours < 24 or (allow_24 and hours == 24 and minutes == 0)):
            return hours * 60 + minutes
    latest = "24:00" if allow_24 else "23:59"
    raise ConfigError(f"{source}: {key} {value!r} is not a time HH:MM (00:00 to {latest})")


def _is_date_value(value: Any) -> bool:
    if isinstance(value, date):
        return True
    return isinstance(value, str) and bool(_DATE_RE.fullmatch(value.strip()))


def _date(value: Any, key: str, source: str) -> date:
    if type(value) is date:
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{source}: {key} {value!r} is not a date YYYY-MM-DD")


def _month_day(value: Any, key: str, source: str) -> tuple[int, int]:
    match = _MONTH_DAY_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match:
        month, day = int(match.group(1)), int(match.group(2))
        try:
            date(2000, month, day)  # a leap year, so 02-29 is accepted
        except ValueError:
            pass
        else:
            return month, day
    raise ConfigError(f"{source}: {key} {value!r} is not a month-day MM-DD like '12-16'")


# Text
# ----


def _zone(tz: str | tzinfo) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"timezone {tz!r} is not a known time zone (e.g. 'Asia/Dhaka')") from None


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_label(days: tuple[int, ...]) -> str:
    if len(days) == 7:
        return "daily"
    names = [DAY_NAMES[day].capitalize() for day in days]
    if len(days) >= 3 and days[-1] - days[0] == len(days) - 1:
        return f"{names[0]}-{names[-1]}"
    return ", ".join(names)


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
