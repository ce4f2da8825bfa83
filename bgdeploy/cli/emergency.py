"""``bgdeploy emergency ENV ACTION``: the runbook's emergency commands
(:mod:`bgdeploy.oncall.emergency`)."""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Any

import click

from bgdeploy.cli.main import (
    LibraryChoice,
    WholeNumber,
    echo_json,
    finish,
    handle_errors,
    json_option,
    yes_option,
)

if TYPE_CHECKING:
    from bgdeploy.oncall.emergency import LongQuery, QueryEnd


@click.group("emergency")
@click.argument("env")
@click.pass_context
def emergency_group(ctx: click.Context, env: str) -> None:
    """The runbook's emergency commands on ENV: logs, restarts, cache clears, database checks
    (bgdeploy emergency ENV ACTION ...)."""
    ctx.obj = env


@emergency_group.command("logs")
@click.pass_obj
@click.option(
    "--source",
    type=LibraryChoice("bgdeploy.oncall.emergency:LOG_SOURCES"),
    default="laravel",
    show_default=True,
)
@click.option("--lines", "-n", default=100, show_default=True, type=WholeNumber(1, 100_000))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option(
    "--journal",
    is_flag=True,
    help="The service's systemd journal instead of its file (php-fpm, nginx-*).",
)
@handle_errors
def emergency_logs(env: str, source: str, lines: int, follow: bool, journal: bool) -> None:
    """A log from every web host, each line prefixed with its host. The source's file; on a
    systemd host without that file, its service's journal (--journal: the journal always)."""
    from bgdeploy.oncall import emergency

    results = emergency.logs(env, source, lines, follow, journal=journal)
    failed = [result for result in results if not result.ok]
    for result in failed:
        click.echo(f"[{result.host}] FAILED: {result.summary()}", err=True)
    if failed:
        sys.exit(1)


@emergency_group.command("restart")
@click.pass_obj
@click.argument("services", nargs=-1, type=LibraryChoice("bgdeploy.oncall.emergency:RESTARTABLE"))
@handle_errors
def emergency_restart(env: str, services: tuple[str, ...]) -> None:
    """Restart services gracefully (default: php-fpm, nginx, redis and workers)."""
    from bgdeploy.oncall import emergency

    finish(emergency.restart(env, services))


@emergency_group.command("clear-caches")
@click.pass_obj
@click.option("--flush-redis", is_flag=True, help="Also FLUSHALL Redis (asks first).")
@yes_option
@handle_errors
def emergency_clear_caches(env: str, flush_redis: bool, yes: bool) -> None:
    """optimize:clear and every cache clear in the live colour, then warm the caches again."""
    from bgdeploy.oncall import emergency

    if flush_redis and not yes:
        click.confirm(
            f"FLUSHALL deletes every key in {env}'s Redis: sessions, queued jobs, feature flag "
            "overrides. Continue?", abort=True,
        )  # fmt: skip
    finish(emergency.clear_caches(env, flush_redis))


@emergency_group.command("db-connections")
@click.pass_obj
@handle_errors
def emergency_db_connections(env: str) -> None:
    """Connections to PostgreSQL by database and state."""
    from bgdeploy.oncall import emergency

    finish(
        emergency.db_query(env, emergency.CONNECTIONS_SQL, "db-connections"), "database|state|count"
    )


@emergency_group.command("kill-long-queries")
@click.pass_obj
@click.option(
    "--older-than",
    default="5m",
    show_default=True,
    help="Age of the queries to end: 30s, 5m, 2h (a bare number is minutes).",
)
@yes_option
@json_option("Print what was listed and ended as JSON.")
@handle_errors
def emergency_kill_long_queries(env: str, older_than: str, yes: bool, as_json: bool) -> None:
    """Terminate the queries active for longer than --older-than, as listed (asks first).

    Exactly the queries listed are ended, each only if it is still running (the same backend,
    session and query start): one that finished before the confirmation is left alone and
    said so."""
    from bgdeploy.fleet import remote
    from bgdeploy.oncall import emergency

    seconds = emergency.parse_age(older_than)
    results, listed = emergency.list_long_queries(env, seconds)
    click.echo(remote.format_results(results, "long queries"), err=as_json)
    failed = any(not result.ok for result in results)
    ended: dict[str, list[QueryEnd]] = {}
    if any(listed.values()):
        if not yes:
            click.confirm("Terminate these queries?", abort=True, err=as_json)
        done, ended = emergency.kill_long_queries(env, seconds, listed)
        click.echo(remote.format_results(done, "ended"), err=as_json)
        failed = failed or any(not result.ok for result in done)
    if as_json:
        echo_json(query_ends(listed, ended))
    if failed:
        sys.exit(1)


def query_ends(
    listed: dict[str, list[LongQuery]], ended: dict[str, list[QueryEnd]]
) -> dict[str, Any]:
    """``--json`` of kill-long-queries: per db host, the queries listed and what became of
    each (terminated, finished, not terminated)."""
    return {
        host: {
            "listed": [dataclasses.asdict(query) for query in queries],
            "ended": [
                {"pid": end.query.pid, "outcome": end.outcome, "detail": end.detail}
                for end in ended.get(host, [])
            ],
        }
        for host, queries in listed.items()
    }


@emergency_group.command("table-sizes")
@click.pass_obj
@handle_errors
def emergency_table_sizes(env: str) -> None:
    """The ten largest tables of the app's database."""
    from bgdeploy.oncall import emergency

    finish(emergency.db_query(env, emergency.TABLE_SIZES_SQL, "table-sizes"), "table|size")
