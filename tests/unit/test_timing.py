"""The phase timer (:mod:`bgdeploy.core.timing`): what it records and how it prints it."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import pytest

from bgdeploy.core import timing


def test_a_phase_is_timed_from_the_origin() -> None:
    profile = timing.Profile(origin=100.0)
    profile.record("inventory", 100.5, 100.75)
    (row, whole) = profile.rows(now=102.0)
    assert (row.name, row.start, row.seconds, row.count) == ("inventory", 0.5, 0.25, 1)
    assert (whole.name, whole.start, whole.seconds) == ("whole process", 0.0, 2.0)


def test_a_phase_run_several_times_spans_its_first_start_to_its_last_end() -> None:
    profile = timing.Profile(origin=0.0)
    profile.record("colours", 1.0, 1.5)  # web1
    profile.record("colours", 1.1, 1.75)  # web2, at the same time
    (row,) = profile.rows(now=2.0)[:-1]
    assert (row.start, row.end, row.count) == (1.0, 1.75, 2)


def test_rows_are_in_the_order_the_phases_started_and_overlap() -> None:
    profile = timing.Profile(origin=0.0)
    profile.record("smoke tests", 1.0, 2.0)
    profile.record("inventory", 0.2, 0.5)
    profile.record("colours", 1.0, 1.2)
    assert [r.name for r in profile.rows(now=3.0)] == [
        "inventory", "colours", "smoke tests", "whole process",
    ]  # fmt: skip


def test_the_context_manager_records_even_when_the_block_raises() -> None:
    profile = timing.Profile()
    with pytest.raises(ValueError), profile.phase("lock"):
        time.sleep(0.01)
        raise ValueError
    assert profile.phases["lock"].seconds >= 0.01


def test_the_table_shows_seconds_and_shares() -> None:
    profile = timing.Profile(origin=0.0)
    profile.record("connect", 0.5, 1.0)
    profile.record("colours", 1.0, 1.1)
    profile.record("colours", 1.0, 1.2)
    lines = profile.table(now=2.0).splitlines()
    assert lines[0].split() == ["phase", "from", "seconds", "share"]
    assert lines[1].split() == ["connect", "0.500", "0.500", "25%"]
    assert lines[2].split() == ["colours", "(x2)", "1.000", "0.200", "10%"]
    assert lines[3].split() == ["whole", "process", "0.000", "2.000", "100%"]


def test_the_json_line_reads_back() -> None:
    profile = timing.Profile(origin=0.0)
    profile.record("switch", 1.0, 1.25)
    line = timing.JSON_PREFIX + json.dumps(profile.to_dict(now=2.0))
    found = timing.parse_json_line(f"some output\n{line}\nbgdeploy: done\n")
    assert found is not None
    assert found["switch"] == {"from": 1.0, "seconds": 0.25, "count": 1}
    assert found["whole process"]["seconds"] == 2.0
    assert timing.parse_json_line("nothing here") is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", ""), ("0", ""), ("off", ""), ("1", "table"), ("yes", "table"), ("JSON", "json")],
)
def test_the_variable_turns_it_on(value: str, expected: str) -> None:
    assert timing.mode({timing.VARIABLE: value}) == expected
    assert timing.mode({}) == ""


def test_the_process_start_is_before_this_module_was_imported() -> None:
    started = timing.process_started()
    assert started <= timing.PROFILE.origin + 0.02
    assert time.monotonic() - started < 24 * 3600


def test_the_profile_is_printed_at_exit_only_when_asked() -> None:
    code = (
        "from bgdeploy.core import timing\n"
        "import sys\n"
        "with timing.phase('work'):\n    pass\n"
        "if sys.argv[1] != 'off':\n    timing.enable(sys.argv[1])\n"
    )
    printed = {}
    for how in ("off", "table", "json"):
        done = subprocess.run(
            [sys.executable, "-c", code, how], capture_output=True, text=True, check=True
        )
        printed[how] = done.stderr
    assert printed["off"] == ""
    assert printed["table"].splitlines()[0].split() == ["phase", "from", "seconds", "share"]
    assert "work" in printed["table"] and "whole process" in printed["table"]
    found = timing.parse_json_line(printed["json"])
    assert found is not None and set(found) == {"work", "whole process"}


def test_printing_goes_to_the_stream_given() -> None:
    stream = io.StringIO()
    timing.print_profile("table", stream)
    assert "whole process" in stream.getvalue()
