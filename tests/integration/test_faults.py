"""Faults (issue 9), on a sandbox of their own: 2 web hosts and a db host, provisioned, v2 live.

Each fault is made real while a deploy runs (a container stopped, PostgreSQL stopped, Ctrl-C,
a full snapshot filesystem) at the moment the deploy's own progress names (pyinfra prints
``--> Starting operation: STEP``), and each test ends with a consistent fleet: every web host
serving one release, no lock left, the fault in the report and the journal.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgdeploy import sandbox
from bgdeploy.sandbox import sampleapp

from .conftest import (
    BACKUPS,
    DEPLOY_V2,
    LOCK,
    PROVISION,
    ROOT,
    commit,
    journal,
    own_sandbox,
    run,
    sandbox_run_env,
    sh,
    unique_name,
)

WEB = ("web1", "web2")

SLOW_MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\DB;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->string('fault_marker')->nullable();
        });
        DB::statement('SELECT pg_sleep(15)');
    }

    public function down()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->dropColumn('fault_marker');
        });
    }
};
"""


@pytest.fixture(scope="module")
def fleet_v2(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("faults", docker_client, PROVISION, DEPLOY_V2) as state:
        yield state


# Helpers
# -------


def served(state: sandbox.SandboxState, names: tuple[str, ...] = WEB) -> dict[str, Any]:
    """Each web host through its public port: (status, X-Colour, X-Release)."""
    found = {}
    for web in sandbox.load_state(state.name).group("web"):
        if web.name not in names:
            continue
        response = httpx.get(f"http://127.0.0.1:{web.ports['http']}/api/health", timeout=15)
        found[web.name] = (
            response.status_code,
            response.headers.get("X-Colour", ""),
            response.headers.get("X-Release", ""),
        )
    return found


def one_release(state: sandbox.SandboxState) -> tuple[str, str]:
    """The (colour, commit) every web host serves, healthy; fails when they differ."""
    found = served(state)
    assert len(set(found.values())) == 1 and next(iter(found.values()))[0] == 200, found
    _, colour, sha = next(iter(found.values()))
    return colour, sha


def on(state: sandbox.SandboxState, host: str, command: str) -> tuple[int, str]:
    """``sh`` on the sandbox as it is now (a host started again has new ports)."""
    return sh(sandbox.load_state(state.name), host, command)


def locked(state: sandbox.SandboxState) -> list[str]:
    return [name for name in WEB if on(state, name, f"test -e {LOCK}")[0] == 0]


def db_exec(docker_client: Any, state: sandbox.SandboxState, command: str) -> str:
    """A command as root in the db container (the db host's own console, not SSH)."""
    (db,) = state.group("db")
    code, out = docker_client.containers.get(db.container).exec_run(["sh", "-c", command])
    assert code == 0, out.decode(errors="replace")
    return out.decode(errors="replace")


def psql(docker_client: Any, state: sandbox.SandboxState, sql: str) -> str:
    (db,) = state.group("db")
    code, out = docker_client.containers.get(db.container).exec_run(
        ["psql", "-X", "-d", "bideshgomon", "-tAc", sql], user="postgres", workdir="/"
    )
    assert code == 0, out.decode(errors="replace")
    return out.decode(errors="replace").strip()


def applied(docker_client: Any, state: sandbox.SandboxState) -> str:
    return psql(docker_client, state, "SELECT migration FROM migrations ORDER BY id")


def columns(docker_client: Any, state: sandbox.SandboxState) -> str:
    return psql(
        docker_client,
        state,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'visa_applications' ORDER BY column_name",
    )


def harmless(state: sandbox.SandboxState) -> tuple[str, str]:
    return commit(state, {"public/fault.txt": f"{unique_name('x')}\n"}, "A harmless release")


def slow_migration(state: sandbox.SandboxState) -> tuple[str, str]:
    """A release whose migration adds a column, then takes 15 s (inside its transaction)."""
    path = f"database/migrations/2025_10_01_{unique_name('x')[2:].replace('-', '')}_slow.php"
    return commit(state, {path: SLOW_MIGRATION}, "A slow migration")


def slow_composer(state: sandbox.SandboxState) -> tuple[str, str]:
    """A release whose composer install sleeps 30 s (a post-autoload-dump script)."""
    composer = json.loads((sampleapp.APP_DIR / "composer.json").read_text())
    composer["scripts"]["post-autoload-dump"].append("sleep 30")
    return commit(state, {"composer.json": json.dumps(composer, indent=4) + "\n"}, "slow")


class Watched:
    """A deploy process whose progress (stderr) is read line by line as it comes; ``on``
    maps a line's text to an action run once, when the first line containing it arrives."""

    def __init__(self, args: list[str], state: sandbox.SandboxState, on: dict[str, Any]) -> None:
        env = {**os.environ, "PYINFRA_PROGRESS": "off", **sandbox_run_env(state)}
        program = str(Path(sys.executable).parent / args[0])
        if args[:2] == ["bgdeploy", "deploy"]:
            args = [*args, "--verbose"]  # pyinfra's log too: its lines are what is watched
        self.proc = subprocess.Popen(
            [program, *args[1:]],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.fired: list[str] = []
        self.pending: dict[str, Callable[[], Any]] = dict(on)
        self.out: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stdout = threading.Thread(
            target=lambda: self.out.append(self.proc.stdout.read()),  # type: ignore[union-attr]
            daemon=True,
        )
        self.stdout.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            for text in list(self.pending):
                if text in line:
                    action = self.pending.pop(text)
                    self.fired.append(text)
                    action()

    def wait(self, timeout: float = 600) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout)
        self.stdout.join(timeout)
        return code, "".join(self.out), "".join(self.lines)


# 1. A web host stopped mid-deploy
# --------------------------------


def test_web_host_stopped_mid_rollout_is_behind_and_locked(
    fleet_v2: sandbox.SandboxState, docker_client: Any
) -> None:
    state = fleet_v2
    colour, before = one_release(state)
    tag, sha = harmless(state)
    web2 = docker_client.containers.get(state.group("web")[1].container)
    count = len(journal(state, "web1"))
    # Rolling batches of one: web1 first; web2 is stopped while web1 builds.
    deploy = Watched(
        ["pyinfra", "-y", "inventories/sandbox.py", "deploys/release.py",
         "--data", f"ref={tag}", "--data", "rolling_batch=1"],
        state,
        {"Starting operation: Install dependencies": lambda: web2.stop(timeout=1)},
    )  # fmt: skip
    code, _out, err = deploy.wait()
    assert deploy.fired, err[-4000:]
    assert code == 1, err[-4000:]
    # The batch that ran finished: web1 serves the release, journaled.
    assert served(state, ("web1",))["web1"] == (200, colour, sha)
    entries = journal(state, "web1")[count:]
    assert [e["event"] for e in entries] == ["deploy_start", "deploy_finish"]
    assert (entries[-1]["result"], entries[-1]["sha"]) == ("ok", sha)
    # web2 failed, by name, and its lock (unreachable) is named for `bgdeploy unlock`.
    assert re.search(r"\[web2\].*(failed|release failed)", err), err[-4000:]
    assert "bgdeploy unlock sandbox" in err

    state = sandbox.start_host(state.name, "web2", docker_client)
    assert served(state)["web2"] == (200, colour, before)  # it kept its release
    status = run(["bgdeploy", "status", "sandbox"], env=sandbox_run_env(state))
    rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    assert "behind" in rows["web2"] and sha[:12] in rows["web2"], status.stdout
    assert "behind" not in rows["web1"], status.stdout
    as_json = run(["bgdeploy", "status", "sandbox", "--json"], env=sandbox_run_env(state))
    assert {n: h["behind"] for n, h in json.loads(as_json.stdout).items()} == {
        "web1": False,
        "web2": True,
    }

    # The dead run's lock on web2 refuses the next deploy (exit 3) until it is broken.
    assert locked(state) == ["web2"]
    again = run(["bgdeploy", "deploy", "sandbox", "--ref", tag], env=sandbox_run_env(state))
    assert again.returncode == 3 and "bgdeploy unlock sandbox" in again.stderr, again.stderr
    assert re.search(rf"deploying {tag} since 20\d\d-\d\d-\d\dT", again.stderr), again.stderr
    unlocked = run(["bgdeploy", "unlock", "sandbox", "--yes"], env=sandbox_run_env(state))
    assert unlocked.returncode == 0 and "web2  broke the lock" in unlocked.stdout
    caught_up = run(["bgdeploy", "deploy", "sandbox", "--ref", tag], env=sandbox_run_env(state))
    assert caught_up.returncode == 0, caught_up.stderr[-4000:]
    assert one_release(state) == (colour, sha)
    assert locked(state) == []


# 2. The db host down at migration time
# -------------------------------------


def test_database_down_at_migration_switches_nothing(
    fleet_v2: sandbox.SandboxState, docker_client: Any
) -> None:
    state = fleet_v2
    colour, before = one_release(state)
    migrations, schema = applied(docker_client, state), columns(docker_client, state)
    tag, _sha = slow_migration(state)

    def stop_postgres() -> None:
        db_exec(docker_client, state, "service postgresql stop")

    def start_postgres() -> None:
        db_exec(docker_client, state, "service postgresql start")

    deploy = Watched(
        ["bgdeploy", "deploy", "sandbox", "--ref", tag, "--json"],
        state,
        # The snapshot is taken and verified; PostgreSQL goes down as migrations start, and
        # comes back once the deploy saw the migration fail (it then restores the release).
        {"Starting operation: Run migrations": stop_postgres, "migrate failed": start_postgres},
    )
    try:
        code, out, err = deploy.wait()
    finally:
        start_postgres()
    assert deploy.fired == ["Starting operation: Run migrations", "migrate failed"], err[-4000:]
    assert code == 1, err[-4000:]
    report = json.loads(out)
    hosts = {h["host"]: h for h in report["hosts"] if "web" in h["roles"]}
    assert hosts["web1"]["failed_step"] == "migrate"
    assert report["snapshot"]["name"] in report["error"]  # the snapshot taken before is named
    for name, outcome in hosts.items():
        assert outcome["result"] == "failed" and outcome["sha_after"] == before, outcome
        assert journal(state, name)[-1]["event"] == "deploy_fail"
    # Nothing switched, nothing half-migrated, no lock left.
    assert one_release(state) == (colour, before)
    assert applied(docker_client, state) == migrations
    assert columns(docker_client, state) == schema
    assert locked(state) == []


# 3. Ctrl-C at each phase
# -----------------------

PHASES = {
    "fetch": ("in-place", "Starting operation: Preflight", harmless),
    "build": ("in-place", "Starting operation: Install dependencies", slow_composer),
    "migrate": ("in-place", "Starting operation: Run migrations", slow_migration),
    "switch": ("blue-green", "Starting operation: Switch colours", harmless),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_ctrl_c_at_each_phase_leaves_one_release(
    fleet_v2: sandbox.SandboxState, docker_client: Any, phase: str
) -> None:
    state = fleet_v2
    strategy, progress, release = PHASES[phase]
    colour, before = one_release(state)
    migrations, schema = applied(docker_client, state), columns(docker_client, state)
    tag, sha = release(state)
    count = {name: len(journal(state, name)) for name in WEB}
    deploy = Watched(
        ["bgdeploy", "deploy", "sandbox", "--ref", tag, "--strategy", strategy],
        state,
        {progress: lambda: deploy.proc.send_signal(signal.SIGINT)},
    )
    code, out, err = deploy.wait()
    assert deploy.fired == [progress], err[-4000:]
    assert code == 130, out + err[-4000:]
    assert "interrupted" in out + err
    # Every host on the same colour and release: as before, or (blue-green) all switched.
    switched = colour if strategy == "in-place" else {"blue": "green", "green": "blue"}[colour]
    assert one_release(state) in {(colour, before), (switched, sha)}
    assert locked(state) == []
    for name in WEB:
        entries = journal(state, name)[count[name] :]
        assert entries and entries[-1]["details"].get("interrupted") is True, entries
    if phase == "migrate":
        # The migration was cut off inside its transaction: nothing of it stays.
        assert applied(docker_client, state) == migrations
        assert columns(docker_client, state) == schema


# 4. The snapshot filesystem full
# -------------------------------


def test_full_snapshot_disk_refuses_before_migrating(
    fleet_v2: sandbox.SandboxState, docker_client: Any
) -> None:
    state = fleet_v2
    colour, before = one_release(state)
    migrations = applied(docker_client, state)
    tag, _sha = slow_migration(state)
    count = {name: len(journal(state, name)) for name in WEB}
    # Fill the db host's snapshot filesystem (its own small tmpfs, see bgdeploy.sandbox).
    assert db_exec(docker_client, state, f"stat -f -c %T {BACKUPS}").strip() == "tmpfs"
    db_exec(
        docker_client,
        state,
        f"dd if=/dev/zero of={BACKUPS}/filler bs=1M 2>/dev/null; "
        f"dd if=/dev/zero of={BACKUPS}/filler2 bs=4k 2>/dev/null; df -k {BACKUPS}; true",
    )
    try:
        proc = run(
            ["bgdeploy", "deploy", "sandbox", "--ref", tag, "--json"], env=sandbox_run_env(state)
        )
    finally:
        db_exec(docker_client, state, f"rm -f {BACKUPS}/filler {BACKUPS}/filler2")
    # Exit 1: an operational failure to fix (free the disk), not a policy (3).
    assert proc.returncode == 1, proc.stdout + proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert report["refusal"]["kind"] == "error"
    assert "free in /var/backups/bideshgomon" in report["refusal"]["message"]
    assert "the deploy would stop at its snapshot" in proc.stderr
    assert "Starting operation" not in proc.stderr  # refused before any step
    assert applied(docker_client, state) == migrations
    assert one_release(state) == (colour, before)
    assert {name: len(journal(state, name)) for name in WEB} == count
    assert locked(state) == []
