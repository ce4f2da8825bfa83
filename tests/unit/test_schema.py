"""The database check after a failed migrate (bgdeploy.checks.schema) and its commands."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from bgdeploy import commands
from bgdeploy.checks import schema
from bgdeploy.core.errors import ConfigError
from bgdeploy.oncall import database

A = schema.Fingerprint("a" * 64, 2, 3)
B = schema.Fingerprint("b" * 64, 3, 4)
SNAPSHOT = {"name": "20261203T120000Z-0123456789ab", "host": "db", "path": "/b/x.dump"}


def test_parse_fingerprint_takes_the_last_line() -> None:
    out = f"noise\nbgdeploy-fingerprint: {'a' * 64} 2 3\nbgdeploy-fingerprint: {'b' * 64} 3 4\n"
    assert schema.parse_fingerprint(out) == B
    assert schema.parse_fingerprint("bgdeploy-fingerprint: abc 1 1") is None
    assert schema.parse_fingerprint("") is None


def test_parse_rows_and_diff() -> None:
    out = (
        "bgdeploy-migration: 2026_01_01_000001_b 3\n"
        "bgdeploy-migration: 2026_01_01_000000_a 3\n"
        "bgdeploy-schema-diff: >     tracking character varying(255)\n"
        "other\n"
    )
    assert schema.parse_rows(out) == ["2026_01_01_000001_b", "2026_01_01_000000_a"]
    assert schema.parse_batches(out) == {"2026_01_01_000001_b": 3, "2026_01_01_000000_a": 3}
    assert schema.parse_batches("bgdeploy-migration: no_batch\n") == {}
    assert schema.parse_diff(out) == [">     tracking character varying(255)"]


def test_equal_fingerprints_are_verified() -> None:
    check = schema.DatabaseCheck(before=A, after=A, undone=["m2", "m1"])
    assert check.verified
    assert check.verdict().startswith(schema.VERIFIED)
    assert "m2, m1" in check.verdict()
    assert check.advice("prod", SNAPSHOT) == (
        "snapshot 20261203T120000Z-0123456789ab is kept at db:/b/x.dump"
    )
    assert "restore" not in check.advice("prod", SNAPSHOT)
    assert check.to_dict()["verified"] is True


def test_nothing_recorded_is_said() -> None:
    verdict = schema.DatabaseCheck(before=A, after=A).verdict()
    assert verdict.startswith(schema.VERIFIED) and "no migration of this run" in verdict


@pytest.mark.parametrize(
    ("check", "why"),
    [
        (schema.DatabaseCheck(before=A, after=B, diff=["> x int"]), "fingerprint changed"),
        (schema.DatabaseCheck(before=A, after=None, problem="db down"), "db down"),
        (schema.DatabaseCheck(before=None, after=A), "no fingerprint was taken"),
        (schema.DatabaseCheck(before=A, after=B, left=["m1"]), "still recorded: m1"),
    ],
)
def test_anything_else_is_not_verified_and_names_the_restore(
    check: schema.DatabaseCheck, why: str
) -> None:
    assert not check.verified
    verdict = check.verdict()
    assert verdict.startswith(schema.NOT_AS_BEFORE) and schema.VERIFIED not in verdict
    assert why in verdict
    advice = check.advice("prod", SNAPSHOT)
    assert "`bgdeploy snapshot prod restore 20261203T120000Z-0123456789ab`" in advice
    assert "db:/b/x.dump" in advice


def test_fingerprint_command_is_read_only_and_quoted() -> None:
    command = commands.schema_fingerprint(5432, "app; rm -rf /")
    assert "pg_dump --schema-only --no-owner --no-privileges" in command
    assert "sudo -u postgres" in command
    for word in ("DROP", "DELETE", "INSERT", "UPDATE", "ALTER"):
        assert word not in command
    with pytest.raises(ConfigError):
        commands.schema_fingerprint(5432, "app", compare_with="/b/x.dump; reboot")
    with pytest.raises(ConfigError):
        commands.schema_fingerprint(5432, "app", compare_with="/b/x.sql")
    assert "pg_isready" in commands.schema_fingerprint(5432, "app", wait=30)
    assert "pg_isready" not in commands.schema_fingerprint(5432, "app")


def test_migrations_after_takes_only_a_whole_batch() -> None:
    assert "WHERE batch > 4" in commands.migrations_after(5432, "app", 4)
    for bad in (-1, True, "4; DROP TABLE migrations", 2.5):
        with pytest.raises(ConfigError):
            commands.migrations_after(5432, "app", bad)  # type: ignore[arg-type]


STUBS = {
    # sudo -u postgres -H sh -c SCRIPT: run SCRIPT here.
    "sudo": 'shift 3; exec "$@"',
    # pg_dump ... -f FILE DB: a schema whose comments and \\restrict key change on every run.
    "pg_dump": (
        'while [ $# -gt 1 ]; do [ "$1" = -f ] && f=$2; shift; done; '
        'printf "%s\\n" "-- Dumped at $$" "\\\\restrict $$" "" "CREATE TABLE t (" '
        '"    a integer" ");" "\\\\unrestrict $$" > "$f"'
    ),
    # psql: the migrations table exists and has two rows.
    "psql": (
        'case "$*" in *to_regclass*) echo t;; '
        '*"ORDER BY migration, batch"*) printf "m1 1\\nm2 2\\n";; esac'
    ),
    "pg_isready": "exit 0",
}


@pytest.fixture
def stub_path(tmp_path: Path) -> str:
    for name, body in STUBS.items():
        path = tmp_path / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return f"{tmp_path}:{os.environ['PATH']}"


def test_fingerprint_ignores_comments_and_restrict_keys(stub_path: str) -> None:
    runs = [
        subprocess.run(
            ["sh", "-c", commands.schema_fingerprint(5432, "app", wait=2)],
            capture_output=True,
            text=True,
            env={**os.environ, "PATH": stub_path},
            check=True,
        ).stdout
        for _ in range(2)
    ]
    first, second = (schema.parse_fingerprint(out) for out in runs)
    assert first is not None and first == second  # the per-run lines do not count
    normalised = "CREATE TABLE t (\n    a integer\n);\nm1 1\nm2 2\n"
    assert first.digest == hashlib.sha256(normalised.encode()).hexdigest()
    assert (first.batch, first.rows) == (2, 2)


LARAVEL_8_STATUS = """\
+------+-------------------------------------------------------------------+-------+
| Ran? | Migration                                                         | Batch |
+------+-------------------------------------------------------------------+-------+
| Yes  | 2014_10_12_000000_create_users_table                              | 1     |
| Yes  | 2019_08_19_000000_create_failed_jobs_table                        | 1     |
| Yes  | 2025_07_01_000000_add_passport_country_to_visa_applications_table | 2     |
| No   | 2026_01_01_000000_add_tracking_code                               |       |
+------+-------------------------------------------------------------------+-------+
"""

LARAVEL_10_STATUS = """
  Migration name .............................................. Batch / Status
  2014_10_12_000000_create_users_table ............................... [1] Ran
  2025_07_01_000000_add_passport_country_to_visa_applications_table .. [2] Ran
  2026_01_01_000000_add_tracking_code ................................ Pending
"""


@pytest.mark.parametrize("output", [LARAVEL_8_STATUS, LARAVEL_10_STATUS])
def test_migrate_status_in_either_laravel_format(output: str) -> None:
    rows = schema.parse_migrate_status(output)
    assert rows[0] == schema.MigrationState("2014_10_12_000000_create_users_table", True, 1)
    assert rows[-1] == schema.MigrationState("2026_01_01_000000_add_tracking_code", False, None)
    found = database.MigrationStatus("web1", tuple(rows))
    assert found.pending == ["2026_01_01_000000_add_tracking_code"]
    assert max(found.batches) == 2
    assert found.summary().endswith("(the last, batch 2: 1 migration); 1 pending")
    table = found.format_table()
    assert re.search(r"^2026_01_01_000000_add_tracking_code\s+PENDING\s+-$", table, re.M)
    assert found.to_dict()["batches"]["2"] == [
        "2025_07_01_000000_add_passport_country_to_visa_applications_table"
    ]


def test_migrate_status_ignores_everything_else() -> None:
    assert schema.parse_migrate_status("Migration table not found.\n| Ran? | x | y |\n") == []


def test_db_rollback_counts_the_migrations_of_a_batch_and_later() -> None:
    from bgdeploy.core.errors import OperationFailed
    from bgdeploy.strategies.rollback import database_only

    table = {"a": 1, "b": 1, "c": 2, "d": 3, "e": 3}
    assert database_only.steps_for(table, None, 3) == 2
    assert database_only.steps_for(table, None, 2) == 3
    assert database_only.steps_for(table, 1, None) == 1
    with pytest.raises(
        OperationFailed, match=r"no migration in batch 4 or later \(the last batch is 3"
    ):
        database_only.steps_for(table, None, 4)
    with pytest.raises(OperationFailed, match="records 5 migrations"):
        database_only.steps_for(table, 6, None)
    for step, batch in ((None, None), (1, 1), (0, None), (None, 0)):
        with pytest.raises(ConfigError):
            database_only.steps_for(table, step, batch)
