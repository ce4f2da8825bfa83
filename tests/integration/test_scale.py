"""`bgdeploy scale`: queue workers and php-fpm children, on a fleet of the module's own.

Each test starts from v2 live in place with group_data's scale (1 worker, 4 children per pool)
and puts that back at the end, whatever happened.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import (
    APP_ROOT,
    DEPLOY_V2,
    LOCK,
    PROVISION,
    journal,
    own_sandbox,
    psql,
    q,
    run,
    sandbox_run_env,
    sh,
)

WEB = ("web1", "web2")
SCALE_FILE = f"{APP_ROOT}/.bgdeploy/scale"
LARAVEL_LOG = f"{APP_ROOT}/shared/storage/logs/laravel.log"
POOLS = (
    "/etc/php/8.2/fpm/pool.d/bideshgomon-blue.conf /etc/php/8.2/fpm/pool.d/bideshgomon-green.conf"
)


def bgdeploy(state: sandbox.SandboxState, *args: str) -> Any:
    return run(["bgdeploy", *args], env=sandbox_run_env(state))


def reset(state: sandbox.SandboxState) -> None:
    """group_data's scale back on every web host, and no scale file."""
    for what, count in (("workers", "1"), ("php-fpm", "4")):
        proc = bgdeploy(state, "scale", "sandbox", what, count, "--reason", "test reset")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    for web in WEB:
        assert sh(state, web, f"sudo rm -f {SCALE_FILE}")[0] == 0


@pytest.fixture(scope="module")
def scaling(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    """A fleet of this module's own: the workers it counts are not disturbed by what other
    modules' tests do to the session's fleet (a full run once found them crashing there)."""
    with own_sandbox("sc", docker_client, PROVISION, DEPLOY_V2) as state:
        yield state


@pytest.fixture
def fleet_v2(scaling: sandbox.SandboxState) -> Iterator[sandbox.SandboxState]:
    proc = bgdeploy(scaling, "deploy", "sandbox", "--ref", "v2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for web in WEB:
        sh(scaling, web, f"sudo rm -f {LOCK}")
    try:
        yield scaling
    finally:
        reset(scaling)


def workers(state: sandbox.SandboxState, web: str) -> int:
    _, out = sh(state, web, "sudo supervisorctl status")
    return len(re.findall(r"^bideshgomon-worker:\S+\s+RUNNING", out, re.M))


def running_workers(state: sandbox.SandboxState, expected: int, seconds: float = 30) -> dict:
    """Each web host's RUNNING workers, once every host has ``expected`` (supervisor counts a
    new worker RUNNING after ``startsecs``) or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        found = {web: workers(state, web) for web in WEB}
        if set(found.values()) == {expected} or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def children(state: sandbox.SandboxState, web: str) -> str:
    """pm.max_children of both pools of ``web``: one value when they agree (``"6"``)."""
    _, out = sh(state, web, f"sudo sed -n 's/^pm.max_children *= *//p' {POOLS}")
    return ",".join(sorted(set(out.split())))


def test_scaling_workers_up_and_down_loses_no_job(fleet_v2: sandbox.SandboxState) -> None:
    state = fleet_v2
    token = sandbox.load_secrets(state.name)["API_TOKEN"]
    urls = [f"http://127.0.0.1:{w.ports['http']}/api/visa-applications" for w in state.group("web")]
    created: list[int] = []
    stop = threading.Event()

    def submit() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set() and len(created) < 150:
                answer = client.post(
                    urls[len(created) % 2],
                    json={
                        "applicant_name": "Scale",
                        "destination_country": "JP",
                        "visa_type": "work",
                    },
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                )
                assert answer.status_code == 202, answer.text
                created.append(answer.json()["data"]["id"])

    sender = threading.Thread(target=submit, daemon=True)
    sender.start()
    try:
        up = bgdeploy(state, "scale", "sandbox", "workers", "4", "--reason", "backlog")
        assert up.returncode == 0, up.stdout + up.stderr
        assert re.search(r"^web1 .*workers: 1 -> 4", up.stdout, re.M), up.stdout
        assert running_workers(state, 4) == dict.fromkeys(WEB, 4)
        shown = bgdeploy(state, "status", "sandbox").stdout
        assert re.search(r"^web2 .*scaled: workers=4", shown, re.M), shown
        down = bgdeploy(state, "scale", "sandbox", "workers", "1")
        assert down.returncode == 0, down.stdout + down.stderr
        assert running_workers(state, 1) == dict.fromkeys(WEB, 1)
    finally:
        stop.set()
        sender.join(60)
    assert len(created) >= 20, "too few jobs were queued during the scaling"
    ids = ", ".join(map(str, created))
    deadline = time.monotonic() + 120
    while psql(state, f"SELECT count(*) FROM visa_applications WHERE id IN ({ids}) "
               "AND status = 'processed'") != str(len(created)):  # fmt: skip
        assert time.monotonic() < deadline, "not every queued job was processed"
        time.sleep(1)
    # Each job ran exactly once, on one host or the other.
    runs: Counter[int] = Counter()
    for web in WEB:
        _, log = sh(state, web, f"sudo grep -ho 'processed application [0-9]* ' {LARAVEL_LOG}")
        runs.update(int(line.split()[2]) for line in log.splitlines() if line.strip())
    assert {number: runs[number] for number in created} == dict.fromkeys(created, 1)
    entry = journal(state, "web1")[-1]
    assert entry["event"] == "emergency" and entry["details"]["action"] == "scale workers"
    assert (entry["details"]["from"], entry["details"]["to"]) == (4, 1)


def test_scaled_php_fpm_is_kept_by_provision_and_deploys(fleet_v2: sandbox.SandboxState) -> None:
    state = fleet_v2
    proc = bgdeploy(state, "scale", "sandbox", "php-fpm", "6", "--reason", "traffic")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {web: children(state, web) for web in WEB} == dict.fromkeys(WEB, "6")
    for web in WEB:
        _, kept = sh(state, web, f"cat {SCALE_FILE}")
        assert "php_fpm_max_children=6" in kept
    # A provision keeps it, and says so; a deploy does not touch it.
    provision = bgdeploy(state, "provision", "sandbox")
    assert provision.returncode == 0, provision.stderr[-4000:]
    assert (
        "fpm_max_children stays 6, set by `bgdeploy scale`" in provision.stdout + provision.stderr
    )
    deploy = bgdeploy(state, "deploy", "sandbox", "--ref", "v1")
    assert deploy.returncode == 0, deploy.stderr[-4000:]
    assert {web: children(state, web) for web in WEB} == dict.fromkeys(WEB, "6")
    for web in state.group("web"):
        answer = httpx.get(f"http://127.0.0.1:{web.ports['http']}/api/health", timeout=15)
        assert answer.status_code == 200


def test_scale_is_refused_while_the_lock_is_held(fleet_v2: sandbox.SandboxState) -> None:
    state = fleet_v2
    held = (
        '{"host":"ci","owner":"erin@ci","pid":9,"ref":"v9",'
        '"run":"beef00000000","time":"2026-01-01T00:00:00Z"}'
    )
    assert sh(state, "web2", f"printf '%s\\n' {q(held)} > {LOCK}")[0] == 0
    try:
        proc = bgdeploy(state, "scale", "sandbox", "workers", "3")
    finally:
        sh(state, "web2", f"rm -f {LOCK}")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "held by erin@ci" in proc.stderr
    assert running_workers(state, 1) == dict.fromkeys(WEB, 1)
