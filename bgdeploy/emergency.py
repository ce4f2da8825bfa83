"""The runbook's emergency commands, for an on-call engineer at a terminal.

``bgdeploy emergency ENV ACTION``: live logs from every web host, graceful restarts, cache
clears, and the database checks of the runbook's "Database emergency", run over Fabric on the
inventory's hosts in parallel. Every action that changes something is journaled on each host
it touched. Destructive actions (a Redis FLUSHALL, killing queries) are confirmed by the CLI
first.
"""

from __future__ import annotations

import io
import re
import sys
import threading
from collections.abc import Sequence
from typing import Any, TextIO

from bgdeploy import commands, journal, remote
from bgdeploy import settings as settings_mod
from bgdeploy.errors import ConfigError
from bgdeploy.settings import Settings

LOG_SOURCES = ("laravel", "php-fpm", "nginx-access", "nginx-error")
RESTARTABLE = ("php-fpm", "nginx", "redis", "workers")

CONNECTIONS_SQL = (
    "SELECT datname, state, count(*) FROM pg_stat_activity "
    "WHERE backend_type = 'client backend' GROUP BY 1, 2 ORDER BY 3 DESC"
)
TABLE_SIZES_SQL = (
    "SELECT schemaname || '.' || tablename, "
    "pg_size_pretty(pg_total_relation_size(quote_ident(schemaname) || '.' || "
    "quote_ident(tablename))) FROM pg_tables "
    "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
    "ORDER BY pg_total_relation_size(quote_ident(schemaname) || '.' || quote_ident(tablename)) "
    "DESC LIMIT 10"
)


AGE = re.compile(r"(\d{1,6})([smh]?)")
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "": 60}
MAX_AGE = 24 * 3600


def parse_age(text: str | int) -> int:
    """``--older-than``: ``5s``, ``5m``, ``2h``, or a bare number of minutes, in seconds
    (1 second to 24 hours)."""
    found = AGE.fullmatch(str(text))
    seconds = int(found.group(1)) * AGE_UNITS[found.group(2)] if found else 0
    if not 1 <= seconds <= MAX_AGE:
        raise ConfigError(
            f"--older-than must be 1s to 24h (like 30s, 5m, 2h; a bare number is minutes), "
            f"not {text!r}"
        )
    return seconds


def long_queries_sql(seconds: int, terminate: bool) -> str:
    """The runbook's query for active queries older than ``seconds`` (terminated or listed)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_AGE:
        raise ConfigError(f"--older-than must be 1 to {MAX_AGE} seconds, not {seconds!r}")
    what = (
        "pid, pg_terminate_backend(pid)"
        if terminate
        else "pid, now() - query_start, left(query, 80)"
    )
    return (  # seconds is a checked int and `what` a constant: nothing from outside
        f"SELECT {what} FROM pg_stat_activity WHERE state = 'active' "  # noqa: S608
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
        f"AND query_start < now() - interval '{seconds} seconds'"
    )


def log_path(settings: Settings, source: str) -> str:
    """Where a log source lives on a web host."""
    paths = {
        "laravel": f"{settings.app_root}/shared/storage/logs/laravel.log",
        "php-fpm": f"/var/log/php{settings.php_version}-fpm.log",
        "nginx-access": "/var/log/nginx/access.log",
        "nginx-error": "/var/log/nginx/error.log",
    }
    if source not in paths:
        raise ConfigError(f"log source {source!r} is not one of {', '.join(LOG_SOURCES)}")
    return paths[source]


def host_settings(target: remote.Target, env: str) -> Settings:
    return settings_mod.from_data(target.data, env)


class _Prefixed(io.TextIOBase):
    """A stream that writes each line to ``out`` prefixed with the host's name."""

    def __init__(self, host: str, out: TextIO, lock: threading.Lock) -> None:
        self.prefix = f"[{host}] "
        self.out = out
        self.lock = lock
        self.partial = ""

    def write(self, text: str) -> int:
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        if lines:
            with self.lock:
                for line in lines:
                    self.out.write(self.prefix + line + "\n")
                self.out.flush()
        return len(text)


def logs(
    env: str, source: str, lines: int, follow: bool, out: TextIO = sys.stdout
) -> list[remote.HostResult]:
    """Print a log from every web host, each line prefixed with its host (``--follow``: live)."""
    if not 1 <= lines <= 100_000:
        raise ConfigError(f"--lines must be 1 to 100000, not {lines}")
    hosts = remote.targets(env, ("web",))
    lock = threading.Lock()

    def task(connection: Any, target: remote.Target) -> str:
        path = log_path(host_settings(target, env), source)
        stream = _Prefixed(target.name, out, lock)
        result = remote.sudo(
            connection,
            commands.tail(path, lines, follow),
            hide=False,
            warn=True,
            out_stream=stream,
            err_stream=stream,
            timeout=None if follow else 60,
        )
        if stream.partial:
            stream.write("\n")
        if result.exited != 0:
            raise remote.CommandFailed(result)
        return path

    return remote.run_tasks(hosts, task)


def restart_command(service: str, settings: Settings) -> str:
    """The gentlest restart the service allows: php-fpm and nginx reload (config tested first,
    requests in flight finish); Redis restarts; workers finish their job, then restart."""
    if service == "php-fpm":
        return commands.php_fpm_reload(settings.php_version)
    if service == "nginx":
        return commands.nginx_reload()
    if service == "redis":
        return commands.service("redis-server", "restart")
    if service == "workers":
        return commands.restart_workers(settings)
    raise ConfigError(f"cannot restart {service!r}: choose from {', '.join(RESTARTABLE)}")


def restart(env: str, services: Sequence[str]) -> list[remote.HostResult]:
    """Restart services gracefully on the hosts that run them (Redis: db hosts)."""
    wanted = list(dict.fromkeys(services or RESTARTABLE))
    for service in wanted:
        if service not in RESTARTABLE:
            raise ConfigError(f"cannot restart {service!r}: choose from {', '.join(RESTARTABLE)}")
    hosts = remote.targets(env, ("web", "db"))

    def task(connection: Any, target: remote.Target) -> str:
        settings = host_settings(target, env)
        done = []
        for service in wanted:
            group = "db" if service == "redis" else "web"
            if group in target.groups:
                remote.sudo(connection, restart_command(service, settings))
                done.append(service)
        record(connection, settings, target, "restart", f"restarted {', '.join(done) or 'nothing'}")
        return "restarted " + (", ".join(done) or "nothing here")

    return remote.run_tasks(hosts, task)


def clear_caches(env: str, flush_redis: bool = False) -> list[remote.HostResult]:
    """``optimize:clear`` and every cache clear in the live colour, then warm the caches again;
    ``flush_redis``: the runbook's FLUSHALL on the db host (confirmed by the CLI first)."""
    hosts = remote.targets(env, ("web", "db") if flush_redis else ("web",))
    password = (
        settings_mod.secrets_from_env(("REDIS_PASSWORD",))["REDIS_PASSWORD"] if flush_redis else ""
    )

    def task(connection: Any, target: remote.Target) -> str:
        settings = host_settings(target, env)
        done = []
        if "web" in target.groups:
            remote.sudo(connection, commands.clear_and_warm_caches(settings))
            done.append("caches cleared and warmed")
        if flush_redis and "db" in target.groups:
            connection.run(
                commands.redis_cli(settings.redis_port), hide=True, in_stream=io.StringIO(
                    f"AUTH {password}\nFLUSHALL\n"
                ),
            )  # fmt: skip
            done.append("Redis FLUSHALL")
        record(connection, settings, target, "clear-caches", "; ".join(done))
        return "; ".join(done)

    return remote.run_tasks(hosts, task)


def db_query(env: str, sql: str, action: str, journaled: bool = False) -> list[remote.HostResult]:
    """Run one of the runbook's database queries on the db host (as postgres, app database)."""
    hosts = remote.targets(env, ("db",))

    def task(connection: Any, target: remote.Target) -> str:
        settings = host_settings(target, env)
        result = connection.run(
            commands.psql_query(settings.db_port, sql, settings.db_name), hide=True,
            in_stream=False,
        )  # fmt: skip
        rows = [row for row in result.stdout.splitlines() if row.strip()]
        if journaled:
            record(connection, settings, target, action, f"{len(rows)} row(s)")
        return "\n".join(rows) if rows else "(no rows)"

    return remote.run_tasks(hosts, task)


def record(
    connection: Any, settings: Settings, target: remote.Target, action: str, what: str
) -> None:
    """Journal an emergency action on the host it touched."""
    entry = journal.new_entry(
        "emergency", host=target.name, env=settings.env, result="ok", message=what,
        details={"action": action},
    )  # fmt: skip
    remote.sudo(connection, commands.journal_append(settings, entry))
