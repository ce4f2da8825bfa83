"""Blackouts from the holidays calendar: every Bangladesh public holiday of any year, and the
Eid visa rush as a rule, read from prod's own group_data (no connection)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

import holidays
import pytest
from click.testing import CliRunner
from conftest import load_group_data

from bgdeploy.cli import cli
from bgdeploy.core import public_holidays, windows
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.schedule import WindowPolicy

YEARS = range(2026, 2036)
DHAKA = windows.ZoneInfo("Asia/Dhaka")


@pytest.fixture(scope="module")
def prod() -> WindowPolicy:
    return WindowPolicy.from_data(load_group_data("prod"), source="group_data/prod.py")


def at_eleven(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 11, 0, tzinfo=DHAKA)


def test_every_public_holiday_of_ten_years_is_refused_by_name(prod: WindowPolicy) -> None:
    calendar = holidays.country_holidays("BD", years=YEARS)
    assert len(calendar) > 150  # fixed dates and the Islamic ones, every year
    for day, names in sorted(calendar.items()):
        decision = windows.decide(prod, at_eleven(day))
        assert not decision.allowed, day
        text = decision.describe()
        for name in names.split("; "):
            assert name in text, (day, text)
        assert "holidays calendar BD" in text


def test_the_eid_rush_is_refused_around_every_eid(prod: WindowPolicy) -> None:
    for year in YEARS:
        for eid in ("Eid al-Fitr", "Eid al-Adha"):
            for first, last, _ in public_holidays.occurrences("BD", eid, year):
                for offset in range(-5, (last - first).days + 5):
                    day = first + timedelta(days=offset)
                    text = windows.decide(prod, at_eleven(day)).describe()
                    assert "blackout: Eid visa rush: " + eid in text, (day, text)
                after = last + timedelta(days=5)
                assert "Eid visa rush" not in windows.decide(prod, at_eleven(after)).describe()


@pytest.mark.parametrize(
    ("day", "name"),
    [
        ("2028-02-29", "Eid al-Fitr (estimated)"),  # a Tuesday: the typed-in list had ended
        ("2030-02-05", "Eid al-Fitr (estimated)"),
        ("2026-08-05", "July Mass Uprising Day"),
        ("2026-08-26", "Prophet's Birthday"),
        ("2027-06-16", "Ashura (estimated)"),
    ],
)
def test_weekdays_the_old_list_allowed_are_refused(day: str, name: str) -> None:
    result = CliRunner().invoke(cli, ["window", "prod", "--at", f"{day}T11:00+06:00"])
    assert result.exit_code == 3, result.output
    assert f"public holiday: {name} ({day}, holidays calendar BD)" in result.output


@pytest.mark.parametrize("day", ["2026-12-01", "2031-09-23", "2035-11-13"])
def test_an_ordinary_tuesday_at_eleven_is_allowed(prod: WindowPolicy, day: str) -> None:
    moment = at_eleven(date.fromisoformat(day))
    assert moment.weekday() == 1
    assert windows.decide(prod, moment).allowed


def test_list_prints_every_blackout_of_a_year_with_its_source() -> None:
    result = CliRunner().invoke(cli, ["window", "prod", "--list", "2028"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any("every week" in line and "Friday evening" in line for line in lines)
    assert any(
        line.strip().startswith("2028-02-29")
        and "Eid al-Fitr (estimated)" in line
        and "[holidays calendar BD]" in line
        for line in lines
    )
    assert any("2028-02-22 to 2028-03-04" in line and "Eid visa rush" in line for line in lines)
    assert any(line.strip().startswith("2028-12-16") and "Victory Day" in line for line in lines)
    # group_data's own dates say so.
    listed = CliRunner().invoke(cli, ["window", "prod", "--list", "2026", "--json"])
    rows = json.loads(listed.output)
    durga = [row for row in rows if row["what"].startswith("Durga Puja")]
    assert durga and durga[0]["source"].endswith("group_data/prod.py")
    assert all(row["first"] is None or row["first"] <= row["last"] for row in rows)


def entry(**fields: Any) -> dict[str, Any]:
    return {"blackouts": [fields]}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"calendar": "XX"}, r"blackouts\[0\].calendar 'XX' is not a country code"),
        ({"calendar": "BD", "annual": "12-16"}, "mixes 'calendar' with 'annual'"),
        ({"calendar": "BD", "before": 3}, "'before' without 'around'"),
        ({"name": "rush", "around": ["Eid al-Fitr"]}, "'around' without 'calendar'"),
        (
            {"name": "rush", "calendar": "BD", "around": ["Eid ul-Fitr"]},
            r"'Eid ul-Fitr' is not a holiday of the holidays calendar BD \(it knows: .*Eid al-Fitr",
        ),
        ({"name": "rush", "calendar": "BD", "around": []}, "is not a list of holiday names"),
        ({"name": "rush", "calendar": "BD", "around": ["Ashura"], "before": -1}, "before -1"),
        ({"name": "rush", "calendar": "BD", "around": ["Ashura"], "after": 99}, "after 99"),
        ({"calendar": "BD", "around": ["Ashura"]}, "name is missing"),
    ],
)
def test_bad_calendar_entries_name_the_key(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WindowPolicy.from_data(entry(**fields), source="group_data/prod.py")


def test_a_rush_spanning_new_year_is_found_from_either_side() -> None:
    rush = public_holidays.RushBlackout("rush", "BD", ("Victory Day",), 0, 20)
    assert rush.spans(date(2027, 1, 4)) and not rush.spans(date(2027, 1, 6))
    assert "2026-12-16 to 2027-01-05" in rush.describe(date(2027, 1, 1))
