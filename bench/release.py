"""Wall time of an in-place release, v1 to v2 on 2 web hosts, against its floor.

    .venv/bin/python bench/release.py [--rounds 3] [--keep]

The release: ``bgdeploy deploy sandbox --ref v2``, timed from the command's start to its exit
(Python start, inventory and settings checks, pyinfra's connect and prepare, every step, the
journal and the lock).

The floor: the very same shell commands (:mod:`bgdeploy.commands`: lock, preflight and fetch,
ref resolution, migration listing, checkout, composer, npm, snapshot, migrate, caches, reloads,
workers, health, journal, unlock), run directly over one SSH connection per host, the hosts in
parallel, without pyinfra and without waiting for each other between steps.

Each round starts from v1 (code and schema): the v2 migration is rolled back and v1 deployed
again between measurements (not timed). A fresh sandbox is started, provisioned and removed
(``--keep`` leaves it up). Prints each round, the medians and their ratio (target: 1.3 or less).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paramiko

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bgdeploy import commands, sandbox  # noqa: E402
from bgdeploy.core import journal, lock, refs  # noqa: E402
from bgdeploy.core.settings import SECRET_VARIABLES, Settings  # noqa: E402

BIN = Path(sys.executable).parent


def cli(name: str, *args: str, check: bool = True) -> float:
    """Run a bgdeploy command against the bench sandbox; return its wall time."""
    env = {
        **os.environ,
        "BGDEPLOY_SANDBOX": name,
        "PYINFRA_PROGRESS": "off",
        **dict.fromkeys(SECRET_VARIABLES.values(), ""),
    }
    started = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "bgdeploy"), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise SystemExit(f"bgdeploy {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr[-5000:]}")
    return seconds


def connect(state: sandbox.SandboxState, name: str) -> paramiko.SSHClient:
    return sandbox.ssh_client(state, name)


def run(client: paramiko.SSHClient, command: str, pty: bool = False) -> str:
    """One command on its own channel of the host's one connection; fails loudly."""
    _, stdout, stderr = client.exec_command(f"sh -c {commands.q(command)}", get_pty=pty)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    code = stdout.channel.recv_exit_status()
    if code != 0:
        raise RuntimeError(f"exit {code}: {command[:120]}\n{out[-2000:]}\n{err[-2000:]}")
    return out


def floor(state: sandbox.SandboxState, settings: dict[str, Settings], ref: str) -> float:
    """The release's commands, straight over SSH, hosts in parallel; wall time."""
    started = time.perf_counter()
    web = [h.name for h in state.group("web")]
    db_name = state.group("db")[0].name
    run_id = lock.new_run_id()
    errors: list[BaseException] = []

    def host(name: str) -> None:
        s = settings[name]
        client = connect(state, name)
        try:
            info = lock.new_lock(ref, run_id)
            run(client, commands.lock_acquire(s.lock_path, info.to_json()))
            start = journal.new_entry("deploy_start", host=name, env="sandbox", ref=ref)
            prefix = journal.journal_append_command(s.journal_path, start)
            out = run(
                client, f"{prefix} && {{ {commands.release_facts(s.app_root, s.repository)}; }}"
            )
            colour = next(line[7:] for line in out.splitlines() if line.startswith("colour="))
            directory = f"{s.app_root}/{colour}"
            resolved = run(client, commands.in_dir(directory, commands.git_resolve(ref)))
            sha = resolved.split()[1]
            pending: list[str] = []
            if name == web[0]:
                files = run(client, commands.in_dir(directory, commands.migration_files(sha)))
                db = connect(state, db_name)
                try:
                    applied = run(db, commands.applied_migrations(s.db_port, s.db_name)).split()
                    pending = [f for f in files.split() if Path(f).stem not in set(applied)]
                    run(client, commands.in_dir(directory, commands.show_files(sha, pending)))
                finally:
                    db.close()
            steps = commands.release_steps(s, directory, sha)
            for _step, command in steps[:4]:
                run(client, command, pty=True)
            if name == web[0] and pending:
                db = connect(state, db_name)
                try:
                    snapshot = f"bench-{uuid.uuid4().hex[:8]}-{sha[:12]}"
                    run(
                        db,
                        commands.snapshot_create(
                            s.backups_dir, snapshot, s.db_name, s.db_port, s.snapshot_keep
                        ),
                    )
                finally:
                    db.close()
                run(client, commands.in_dir(directory, commands.migrate()), pty=True)
            for _step, command in steps[4:]:
                run(client, command, pty=True)
            probe = commands.health_probe(s.public_port, s.health_path)
            deadline = time.monotonic() + s.health_deadline
            while not run(client, probe).startswith(f"200 {sha}"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: not healthy on {sha}")
                time.sleep(s.health_interval)
            finish = journal.new_entry("deploy_finish", host=name, env="sandbox", ref=ref)
            run(
                client,
                commands.join(
                    commands.mark_built(directory, sha),
                    journal.journal_append_command(s.journal_path, finish),
                    commands.lock_release(s.lock_path, run_id),
                ),
            )
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=host, args=(name,)) for name in web]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def back_to_v1(state: sandbox.SandboxState, name: str, settings: Settings) -> None:
    """Undo the v2 migration (v2's code is live), then deploy v1: the start of a round."""
    client = connect(state, state.group("web")[0].name)
    try:
        live = run(client, commands.live_colour_dir(settings.app_root)).strip()
        run(client, commands.in_dir(live, "php artisan migrate:rollback --step=1 --force"))
    finally:
        client.close()
    cli(name, "deploy", "sandbox", "--ref", "v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="Leave the sandbox up.")
    args = parser.parse_args()

    name = f"bench-rel-{uuid.uuid4().hex[:6]}"
    print(f"sandbox {name}: starting and provisioning (not timed)", file=sys.stderr)
    state = sandbox.up(name, web=2)
    try:
        os.environ["BGDEPLOY_SANDBOX"] = name
        cli(name, "provision", "sandbox")
        cli(name, "deploy", "sandbox", "--ref", "v1")
        from bgdeploy.fleet import runner

        settings = runner.check_environment("sandbox").settings
        web1 = settings[state.group("web")[0].name]
        releases, floors = [], []
        for number in range(1, args.rounds + 1):
            floors.append(floor(state, settings, "v2"))
            back_to_v1(state, name, web1)
            releases.append(cli(name, "deploy", "sandbox", "--ref", "v2"))
            back_to_v1(state, name, web1)
            print(
                f"round {number}: release {releases[-1]:6.2f} s   floor {floors[-1]:6.2f} s   "
                f"ratio {releases[-1] / floors[-1]:.2f}",
                flush=True,
            )
        release, base = statistics.median(releases), statistics.median(floors)
        print(f"v1 -> v2 in place on 2 web hosts, {args.rounds} rounds (medians)")
        print(f"  bgdeploy deploy:           {release:6.2f} s")
        print(f"  floor (same commands, SSH): {base:6.2f} s")
        print(f"  ratio:                     {release / base:6.2f}  (target <= 1.30)")
        print(f"  release sha: {refs.short(state.releases['v2'])}")
    finally:
        if not args.keep:
            sandbox.down(name)


if __name__ == "__main__":
    main()
