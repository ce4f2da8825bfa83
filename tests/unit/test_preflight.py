"""The preflight checklist (bgdeploy.checks.preflight): its pure checks, config/features.php read as
text, the checklist's table, JSON and exit codes, and its git commands run for real against a
copy of the sample app's repository. No Docker, no SSH."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgdeploy import cli, commands
from bgdeploy.checks import migrations, preflight
from bgdeploy.checks.preflight import FAIL, PASS, WARN, Check, Checklist, commit
from bgdeploy.core import lock, windows
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import runner
from bgdeploy.sandbox import sampleapp

APP_FEATURES = (sampleapp.APP_DIR / "config" / "features.php").read_text()
TODAY = date(2026, 11, 28)
SHA = "041b4433b72a0465de44f91c36417c7b93620f4a"

NEW_FLAGS = """<?php
// 'commented_out' => ['remove_after' => '1999-01-01'],
return array(
    'visa_new_flow_20250601' => ['enabled' => true, 'remove_after' => '2027-07-01'],
    /* 'also_commented' => [], */
    'payments_v3' => array(
        'enabled' => env('PAYMENTS_V3', false),
        'rollout_percentage' => 5 * 1,
        'description' => "it's => [not] code",
        'user_whitelist' => [1, 2,],
    ),
    "chat_widget" => ['enabled' => false, 'remove_after' => 'after launch'],
    'search_v2' => ['enabled' => false, 'remove_after' => '2027-03-01'],
);
"""

DROP_COLUMN = """<?php
return new class extends Migration
{
    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->dropColumn('passport_country');
        });
    }

    public function down()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->string('passport_country')->nullable();
        });
    }
};
"""

RAW_SQL = """<?php
return new class extends Migration
{
    public function up()
    {
        DB::statement('UPDATE users SET locale = ? WHERE locale IS NULL', ['bn']);
    }
};
"""

ADD_COLUMN = """<?php
return new class extends Migration
{
    public function up()
    {
        Schema::table('users', function (Blueprint $table) {
            $table->string('whatsapp')->nullable();
        });
    }
};
"""


def staging_settings(**changes: object) -> Settings:
    base = next(iter(runner.check_environment("staging").settings.values()))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# config/features.php, read as text
# ---------------------------------


def test_the_sample_apps_flags_are_read() -> None:
    flags = {flag.name: flag for flag in preflight.parse_features(APP_FEATURES)}
    assert list(flags) == ["visa_new_flow_20250601", "document_upload_v2"]
    flow = flags["visa_new_flow_20250601"]
    assert flow.settings["enabled"] is True
    assert flow.settings["rollout_percentage"] == 5
    assert flow.settings["user_whitelist"] == [1, 2]
    assert flow.remove_after == date(2025, 7, 1)
    assert flags["document_upload_v2"].remove_after == date(2025, 8, 15)


def test_comments_strings_array_syntax_and_expressions() -> None:
    flags = {flag.name: flag for flag in preflight.parse_features(NEW_FLAGS)}
    assert list(flags) == ["visa_new_flow_20250601", "payments_v3", "chat_widget", "search_v2"]
    payments = flags["payments_v3"].settings
    assert payments["enabled"] == preflight.Expression("env ( 'PAYMENTS_V3' , false )")
    assert payments["rollout_percentage"] == preflight.Expression("5 * 1")
    assert payments["description"] == "it's => [not] code"
    assert payments["user_whitelist"] == [1, 2]
    assert flags["payments_v3"].remove_after is None
    assert flags["chat_widget"].remove_after is None  # 'after launch' is not a date


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("<?php\n$x = 1;\n", "no 'return [...]'"),
        ("<?php\nreturn config('x');\n", "does not return an array of flags"),
        ("<?php\nreturn ['a' => ['enabled' => true]", "ends inside"),
        ("<?php\nreturn ['a' => true];\n", "is not 'name' => [settings]"),
    ],
)
def test_files_that_are_not_a_flag_array_are_errors(source: str, says: str) -> None:
    with pytest.raises(preflight.FeaturesError, match=re.escape(says)):
        preflight.parse_features(source)


def test_flags_past_their_removal_date_warn() -> None:
    check = preflight.check_flags(APP_FEATURES, APP_FEATURES, TODAY)
    assert check.status == WARN
    assert check.detail.splitlines() == [
        "visa_new_flow_20250601: remove_after 2025-07-01 passed 515 days ago: remove the flag",
        "document_upload_v2: remove_after 2025-08-15 passed 470 days ago: remove the flag",
    ]


def test_new_flags_without_a_removal_date_warn() -> None:
    check = preflight.check_flags(NEW_FLAGS, APP_FEATURES, TODAY)
    assert check.status == WARN
    assert check.detail.splitlines() == [
        "payments_v3: new flag has no remove_after (YYYY-MM-DD)",
        "chat_widget: new flag remove_after 'after launch' is not a date (YYYY-MM-DD)",
    ]
    assert check.items == ("chat_widget", "payments_v3", "search_v2")


def test_flags_with_dates_ahead_pass() -> None:
    assert preflight.check_flags(APP_FEATURES, APP_FEATURES, date(2025, 6, 30)).status == PASS
    check = preflight.check_flags(None, APP_FEATURES, TODAY)
    assert (check.status, check.detail) == (PASS, "no config/features.php in this release")
    broken = preflight.check_flags("<?php return [", APP_FEATURES, TODAY)
    assert broken.status == WARN and "not read" in broken.detail


# The checks a deploy shares
# --------------------------


def test_lock_free_or_held_naming_the_holder() -> None:
    assert preflight.check_lock("web1", None, "prod") == Check("lock", PASS, "free", "web1")
    holder = lock.LockInfo("carol@old-laptop", 1, "old-laptop", "v1", "2026-01-01T00:00:00Z", "r1")
    check = preflight.check_lock("web2", holder, "prod")
    assert check.failed
    assert check.detail.startswith("the deploy lock on web2 is held by carol@old-laptop")
    assert "`bgdeploy unlock prod`" in check.detail


def test_ref_resolves_to_one_commit_or_fails() -> None:
    other = "9" * 40
    sha, check = preflight.resolve_ref("v2", f"tag {SHA}\n", "/srv/app.git", "web1")
    assert sha == SHA and check.status == PASS and check.items == (SHA,)
    sha, check = preflight.resolve_ref("nope", "", "/srv/app.git")
    assert sha is None and check.failed
    assert check.detail == "ref 'nope' is not a branch, tag or commit of /srv/app.git"
    sha, check = preflight.resolve_ref("v2", f"tag {SHA}\nbranch {other}\n", "/srv/app.git")
    assert sha is None and "names more than one commit" in check.detail


def test_on_main() -> None:
    assert preflight.check_on_main("yes\n", SHA).status == PASS
    assert preflight.check_on_main("no\n", SHA).status == WARN
    assert "no branch main" in preflight.check_on_main("missing\n", SHA).detail


def test_pending_migrations_and_edited_ones() -> None:
    check = preflight.check_migrations(["2026_01_01_000000_add_x"])
    assert check.status == PASS and check.items == ("2026_01_01_000000_add_x",)
    assert check.detail.startswith("1 pending: 2026_01_01_000000_add_x")
    assert preflight.check_migrations([]).detail == "none pending"
    changed = preflight.parse_name_status(
        "A\tdatabase/migrations/2026_01_01_000000_add_x.php\n"
        "M\tdatabase/migrations/2025_01_01_000000_create_users.php\n"
    )
    check = preflight.check_migrations(["2026_01_01_000000_add_x"], changed)
    assert check.status == WARN
    assert "2025_01_01_000000_create_users.php changed since the live release" in check.detail


def scans(**sources: str) -> list[migrations.MigrationScan]:
    return [migrations.scan_source(text, f"{name}.php") for name, text in sources.items()]


def test_destructive_fails_in_place_unless_allowed_and_always_for_blue_green() -> None:
    found = scans(drop=DROP_COLUMN, add=ADD_COLUMN)
    check = preflight.check_destructive(found)
    assert check.failed and check.items == ("drop.php",)
    assert "drop.php:7 $table->dropColumn('passport_country') — destructive" in check.detail
    assert "Deploy with --allow-destructive" in check.detail
    allowed = preflight.check_destructive(found, allow_destructive=True)
    assert allowed.status == WARN and "allowed by --allow-destructive" in allowed.detail
    blue_green = preflight.check_destructive(found, True, "blue-green")
    assert blue_green.failed and blue_green.detail.startswith("blue-green refuses")


def test_reviewed_migrations_pass_and_raw_sql_warns() -> None:
    hatch = DROP_COLUMN.replace(
        "return new",
        "// bgdeploy: allow-destructive unused since v3, snapshot verified\nreturn new",
    )
    check = preflight.check_destructive(scans(drop=hatch))
    assert check.status == PASS and "unused since v3" in check.detail
    assert preflight.check_destructive(scans(sql=RAW_SQL)).status == WARN
    assert preflight.check_destructive(scans(add=ADD_COLUMN)).status == PASS
    assert preflight.check_destructive([]).detail == "no pending migrations"


def test_host_checks_secrets_disk_and_local_changes() -> None:
    settings = staging_settings(min_free_disk_mb=1024)
    facts = preflight.parse_facts(
        "colour=blue\napp_key=yes\nmissing_secret=REDIS_PASSWORD\nfree_kb=524288\n"
        "dirty= M routes/web.php\nfetch=ok\n"
    )
    found = {c.name: c for c in preflight.host_checks("web1", facts, settings, "/srv/blue")}
    assert found["secrets"].failed and found["secrets"].items == ("REDIS_PASSWORD",)
    assert found["secrets"].detail.endswith("shared/.env has no REDIS_PASSWORD")
    assert found["disk"].detail == (
        f"only 512 MB free under {settings.app_root} (min_free_disk_mb = 1024)"
    )
    assert found["clean checkout"].failed and "M routes/web.php" in found["clean checkout"].detail
    good = preflight.parse_facts("app_key=yes\nfree_kb=4194304\ntarget=present\n")
    checks = preflight.host_checks("web1", good, settings, "/srv/blue", SHA)
    assert [c.status for c in checks] == [PASS, PASS, PASS]
    no_key = preflight.parse_facts("app_key=no\nfree_kb=4194304\ntarget=missing\n")
    checks = preflight.host_checks("web1", no_key, settings, "/srv/blue", SHA)
    assert [c.detail for c in checks if c.failed] == [
        f"{settings.app_root}/shared/.env has no APP_KEY",
        f"commit {SHA} is not in the repository fetched here",
    ]


def test_snapshot_space_fails_only_when_a_snapshot_is_due() -> None:
    roomy = {"need_kb": "2048", "free_kb": "8388608", "db_kb": "7000"}
    tight = {"need_kb": "2048", "free_kb": "1000", "db_kb": "7000"}
    assert preflight.check_snapshot_space(roomy, "/var/backups/x", True).status == PASS
    check = preflight.check_snapshot_space(tight, "/var/backups/x", True, "db")
    assert check.failed and "1000 KB free in /var/backups/x, 2 MB needed" in check.detail
    assert preflight.check_snapshot_space(tight, "/var/backups/x", False).status == WARN
    assert preflight.check_snapshot_space({}, "/var/backups/x", False).failed


def test_window_check_follows_the_policy() -> None:
    prod = runner.check_environment("prod")
    policy = prod.settings[prod.web[0]].window
    closed = windows.decide(policy, datetime(2026, 12, 16, 5, 0, tzinfo=UTC))  # Victory Day
    check = preflight.check_window(closed)
    assert check.failed and "blackout: public holiday: Victory Day" in check.detail
    assert "--emergency --severity P0..P3 --reason" in check.detail
    opened = windows.decide(policy, datetime(2026, 12, 15, 5, 0, tzinfo=UTC))  # Tue 11:00
    assert preflight.check_window(opened).status == PASS


# The checklist
# -------------


def test_checklist_table_json_and_exit_codes() -> None:
    checklist = Checklist("prod", "v2", "in-place", SHA)
    checklist.checks = [
        Check("ref", PASS, f"tag v2 is commit {SHA}", "web1"),
        Check("feature flags", WARN, "a: passed\nb: passed", "web1"),
    ]
    assert checklist.exit_code() == 0 and checklist.status == WARN
    table = checklist.format_table().splitlines()
    assert table[0] == "preflight of v2 (041b4433b72a) to prod, in-place"
    assert table[1].split() == ["check", "result", "host", "detail"]
    assert table[3].split()[:3] == ["feature", "flags", "WARN"]
    assert table[4].strip() == "b: passed"
    assert table[-1] == "0 failed, 1 warning: ready to deploy (exit 0)"
    checklist.checks.append(Check("lock", FAIL, "held", "web2"))
    assert checklist.exit_code() == 3
    assert checklist.format_table().endswith(
        "1 failed, 1 warning: a deploy would be refused or fail (exit 3)"
    )
    data = json.loads(checklist.to_json())
    assert data["status"] == "fail" and data["exit_code"] == 3
    assert data["checks"][2] == {
        "check": "lock", "status": "fail", "host": "web2", "detail": "held", "items": [],
    }  # fmt: skip
    checklist.unreachable.append("web2")
    assert checklist.exit_code() == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["preflight", "prod", "--ref", "main; rm -rf /"], "not allowed in a ref"),
        (["preflight", "prod", "--ref", "$(touch /tmp/pwned)"], "not allowed in a ref"),
        (["preflight", "prod", "--ref", "--upload-pack=x"], "not allowed"),
        (["preflight", "nowhere", "--ref", "v2"], "unknown environment"),
    ],
)
def test_hostile_input_exits_2_before_any_connection(args: list[str], says: str) -> None:
    result = CliRunner().invoke(cli.cli, args)
    assert result.exit_code == 2, result.output
    assert says in result.output


def test_check_request_reads_no_host() -> None:
    request, environment = preflight.check_request("prod", "v2.4.0", "blue-green")
    assert (request.ref, request.strategy) == ("v2.4.0", "blue-green")
    assert environment.web
    with pytest.raises(ConfigError, match=r"'\.\.'"):
        preflight.check_request("prod", "v2..v1")


# Its git commands, for real
# --------------------------


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def sh(command: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["sh", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    return done.stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fetched clone of the sample app's repository, with a commit off main."""
    base = tmp_path_factory.mktemp("preflight")
    bare = base / "app.git"
    shas = sampleapp.build_repository(bare)
    shas["off-main"] = sampleapp.add_commit(
        bare,
        {
            "config/features.php": NEW_FLAGS,
            "database/migrations/2026_01_01_000000_drop_passport_country.php": DROP_COLUMN,
            "database/migrations/2025_07_01_000000_add_passport_country_to_visa_applications"
            "_table.php": ADD_COLUMN,
        },
        "Off main",
        tag="off-main",
        parent="v2",
    )
    work = base / "blue"
    work.mkdir()
    sh(f"{commands.git_ensure_repo(str(bare))} && {commands.git_fetch()}", work)
    return work, shas


def test_ancestry_of_main(clone: tuple[Path, dict[str, str]]) -> None:
    work, shas = clone
    answer = sh(commands.git_is_ancestor(shas["v1"], "main"), work)
    assert preflight.check_on_main(answer, shas["v1"]).status == PASS
    answer = sh(commands.git_is_ancestor(shas["off-main"], "main"), work)
    assert answer.strip() == "no"
    assert sh(commands.git_is_ancestor(shas["v1"], "release-2026"), work).strip() == "missing"


def test_features_file_and_migration_changes_between_commits(
    clone: tuple[Path, dict[str, str]],
) -> None:
    work, shas = clone
    out = sh(commands.show_optional_file(shas["off-main"], "config/features.php"), work)
    assert commit._split_files(out) == {"config/features.php": NEW_FLAGS}
    out = sh(commands.show_optional_file(shas["v1"], "config/nothing.php"), work)
    assert commit._split_files(out) == {"config/nothing.php": None}
    changed = preflight.parse_name_status(
        sh(commands.git_changed_files(shas["v2"], shas["off-main"], "database/migrations"), work)
    )
    assert changed == [
        ("M", "database/migrations/2025_07_01_000000_add_passport_country_to_visa_applications"
              "_table.php"),
        ("A", "database/migrations/2026_01_01_000000_drop_passport_country.php"),
    ]  # fmt: skip
    check = preflight.check_migrations(["2026_01_01_000000_drop_passport_country"], changed)
    assert check.status == WARN
    assert "add_passport_country_to_visa_applications_table.php changed" in check.detail


@pytest.mark.parametrize(
    "bad",
    [
        lambda: commands.show_optional_file(SHA, "../etc/passwd"),
        lambda: commands.show_optional_file(SHA, "config/x.php; id"),
        lambda: commands.git_changed_files(SHA, "HEAD; id", "database/migrations"),
        lambda: commands.git_is_ancestor(SHA, "main; id"),
    ],
)
def test_builders_refuse_what_is_not_a_path_or_sha(bad: object) -> None:
    with pytest.raises(ConfigError):
        bad()  # type: ignore[operator]
