"""Server configuration rendered from templates/, and the commands and checks provisioning uses."""

from __future__ import annotations

import dataclasses
import re
import runpy
from pathlib import Path

import pytest

from bgdeploy import commands
from bgdeploy.core import render, settings
from bgdeploy.core.errors import ConfigError
from bgdeploy.strategies.serverops import scram_matches, scram_verifier

ROOT = Path(__file__).resolve().parents[2]
FLEET = render.Fleet(db_ip="10.20.0.21", web_ips=("10.20.0.11", "10.20.0.12"))
SECRETS = {
    "APP_KEY": "base64:c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXkh",
    "DB_PASSWORD": "db-pass_123",
    "REDIS_PASSWORD": "redis-pass_456",
    "API_TOKEN": "token-789",
}


def load(env: str = "prod") -> settings.Settings:
    data: dict = {}
    for name in ("all", env):
        values = runpy.run_path(str(ROOT / "group_data" / f"{name}.py"))
        data.update({k: v for k, v in values.items() if not k.startswith("__")})
    data = {k: v for k, v in data.items() if not callable(v) and k != "CONTAINER_REPOSITORY"}
    return settings.from_data(data, env)


@pytest.fixture(params=["prod", "staging", "sandbox"])
def s(request: pytest.FixtureRequest) -> settings.Settings:
    return load(request.param)


def test_site_has_public_and_preview_listeners(s: settings.Settings) -> None:
    site = render.nginx_site(s)
    public, preview = site.split("\nserver {")[1:]
    assert f"listen {s.public_port} default_server;" in public
    assert "include /etc/nginx/bideshgomon/live.conf;" in public
    assert "idle.conf" not in public and "\n    deny all;" not in public
    assert f"listen {s.preview_port} default_server;" in preview
    assert "include /etc/nginx/bideshgomon/idle.conf;" in preview
    assert "live.conf" not in preview
    allowed = re.findall(r"^\s*allow (\S+);$", preview, re.MULTILINE)
    assert allowed == list(s.preview_allow)
    assert preview.index("\n    deny all;") > preview.rindex("allow ")
    assert f"client_max_body_size {s.client_max_body_mb}m;" in site
    assert site.count("{") == site.count("}")
    assert "{{" not in site and "{%" not in site


@pytest.mark.parametrize("colour", ["blue", "green"])
def test_colour_include_passes_realpath_root_to_its_pool(colour: str) -> None:
    s = load()
    text = render.colour_include(s, colour)
    assert f"root /var/www/bideshgomon/{colour}/public;" in text
    assert f"fastcgi_pass unix:/run/php/bideshgomon-{colour}.sock;" in text
    params = text.index("include fastcgi_params;")
    script = text.index("fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;")
    root = text.index("fastcgi_param DOCUMENT_ROOT $realpath_root;")
    assert params < script and params < root
    assert render.colour_of_include(text) == colour
    other = "green" if colour == "blue" else "blue"
    assert other not in text.split("\n", 1)[1].replace("blue-green", "")


def test_unknown_colour_is_refused() -> None:
    with pytest.raises(ConfigError, match="colour"):
        render.colour_include(load(), "red")


@pytest.mark.parametrize("colour", ["blue", "green"])
def test_pool_has_its_socket_and_colour(s: settings.Settings, colour: str) -> None:
    pool = render.fpm_pool(s, colour)
    assert f"[bideshgomon-{colour}]" in pool
    assert f"listen = /run/php/bideshgomon-{colour}.sock" in pool
    assert f"env[APP_COLOUR] = {colour}" in pool
    assert f"pm = {s.fpm_pm}" in pool
    assert f"pm.max_children = {s.fpm_max_children}" in pool
    assert f"user = {s.php_fpm_user}" in pool


@pytest.mark.parametrize("pm", ["static", "dynamic", "ondemand"])
def test_pool_pm_settings(pm: str) -> None:
    s = dataclasses.replace(load(), fpm_pm=pm, fpm_max_children=2)
    pool = render.fpm_pool(s, "blue")
    assert ("pm.start_servers = 1" in pool) == (pm == "dynamic")
    assert ("pm.process_idle_timeout" in pool) == (pm == "ondemand")
    if pm == "dynamic":
        spare = {
            k: int(v) for k, v in re.findall(r"^pm\.(\w+_servers) = (\d+)$", pool, re.MULTILINE)
        }
        assert spare["min_spare_servers"] <= spare["start_servers"]
        assert spare["start_servers"] <= spare["max_spare_servers"] <= 2


def test_php_fpm_master_has_process_control_timeout(s: settings.Settings) -> None:
    text = render.fpm_global(s)
    assert text.index("[global]") < text.index("process_control_timeout")
    match = re.search(r"^process_control_timeout = (\d+)s$", text, re.MULTILINE)
    assert match and int(match.group(1)) == s.process_control_timeout > 0


def test_env_file_has_settings_addresses_and_secrets(s: settings.Settings) -> None:
    text = render.dotenv(s, FLEET, SECRETS)
    values = dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert values["APP_ENV"] == ("production" if s.production else s.env)
    assert values["APP_DEBUG"] == "false"
    assert values["APP_KEY"] == SECRETS["APP_KEY"]
    assert values["DB_HOST"] == values["REDIS_HOST"] == FLEET.db_ip
    assert values["DB_PASSWORD"] == SECRETS["DB_PASSWORD"]
    assert values["REDIS_PASSWORD"] == SECRETS["REDIS_PASSWORD"]
    assert values["API_TOKEN"] == SECRETS["API_TOKEN"]
    assert values["DB_DATABASE"] == s.db_name and values["DB_USERNAME"] == s.db_user
    assert values["REDIS_CLIENT"] == "phpredis"
    for key in ("CACHE_DRIVER", "QUEUE_CONNECTION", "SESSION_DRIVER"):
        assert values[key] == "redis"
    assert "APP_COLOUR" not in values


def test_env_values_are_quoted_or_refused() -> None:
    s = load()
    text = render.dotenv(s, FLEET, {**SECRETS, "DB_PASSWORD": "p w$(id)#x"})
    assert "DB_PASSWORD='p w$(id)#x'" in text
    for bad in ("it's", "a\nb", "back\\slash"):
        with pytest.raises(ConfigError, match=r"\.env") as info:
            render.dotenv(s, FLEET, {**SECRETS, "DB_PASSWORD": bad})
        assert bad not in str(info.value)


def test_pg_hba_lets_only_the_web_hosts_in() -> None:
    s = load()
    lines = [
        line.split()
        for line in render.pg_hba_lines(s, FLEET).splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == [
        ["host", s.db_name, s.db_user, f"{ip}/32", "scram-sha-256"] for ip in FLEET.web_ips
    ]


def test_postgres_listens_on_loopback_and_private_address() -> None:
    text = render.postgres_conf(load(), "10.20.0.21")
    assert "listen_addresses = 'localhost,10.20.0.21'" in text
    assert "port = 5432" in text


def test_redis_binds_private_address_with_password() -> None:
    text = render.redis_conf(load(), "10.20.0.21", 'pa"ss\\word')
    assert "bind 127.0.0.1 10.20.0.21\n" in text
    assert "protected-mode yes" in text
    assert 'requirepass "pa\\"ss\\\\word"' in text


def test_workers_scheduler_and_logrotate_go_through_current(s: settings.Settings) -> None:
    current = f"{s.app_root}/current"
    worker = render.queue_worker(s)
    assert f"command=/usr/bin/php{s.php_version} {current}/artisan queue:work" in worker
    assert f"numprocs={s.queue_workers}" in worker
    assert "APP_COLOUR" not in worker
    assert "[program:bideshgomon-worker]" in worker
    cron = render.scheduler_cron(s)
    assert f"cd {current} && /usr/bin/php{s.php_version} artisan schedule:run" in cron
    assert re.search(rf"^\* \* \* \* \* {s.php_fpm_user} ", cron, re.MULTILINE)
    rotate = render.logrotate(s)
    assert rotate.startswith("#") and f"{s.app_root}/shared/storage/logs/*.log {{" in rotate
    assert f"rotate {s.log_retention_days}" in rotate
    assert render.cron_file_name(s) == "bideshgomon"


def test_missing_template_value_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "site.conf.j2").write_text("listen {{ s.nope }};\n")
    with pytest.raises(ConfigError, match=r"nginx/site\.conf\.j2"):
        render.nginx_site(load(), tmp_path)


def test_settings_refuse_bad_provisioning_values() -> None:
    base = load()
    data = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    data.pop("env"), data.pop("window")
    data["preview_allow"] = list(data["preview_allow"])
    for key, value in [
        ("fpm_pm", "fast"),
        ("log_level", "verbose"),
        ("app_url", "javascript:alert(1)"),
        ("postgres_version", "15; id"),
        ("request_timeout", 0),
    ]:
        with pytest.raises(ConfigError, match=key):
            settings.from_data({**data, key: value}, "prod")


def test_install_checked_restores_on_failure() -> None:
    command = commands.install_checked("/x/site.new", "/x/site", "nginx -t -q", "/y/site")
    assert command.index("cp -p /x/site /x/site.bgdeploy-old") < command.index(
        "mv -f /x/site.new /x/site"
    )
    failure = command.split("else", 2)[-1]
    assert "mv -f /x/site.bgdeploy-old /x/site" in failure
    assert "rm -f /y/site" in failure and "exit 1" in failure
    assert "if nginx -t -q; then rm -f /x/site.bgdeploy-old" in command


def test_sql_values_are_checked_and_quoted() -> None:
    assert commands.sql_ident("bideshgomon") == '"bideshgomon"'
    assert commands.sql_literal("it's") == "'it''s'"
    for bad in ('x"; DROP ROLE postgres; --', "", "a b"):
        with pytest.raises(ConfigError):
            commands.sql_ident(bad)
    with pytest.raises(ConfigError):
        commands.apt_install(["nginx; rm -rf /"])
    assert "install -y -q --no-install-recommends nginx php8.2-fpm" in commands.apt_install(
        ["nginx", "php8.2-fpm"]
    )


# A verifier PostgreSQL 15 stored for the password "correct horse" (pg_authid.rolpassword).
PG_VERIFIER = (
    "SCRAM-SHA-256$4096:MsD8cOz/uI4I2urZWOs5Tg==$SwzvwdMDCXwDI+e4B6e85Cb0wtFLJV8kt4ZFen2KAsU="
    ":tDPSrwtnSGxG/f7sOYhFeFyFDBCCCxmIPhaQjHoERhI="
)


def test_scram_verifier_matches_postgresql() -> None:
    assert scram_matches(PG_VERIFIER, "correct horse")
    assert not scram_matches(PG_VERIFIER, "correct horse ")
    assert not scram_matches("md5abc", "correct horse")
    assert not scram_matches("", "x")
    mine = scram_verifier("s3cret")
    assert mine.startswith("SCRAM-SHA-256$4096:") and "s3cret" not in mine
    assert scram_matches(mine, "s3cret") and not scram_matches(mine, "s3cret!")
    assert scram_verifier("s3cret") != mine  # a fresh salt each time
