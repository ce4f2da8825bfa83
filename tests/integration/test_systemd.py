"""The systemd flavour (`bgdeploy sandbox up --init systemd`), on a sandbox of its own: systemd
is PID 1 in every container and the services are its units, as on the production servers, and
what bgdeploy does to services works there unchanged.

The fleet (2 web hosts, a db host) is provisioned and given v1 in place. Each test puts it in
the state it needs (the ``sd`` fixture: every host running, the state as it is now;
``in_place_at``, ``settle``), whatever an earlier test left: none depends on another's outcome.
The other modules run on the init.d flavour (README, "Tests").
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import (
    DEPLOY_V1,
    PROVISION,
    journal,
    other_release,
    own_sandbox,
    pause,
    psql,
    public_urls,
    run,
    sandbox_run_env,
    settle,
    sh,
    switches_under_load,
    unique_name,
)
from .test_provision import assert_no_change, provision_json
from .test_rollback import in_place_at, releases, rollback, served, table_row

WEB = ("web1", "web2")
UNITS = {
    "web": ("ssh", "nginx", "php8.2-fpm", "supervisor", "cron"),
    "db": ("ssh", "postgresql", "redis-server"),
}


@pytest.fixture(scope="module")
def systemd_fleet(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("sd", docker_client, PROVISION, DEPLOY_V1, init="systemd") as state:
        yield state


@pytest.fixture
def sd(systemd_fleet: sandbox.SandboxState, docker_client: Any) -> sandbox.SandboxState:
    """The module's fleet as it is now (a host started again has new ports), every host
    running: a test that stopped or paused one may have failed before it put it back."""
    state = sandbox.load_state(systemd_fleet.name)
    for host in state.hosts:
        container = docker_client.containers.get(host.container)
        if container.status == "paused":
            container.unpause()
        elif container.status != "running":
            state = sandbox.start_host(state.name, host.name, client=docker_client)
    return state


def root(state: sandbox.SandboxState, host: str, command: str) -> str:
    code, out = sh(state, host, f"sudo -n {command}")
    assert code == 0, f"{host}: {command}\n{out}"
    return out


def assert_workers_running(state: sandbox.SandboxState, host: str, seconds: float = 20) -> None:
    """``host``'s queue workers RUNNING under supervisord: a worker just (re)started is
    STARTING for its ``startsecs`` (1 s) first, longer on a loaded machine."""
    deadline = time.monotonic() + seconds
    while "RUNNING" not in (status := root(state, host, "supervisorctl status")):
        assert time.monotonic() < deadline, status
        time.sleep(0.5)


def healthy(state: sandbox.SandboxState) -> None:
    for url in public_urls(state, "/api/health"):
        assert httpx.get(url, timeout=15).status_code == 200, url


def test_pid_1_is_systemd_and_the_services_are_its_enabled_units(
    sd: sandbox.SandboxState,
) -> None:
    assert sandbox.status(sd.name)["init"] == "systemd"
    status = run(["bgdeploy", "sandbox", "status", "--name", sd.name])
    assert status.returncode == 0 and f"sandbox {sd.name} (init: systemd)" in status.stdout
    for host in sd.hosts:
        assert sh(sd, host.name, "cat /proc/1/comm")[1].strip() == "systemd", host.name
        assert root(sd, host.name, "systemctl is-system-running").strip() == "running"
        units = [unit for group in host.groups for unit in UNITS[group]]
        joined = " ".join(units)
        assert root(sd, host.name, f"systemctl is-enabled {joined}").split() == ["enabled"] * len(
            units
        )
        assert root(sd, host.name, f"systemctl is-active {joined}").split() == ["active"] * len(
            units
        )


def test_provisioning_again_changes_nothing(sd: sandbox.SandboxState) -> None:
    # The module's fixture provisioned the fleet once: a second run changes nothing.
    _, again = provision_json(sd)
    assert_no_change(again, {"web1", "web2", "db"})


def test_in_place_release_v1_to_v2_and_in_place_rollback(sd: sandbox.SandboxState) -> None:
    v1, v2 = in_place_at(sd, "v1"), sd.releases["v2"]
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v2"], env=sandbox_run_env(sd))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert releases(sd) == {name: (200, v2) for name in WEB}
    # The workers were restarted through supervisord, itself a systemd unit.
    for name in WEB:
        assert_workers_running(sd, name)
    proc = rollback(sd, "--reason", "systemd: back to v1")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert releases(sd) == {name: (200, v1) for name in WEB}
    for name in WEB:
        assert "ok" in table_row(proc.stdout, name)
        entry = journal(sd, name)[-1]
        assert (entry["event"], entry["result"], entry["sha"]) == ("rollback", "ok", v1)
        assert [step["name"] for step in entry["steps"]][-2:] == [
            "restart workers",
            "verify health",
        ]


def test_ten_switches_under_load_then_rollback_switches_back(sd: sandbox.SandboxState) -> None:
    v1, v2 = in_place_at(sd, "v1"), sd.releases["v2"]
    ((old,),) = [{colour for _, _, colour in served(sd).values()}]
    env = sandbox_run_env(sd)
    args = ["bgdeploy", "deploy", "sandbox", "--strategy", "blue-green", "--ref", "v2"]
    proc = run(args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    new, release, other = settle(sd, both_colours=True)
    assert (new, release, other) == ("green" if old == "blue" else "blue", v2, old)
    # 10 switches (v2's colour is live again after them), each seen by every host under load;
    # test_blue_green.py's run goes on to 5,000 answers, here the switches are the point.
    switches_under_load(sd, new, old, answers=1000)
    proc = rollback(sd)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "switch back" in proc.stdout
    assert {v for v in served(sd).values()} == {(200, v1, old)}


def test_a_canary_is_judged_and_promoted(sd: sandbox.SandboxState) -> None:
    _, release, new = settle(sd)
    ref = other_release(sd, release)
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--canary", "50", "--ref", ref], env=sandbox_run_env(sd)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert {(status, colour) for status, _, colour in served(sd).values()} == {(200, new)}
    assert {sha for _, sha, _ in served(sd).values()} == {sd.releases[ref]}


def test_emergency_restart_and_logs(sd: sandbox.SandboxState) -> None:
    env = sandbox_run_env(sd)
    args = ["bgdeploy", "emergency", "sandbox", "restart", "php-fpm", "nginx", "workers"]
    proc = run(args, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("restarted php-fpm, nginx, workers") == 2, proc.stdout
    healthy(sd)
    for name in WEB:
        assert_workers_running(sd, name)

    def logs(*args: str) -> list[str]:
        proc = run(["bgdeploy", "emergency", "sandbox", "logs", *args], env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return [line for line in proc.stdout.splitlines() if line.strip()]

    # Files where the services write them; the journal holds what systemd did to them.
    lines = logs("--source", "nginx-access", "--lines", "5")
    assert {line.split()[0] for line in lines} == {"[web1]", "[web2]"}
    lines = logs("--source", "php-fpm", "--journal", "--lines", "30")
    for name in WEB:
        assert any(
            line.startswith(f"[{name}] ") and "Reloaded php8.2-fpm.service" in line
            for line in lines
        ), lines
    # A systemd host where the file is not there: its service's journal, said so.
    error_log = "/var/log/nginx/error.log"
    moved = f"{error_log}.{unique_name('it')}"
    root(sd, "web1", f"mv {error_log} {moved}")
    try:
        lines = logs("--source", "nginx-error", "--lines", "30")
    finally:
        root(sd, "web1", f"mv {moved} {error_log}")
    assert f"[web1] ({error_log} does not exist: the journal of nginx)" in lines
    assert any(line.startswith("[web1] ") and "Reloaded nginx.service" in line for line in lines)
    assert not any(line.startswith("[web2] (") for line in lines), lines


def test_snapshot_create_and_restore(sd: sandbox.SandboxState) -> None:
    env = sandbox_run_env(sd)
    name = unique_name("sd")
    created = run(["bgdeploy", "snapshot", "sandbox", "create", "--name", name], env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    count = psql(sd, "SELECT count(*) FROM visa_applications")
    psql(
        sd,
        "INSERT INTO visa_applications (reference, applicant_name, destination_country, "
        "visa_type, created_at, updated_at) "
        "VALUES (gen_random_uuid(), 'After Snapshot', 'JP', 'work', now(), now())",
    )
    assert psql(sd, "SELECT count(*) FROM visa_applications") != count
    restored = run(["bgdeploy", "snapshot", "sandbox", "restore", name, "--yes"], env=env)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert psql(sd, "SELECT count(*) FROM visa_applications") == count
    healthy(sd)
    for host in WEB:
        assert_workers_running(sd, host)


def test_stopped_and_paused_hosts_come_back(sd: sandbox.SandboxState, docker_client: Any) -> None:
    """``docker stop`` shuts systemd down (SIGRTMIN+3); ``start_host`` boots it again and
    waits for every unit; a paused host answers again once unpaused."""
    for name in ("web2", "db"):
        started = time.monotonic()
        docker_client.containers.get(sd.host(name).container).stop(timeout=10)
        state = sandbox.start_host(sd.name, name, client=docker_client)
        print(f"{name}: stopped and started again in {time.monotonic() - started:.1f} s")
        assert root(state, name, "systemctl is-system-running").strip() == "running"
    healthy(state)
    web1 = docker_client.containers.get(state.host("web1").container)
    pause(web1)
    web1.unpause()
    healthy(state)
