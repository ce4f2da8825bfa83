"""Emergency commands without hosts: what they would run, and refusals of bad input."""

from __future__ import annotations

import io
import runpy
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bgdeploy import commands, emergency, settings
from bgdeploy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prod() -> settings.Settings:
    data = {
        k: v
        for k, v in runpy.run_path(str(ROOT / "group_data" / "all.py")).items()
        if not k.startswith("__")
    }
    return settings.from_data(data, "prod")


def test_log_sources(prod: settings.Settings) -> None:
    assert (
        emergency.log_path(prod, "laravel")
        == "/var/www/bideshgomon/shared/storage/logs/laravel.log"
    )
    assert emergency.log_path(prod, "php-fpm") == "/var/log/php8.2-fpm.log"
    with pytest.raises(ConfigError, match="log source"):
        emergency.log_path(prod, "../../etc/shadow")


def test_restarts_are_graceful(prod: settings.Settings) -> None:
    fpm = emergency.restart_command("php-fpm", prod)
    assert fpm.index("php-fpm8.2 -t") < fpm.index("service php8.2-fpm reload")
    assert emergency.restart_command("nginx", prod) == "nginx -t -q && service nginx reload"
    workers = emergency.restart_command("workers", prod)
    assert "queue:restart" in workers
    stop, start = (f"supervisor.sock {a} bideshgomon-worker" for a in ("stop", "start"))
    assert workers.index(stop) < workers.index("queue:restart") < workers.index(start)
    assert "/var/www/bideshgomon/current" in workers
    with pytest.raises(ConfigError):
        emergency.restart_command("postgresql; reboot", prod)


def test_cache_clear_then_warm_in_the_live_colour(prod: settings.Settings) -> None:
    command = commands.clear_and_warm_caches(prod)
    assert "/var/www/bideshgomon/current" in command
    assert command.index("optimize:clear") < command.index("config:cache")
    # One PHP process: the application boots once for the ten commands.
    assert command.count("php -r") == 1 and command.count("&& php") == 1


@pytest.mark.parametrize("seconds", [0, -5, 86_401])
def test_long_query_age_is_bounded(seconds: int) -> None:
    with pytest.raises(ConfigError, match="older-than"):
        emergency.long_queries_sql(seconds, terminate=True)


@pytest.mark.parametrize(
    ("text", "seconds"), [("5s", 5), ("5m", 300), ("5", 300), ("2h", 7200), ("90s", 90), (7, 420)]
)
def test_older_than_takes_seconds_minutes_and_hours(text: str, seconds: int) -> None:
    assert emergency.parse_age(text) == seconds


@pytest.mark.parametrize(
    "text", ["0s", "25h", "5d", "-5m", "5m; DROP TABLE x", "", "1.5m", " 2h", "5m\n"]
)
def test_older_than_refuses_anything_else(text: str) -> None:
    with pytest.raises(ConfigError, match="older-than"):
        emergency.parse_age(text)


def test_long_query_sql_lists_or_terminates() -> None:
    assert "pg_terminate_backend" not in emergency.long_queries_sql(5, terminate=False)
    sql = emergency.long_queries_sql(5, terminate=True)
    assert "pg_terminate_backend(pid)" in sql and "interval '5 seconds'" in sql
    assert "pg_backend_pid()" in sql  # never its own session
    assert "backend_type = 'client backend'" in sql  # never autovacuum or replication


def test_prefixed_stream_keeps_lines_whole() -> None:
    out = io.StringIO()
    lock = threading.Lock()
    web1 = emergency._Prefixed("web1", out, lock)
    web2 = emergency._Prefixed("web2", out, lock)
    web1.write("first li")
    web2.write("other\n")
    web1.write("ne\nsecond\n")
    assert out.getvalue().splitlines() == ["[web2] other", "[web1] first line", "[web1] second"]


def test_redis_password_never_in_the_command() -> None:
    assert commands.redis_cli(6379) == "redis-cli -p 6379"


def test_tail_quotes_the_path() -> None:
    assert commands.tail("/var/log/a b.log", 50, follow=True) == "tail -n 50 -F '/var/log/a b.log'"


def test_a_log_not_written_yet_is_said_so_not_a_failure(tmp_path) -> None:
    missing = tmp_path / "laravel.log"
    done = subprocess.run(
        ["sh", "-c", commands.tail(str(missing), 5)], capture_output=True, text=True
    )
    assert done.returncode == 0 and "no log yet" in done.stdout
    missing.write_text("".join(f"line {n}\n" for n in range(10)))
    done = subprocess.run(
        ["sh", "-c", commands.tail(str(missing), 2)], capture_output=True, text=True
    )
    assert done.stdout == "line 8\nline 9\n"


def test_paramiko_tracebacks_stay_off_the_terminal() -> None:
    """In a fresh process (pytest's own log capture would hide the difference)."""
    script = (
        "import logging, sys\n"
        "from bgdeploy import remote\n"
        "if sys.argv[1] == 'quiet': remote.quiet_paramiko()\n"
        "logging.getLogger('paramiko.transport').error('Error reading SSH protocol banner')\n"
    )

    def stderr(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, check=True
        )
        return done.stderr

    assert "banner" in stderr("loud")
    assert stderr("quiet") == ""
