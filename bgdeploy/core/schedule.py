"""Deploy schedules: the windows and blackouts of ``group_data``, read and validated.

The runbook's schedule, as data. Regular deploys run Tuesday to Thursday, 10:00 to 16:00 Dhaka
time; nothing is deployed on government holidays, during high-traffic events (the Eid visa
rush), on Friday evenings or after 18:00. This module turns those settings into a
:class:`WindowPolicy` (weekly windows, blackouts, a time zone) whose parts say which seconds of a
local day they cover. :mod:`bgdeploy.core.windows` asks a policy about a moment: may a deploy
run, and when does the next window open. No host is contacted.

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
    (shown to the operator) and one of these shapes:

    + a date range: ``start`` and ``end`` as ``"YYYY-MM-DD"``, inclusive, whole days in the
      policy's time zone (``end`` may be left out for a single day);
    + a fixed date every year: ``annual`` as ``"MM-DD"``;
    + a weekly time range: ``start`` and ``end`` as ``"HH:MM"`` like a window, on the listed
      ``days``, or every day when ``days`` is left out;
    + a country's public holidays, every year, from a maintained calendar: ``calendar`` (an
      ISO 3166 code such as ``"BD"``); with ``around`` (holiday names), ``before`` and
      ``after`` (days), the rush days around those holidays
      (:mod:`bgdeploy.core.public_holidays`).

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
        {"calendar": "BD"},
        {"name": "Eid visa rush", "calendar": "BD", "around": ["Eid al-Fitr", "Eid al-Adha"],
         "before": 5, "after": 4},
        {"name": "Durga Puja", "start": "2026-10-20", "end": "2026-10-21"},
    ]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bgdeploy.core import public_holidays
from bgdeploy.core.errors import ConfigError

DEFAULT_TIMEZONE = "Asia/Dhaka"
"""The time zone used when ``group_data`` sets none: the team's, and the runbook's."""

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
DAY_SECONDS = 24 * 3600
"""The seconds of a day: a :data:`Span` ending here runs to midnight."""
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH_DAY_RE = re.compile(r"(\d{2})-(\d{2})")
_WINDOW_KEYS = frozenset({"days", "start", "end"})
_BLACKOUT_KEYS = frozenset(
    {"name", "days", "start", "end", "annual", "calendar", "around", "before", "after"}
)

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
            spans.append((self.start * 60, DAY_SECONDS))
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
        return [(0, DAY_SECONDS)] if self.first <= day <= self.last else []

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
        return [(0, DAY_SECONDS)] if (day.month, day.day) == (self.month, self.day) else []

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


Blackout = (
    DateRangeBlackout
    | AnnualBlackout
    | WeeklyBlackout
    | public_holidays.CalendarBlackout
    | public_holidays.RushBlackout
)


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
    example = "windows like {'days': ['tue', 'wed', 'thu'], 'start': '10:00', 'end': '16:00'}"
    windows = []
    for index, item in enumerate(_list(value, "deploy_windows", example + " (or None)", source)):
        key = f"deploy_windows[{index}]"
        entry = _entry(item, key, _WINDOW_KEYS, source)
        for required in ("days", "start", "end"):
            if required not in entry:
                raise ConfigError(f"{source}: {key}.{required} is missing")
        windows.append(_weekly(entry, key, source))
    return tuple(windows)


def _parse_blackouts(value: Any, source: str) -> tuple[Blackout, ...]:
    example = "blackouts like {'name': 'Victory Day', 'annual': '12-16'}"
    blackouts: list[Blackout] = []
    for index, item in enumerate(_list(value, "blackouts", example, source)):
        key = f"blackouts[{index}]"
        entry = _entry(item, key, _BLACKOUT_KEYS, source)
        if "calendar" in entry:
            blackouts.append(public_holidays.parse(entry, key, source))
            continue
        extra = sorted(k for k in ("around", "before", "after") if k in entry)
        if extra:
            raise ConfigError(
                f"{source}: {key} has {', '.join(map(repr, extra))} without 'calendar'"
            )
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


def _list(value: Any, key: str, example: str, source: str) -> Sequence[Any]:
    """``value`` as a list of entries (None: none), or an error showing ``example``."""
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ConfigError(f"{source}: {key} {value!r} is not a list of {example}")
    return value


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


def zone(tz: str | tzinfo) -> tzinfo:
    """The time zone named ``tz`` (a ``tzinfo`` is returned as it is).

    An unknown name raises :class:`~bgdeploy.core.errors.ConfigError` naming it.
    """
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
