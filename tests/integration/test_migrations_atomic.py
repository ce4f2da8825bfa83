"""Migrations are all or nothing, per deploy (bgdeploy.checks.schema, release.undo_failed_migrate).

Releases written unlike the sample app's own: two or three new migrations of which the last
fails, in place and blue-green; a migration that is not transactional and fails half-way.
Each test starts from the session fleet serving v2 and adds its own commit on top of v2, with
migration names of its own (no test depends on another's leftovers).
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import httpx
import pytest

from bgdeploy import commands, sandbox
from bgdeploy.checks import schema

from .conftest import (
    LOCK,
    V2_MIGRATION,
    commit,
    journal,
    psql,
    run,
    sandbox_run_env,
    sh,
    unique_name,
)

WEB = ("web1", "web2")

ADD_COLUMN = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->string('NEWCOL')->nullable();
        });
    }

    public function down()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->dropColumn('NEWCOL');
        });
    }
};
"""

CREATE_TABLE = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::create('TABLE', function (Blueprint $table) {
            $table->id();
            $table->string('note');
            $table->timestamps();
        });
    }

    public function down()
    {
        Schema::dropIfExists('TABLE');
    }
};
"""

INDEX_ON_MISSING_TABLE = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::table('no_such_table', function (Blueprint $table) {
            $table->index('passport_number');
        });
    }

    public function down()
    {
    }
};
"""

NOT_TRANSACTIONAL = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Support\\Facades\\DB;

return new class extends Migration
{
    public $withinTransaction = false;

    public function up()
    {
        DB::statement('ALTER TABLE visa_applications ADD COLUMN NEWCOL varchar(40)');
        DB::statement('CREATE INDEX ON no_such_table (passport_number)');
    }

    public function down()
    {
    }
};
"""


# Helpers
# -------


def deploy(state: sandbox.SandboxState, *args: str) -> tuple[int, dict[str, Any], str]:
    """``bgdeploy deploy sandbox ARGS --json``: exit code, JSON report, stderr."""
    proc = run(["bgdeploy", "deploy", "sandbox", *args, "--json"], env=sandbox_run_env(state))
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON report\n{proc.stdout}\n{proc.stderr[-4000:]}") from None
    return proc.returncode, report, proc.stderr


def fingerprint(state: sandbox.SandboxState) -> schema.Fingerprint:
    """The database's fingerprint now, computed on the db host by the tool's own command."""
    code, out = sh(state, "db", commands.schema_fingerprint(5432, "bideshgomon"))
    found = schema.parse_fingerprint(out)
    assert code == 0 and found is not None, out
    return found


def columns(state: sandbox.SandboxState) -> str:
    """Every column of every table of the public schema, with its type and nullability."""
    return psql(
        state,
        "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable "
        "FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1",
    )


def migrations_table(state: sandbox.SandboxState) -> str:
    return psql(state, "SELECT migration || ' ' || batch FROM migrations ORDER BY migration")


def database(state: sandbox.SandboxState) -> tuple[str, str, schema.Fingerprint]:
    return columns(state), migrations_table(state), fingerprint(state)


def served(state: sandbox.SandboxState) -> dict[str, str]:
    """Each web host's X-Release through its public port (200 expected)."""
    found = {}
    for web in state.group("web"):
        response = httpx.get(f"http://127.0.0.1:{web.ports['http']}/api/health", timeout=15)
        assert response.status_code == 200, (web.name, response.status_code)
        found[web.name] = response.headers.get("X-Release", "")
    return found


def release_with(state: sandbox.SandboxState, count: int) -> tuple[str, list[str]]:
    """A commit on v2 with ``count`` new migrations, the last one failing: (tag, names)."""
    stamp = unique_name("m")[2:]
    column = f"tracking_{stamp}"
    names = [f"2026_01_01_00000{i}_bgdeploy_{stamp}_{i}" for i in range(count)]
    sources = [ADD_COLUMN.replace("NEWCOL", column)]
    if count == 3:
        sources.append(CREATE_TABLE.replace("TABLE", f"audit_{stamp}"))
    sources.append(INDEX_ON_MISSING_TABLE)
    files = {f"database/migrations/{n}.php": src for n, src in zip(names, sources, strict=True)}
    tag, _sha = commit(state, files, f"{count} migrations, the last one failing", prefix="mig")
    return tag, names


@pytest.fixture
def at_v2(provisioned: sandbox.SandboxState) -> sandbox.SandboxState:
    """The fleet serving v2 in place, on every host."""
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v2"], env=sandbox_run_env(provisioned))
    assert proc.returncode == 0, proc.stderr[-6000:]
    return provisioned


# Tests
# -----


@pytest.mark.parametrize(
    ("count", "strategy"),
    [(2, "in-place"), (3, "in-place"), (2, "blue-green"), (3, "blue-green")],
)
def test_failed_migrate_undoes_the_whole_run(
    at_v2: sandbox.SandboxState, count: int, strategy: str
) -> None:
    state = at_v2
    tag, names = release_with(state, count)
    before = database(state)
    live = served(state)
    count_before = {name: len(journal(state, name)) for name in WEB}

    code, report, err = deploy(state, "--ref", tag, "--strategy", strategy)

    assert code == 1, err[-4000:]
    # The database is exactly as before: every column, the migrations table, the fingerprint.
    assert database(state) == before
    # The migrations before the failing one were applied, then undone by this run.
    assert report["database"]["verified"] is True
    assert report["database"]["undone"] == list(reversed(names[:-1]))
    assert report["database"]["before"] == report["database"]["after"]
    assert report["database"]["before"]["digest"] == before[2].digest
    assert schema.VERIFIED in report["error"]
    assert schema.VERIFIED in report["summary"]
    # The live release did not change, and nobody holds the lock.
    assert served(state) == live
    for name in WEB:
        assert sh(state, name, f"test -e {LOCK}")[0] != 0, f"lock left on {name}"
    # The journal says it, on the host that migrated.
    lines = journal(state, "web1")[count_before["web1"] :]
    migrate = next(line for line in lines if line["event"] == "migrate")
    assert migrate["result"] == "failed"
    assert migrate["details"]["database"]["verified"] is True
    assert schema.VERIFIED in migrate["message"]
    fail = next(line for line in lines if line["event"] == "deploy_fail")
    assert schema.VERIFIED in fail["message"]


def test_non_transactional_failure_is_reported_and_the_snapshot_restores_it(
    at_v2: sandbox.SandboxState,
) -> None:
    state = at_v2
    stamp = unique_name("n")[2:]
    column = f"half_{stamp}"
    name = f"2026_02_01_000000_bgdeploy_{stamp}_not_transactional"
    tag, _ = commit(
        state,
        {f"database/migrations/{name}.php": NOT_TRANSACTIONAL.replace("NEWCOL", column)},
        "A migration outside a transaction, failing at its second statement",
        prefix="mig",
    )
    before = database(state)

    code, report, err = deploy(state, "--ref", tag)

    assert code == 1, err[-4000:]
    # The first statement stayed: the tool says so rather than "rolled back".
    assert column in columns(state)
    assert report["database"]["verified"] is False
    snapshot = report["snapshot"]["name"]
    restore = f"bgdeploy snapshot sandbox restore {snapshot}"
    for text in (report["error"], report["summary"]):
        assert schema.NOT_AS_BEFORE in text and schema.VERIFIED not in text
        assert restore in text
    assert any(column in line for line in report["database"]["diff"])
    web1 = next(h for h in report["hosts"] if h["host"] == "web1")
    assert restore in web1["message"]
    migrate = next(line for line in reversed(journal(state, "web1")) if line["event"] == "migrate")
    assert migrate["details"]["database"]["verified"] is False

    # The command the report printed brings the database back to its fingerprint.
    proc = run(
        ["bgdeploy", "snapshot", "sandbox", "restore", snapshot, "--yes"],
        env=sandbox_run_env(state),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert database(state) == before


def test_rollback_migrations_reports_batches_and_fingerprints(
    at_v2: sandbox.SandboxState,
) -> None:
    state = at_v2
    stamp = unique_name("r")[2:]
    name = f"2026_03_01_000000_bgdeploy_{stamp}_add_column"
    tag, _ = commit(
        state,
        {f"database/migrations/{name}.php": ADD_COLUMN.replace("NEWCOL", f"col_{stamp}")},
        "One good migration",
        prefix="mig",
    )
    before = database(state)
    code, _report, err = deploy(state, "--ref", tag)
    assert code == 0, err[-4000:]
    batch = psql(state, f"SELECT batch FROM migrations WHERE migration = '{name}'")

    proc: subprocess.CompletedProcess[str] = run(
        ["bgdeploy", "rollback", "sandbox", "--to", "v2", "--migrations", "1", "--json"],
        env=sandbox_run_env(state),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert result["database"]["undone"] == [name]
    assert result["database"]["batches"] == [int(batch)]
    assert result["database"]["after"]["digest"] == before[2].digest
    assert result["database"]["before"]["digest"] != before[2].digest
    assert any(f"batch {batch}" in note and name in note for note in result["notes"])
    assert database(state) == before


def test_db_status_shows_each_migration_ran_or_pending(at_v2: sandbox.SandboxState) -> None:
    state = at_v2
    env = sandbox_run_env(state)
    proc = run(["bgdeploy", "db", "sandbox", "status", "--json"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["host"] == "web1" and report["pending"] == []
    shown = {m["name"]: m for m in report["migrations"]}
    table = dict(line.rsplit(" ", 1) for line in migrations_table(state).splitlines())
    assert shown[V2_MIGRATION]["ran"] is True
    for name, migration in shown.items():  # the live code's migrations, as the table has them
        assert migration["batch"] == int(table[name]), name
    # v2's migration undone behind bgdeploy's back: pending, in the table the operator reads.
    psql(state, "ALTER TABLE visa_applications DROP COLUMN passport_country")
    psql(state, f"DELETE FROM migrations WHERE migration = '{V2_MIGRATION}'")
    live = "cd /var/www/bideshgomon/current && sudo -u www-data php artisan"
    try:
        proc = run(["bgdeploy", "db", "sandbox", "status"], env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(rf"^{V2_MIGRATION}\s+PENDING\s+-$", proc.stdout, re.M), proc.stdout
        assert proc.stdout.rstrip().endswith("; 1 pending")
    finally:
        code, out = sh(state, "web1", f"{live} migrate --force")
        assert code == 0, out


def test_db_rollback_by_batch_leaves_the_code_and_reports_what_it_undid(
    at_v2: sandbox.SandboxState,
) -> None:
    state = at_v2
    env = sandbox_run_env(state)
    batch = psql(state, f"SELECT batch FROM migrations WHERE migration = '{V2_MIGRATION}'")
    release = served(state)
    proc = run(
        ["bgdeploy", "db", "sandbox", "rollback", "--batch", batch, "--yes", "--json"], env=env
    )
    live = "cd /var/www/bideshgomon/current && sudo -u www-data php artisan"
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = json.loads(proc.stdout)
        assert report["strategy"] == "database only"
        assert V2_MIGRATION in report["database"]["undone"]
        assert all(b >= int(batch) for b in report["database"]["batches"])
        assert report["snapshot"]["host"] == "db" and report["snapshot"]["sha256"]
        assert report["database"]["before"]["digest"] != report["database"]["after"]["digest"]
        assert "passport_country" not in columns(state)
        assert served(state) == release  # the code stays
        status = json.loads(run(["bgdeploy", "db", "sandbox", "status", "--json"], env=env).stdout)
        assert V2_MIGRATION in status["pending"]
        entry = journal(state, "web1")[-1]
        assert (entry["event"], entry["details"]["action"]) == ("migrate", "rollback")
        assert V2_MIGRATION in entry["details"]["undone"]
        # Nothing in that batch any more: said, nothing run.
        again = run(["bgdeploy", "db", "sandbox", "rollback", "--batch", "999", "--yes"], env=env)
        assert again.returncode == 1 and "no migration in batch 999 or later" in again.stderr
    finally:
        code, out = sh(state, "web1", f"{live} migrate --force")
        assert code == 0, out
