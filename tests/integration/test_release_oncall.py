"""On-call commands against the deployed session fleet (after the release tests): logs, the
kill switch, restarts, cache clears, database checks.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import run, sandbox_run_env, sh

FLAG = "visa_new_flow_20250601"


@pytest.fixture(scope="module")
def deployed(provisioned: sandbox.SandboxState) -> Iterator[sandbox.SandboxState]:
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v2"], env=sandbox_run_env(provisioned))
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield provisioned


def flag_on_every_host(state: sandbox.SandboxState) -> set[bool]:
    values = set()
    for web in state.group("web"):
        response = httpx.get(
            f"http://127.0.0.1:{web.ports['http']}/api/features", params={"user_id": 1}, timeout=15
        )
        assert response.status_code == 200, response.text
        values.add(bool(response.json()["flags"][FLAG]))
    return values


def test_kill_switch_changes_every_host(deployed: sandbox.SandboxState) -> None:
    env = sandbox_run_env(deployed)
    assert flag_on_every_host(deployed) == {True}  # user 1 is whitelisted in config/features.php
    proc = run(["bgdeploy", "flags", "sandbox", "disable", FLAG], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        assert flag_on_every_host(deployed) == {False}
        history = run(["bgdeploy", "history", "sandbox"], env=env)
        assert "flag" in history.stdout
    finally:
        assert run(["bgdeploy", "flags", "sandbox", "reset", FLAG], env=env).returncode == 0
    assert flag_on_every_host(deployed) == {True}


def test_hostile_flag_name_is_refused_before_any_host(deployed: sandbox.SandboxState) -> None:
    proc = run(
        ["bgdeploy", "flags", "sandbox", "disable", "x; touch /tmp/p"],
        env=sandbox_run_env(deployed),
    )
    assert proc.returncode == 2 and "not valid" in proc.stderr


def test_logs_come_from_every_host_prefixed(deployed: sandbox.SandboxState) -> None:
    for web in deployed.group("web"):
        httpx.get(f"http://127.0.0.1:{web.ports['http']}/", timeout=15)
    proc = run(
        ["bgdeploy", "emergency", "sandbox", "logs", "--source", "nginx-access", "--lines", "5"],
        env=sandbox_run_env(deployed),
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines and all(line.startswith(("[web1] ", "[web2] ")) for line in lines)
    assert {line.split()[0] for line in lines} == {"[web1]", "[web2]"}
    assert sum(line.startswith("[web1] ") for line in lines) <= 5


def test_graceful_restarts_and_cache_clear(deployed: sandbox.SandboxState) -> None:
    env = sandbox_run_env(deployed)
    proc = run(
        ["bgdeploy", "emergency", "sandbox", "restart", "php-fpm", "nginx", "workers"], env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "restarted php-fpm, nginx, workers" in proc.stdout
    proc = run(["bgdeploy", "emergency", "sandbox", "clear-caches"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for web in deployed.group("web"):
        assert (
            httpx.get(f"http://127.0.0.1:{web.ports['http']}/api/health", timeout=15).status_code
            == 200
        )


def test_database_checks(deployed: sandbox.SandboxState) -> None:
    env = sandbox_run_env(deployed)
    proc = run(["bgdeploy", "emergency", "sandbox", "table-sizes"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "public.visa_applications" in proc.stdout
    proc = run(["bgdeploy", "emergency", "sandbox", "db-connections"], env=env)
    assert proc.returncode == 0 and "bideshgomon" in proc.stdout


def test_kill_long_queries_ends_the_long_query_only(deployed: sandbox.SandboxState) -> None:
    """Queries of the app's database user from a web host: pg_sleep(60) is ended by
    ``--older-than 5s``; pg_sleep(2) from the same moment, and pg_sleep(4) started just
    before the command (never 5 s old), complete normally."""
    db = deployed.group("db")[0]
    password = sandbox.load_secrets(deployed.name)["DB_PASSWORD"]
    outcomes: dict[str, tuple[int, str, float]] = {}

    def query(name: str, seconds: int) -> None:
        command = (
            f"PGPASSWORD={shlex.quote(password)} PGAPPNAME=it-{name} psql -X -tA "
            f"-h {db.private_ip} -U bideshgomon -d bideshgomon -c 'SELECT pg_sleep({seconds})'"
        )
        started = time.monotonic()
        code, out = sh(deployed, "web1", command, timeout=120)
        outcomes[name] = (code, out, time.monotonic() - started)

    def start(name: str, seconds: int) -> threading.Thread:
        thread = threading.Thread(target=query, args=(name, seconds), daemon=True)
        thread.start()
        return thread

    threads = [start("long", 60), start("short", 2)]
    time.sleep(6)
    threads.append(start("young", 4))
    time.sleep(0.5)
    proc = run(
        ["bgdeploy", "emergency", "sandbox", "kill-long-queries", "--older-than", "5s", "--yes"],
        env=sandbox_run_env(deployed),
    )
    for thread in threads:
        thread.join(timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pg_sleep(60)" in proc.stdout and "pg_sleep(4)" not in proc.stdout
    code, out, seconds = outcomes["long"]
    assert code != 0 and "terminating connection due to administrator command" in out, out
    assert seconds < 30
    for name in ("short", "young"):
        code, out, seconds = outcomes[name]
        assert code == 0 and "terminat" not in out, (name, out)
