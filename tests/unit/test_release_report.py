"""The release's per-host record: table, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bgdeploy.core.release_report import (
    HostOutcome,
    ReleaseReport,
    StepResult,
    format_table,
)

V1 = "1f98e191ef80eff6aa8dca7f612f6b4142c7ed21"
V2 = "c9112b4774ca8893964aff1455de1af573d2b910"


def report(*results: str, refusal: dict[str, str] | None = None) -> ReleaseReport:
    made = ReleaseReport(env="prod", ref="v2", run="r1", sha=V2, refusal=refusal)
    for number, result in enumerate(results, start=1):
        outcome = made.host(f"web{number}", ["web"])
        outcome.result = result
        outcome.sha_before, outcome.sha_after = V1, V2 if result == "ok" else V1
        outcome.seconds = 12.34
        outcome.steps = [StepResult("composer install", 3.2)]
    made.host("db", ["db"]).result = "ok"
    return made


@pytest.mark.parametrize(
    ("results", "refusal", "code"),
    [
        (("ok", "ok"), None, 0),
        (("unchanged", "unchanged"), None, 0),
        (("ok", "unchanged"), None, 0),
        (("ok", "rolled_back"), None, 1),
        (("failed", "failed"), None, 1),
        (("ok", "skipped"), None, 1),
        (("interrupted", "ok"), None, 1),
        (("pending", "pending"), {"kind": "lock", "message": "held"}, 3),
        (("pending", "pending"), {"kind": "window", "message": "closed"}, 3),
        (("pending", "pending"), {"kind": "destructive", "message": "drops"}, 3),
        (("pending", "pending"), {"kind": "bad_ref", "message": "no such ref"}, 2),
        (("pending", "pending"), {"kind": "config", "message": "bad value"}, 2),
        (("pending", "pending"), {"kind": "error", "message": "fetch failed"}, 1),
    ],
)
def test_exit_codes(results: tuple[str, ...], refusal: dict[str, str] | None, code: int) -> None:
    assert report(*results, refusal=refusal).exit_code() == code


def test_table_has_host_shas_result_duration_and_note() -> None:
    made = report("ok", "rolled_back")
    made.hosts["web2"].failed_step = "verify health"
    made.hosts["web2"].message = "/api/health answered 503 (for 20 s)\nrolled back"
    made.snapshot = {"name": "20261203T041209Z-c9112b4774ca"}
    made.migrated_on = "web1"
    lines = format_table(made).splitlines()
    assert lines[0].split() == [
        "host",
        "sha",
        "before",
        "sha",
        "after",
        "result",
        "seconds",
        "note",
    ]
    assert lines[1].split()[:6] == ["web1", V1[:12], "->", V2[:12], "ok", "12.3"]
    assert "migrated (snapshot 20261203T041209Z-c9112b4774ca)" in lines[1]
    assert lines[2].split()[:5] == ["web2", V1[:12], "->", V1[:12], "rolled_back"]
    assert "verify health: /api/health answered 503" in lines[2]
    assert "db" not in "".join(line.split()[0] for line in lines[1:3])
    assert lines[-1] == (
        "deploy of v2 (c9112b4774ca) FAILED on web2: verify health: /api/health answered 503 "
        "(for 20 s)"
    )
    assert len(lines) == 4


BOOT = (
    "bgdeploy-boot-failure: the payments gateway key is missing "
    "(In PaymentsServiceProvider.php line 11)\n"
    "Script @php artisan package:discover --ansi handling the post-autoload-dump event "
    "returned with error code 1"
)


def test_the_last_line_names_each_failed_hosts_cause() -> None:
    made = report("failed", "failed")
    for outcome in made.web_hosts:
        outcome.failed_step = "composer install"
        outcome.message = f"{BOOT}\nthe previous release {V1[:12]} was restored"
    lines = format_table(made).splitlines()
    cause = "composer install: bgdeploy-boot-failure: the payments gateway key is missing"
    assert all(cause in line for line in lines[1:3])  # each host's note
    assert lines[-1] == (  # the same cause on both hosts: said once
        f"deploy of v2 (c9112b4774ca) FAILED on web1, web2: {cause} "
        "(In PaymentsServiceProvider.php line 11)"
    )
    made.hosts["web2"].failed_step = "aborted"
    made.hosts["web2"].message = "composer install failed on web1: bgdeploy-boot-failure"
    assert made.summary().endswith(
        f"FAILED on web1, web2: web1: {cause} (In PaymentsServiceProvider.php line 11); "
        "web2: aborted: composer install failed on web1: bgdeploy-boot-failure"
    )
    assert cause in made.to_dict()["summary"]


def test_summaries() -> None:
    assert report("ok", "ok").summary() == "deployed v2 (c9112b4774ca) to 2 host(s)"
    assert "already live on every host" in report("unchanged", "unchanged").summary()
    refused = report("pending", refusal={"kind": "lock", "message": "held by rahim"})
    assert refused.summary() == "deploy of v2 refused: held by rahim"


def test_json_round_trip(tmp_path: Path) -> None:
    made = report("ok", "failed")
    made.hosts["web2"].failed_step = "composer install"
    path = tmp_path / "report.json"
    made.save(path)
    data = json.loads(path.read_text())
    assert data["exit_code"] == 1 and data["ok"] is False
    assert [h["host"] for h in data["hosts"]] == ["web1", "web2", "db"]
    assert data["hosts"][1]["failed_step"] == "composer install"
    back = ReleaseReport.load(path)
    assert back is not None
    assert back.to_dict() == made.to_dict()
    assert ReleaseReport.load(tmp_path / "missing.json") is None


def test_failed_covers_every_unsuccessful_end() -> None:
    for result, failed in [
        ("ok", False),
        ("unchanged", False),
        ("skipped", False),
        ("failed", True),
        ("rolled_back", True),
        ("refused", True),
        ("interrupted", True),
    ]:
        assert HostOutcome("h", ["web"], result=result).failed is failed
