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
from dataclasses import dataclass
from typing import TextIO

from bgdeploy import commands
from bgdeploy.core import journal
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import fabric_backend, remote

LOG_SOURCES = ("laravel", "php-fpm", "nginx-access", "nginx-error")
JOURNALED_SOURCES = ("php-fpm", "nginx-access", "nginx-error")
"""Log sources whose service is a systemd unit: on a systemd host its journal holds what the
service said outside its files (start, stop, reload, a failed start)."""
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


LONG_QUERY_FIELDS = 5
"""pid, backend_start, query_start (UTC, microseconds), seconds running, the query's start."""

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_UTC = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''


def _check_age(seconds: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= MAX_AGE:
        raise ConfigError(f"--older-than must be 1 to {MAX_AGE} seconds, not {seconds!r}")
    return seconds


def long_queries_sql(seconds: int) -> str:
    """The runbook's query for client queries active for longer than ``seconds``: each as
    ``pid|backend_start|query_start|seconds|query`` (times in UTC to the microsecond, what
    :func:`terminate_queries_sql` checks again; the query's first 80 characters on one
    line), the oldest first. Lists only; see :func:`terminate_queries_sql`."""
    _check_age(seconds)
    return (  # seconds is a checked int, the rest constants: nothing from outside
        f"SELECT pid, to_char(backend_start AT TIME ZONE 'UTC', {_UTC}), "  # noqa: S608
        f"to_char(query_start AT TIME ZONE 'UTC', {_UTC}), "
        "floor(extract(epoch FROM now() - query_start))::bigint, "
        "regexp_replace(left(query, 80), '\\s+', ' ', 'g') "
        "FROM pg_stat_activity WHERE state = 'active' "
        "AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
        f"AND query_start < now() - interval '{seconds} seconds' ORDER BY query_start"
    )


@dataclass(frozen=True)
class LongQuery:
    """A query :func:`long_queries_sql` listed: its backend, when it (and its session)
    started, for how long it had been running, and its first characters."""

    pid: int
    backend_start: str
    query_start: str
    seconds: int
    query: str

    def describe(self) -> str:
        return f"pid {self.pid}, running {self.seconds} s: {self.query}"


@dataclass(frozen=True)
class QueryEnd:
    """What became of a listed query when the operator confirmed: ``terminated`` (its backend
    was), ``finished`` (it was no longer running: ``detail`` says how) or ``not terminated``
    (``pg_terminate_backend`` said no)."""

    query: LongQuery
    outcome: str
    detail: str = ""

    def describe(self) -> str:
        what = "terminated" if self.outcome == "terminated" else f"{self.outcome} ({self.detail})"
        return f"pid {self.query.pid} {what}: {self.query.query}"


def parse_long_queries(output: str) -> list[LongQuery]:
    """The rows of :func:`long_queries_sql` (``psql -tA``)."""
    found = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", LONG_QUERY_FIELDS - 1)
        if (
            len(fields) != LONG_QUERY_FIELDS
            or not fields[0].isdigit()
            or not fields[3].isdigit()
            or not all(_TIMESTAMP.fullmatch(field) for field in fields[1:3])
        ):
            raise ValueError(f"unexpected row from pg_stat_activity: {line!r}")
        found.append(LongQuery(int(fields[0]), fields[1], fields[2], int(fields[3]), fields[4]))
    return found


def terminate_queries_sql(queries: Sequence[LongQuery], seconds: int) -> str:
    """Terminate exactly the backends of ``queries`` (listed, then confirmed) that still run
    the query they were listed with: the same pid, session (``backend_start``) and query
    (``query_start``), still active for longer than ``seconds``. Nothing is chosen afresh: a
    query that finished, or a session that went on to another query, is left alone. One row a
    listed query: ``pid|terminated``, ``pid|finished|why`` or ``pid|not terminated|why``.

    ``pg_terminate_backend`` runs last in each ``CASE``, so only where every check passed.
    """
    _check_age(seconds)
    if not queries:
        raise ValueError("no query to terminate")
    rows = []
    for query in queries:
        if isinstance(query.pid, bool) or not isinstance(query.pid, int) or query.pid <= 0:
            raise ConfigError(f"backend pid {query.pid!r} is not valid")
        for stamp in (query.backend_start, query.query_start):
            if not _TIMESTAMP.fullmatch(stamp):
                raise ConfigError(f"time {stamp!r} is not a UTC timestamp")
        times = f"'{query.backend_start}'::timestamptz, '{query.query_start}'::timestamptz"
        rows.append(f"({query.pid}, {times})")
    return (  # pids are checked ints, times checked timestamps, seconds a checked int
        "SELECT l.pid, CASE "  # noqa: S608
        "WHEN a.pid IS NULL OR a.backend_start <> l.backend_start "
        "THEN 'finished|its session has ended' "
        "WHEN a.query_start IS DISTINCT FROM l.query_start "
        "THEN 'finished|the session has run another query since' "
        "WHEN a.state <> 'active' "
        "THEN 'finished|the session is ' || coalesce(a.state, 'gone') || ' now' "
        f"WHEN a.query_start >= now() - interval '{seconds} seconds' "
        "THEN 'not terminated|younger than the threshold' "
        "WHEN pg_terminate_backend(a.pid) THEN 'terminated' "
        "ELSE 'not terminated|pg_terminate_backend refused' END "
        f"FROM (VALUES {', '.join(rows)}) AS l(pid, backend_start, query_start) "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid AND a.backend_type = 'client backend' "
        "AND a.pid <> pg_backend_pid() ORDER BY l.pid"
    )


def parse_query_ends(output: str, queries: Sequence[LongQuery]) -> list[QueryEnd]:
    """The rows of :func:`terminate_queries_sql`, one for each of ``queries`` in order."""
    outcomes: dict[int, QueryEnd] = {}
    by_pid = {query.pid: query for query in queries}
    for line in output.splitlines():
        if not line.strip():
            continue
        pid, _, rest = line.partition("|")
        outcome, _, detail = rest.partition("|")
        if not pid.isdigit() or int(pid) not in by_pid:
            raise ValueError(f"unexpected row from pg_terminate_backend: {line!r}")
        outcomes[int(pid)] = QueryEnd(by_pid[int(pid)], outcome, detail)
    missing = [query.pid for query in queries if query.pid not in outcomes]
    if missing:
        raise ValueError(f"no answer for backend(s) {', '.join(map(str, missing))}")
    return [outcomes[query.pid] for query in queries]


def list_long_queries(
    env: str, seconds: int
) -> tuple[list[remote.HostResult], dict[str, list[LongQuery]]]:
    """The client queries active for longer than ``seconds`` on each db host of ``env``."""
    long_queries_sql(seconds)  # a bad age fails before any connection
    found: dict[str, list[LongQuery]] = {}

    def task(host: fabric_backend.Host) -> str:
        target = host.target
        settings = host_settings(target, env)
        result = host.check(
            commands.psql_query(settings.db_port, long_queries_sql(seconds), settings.db_name)
        )
        found[target.name] = parse_long_queries(result.stdout)
        return "\n".join(q.describe() for q in found[target.name]) or "no query that old"

    return fabric_backend.run_tasks(remote.targets(env, ("db",)), task), found


def kill_long_queries(
    env: str, seconds: int, listed: dict[str, list[LongQuery]]
) -> tuple[list[remote.HostResult], dict[str, list[QueryEnd]]]:
    """Terminate the queries ``listed`` (by :func:`list_long_queries`, then confirmed) on
    each db host, those still running as listed only (:func:`terminate_queries_sql`), and
    journal which were terminated and which had finished. A host fails when a listed query
    could not be terminated."""
    hosts = [target for target in remote.targets(env, ("db",)) if listed.get(target.name)]
    ended: dict[str, list[QueryEnd]] = {}

    def task(host: fabric_backend.Host) -> str:
        target = host.target
        settings = host_settings(target, env)
        queries = listed[target.name]
        result = host.check(
            commands.psql_query(
                settings.db_port, terminate_queries_sql(queries, seconds), settings.db_name
            )
        )
        ended[target.name] = outcomes = parse_query_ends(result.stdout, queries)
        terminated = [str(e.query.pid) for e in outcomes if e.outcome == "terminated"]
        finished = [str(e.query.pid) for e in outcomes if e.outcome == "finished"]
        record(
            host, settings, "kill-long-queries",
            f"terminated: {', '.join(terminated) or 'none'}; had finished: "
            f"{', '.join(finished) or 'none'}",
        )  # fmt: skip
        lines = "\n".join(e.describe() for e in outcomes)
        if any(e.outcome not in ("terminated", "finished") for e in outcomes):
            raise OperationFailed(lines)
        return lines

    return fabric_backend.run_tasks(hosts, task), ended


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


def log_unit(settings: Settings, source: str) -> str | None:
    """The systemd unit whose journal holds a log source's service messages on a systemd
    host (None: the source is a file only)."""
    log_path(settings, source)  # an unknown source is refused by name
    if source not in JOURNALED_SOURCES:
        return None
    return settings.php_fpm_service if source == "php-fpm" else "nginx"


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
    env: str,
    source: str,
    lines: int,
    follow: bool,
    out: TextIO = sys.stdout,
    journal: bool = False,
) -> list[remote.HostResult]:
    """Print a log from every web host, each line prefixed with its host (``--follow``: live).

    Each host shows the source's file; on a systemd host where the file is not there, its
    service's journal (:func:`log_unit`); ``journal``: the journal whatever the files (a
    source that is a file only is refused before connecting)."""
    if not 1 <= lines <= 100_000:
        raise ConfigError(f"--lines must be 1 to 100000, not {lines}")
    if journal and source not in JOURNALED_SOURCES:
        raise ConfigError(
            f"--journal: the {source} log is a file only; in the journal: "
            + ", ".join(JOURNALED_SOURCES)
        )
    hosts = remote.targets(env, ("web",))
    lock = threading.Lock()

    def task(host: fabric_backend.Host) -> str:
        settings = host_settings(host.target, env)
        path = log_path(settings, source)
        stream = _Prefixed(host.name, out, lock)
        result = host.stream(
            commands.service_log(path, log_unit(settings, source), lines, follow, journal),
            stream,
            sudo=True,
            timeout=None if follow else 60,
        )
        if stream.partial:
            stream.write("\n")
        result.check("tail")
        return path

    return fabric_backend.run_tasks(hosts, task)


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

    def task(host: fabric_backend.Host) -> str:
        settings = host_settings(host.target, env)
        done = []
        for service in wanted:
            group = "db" if service == "redis" else "web"
            if group in host.target.groups:
                host.check(restart_command(service, settings), sudo=True)
                done.append(service)
        record(host, settings, "restart", f"restarted {', '.join(done) or 'nothing'}")
        return "restarted " + (", ".join(done) or "nothing here")

    return fabric_backend.run_tasks(hosts, task)


def clear_caches(env: str, flush_redis: bool = False) -> list[remote.HostResult]:
    """``optimize:clear`` and every cache clear in the live colour, then warm the caches again;
    ``flush_redis``: the runbook's FLUSHALL on the db host (confirmed by the CLI first)."""
    hosts = remote.targets(env, ("web", "db") if flush_redis else ("web",))
    password = (
        settings_mod.secrets_from_env(("REDIS_PASSWORD",))["REDIS_PASSWORD"] if flush_redis else ""
    )

    def task(host: fabric_backend.Host) -> str:
        settings = host_settings(host.target, env)
        done = []
        if "web" in host.target.groups:
            host.check(commands.clear_and_warm_caches(settings), sudo=True)
            done.append("caches cleared and warmed")
        if flush_redis and "db" in host.target.groups:
            host.check(
                commands.redis_cli(settings.redis_port), stdin=f"AUTH {password}\nFLUSHALL\n"
            )
            done.append("Redis FLUSHALL")
        record(host, settings, "clear-caches", "; ".join(done))
        return "; ".join(done)

    return fabric_backend.run_tasks(hosts, task)


def db_query(env: str, sql: str, action: str, journaled: bool = False) -> list[remote.HostResult]:
    """Run one of the runbook's database queries on the db host (as postgres, app database)."""
    hosts = remote.targets(env, ("db",))

    def task(host: fabric_backend.Host) -> str:
        settings = host_settings(host.target, env)
        result = host.check(commands.psql_query(settings.db_port, sql, settings.db_name))
        rows = [row for row in result.stdout.splitlines() if row.strip()]
        if journaled:
            record(host, settings, action, f"{len(rows)} row(s)")
        return "\n".join(rows) if rows else "(no rows)"

    return fabric_backend.run_tasks(hosts, task)


def record(host: fabric_backend.Host, settings: Settings, action: str, what: str) -> None:
    """Journal an emergency action on the host it touched."""
    entry = journal.new_entry(
        "emergency", host=host.name, env=settings.env, result="ok", message=what,
        details={"action": action},
    )  # fmt: skip
    host.check(commands.journal_append(settings, entry), sudo=True)
