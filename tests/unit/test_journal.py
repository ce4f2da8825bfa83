"""Journal entries: JSON lines, merging across hosts, the append command, the history table."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bgdeploy.core.journal import (
    BadLine,
    JournalEntry,
    JournalError,
    Step,
    format_history,
    format_history_json,
    journal_append_command,
    journal_path,
    journal_read_command,
    merge,
    merge_histories,
    new_entry,
    operator_name,
    parse_journal,
    release_label,
)

T0 = datetime(2026, 12, 3, 4, 12, 9, tzinfo=UTC)
HOSTILE = (
    'it\'s "quoted" $(rm -rf /) `reboot` ${HOME} \\ back\\slash; echo pwned\n'
    "second line\ttab \u2028 \x85 বিদেশগমন ✈ %s %n \x00"
)


def entry(**values) -> JournalEntry:
    base = {
        "event": "deploy_finish",
        "at": T0,
        "who": "rahim@ops-laptop",
        "host": "web1",
        "env": "prod",
        "ref": "v2.4.0",
        "sha": "4f1c2e9a0b7d3c5e1f2a4b6c8d0e2f4a6b8c0d1e",
        "sha_before": "9b0d3e7f",
        "colour": "green",
        "result": "ok",
        "steps": [{"name": "composer install", "seconds": 41.2, "result": "ok"}],
        "reason": "release 2.4",
    }
    base.update(values)
    return JournalEntry(**base)


# Entries


def test_json_line_shape():
    line = entry().to_json_line()
    assert "\n" not in line
    data = json.loads(line)
    assert list(data) == sorted(data)
    assert data["at"] == "2026-12-03T04:12:09Z"
    assert data["steps"] == [{"name": "composer install", "result": "ok", "seconds": 41.2}]
    assert "message" not in data  # empty fields are left out
    assert "details" not in data


def test_round_trip_keeps_everything():
    original = entry(
        message=HOSTILE,
        reason=HOSTILE,
        details={"snapshot": "2026-12-03T0412-v2.4.0", "pct": 5, "nested": {"a": [1, None]}},
        at=datetime(2026, 12, 3, 4, 12, 9, 123456, tzinfo=UTC),
    )
    line = original.to_json_line()
    assert "\n" not in line and "\u2028" not in line and "\x85" not in line
    assert len(line.splitlines()) == 1
    assert JournalEntry.from_json(line) == original


def test_times_are_stored_in_utc():
    dhaka = timezone(timedelta(hours=6))
    local = entry(at=datetime(2026, 12, 3, 10, 12, 9, tzinfo=dhaka))
    assert local.at == T0
    assert local.at.tzinfo is UTC
    assert local.to_dict()["at"] == "2026-12-03T04:12:09Z"


def test_steps_accept_mappings_and_steps():
    made = entry(steps=[Step("build", 3.5), {"name": "migrate", "seconds": 2, "result": "failed"}])
    assert made.steps == (Step("build", 3.5, "ok"), Step("migrate", 2.0, "failed"))
    assert made.seconds == 5.5
    assert entry(steps=()).seconds is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"event": "deploy"}, "unknown journal event 'deploy'"),
        ({"at": datetime(2026, 12, 3, 4, 12)}, "must be a timezone-aware datetime"),
        ({"colour": "red"}, "colour 'red' must be blue or green"),
        ({"result": "great"}, "unknown journal result 'great'"),
        ({"who": 42}, "who 42 must be text"),
        ({"steps": [{"name": "x", "seconds": "fast"}]}, "seconds 'fast' is not a number"),
        ({"steps": ["x"]}, "must be a dict"),
        ({"details": {"when": T0}}, "not JSON-serialisable"),
        ({"details": ["a"]}, "must be a dict"),
    ],
)
def test_invalid_entries_are_refused(values, message):
    with pytest.raises(JournalError, match=message.replace("(", r"\(")):
        entry(**values)


def test_from_json_ignores_unknown_keys():
    data = entry().to_dict() | {"future_field": {"x": 1}, "details": None}
    assert JournalEntry.from_json(json.dumps(data)) == entry()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"event": "switch", "at": "2026-12-03T04:12:09Z"', "not JSON"),
        ("[1, 2]", "not a JSON object but list"),
        ('{"at": "2026-12-03T04:12:09Z"}', "missing 'event'"),
        ('{"event": "switch"}', "missing 'at'"),
        ('{"event": "switch", "at": "yesterday"}', "'at' 'yesterday' is not an ISO 8601 time"),
        ('{"event": "switch", "at": "2026-12-03T04:12:09"}', "timezone-aware"),
        ('{"event": "nope", "at": "2026-12-03T04:12:09Z"}', "unknown journal event 'nope'"),
        ('{"event": "switch", "at": "2026-12-03T04:12:09Z", "steps": 3}', "'steps' 3"),
    ],
)
def test_broken_lines_are_refused_clearly(line, message):
    with pytest.raises(JournalError, match=message):
        JournalEntry.from_json(line)


def test_new_entry_fills_time_and_operator(monkeypatch):
    monkeypatch.setenv("BGDEPLOY_OPERATOR", "karim@ci")
    made = new_entry("unlock", host="web2", reason="stale lock from a killed run")
    assert made.who == "karim@ci"
    assert abs(made.at - datetime.now(UTC)) < timedelta(seconds=5)
    monkeypatch.delenv("BGDEPLOY_OPERATOR")
    assert "@" in operator_name()


# Reading and merging


def test_parse_journal_reports_bad_lines_and_goes_on():
    lines = [
        entry().to_json_line(),
        "",
        "garbage {",
        entry(host=None, event="switch").to_json_line(),
    ]
    entries, bad = parse_journal(lines, host="web1")
    assert [e.event for e in entries] == ["deploy_finish", "switch"]
    assert entries[1].host == "web1"
    assert len(bad) == 1
    assert bad[0].number == 3
    assert str(bad[0]).startswith("web1: journal line 3: not JSON")


def test_merge_orders_by_time_across_hosts_and_fills_hosts():
    def line(minutes: int, event: str, host: str | None = None) -> str:
        return entry(at=T0 + timedelta(minutes=minutes), event=event, host=host).to_json_line()

    histories = {
        "web1": [line(0, "deploy_start"), line(5, "switch"), line(9, "deploy_finish")],
        "web2": "\n".join([line(0, "deploy_start"), line(5, "switch"), "{broken", line(7, "flag")]),
        "db1": [line(2, "snapshot", host="db1.internal")],
    }
    merged = merge_histories(histories)
    assert [(e.event, e.host) for e in merged.entries] == [
        ("deploy_start", "web1"),
        ("deploy_start", "web2"),
        ("snapshot", "db1.internal"),
        ("switch", "web1"),
        ("switch", "web2"),
        ("flag", "web2"),
        ("deploy_finish", "web1"),
    ]
    assert merged.bad_lines == (
        BadLine(
            host="web2",
            number=3,
            text="{broken",
            error=merged.bad_lines[0].error,
        ),
    )
    assert merge(histories) == list(merged.entries)


def test_merge_of_nothing():
    assert merge({}) == []
    assert merge({"web1": []}) == []


# The append command


def test_journal_path():
    assert journal_path("/var/www/bideshgomon") == "/var/www/bideshgomon/.bgdeploy/journal.jsonl"


def test_append_command_survives_hostile_text(tmp_path):
    path = str(tmp_path / "app root" / ".bgdeploy" / "journal.jsonl")
    first = entry(reason=HOSTILE, message="ok 'then' \"fine\"")
    second = entry(event="emergency", reason="$(touch " + str(tmp_path / "owned") + ")")
    for made in (first, second):
        subprocess.run(["sh", "-c", journal_append_command(path, made)], check=True)
    assert not (tmp_path / "owned").exists()
    with open(path, encoding="utf-8", newline="") as handle:
        text = handle.read()
    assert text.count("\n") == 2
    entries, bad = parse_journal(text.split("\n"))
    assert bad == []
    assert entries == [first, second]


def test_read_command_prints_the_journal_or_nothing(tmp_path):
    path = str(tmp_path / "journal.jsonl")
    missing = subprocess.run(
        ["sh", "-c", journal_read_command(path)], check=True, capture_output=True, text=True
    )
    assert missing.stdout == ""
    for minutes in range(3):
        made = entry(at=T0 + timedelta(minutes=minutes))
        subprocess.run(["sh", "-c", journal_append_command(path, made)], check=True)
    last = subprocess.run(
        ["sh", "-c", journal_read_command(path, last=2)], check=True, capture_output=True, text=True
    )
    entries, _ = parse_journal(last.stdout.splitlines())
    assert [e.at for e in entries] == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]


# The history table


def test_format_history_table():
    entries = [
        entry(event="deploy_start", result="started", reason=None, steps=()),
        entry(host="web2", reason="line one\nline two " + "x" * 120),
        entry(
            event="flag",
            ref=None,
            sha=None,
            colour=None,
            result="ok",
            reason=None,
            message="disabled new_checkout",
        ),
    ]
    table = format_history(entries).splitlines()
    assert table[0].split() == [
        "TIME",
        "(UTC)",
        "HOST",
        "EVENT",
        "RELEASE",
        "COLOUR",
        "RESULT",
        "WHO",
        "REASON",
    ]
    assert table[1].split()[:8] == [
        "2026-12-03",
        "04:12:09",
        "web1",
        "deploy_start",
        "v2.4.0",
        "(4f1c2e9)",
        "green",
        "started",
    ]
    assert "line one line two xxx" in table[2]
    assert table[2].endswith("…")
    assert table[3].split()[3:7] == ["flag", "-", "-", "ok"]
    assert table[3].endswith("disabled new_checkout")
    column = table[0].index("EVENT")
    assert [line[column:].split()[0] for line in table] == [
        "EVENT",
        "deploy_start",
        "deploy_finish",
        "flag",
    ]


def test_format_history_empty_and_json():
    assert format_history([]) == "no journal entries"
    data = json.loads(format_history_json([entry()]))
    assert data == [entry().to_dict()]


@pytest.mark.parametrize(
    ("ref", "sha", "label"),
    [
        ("v2", "4f1c2e9a0b", "v2 (4f1c2e9)"),
        ("4f1c2e9", "4f1c2e9a0b", "4f1c2e9"),
        (None, "4f1c2e9a0b", "4f1c2e9"),
        ("v2", None, "v2"),
        (None, None, "-"),
    ],
)
def test_release_label(ref, sha, label):
    assert release_label(entry(ref=ref, sha=sha)) == label
