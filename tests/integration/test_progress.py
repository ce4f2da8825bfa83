"""What the operator sees of a run, on the session fleet: in a terminal (a pseudo-terminal
whose screen a terminal emulator, pyte, draws as a real one would) the stage and a line per
host redrawn in place, then the final table; without a terminal, timestamped lines only; the
full log in a file named at the end and in the journal; ``--quiet`` and ``--json``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pyte

from bgdeploy import sandbox

from .conftest import (
    BIN,
    ROOT,
    commit,
    journal,
    other_release,
    psql,
    run,
    sandbox_run_env,
    settle,
    unique_name,
)

COLUMNS, ROWS = 140, 60
STAMPED = re.compile(r"^\d\d:\d\d:\d\d ")
HOST_ROW = re.compile(r"^(web\d)\s{2,}(\S.*?)\s{2,}(\d+/\d+)\s+(\d+)s")


def starting_release(state: sandbox.SandboxState) -> str:
    """The fleet settled on one live release (v1 deployed first on a fleet that has none)."""
    proc = run(["bgdeploy", "status", "sandbox", "--json"], env=sandbox_run_env(state))
    hosts = json.loads(proc.stdout)
    if not all(host["heads"].get(host["current"]) for host in hosts.values()):
        proc = run(["bgdeploy", "deploy", "sandbox", "--ref", "v1"], env=sandbox_run_env(state))
        assert proc.returncode == 0, proc.stderr[-3000:]
    return settle(state)[1]


def in_terminal(args: list[str], env: dict[str, str], timeout: float = 600) -> tuple[int, bytes]:
    """Run a bgdeploy command with stdin, stdout and stderr on a pseudo-terminal of
    COLUMNS x ROWS; its exit code and every byte it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    full_env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "", "LINES": "", **env}
    full_env = {k: v for k, v in full_env.items() if v != "" or k.startswith("BGDEPLOY_")}
    proc = subprocess.Popen(
        [str(BIN / args[0]), *args[1:]],
        cwd=ROOT,
        env=full_env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    break
                if not chunk:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return code, bytes(output)


def screens(
    output: bytes, step: int = 512, *patterns: re.Pattern[str]
) -> tuple[list[str], dict[int, set[str]]]:
    """The final screen, and for each screen row every line matching one of ``patterns``
    (default: a host line) it showed on the way (the terminal fed ``step`` bytes at a time,
    as they came)."""
    wanted = patterns or (HOST_ROW,)
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    seen: dict[int, set[str]] = {}
    for start in range(0, len(output), step):
        stream.feed(output[start : start + step])
        for row, line in enumerate(screen.display):
            if any(pattern.match(line) for pattern in wanted):
                seen.setdefault(row, set()).add(line.rstrip())
    return [line.rstrip() for line in screen.display], seen


def view_rows(output: bytes, step: int = 512) -> dict[tuple[str, int], set[str]]:
    """For each host and the row its line had below the live view's stage line, every step
    that row showed (the terminal fed ``step`` bytes at a time, as they came)."""
    screen = pyte.Screen(COLUMNS, ROWS)
    stream = pyte.ByteStream(screen)
    found: dict[tuple[str, int], set[str]] = {}
    for start in range(0, len(output), step):
        stream.feed(output[start : start + step])
        stage: int | None = None
        for row, line in enumerate(screen.display):
            if line.startswith("stage: "):
                stage = row
            match = HOST_ROW.match(line)
            if match and stage is not None:
                key = (match.group(1), row - stage)
                found.setdefault(key, set()).add(match.group(2).strip())
    return found


def test_in_a_terminal_each_host_has_one_line_redrawn_in_place_then_the_table(
    provisioned: sandbox.SandboxState,
) -> None:
    state = provisioned
    ref = other_release(state, starting_release(state))
    code, output = in_terminal(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref], env=sandbox_run_env(state)
    )
    final, seen = screens(output)
    text = "\n".join(final)
    assert code == 0, text
    # Redrawn in place: the row a host's line has below the stage line showed it going from
    # step to step, through its steps. (bgdeploy's own lines, printed above the view, move the
    # whole view down now and then: a loaded run moved it between each of web2's steps, so
    # the row is counted from the stage line, not from the top of the screen.)
    by_place = view_rows(output)
    steps_on_a_row: dict[str, int] = {}
    for (host, _), names in by_place.items():
        steps_on_a_row[host] = max(steps_on_a_row.get(host, 0), len(names))
    steps_seen: dict[str, set[str]] = {}
    for lines in seen.values():  # every host line the screen showed, wherever
        for line in lines:
            match = HOST_ROW.match(line)
            assert match is not None
            steps_seen.setdefault(match.group(1), set()).add(match.group(2).strip())
    assert sorted(steps_seen) == ["web1", "web2"], seen
    assert max(steps_on_a_row.values()) >= 3, by_place
    # (A host that receives the assets has few steps of its own, and a loaded machine may
    # draw them between two samples of the screen: in a full run web2 showed only "waiting"
    # and "done". The host that builds shows its steps one after the other in one place.)
    assert all(len(names) >= 2 for names in steps_seen.values()), steps_seen
    assert b"\x1b[1A" in output or b"\x1b[2K" in output  # the cursor went back up
    # The screen as the run left it: one stage line, one line per host, then the table.
    stage_rows = [i for i, line in enumerate(final) if line.startswith("stage: ")]
    matches = [(i, HOST_ROW.match(line)) for i, line in enumerate(final)]
    host_rows = {match.group(1): i for i, match in matches if match}
    table_row = next(i for i, line in enumerate(final) if line.startswith("host  sha before"))
    log_row = next(i for i, line in enumerate(final) if line.startswith("log: "))
    assert len(stage_rows) == 1, text
    assert sorted(host_rows) == ["web1", "web2"], text
    assert stage_rows[0] < min(host_rows.values()) < max(host_rows.values()) < table_row, text
    assert table_row < log_row, text
    assert all(match.group(2).strip() == "done" for _, match in matches if match), text
    assert "Starting operation" not in text  # pyinfra's log is in the file, not on screen
    assert f"deployed {ref}" in text


def test_without_a_terminal_plain_lines_a_log_file_named_and_journaled(
    provisioned: sandbox.SandboxState,
) -> None:
    state = provisioned
    ref = other_release(state, starting_release(state))
    proc = run(["bgdeploy", "deploy", "sandbox", "--ref", ref], env=sandbox_run_env(state))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\x1b[" not in proc.stderr + proc.stdout  # no escape codes in a CI log
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"deploying {ref} to sandbox (in-place), run ")
    log_line = lines[-1]
    assert log_line.startswith("log: ")
    body = lines[1:-1]
    assert body and all(STAMPED.match(line) for line in body), body
    for expected in ("stage: lock", "stage: build", "stage: go live", "web1: composer install ok"):
        assert any(expected in line for line in body), (expected, body)
    assert sum("stage: build" in line for line in body) == 1  # once, not once per host
    assert proc.stdout.startswith("host  sha before")
    # The log file: pyinfra's whole log, the events, the table; named in every web journal.
    log = Path(log_line.removeprefix("log: "))
    log = log if log.is_absolute() else ROOT / log
    content = log.read_text()
    assert "--> Starting operation: Install dependencies" in content
    assert "web2: verify health ok" in content
    assert proc.stdout.strip() in content
    for host in ("web1", "web2"):
        finish = [e for e in journal(state, host) if e["event"] == "deploy_finish"][-1]
        assert finish["details"]["log"] == str(log), finish
    # A rollback has its log too, named at the end and journaled.
    proc = run(["bgdeploy", "rollback", "sandbox"], env=sandbox_run_env(state))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.splitlines()[-1].startswith("log: ")
    entry = [e for e in journal(state, "web1") if e["event"] == "rollback"][-1]
    assert proc.stdout.strip() in Path(entry["details"]["log"]).read_text(), entry
    # Each host's steps, as a deploy's: a plain line each (on a terminal, a line per host).
    for host in ("web1", "web2"):
        assert f"{host}: verify health ok (" in proc.stderr, proc.stderr[-3000:]


def test_quiet_prints_only_the_table_and_json_is_unchanged(
    provisioned: sandbox.SandboxState,
) -> None:
    state = provisioned
    release = starting_release(state)
    ref = other_release(state, release)
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--quiet"], env=sandbox_run_env(state)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == ""
    assert proc.stdout.startswith("host  sha before") and f"deployed {ref}" in proc.stdout
    back = "v1" if ref == "v2" else "v2"
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", back, "--json", "--verbose"],
        env=sandbox_run_env(state),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)  # stdout is the JSON alone, as before
    assert report["ref"] == back and {h["host"] for h in report["hosts"]} >= {"web1", "web2"}
    assert "--> Starting operation: Install dependencies" in proc.stderr  # --verbose


PROBE_MIGRATION = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->string('NEWCOL')->nullable();
        });
    }

    public function down()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->dropColumn('NEWCOL');
        });
    }
};
"""


def fleet_as_read(state: sandbox.SandboxState) -> tuple[object, ...]:
    """What a plan must leave as it was: every host's journal, each web host's colours (the
    commit checked out and built in each, current, live, idle), the lock, the migrations."""
    proc = run(["bgdeploy", "status", "sandbox", "--json"], env=sandbox_run_env(state))
    hosts = json.loads(proc.stdout)
    colours = {
        name: {k: host[k] for k in ("current", "live", "idle", "heads", "built", "lock")}
        for name, host in hosts.items()
    }
    journals = {name: journal(state, name) for name in ("web1", "web2", "db")}
    return colours, journals, psql(state, "SELECT count(*) FROM migrations")


def test_the_plan_is_what_the_deploy_then_does_and_it_changes_nothing(
    provisioned: sandbox.SandboxState,
) -> None:
    state = provisioned
    starting_release(state)
    column = f"plan_{unique_name('p')[2:]}"
    name = f"2026_02_01_000000_add_{column}"
    ref, sha = commit(
        state,
        {f"database/migrations/{name}.php": PROBE_MIGRATION.replace("NEWCOL", column)},
        "a release with one migration, planned first",
        prefix="plan",
    )
    before = fleet_as_read(state)
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--plan", "--json"],
        env=sandbox_run_env(state),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    text = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--plan"], env=sandbox_run_env(state)
    ).stdout
    # pyinfra's own dry run of the deploy file prints the same plan, and adds no operation.
    dry = run(
        ["pyinfra", "inventories/sandbox.py", "deploys/release.py", "--dry", "--data",
         f"ref={ref}"],
        env=sandbox_run_env(state),
    )  # fmt: skip
    assert dry.returncode == 0, dry.stdout + dry.stderr[-3000:]
    said = dry.stdout + dry.stderr
    for line in text.splitlines():
        assert line.strip() in said, (line, said[-3000:])
    assert fleet_as_read(state) == before  # nothing changed on any host
    assert plan["sha"] == sha and plan["migrations"][-1] == name  # (v2's too, after v1)
    pending = len(plan["migrations"])
    assert f"migrations: {pending} pending, run once on web1 after a snapshot on db: " in text
    planned = {host["host"]: host for host in plan["hosts"]}
    assert planned["db"]["steps"] == ["snapshot"]
    assert "migrate" in planned["web1"]["steps"] and "migrate" not in planned["web2"]["steps"]

    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--json"], env=sandbox_run_env(state)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["sha"] == sha and report["migrations"] == plan["migrations"]
    for host in report["hosts"]:
        steps = [step["name"] for step in host["steps"]]
        assert steps == planned[host["host"]]["steps"], (host["host"], steps, planned)
        if host["host"] != "db":
            assert host["sha_before"] == planned[host["host"]]["before"]
            assert host["sha_after"] == planned[host["host"]]["after"] == sha
            assert host["colour"] == planned[host["host"]]["colour"]
    # Planned again: it is live now, so nothing would change.
    proc = run(
        ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--plan"], env=sandbox_run_env(state)
    )
    assert proc.returncode == 0 and "already live and built at this commit" in proc.stdout
