"""Snapshot and migrate:fresh commands without hosts: names, quoting, the shell they build,
and refusals before any connection."""

from __future__ import annotations

import dataclasses
import runpy
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bgdeploy import commands
from bgdeploy.cli import cli
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import ConfigError, PolicyRefusal
from bgdeploy.fleet import remote
from bgdeploy.oncall import snapshots

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ["x; rm -rf /", "../etc", "../../etc/passwd", ".hidden", "a/b", "$(reboot)", "", "a b"]


def load(*names: str) -> settings_mod.Settings:
    data: dict[str, Any] = {}
    for name in ("all", *names):
        values = runpy.run_path(str(ROOT / "group_data" / f"{name}.py"))
        data.update({k: v for k, v in values.items() if not k.startswith("__")})
    data = {k: v for k, v in data.items() if not callable(v) and k != "CONTAINER_REPOSITORY"}
    return settings_mod.from_data(data, names[0] if names else "prod")


@pytest.fixture
def prod() -> settings_mod.Settings:
    return load("prod")


def inner_script(command: str) -> str:
    """The script of ``sudo -u postgres -H sh -c SCRIPT``."""
    words = shlex.split(command)
    assert words[:5] == ["sudo", "-u", "postgres", "-H", "sh"] and words[5] == "-c"
    return words[6]


def assert_valid_shell(script: str) -> None:
    checked = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_snapshot_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="snapshot name"):
        commands.snapshot_id(name)
    with pytest.raises(ConfigError):
        commands.snapshot_verify("/var/backups/bideshgomon", name)
    with pytest.raises(ConfigError):
        commands.snapshot_restore_scratch("/b", name, 5432, "d_restore", "d", "d_before_restore")


def test_snapshot_names_as_listed_are_accepted() -> None:
    assert commands.snapshot_id("20261128T062805Z-4f1c2e9a0b1c") == "20261128T062805Z-4f1c2e9a0b1c"
    assert commands.snapshot_id("it-base.dump") == "it-base"
    assert commands.snapshot_id("v2.4.0_before") == "v2.4.0_before"


def test_default_name_sorts_with_release_snapshots() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 12, 3, 4, 12, 9, tzinfo=UTC)
    assert snapshots.default_name(moment) == "20261203T041209Z-manual"
    commands.snapshot_id(snapshots.default_name())


def test_verify_checks_sha256_list_and_full_read() -> None:
    command = commands.snapshot_verify("/var/backups/my backups", "it-base")
    script = inner_script(command)
    assert_valid_shell(script)
    assert script.startswith("cd '/var/backups/my backups'")
    assert "sha256sum < it-base.dump" in script and "it-base.dump.sha256" in script
    assert script.index("sha256") < script.index("pg_restore --list") < script.index("/dev/null")
    assert 'echo "bgdeploy-verify: it-base ok' in script


def test_restore_goes_into_a_scratch_database_owned_by_the_app(prod: Any) -> None:
    scratch, before = snapshots.database_names(prod)
    assert (scratch, before) == ("bideshgomon_restore", "bideshgomon_before_restore")
    command = commands.snapshot_restore_scratch(
        prod.backups_dir, "it-base", prod.db_port, scratch, prod.db_user, before
    )
    script = inner_script(command)
    assert_valid_shell(script)
    assert 'CREATE DATABASE "bideshgomon_restore" OWNER "bideshgomon" TEMPLATE template0' in script
    assert "--no-owner --role=bideshgomon --single-transaction --exit-on-error" in script
    assert "-d bideshgomon_restore it-base.dump" in script
    # The live database is never named: only the scratch one and the one kept from before.
    assert '"bideshgomon"' not in script.replace('OWNER "bideshgomon"', "")
    assert script.index('DROP DATABASE IF EXISTS "bideshgomon_before_restore"') < script.index(
        "CREATE DATABASE"
    )


def test_swap_refuses_connections_terminates_then_renames_in_one_transaction() -> None:
    script = inner_script(
        commands.database_swap(5432, "bideshgomon", "bideshgomon_restore", "bideshgomon_b")
    )
    assert_valid_shell(script)
    off = script.index('ALTER DATABASE "bideshgomon" WITH ALLOW_CONNECTIONS false')
    kill = script.index("pg_terminate_backend(pid)")
    rename = script.index("$P -1 -c")
    assert off < kill < rename
    renames = script[rename:].splitlines()[0]
    assert 'RENAME TO "bideshgomon_b"' in renames
    assert '"bideshgomon_restore" RENAME TO "bideshgomon"' in renames
    # On failure the live database takes connections again.
    assert script.index("else") < script.index(
        'ALTER DATABASE "bideshgomon" WITH ALLOW_CONNECTIONS true'
    )


@pytest.mark.parametrize("bad", ['x"; DROP DATABASE y; --', "a b", "../x", ""])
def test_database_names_are_checked(bad: str) -> None:
    with pytest.raises(ConfigError):
        commands.database_swap(5432, bad, "s", "b")
    with pytest.raises(ConfigError):
        commands.drop_database(5432, bad)


def test_too_long_db_name_cannot_get_a_scratch_database(prod: Any) -> None:
    long = dataclasses.replace(prod, db_name="d" * 60)
    with pytest.raises(ConfigError, match="too long"):
        snapshots.database_names(long)


def test_list_builder_and_parser() -> None:
    script = inner_script(commands.snapshot_list("/var/backups/bideshgomon"))
    assert_valid_shell(script)
    output = (
        "bgdeploy-snapshot-list 20261203T041209Z-4f1c2e9a0b1c|1234|2026-12-03T04:12:10Z|yes\n"
        "noise\n"
        "bgdeploy-snapshot-list it-base|99|2026-12-02T01:00:00Z|no\n"
    )
    found = snapshots.parse_list(output)
    assert [s.name for s in found] == ["20261203T041209Z-4f1c2e9a0b1c", "it-base"]
    assert found[0].size == 1234 and found[0].sidecar and not found[1].sidecar
    table = snapshots.format_list(found)
    assert "MISSING" in table.splitlines()[2] and table.splitlines()[0].startswith("snapshot")
    assert snapshots.format_list([]) == "no snapshots"


def test_maintenance_and_fresh_run_artisan_in_the_live_colour(prod: Any) -> None:
    down = commands.maintenance_down(prod)
    assert "/var/www/bideshgomon/current/storage/framework/down" in down
    assert "sudo -u www-data" in down and "php artisan down" in down
    assert down.index("bgdeploy-maintenance: already") < down.index("php artisan down")
    assert "php artisan up" in commands.maintenance_up(prod)
    fresh = commands.migrate_fresh(prod, seed=True)
    assert "php artisan migrate:fresh --force --no-interaction --seed" in fresh
    assert "--seed" not in commands.migrate_fresh(prod)


def test_migrate_fresh_is_refused_for_production() -> None:
    with pytest.raises(PolicyRefusal, match="marked production"):
        snapshots.refuse_production([load("prod")], "prod")
    # Defaults (all.py) say production too: an environment must opt out.
    with pytest.raises(PolicyRefusal):
        snapshots.refuse_production([load()], "new-env")
    snapshots.refuse_production([load("staging"), load("sandbox")], "staging")


@pytest.fixture
def no_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a host was contacted")

    monkeypatch.setattr(remote, "connect", refuse)


@pytest.mark.parametrize(
    "args",
    [
        ["snapshot", "prod", "restore", "x; rm -rf /", "--yes"],
        ["snapshot", "prod", "verify", "../etc"],
        ["snapshot", "prod", "create", "--name", "../../tmp/x"],
        ["snapshot", "nope", "list"],
        ["emergency", "prod", "kill-long-queries", "--older-than", "5d", "--yes"],
    ],
)
def test_bad_input_exits_2_before_any_connection(args: list[str], no_connection: None) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output


def test_fresh_on_production_exits_3_before_any_connection(no_connection: None) -> None:
    result = CliRunner().invoke(cli, ["db", "prod", "fresh", "--seed", "--yes"])
    assert result.exit_code == 3, result.output
    assert "marked production" in result.output


def test_fresh_on_staging_passes_the_policy() -> None:
    environment = snapshots.check_fresh_allowed("staging")
    assert environment.web == ["staging.bideshgomon.com"]
