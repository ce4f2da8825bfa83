"""The integration fleet: real Debian containers reached over real SSH with strict host keys.

A session-wide sandbox (2 web hosts and a db host) is started once from ``sandbox/image`` and
removed at the end. Tests that must own their hosts start a sandbox of their own. Docker is
required: without it every integration test fails with a clear message, it is never skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paramiko
import pytest
from docker.errors import APIError

from bgdeploy import sandbox
from bgdeploy.core.errors import OperationFailed
from bgdeploy.sandbox import sampleapp
from bgdeploy.strategies import switch

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# A test run started as a background job of a script (no job control) inherits SIGINT
# ignored, and so would every command it runs: the Ctrl-C tests would interrupt nothing. The
# commands get the default back (a handler is reset on exec; an ignored signal is not).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


LONGEST_FIRST = (  # measured 2026-12-05 (seconds of setup and tests, full run under load)
    "test_blue_green.py",  # 693
    "test_canary_baseline.py",  # 651
    "test_release.py",  # 604
    "test_rollback.py",  # 477
    "test_canary.py",  # 460
    "test_migrations_atomic.py",  # 433
    "test_systemd.py",  # 430
    "test_ship.py",  # 405
    "test_faults.py",  # 305
    "test_preflight_postmortem.py",  # 283
    "test_canary_trends.py",  # 271
    "test_scale.py",  # 220
    "test_snapshots.py",  # 206
    "test_provision.py",  # 199
    "test_progress.py",  # 193
    "test_approvals.py",  # 183
    "test_push_delivery.py",  # 159
)
"""The longest files, handed to the xdist workers first (``--dist loadfile``: a whole file per
worker, in the order collected), so that no long file starts last and holds the run up."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)

    def rank(item: pytest.Item) -> int:
        name = Path(str(item.fspath)).name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's tests keep their order


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sandboxes of this test run keep their state here (never the operator's)."""
    path = tmp_path_factory.mktemp("bgdeploy-state")
    os.environ["BGDEPLOY_STATE_DIR"] = str(path)
    # Run logs too (bgdeploy/core/runlog.py), not in the checkout's .bgdeploy/runs.
    os.environ["BGDEPLOY_RUN_LOG_DIR"] = str(path / "runs")
    return path


@pytest.fixture(scope="session")
def docker_client(state_dir: Path) -> Any:
    try:
        return sandbox.docker_client()
    except OperationFailed as error:
        pytest.fail(f"the integration tests need Docker: {error}", pytrace=False)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def fleet(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    """The session's sandbox: web1, web2 and db."""
    name = unique_name("it")
    state = sandbox.up(name, web=2, client=docker_client, progress=print)
    try:
        yield state
    finally:
        sandbox.down(name, client=docker_client)


@contextlib.contextmanager
def own_sandbox(
    prefix: str,
    client: Any,
    *commands: list[str],
    monitoring: bool = False,
    repository: bool = True,
    init: str = "initd",
) -> Iterator[sandbox.SandboxState]:
    """A sandbox of a test module's own (2 web hosts and a db host, ``monitoring``: and
    Prometheus; ``repository=False``: no repository on the web hosts, ``up --no-repository``;
    ``init``: the containers' flavour, ``initd`` or ``systemd``), on which each of
    ``commands`` (bgdeploy arguments, ``sandbox`` as the environment) must succeed before the
    tests start; removed at the end.

    .. code:: python

        with own_sandbox("bg", docker_client, ["provision", "sandbox"],
                         ["deploy", "sandbox", "--ref", "v1"]) as state:
            yield state
    """
    name = unique_name(prefix)
    state = sandbox.up(
        name, web=2, monitoring=monitoring, repository=repository, init=init, client=client
    )
    try:
        for args in commands:
            proc = run(["bgdeploy", *args], env=sandbox_run_env(state))
            assert proc.returncode == 0, (args, proc.stderr[-4000:])
        yield state
    finally:
        sandbox.down(name, client=client)


PROVISION = ["provision", "sandbox"]
DEPLOY_V1 = ["deploy", "sandbox", "--ref", "v1"]
DEPLOY_V2 = ["deploy", "sandbox", "--ref", "v2"]


def run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 600, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command of this project (bgdeploy, pyinfra) from the repository root."""
    full_env = {**os.environ, "PYINFRA_PROGRESS": "off", **(env or {})}
    program = args[0]
    if (BIN / program).exists():
        args = [str(BIN / program), *args[1:]]
    proc = subprocess.run(
        args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def ssh(state: sandbox.SandboxState, host: str) -> paramiko.SSHClient:
    """A strict SSH client to one sandbox host, as the deploy user."""
    return sandbox.ssh_client(state, host)


def sh(
    state: sandbox.SandboxState, host: str, command: str, timeout: float = 300
) -> tuple[int, str]:
    """Run ``command`` on a host over SSH; returns (exit code, stdout + stderr)."""
    client = ssh(state, host)
    try:
        _, stdout, stderr = client.exec_command(command, timeout=timeout)
        out = stdout.read().decode() + stderr.read().decode()
        return stdout.channel.recv_exit_status(), out
    finally:
        client.close()


APP_ROOT = "/var/www/bideshgomon"
JOURNAL = f"{APP_ROOT}/.bgdeploy/journal.jsonl"
LOCK = f"{APP_ROOT}/.bgdeploy/lock"
BACKUPS = "/var/backups/bideshgomon"
V2_MIGRATION = "2025_07_01_000000_add_passport_country_to_visa_applications_table"


def q(text: str) -> str:
    return shlex.quote(text)


def journal(state: sandbox.SandboxState, host: str) -> list[dict[str, Any]]:
    """A host's journal, read over SSH from the sandbox as it is now (a host started again
    has new ports)."""
    _code, out = sh(sandbox.load_state(state.name), host, f"cat {JOURNAL} 2>/dev/null || true")
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def psql(state: sandbox.SandboxState, sql: str) -> str:
    """One query on the db host's application database, as postgres; its output."""
    code, out = sh(state, "db", f"cd / && sudo -u postgres psql -X -d bideshgomon -tAc {q(sql)}")
    assert code == 0, out
    return out.strip()


def commit(
    state: sandbox.SandboxState, files: dict[str, str], message: str, prefix: str = "it"
) -> tuple[str, str]:
    """A commit on top of v2 in the sandbox's repository, under a new tag: (tag, sha)."""
    tag = unique_name(prefix)
    sha = sampleapp.add_commit(Path(state.app_repository), files, message, tag=tag, parent="v2")
    return tag, sha


def own_deploy_repository(root: Path, sandbox_data: str = "") -> Path:
    """A deploy repository of a test's own at ``root`` (for ``BGDEPLOY_ROOT``): this
    checkout's inventories, deploys, templates and group_data linked in, and
    ``sandbox_data`` appended to a copy of group_data/sandbox.py (settings of this test only)."""
    root.mkdir(parents=True, exist_ok=True)
    for part in ("inventories", "deploys", "templates", "sandbox"):
        (root / part).symlink_to(ROOT / part)
    if not sandbox_data:
        (root / "group_data").symlink_to(ROOT / "group_data")
        return root
    (root / "group_data").mkdir()
    for path in (ROOT / "group_data").glob("*.py"):
        if path.name != "sandbox.py":
            (root / "group_data" / path.name).symlink_to(path)
    text = (ROOT / "group_data" / "sandbox.py").read_text()
    (root / "group_data" / "sandbox.py").write_text(text + "\n" + sandbox_data + "\n")
    return root


def logins(docker_client: Any, state: sandbox.SandboxState) -> dict[str, int]:
    """How many SSH logins each container's sshd has accepted so far (the init.d flavour:
    its sshd logs to the container's output; on systemd it logs to the journal)."""
    return {
        h.name: docker_client.containers.get(h.container)
        .logs()
        .decode()
        .count("Accepted publickey")
        for h in state.hosts
    }


def sandbox_run_env(state: sandbox.SandboxState) -> dict[str, str]:
    """Environment for ``run()`` against a sandbox: its name, and the BGDEPLOY_* secrets
    emptied so that the sandbox inventory fills in the sandbox's own (never the caller's)."""
    from bgdeploy.core.settings import SECRET_VARIABLES

    return {"BGDEPLOY_SANDBOX": state.name, **dict.fromkeys(SECRET_VARIABLES.values(), "")}


def public_urls(state: sandbox.SandboxState, path: str = "/") -> list[str]:
    """``path`` on each web host's public port."""
    return [f"http://127.0.0.1:{web.ports['http']}{path}" for web in state.group("web")]


def live(state: sandbox.SandboxState) -> tuple[str, str, str]:
    """(live colour, its release, the other colour), as the public ports answer: every host
    must agree."""
    answers = set()
    for url in public_urls(state):
        answer = httpx.get(url, timeout=15)
        answers.add((answer.headers.get("X-Colour", ""), answer.headers.get("X-Release", "")))
    assert len(answers) == 1, answers
    colour, release = answers.pop()
    return colour, release, switch.other(colour)


def other_release(state: sandbox.SandboxState, release: str) -> str:
    """The ref to deploy next: v1 when ``release`` (a sha) is v2, else v2."""
    return "v1" if release == state.releases["v2"] else "v2"


def settle(state: sandbox.SandboxState, both_colours: bool = False) -> tuple[str, str, str]:
    """Put a module's shared fleet in a test's starting state, whatever an earlier test left
    (tests never rely on each other's outcome), and return :func:`live`:

    - no deploy lock left on any host (``bgdeploy unlock``: refused while its process still
      runs here, which a test must not leave behind);
    - every web host on one live colour, built and verified, consistent (``current``, the live
      and the idle include agree) and no canary split: the colour ``current`` points to on
      most hosts, unless it is not built and verified everywhere and the other colour is (a
      switch back that did not happen: that colour was marked bad); ``bgdeploy switch``, the
      documented repair (``--force`` only when neither colour is built everywhere);
    - with ``both_colours``: the idle colour built and verified on every host too (a
      blue-green deploy of the other release when it is not).

    Each step is taken only when the fleet, as ``bgdeploy status`` reads it, needs it."""
    env = sandbox_run_env(state)
    proc = run(["bgdeploy", "status", "sandbox", "--json"], env=env)
    hosts = json.loads(proc.stdout)
    assert not any(host["error"] for host in hosts.values()), hosts
    if any(host["lock"] for host in hosts.values()):
        proc = run(["bgdeploy", "unlock", "sandbox", "--yes", "--reason", "test set-up"], env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def ready(colour: str) -> bool:
        return all(
            host["heads"].get(colour) and host["built"].get(colour) == host["heads"][colour]
            for host in hosts.values()
        )

    colour = Counter(host["current"] for host in hosts.values()).most_common(1)[0][0]
    assert colour in switch.COLOURS, hosts
    if not ready(colour) and ready(switch.other(colour)):
        colour = switch.other(colour)
    idle = switch.other(colour)
    if any(
        (host["current"], host["live"], host["idle"], host["canary"]) != (colour, colour, idle, "")
        for host in hosts.values()
    ):
        args = ["bgdeploy", "switch", "sandbox", colour, "--no-smoke", "--reason", "test set-up"]
        proc = run(args + ([] if ready(colour) else ["--force"]), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    if both_colours and not ready(idle):
        ref = other_release(state, hosts[next(iter(hosts))]["heads"][colour])
        args = ["bgdeploy", "deploy", "sandbox", "--ref", ref, "--strategy", "blue-green"]
        proc = run(args, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return live(state)


def switches_under_load(
    state: sandbox.SandboxState,
    live_colour: str,
    other: str,
    switches: int = 10,
    answers: int = 5000,
) -> None:
    """``switches`` explicit switches (``bgdeploy switch --no-smoke``), other colour first,
    under a bounded load test, and not one request failed: threads, a fresh connection per
    request, 127.0.0.1 only, until ``answers`` answers (and each host seen to change colour
    with every switch). Both colours must be built and verified
    (``settle(state, both_colours=True)``); the fleet ends on ``live_colour`` for an even
    number of switches."""
    urls = public_urls(state)
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"ok": 0, "bad": 0, "errors": 0}
    seen: dict[str, list[str]] = {url: [] for url in urls}

    def load(url: str) -> None:
        deadline = time.monotonic() + 300
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.get(url, headers={"Connection": "close"})
                except httpx.HTTPError:
                    with lock:
                        counts["errors"] += 1
                    continue
                with lock:
                    counts["ok" if response.status_code == 200 else "bad"] += 1
                    colour = response.headers.get("X-Colour", "")
                    if not seen[url] or seen[url][-1] != colour:
                        seen[url].append(colour)

    threads = [threading.Thread(target=load, args=(url,)) for url in urls for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for number in range(switches):
            colour = other if number % 2 == 0 else live_colour
            args = ["bgdeploy", "switch", "sandbox", colour, "--no-smoke"]
            proc = run(args, env=sandbox_run_env(state))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            # Once the switch returns, every host serves the new colour to new requests.
            assert live(state)[0] == colour
        # Until `answers`, or until the load threads give up (300 s each): never past that.
        while counts["ok"] + counts["bad"] + counts["errors"] < answers and any(
            thread.is_alive() for thread in threads
        ):
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert counts["bad"] == 0 and counts["errors"] == 0, counts
    assert counts["ok"] >= answers, counts
    for url, colours in seen.items():
        # Requests in flight finish on the colour they started on, so the load threads may
        # see the colours interleave around a switch; both colours, many times, never a third.
        assert set(colours) == {live_colour, other} and len(colours) >= switches + 1, (
            url,
            colours,
        )


@pytest.fixture(scope="session")
def first_provisioning(fleet: sandbox.SandboxState) -> subprocess.CompletedProcess[str]:
    """``bgdeploy provision sandbox`` on the session fleet, once; it must succeed."""
    proc = run(["bgdeploy", "provision", "sandbox"], env=sandbox_run_env(fleet))
    assert proc.returncode == 0, f"provisioning failed\n{proc.stdout}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="session")
def provisioned(
    fleet: sandbox.SandboxState, first_provisioning: subprocess.CompletedProcess[str]
) -> sandbox.SandboxState:
    """The session fleet, provisioned (web1, web2: nginx, php-fpm pools, layout, .env; db:
    PostgreSQL role and database, Redis with its password)."""
    return fleet


def pause(container: Any, attempts: int = 5) -> None:
    """``docker pause`` a container: a host that stops answering at once. The cgroup freezer
    sometimes answers "unable to freeze" while a process is in the middle of I/O (seen once
    in a full run, a moment after the same container was unpaused); it is asked again."""
    for attempt in range(attempts):
        try:
            container.pause()
            return
        except APIError:
            if attempt == attempts - 1:
                raise
            time.sleep(1)
