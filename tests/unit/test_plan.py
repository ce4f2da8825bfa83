"""``bgdeploy deploy --plan`` (bgdeploy.strategies.plan): the plan decided from the facts the
preflight read, as the deploy files decide (the integration test compares it with a real run)."""

from __future__ import annotations

from typing import Any

from bgdeploy.checks.preflight.report import FAIL, PASS, Check, Checklist
from bgdeploy.core import settings as settings_mod
from bgdeploy.fleet import runner
from bgdeploy.fleet.colours import HostColours
from bgdeploy.strategies import plan as plan_mod
from bgdeploy.strategies.release import live

GroupData = Any

OLD, NEW = "a" * 40, "b" * 40


def environment(group_data: GroupData, **overrides: object) -> runner.Environment:
    settings = settings_mod.from_data({**group_data("sandbox"), **overrides}, "sandbox")
    names = ("web1", "web2", "db")
    return runner.Environment(
        "sandbox",
        None,
        dict.fromkeys(names, settings),
        {"web": ["web1", "web2"], "db": ["db"]},
    )


def checklist(pending: tuple[str, ...] = (), head: str = OLD, failing: bool = False) -> Checklist:
    found = Checklist("sandbox", "v2", "in-place", sha=NEW)
    found.checks.append(Check("migrations", PASS, "", "web1", pending))
    if failing:
        found.checks.append(Check("lock", FAIL, "held by alice", "web2"))
    for name in ("web1", "web2"):
        found.colours[name] = HostColours(
            name, current="blue", live="blue", idle="green", heads={"blue": head},
            built={"blue": head},
        )  # fmt: skip
    return found


def test_in_place_with_a_migration(group_data: GroupData) -> None:
    plan = plan_mod.make_plan(checklist(("2026_x",)), environment(group_data), "in-place")
    hosts = {h.host: h for h in plan.hosts}
    assert hosts["web1"].steps == [
        "take the deploy lock", "preflight", "check out", "composer install", "npm ci",
        "npm run build", "pack the assets", "migrate", *live.LIVE_STEPS, "verify health",
    ]  # fmt: skip
    assert hosts["web2"].steps[3:5] == ["composer install", "receive the assets"]
    assert "migrate" not in hosts["web2"].steps
    assert (hosts["web2"].before, hosts["web2"].after, hosts["web2"].colour) == (OLD, NEW, "blue")
    assert hosts["db"].steps == ["snapshot"] and plan.snapshot_host == "db"
    text = plan_mod.format_plan(plan)
    assert "migrations: 1 pending, run once on web1 after a snapshot on db: 2026_x" in text
    assert "the deploy would go ahead" in text


def test_blue_green_builds_the_idle_colour_and_every_host_builds_without_shared_assets(
    group_data: GroupData,
) -> None:
    env = environment(group_data, asset_paths=[])
    plan = plan_mod.make_plan(checklist(), env, "blue-green")
    for host in plan.hosts[:2]:
        assert host.colour == "green"
        assert host.steps[4:6] == ["npm ci", "npm run build"]
        assert host.steps[-6:] == [*live.WARM_UP_STEPS, "smoke tests", "switch", "monitor health"]
    assert plan.hosts[2].steps == [] and plan.snapshot_host is None


def test_nothing_when_live_and_built_or_refused(group_data: GroupData) -> None:
    plan = plan_mod.make_plan(checklist(head=NEW), environment(group_data), "in-place")
    assert plan.unchanged and not any(h.steps for h in plan.hosts)
    assert "already live and built" in plan.hosts[0].note
    forced = plan_mod.make_plan(checklist(head=NEW), environment(group_data), "in-place", True)
    assert forced.hosts[0].steps
    refused = plan_mod.make_plan(checklist(failing=True), environment(group_data), "in-place")
    assert refused.refused and not any(h.steps for h in refused.hosts)
    assert "lock: held by alice" in refused.hosts[1].note
    assert "would be refused" in plan_mod.format_plan(refused)


def test_the_plan_s_step_lists_are_the_release_s() -> None:
    assert plan_mod.LIVE_STEPS == live.LIVE_STEPS
    assert plan_mod.WARM_UP_STEPS == live.WARM_UP_STEPS


def test_pyinfra_dry_asks_for_the_same_plan_as_bgdeploy_deploy_plan() -> None:
    from conftest import load_group_data

    from bgdeploy.strategies.release import dry

    assert dry.dry_run(["pyinfra", "inventories/prod.py", "deploys/release.py", "--dry"])
    assert not dry.dry_run(["pyinfra", "-y", "inventories/prod.py", "deploys/release.py"])
    settings = settings_mod.from_data(load_group_data("prod"), "prod")
    args = dry.plan_command(settings, {"ref": "v2.4.1", "force": "true"}, "blue-green")
    assert args[3:] == ["deploy", "prod", "--plan", "--strategy", "blue-green", "--ref",
                        "v2.4.1", "--force"]  # fmt: skip
    plain = dry.plan_command(settings, {"allow_destructive": True}, "in-place")
    assert plain[3:] == ["deploy", "prod", "--plan", "--strategy", "in-place",
                         "--allow-destructive"]  # fmt: skip
