"""The blue-green deploy and the colour switch, on a sandbox of their own.

The fleet (2 web hosts, a db host) is provisioned and given v1 in place (blue live). Each test
starts from the state it needs (:func:`settle`: one consistent live colour, no lock left, the
idle colour built when the test switches to it), whatever the one before it left, and speaks
of "the live colour and its release" and "the other colour": no test depends on another's
outcome, and a test that breaks something (stops a host, cuts the network, holds the lock,
slows nginx) puts it back however it ends.

- a blue-green deploy of the other release builds the idle colour, smoke-tests it and switches
  every host; explicit switches go back and forth; a load test through 10 switches drops no
  request;
- a colour that fails its smoke tests is never switched to; a release that fails health only
  once it is live is switched back automatically; hosts that disagree, and destructive
  migrations, are refused before anything changes;
- the must-shows of issue 5: requests in flight during a switch finish on the colour they
  started on; a colour whose health fails on the preview listener is never switched to; after
  a switch the queue workers run the new colour's code; a web host that stops answering just
  before the switch leaves every host on the old colour;
- one writer at a time: of two switches at once one is refused; a switch and a rollback are
  refused while a deploy runs; a network cut during a switch leaves no host on the new colour.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bgdeploy import commands, sandbox
from bgdeploy.fleet import remote, runner
from bgdeploy.sandbox import sampleapp
from bgdeploy.strategies import switch

from .conftest import (
    BIN,
    DEPLOY_V1,
    PROVISION,
    ROOT,
    other_release,
    own_sandbox,
    pause,
    run,
    sandbox_run_env,
    settle,
    sh,
    switches_under_load,
)

WEB = ("web1", "web2")
LIVE_CONF = "/etc/nginx/bideshgomon/live.conf"
APP_ROOT = "/var/www/bideshgomon"
CURRENT = f"{APP_ROOT}/current"
LARAVEL_LOG = f"{APP_ROOT}/shared/storage/logs/laravel.log"
switch_mod = switch


@pytest.fixture(scope="module")
def bg(docker_client: Any) -> Iterator[sandbox.SandboxState]:
    with own_sandbox("bg", docker_client, PROVISION, DEPLOY_V1) as state:
        yield state


def served_by(
    state: sandbox.SandboxState, path: str = "/", port: str = "http"
) -> dict[str, tuple[int, str, str]]:
    """Each web host through its public port (``port="preview"``: the idle colour, through
    the preview listener): (status, X-Colour, X-Release)."""
    found = {}
    for web in state.group("web"):
        response = httpx.get(f"http://127.0.0.1:{web.ports[port]}{path}", timeout=15)
        found[web.name] = (
            response.status_code,
            response.headers.get("X-Colour", ""),
            response.headers.get("X-Release", ""),
        )
    return found


def served_by_host(state: sandbox.SandboxState, name: str) -> tuple[int, str, str]:
    (web,) = [w for w in state.group("web") if w.name == name]
    response = httpx.get(f"http://127.0.0.1:{web.ports['http']}/", timeout=15)
    return (
        response.status_code,
        response.headers.get("X-Colour", ""),
        response.headers.get("X-Release", ""),
    )


@contextlib.contextmanager
def sandbox_env(state: sandbox.SandboxState) -> Iterator[None]:
    """This process's environment pointed at the sandbox (for library calls in the test)."""
    saved = dict(os.environ)
    os.environ.update(sandbox_run_env(state))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def blue_green(state: sandbox.SandboxState, ref: str, *extra: str) -> Any:
    return run(
        [
            "pyinfra",
            "-y",
            "inventories/sandbox.py",
            "deploys/blue_green.py",
            "--data",
            f"ref={ref}",
            *extra,
        ],
        env=sandbox_run_env(state),
    )


def switch(state: sandbox.SandboxState, colour: str, *extra: str) -> Any:
    return run(["bgdeploy", "switch", "sandbox", colour, *extra], env=sandbox_run_env(state))


def history(state: sandbox.SandboxState) -> list[dict[str, Any]]:
    """Every host's journal, merged in time order (``bgdeploy history --json``)."""
    proc = run(["bgdeploy", "history", "sandbox", "--json"], env=sandbox_run_env(state))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_blue_green_deploy_switches_every_host(bg: sandbox.SandboxState) -> None:
    live, release, other = settle(bg)
    ref = other_release(bg, release)
    journaled = len(history(bg))
    proc = blue_green(bg, ref)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for status, colour, sha in served_by(bg).values():
        assert (status, colour, sha) == (200, other, bg.releases[ref])
    # The old colour stays as it was, warm: its release, through the preview listener.
    assert {v[1:] for v in served_by(bg, port="preview").values()} == {(live, release)}
    _, out = sh(bg, "web1", f"readlink {CURRENT}")
    assert out.strip() == other
    switches = [e for e in history(bg)[journaled:] if e["event"] == "switch"]
    assert {e["host"] for e in switches} == set(WEB) and all(e["colour"] == other for e in switches)
    again = blue_green(bg, ref)
    assert again.returncode == 0 and "already live" in again.stderr + again.stdout


def test_explicit_switch_back_and_forth(bg: sandbox.SandboxState) -> None:
    live, release, other = settle(bg, both_colours=True)
    (idle_release,) = {sha for _, _, sha in served_by(bg, port="preview").values()}
    proc = switch(bg, other, "--reason", "to the other release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {v[1:] for v in served_by(bg).values()} == {(other, idle_release)}
    proc = switch(bg, live)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {v[1:] for v in served_by(bg).values()} == {(live, release)}
    assert "nothing to do" in switch(bg, live).stdout


def test_zero_dropped_requests_through_ten_switches(bg: sandbox.SandboxState) -> None:
    live, _, other = settle(bg, both_colours=True)
    switches_under_load(bg, live, other)


def test_colour_failing_smoke_tests_is_never_switched_to(bg: sandbox.SandboxState) -> None:
    settle(bg)
    before = served_by(bg)
    broken = sampleapp.add_commit(
        bg.app_repository,
        {"app/Http/Controllers/MeController.php": ME_CONTROLLER_500},
        "Break the authenticated API",
        parent="v2",
        branch="bg-smoke",
    )
    proc = blue_green(bg, broken)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "smoke tests failed" in text and "api authentication" in text, text[-3000:]
    assert "Switch colours" in text and "switching back" not in text
    assert served_by(bg) == before


def test_failed_health_once_live_switches_back(bg: sandbox.SandboxState) -> None:
    settle(bg)
    before = served_by(bg)
    broken = sampleapp.add_commit(
        bg.app_repository,
        {"app/Http/Controllers/HealthController.php": HEALTH_FAILS_ON_PUBLIC_PORT},
        "Health fails on the public listener only",
        parent="v2",
        branch="bg-health",
    )
    proc = blue_green(bg, broken)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "switching back" in text, text[-3000:]
    assert served_by(bg) == before, text[-3000:]


def test_requests_in_flight_finish_on_their_colour(bg: sandbox.SandboxState) -> None:
    live, _, other = settle(bg, both_colours=True)
    before = served_by(bg)
    urls = [f"http://127.0.0.1:{w.ports['http']}/api/slow?seconds=20" for w in bg.group("web")]

    def slow(url: str) -> tuple[int, str, float]:
        response = httpx.get(url, timeout=30)
        return response.status_code, response.headers.get("X-Colour", ""), time.monotonic()

    with ThreadPoolExecutor(len(urls) * 2) as pool:
        in_flight = [pool.submit(slow, url) for url in urls for _ in range(2)]
        time.sleep(1.0)
        try:
            # --force: this test is about nginx's graceful reload, whatever the other colour holds.
            proc = switch(bg, other, "--no-smoke", "--force", "--reason", "in-flight test")
            switched_at = time.monotonic()
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert {answer[1] for answer in served_by(bg).values()} == {other}
            answers = [future.result() for future in in_flight]
        finally:
            assert switch(bg, live, "--no-smoke", "--force").returncode == 0
    assert [(status, colour) for status, colour, _ in answers] == [(200, live)] * len(answers)
    assert all(done > switched_at for _, _, done in answers), "the switch came mid-request"
    assert served_by(bg) == before


def test_colour_whose_health_fails_is_never_switched_to(bg: sandbox.SandboxState) -> None:
    settle(bg)
    before = served_by(bg)
    current_before = {w: sh(bg, w, f"readlink {CURRENT}")[1].strip() for w in WEB}
    broken = sampleapp.add_commit(
        bg.app_repository,
        {"app/Http/Controllers/HealthController.php": HEALTH_503},
        "Health answers 503, everything else works",
        parent="v2",
        branch="bg-health-503",
    )
    proc = blue_green(bg, broken)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "smoke tests failed" in text and "health" in text, text[-3000:]
    assert "switching back" not in text
    assert served_by(bg) == before, "live colour and release unchanged on every host"
    assert {w: sh(bg, w, f"readlink {CURRENT}")[1].strip() for w in WEB} == current_before


WORKER_PID = "sudo supervisorctl pid bideshgomon-worker:bideshgomon-worker_00"


def wait_for_workers(state: sandbox.SandboxState, colour: str, seconds: float = 30) -> None:
    """Until each web host's queue worker runs in ``colour``'s directory (a worker's working
    directory is where supervisor started it: ``current``, resolved)."""
    deadline = time.monotonic() + seconds
    while True:
        found = {w: sh(state, w, f"sudo readlink /proc/$({WORKER_PID})/cwd")[1] for w in WEB}
        if all(out.strip() == f"{APP_ROOT}/{colour}" for out in found.values()):
            return
        assert time.monotonic() < deadline, f"workers not in {colour}: {found}"
        time.sleep(0.5)


def test_queue_workers_run_the_new_colour_after_a_switch(bg: sandbox.SandboxState) -> None:
    live, release, new = settle(bg)
    ref = other_release(bg, release)
    wait_for_workers(bg, live)
    proc = blue_green(bg, ref)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {v[1:] for v in served_by(bg).values()} == {(new, bg.releases[ref])}
    assert {w: sh(bg, w, f"readlink {CURRENT}")[1].strip() for w in WEB} == dict.fromkeys(WEB, new)
    # Each worker finishes its job, exits on the restart signal, and supervisor starts it
    # again through `current`: in the new colour.
    wait_for_workers(bg, new)
    token = sandbox.load_secrets(bg.name)["API_TOKEN"]
    web1 = bg.group("web")[0]
    response = httpx.post(
        f"http://127.0.0.1:{web1.ports['http']}/api/visa-applications",
        json={"applicant_name": "Queue Test", "destination_country": "JP", "visa_type": "work"},
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=15,
    )
    assert response.status_code == 202, response.text
    number = response.json()["data"]["id"]
    # The job logs the release and colour of the code that ran it.
    pattern = re.compile(rf"processed application {number} (\{{.*\}})")
    deadline = time.monotonic() + 30
    processed: dict[str, Any] = {}
    while not processed:
        assert time.monotonic() < deadline, "the job was not processed"
        for web in WEB:
            _, log = sh(bg, web, f"sudo grep 'processed application {number} ' {LARAVEL_LOG}")
            found = pattern.search(log)
            if found:
                processed = json.loads(found.group(1))
        time.sleep(0.5)
    assert processed == {"release": bg.releases[ref], "colour": new}


def test_unreachable_web_host_leaves_every_host_on_the_old_colour(
    bg: sandbox.SandboxState, docker_client: Any
) -> None:
    live, _, other = settle(bg, both_colours=True)
    before = served_by(bg)
    web2 = docker_client.containers.get(bg.group("web")[1].container)
    # From the CLI: web2 stops answering before the switch.
    pause(web2)
    try:
        proc = switch(bg, other, "--no-smoke", "--force")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "web2" in proc.stderr, proc.stderr
        assert served_by_host(bg, "web1") == before["web1"]
    finally:
        web2.unpause()
    assert served_by(bg) == before
    # Through the library, as the deploy and the rollback call it: the colours are read, then
    # web2 stops answering, then the switch: web1 switches, web2 does not answer, web1 goes back.
    with sandbox_env(bg):
        environment = runner.check_environment("sandbox")
        settings = environment.settings[environment.web[0]]
        fleet = switch_mod.FabricFleet(remote.targets("sandbox", ("web",)))
        try:
            colours = switch_mod.read_colours(fleet, settings)
            pause(web2)
            try:
                report = switch_mod.switch(fleet, settings, other, force=True, colours=colours)
                assert report.undone and not report.ok
                errors = {r.host: r.error for r in report.results}
                assert "unreachable" in errors["web2"] and "web2 failed" in errors["web1"]
                assert served_by_host(bg, "web1") == before["web1"]
            finally:
                web2.unpause()
        finally:
            fleet.close()
    # web2 comes back: what was sent to it while it was frozen must not switch it now.
    time.sleep(3)
    assert served_by(bg) == before
    assert {w: sh(bg, w, f"readlink {CURRENT}")[1].strip() for w in WEB} == dict.fromkeys(WEB, live)


def test_hosts_that_disagree_are_refused_before_anything_changes(bg: sandbox.SandboxState) -> None:
    live, release, other = settle(bg)
    before = served_by(bg)
    code, out = sh(
        bg, "web2", f"sudo ln -sfn {other} {CURRENT}.x && sudo mv -T {CURRENT}.x {CURRENT}"
    )
    assert code == 0, out
    try:
        proc = blue_green(bg, other_release(bg, release))
        assert proc.returncode != 0
        text = proc.stdout + proc.stderr
        assert "disagree" in text and f"web1 {live}" in text and f"current -> {other}" in text
        _, after = sh(bg, "web2", f"readlink {CURRENT}")
        assert after.strip() == other, "nothing may change on a host"
        assert served_by(bg) == before
    finally:
        assert switch(bg, live, "--no-smoke").returncode == 0
    assert served_by(bg) == before


def test_destructive_migration_is_refused_for_blue_green(bg: sandbox.SandboxState) -> None:
    settle(bg)
    before = served_by(bg)
    destructive = sampleapp.add_commit(
        bg.app_repository,
        {"database/migrations/2026_01_01_000000_drop_passport_country.php": DROP_COLUMN},
        "Drop a column",
        parent="v2",
        branch="bg-destructive",
    )
    _, journal_before = sh(bg, "web1", "wc -l < /var/www/bideshgomon/.bgdeploy/journal.jsonl")
    proc = blue_green(bg, destructive)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "dropColumn" in text and "blue-green refuses" in text
    _, journal_after = sh(bg, "web1", "wc -l < /var/www/bideshgomon/.bgdeploy/journal.jsonl")
    assert journal_before == journal_after, "nothing may change on a host"
    assert served_by(bg) == before


ME_CONTROLLER_500 = """<?php

namespace App\\Http\\Controllers;

use Illuminate\\Http\\JsonResponse;

class MeController extends Controller
{
    public function __invoke(): JsonResponse
    {
        return new JsonResponse(['message' => 'broken'], 500);
    }
}
"""

HEALTH_FAILS_ON_PUBLIC_PORT = """<?php

namespace App\\Http\\Controllers;

use App\\Services\\HealthCheck;
use Illuminate\\Http\\JsonResponse;
use Illuminate\\Http\\Request;

class HealthController extends Controller
{
    public function __invoke(Request $request, HealthCheck $health): JsonResponse
    {
        if ((string) $request->server('SERVER_PORT') === '80') {
            return new JsonResponse(['status' => 'unhealthy', 'checks' => []], 503);
        }
        $result = $health->run(defined('LARAVEL_START') ? LARAVEL_START : null);

        return new JsonResponse($result, $result['status'] === HealthCheck::HEALTHY ? 200 : 503);
    }
}
"""

HEALTH_503 = """<?php

namespace App\\Http\\Controllers;

use Illuminate\\Http\\JsonResponse;

class HealthController extends Controller
{
    public function __invoke(): JsonResponse
    {
        return new JsonResponse(['status' => 'unhealthy', 'checks' => []], 503);
    }
}
"""

DROP_COLUMN = """<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Database\\Schema\\Blueprint;
use Illuminate\\Support\\Facades\\Schema;

return new class extends Migration
{
    public function up()
    {
        Schema::table('visa_applications', function (Blueprint $table) {
            $table->dropColumn('passport_country');
        });
    }

    public function down()
    {
    }
};
"""


def test_cli_strategy_script_and_rollback(bg: sandbox.SandboxState) -> None:
    _, release, other = settle(bg)
    before = served_by(bg)
    ref = other_release(bg, release)
    env = sandbox_run_env(bg)
    deploy = ["bgdeploy", "deploy", "sandbox", "--strategy", "blue-green", "--ref", ref]
    proc = run(deploy, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {v[1:] for v in served_by(bg).values()} == {(other, bg.releases[ref])}
    # The runbook's own interface: --rollback switches back to the colour left, in seconds.
    proc = run(["scripts/deploy-blue-green.sh", "--rollback", "--env", "sandbox"], env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert served_by(bg) == before
    rollbacks = [e for e in history(bg) if e["event"] == "rollback"]
    assert {e["details"]["bad_release"] for e in rollbacks[-2:]} == {bg.releases[ref]}
    # The release left is never a rollback target again: not switched back to (its colour is
    # no longer marked built); the rollback goes in place to an older good release when the
    # journals name one (whether they do depends on what was deployed here before), else
    # there is nothing to go back to.
    again = run(["bgdeploy", "rollback", "sandbox"], env=env)
    if again.returncode == 0:
        assert "in place" in again.stdout, again.stdout + again.stderr
        assert bg.releases[ref][:12] not in again.stdout.splitlines()[0], again.stdout
        assert bg.releases[ref] not in {sha for _, _, sha in served_by(bg).values()}
    else:
        assert again.returncode == 1 and "nothing to switch back to" in again.stderr
        assert served_by(bg) == before


# One writer at a time
# --------------------

LOCK = f"{APP_ROOT}/.bgdeploy/lock"


@contextlib.contextmanager
def slow_nginx_test(docker_client: Any, state: sandbox.SandboxState, host: str) -> Iterator[None]:
    """``nginx -t`` takes 4 s on ``host``: a switch holds the deploy lock that much longer."""
    (web,) = [w for w in state.group("web") if w.name == host]
    container = docker_client.containers.get(web.container)

    def as_root(command: str) -> None:
        container.exec_run(["sh", "-c", command], user="root")

    wrapper = '#!/bin/sh\n[ "$1" != -t ] || sleep 4\nexec /usr/sbin/nginx "$@"\n'
    as_root(f"printf '%s' {commands.q(wrapper)} > /usr/local/sbin/nginx")
    as_root("chmod 755 /usr/local/sbin/nginx")
    try:
        yield
    finally:
        as_root("rm -f /usr/local/sbin/nginx")


def start(state: sandbox.SandboxState, *args: str, operator: str = "") -> subprocess.Popen[str]:
    """``bgdeploy ARGS`` in the background."""
    extra = {"BGDEPLOY_OPERATOR": operator} if operator else {}
    return subprocess.Popen(
        [str(BIN / "bgdeploy"), *args],
        cwd=ROOT, env={**os.environ, "PYINFRA_PROGRESS": "off", **sandbox_run_env(state), **extra},
        text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def lock_text(state: sandbox.SandboxState, host: str) -> str:
    return sh(state, host, f"cat {LOCK} 2>/dev/null || true")[1]


def wait_until(check: Any, what: str, proc: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"never saw {what}\n" + "".join(proc.communicate()))
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what} in {seconds:.0f} s")
        time.sleep(0.1)


def finish(proc: subprocess.Popen[str], seconds: float = 120) -> tuple[str, str]:
    """Wait for a ``bgdeploy`` started in the background: its (stdout, stderr). One still
    running after ``seconds`` is interrupted (Ctrl-C: it stops its pyinfra run), then killed,
    and the test fails: no test leaves one running, holding the lock, for the next."""
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} ran over {seconds:.0f} s: stopped\n{out}{err}") from None


def test_two_switches_at_once_one_is_refused_and_the_fleet_agrees(
    bg: sandbox.SandboxState, docker_client: Any
) -> None:
    live, _, other = settle(bg, both_colours=True)
    before = served_by(bg)
    with slow_nginx_test(docker_client, bg, "web2"):
        first = start(bg, "switch", "sandbox", other, "--no-smoke", "--force")
        try:
            # The barrier: the second starts once the first holds the lock of the first host.
            wait_until(lambda: f'"pid":{first.pid},' in lock_text(bg, "web1"), "its lock", first)
            second = start(bg, "switch", "sandbox", live, "--no-smoke", "--force")
            _, second_err = finish(second)
        finally:
            first_out, first_err = finish(first)
    assert (first.returncode, second.returncode) == (0, 3), first_err + second_err
    assert "held by" in second_err and f"pid {first.pid} " in second_err, second_err
    assert "nothing was switched" in second_err
    # Every host serves the one colour the first switched to, and no lock is left.
    assert {v[1] for v in served_by(bg).values()} == {other}, first_out
    assert {w: sh(bg, w, f"readlink {CURRENT}")[1].strip() for w in WEB} == dict.fromkeys(
        WEB, other
    )
    assert all(not lock_text(bg, name) for name in WEB)
    assert switch(bg, live, "--no-smoke", "--force").returncode == 0
    assert served_by(bg) == before


def test_switch_and_rollback_are_refused_while_a_deploy_runs(bg: sandbox.SandboxState) -> None:
    live, _, other = settle(bg)
    # A release whose composer install takes 30 s: the deploy holds the lock that long.
    composer = json.loads((sampleapp.APP_DIR / "composer.json").read_text())
    composer["scripts"]["post-autoload-dump"].append("sleep 30")
    files = {"composer.json": json.dumps(composer, indent=4) + "\n"}
    slow = sampleapp.add_commit(bg.app_repository, files, "slow", parent="v2", branch="bg-slow")
    deploy = start(
        bg, "deploy", "sandbox", "--strategy", "blue-green", "--ref", slow,
        operator="erin@ci-runner",
    )  # fmt: skip
    try:
        for name in WEB:
            wait_until(
                lambda name=name: "erin@ci-runner" in lock_text(bg, name), "its lock", deploy
            )
        refused = switch(bg, live, "--no-smoke", "--force")
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "held by erin@ci-runner" in refused.stderr, refused.stderr
        back = run(["bgdeploy", "rollback", "sandbox"], env=sandbox_run_env(bg))
        assert back.returncode == 3, back.stdout + back.stderr
        assert "held by erin@ci-runner" in back.stderr and "bgdeploy unlock sandbox" in back.stderr
        assert all("erin@ci-runner" in lock_text(bg, name) for name in WEB), "its lock is left"
    finally:
        out, err = finish(deploy, 900)
    # The deploy finished undisturbed: its own switch ran under its own lock.
    assert deploy.returncode == 0, (out + err)[-4000:]
    assert {v[1:] for v in served_by(bg).values()} == {(other, slow)}
    assert all(not lock_text(bg, name) for name in WEB)


def test_network_cut_during_a_switch_leaves_no_host_on_the_new_colour(
    bg: sandbox.SandboxState, docker_client: Any
) -> None:
    """web2 comes back on new published ports (the module's state follows them)."""
    live, _, other = settle(bg, both_colours=True)
    before = served_by(bg)
    web2 = docker_client.containers.get(bg.group("web")[1].container)

    def on_web2(command: str) -> str:
        return web2.exec_run(["sh", "-c", command], user="root").output.decode()

    # web2's `nginx -t` takes 4 s while a flag file exists: the cut comes while web2 is in the
    # middle of its switch, which it then finishes with no one listening.
    wrapper = "\n".join(
        [
            "#!/bin/sh",
            '[ "$1" != -t ] || [ ! -e /tmp/slow-nginx ] || sleep 4',
            'exec /usr/sbin/nginx "$@"',
        ]
    )
    slow = "/usr/local/sbin/nginx"
    on_web2(f"printf '%s\\n' {commands.q(wrapper)} > {slow} && chmod 755 {slow}")
    on_web2("touch /tmp/slow-nginx")
    journal = f"cat {APP_ROOT}/.bgdeploy/journal.jsonl"
    why = "confirmation never came"
    journaled = on_web2(journal).count(why)
    cut = False
    proc = None
    try:
        started = time.monotonic()
        proc = start(bg, "switch", "sandbox", other, "--no-smoke", "--force")
        while "sleep 4" not in on_web2("ps -eo args"):
            assert time.monotonic() - started < 20, "web2's switch never started"
            time.sleep(0.1)
        sandbox.disconnect_host(bg.name, "web2", docker_client)
        cut = True
        on_web2("rm -f /tmp/slow-nginx")
        out, err = finish(proc)
        assert proc.returncode == 1, out + err
        assert "web2" in out + err and "unreachable" in out + err, out + err
        # web1 was put back at once.
        assert served_by_host(bg, "web1") == before["web1"]
        # Behind the cut, web2 finishes its switch: it serves the new colour, to no one.
        deadline = time.monotonic() + 20
        while on_web2(f"readlink {CURRENT}").strip() != other:
            assert time.monotonic() < deadline, "web2's switch did not finish behind the cut"
            time.sleep(0.2)
        # web2 never hears the confirmation: it puts itself back, and journals why.
        deadline = time.monotonic() + switch_mod.WATCHDOG_SECONDS + 30
        while on_web2(f"readlink {CURRENT}").strip() != live:
            assert time.monotonic() < deadline, "web2 stayed on the new colour"
            time.sleep(0.5)
        assert f"bgdeploy colour: {live}" in on_web2(f"cat {LIVE_CONF}")
        while on_web2(journal).count(why) == journaled:  # written after the reload
            assert time.monotonic() < deadline, "web2 did not journal why it switched back"
            time.sleep(0.2)
    finally:
        on_web2("rm -f /tmp/slow-nginx /usr/local/sbin/nginx")
        if proc is not None and proc.poll() is None:
            finish(proc)
        if cut:
            state = sandbox.reconnect_host(bg.name, "web2", docker_client)
            bg.hosts[:] = state.hosts
    # Back on the network: every host serves the old colour, as before the switch.
    assert served_by(bg) == before
