"""Provisioning (deploys/provision.py) against the sandbox: real nginx, php-fpm, PostgreSQL, Redis.

The session fleet is provisioned once (fixture ``provisioned``); the tests here check what it
built and restore whatever they change, so later tests find the fleet as provisioning left it.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bgdeploy import commands, sandbox
from bgdeploy.fleet.runner import DeployRun

from .conftest import run, sandbox_run_env, sh, unique_name

ROOT = Path(__file__).resolve().parents[2]
APP_ROOT = "/var/www/bideshgomon"
SITE = "/etc/nginx/sites-available/bideshgomon.conf"
LOGROTATE = "/etc/logrotate.d/bideshgomon"
PROVISION = ["pyinfra", "-y", "--json", "inventories/sandbox.py", "deploys/provision.py"]

COLOUR_PAGE = """<?php
echo getenv('APP_COLOUR'), ' ', $_SERVER['DOCUMENT_ROOT'];
"""
# A loop, not one sleep(3): the reload's signal would cut a single sleep short.
SLOW_PAGE = """<?php
$end = microtime(true) + 3;
while (microtime(true) < $end) { usleep(50000); }
echo 'slept ', getenv('APP_COLOUR');
"""
# Reads shared/.env as the app does and reaches PostgreSQL and Redis with it.
PROBE_PAGE = """<?php
$env = [];
foreach (file('/var/www/bideshgomon/shared/.env', FILE_IGNORE_NEW_LINES) as $line) {
    if ($line === '' || $line[0] === '#') { continue; }
    [$key, $value] = explode('=', $line, 2);
    $env[$key] = trim($value, "'");
}
$dsn = "pgsql:host={$env['DB_HOST']};port={$env['DB_PORT']};dbname={$env['DB_DATABASE']}";
$pdo = new PDO($dsn, $env['DB_USERNAME'], $env['DB_PASSWORD']);
$redis = new Redis();
$redis->connect($env['REDIS_HOST'], (int) $env['REDIS_PORT']);
$redis->auth($env['REDIS_PASSWORD']);
echo getenv('APP_COLOUR'), ' db=', $pdo->query('SELECT current_user')->fetchColumn(),
    ' redis=', $redis->ping() ? 'PONG' : 'no';
"""


def host(state: sandbox.SandboxState, name: str) -> sandbox.SandboxHost:
    return next(h for h in state.hosts if h.name == name)


def sudo(state: sandbox.SandboxState, name: str, command: str) -> tuple[int, str]:
    return sh(state, name, f"sudo sh -c {commands.q(command)}")


def provision_json(state: sandbox.SandboxState, *extra: str) -> tuple[Any, DeployRun]:
    """Plain pyinfra with --json, as an operator would run it; (process, parsed results)."""
    proc = run([*PROVISION, *extra], env=sandbox_run_env(state))
    results = json.loads(proc.stdout)["results"] if proc.stdout.strip() else {}
    return proc, DeployRun(proc.returncode, results or {}, proc.stderr)


def put_file(state: sandbox.SandboxState, name: str, path: str, content: str) -> None:
    data = base64.b64encode(content.encode()).decode()
    code, output = sudo(state, name, f"echo {data} | base64 -d > {path} && chmod 644 {path}")
    assert code == 0, output


def get(port: int, path: str, timeout: float = 10) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=timeout)


def assert_no_change(result: DeployRun, hosts: set[str]) -> None:
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.failed_hosts == []
    assert result.changed_hosts() == set()
    totals = result.results["totals"]
    assert totals["success"] == 0 and totals["error"] == 0 and totals["no_change"] > 0
    seen: set[str] = set()
    for op in result.results["operations"]:
        assert op["success"] == [] and op["error"] == [], op
        seen.update(op["no_change"])
    assert seen == hosts


def test_first_run_changes_every_host_and_second_run_changes_nothing(
    provisioned: sandbox.SandboxState, first_provisioning: Any
) -> None:
    summary = dict(
        line.split()[:2] for line in first_provisioning.stdout.splitlines()[1:] if line.strip()
    )
    assert summary == {"web1": "changed", "web2": "changed", "db": "changed"}
    _, again = provision_json(provisioned)
    assert_no_change(again, {"web1", "web2", "db"})


def test_web_layout_env_and_services(provisioned: sandbox.SandboxState) -> None:
    secrets = sandbox.load_secrets(provisioned.name)
    db_ip = host(provisioned, "db").private_ip
    code, output = sudo(
        provisioned,
        "web1",
        f"cd {APP_ROOT} && stat -c '%n %U:%G %a' . blue green shared shared/.env "
        "shared/storage/framework/views shared/storage/logs .bgdeploy && readlink current && "
        "head -1 /etc/nginx/bideshgomon/live.conf /etc/nginx/bideshgomon/idle.conf && "
        "ls /etc/php/8.2/fpm/pool.d && php-fpm8.2 -tt 2>&1 | grep process_control_timeout && "
        f"logrotate -d {LOGROTATE} >/dev/null 2>&1 && echo logrotate-ok && "
        "{ supervisorctl status || true; } && cat /etc/cron.d/bideshgomon",
    )
    assert code == 0, output
    assert ". deploy:deploy 755" in output
    assert "blue deploy:www-data 755" in output and "green deploy:www-data 755" in output
    assert "shared/.env deploy:www-data 640" in output
    assert "shared/storage/framework/views deploy:www-data 2775" in output
    assert ".bgdeploy deploy:deploy 750" in output
    assert "\nblue\n" in output
    assert "# bgdeploy colour: blue" in output and "# bgdeploy colour: green" in output
    assert "bideshgomon-blue.conf" in output and "www.conf" not in output
    assert "process_control_timeout = 10s" in output
    assert "logrotate-ok" in output
    assert "bideshgomon-worker:bideshgomon-worker_00" in output
    assert "artisan schedule:run" in output

    code, env = sudo(provisioned, "web2", f"cat {APP_ROOT}/shared/.env")
    assert code == 0, "could not read .env"
    values = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
    assert values["DB_HOST"] == values["REDIS_HOST"] == db_ip
    for key in ("APP_KEY", "DB_PASSWORD", "REDIS_PASSWORD", "API_TOKEN"):
        assert values[key].strip("'") == secrets[key], f"{key} is not the sandbox's secret"
    assert values["APP_ENV"] == "sandbox" and values["APP_DEBUG"] == "false"

    code, output = sudo(provisioned, "db", "stat -c '%U:%G %a' /var/backups/bideshgomon")
    assert (code, output.strip()) == (0, "postgres:postgres 700")


def test_database_reaches_web_hosts_only(
    provisioned: sandbox.SandboxState, docker_client: Any
) -> None:
    password = sandbox.load_secrets(provisioned.name)["DB_PASSWORD"]
    db_ip = host(provisioned, "db").private_ip
    psql = f"psql -h {db_ip} -U bideshgomon -d bideshgomon -tAc 'SELECT current_user'"
    for web in ("web1", "web2"):
        code, output = sh(provisioned, web, f"PGPASSWORD={commands.q(password)} {psql}")
        assert (code, output.strip()) == (0, "bideshgomon"), output
    code, output = sh(provisioned, "web1", f"PGPASSWORD=wrong {psql}")
    assert code != 0 and "password authentication failed" in output

    # The db host itself, over its private address: not a web host.
    code, output = sh(provisioned, "db", f"PGPASSWORD={commands.q(password)} {psql}")
    assert code != 0 and "no pg_hba.conf entry" in output, output

    # A machine on the same private network that is not in the inventory's web group.
    outsider = docker_client.containers.run(
        provisioned.image,
        entrypoint=["sh", "-c", psql],
        environment={"PGPASSWORD": password},
        network=provisioned.network,
        detach=True,
        labels={sandbox.LABEL: provisioned.name},
    )
    try:
        status = outsider.wait(timeout=60)
        logs = outsider.logs().decode(errors="replace")
    finally:
        outsider.remove(force=True)
    assert status["StatusCode"] != 0
    assert "no pg_hba.conf entry" in logs, logs


def test_redis_requires_its_password(provisioned: sandbox.SandboxState) -> None:
    password = sandbox.load_secrets(provisioned.name)["REDIS_PASSWORD"]
    db_ip = host(provisioned, "db").private_ip
    code, output = sh(provisioned, "web1", f"redis-cli -h {db_ip} ping")
    assert "NOAUTH" in output, output
    code, output = sh(
        provisioned, "web1", f"REDISCLI_AUTH={commands.q(password)} redis-cli -h {db_ip} ping"
    )
    assert (code, output.strip()) == (0, "PONG")
    code, output = sudo(provisioned, "db", "ss -Hltn 'sport = :6379' | awk '{print $4}'")
    assert code == 0 and sorted(output.split()) == sorted([f"{db_ip}:6379", "127.0.0.1:6379"])


@pytest.fixture(scope="module")
def colour_pages(provisioned: sandbox.SandboxState) -> Iterator[sandbox.SandboxState]:
    """Test pages in each colour's public directory of every web host; removed afterwards
    (with the directory, when the test made it)."""
    made: list[tuple[str, str]] = []
    for web in ("web1", "web2"):
        for colour in ("blue", "green"):
            public = f"{APP_ROOT}/{colour}/public"
            code, _ = sh(provisioned, web, f"test -d {public}")
            if code != 0:
                assert sudo(provisioned, web, f"mkdir {public}")[0] == 0
                made.append((web, public))
            put_file(provisioned, web, f"{public}/bgtest-colour.php", COLOUR_PAGE)
            put_file(provisioned, web, f"{public}/bgtest-slow.php", SLOW_PAGE)
    try:
        yield provisioned
    finally:
        for web in ("web1", "web2"):
            sudo(provisioned, web, f"rm -f {APP_ROOT}/*/public/bgtest-*.php")
        for web, public in made:
            sudo(provisioned, web, f"rmdir {public}")


def test_each_pool_answers_through_its_listener(colour_pages: sandbox.SandboxState) -> None:
    for web in colour_pages.group("web"):
        live = get(web.ports["http"], "/bgtest-colour.php")
        idle = get(web.ports["preview"], "/bgtest-colour.php")
        assert (live.status_code, live.text) == (200, f"blue {APP_ROOT}/blue/public")
        assert (idle.status_code, idle.text) == (200, f"green {APP_ROOT}/green/public")
        assert get(web.ports["http"], "/.env").status_code == 403


def test_preview_listener_answers_only_whom_group_data_allows(
    colour_pages: sandbox.SandboxState,
) -> None:
    """With ``preview_allow`` narrowed to the host itself, the preview listener refuses the
    operator's published port (the request arrives from the Docker network) and still answers
    on the host; provisioning with the sandbox's own value opens it again."""
    state = colour_pages
    web = host(state, "web1")
    on_host = "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/bgtest-colour.php"

    def provision_web1(*data: str) -> None:
        args = ["pyinfra", "-y", "--limit", "web1", "inventories/sandbox.py",
                "deploys/provision.py"]  # fmt: skip
        for item in data:
            args += ["--data", item]
        proc = run(args, env=sandbox_run_env(state))
        assert proc.returncode == 0, proc.stderr[-3000:]

    provision_web1('preview_allow=["127.0.0.1/32"]')
    try:
        assert get(web.ports["preview"], "/bgtest-colour.php").status_code == 403
        assert sh(state, "web1", on_host)[1].strip() == "200"
        assert get(web.ports["http"], "/bgtest-colour.php").status_code == 200  # public: open
    finally:
        provision_web1()
    assert get(web.ports["preview"], "/bgtest-colour.php").status_code == 200


def test_php_fpm_reload_lets_a_slow_request_finish(colour_pages: sandbox.SandboxState) -> None:
    web = host(colour_pages, "web1")
    master = "cat /run/php/php8.2-fpm.pid"
    before = sh(colour_pages, "web1", master)[1].strip()
    result: dict[str, Any] = {}

    def slow() -> None:
        try:
            result["response"] = get(web.ports["http"], "/bgtest-slow.php", timeout=20)
        except httpx.HTTPError as error:
            result["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(1)
    code, output = sudo(colour_pages, "web1", commands.php_fpm_reload("8.2"))
    thread.join(30)
    assert code == 0, output
    assert "error" not in result, result.get("error")
    response = result["response"]
    assert (response.status_code, response.text) == (200, "slept blue")
    assert time.monotonic() - started >= 3
    # The master re-executes once the request in flight is done: its new pid follows shortly.
    deadline = time.monotonic() + 10
    while sh(colour_pages, "web1", master)[1].strip() == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sh(colour_pages, "web1", master)[1].strip() != before, "php-fpm was not reloaded"


def test_broken_nginx_template_is_refused_and_nginx_keeps_serving(
    colour_pages: sandbox.SandboxState, tmp_path: Path
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", broken)
    site = broken / "nginx" / "site.conf.j2"
    site.write_text(site.read_text().replace("    deny all;\n", "    deny all;\n    bogus on;\n"))
    before = sh(colour_pages, "web1", f"sha1sum {SITE}")[1]

    proc, _ = provision_json(
        colour_pages, "--limit", "web1", "--data", f"bgdeploy_template_dir={broken}"
    )
    assert proc.returncode != 0
    assert 'unknown directive "bogus"' in proc.stderr
    assert "failed the configuration test" in proc.stderr
    assert sh(colour_pages, "web1", f"sha1sum {SITE}")[1] == before
    code, output = sudo(colour_pages, "web1", "nginx -t && ls /etc/nginx/sites-available")
    assert code == 0 and "bgdeploy-new" not in output and "bgdeploy-old" not in output
    web = host(colour_pages, "web1")
    assert get(web.ports["http"], "/bgtest-colour.php").text.startswith("blue ")

    _, again = provision_json(colour_pages, "--limit", "web1")
    assert_no_change(again, {"web1"})


def test_missing_secret_exits_2_naming_it_and_changes_nothing(
    provisioned: sandbox.SandboxState,
) -> None:
    secrets_file = Path(provisioned.directory) / "secrets.env"
    saved = secrets_file.read_text()
    code, logrotate = sudo(provisioned, "web1", f"cat {LOGROTATE}")
    assert code == 0
    # Something provisioning would put back, if it ran at all.
    assert sudo(provisioned, "web1", f"rm {LOGROTATE}")[0] == 0
    try:
        secrets_file.write_text(
            "".join(line for line in saved.splitlines(True) if not line.startswith("DB_PASS"))
        )
        env = sandbox_run_env(provisioned)
        proc = run(["bgdeploy", "provision", "sandbox"], env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "BGDEPLOY_DB_PASSWORD" in proc.stderr
        assert "Traceback" not in proc.stderr

        proc = run(PROVISION, env=env)
        assert proc.returncode != 0
        assert "missing secret" in proc.stderr and "BGDEPLOY_DB_PASSWORD" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert "Beginning operation run" not in proc.stderr

        code, _ = sh(provisioned, "web1", f"test -e {LOGROTATE}")
        assert code != 0, "a host was changed although a secret was missing"
    finally:
        secrets_file.write_text(saved)
        put_file(provisioned, "web1", LOGROTATE, logrotate)


def test_single_server_install_provisions_and_serves(docker_client: Any) -> None:
    name = unique_name("single")
    state = sandbox.up(name, web=1, single=True, client=docker_client)
    try:
        assert [(h.name, h.groups) for h in state.hosts] == [("web1", ["web", "db"])]
        proc = run(["bgdeploy", "provision", "sandbox"], env=sandbox_run_env(state))
        assert proc.returncode == 0, proc.stdout + proc.stderr[-6000:]
        assert "web1" in proc.stdout and "changed" in proc.stdout

        public = f"{APP_ROOT}/blue/public"
        assert sudo(state, "web1", f"mkdir -p {public}")[0] == 0
        put_file(state, "web1", f"{public}/probe.php", PROBE_PAGE)
        response = get(state.hosts[0].ports["http"], "/probe.php")
        assert (response.status_code, response.text) == (200, "blue db=bideshgomon redis=PONG")

        _, again = provision_json(state)
        assert_no_change(again, {"web1"})
    finally:
        sandbox.down(name, client=docker_client)
