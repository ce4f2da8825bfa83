"""Postmortems: the runbook's template with a Dhaka-time timeline from the journals."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from bgdeploy.core.errors import ConfigError
from bgdeploy.core.journal import JournalEntry
from bgdeploy.oncall.postmortem import describe_event, format_seconds, render_postmortem, timeline

T0 = datetime(2026, 12, 3, 4, 0, tzinfo=UTC)  # 10:00 in Dhaka

# The headings of the runbook's postmortem template, in order.
RUNBOOK_HEADINGS = [
    "# Incident Postmortem:",
    "## Summary",
    "## Timeline (Asia/Dhaka Time)",
    "## Root Cause",
    "## Detection",
    "## Impact",
    "## Resolution",
    "## Action Items",
    "### Immediate (Within 24hr)",
    "### Short-term (Within 1 week)",
    "### Long-term (Within 1 month)",
    "## Lessons Learned",
    "### What Went Well",
    "### What Went Wrong",
    "### Where We Got Lucky",
    "## Follow-Up",
]


def e(seconds: float, event: str, host: str | None, **values) -> JournalEntry:
    values.setdefault("env", "prod")
    values.setdefault("who", "rahim@ops")
    return JournalEntry(event=event, at=T0 + timedelta(seconds=seconds), host=host, **values)


def incident() -> list[JournalEntry]:
    """A deploy, a failed deploy rolled back automatically, a flag kill switch (shuffled)."""
    v2 = {"ref": "v2", "sha": "a1b2c3d4e5f6"}
    v3 = {"ref": "v3", "sha": "0f9e8d7c6b5a"}
    entries = [
        e(0, "deploy_start", "web1", result="started", **v2),
        e(2, "deploy_start", "web2", result="started", **v2),
        e(
            40,
            "snapshot",
            "db1",
            result="ok",
            details={"snapshot": "20261203-v2"},
            steps=[{"name": "pg_dump", "seconds": 12.4}],
        ),
        e(
            250,
            "deploy_finish",
            "web1",
            result="ok",
            steps=[{"name": "build", "seconds": 240}],
            **v2,
        ),
        e(
            253,
            "deploy_finish",
            "web2",
            result="ok",
            steps=[{"name": "build", "seconds": 247}],
            **v2,
        ),
        e(900, "deploy_start", "web1", result="started", **v3),
        e(902, "deploy_start", "web2", result="started", **v3),
        e(
            975,
            "deploy_fail",
            "web1",
            result="rolled_back",
            message="health check failed",
            steps=[{"name": "build", "seconds": 60}, {"name": "health", "seconds": 15}],
            **v3,
        ),
        e(
            976,
            "deploy_fail",
            "web2",
            result="rolled_back",
            message="health check failed",
            steps=[{"name": "build", "seconds": 61}],
            **v3,
        ),
        e(
            1320,
            "flag",
            "web1",
            result="ok",
            reason="checkout errors",
            details={"flag": "new_checkout", "action": "disabled (kill switch)"},
        ),
        e(
            1321,
            "flag",
            "web2",
            result="ok",
            reason="checkout errors",
            details={"flag": "new_checkout", "action": "disabled (kill switch)"},
        ),
        # Outside the window, or another environment: left out.
        e(-3600, "deploy_start", "web1", ref="v1", result="started"),
        e(100, "deploy_start", "stg1", env="staging", ref="v9", result="started"),
        e(7200, "rollback", "web1", ref="v2", result="ok"),
    ]
    return entries[::-1]


def render(**options) -> str:
    options.setdefault("since", T0 - timedelta(minutes=30))
    options.setdefault("until", T0 + timedelta(hours=1))
    return render_postmortem(incident(), "prod", **options)


def timeline_lines(text: str) -> list[str]:
    section = text.split("## Timeline (Asia/Dhaka Time)\n", 1)[1].split("\n\n", 1)[0]
    return [line for line in section.splitlines() if line.startswith("- **")]


def test_headings_follow_the_runbook_template():
    text = render()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert len(headings) == len(RUNBOOK_HEADINGS)
    for heading, expected in zip(headings, RUNBOOK_HEADINGS, strict=True):
        assert heading.startswith(expected)
    for field in (
        "**Date:**",
        "**Severity:**",
        "**Duration:**",
        "**Impact:**",
        "**Incident Commander:**",
    ):
        assert field in text


def test_timeline_in_order_in_dhaka_time_with_hosts_collapsed():
    assert timeline_lines(render()) == [
        "- **10:00:00** - Deploy of v2 (a1b2c3d) started by rahim@ops (web1, web2)",
        "- **10:00:40** - Database snapshot 20261203-v2 taken (db1, 12s)",
        "- **10:04:10** - Deploy of v2 (a1b2c3d) finished (web1, web2, 4m 07s)",
        "- **10:15:00** - Deploy of v3 (0f9e8d7) started by rahim@ops (web1, web2)",
        "- **10:16:15** - Deploy of v3 (0f9e8d7) FAILED, rolled back automatically: "
        "health check failed (web1, web2, 1m 15s)",
        "- **10:22:00** - Feature flag new_checkout: disabled (kill switch) by rahim@ops; "
        "reason: checkout errors (web1, web2)",
    ]


def test_header_date_and_duration():
    text = render()
    assert "**Date:** 2026-12-03  \n" in text
    assert "**Duration:** 00:22 (10:00:00 to 10:22:01 Asia/Dhaka" in text
    assert "**Severity:** _TODO" in text
    assert (
        "**Environment:** prod (journals from 2026-12-03 09:30 to 2026-12-03 11:00 Asia/Dhaka; "
        "hosts db1, web1, web2)"
    ) in text


def test_people_fill_in_severity_impact_cause_and_lessons():
    text = render()
    for section in (
        "## Root Cause",
        "## Detection",
        "## Impact",
        "### What Went Well",
        "### What Went Wrong",
        "### Where We Got Lucky",
    ):
        body = text.split(section + "\n", 1)[1].split("\n#", 1)[0]
        assert "_TODO" in body, section


def test_resolution_lists_the_recovery_actions():
    resolution = render().split("## Resolution\n", 1)[1].split("\n## ", 1)[0]
    assert "FAILED, rolled back automatically" in resolution
    assert "Feature flag new_checkout" in resolution
    assert "started" not in resolution


def test_the_window_filter_is_inclusive_and_per_environment():
    lines = timeline_lines(
        render(since=T0 + timedelta(seconds=250), until=T0 + timedelta(seconds=975))
    )
    assert [line.split("** - ")[1].split(" (")[0] for line in lines] == [
        "Deploy of v2",  # finish on web1 at 250 s; web2 at 253 s joins it
        "Deploy of v3",
        "Deploy of v3",
    ]
    assert lines[0].endswith("(web1, web2, 4m 07s)")
    assert lines[2].endswith("(web1, 1m 15s)")  # web2's failure at 976 s is outside
    assert "stg1" not in render()
    assert "v1" not in render()


def test_no_until_takes_everything_after_since():
    lines = timeline_lines(render(until=None))
    assert lines[-1].startswith("- **12:00:00** - Rollback to v2 completed")


def test_events_on_another_day_show_the_date():
    late = [
        e(0, "deploy_start", "web1", ref="v2", result="started"),
        e(14 * 3600 + 30, "emergency", "web1", details={"action": "restart php-fpm"}),
    ]
    text = render_postmortem(late, "prod", since=T0)
    assert timeline_lines(text) == [
        "- **10:00:00** - Deploy of v2 started by rahim@ops (web1)",
        "- **2026-12-04 00:00:30** - Emergency action: restart php-fpm by rahim@ops (web1)",
    ]


def test_collapsing_needs_the_same_event_nearly_the_same_time_and_other_hosts():
    entries = [
        e(0, "switch", "web1", colour="green", ref="v2", result="ok"),
        e(30, "switch", "web2", colour="green", ref="v2", result="ok"),
        e(45, "switch", "web2", colour="green", ref="v2", result="ok"),  # same host again
        e(50, "switch", "web3", colour="blue", ref="v1", result="ok"),  # different release
        e(200, "switch", "web4", colour="green", ref="v2", result="ok"),  # too late
    ]
    items = timeline(entries)
    assert [(item.hosts, item.text) for item in items] == [
        (("web1", "web2"), "Traffic switched to green (v2) by rahim@ops"),
        (("web2",), "Traffic switched to green (v2) by rahim@ops"),
        (("web3",), "Traffic switched to blue (v1) by rahim@ops"),
        (("web4",), "Traffic switched to green (v2) by rahim@ops"),
    ]
    assert len(timeline(entries, collapse_seconds=300)) == 3


def test_an_empty_window_still_gives_the_template():
    text = render_postmortem(incident(), "prod", since=T0 + timedelta(days=3))
    assert "- _No journal events for prod in this window._" in text
    assert "**Duration:** _TODO" in text
    assert "## Follow-Up" in text


@pytest.mark.parametrize(
    ("since", "until", "message"),
    [
        (datetime(2026, 12, 3, 10, 0), None, "since 2026-12-03T10:00:00 has no time zone"),
        (T0, datetime(2026, 12, 3, 12, 0), "until 2026-12-03T12:00:00 has no time zone"),
        (T0, T0 - timedelta(minutes=1), "is before --since"),
    ],
)
def test_bad_windows_are_bad_usage(since, until, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        render_postmortem([], "prod", since=since, until=until)


def test_bad_time_zone():
    with pytest.raises(ConfigError, match="Asia/Dhak"):
        render_postmortem([], "prod", since=T0, tz="Asia/Dhak")


def test_other_time_zones_are_named_in_the_heading():
    text = render_postmortem(incident(), "prod", since=T0, tz="UTC")
    assert "## Timeline (UTC Time)" in text
    assert "- **04:00:00** - Deploy of v2" in text


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (
            {"event": "rollback", "ref": "v2", "sha_before": "0f9e8d7c", "result": "ok"},
            "Rollback to v2 from 0f9e8d7 completed by rahim@ops",
        ),
        (
            {"event": "rollback", "result": "failed", "message": "nginx -t failed"},
            "Rollback FAILED by rahim@ops: nginx -t failed",
        ),
        (
            {"event": "switch", "colour": "blue", "result": "ok"},
            "Traffic switched to blue by rahim@ops",
        ),
        (
            {
                "event": "deploy_start",
                "ref": "v3",
                "colour": "green",
                "details": {"strategy": "blue-green"},
            },
            "Deploy of v3 started (blue-green, to green) by rahim@ops",
        ),
        (
            {"event": "deploy_finish", "ref": "v3", "result": "failed"},
            "Deploy of v3 finished FAILED",
        ),
        (
            {"event": "canary", "ref": "v3", "details": {"percent": 5}},
            "Canary of v3 at 5% of traffic by rahim@ops",
        ),
        (
            {
                "event": "canary",
                "ref": "v3",
                "result": "rolled_back",
                "details": {
                    "percent": 5,
                    "window": {
                        "window": 300,
                        "ended_at": 62.4,
                        "early": True,
                        "seconds_to_back": 31.2,
                    },
                },
            },
            "Canary of v3 at 5% of traffic rolled back by rahim@ops; sent back "
            "early at 62 s of 300 s, every client back 31.2 s after the first failure",
        ),
        (
            {
                "event": "canary",
                "ref": "v3",
                "details": {"percent": 5, "window": {"window": 300, "ended_at": 300.4}},
            },
            "Canary of v3 at 5% of traffic by rahim@ops; window ended at 300 s of 300 s",
        ),
        (
            {"event": "window_override", "ref": "v3", "reason": "P0: payments down"},
            "Deploy window overridden for an emergency deploy of v3 by rahim@ops; "
            "reason: P0: payments down",
        ),
        (
            {"event": "destructive_override", "ref": "v3"},
            "Destructive migrations allowed by override for v3 by rahim@ops",
        ),
        (
            {"event": "lock_broken", "reason": "stale\nlock"},
            "Stale deploy lock broken by rahim@ops; reason: stale lock",
        ),
        ({"event": "unlock"}, "Deploy lock released by hand by rahim@ops"),
        ({"event": "migrate", "ref": "v3", "result": "ok"}, "Migrations ran for v3"),
        (
            {"event": "snapshot_restore", "details": {"id": "s1"}},
            "Database snapshot s1 restored by rahim@ops",
        ),
        (
            {"event": "flag", "details": {"flag": "bkash"}},
            "Feature flag bkash changed by rahim@ops",
        ),
        (
            {"event": "emergency", "message": "cleared caches"},
            "Emergency action by rahim@ops: cleared caches",
        ),
    ],
)
def test_events_in_plain_words(values, text):
    event = values.pop("event")
    assert describe_event(e(0, event, "web1", **values)) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (41.2, "41s"), (252, "4m 12s"), (3720, "1h 02m")]
)
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_a_message_that_repeats_the_event_is_not_printed_twice() -> None:
    flag = e(
        0,
        "flag",
        "web1",
        details={"flag": "visa_v2", "action": "disable"},
        message="disable visa_v2",
    )
    assert describe_event(flag).count("visa_v2") == 1
    other = e(
        0, "flag", "web1", details={"flag": "visa_v2", "action": "disable"}, message="502s on apply"
    )
    assert describe_event(other).endswith(": 502s on apply")


def test_the_release_snapshot_is_named_by_its_name() -> None:
    snapshot = e(0, "snapshot", "db", result="ok", details={"name": "20261128T0600Z-v2"})
    assert "20261128T0600Z-v2" in describe_event(snapshot)


def test_hosts_of_one_line_are_listed_by_name_whoever_finished_first() -> None:
    entries = [
        e(0, "deploy_finish", "web2", result="ok", ref="v2", sha="a1b2c3d4e5f6"),
        e(1, "deploy_finish", "web1", result="ok", ref="v2", sha="a1b2c3d4e5f6"),
    ]
    (item,) = timeline(entries)
    assert item.hosts == ("web1", "web2")
