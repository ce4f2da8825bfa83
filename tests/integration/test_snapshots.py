"""Database snapshots (`bgdeploy snapshot`) and `bgdeploy db ENV fresh`, on a sandbox of their own.

The fleet (2 web hosts, a db host) is provisioned and given v1. Rows of the sample app's
visa_applications table are written before and after a snapshot, through psql on the db host;
a restore must bring back exactly the rows of the snapshot, with the app serving again (and
in maintenance mode while the databases are swapped). A truncated snapshot fails `verify`
and is refused by `restore`; "n" at the prompt changes nothing; a host that cannot enter
maintenance mode stops the restore with every host back up and the live database untouched.
`db fresh` resets the sandbox's database and is refused for production.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bgdeploy import commands, sandbox

from .conftest import (
    BIN,
    DEPLOY_V1,
    PROVISION,
    ROOT,
    own_sandbox,
    run,
    sandbox_run_env,
    sh,
)

DB = "bideshgomon"
BACKUPS = "/var/backups/bideshgomon"
APP_ROOT = "/var/www/bideshgomon"
DOWN_FILE = f"{APP_ROOT}/current/storage/framework/down"
WEB = ("web1", "web2")


@pytest.fixture(scope="module")
def snap(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("snap", docker_client, PROVISION, DEPLOY_V1) as state:
        yield state


def bgdeploy(
    state: sandbox.SandboxState, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``bgdeploy ARGS`` against the sandbox (``stdin``: typed at its prompts)."""
    if stdin is None:
        return run(["bgdeploy", *args], env=sandbox_run_env(state))
    full_env = {**os.environ, "PYINFRA_PROGRESS": "off", **sandbox_run_env(state)}
    return subprocess.run(
        [str(BIN / "bgdeploy"), *args], cwd=ROOT, env=full_env, input=stdin,
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def root(state: sandbox.SandboxState, host: str, command: str) -> str:
    """Run ``command`` as root on a host; it must succeed."""
    code, out = sh(state, host, commands.as_root(command))
    assert code == 0, f"{host}: {command}\n{out}"
    return out


def psql(state: sandbox.SandboxState, sql: str, database: str = DB) -> list[str]:
    """Rows of one statement, run by psql as postgres on the db host."""
    out = root(state, "db", commands.psql_query(5432, sql, database))
    return [line for line in out.splitlines() if line.strip()]


def add_rows(state: sandbox.SandboxState, *names: str) -> None:
    values = ", ".join(
        f"(gen_random_uuid(), {commands.sql_literal(n)}, 'JP', 'work', now(), now())" for n in names
    )
    psql(
        state,
        "INSERT INTO visa_applications (reference, applicant_name, destination_country, "
        f"visa_type, created_at, updated_at) VALUES {values}",
    )


def rows(state: sandbox.SandboxState) -> list[str]:
    """Every visa application: id|reference|name|status, by id."""
    return psql(
        state,
        "SELECT id || '|' || reference || '|' || applicant_name || '|' || status "
        "FROM visa_applications ORDER BY id",
    )


def databases(state: sandbox.SandboxState) -> set[str]:
    return set(psql(state, "SELECT datname FROM pg_database", "postgres"))


def down_files(state: sandbox.SandboxState) -> dict[str, bool]:
    return {host: sh(state, host, f"test -e {shlex.quote(DOWN_FILE)}")[0] == 0 for host in WEB}


def locks(state: sandbox.SandboxState) -> dict[str, bool]:
    path = f"{APP_ROOT}/.bgdeploy/lock"
    return {host: sh(state, host, f"test -e {path}")[0] == 0 for host in WEB}


def api(state: sandbox.SandboxState, web: str, method: str = "GET", **kwargs: Any) -> Any:
    host = next(h for h in state.group("web") if h.name == web)
    token = sandbox.load_secrets(state.name)["API_TOKEN"]
    return httpx.request(
        method, f"http://127.0.0.1:{host.ports['http']}/api/visa-applications",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=15, **kwargs,
    )  # fmt: skip


class Poller:
    """Requests ``/`` on every web host until stopped, keeping each host's status codes."""

    def __init__(self, state: sandbox.SandboxState) -> None:
        self.urls = {h.name: f"http://127.0.0.1:{h.ports['http']}/" for h in state.group("web")}
        self.seen: dict[str, list[int]] = {name: [] for name in self.urls}
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self.poll, args=(name,), daemon=True) for name in self.urls
        ]

    def poll(self, name: str) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                try:
                    self.seen[name].append(client.get(self.urls[name]).status_code)
                except httpx.HTTPError:
                    self.seen[name].append(0)
                time.sleep(0.03)

    def __enter__(self) -> Poller:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_restore_round_trip(snap: sandbox.SandboxState) -> None:
    add_rows(snap, "Before One", "Before Two")
    kept = rows(snap)
    created = bgdeploy(snap, "snapshot", "sandbox", "create", "--name", "it-base")
    assert created.returncode == 0, created.stdout + created.stderr
    assert "created it-base.dump" in created.stdout

    # Written after the snapshot: a new row, and a change to one that was there.
    add_rows(snap, "After Snapshot")
    psql(
        snap, "UPDATE visa_applications SET status = 'rejected' WHERE applicant_name = 'Before One'"
    )
    assert len(rows(snap)) == len(kept) + 1 and rows(snap)[:-1] != kept

    listed = bgdeploy(snap, "snapshot", "sandbox", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entry = next(s for s in json.loads(listed.stdout) if s["name"] == "it-base")
    assert entry["size"] > 0 and entry["sha256"] is True
    verified = bgdeploy(snap, "snapshot", "sandbox", "verify", "it-base")
    assert verified.returncode == 0 and "it-base.dump verified" in verified.stdout

    with Poller(snap) as poller:
        restored = bgdeploy(snap, "snapshot", "sandbox", "restore", "it-base", "--yes")
        time.sleep(0.5)
    print(restored.stdout, restored.stderr)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert rows(snap) == kept  # the later row is gone, the rest exactly as it was
    # Every host was in maintenance mode during the swap, and serves again after it.
    for host, seen in poller.seen.items():
        assert 503 in seen, (host, seen)
        assert seen[-1] == 200, (host, seen[-5:])
    assert down_files(snap) == {"web1": False, "web2": False}
    assert locks(snap) == {"web1": False, "web2": False}
    # The replaced database is kept; no scratch database is left.
    assert f"{DB}_before_restore" in databases(snap) and f"{DB}_restore" not in databases(snap)
    after = psql(
        snap, "SELECT count(*) FROM visa_applications WHERE applicant_name = 'After Snapshot'",
        f"{DB}_before_restore",
    )  # fmt: skip
    assert after == ["1"]
    # The app's role owns what was restored: it reads and writes through the app.
    assert api(snap, "web1").status_code == 200
    application = {"applicant_name": "Through The App", "destination_country": "DE"}
    made = api(snap, "web2", "POST", json={**application, "visa_type": "work"})
    assert made.status_code == 202, made.text
    # The queue workers (restarted after the swap) process the job against the new database.
    deadline = time.monotonic() + 30
    while not rows(snap)[-1].endswith("|Through The App|processed"):
        assert time.monotonic() < deadline, rows(snap)[-1]
        time.sleep(0.5)
    history = bgdeploy(snap, "history", "sandbox", "--json")
    restores = [e for e in json.loads(history.stdout) if e["event"] == "snapshot_restore"]
    assert {e["host"] for e in restores if e["result"] == "ok"} == set(WEB)


def test_truncated_snapshot_fails_verify_and_is_refused(snap: sandbox.SandboxState) -> None:
    created = bgdeploy(snap, "snapshot", "sandbox", "create", "--name", "it-trunc")
    assert created.returncode == 0, created.stdout + created.stderr
    dump = f"{BACKUPS}/it-trunc.dump"
    root(snap, "db", f"truncate -s $(( $(stat -c %s {dump}) / 2 )) {dump}")
    add_rows(snap, "Live After Trunc")
    live = rows(snap)

    verified = bgdeploy(snap, "snapshot", "sandbox", "verify", "it-trunc")
    assert verified.returncode == 1 and "sha256 does not match" in verified.stdout
    refused = bgdeploy(snap, "snapshot", "sandbox", "restore", "it-trunc", "--yes")
    assert refused.returncode == 1 and "failed verification" in refused.stderr
    assert rows(snap) == live

    # Even with a sidecar that matches the truncated file, pg_restore's full read catches it.
    root(snap, "db", f"cd {BACKUPS} && sha256sum it-trunc.dump > it-trunc.dump.sha256")
    verified = bgdeploy(snap, "snapshot", "sandbox", "verify", "it-trunc")
    assert verified.returncode == 1 and "pg_restore" in verified.stdout, verified.stdout
    refused = bgdeploy(snap, "snapshot", "sandbox", "restore", "it-trunc", "--yes")
    assert refused.returncode == 1
    assert rows(snap) == live
    assert down_files(snap) == {"web1": False, "web2": False}
    assert f"{DB}_restore" not in databases(snap)


def test_restore_answered_no_changes_nothing(snap: sandbox.SandboxState) -> None:
    created = bgdeploy(snap, "snapshot", "sandbox", "create", "--name", "it-no")
    assert created.returncode == 0, created.stdout + created.stderr
    add_rows(snap, "Still Here After No")
    live = rows(snap)
    answered = bgdeploy(snap, "snapshot", "sandbox", "restore", "it-no", stdin="n\n")
    assert answered.returncode == 1, answered.stdout + answered.stderr
    assert "Restore it-no" in answered.stdout + answered.stderr
    assert rows(snap) == live
    assert down_files(snap) == {"web1": False, "web2": False}
    assert locks(snap) == {"web1": False, "web2": False}


def test_restore_failing_on_one_host_leaves_every_host_up(snap: sandbox.SandboxState) -> None:
    created = bgdeploy(snap, "snapshot", "sandbox", "create", "--name", "it-fail")
    assert created.returncode == 0, created.stdout + created.stderr
    add_rows(snap, "Survives A Failed Restore")
    live = rows(snap)
    framework = f"{APP_ROOT}/shared/storage/framework"
    mode = root(snap, "web2", f"stat -c %a {framework}").strip()
    root(snap, "web2", f"chmod a-w {framework}")  # php artisan down cannot write there
    try:
        failed = bgdeploy(snap, "snapshot", "sandbox", "restore", "it-fail", "--yes")
    finally:
        root(snap, "web2", f"chmod {mode} {framework}")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "maintenance mode failed on web2" in failed.stderr
    assert rows(snap) == live
    assert down_files(snap) == {"web1": False, "web2": False}  # web1 was put back up
    assert locks(snap) == {"web1": False, "web2": False}
    assert f"{DB}_restore" not in databases(snap)
    for web in WEB:
        assert api(snap, web).status_code == 200


def test_restore_is_refused_while_a_deploy_holds_the_lock(snap: sandbox.SandboxState) -> None:
    created = bgdeploy(snap, "snapshot", "sandbox", "create", "--name", "it-lock")
    assert created.returncode == 0, created.stdout + created.stderr
    add_rows(snap, "Kept While Locked")
    live = rows(snap)
    holder = json.dumps(
        {"host": "ci", "owner": "ci@runner", "pid": 7, "ref": "v9", "run": "0123456789ab",
         "time": "2026-11-28T06:00:00Z"}, separators=(",", ":"),
    )  # fmt: skip
    lock = f"{APP_ROOT}/.bgdeploy/lock"
    sh(snap, "web2", f"printf '%s\\n' {shlex.quote(holder)} > {lock}")
    try:
        refused = bgdeploy(snap, "snapshot", "sandbox", "restore", "it-lock", "--yes")
        assert locks(snap) == {"web1": False, "web2": True}  # web1's lock given back
    finally:
        sh(snap, "web2", f"rm -f {lock}")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "ci@runner" in refused.stderr
    assert rows(snap) == live
    assert down_files(snap) == {"web1": False, "web2": False}


def test_migrate_fresh_only_where_not_production(snap: sandbox.SandboxState) -> None:
    add_rows(snap, "Gone After Fresh")
    answered = bgdeploy(snap, "db", "sandbox", "fresh", "--seed", stdin="n\n")
    assert answered.returncode == 1 and any("Gone After Fresh" in r for r in rows(snap))

    fresh = bgdeploy(snap, "db", "sandbox", "fresh", "--seed", "--yes")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    names = [row.split("|")[2] for row in rows(snap)]
    assert names == ["Rahim Uddin", "Nusrat Jahan", "Karim Hossain"]  # the seeder's rows

    # prod is marked production in group_data: refused before any host is reached.
    refused = run(["bgdeploy", "db", "prod", "fresh", "--seed", "--yes"])
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "marked production" in refused.stderr


def test_migrate_fresh_is_refused_while_a_deploy_holds_the_lock(snap: sandbox.SandboxState) -> None:
    add_rows(snap, "Kept While Fresh Is Locked")
    live = rows(snap)
    holder = json.dumps(
        {"host": "ci", "owner": "ci@runner", "pid": 7, "ref": "v9", "run": "0123456789ac",
         "time": "2026-11-28T06:00:00Z"}, separators=(",", ":"),
    )  # fmt: skip
    lock = f"{APP_ROOT}/.bgdeploy/lock"
    sh(snap, "web2", f"printf '%s\\n' {shlex.quote(holder)} > {lock}")
    try:
        refused = bgdeploy(snap, "db", "sandbox", "fresh", "--yes")
        assert locks(snap) == {"web1": False, "web2": True}  # web1's lock given back
    finally:
        sh(snap, "web2", f"rm -f {lock}")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "held by ci@runner" in refused.stderr and "bgdeploy unlock sandbox" in refused.stderr
    assert rows(snap) == live
