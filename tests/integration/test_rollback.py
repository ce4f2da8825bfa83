"""`bgdeploy rollback` on a sandbox of its own: in place, --to, refusals, --migrations,
switching back (blue-green), Ctrl-C, and a host that is down.

The fleet (2 web hosts, a db host) is provisioned and given v1 then v2 in place (v2 adds a
migration). Each test starts by putting the shared fleet in the state it needs (the ``rb``
fixture: every host running, no lock left; :func:`in_place_at`: every web host serving a
release in place, the other colour not verified, so that a rollback goes in place), whatever
an earlier test left: none depends on another's outcome.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox
from bgdeploy.core import timing
from bgdeploy.fleet import sshkeys
from bgdeploy.sandbox import sampleapp

from .conftest import (
    APP_ROOT,
    BACKUPS,
    DEPLOY_V1,
    DEPLOY_V2,
    LOCK,
    PROVISION,
    ROOT,
    V2_MIGRATION,
    journal,
    logins,
    own_sandbox,
    psql,
    q,
    run,
    sandbox_run_env,
    sh,
    unique_name,
)

WEB = ("web1", "web2")


@pytest.fixture(scope="module")
def fleet_v2(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("rb", docker_client, PROVISION, DEPLOY_V1, DEPLOY_V2) as state:
        yield state


@pytest.fixture
def rb(fleet_v2: sandbox.SandboxState, docker_client: Any) -> sandbox.SandboxState:
    """The module's fleet as it is now, every host running (a test that stopped one may have
    failed before it started it again) and no deploy lock left on a web host."""
    state = sandbox.load_state(fleet_v2.name)
    for host in state.hosts:
        container = docker_client.containers.get(host.container)
        if container.status != "running":
            state = sandbox.start_host(state.name, host.name, client=docker_client)
    for name in WEB:
        assert sh(state, name, f"sudo rm -f {LOCK}")[0] == 0
    return state


def in_place_at(state: sandbox.SandboxState, ref: str) -> str:
    """Every web host serves ``ref`` (v1 or v2), deployed in place when it does not yet, and
    the other colour is not marked built and verified (a rollback then goes in place rather
    than switching back). Returns ``ref``'s commit."""
    sha = state.releases[ref]
    if releases(state) != {name: (200, sha) for name in WEB}:
        proc = run(["bgdeploy", "deploy", "sandbox", "--ref", ref], env=sandbox_run_env(state))
        assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    for name in WEB:
        for colour in ("blue", "green"):
            marker = f"{APP_ROOT}/{colour}/.git/bgdeploy-built"
            idle = f'[ "$(readlink {APP_ROOT}/current)" = {colour} ] || sudo rm -f {marker}'
            assert sh(state, name, idle)[0] == 0
    assert releases(state) == {name: (200, sha) for name in WEB}
    return sha


def rollback(state: sandbox.SandboxState, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["bgdeploy", "rollback", "sandbox", *args], env=sandbox_run_env(state))


def served(state: sandbox.SandboxState, hosts: tuple[str, ...] = WEB) -> dict[str, Any]:
    """Each web host's /api/health through its public port: (status, X-Release, X-Colour)."""
    found = {}
    for web in state.group("web"):
        if web.name in hosts:
            response = httpx.get(f"http://127.0.0.1:{web.ports['http']}/api/health", timeout=15)
            found[web.name] = (
                response.status_code,
                response.headers.get("X-Release", ""),
                response.headers.get("X-Colour", ""),
            )
    return found


def releases(state: sandbox.SandboxState, hosts: tuple[str, ...] = WEB) -> dict[str, Any]:
    return {name: (status, release) for name, (status, release, _) in served(state, hosts).items()}


def history(state: sandbox.SandboxState) -> list[dict[str, Any]]:
    proc = run(["bgdeploy", "history", "sandbox", "--json"], env=sandbox_run_env(state))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def table_row(output: str, host: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(f"{host} "))


# In place
# --------


def test_rollback_in_place_to_the_previous_release(rb: sandbox.SandboxState) -> None:
    state = rb
    v1, v2 = state.releases["v1"], in_place_at(rb, "v2")
    proc = rollback(state, "--reason", "v2 breaks logins")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    # Every host serves v1 through nginx, healthy.
    assert releases(state) == {name: (200, v1) for name in WEB}
    for name in WEB:
        assert "ok" in table_row(proc.stdout, name) and f"{v2[:12]} -> {v1[:12]}" in proc.stdout
        assert sh(state, name, f"test -e {LOCK}")[0] != 0  # the lock was released
        entry = journal(state, name)[-1]
        assert (entry["event"], entry["result"], entry["sha"]) == ("rollback", "ok", v1)
        assert entry["details"]["bad_release"] == v2 and entry["reason"] == "v2 breaks logins"
        steps = [step["name"] for step in entry["steps"]]
        assert steps[:2] == ["fetch", "check out"] and "composer install" in steps
        assert steps[-2:] == ["restart workers", "verify health"]
    # The history shows v2 as the bad release left.
    rollbacks = [e for e in history(state) if e["event"] == "rollback"][-2:]
    assert {(e["host"], e["details"]["bad_release"]) for e in rollbacks} == {
        ("web1", v2),
        ("web2", v2),
    }
    table = run(["bgdeploy", "history", "sandbox"], env=sandbox_run_env(state)).stdout
    assert "rollback" in table and f"v2 breaks logins (left {v2[:7]}: bad)" in table

    # A second rollback never picks v2 again: there is nothing before v1.
    count = {name: len(journal(state, name)) for name in WEB}
    again = rollback(state)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "nothing to roll back to" in again.stderr and "--to REF" in again.stderr
    assert releases(state) == {name: (200, v1) for name in WEB}
    assert {name: len(journal(state, name)) for name in WEB} == count


def test_rollback_to_a_given_release_and_hostile_refs(
    rb: sandbox.SandboxState, docker_client: Any
) -> None:
    state = rb
    v1, v2 = state.releases["v1"], state.releases["v2"]
    # v2 marked bad: the last thing on every host is a rollback from v2 to v1.
    last = {name: journal(state, name)[-1:] for name in WEB}
    if releases(state) != {name: (200, v1) for name in WEB} or not all(
        entry and entry[0]["event"] == "rollback" and entry[0]["details"]["bad_release"] == v2
        for entry in last.values()
    ):
        in_place_at(state, "v2")
        proc = rollback(state, "--to", "v1")
        assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    before = logins(docker_client, state)
    for hostile in ("v1; rm -rf /", "--upload-pack=x", "$(touch /tmp/pwned)"):
        proc = rollback(state, f"--to={hostile}")
        assert proc.returncode == 2, (hostile, proc.stdout, proc.stderr)
        assert "not allowed" in proc.stderr or "starts with '-'" in proc.stderr
    assert logins(docker_client, state) == before  # refused before any connection

    # v2 was marked bad, but named explicitly (by its commit) it is rolled back to.
    proc = rollback(state, "--to", v2)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert releases(state) == {name: (200, v2) for name in WEB}
    assert "marked bad" in proc.stderr
    assert journal(state, "web1")[-1]["details"]["to"] == v2


def test_changed_host_key_and_held_lock_are_refused(rb: sandbox.SandboxState) -> None:
    state = rb
    v2 = in_place_at(state, "v2")
    count = {name: len(journal(state, name)) for name in WEB}
    known_hosts = Path(state.known_hosts)
    original = known_hosts.read_text()
    web2 = state.group("web")[1]
    impostor = sshkeys.generate_keypair(Path(state.directory) / "impostor", "impostor")
    changed = [
        line
        for line in original.splitlines()
        if not line.startswith(f"[127.0.0.1]:{web2.ports['ssh']} ")
    ]
    changed.append(sshkeys.known_hosts_line("127.0.0.1", web2.ports["ssh"], impostor))
    known_hosts.write_text("\n".join(changed) + "\n")
    try:
        proc = rollback(state, "--to", "v1")
    finally:
        known_hosts.write_text(original)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "web2" in proc.stderr and "host key CHANGED" in proc.stderr
    # Nothing ran anywhere: no journal line, no lock, same release.
    assert {name: len(journal(state, name)) for name in WEB} == count
    assert releases(state) == {name: (200, v2) for name in WEB}

    stale = (
        '{"host":"old-laptop","owner":"carol@old-laptop","pid":1,"ref":"v9",'
        '"run":"deadbeef0000","time":"2026-01-01T00:00:00Z"}'
    )
    assert sh(state, "web2", f"printf '%s\\n' {q(stale)} > {LOCK}")[0] == 0
    try:
        proc = rollback(state, "--to", "v1")
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "held by carol@old-laptop" in proc.stderr
        assert sh(state, "web1", f"test -e {LOCK}")[0] != 0  # its own lock was given back
        assert releases(state) == {name: (200, v2) for name in WEB}
        assert {name: len(journal(state, name)) for name in WEB} == count
    finally:
        sh(state, "web2", f"rm -f {LOCK}")


def test_rollback_with_migrations_snapshots_first(rb: sandbox.SandboxState) -> None:
    state = rb
    v1, v2 = state.releases["v1"], in_place_at(rb, "v2")
    column = (
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_name = 'visa_applications' AND column_name = 'passport_country'"
    )
    assert psql(state, column) == "1"  # v2's migration is applied
    proc = rollback(state, "--to", "v1", "--migrations", "1", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert report["strategy"] == "in place" and report["target"] == v1
    snapshot = report["snapshot"]
    assert snapshot["host"] == "db" and snapshot["name"].endswith(v2[:12])
    assert snapshot["migrated_on"] == "web1"
    # The snapshot exists, its checksum holds and it reads back whole.
    path = snapshot["path"]
    check = f"cd {BACKUPS} && sha256sum -c {path}.sha256 && pg_restore -l {path} | grep -c TABLE"
    code, out = sh(state, "db", f"cd / && sudo -u postgres sh -c {q(check)}")
    assert code == 0 and ": OK" in out, out
    assert snapshot["sha256"] in sh(state, "db", f"sudo cat {path}.sha256")[1]
    # The migration's column is gone, and so is its row in the migrations table.
    assert psql(state, column) == "0"
    assert psql(state, f"SELECT count(*) FROM migrations WHERE migration = '{V2_MIGRATION}'") == "0"
    assert releases(state) == {name: (200, v1) for name in WEB}
    web1 = journal(state, "web1")[-1]
    assert web1["details"]["migrations_rolled_back"] == 1
    assert web1["details"]["snapshot"] == snapshot["name"]


# Blue-green: switching back
# --------------------------


def test_switch_back_after_a_blue_green_deploy(rb: sandbox.SandboxState) -> None:
    state = rb
    v1, v2 = in_place_at(state, "v1"), state.releases["v2"]
    ((old,),) = [{colour for _, _, colour in served(state).values()}]
    new = "green" if old == "blue" else "blue"
    env = sandbox_run_env(state)
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--strategy", "blue-green", "--ref", "v2"], env=env
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert {v for v in served(state).values()} == {(200, v2, new)}
    held = (
        '{"host":"ci","owner":"dave@ci","pid":7,"ref":"v3",'
        '"run":"cafe00000000","time":"2026-01-01T00:00:00Z"}'
    )
    assert sh(state, "web2", f"printf '%s\\n' {q(held)} > {LOCK}")[0] == 0
    try:
        proc = rollback(state)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert "held by dave@ci" in proc.stderr and "nothing was changed" in proc.stderr
        assert {v for v in served(state).values()} == {(200, v2, new)}
    finally:
        sh(state, "web2", f"rm -f {LOCK}")
    started = time.monotonic()
    proc = run(
        ["bgdeploy", "rollback", "sandbox"], env={**env, timing.VARIABLE: "json"}
    )  # with its profile (the phases it went through)
    seconds = time.monotonic() - started
    print(f"bgdeploy rollback (switch back), whole process: {seconds:.2f} s")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    phases = timing.parse_json_line(proc.stderr)
    assert phases is not None, proc.stderr
    # Its round trips: one reading of the inventory, every host connected to at once, the
    # lock (the colours read in its round trip), each host's smoke tests once, one switch, one
    # confirmation, each host's health and journal once, the lock given back. No more,
    # however long they took.
    counts = {name: phase["count"] for name, phase in phases.items()}
    once = ("inventory", "connect", "lock", "switch", "confirm, journal, workers", "unlock")
    assert {name: counts.get(name) for name in once} == dict.fromkeys(once, 1), phases
    for per_host in ("smoke tests", "health", "journal"):
        assert counts.get(per_host) == len(WEB), (per_host, phases)
    assert "colours" not in counts, phases
    # The smoke tests (the longest reads) start beside the lock, not after it.
    lock = phases["lock"]
    assert phases["smoke tests"]["from"] < lock["from"] + lock["seconds"], phases
    assert "switch back" in proc.stdout and f"({old})" in proc.stdout
    assert {v for v in served(state).values()} == {(200, v1, old)}
    for name in WEB:
        entry = journal(state, name)[-1]
        assert entry["event"] == "rollback" and entry["details"]["bad_release"] == v2
        assert entry["details"]["strategy"] == "switch back"
        assert [step["name"] for step in entry["steps"]] == ["switch", "verify health"]
        # The colour left is no longer marked built: never switched back to.
        assert sh(state, name, f"test -e {APP_ROOT}/{new}/.git/bgdeploy-built")[0] != 0
    again = rollback(state)
    assert again.returncode == 1 and "nothing to switch back to" in again.stderr
    assert {v for v in served(state).values()} == {(200, v1, old)}


def test_ctrl_c_releases_the_lock_and_says_how_to_finish(rb: sandbox.SandboxState) -> None:
    state = rb
    v2 = state.releases["v2"]
    # A release whose composer install takes 30 s (a post-autoload-dump script).
    composer = json.loads((sampleapp.APP_DIR / "composer.json").read_text())
    composer["scripts"]["post-autoload-dump"].append("sleep 30")
    files = {"composer.json": json.dumps(composer, indent=4) + "\n"}
    slow = sampleapp.add_commit(
        Path(state.app_repository), files, "slow", tag=unique_name("rb-slow"), parent="v2"
    )
    env = {**os.environ, "PYINFRA_PROGRESS": "off", **sandbox_run_env(state)}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "bgdeploy"), "rollback", "sandbox", "--to", slow],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # Ctrl-C reaches it even when the tests run in the background (SIGINT ignored there).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        for name in WEB:
            deadline = time.monotonic() + 120
            while sh(state, name, "pgrep -f 'sleep 30'")[0] != 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("composer never ran\n" + "".join(proc.communicate()))
                time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"bgdeploy rollback sandbox --to {slow}" in err
    for name in WEB:
        assert sh(state, name, "pgrep -f 'sleep 30'")[0] != 0  # composer stopped with us
        assert sh(state, name, f"test -e {LOCK}")[0] != 0  # released: it can run again
        entry = journal(state, name)[-1]
        assert (entry["event"], entry["result"]) == ("rollback", "failed")
        assert entry["details"]["interrupted"] is True
    # Run again, the hosts half rolled back (checked out, not built) are rolled back.
    proc = rollback(state, "--to", "v2")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert releases(state) == {name: (200, v2) for name in WEB}


# A host that is down
# -------------------


def test_stopped_host_is_reported_and_the_others_roll_back(
    rb: sandbox.SandboxState, docker_client: Any
) -> None:
    state = rb
    v1 = state.releases["v1"]
    in_place_at(state, "v2")
    web2 = state.group("web")[1]
    docker_client.containers.get(web2.container).stop(timeout=5)
    try:
        proc = rollback(state, "--to", "v1")
    finally:
        sandbox.start_host(state.name, "web2", client=docker_client)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in table_row(proc.stdout, "web2") and "unreachable" in proc.stdout
    assert "ok" in table_row(proc.stdout, "web1")
    assert releases(state, ("web1",)) == {"web1": (200, v1)}
    entry = journal(state, "web1")[-1]
    assert (entry["event"], entry["result"], entry["sha"]) == ("rollback", "ok", v1)
