"""On-call commands against the deployed session fleet (after the release tests): logs, the
kill switch, restarts, cache clears, database checks.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from bgdeploy import sandbox

from .conftest import BIN, ROOT, journal, psql, run, sandbox_run_env, sh

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


Outcomes = dict[str, tuple[int, str, float]]


def start_query(
    state: sandbox.SandboxState, outcomes: Outcomes, name: str, seconds: int
) -> threading.Thread:
    """``SELECT pg_sleep(seconds)`` as the app's database user from web1, in a thread; its
    exit code, output and duration land in ``outcomes[name]``."""
    db = state.group("db")[0]
    password = sandbox.load_secrets(state.name)["DB_PASSWORD"]
    command = (
        f"PGPASSWORD={shlex.quote(password)} PGAPPNAME=it-{name} psql -X -tA "
        f"-h {db.private_ip} -U bideshgomon -d bideshgomon -c 'SELECT pg_sleep({seconds})'"
    )

    def query() -> None:
        started = time.monotonic()
        code, out = sh(state, "web1", command, timeout=150)
        outcomes[name] = (code, out, time.monotonic() - started)

    thread = threading.Thread(target=query, daemon=True)
    thread.start()
    return thread


def test_kill_long_queries_ends_the_long_query_only(deployed: sandbox.SandboxState) -> None:
    """Queries of the app's database user from a web host: pg_sleep(60) is ended by
    ``--older-than 5s``; pg_sleep(2) from the same moment, and pg_sleep(4) started just
    before the command (never 5 s old), complete normally."""
    outcomes: Outcomes = {}
    threads = [start_query(deployed, outcomes, "long", 60)]
    threads.append(start_query(deployed, outcomes, "short", 2))
    time.sleep(6)
    threads.append(start_query(deployed, outcomes, "young", 4))
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


def backend_pid(state: sandbox.SandboxState, name: str) -> int:
    """The backend of the query started as ``name`` (:func:`start_query`), once it runs."""
    sql = f"SELECT pid FROM pg_stat_activity WHERE application_name = 'it-{name}'"
    deadline = time.monotonic() + 30
    while not (found := psql(state, sql)):
        assert time.monotonic() < deadline, f"query {name} never started"
        time.sleep(0.2)
    return int(found)


def test_kill_long_queries_spares_a_listed_query_that_finished_before_the_confirmation(
    deployed: sandbox.SandboxState,
) -> None:
    """Two queries listed; the operator confirms after one of them ended and another one,
    not listed, has run longer than 5 s: only the listed one still running is terminated,
    and the output says which had finished."""
    outcomes: Outcomes = {}
    long = start_query(deployed, outcomes, "listed-long", 90)
    ending = start_query(deployed, outcomes, "listed-ending", 20)
    pids = {name: backend_pid(deployed, name) for name in ("listed-long", "listed-ending")}
    time.sleep(6)
    proc = subprocess.Popen(
        [str(BIN / "bgdeploy"), "emergency", "sandbox", "kill-long-queries", "--older-than", "5s"],
        cwd=ROOT, env={**os.environ, **sandbox_run_env(deployed)}, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    listing = []
    try:
        while not any("pg_sleep(20)" in line for line in listing):
            line = proc.stdout.readline()
            assert line, f"no listing: {listing}"
            listing.append(line)
        while not any("pg_sleep(90)" in line for line in listing):
            listing.append(proc.stdout.readline())
        # While the operator reads the list, a query starts (and grows older than 5 s),
        # and one of the listed queries ends.
        late = start_query(deployed, outcomes, "late", 25)
        pids["late"] = backend_pid(deployed, "late")
        ending.join(timeout=60)
        assert outcomes["listed-ending"][0] == 0, outcomes
        proc.stdin.write("y\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    long.join(timeout=90)
    late.join(timeout=60)
    print("".join(listing) + out)
    assert proc.returncode == 0, "".join(listing) + out + err
    assert f"pid {pids['late']} " not in out and outcomes["late"][0] == 0  # never listed
    long_pid, ending_pid = pids["listed-long"], pids["listed-ending"]
    assert f"pid {long_pid} terminated: SELECT pg_sleep(90)" in out, out
    (said,) = [line for line in out.splitlines() if f"pid {ending_pid} " in line]
    assert "finished (" in said and said.endswith("SELECT pg_sleep(20)"), out  # it had ended
    code, text, seconds = outcomes["listed-long"]
    assert code != 0 and "terminating connection due to administrator command" in text, text
    assert seconds < 60
    entry = [e for e in journal(deployed, "db") if e["event"] == "emergency"][-1]
    assert entry["message"] == f"terminated: {long_pid}; had finished: {ending_pid}"
