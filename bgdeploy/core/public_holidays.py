"""Public holidays from a maintained calendar, and the rush days around them, as blackouts.

A blackout list typed in by hand ends when its last year does: a deploy on Eid al-Fitr 2028
would be allowed. The runbook's "Government holidays (Bangladesh)" and "High-traffic events
(e.g., Eid visa rush)" therefore come from the `holidays`_ package, which computes every
country's public holidays for any year: the fixed dates, and the Islamic ones from the Hijri
calendar (dates the package marks as estimated, until the government announces them, are
shown with ``(estimated)``). Two shapes of ``blackouts`` entry in ``group_data`` use it
(:mod:`bgdeploy.core.schedule` reads them):

``{"calendar": "BD"}``
    Every public holiday of the country (an ISO 3166 code the package knows), every year.
    ``name`` is optional (default ``"public holiday"``); the holiday's own name is what the
    operator reads: ``public holiday: Eid al-Fitr (estimated) (2028-02-29, holidays calendar BD)``.

``{"name": "Eid visa rush", "calendar": "BD", "around": ["Eid al-Fitr", "Eid al-Adha"],``
``"before": 5, "after": 4}``
    The days from ``before`` days before the first day of each of the ``around`` holidays to
    ``after`` days after its last day, every year: a rule, not dates. The names are the
    calendar's (``bgdeploy window ENV --list YEAR`` shows them); an unknown one is an error.

What no calendar computes (Durga Puja, Buddha Purnima and the other dates announced each year)
stays a list of date blackouts in ``group_data``.

.. _holidays: https://pypi.org/project/holidays/
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from importlib.metadata import version
from typing import Any

import holidays

from bgdeploy.core.errors import ConfigError

ESTIMATED = " (estimated)"
"""What the calendar appends to the name of a date it has computed, not seen announced."""

MAX_RUSH_DAYS = 60
"""The most days ``before`` or ``after`` may add around a holiday."""

_WHOLE_DAY = (0, 24 * 3600)


@functools.lru_cache(maxsize=256)
def _year(country: str, year: int) -> dict[date, tuple[str, ...]]:
    """The country's holidays of one year: each date's names, as the calendar writes them."""
    calendar = holidays.country_holidays(country, years=year)
    return {day: tuple(calendar.get_list(day)) for day in sorted(calendar)}


def names_on(country: str, day: date) -> tuple[str, ...]:
    """The country's public holidays on ``day`` (none: an empty tuple)."""
    return _year(country, day.year).get(day, ())


def base_name(name: str) -> str:
    """A holiday's name without the calendar's ``(estimated)`` mark."""
    return name.removesuffix(ESTIMATED)


def source(country: str) -> str:
    """Where these dates come from, as the operator reads it."""
    return f"holidays calendar {country}"


def occurrences(country: str, name: str, year: int) -> list[tuple[date, date, bool]]:
    """Each run of consecutive days in ``year`` (and the days of it that spill into the next
    or previous year) on which holiday ``name`` falls: ``(first, last, estimated)``."""
    days = sorted(
        (day, any(n.endswith(ESTIMATED) for n in names if base_name(n) == name))
        for y in (year - 1, year, year + 1)
        for day, names in _year(country, y).items()
        if any(base_name(n) == name for n in names)
    )
    runs: list[tuple[date, date, bool]] = []
    for day, estimated in days:
        if runs and runs[-1][1] + timedelta(days=1) == day:
            first, _, was = runs[-1]
            runs[-1] = (first, day, was or estimated)
        else:
            runs.append((day, day, estimated))
    return [run for run in runs if run[0].year <= year <= run[1].year]


@functools.lru_cache(maxsize=256)
def _rush(
    country: str, around: tuple[str, ...], before: int, after: int, year: int
) -> list[tuple[date, date, str]]:
    """The rush periods of ``year`` around each of the ``around`` holidays."""
    found = []
    for holiday in around:
        for first, last, estimated in occurrences(country, holiday, year):
            start = first - timedelta(days=before)
            end = last + timedelta(days=after)
            found.append((start, end, holiday + (ESTIMATED if estimated else "")))
    return found


def known_names(country: str, years: Sequence[int]) -> set[str]:
    """Every holiday name the calendar gives the country in ``years`` (without marks)."""
    return {base_name(n) for y in years for names in _year(country, y).values() for n in names}


@dataclass(frozen=True)
class CalendarBlackout:
    """No regular deploy on any public holiday of ``country`` (see the module)."""

    name: str
    country: str

    def spans(self, day: date) -> list[tuple[int, int]]:
        """The parts of ``day`` this blackout covers: all of it on a holiday, else none."""
        return [_WHOLE_DAY] if names_on(self.country, day) else []

    def describe(self, day: date | None = None) -> str:
        """``"public holiday: Victory Day (2026-12-16, holidays calendar BD)"``, or without a
        day, ``"public holiday (every holiday of the holidays calendar BD)"``."""
        if day is None or not names_on(self.country, day):
            return f"{self.name} (every holiday of the {source(self.country)})"
        names = "; ".join(names_on(self.country, day))
        return f"{self.name}: {names} ({day.isoformat()}, {source(self.country)})"

    def listing(self, year: int) -> Iterator[tuple[date, date, str, str]]:
        """Each holiday of ``year``: ``(first, last, what, source)``, one row per date."""
        for day, names in _year(self.country, year).items():
            yield day, day, f"{self.name}: {'; '.join(names)}", source(self.country)


@dataclass(frozen=True)
class RushBlackout:
    """No regular deploy from ``before`` days before each of the ``around`` holidays to
    ``after`` days after it (see the module)."""

    name: str
    country: str
    around: tuple[str, ...]
    before: int
    after: int

    def _ranges(self, year: int) -> list[tuple[date, date, str]]:
        return _rush(self.country, self.around, self.before, self.after, year)

    def _around(self, day: date) -> list[tuple[date, date, str]]:
        return [
            found
            for year in {day.year - 1, day.year, day.year + 1}
            for found in self._ranges(year)
            if found[0] <= day <= found[1]
        ]

    def spans(self, day: date) -> list[tuple[int, int]]:
        """The parts of ``day`` this blackout covers: all of it near one of the holidays."""
        return [_WHOLE_DAY] if self._around(day) else []

    def describe(self, day: date | None = None) -> str:
        """``"Eid visa rush: Eid al-Fitr (estimated) (2028-02-22 to 2028-03-04, holidays
        calendar BD)"``, or the rule itself without a day."""
        hits = self._around(day) if day is not None else []
        if not hits:
            return (
                f"{self.name} ({self.before} days before to {self.after} days after "
                f"{', '.join(self.around)}, {source(self.country)})"
            )
        return "; ".join(
            f"{self.name}: {what} ({first.isoformat()} to {last.isoformat()}, "
            f"{source(self.country)})"
            for first, last, what in hits
        )

    def listing(self, year: int) -> Iterator[tuple[date, date, str, str]]:
        """Each rush period touching ``year``: ``(first, last, what, source)``."""
        seen = set()
        for first, last, what in sorted(self._ranges(year)):
            if (first, last) not in seen and (first.year <= year <= last.year):
                seen.add((first, last))
                yield first, last, f"{self.name}: {what}", source(self.country)


def parse(entry: Mapping[str, Any], key: str, source_name: str) -> CalendarBlackout | RushBlackout:
    """A ``blackouts`` entry with ``calendar`` (see the module), validated; raises
    :class:`~bgdeploy.core.errors.ConfigError` naming the key, the value and the file."""
    country = entry["calendar"]
    supported = holidays.list_supported_countries()
    if not isinstance(country, str) or country not in supported:
        raise ConfigError(
            f"{source_name}: {key}.calendar {country!r} is not a country code the holidays "
            f"calendar knows (an ISO 3166 code like 'BD'; holidays {version('holidays')})"
        )
    mixed = sorted(k for k in ("days", "start", "end", "annual") if k in entry)
    if mixed:
        raise ConfigError(
            f"{source_name}: {key} mixes 'calendar' with {', '.join(map(repr, mixed))}: the "
            "calendar gives the dates"
        )
    name = str(entry.get("name") or "").strip()
    if "around" not in entry:
        extra = sorted(k for k in ("before", "after") if k in entry)
        if extra:
            raise ConfigError(
                f"{source_name}: {key} has {', '.join(map(repr, extra))} without 'around' "
                "(the holidays to add days around)"
            )
        return CalendarBlackout(name or "public holiday", country)
    around = entry["around"]
    if isinstance(around, str):
        around = [around]
    if (
        not isinstance(around, Sequence)
        or not around
        or not all(isinstance(a, str) and a.strip() for a in around)
    ):
        raise ConfigError(
            f"{source_name}: {key}.around {around!r} is not a list of holiday names like "
            "['Eid al-Fitr', 'Eid al-Adha']"
        )
    this_year = date.today().year
    known = known_names(country, range(this_year - 1, this_year + 3))
    unknown = [a for a in around if a not in known]
    if unknown:
        raise ConfigError(
            f"{source_name}: {key}.around: {', '.join(map(repr, unknown))} is not a holiday of "
            f"the {source(country)} (it knows: {', '.join(sorted(known))})"
        )
    days = {}
    for side in ("before", "after"):
        value = entry.get(side, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RUSH_DAYS:
            raise ConfigError(
                f"{source_name}: {key}.{side} {value!r} is not a number of days from 0 to "
                f"{MAX_RUSH_DAYS}"
            )
        days[side] = value
    if not name:
        raise ConfigError(
            f"{source_name}: {key}.name is missing: name the rush (e.g. 'Eid visa rush')"
        )
    return RushBlackout(name, country, tuple(around), days["before"], days["after"])
