"""Choosing what `bgdeploy rollback` goes back to, and checking its input, without hosts."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from bgdeploy import commands
from bgdeploy.cli import cli
from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.journal import JournalEntry, format_history
from bgdeploy.fleet.colours import HostColours, other
from bgdeploy.strategies import rollback
from bgdeploy.strategies.rollback import policy, record

V1, V2, V3, V4 = ("1" * 40, "2" * 40, "3" * 40, "4" * 40)
START = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


def history(*events: tuple[str, str, str | None, str | None, dict[str, str] | None]) -> list:
    """Entries a minute apart: (event, result, sha, sha_before, details)."""
    return [
        JournalEntry(
            event=event,
            at=START + timedelta(minutes=number),
            host="web1",
            result=result,
            sha=sha,
            sha_before=before,
            details=details or {},
        )
        for number, (event, result, sha, before, details) in enumerate(events)
    ]


def deployed(sha: str, before: str | None = None) -> tuple:
    return ("deploy_finish", "ok", sha, before, None)


def rolled_back(to: str, left: str) -> tuple:
    return ("rollback", "ok", to, left, {"bad_release": left})


def test_previous_release_is_the_target() -> None:
    entries = history(deployed(V1), deployed(V2, V1), deployed(V3, V2))
    assert policy.select_target(entries, {"web1": V3, "web2": V3}) == V2


def test_release_left_by_a_rollback_is_never_picked_again() -> None:
    entries = history(deployed(V1), deployed(V2, V1), rolled_back(V1, V2))
    assert policy.bad_releases(entries) == {V2}
    with pytest.raises(OperationFailed, match="no good release"):
        policy.select_target(entries, {"web1": V1, "web2": V1})


def test_bad_releases_are_skipped_going_back() -> None:
    entries = history(
        deployed(V1),
        deployed(V2, V1),
        ("deploy_fail", "rolled_back", V3, V2, None),  # rolled back automatically
        deployed(V4, V2),
    )
    assert policy.bad_releases(entries) == {V3}
    assert policy.select_target(entries, {"web1": V4}) == V2
    entries = history(deployed(V1), deployed(V2, V1), deployed(V3, V2), rolled_back(V2, V3))
    # From V2 (after V3 was left): V3 is bad, V2 is live, so V1.
    assert policy.select_target(entries, {"web1": V2}) == V1


def test_failed_and_unchanged_deploys_never_count_as_live() -> None:
    entries = history(
        deployed(V1),
        ("deploy_fail", "failed", V2, V1, None),
        ("deploy_finish", "skipped", V1, V1, None),
        deployed(V3, V1),
    )
    assert policy.live_releases(entries) == [V1, V3]
    assert policy.select_target(entries, {"web1": V3}) == V1


def test_deploying_a_bad_release_again_clears_the_mark() -> None:
    entries = history(deployed(V1), deployed(V2, V1), rolled_back(V1, V2), deployed(V2, V1))
    assert policy.bad_releases(entries) == set()
    assert policy.select_target(entries, {"web1": V2}) == V1


def test_a_rollback_that_missed_a_host_is_finished() -> None:
    entries = history(deployed(V1), deployed(V2, V1), rolled_back(V1, V2))
    # web2 was down during the rollback: it still serves the release marked bad.
    assert policy.select_target(entries, {"web1": V1, "web2": V2}) == V1


def test_switches_count_as_releases_that_went_live() -> None:
    entries = history(
        deployed(V1), ("switch", "ok", V2, V1, None), ("switch", "failed", V3, V2, None)
    )
    assert policy.select_target(entries, {"web1": V2}) == V1


def test_empty_journal_has_no_target() -> None:
    with pytest.raises(OperationFailed):
        policy.select_target([], {"web1": V1})


def colours(name: str, live: str, heads: dict[str, str], built: dict[str, str]) -> HostColours:
    facts = HostColours(name, current=live, live=live, idle=other(live))
    facts.heads, facts.built = dict(heads), dict(built)
    return facts


def test_switch_back_only_when_every_host_holds_a_verified_other_colour() -> None:
    ready = {"blue": V2, "green": V1}
    fleet = {n: colours(n, "blue", ready, ready) for n in ("web1", "web2")}
    assert policy.switch_back_colour(fleet) == "green"
    assert policy.switch_back_colour(fleet, V1) == "green"
    assert policy.switch_back_colour(fleet, V3) is None  # --to another release: in place
    fleet["web2"] = colours("web2", "blue", ready, {"blue": V2})  # green unmarked (left)
    assert policy.switch_back_colour(fleet) is None
    same = {"blue": V2, "green": V2}
    assert policy.switch_back_colour({"web1": colours("web1", "blue", same, same)}) is None
    empty = {"web1": colours("web1", "blue", {"blue": V2}, {"blue": V2})}  # in-place fleet
    assert policy.switch_back_colour(empty) is None
    mixed = {
        "web1": colours("web1", "blue", ready, ready),
        "web2": colours("web2", "green", ready, ready),
    }
    assert policy.switch_back_colour(mixed) is None


def test_resolved_commits_are_read_from_git_resolve_output() -> None:
    assert policy.parse_resolved(f"tag {V1}\nbranch {V1}\n") == {V1}
    assert policy.parse_resolved(f"tag {V1}\nbranch {V2}\nnoise\n") == {V1, V2}
    assert policy.parse_resolved("fatal: bad revision\n") == set()


@pytest.mark.parametrize("to", ["v1; rm -rf /", "--upload-pack=x", "$(id)", "v1..v2", "a b"])
def test_hostile_to_is_refused_before_anything(to: str) -> None:
    with pytest.raises(ConfigError):
        rollback.check_request("sandbox", to=to)
    result = CliRunner().invoke(cli, ["rollback", "sandbox", "--to", to])
    assert result.exit_code == 2, result.output


@pytest.mark.parametrize("steps", [0, -1, 101])
def test_migration_steps_out_of_range_are_refused(steps: int) -> None:
    with pytest.raises(ConfigError, match="--migrations"):
        rollback.check_request("sandbox", migrations=steps)
    with pytest.raises(ConfigError):
        commands.migrate_rollback(steps)


def test_migrate_rollback_command() -> None:
    assert commands.migrate_rollback(2) == (
        "COLUMNS=1000 php artisan migrate:rollback --step=2 --force --no-interaction"
    )


def test_journal_line_marks_the_release_left_as_bad() -> None:
    request = rollback.RollbackRequest("sandbox", environment=None, reason="v2 broke logins")  # type: ignore[arg-type]
    entry = record.journal_entry(request, "web1", V1, V2, "ok", "in place", colour="blue")
    assert (entry.event, entry.sha, entry.sha_before, entry.result) == ("rollback", V1, V2, "ok")
    assert entry.details["bad_release"] == V2 and entry.reason == "v2 broke logins"
    assert policy.bad_releases([entry]) == {V2}


def test_rolling_back_to_a_bad_release_clears_its_mark() -> None:
    entries = history(deployed(V1), deployed(V2, V1), rolled_back(V1, V2), rolled_back(V2, V1))
    assert policy.bad_releases(entries) == {V1}


def test_history_table_shows_the_release_left_as_bad() -> None:
    request = rollback.RollbackRequest("sandbox", environment=None, reason="logins broken")  # type: ignore[arg-type]
    entry = record.journal_entry(request, "web1", V1, V2, "ok", "in place", colour="blue")
    assert "logins broken (left 2222222: bad)" in format_history([entry])


def test_to_is_resolved_then_fetched_when_unknown(tmp_path: Path) -> None:
    """The resolve command against a real repository: a tag found, an unknown ref empty."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    subprocess.run([*git, "tag", "v1"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    found = subprocess.run(
        ["sh", "-c", commands.git_resolve_or_fetch("v1")], cwd=repo, capture_output=True, text=True
    )
    assert policy.parse_resolved(found.stdout) == {sha}
    missing = subprocess.run(
        ["sh", "-c", commands.git_resolve_or_fetch("v9")], cwd=repo, capture_output=True, text=True
    )
    assert policy.parse_resolved(missing.stdout) == set()


def test_a_host_checked_out_but_not_built_is_rolled_back_again() -> None:
    done = colours("web1", "blue", {"blue": V1}, {"blue": V1})
    half = colours("web2", "blue", {"blue": V1}, {"blue": V2})  # interrupted after checkout
    assert policy.built_at(done, V1) and not policy.built_at(half, V1)


def test_a_missing_commit_is_fetched_a_present_one_is_not(tmp_path: Path) -> None:
    repo = tmp_path / "repo"  # no origin: a fetch would fail
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    present = subprocess.run(["sh", "-c", commands.git_fetch_missing(sha)], cwd=repo)
    assert present.returncode == 0
    missing = subprocess.run(
        ["sh", "-c", commands.git_fetch_missing("f" * 40)], cwd=repo, capture_output=True
    )
    assert missing.returncode != 0 and b"origin" in missing.stderr
    with pytest.raises(ConfigError):
        commands.git_fetch_missing("v1; reboot")


def test_a_recorded_process_group_is_stopped(tmp_path: Path) -> None:
    """record_group / stop_group against real processes: a shell leading its own group."""
    path = str(tmp_path / "group")
    step = commands.join(commands.record_group(path), "sleep 30 & sleep 30")
    running = subprocess.Popen(["setsid", "sh", "-c", step])
    try:
        for _ in range(50):
            if Path(path).exists() and Path(path).read_text().strip():
                break
            time.sleep(0.1)
        subprocess.run(["sh", "-c", commands.stop_group(path)], check=True)
        assert running.wait(timeout=10) != 0  # terminated, with its children
        assert not Path(path).exists()
    finally:
        running.kill()
