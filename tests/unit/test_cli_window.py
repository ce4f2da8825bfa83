"""`bgdeploy window`: the runbook's schedule for prod, read from group_data, no connection."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bgdeploy.cli import cli


@pytest.mark.parametrize(
    ("at", "code"),
    [
        ("2026-12-03T15:59+06:00", 0),  # Thursday, a minute before the window closes
        ("2026-12-03T16:00+06:00", 3),  # Thursday 16:00: closed
        ("2026-12-04T18:30+06:00", 3),  # Friday evening
        ("2026-12-07T11:00+06:00", 3),  # a Monday
        ("2026-12-16T11:00+06:00", 3),  # Victory Day, a Wednesday
        ("2026-12-03T09:59Z", 0),  # the same instant as 15:59 in Dhaka
    ],
)
def test_prod_window_edges(at: str, code: int) -> None:
    result = CliRunner().invoke(cli, ["window", "prod", "--at", at])
    assert result.exit_code == code, result.output


def test_refusal_names_reason_and_next_window() -> None:
    result = CliRunner().invoke(cli, ["window", "prod", "--at", "2026-12-16T11:00+06:00"])
    assert "Victory Day" in result.output
    assert "next window opens Thu 2026-12-17 10:00 +06" in result.output


def test_staging_has_no_window() -> None:
    result = CliRunner().invoke(cli, ["window", "staging", "--at", "2026-12-16T23:00+06:00"])
    assert result.exit_code == 0


def test_json_output() -> None:
    result = CliRunner().invoke(cli, ["window", "prod", "--at", "2026-12-03T16:00+06:00", "--json"])
    assert result.exit_code == 3
    decision = json.loads(result.output)
    assert decision["allowed"] is False
    assert decision["next_open"].startswith("2026-12-08T10:00:00+06:00")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["window", "nope"], "unknown environment 'nope'"),
        (["window", "prod; rm -rf /"], "not a valid name"),
        (["window", "prod", "--at", "tomorrow-ish"], "not understood"),
    ],
)
def test_bad_input_is_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
