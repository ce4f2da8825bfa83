"""Emergency commands without hosts: what they would run, and refusals of bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bgdeploy import commands
from bgdeploy.core import settings
from bgdeploy.core.errors import ConfigError
from bgdeploy.fleet import fabric_backend, remote
from bgdeploy.oncall import emergency

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prod(group_data) -> settings.Settings:
    return settings.from_data(group_data(), "prod")


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
    assert command.count("php -r") == 1 and command.count("&& COLUMNS=1000 php") == 1


@pytest.mark.parametrize("seconds", [0, -5, 86_401])
def test_long_query_age_is_bounded(seconds: int) -> None:
    with pytest.raises(ConfigError, match="older-than"):
        emergency.long_queries_sql(seconds)
    query = emergency.LongQuery(7, STAMP, STAMP, 60, "SELECT 1")
    with pytest.raises(ConfigError, match="older-than"):
        emergency.terminate_queries_sql([query], seconds)


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


STAMP = "2026-12-03T12:00:00.123456Z"
LISTED = (
    "4242|2026-12-03T11:58:00.000001Z|2026-12-03T12:00:00.123456Z|75|SELECT pg_sleep(60)\n"
    "4243|2026-12-03T11:59:00.500000Z|2026-12-03T12:00:10.000000Z|65|SELECT a|b FROM t\n"
)


def test_long_queries_are_listed_with_what_identifies_them() -> None:
    sql = emergency.long_queries_sql(5)
    assert "pg_terminate_backend" not in sql  # listing never ends anything
    assert "interval '5 seconds'" in sql and "state = 'active'" in sql
    assert "pg_backend_pid()" in sql  # never its own session
    assert "backend_type = 'client backend'" in sql  # never autovacuum or replication
    assert "backend_start AT TIME ZONE 'UTC'" in sql and "query_start AT TIME ZONE 'UTC'" in sql
    first, second = emergency.parse_long_queries(LISTED)
    assert first == emergency.LongQuery(
        4242, "2026-12-03T11:58:00.000001Z", STAMP, 75, "SELECT pg_sleep(60)"
    )
    assert second.query == "SELECT a|b FROM t"  # a | in the query is the query's
    with pytest.raises(ValueError, match="unexpected row"):
        emergency.parse_long_queries("4242|yesterday|today|5|x\n")


def test_terminating_ends_exactly_the_listed_queries_still_running() -> None:
    listed = emergency.parse_long_queries(LISTED)
    sql = emergency.terminate_queries_sql(listed, 5)
    # The listed backends, by pid, session start and query start: no fresh selection.
    assert (
        "(VALUES (4242, '2026-12-03T11:58:00.000001Z'::timestamptz, "
        "'2026-12-03T12:00:00.123456Z'::timestamptz), (4243, "
    ) in sql
    assert "FROM pg_stat_activity WHERE" not in sql
    assert sql.count("pg_terminate_backend") == 2  # one call, and its refusal's message
    # Every check comes before the call (CASE stops at the first true WHEN).
    call = sql.index("WHEN pg_terminate_backend(a.pid)")
    for check in (
        "a.backend_start <> l.backend_start",
        "a.query_start IS DISTINCT FROM l.query_start",
        "a.state <> 'active'",
        "a.query_start >= now() - interval '5 seconds'",
    ):
        assert sql.index(check) < call, check
    ends = emergency.parse_query_ends(
        "4243|finished|its session has ended\n4242|terminated\n", listed
    )
    assert [(e.query.pid, e.outcome, e.detail) for e in ends] == [
        (4242, "terminated", ""),
        (4243, "finished", "its session has ended"),
    ]
    assert ends[1].describe() == "pid 4243 finished (its session has ended): SELECT a|b FROM t"
    with pytest.raises(ValueError, match="no answer for backend"):
        emergency.parse_query_ends("4242|terminated\n", listed)


@pytest.mark.parametrize(
    "query",
    [
        emergency.LongQuery(0, STAMP, STAMP, 60, "x"),
        emergency.LongQuery(7, "2026-12-03'); SELECT pg_terminate_backend(1); --", STAMP, 60, "x"),
        emergency.LongQuery(7, STAMP, "now", 60, "x"),
    ],
)
def test_terminating_refuses_what_was_not_listed(query: emergency.LongQuery) -> None:
    with pytest.raises(ConfigError):
        emergency.terminate_queries_sql([query], 5)


def test_cli_terminates_what_it_listed_and_says_what_had_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from bgdeploy.cli import cli

    listed = {"db": emergency.parse_long_queries(LISTED)}
    asked: list[dict[str, list[emergency.LongQuery]]] = []

    def fake_list(env: str, seconds: int) -> tuple[list[remote.HostResult], dict]:
        return [remote.HostResult("db", True, detail="2 queries")], listed

    def fake_kill(env: str, seconds: int, queries: dict) -> tuple[list[remote.HostResult], dict]:
        asked.append(queries)
        first, second = queries["db"]
        ends = [
            emergency.QueryEnd(first, "terminated"),
            emergency.QueryEnd(second, "finished", "its session has ended"),
        ]
        text = "\n".join(end.describe() for end in ends)
        return [remote.HostResult("db", True, detail=text)], {"db": ends}

    monkeypatch.setattr(emergency, "list_long_queries", fake_list)
    monkeypatch.setattr(emergency, "kill_long_queries", fake_kill)
    args = ["emergency", "prod", "kill-long-queries", "--older-than", "5s"]
    refused = CliRunner().invoke(cli, args, input="n\n")
    assert refused.exit_code == 1 and not asked  # not confirmed: nothing ended
    result = CliRunner().invoke(cli, args, input="y\n")
    assert result.exit_code == 0, result.output
    assert asked == [listed]  # exactly what was listed and confirmed
    assert "pid 4242 terminated: SELECT pg_sleep(60)" in result.output
    assert "pid 4243 finished (its session has ended)" in result.output
    as_json = CliRunner().invoke(cli, [*args, "--yes", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert [e["outcome"] for e in data["db"]["ended"]] == ["terminated", "finished"]
    assert [q["pid"] for q in data["db"]["listed"]] == [4242, 4243]


def test_prefixed_stream_keeps_lines_whole() -> None:
    out = io.StringIO()
    lock = threading.Lock()
    web1 = emergency._Prefixed("web1", out, lock)
    web2 = emergency._Prefixed("web2", out, lock)
    web1.write("first li")
    web2.write("other\n")
    web1.write("ne\nsecond\n")
    assert out.getvalue().splitlines() == ["[web2] other", "[web1] first line", "[web1] second"]


def test_redis_password_goes_on_stdin_never_in_the_command(
    monkeypatch: pytest.MonkeyPatch, group_data
) -> None:
    """clear-caches --flush-redis: the password reaches redis-cli as an AUTH line on stdin."""
    password = "s3cret-redis-pw"
    monkeypatch.setenv("BGDEPLOY_REDIS_PASSWORD", password)
    db = remote.Target("db", "10.0.0.9", 22, "deploy", None, None, ("db",), group_data())
    runs: list[tuple[str, str]] = []

    class Connection:
        """A Fabric connection that records each command and its stdin, and succeeds."""

        def run(self, command: str, **kwargs: object) -> object:
            stream = kwargs["in_stream"]
            runs.append((command, stream.read() if isinstance(stream, io.StringIO) else ""))
            return type("Result", (), {"exited": 0, "stdout": "", "stderr": ""})()

        def close(self) -> None:
            pass

    monkeypatch.setattr(remote, "targets", lambda env, groups: [db])
    monkeypatch.setattr(fabric_backend, "connect", lambda target, *a, **k: Connection())
    results = emergency.clear_caches("prod", flush_redis=True)
    assert [(r.ok, r.detail) for r in results] == [(True, "Redis FLUSHALL")]
    (command, stdin), *others = runs  # then the journal line
    assert command == commands.redis_cli(6379)
    assert stdin == f"AUTH {password}\nFLUSHALL\n"
    assert others and all(not stdin for _, stdin in others)
    assert all(password not in text for text, _ in runs)


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
        "from bgdeploy.fleet import remote\n"
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


def test_log_units(prod: settings.Settings) -> None:
    assert emergency.log_unit(prod, "php-fpm") == "php8.2-fpm"
    assert emergency.log_unit(prod, "nginx-error") == emergency.log_unit(prod, "nginx-access")
    assert emergency.log_unit(prod, "nginx-error") == "nginx"
    assert emergency.log_unit(prod, "laravel") is None
    with pytest.raises(ConfigError, match="log source"):
        emergency.log_unit(prod, "syslog")


def test_journal_of_a_file_only_log_is_refused_before_any_host() -> None:
    with pytest.raises(ConfigError, match="laravel log is a file only"):
        emergency.logs("prod", "laravel", 10, False, journal=True)


def test_journal_tail_validates_the_unit() -> None:
    assert commands.journal_tail("nginx", 5) == "journalctl -q --no-pager -u nginx -n 5"
    assert commands.journal_tail("nginx", 5, follow=True).endswith(" -f")
    with pytest.raises(ConfigError, match="service name"):
        commands.journal_tail("nginx; reboot", 5)


def test_service_log_reads_the_file_or_else_the_journal_on_systemd_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shell of :func:`commands.service_log`, run here: a host's systemd is the
    directory ``SYSTEMD_BOOTED`` names, its journal a ``journalctl`` that echoes its
    arguments (the real one answers in ``tests/integration/test_systemd.py``)."""
    from bgdeploy.commands import services

    booted = tmp_path / "run-systemd-system"
    monkeypatch.setattr(services, "SYSTEMD_BOOTED", str(booted))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text('#!/bin/sh\necho "journal: $*"\n')
    (bin_dir / "journalctl").chmod(0o755)
    log = tmp_path / "php8.2-fpm.log"

    def show(journal: bool = False) -> str:
        command = commands.service_log(str(log), "php8.2-fpm", 2, journal=journal)
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
        done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    journal = "journal: -q --no-pager -u php8.2-fpm -n 2\n"
    # Without systemd: the file, or that it is not there yet; --journal says there is none.
    assert "no log yet" in show()
    assert show(journal=True).startswith("(no journal: this host does not run systemd")
    log.write_text("one\ntwo\nthree\n")
    assert show() == "two\nthree\n"
    # On systemd: the file when it is there, else the unit's journal; --journal: the journal.
    booted.mkdir()
    assert show() == "two\nthree\n"
    assert show(journal=True) == journal
    log.unlink()
    assert show() == f"({log} does not exist: the journal of php8.2-fpm)\n{journal}"
    assert commands.service_log(str(log), None, 2) == commands.tail(str(log), 2)
