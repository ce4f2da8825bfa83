"""The ``bgdeploy`` command line.

Every command prints what it did per host and exits 0 on success, 1 when an operation failed,
2 on bad usage or configuration, and 3 when a policy refused to act. ``--json`` gives
machine-readable output on stdout; progress goes to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from bgdeploy.checks import smoke
from bgdeploy.core import journal, windows
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import BgdeployError, ConfigError
from bgdeploy.fleet import remote, runner
from bgdeploy.oncall import emergency, flags, history
from bgdeploy.strategies import switch


class WholeNumber(click.IntRange):
    """A whole number written as digits only, in ``[low, high]``: no sign, space, newline or
    underscore (Python's ``int()`` would take ``" 1\\n"`` or ``1_0``)."""

    name = "whole number"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            self.fail(f"{value!r} is not a whole number (digits only)", param, ctx)
        return super().convert(value, param, ctx)


def _progress(line: str) -> None:
    click.echo(f"  {line}", err=True)


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a message on stderr and the documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BgdeployError as error:
            click.echo(f"bgdeploy: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("bgdeploy: interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bgdeploy")
def cli() -> None:
    """Deploy the BideshGomon platform safely, and bring it back when something breaks."""


@cli.group("sandbox")
def sandbox_group() -> None:
    """The local Docker fleet (web hosts and a db host) for the demo and the tests."""


_name_option = click.option(
    "--name", default="default", show_default=True, help="Which sandbox (several can run)."
)


@sandbox_group.command("up")
@_name_option
@click.option("--web", "web", default=2, show_default=True, help="Number of web hosts.")
@click.option("--single", is_flag=True, help="One host that is both web and db host.")
@click.option(
    "--monitoring",
    is_flag=True,
    help="Also run Prometheus, scraping every web host's /metrics with the runbook's alerts.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_handle_errors
def sandbox_up(name: str, web: int, single: bool, monitoring: bool, as_json: bool) -> None:
    """Start a sandbox, building its image first when the recipe changed."""
    from bgdeploy import sandbox  # lazily: docker and the monitoring image (CLI start-up time)

    layout = "one host (web and db)" if single else f"{web} web host(s) and a db host"
    click.echo(f"sandbox {name}: starting {layout}", err=True)
    sandbox.up(
        name, web=1 if single else web, single=single, monitoring=monitoring, progress=_progress
    )
    _print_status(sandbox.status(name), as_json)


@sandbox_group.command("status")
@_name_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_handle_errors
def sandbox_status(name: str, as_json: bool) -> None:
    """Each container of a sandbox, its ports, and whether its SSH server answers."""
    from bgdeploy import sandbox

    report = sandbox.status(name)
    _print_status(report, as_json)
    if not all(host["ready"] for host in report["hosts"]):
        sys.exit(1)
    if "monitoring" in report and not report["monitoring"]["ready"]:
        sys.exit(1)


@sandbox_group.command("down")
@_name_option
@_handle_errors
def sandbox_down(name: str) -> None:
    """Remove a sandbox's containers, network and files (and nothing else)."""
    from bgdeploy import sandbox

    removed = sandbox.down(name)
    for item in removed:
        click.echo(f"removed {item}")
    if not removed:
        click.echo(f"sandbox {name}: nothing to remove")


@cli.command("provision")
@click.argument("env")
@click.option("--limit", multiple=True, help="Only these hosts or groups (repeatable).")
@_handle_errors
def provision_cmd(env: str, limit: tuple[str, ...]) -> None:
    """Set up the servers of ENV (pyinfra deploys/provision.py): users, layout, nginx, php-fpm,
    supervisor, cron, logrotate, PostgreSQL and Redis. Idempotent: a second run changes nothing."""
    runner.check_environment(env)
    settings_mod.secrets_from_env()
    result = runner.run_deploy(env, "deploys/provision.py", limit=list(limit))
    _print_run_summary(result)
    if result.returncode != 0:
        sys.exit(1)


@cli.command("deploy")
@click.argument("env")
@click.option("--ref", help="Branch, tag or commit to deploy (default: group_data's ref).")
@click.option("--force", is_flag=True, help="Deploy even when that commit is already live.")
@click.option("--emergency", is_flag=True, help="Override the deploy window (needs --reason).")
@click.option("--reason", help="Why (journaled; required with --emergency).")
@click.option(
    "--allow-destructive",
    is_flag=True,
    help="Let pending migrations drop or rename (a verified snapshot is taken first).",
)
@click.option(
    "--strategy",
    type=click.Choice(("in-place", "blue-green")),
    default=None,
    help="in-place (deploys/release.py, the default) or blue-green (deploys/blue_green.py).",
)
@click.option(
    "--canary",
    "canary",
    type=float,
    metavar="PCT",
    help="Blue-green with a canary: PCT % of clients on the new colour, the metric gate, "
    "then promote or send everything back.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the per-host result as JSON.")
@_handle_errors
def deploy_cmd(
    env: str,
    ref: str | None,
    strategy: str | None,
    canary: float | None,
    force: bool,
    emergency: bool,
    reason: str | None,
    allow_destructive: bool,
    as_json: bool,
) -> None:
    """Deploy REF to ENV. In place (the runbook's manual deployment, pyinfra
    deploys/release.py): lock, preflight, checkout, composer, npm, snapshot and migrations,
    caches, reloads, workers, health; a failure restores the previous release. Blue-green
    (deploys/blue_green.py): the idle colour is built the same way, smoke-tested, switched to
    on every host or none, watched, and switched back on failure. Canary (--canary PCT,
    blue-green): PCT % of clients (sticky) on the new colour until the metric gate promotes it
    or sends every client back.

    Exit 0 deployed (or already live), 1 failed, 2 bad input, 3 refused (window, lock,
    destructive migration). Ends with a table: host, sha before -> after, result, duration.
    """
    from bgdeploy.core import release_report
    from bgdeploy.strategies import deploying

    request = deploying.check_request(
        env,
        ref,
        force=force,
        allow_destructive=allow_destructive,
        emergency=emergency,
        reason=reason,
        strategy=strategy or ("blue-green" if canary is not None else "in-place"),
        canary=canary,
    )
    if request.window.emergency:
        click.echo(request.window.describe(), err=True)
    how = request.strategy + (f", canary {request.canary:g}%" if request.canary else "")
    click.echo(f"deploying {request.ref} to {env} ({how})", err=True)
    try:
        report = deploying.deploy(request, progress=_progress)
    except deploying.Interrupted as interrupted:
        _print_release(interrupted.report, as_json, release_report)
        sys.exit(130)
    _print_release(report, as_json, release_report)
    sys.exit(report.exit_code())


def _print_release(report: Any, as_json: bool, release_report: Any) -> None:
    if report.refusal is not None:
        click.echo(f"bgdeploy: {report.refusal['message']}", err=True)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    elif report.refusal is None or any(o.result != "pending" for o in report.web_hosts):
        click.echo(release_report.format_table(report))
    else:
        click.echo(report.summary())  # refused before any host was touched


@cli.command("unlock")
@click.argument("env")
@click.option("--reason", help="Why the lock is broken (journaled).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Break it even while its process still runs on this machine."
)
@_handle_errors
def unlock_cmd(env: str, reason: str | None, yes: bool, force: bool) -> None:
    """Break a stale deploy lock on every web host of ENV (left by a deploy that died).

    Shows each host's lock (owner, machine, pid, ref, since when), then asks (--yes does not;
    with nothing to ask on, exit 2). A lock whose process still runs on this machine is not
    stale: exit 3 unless --force. Who broke whose lock, and --reason, are journaled. A lock
    that changed since it was shown is left."""
    from bgdeploy.strategies import deploying

    def confirm(question: str) -> None:
        if yes:
            return
        stdin = sys.stdin
        if stdin is None or stdin.closed:
            raise ConfigError(f"{question} There is no terminal to ask on: pass --yes")
        if stdin.isatty():
            click.confirm(question, abort=True, err=True)
            return
        click.echo(f"{question} [y/N]: ", nl=False, err=True)
        answer = stdin.readline()
        if not answer:
            raise ConfigError(f"no answer to {question!r} (no terminal, stdin closed): pass --yes")
        if answer.strip().lower() not in ("y", "yes"):
            raise click.Abort()

    results = deploying.unlock(env, reason, confirm=confirm, force=force, progress=_progress)
    width = max(len("host"), *(len(r.host) for r in results))
    for result in results:
        click.echo(f"{result.host:<{width}}  {result.describe()}")
    if not all(result.ok for result in results):
        sys.exit(1)


@cli.command("window")
@click.argument("env")
@click.option(
    "--at", "at", default="now", help="When (ISO 8601; default now; local to the policy)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@_handle_errors
def window_cmd(env: str, at: str, as_json: bool) -> None:
    """Is a deploy to ENV allowed at that time, why not, and when does the next window open?

    Reads group_data only; connects to no host. Exit 0 when allowed, 3 when not.
    """
    environment = runner.check_environment(env)
    policy = environment.settings[environment.web[0]].window
    decision = windows.decide(policy, windows.parse_at(at, policy.tz))
    if as_json:
        click.echo(json.dumps(decision.to_dict(), indent=2))
    else:
        click.echo(decision.describe())
    if not decision.allowed:
        sys.exit(3)


@cli.command("preflight")
@click.argument("env")
@click.option("--ref", help="Branch, tag or commit to check (default: group_data's ref).")
@click.option(
    "--strategy",
    type=click.Choice(("in-place", "blue-green")),
    default="in-place",
    show_default=True,
    help="The deploy to check for (blue-green refuses every destructive migration).",
)
@click.option(
    "--allow-destructive", is_flag=True, help="As the deploy's flag: drops and renames warn."
)
@click.option("--json", "as_json", is_flag=True, help="Print the checklist as JSON.")
@_handle_errors
def preflight_cmd(
    env: str, ref: str | None, strategy: str, allow_destructive: bool, as_json: bool
) -> None:
    """The runbook's pre-deployment checklist for REF on ENV, each line pass, warn or fail:
    the ref, on main, pending and destructive migrations, feature flag removal dates, secrets,
    the deploy window, the lock, disk on the web hosts and for the database snapshot. The
    same checks start every deploy.

    Exit 0 ready (warnings allowed), 3 a check failed, 1 a host could not be read, 2 bad
    input (checked before any connection).
    """
    from bgdeploy.checks import preflight

    request, environment = preflight.check_request(env, ref, strategy, allow_destructive)
    result = preflight.run(request, environment)
    click.echo(result.to_json() if as_json else result.format_table())
    sys.exit(result.exit_code())


@cli.command("history")
@click.argument("env")
@click.option("--last", type=WholeNumber(1, 100_000), help="Only the last N lines per host.")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@_handle_errors
def history_cmd(env: str, last: int | None, as_json: bool) -> None:
    """Every host's deploy journal, merged in time order (deploys, switches, rollbacks, ...)."""
    found = history.read(env, last)
    click.echo(
        journal.format_history_json(found.entries) if as_json
        else journal.format_history(found.entries)
    )  # fmt: skip
    _warn_unreadable(found)


@cli.command("postmortem")
@click.argument("env")
@click.option("--since", required=True, help="Start of the incident (ISO 8601, Asia/Dhaka).")
@click.option("--until", "until", default=None, help="End of the incident (default: now).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE.")
@_handle_errors
def postmortem_cmd(env: str, since: str, until: str | None, output: str | None) -> None:
    """The runbook's postmortem template, with the timeline filled from the journals."""
    from bgdeploy.oncall import postmortem

    start = windows.parse_at(since, "Asia/Dhaka")
    end = windows.parse_at(until, "Asia/Dhaka") if until else None
    found = history.read(env)
    text = postmortem.render_postmortem(found.entries, env, start, end)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"postmortem written to {output}", err=True)
    else:
        click.echo(text)
    _warn_unreadable(found)


def _warn_unreadable(found: history.History) -> None:
    for bad in found.merged.bad_lines:
        click.echo(f"warning: {bad}", err=True)
    for result in found.unreadable:
        click.echo(f"warning: {result.host}: journal not read: {result.summary()}", err=True)
    if found.unreadable:
        sys.exit(1)


@cli.group("emergency")
@click.argument("env")
@click.pass_context
def emergency_group(ctx: click.Context, env: str) -> None:
    """The runbook's emergency commands on ENV: logs, restarts, cache clears, database checks
    (bgdeploy emergency ENV ACTION ...)."""
    ctx.obj = env


_env_argument = click.argument("env")
_yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def _finish(results: list[remote.HostResult], what: str = "result") -> None:
    """Print the per-host table; exit 1 when any host failed (the others are still shown)."""
    click.echo(remote.format_results(results, what))
    if any(not result.ok for result in results):
        sys.exit(1)


@emergency_group.command("logs")
@click.pass_obj
@click.option(
    "--source", type=click.Choice(emergency.LOG_SOURCES), default="laravel", show_default=True
)
@click.option("--lines", "-n", default=100, show_default=True, type=WholeNumber(1, 100_000))
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@_handle_errors
def emergency_logs(env: str, source: str, lines: int, follow: bool) -> None:
    """A log from every web host, each line prefixed with its host."""
    results = emergency.logs(env, source, lines, follow)
    failed = [result for result in results if not result.ok]
    for result in failed:
        click.echo(f"[{result.host}] FAILED: {result.summary()}", err=True)
    if failed:
        sys.exit(1)


@emergency_group.command("restart")
@click.pass_obj
@click.argument("services", nargs=-1, type=click.Choice(emergency.RESTARTABLE))
@_handle_errors
def emergency_restart(env: str, services: tuple[str, ...]) -> None:
    """Restart services gracefully (default: php-fpm, nginx, redis and workers)."""
    _finish(emergency.restart(env, services))


@emergency_group.command("clear-caches")
@click.pass_obj
@click.option("--flush-redis", is_flag=True, help="Also FLUSHALL Redis (asks first).")
@_yes_option
@_handle_errors
def emergency_clear_caches(env: str, flush_redis: bool, yes: bool) -> None:
    """optimize:clear and every cache clear in the live colour, then warm the caches again."""
    if flush_redis and not yes:
        click.confirm(
            f"FLUSHALL deletes every key in {env}'s Redis: sessions, queued jobs, feature flag "
            "overrides. Continue?", abort=True,
        )  # fmt: skip
    _finish(emergency.clear_caches(env, flush_redis))


@emergency_group.command("db-connections")
@click.pass_obj
@_handle_errors
def emergency_db_connections(env: str) -> None:
    """Connections to PostgreSQL by database and state."""
    _finish(
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
@_yes_option
@click.option("--json", "as_json", is_flag=True, help="Print what was listed and ended as JSON.")
@_handle_errors
def emergency_kill_long_queries(env: str, older_than: str, yes: bool, as_json: bool) -> None:
    """Terminate the queries active for longer than --older-than, as listed (asks first).

    Exactly the queries listed are ended, each only if it is still running (the same backend,
    session and query start): one that finished before the confirmation is left alone and
    said so."""
    seconds = emergency.parse_age(older_than)
    results, listed = emergency.list_long_queries(env, seconds)
    click.echo(remote.format_results(results, "long queries"), err=as_json)
    failed = any(not result.ok for result in results)
    ended: dict[str, list[emergency.QueryEnd]] = {}
    if any(listed.values()):
        if not yes:
            click.confirm("Terminate these queries?", abort=True, err=as_json)
        done, ended = emergency.kill_long_queries(env, seconds, listed)
        click.echo(remote.format_results(done, "ended"), err=as_json)
        failed = failed or any(not result.ok for result in done)
    if as_json:
        click.echo(json.dumps(_query_ends(listed, ended), indent=2))
    if failed:
        sys.exit(1)


def _query_ends(
    listed: dict[str, list[emergency.LongQuery]], ended: dict[str, list[emergency.QueryEnd]]
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
@_handle_errors
def emergency_table_sizes(env: str) -> None:
    """The ten largest tables of the app's database."""
    _finish(emergency.db_query(env, emergency.TABLE_SIZES_SQL, "table-sizes"), "table|size")


@cli.group("snapshot")
@click.argument("env")
@click.pass_context
def snapshot_group(ctx: click.Context, env: str) -> None:
    """Database snapshots on ENV's db host (backups_dir: NAME.dump + NAME.dump.sha256).

    \b
    bgdeploy snapshot prod list
    bgdeploy snapshot prod create [--name NAME]
    bgdeploy snapshot prod verify ID          # sha256 and pg_restore read it
    bgdeploy snapshot prod restore ID [--yes] # scratch database first, then the swap
    """
    ctx.obj = env


@snapshot_group.command("create")
@click.pass_obj
@click.option("--name", help="The snapshot's name (default: <UTC time>-manual).")
@_handle_errors
def snapshot_create(env: str, name: str | None) -> None:
    """Take a verified snapshot now (pg_dump -Fc, read back whole, sha256 sidecar, 0600;
    the newest snapshot_keep kept)."""
    from bgdeploy.oncall import snapshots

    _finish(snapshots.create(env, name), "snapshot")


@snapshot_group.command("list")
@click.pass_obj
@click.option("--json", "as_json", is_flag=True, help="Print the snapshots as JSON.")
@_handle_errors
def snapshot_list(env: str, as_json: bool) -> None:
    """The snapshots on the db host, newest first."""
    from bgdeploy.oncall import snapshots

    found = snapshots.list_snapshots(env)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in found], indent=2))
    else:
        click.echo(snapshots.format_list(found))


@snapshot_group.command("verify")
@click.pass_obj
@click.argument("snapshot_id", metavar="ID")
@_handle_errors
def snapshot_verify(env: str, snapshot_id: str) -> None:
    """Check a snapshot: its sha256 against the sidecar, and that pg_restore reads it."""
    from bgdeploy.oncall import snapshots

    _finish(snapshots.verify(env, snapshot_id), "verify")


@snapshot_group.command("restore")
@click.pass_obj
@click.argument("snapshot_id", metavar="ID")
@_yes_option
@_handle_errors
def snapshot_restore(env: str, snapshot_id: str, yes: bool) -> None:
    """Restore snapshot ID into ENV's database (asks first).

    The snapshot is verified, the deploy lock taken on every web host, the dump restored
    into a scratch database; only when that succeeded is every web host put in maintenance
    mode (php artisan down), the scratch database swapped in under the live name, and every
    host brought back (php artisan up, workers restarted), also on failure. The replaced
    database is kept as DB_before_restore. A failure leaves the live database untouched.
    """
    from bgdeploy.oncall import snapshots

    def confirm(question: str) -> None:
        if not yes:
            click.confirm(question, abort=True)

    report = snapshots.restore(env, snapshot_id, confirm, progress=_progress)
    click.echo(remote.format_results(report.results, f"restore {report.name}"))
    if not report.ok:
        click.echo(f"bgdeploy: {report.error or 'restore failed'}", err=True)
        sys.exit(1)


@cli.group("db")
@click.argument("env")
@click.pass_context
def db_group(ctx: click.Context, env: str) -> None:
    """The app's database on ENV, beyond snapshots (bgdeploy db ENV ACTION)."""
    ctx.obj = env


@db_group.command("fresh")
@click.pass_obj
@click.option("--seed", is_flag=True, help="Seed the database afterwards (db:seed).")
@_yes_option
@_handle_errors
def db_fresh(env: str, seed: bool, yes: bool) -> None:
    """php artisan migrate:fresh [--seed]: drop every table and migrate again, once, from the
    migrate host (asks first), under the deploy lock of every web host (exit 3 while a
    deploy holds it). Only for environments marked production = False in group_data
    (staging, the sandbox); elsewhere refused with exit 3 before any connection."""
    from bgdeploy.oncall import snapshots

    environment = snapshots.check_fresh_allowed(env)
    if not yes:
        click.confirm(
            f"migrate:fresh drops every table of {env}'s database and migrates again"
            + (" (then seeds it)" if seed else "") + ". Continue?", abort=True,
        )  # fmt: skip
    _finish(snapshots.migrate_fresh(environment, seed, progress=_progress), "migrate:fresh")


@cli.command("flags")
@_env_argument
@click.argument("action", type=click.Choice(flags.ACTIONS))
@click.argument("name", required=False)
@click.argument("value", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the flags as JSON.")
@_handle_errors
def flags_cmd(env: str, action: str, name: str | None, value: str | None, as_json: bool) -> None:
    """Feature flags at runtime, on every web host at once (they share Redis).

    \b
    bgdeploy flags prod disable visa_new_flow_20250601        # the kill switch
    bgdeploy flags prod rollout visa_new_flow_20250601 25
    bgdeploy flags prod users visa_new_flow_20250601 1,2,3
    bgdeploy flags prod enable|reset NAME;  bgdeploy flags prod list
    """
    outcome = flags.change(env, action, name, value)
    if as_json:
        click.echo(json.dumps(outcome, indent=2))
        return
    click.echo(f"{action} {name or ''} on {outcome['host']}; flags now:".replace("  ", " "))
    click.echo(json.dumps(outcome["flags"], indent=2))


@cli.command("smoke")
@_env_argument
@click.option("--idle", is_flag=True, help="Test the idle colour (through the preview listener).")
@_handle_errors
def smoke_cmd(env: str, idle: bool) -> None:
    """The runbook's five smoke tests on every web host: health, homepage, API authentication,
    database connectivity, cache."""
    results, checks = smoke.run(env, idle=idle)
    for host, host_checks in checks.items():
        for check in host_checks:
            click.echo(
                f"{host:<12} {'ok' if check.ok else 'FAILED':<6} {check.name:<20} {check.detail}"
            )
    _finish(results)


@cli.command("health")
@_env_argument
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
@_handle_errors
def health_cmd(env: str, as_json: bool) -> None:
    """The app's health report (/api/health) on every web host, per check: database, cache,
    queue, storage. A 503 answer is shown with its failing checks. Exit 1 when a host is
    unhealthy or does not answer."""
    from bgdeploy.checks import health

    results, reports = health.run(env)
    if as_json:
        click.echo(json.dumps([reports[r.host].to_dict() if r.host in reports else
                               {"host": r.host, "ok": False, "problem": r.error}
                               for r in results], indent=2))  # fmt: skip
        if any(not result.ok for result in results):
            sys.exit(1)
        return
    for name, report in reports.items():
        for check in report.checks:
            mark = "ok" if check.ok else "FAILED"
            click.echo(f"{name:<12} {mark:<6} {check.name:<10} {check.message}")
    _finish(results, "health")


@cli.command("status")
@_env_argument
@click.option("--json", "as_json", is_flag=True, help="Print the colours as JSON.")
@_handle_errors
def status_cmd(env: str, as_json: bool) -> None:
    """The live colour of every web host and the commit each colour holds. A host whose live
    commit is not the fleet's (the one most hosts serve, or built last) is noted "behind"."""
    from bgdeploy.strategies import status

    found = status.read(env)
    click.echo(json.dumps(found.to_dict(), indent=2) if as_json else found.format_table())
    try:
        found.check()
    except BgdeployError as error:
        click.echo(str(error), err=True)
        sys.exit(error.exit_code)


@cli.command("switch")
@_env_argument
@click.argument("colour", type=click.Choice(switch.COLOURS))
@click.option("--no-smoke", is_flag=True, help="Skip the smoke tests of COLOUR before switching.")
@click.option("--force", is_flag=True, help="Switch even to a colour not marked built.")
@click.option("--reason", help="Why (journaled).")
@_handle_errors
def switch_cmd(env: str, colour: str, no_smoke: bool, force: bool, reason: str | None) -> None:
    """Switch every web host to COLOUR (all hosts or none), after smoke-testing it.

    The deploy lock is taken on every web host first and released at the end, however it
    ends: while a deploy, a rollback or another switch holds it, exit 3 naming the holder."""
    from bgdeploy.strategies import manual_switch

    try:
        report = manual_switch.switch_to(
            env, colour, smoke_test=not no_smoke, force=force, reason=reason, progress=_progress
        )
    except manual_switch.SmokeRefused as refused:
        click.echo(remote.format_results(refused.results, "smoke tests of " + colour))
        raise
    if report is None:
        click.echo(f"every web host already serves {colour}: nothing to do")
        return
    click.echo(remote.format_results(report.results, "switch"))
    if not report.ok:
        click.echo(
            "switch failed" + (": every host was switched back" if report.undone else ""), err=True
        )
        sys.exit(1)


@cli.command("rollback")
@_env_argument
@click.option("--to", "to", help="The release to go back to: tag, branch or commit.")
@click.option(
    "--migrations",
    type=WholeNumber(1, 100),
    help="Also undo the last N migrations (migrate:rollback --step=N), after a snapshot.",
)
@click.option("--no-smoke", is_flag=True, help="Skip the smoke tests of the previous colour.")
@click.option("--reason", help="Why (journaled).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-host result as JSON.")
@_handle_errors
def rollback_cmd(
    env: str,
    to: str | None,
    migrations: int | None,
    no_smoke: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Bring the previous release back on every web host.

    When the other colour holds the previous release, built and verified, on every host:
    switch to it (seconds, after its smoke tests). Otherwise in place: the previous good
    commit from the journals (or --to REF) is checked out and built again in the live
    colour under the deploy lock, caches, reloads, workers, health. The release left is
    journaled as bad and never picked again. --migrations N first snapshots the database,
    then runs migrate:rollback --step=N once. Exit 0 done, 1 a host failed (the others are
    reported), 2 bad input, 3 refused (host key, lock, smoke tests).
    """
    from bgdeploy.strategies import rollback

    request = rollback.check_request(env, to, migrations, reason, no_smoke)
    try:
        report = rollback.rollback(request, progress=_progress)
    except rollback.SmokeRefused as refused:
        click.echo(remote.format_results(refused.report.results, "smoke tests"))
        raise
    for note in report.notes:
        click.echo(note, err=True)
    if report.results:
        from bgdeploy.strategies import deploying

        app = request.settings.app_name
        for outcome in deploying.announce_rollback(env, app, report, reason):
            _progress(outcome.line())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(remote.format_results(report.results, report.heading()))
    if not report.ok:
        sys.exit(1)


def _print_run_summary(result: runner.DeployRun) -> None:
    changed = result.changed_hosts()
    hosts = sorted(changed | set(result.failed_hosts) | _all_result_hosts(result))
    click.echo(f"{'host':<24} result")
    for host in hosts:
        if host in result.failed_hosts:
            outcome = "FAILED"
        elif host in changed:
            outcome = "changed"
        else:
            outcome = "no change"
        click.echo(f"{host:<24} {outcome}")


def _all_result_hosts(result: runner.DeployRun) -> set[str]:
    hosts: set[str] = set()
    for op in result.results.get("operations", []):
        for key in ("success", "error", "no_change"):
            hosts.update(op.get(key, []))
    return hosts


def _print_status(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"sandbox {report['name']}")
    click.echo(f"  {'host':<8} {'groups':<8} {'ssh':>6} {'http':>6} {'preview':>8}  ready  health")
    for host in report["hosts"]:
        ports = host["ports"]
        click.echo(
            f"  {host['name']:<8} {','.join(host['groups']):<8} {ports['ssh']:>6} "
            f"{ports.get('http') or '-':>6} {ports.get('preview') or '-':>8}  "
            f"{'yes' if host['ready'] else 'NO ':<5}  {host.get('health', '-')}"
        )
    urls = [host["url"] for host in report["hosts"] if host.get("url")]
    if urls:
        click.echo("open: " + "  ".join(urls))
    prometheus = report.get("monitoring")
    if prometheus:
        targets = ", ".join(f"{h} {health}" for h, health in prometheus["targets"].items())
        click.echo(
            f"prometheus: {prometheus['url']}  {'ready' if prometheus['ready'] else 'NOT READY'}"
            + (f"  targets: {targets}" if targets else "")
        )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bgdeploy")
