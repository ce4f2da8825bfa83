"""Deploy windows and blackouts: decisions at the edges, with a fixed clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from bgdeploy.core.errors import ConfigError
from bgdeploy.core.journal import JournalEntry
from bgdeploy.core.windows import (
    AnnualBlackout,
    DateRangeBlackout,
    WeeklyBlackout,
    WindowPolicy,
    decide,
    parse_at,
)

DHAKA = ZoneInfo("Asia/Dhaka")
PLUS6 = timezone(timedelta(hours=6))

PROD = {
    "timezone": "Asia/Dhaka",
    "deploy_windows": [{"days": ["tue", "wed", "thu"], "start": "10:00", "end": "16:00"}],
    "blackouts": [
        {"name": "Friday evening", "days": ["fri"], "start": "16:00", "end": "24:00"},
        {"name": "After hours", "start": "18:00", "end": "24:00"},
        {"name": "Language Martyrs' Day", "annual": "02-21"},
        {"name": "Independence Day", "annual": "03-26"},
        {"name": "Pohela Boishakh", "annual": "04-14"},
        {"name": "May Day", "annual": "05-01"},
        {"name": "Victory Day", "annual": "12-16"},
        {"name": "Eid al-Fitr visa rush", "start": "2026-03-15", "end": "2026-03-24"},
        {"name": "Eid al-Adha visa rush", "start": "2026-05-22", "end": "2026-05-31"},
    ],
}


def prod_policy() -> WindowPolicy:
    return WindowPolicy.from_data(PROD, source="group_data/prod.py")


@pytest.fixture
def prod() -> WindowPolicy:
    return prod_policy()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# The runbook's schedule


def test_thursday_just_before_the_window_closes_is_allowed(prod):
    decision = decide(prod, at("2026-12-03T15:59+06:00"))
    assert decision.allowed
    assert decision.regular
    assert decision.reasons == ()
    assert decision.next_open is None
    assert decision.closes_at == datetime(2026, 12, 3, 16, 0, tzinfo=DHAKA)
    assert "deploy allowed" in decision.describe()
    assert "closes at Thu 2026-12-03 16:00 +06" in decision.describe()


def test_last_second_of_the_window_is_inside(prod):
    assert decide(prod, at("2026-12-03T15:59:59+06:00")).allowed


def test_thursday_at_16_is_refused_until_tuesday(prod):
    decision = decide(prod, at("2026-12-03T16:00+06:00"))
    assert not decision.allowed
    assert decision.reasons == ("outside the deploy window (Tue-Thu 10:00-16:00 Asia/Dhaka)",)
    assert decision.next_open == datetime(2026, 12, 8, 10, 0, tzinfo=DHAKA)
    assert decision.next_open.utcoffset() == timedelta(hours=6)
    assert not decision.emergency
    text = decision.describe()
    assert text.splitlines()[0].startswith("deploy refused at Thu 2026-12-03 16:00 +06")
    assert "next window opens Tue 2026-12-08 10:00 +06 (Asia/Dhaka), in 4 days 18 h" in text


def test_friday_evening_is_refused_for_every_reason(prod):
    decision = decide(prod, at("2026-12-04T18:30+06:00"))
    assert not decision.allowed
    assert decision.reasons == (
        "outside the deploy window (Tue-Thu 10:00-16:00 Asia/Dhaka)",
        "blackout: Friday evening (Fri 16:00-24:00)",
        "blackout: After hours (daily 18:00-24:00)",
    )
    assert decision.next_open == datetime(2026, 12, 8, 10, 0, tzinfo=DHAKA)


def test_monday_is_refused(prod):
    decision = decide(prod, at("2026-12-07T11:00+06:00"))
    assert not decision.allowed
    assert decision.reasons == ("outside the deploy window (Tue-Thu 10:00-16:00 Asia/Dhaka)",)
    assert decision.next_open == datetime(2026, 12, 8, 10, 0, tzinfo=DHAKA)


def test_before_the_window_opens_the_same_day(prod):
    decision = decide(prod, at("2026-12-08T09:59:30+06:00"))
    assert not decision.allowed
    assert decision.next_open == datetime(2026, 12, 8, 10, 0, tzinfo=DHAKA)


def test_victory_day_is_refused_and_skipped(prod):
    decision = decide(prod, at("2026-12-16T11:00+06:00"))
    assert not decision.allowed
    assert decision.reasons == ("blackout: Victory Day (2026-12-16, every year)",)
    assert decision.next_open == datetime(2026, 12, 17, 10, 0, tzinfo=DHAKA)


def test_the_day_before_a_holiday_skips_it(prod):
    decision = decide(prod, at("2026-12-15T16:30+06:00"))
    assert decision.next_open == datetime(2026, 12, 17, 10, 0, tzinfo=DHAKA)


def test_annual_holidays_repeat_every_year(prod):
    # 21 February 2028 is a Monday, 21 February 2029 a Wednesday.
    decision = decide(prod, at("2029-02-21T11:00+06:00"))
    assert decision.reasons == ("blackout: Language Martyrs' Day (2029-02-21, every year)",)
    assert decision.next_open == datetime(2029, 2, 22, 10, 0, tzinfo=DHAKA)


def test_a_date_range_blackout_spans_several_days(prod):
    # Eid al-Fitr visa rush: Sunday 15 to Tuesday 24 March 2026.
    for day in ("2026-03-17", "2026-03-18", "2026-03-19", "2026-03-24"):
        decision = decide(prod, at(f"{day}T11:00+06:00"))
        assert decision.reasons == (
            "blackout: Eid al-Fitr visa rush (2026-03-15 to 2026-03-24)",
        ), day
        # Wednesday 25 March is the first open day; 26 March is Independence Day.
        assert decision.next_open == datetime(2026, 3, 25, 10, 0, tzinfo=DHAKA)
    assert decide(prod, at("2026-03-25T11:00+06:00")).allowed
    assert not decide(prod, at("2026-03-26T11:00+06:00")).allowed


def test_next_open_crosses_a_long_blackout_and_week_boundaries():
    policy = WindowPolicy.from_data(
        {
            "deploy_windows": [{"days": ["tue-thu"], "start": "10:00", "end": "16:00"}],
            "blackouts": [{"name": "Freeze", "start": "2026-12-20", "end": "2027-01-06"}],
        }
    )
    decision = decide(policy, at("2026-12-17T17:00+06:00"))
    assert decision.next_open == datetime(2027, 1, 7, 10, 0, tzinfo=DHAKA)


def test_emergency_overrides_a_refusal_and_keeps_the_reasons(prod):
    decision = decide(prod, at("2026-12-04T18:30+06:00"), emergency_reason="P0: payments down")
    assert decision.allowed
    assert decision.emergency
    assert not decision.regular
    assert decision.emergency_reason == "P0: payments down"
    assert "blackout: Friday evening (Fri 16:00-24:00)" in decision.reasons
    assert decision.next_open == datetime(2026, 12, 8, 10, 0, tzinfo=DHAKA)
    text = decision.describe()
    assert text.startswith("emergency deploy allowed at Fri 2026-12-04 18:30 +06")
    assert "reason: P0: payments down" in text
    record = decision.to_dict()
    assert record["emergency"] is True
    assert record["reasons"] == list(decision.reasons)


def test_an_emergency_override_is_journaled():
    decision = decide(prod_policy(), at("2026-12-04T18:30+06:00"), emergency_reason="P0: outage")
    entry = JournalEntry(
        event="window_override",
        at=decision.at,
        who="rahim@ops",
        env="prod",
        reason=decision.emergency_reason,
        details={"window": decision.to_dict()},
    )
    read_back = JournalEntry.from_json(entry.to_json_line())
    assert read_back.reason == "P0: outage"
    assert read_back.details["window"]["reasons"] == list(decision.reasons)
    assert read_back.details["window"]["next_open"] == "2026-12-08T10:00:00+06:00"
    assert read_back.at == datetime(2026, 12, 4, 12, 30, tzinfo=UTC)


def test_emergency_inside_the_window_is_a_regular_deploy(prod):
    decision = decide(prod, at("2026-12-03T11:00+06:00"), emergency_reason="hotfix")
    assert decision.allowed
    assert not decision.emergency


def test_an_empty_emergency_reason_is_bad_usage(prod):
    with pytest.raises(ConfigError, match="needs a reason"):
        decide(prod, at("2026-12-04T18:30+06:00"), emergency_reason="  ")


@pytest.mark.parametrize("windows", [None, []])
def test_no_window_policy_always_allows(windows):
    policy = WindowPolicy.from_data({"deploy_windows": windows})
    assert not policy.restricted
    moment = datetime(2026, 12, 4, 23, 30, tzinfo=DHAKA)
    for hours in range(0, 24 * 8, 5):
        decision = decide(policy, moment + timedelta(hours=hours))
        assert decision.allowed
        assert decision.closes_at is None
    assert decide(WindowPolicy.from_data({}), moment).allowed


def test_no_window_policy_still_honours_blackouts():
    policy = WindowPolicy.from_data({"blackouts": [{"name": "Victory Day", "annual": "12-16"}]})
    decision = decide(policy, at("2026-12-16T03:00+06:00"))
    assert not decision.allowed
    assert decision.next_open == datetime(2026, 12, 17, 0, 0, tzinfo=DHAKA)
    allowed = decide(policy, at("2026-12-15T03:00+06:00"))
    assert allowed.closes_at == datetime(2026, 12, 16, 0, 0, tzinfo=DHAKA)


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2026-12-03T15:59+06:00", "2026-12-03T09:59Z"),
        ("2026-12-03T16:00+06:00", "2026-12-03T10:00Z"),
        ("2026-12-04T18:30+06:00", "2026-12-04T12:30+00:00"),
        ("2026-12-16T11:00+06:00", "2026-12-16T05:00Z"),
        ("2026-12-08T00:30+06:00", "2026-12-07T18:30Z"),
    ],
)
def test_the_same_instant_in_utc_decides_identically(prod, local, utc):
    from_local = decide(prod, at(local))
    from_utc = decide(prod, at(utc))
    assert from_utc == from_local
    assert from_utc.at.tzinfo == DHAKA


def test_a_utc_monday_evening_is_a_dhaka_tuesday_morning(prod):
    # Monday 04:30 UTC is Monday 10:30 in Dhaka: refused. Tuesday 04:30 UTC: allowed.
    assert not decide(prod, datetime(2026, 12, 7, 4, 30, tzinfo=UTC)).allowed
    assert decide(prod, datetime(2026, 12, 8, 4, 30, tzinfo=UTC)).allowed


def test_naive_times_are_refused(prod):
    with pytest.raises(ConfigError, match="no time zone"):
        decide(prod, datetime(2026, 12, 3, 15, 59))


def test_windows_past_midnight():
    policy = WindowPolicy.from_data(
        {
            "timezone": "UTC",
            "deploy_windows": [{"days": ["sat"], "start": "22:00", "end": "02:00"}],
        }
    )
    assert decide(policy, at("2026-12-05T23:00Z")).allowed
    assert decide(policy, at("2026-12-06T01:59Z")).allowed
    assert not decide(policy, at("2026-12-06T02:00Z")).allowed
    assert decide(policy, at("2026-12-05T23:00Z")).closes_at == at("2026-12-06T02:00Z")
    assert decide(policy, at("2026-12-06T02:00Z")).next_open == at("2026-12-12T22:00Z")


def test_policy_describes_itself(prod):
    assert prod.describe() == "deploy windows: Tue-Thu 10:00-16:00 Asia/Dhaka; 9 blackouts"
    assert WindowPolicy.from_data({}).describe().startswith("deploy windows: none")


def test_blackout_shapes_are_parsed(prod):
    kinds = [type(blackout) for blackout in prod.blackouts]
    assert kinds[:2] == [WeeklyBlackout, WeeklyBlackout]
    assert kinds[2:7] == [AnnualBlackout] * 5
    assert kinds[7:] == [DateRangeBlackout] * 2
    single = WindowPolicy.from_data({"blackouts": [{"name": "Launch", "start": "2026-12-01"}]})
    assert single.blackouts == (DateRangeBlackout("Launch", date(2026, 12, 1), date(2026, 12, 1)),)


def test_python_values_are_accepted():
    policy = WindowPolicy.from_data(
        {
            "deploy_windows": [{"days": ["Tuesday"], "start": time(10), "end": "16:00"}],
            "blackouts": [{"name": "Launch", "start": date(2026, 12, 8), "end": date(2026, 12, 8)}],
        }
    )
    assert not decide(policy, at("2026-12-08T11:00+06:00")).allowed
    assert decide(policy, at("2026-12-15T11:00+06:00")).allowed


# Validation


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"deploy_windows": [{"days": ["tue"], "start": "25:00", "end": "16:00"}]},
            "group_data/prod.py: deploy_windows[0].start '25:00' is not a time HH:MM",
        ),
        (
            {"deploy_windows": [{"days": ["tue"], "start": "10:00", "end": "16:60"}]},
            "deploy_windows[0].end '16:60' is not a time HH:MM",
        ),
        (
            {"deploy_windows": [{"days": ["tue"], "start": "24:00", "end": "16:00"}]},
            "deploy_windows[0].start '24:00' is not a time HH:MM",
        ),
        (
            {"deploy_windows": [{"days": ["tues"], "start": "10:00", "end": "16:00"}]},
            "deploy_windows[0].days[0] 'tues' is not a day name",
        ),
        (
            {"deploy_windows": [{"days": "tue", "start": "10:00", "end": "16:00"}]},
            "deploy_windows[0].days 'tue' is not a list of day names",
        ),
        (
            {"deploy_windows": [{"days": [], "start": "10:00", "end": "16:00"}]},
            "deploy_windows[0].days [] is not a list of day names",
        ),
        (
            {"deploy_windows": [{"days": ["tue"], "start": "10:00"}]},
            "deploy_windows[0].end is missing",
        ),
        (
            {"deploy_windows": [{"days": ["tue"], "strat": "10:00", "end": "16:00"}]},
            "deploy_windows[0] has unknown key 'strat'",
        ),
        (
            {"deploy_windows": [{"days": ["tue"], "start": "10:00", "end": "10:00"}]},
            "deploy_windows[0] starts and ends at 10:00",
        ),
        ({"deploy_windows": "tue-thu"}, "deploy_windows 'tue-thu' is not a list of windows"),
        ({"deploy_windows": ["tue"]}, "deploy_windows[0] 'tue' is not a dict"),
        ({"timezone": "Asia/Dhak"}, "timezone 'Asia/Dhak' is not a known time zone"),
        ({"timezone": 6}, "timezone 6 is not a time zone name"),
        ({"blackouts": {"name": "x"}}, "blackouts {'name': 'x'} is not a list of blackouts"),
        ({"blackouts": [{"annual": "12-16"}]}, "blackouts[0].name None must be a non-empty name"),
        (
            {"blackouts": [{"name": "Victory Day", "annual": "12-32"}]},
            "blackouts[0].annual '12-32' is not a month-day MM-DD",
        ),
        (
            {"blackouts": [{"name": "Victory Day", "annual": "12-16", "start": "10:00"}]},
            "blackouts[0] mixes 'annual' with 'start'",
        ),
        (
            {"blackouts": [{"name": "Eid", "start": "2026-05-31", "end": "2026-05-22"}]},
            "blackouts[0].end '2026-05-22' is before start '2026-05-31'",
        ),
        (
            {"blackouts": [{"name": "Eid", "start": "2026-02-30"}]},
            "blackouts[0].start '2026-02-30' is not a date YYYY-MM-DD",
        ),
        (
            {"blackouts": [{"name": "Eid", "start": "2026-05-22", "end": "18:00"}]},
            "blackouts[0].end '18:00' is not a date YYYY-MM-DD",
        ),
        (
            {"blackouts": [{"name": "Late", "start": "18:00", "end": "2026-05-22"}]},
            "blackouts[0].end '2026-05-22' is a date but start '18:00' is not",
        ),
        (
            {"blackouts": [{"name": "Late", "start": "18:00"}]},
            "blackouts[0].end is missing",
        ),
        ({"blackouts": [{"name": "Late"}]}, "blackouts[0].start is missing"),
        (
            {"blackouts": [{"name": "Late", "days": ["fry"], "start": "18:00", "end": "24:00"}]},
            "blackouts[0].days[0] 'fry' is not a day name",
        ),
    ],
)
def test_bad_values_name_the_key_the_value_and_the_file(data, message):
    with pytest.raises(ConfigError) as caught:
        WindowPolicy.from_data(data, source="group_data/prod.py")
    assert str(caught.value).startswith("group_data/prod.py: ")
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


# --at


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T15:59+06:00", datetime(2026, 12, 3, 15, 59, tzinfo=PLUS6)),
        ("2026-12-03T09:59Z", datetime(2026, 12, 3, 9, 59, tzinfo=UTC)),
        ("2026-12-03T15:59", datetime(2026, 12, 3, 15, 59, tzinfo=DHAKA)),
        ("2026-12-03 15:59", datetime(2026, 12, 3, 15, 59, tzinfo=DHAKA)),
        (" 2026-12-03 15:59:30 ", datetime(2026, 12, 3, 15, 59, 30, tzinfo=DHAKA)),
        ("2026-12-03 15:59 +06:00", datetime(2026, 12, 3, 15, 59, tzinfo=PLUS6)),
        ("2026-12-03T9:05", datetime(2026, 12, 3, 9, 5, tzinfo=DHAKA)),
        ("2026-12-03", datetime(2026, 12, 3, 0, 0, tzinfo=DHAKA)),
    ],
)
def test_parse_at(text, expected):
    parsed = parse_at(text, "Asia/Dhaka")
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


def test_parse_at_uses_the_given_zone_for_naive_times():
    assert parse_at("2026-12-03T15:59", ZoneInfo("UTC")) == datetime(
        2026, 12, 3, 15, 59, tzinfo=UTC
    )


def test_parse_at_now_is_aware():
    assert parse_at("now", "Asia/Dhaka").tzinfo is not None


@pytest.mark.parametrize(
    "text",
    ["", "tomorrow", "2026-12-3", "2026-12-03T25:00", "2026-13-03T10:00", "03/12/2026 10:00"],
)
def test_parse_at_rejects_bad_text(text):
    with pytest.raises(ConfigError, match="time"):
        parse_at(text, "Asia/Dhaka")


def test_parsed_times_decide_like_the_cli(prod):
    assert decide(prod, parse_at("2026-12-03T15:59+06:00", prod.tz)).allowed
    assert not decide(prod, parse_at("2026-12-03T16:00", prod.tz)).allowed


def test_a_policy_that_never_opens_says_so():
    policy = WindowPolicy.from_data(
        {
            "deploy_windows": [{"days": ["fri"], "start": "16:00", "end": "18:00"}],
            "blackouts": [
                {"name": "Friday evening", "days": ["fri"], "start": "16:00", "end": "24:00"}
            ],
        }
    )
    decision = decide(policy, at("2026-12-04T17:00+06:00"))
    assert not decision.allowed
    assert decision.next_open is None
    assert "no deploy window opens in the next 400 days" in decision.describe()


def test_daylight_saving_zones_give_real_instants():
    # Europe/London springs forward at 01:00 on 29 March 2026: 01:30 does not exist.
    policy = WindowPolicy.from_data(
        {
            "timezone": "Europe/London",
            "deploy_windows": [{"days": ["sun"], "start": "01:30", "end": "03:00"}],
        }
    )
    decision = decide(policy, at("2026-03-29T00:30Z"))
    assert decision.next_open is not None
    assert decision.next_open.tzinfo == ZoneInfo("Europe/London")
    assert decide(policy, decision.next_open).allowed
