"""Colour facts, switch commands and smoke-test judgement, without hosts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bgdeploy import commands, smoke, switch
from bgdeploy.errors import ConfigError, PolicyRefusal

SHA_A = "a" * 40
SHA_B = "b" * 40


def facts(
    name: str, live: str, current: str | None = None, built: bool = True
) -> switch.HostColours:
    idle = switch.other(live)
    text = "\n".join(
        [
            f"current={current or live}",
            f"live={live}",
            f"idle={idle}",
            f"blue_head={SHA_A}",
            f"blue_built={SHA_A if built else ''}",
            f"green_head={SHA_B}",
            f"green_built={SHA_B}",
        ]
    )
    return switch.parse_facts(name, text)


def test_facts_parse_and_readiness() -> None:
    web1 = facts("web1", "blue", built=False)
    assert web1.live == "blue" and web1.idle == "green" and web1.consistent
    assert web1.ready("green") and not web1.ready("blue")


def test_one_live_colour() -> None:
    assert switch.live_colour({"w1": facts("w1", "blue"), "w2": facts("w2", "blue")}) == "blue"


def test_hosts_that_disagree_are_named() -> None:
    with pytest.raises(PolicyRefusal) as info:
        switch.live_colour({"w1": facts("w1", "blue"), "w2": facts("w2", "green")})
    assert "w1 blue" in str(info.value) and "w2 green" in str(info.value)
    with pytest.raises(PolicyRefusal, match=r"current -> green"):
        switch.live_colour({"w1": facts("w1", "blue", current="green")})


def test_other_colour() -> None:
    assert switch.other("blue") == "green"
    with pytest.raises(ConfigError):
        switch.other("red; reboot")


def test_switch_apply_restores_on_failed_test(tmp_path: Path) -> None:
    """Run the real phase commands against files, with an `nginx -t` that fails."""
    live, idle = tmp_path / "live.conf", tmp_path / "idle.conf"
    live.write_text("# bgdeploy colour: blue\n")
    idle.write_text("# bgdeploy colour: green\n")
    prepare = commands.switch_prepare(
        str(live), str(idle), "# bgdeploy colour: green\n", "# bgdeploy colour: blue\n"
    )
    assert subprocess.run(["sh", "-c", prepare], check=False).returncode == 0
    assert live.read_text().endswith("blue\n"), "prepare changes nothing that is live"
    apply = commands.switch_apply(str(live), str(idle)).replace("nginx -t -q", "false")
    proc = subprocess.run(["sh", "-c", apply], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "switch undone" in proc.stderr
    assert live.read_text().endswith("blue\n") and idle.read_text().endswith("green\n")


def test_move_current_is_a_rename(tmp_path: Path) -> None:
    (tmp_path / "blue").mkdir()
    (tmp_path / "green").mkdir()
    (tmp_path / "current").symlink_to("blue")
    subprocess.run(["sh", "-c", commands.move_current(str(tmp_path), "green")], check=True)
    assert (tmp_path / "current").readlink() == Path("green")
    with pytest.raises(ConfigError):
        commands.move_current(str(tmp_path), "../etc")


def line(
    name: str, status: int, body: object = "", release: str = SHA_A, colour: str = "green"
) -> str:
    text = json.dumps(body) if not isinstance(body, str) else body
    return f"bgdeploy-smoke {name}|{status}|{release}|{colour}|0.012|{text}"


HEALTHY = {
    "status": "healthy",
    "checks": {
        "database": {"status": "healthy", "message": "Connected"},
        "cache": {"status": "healthy", "message": "Read/write successful"},
    },
}


def smoke_output(**overrides: str) -> str:
    lines = {
        "health": line("health", 200, HEALTHY),
        "homepage": line("homepage", 200, "<html>"),
        "api auth": line("api auth", 200, {"ok": True}),
        "api without token": line("api without token", 401, {"message": "Unauthenticated."}),
        "database": line("database", 200, {"data": []}),
    }
    lines.update(overrides)
    return "noise\n" + "\n".join(lines.values())


def test_all_five_smoke_tests_pass() -> None:
    checks = smoke.evaluate(smoke.parse(smoke_output()), sha=SHA_A, colour="green")
    assert [c.name for c in checks] == [
        "health",
        "homepage",
        "api authentication",
        "database",
        "cache",
    ]
    assert all(c.ok for c in checks)


@pytest.mark.parametrize(
    ("override", "failing"),
    [
        (
            {"health": line("health", 503, {"status": "unhealthy", "checks": {}})},
            {"health", "database", "cache"},
        ),
        ({"homepage": line("homepage", 200, "<html>", release=SHA_B)}, {"homepage"}),
        ({"homepage": line("homepage", 200, "<html>", colour="blue")}, {"homepage"}),
        ({"api without token": line("api without token", 200, {})}, {"api authentication"}),
        ({"database": line("database", 500, "")}, {"database"}),
        ({"homepage": "bgdeploy-smoke homepage|000||||"}, {"homepage"}),
    ],
)
def test_each_failure_is_named(override: dict[str, str], failing: set[str]) -> None:
    checks = smoke.evaluate(smoke.parse(smoke_output(**override)), sha=SHA_A, colour="green")
    assert {c.name for c in checks if not c.ok} == failing


def test_token_reaches_curl_on_stdin_only() -> None:
    script = commands.smoke_requests(8080)
    assert "read -r token" in script
    assert "-H @-" in script
    assert '$token" |' in script
