"""The ``bgdeploy`` command line.

Every command prints what it did per host and exits 0 on success, 1 when an operation failed,
2 on bad usage or configuration, and 3 when a policy refused to act. ``--json`` gives
machine-readable output on stdout; progress goes to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from bgdeploy import history, journal, postmortem, runner, sandbox, windows
from bgdeploy import settings as settings_mod
from bgdeploy.errors import BgdeployError


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
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_handle_errors
def sandbox_up(name: str, web: int, as_json: bool) -> None:
    """Start a sandbox, building its image first when the recipe changed."""
    click.echo(f"sandbox {name}: starting {web} web host(s) and a db host", err=True)
    sandbox.up(name, web=web, progress=_progress)
    _print_status(sandbox.status(name), as_json)


@sandbox_group.command("status")
@_name_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_handle_errors
def sandbox_status(name: str, as_json: bool) -> None:
    """Each container of a sandbox, its ports, and whether its SSH server answers."""
    report = sandbox.status(name)
    _print_status(report, as_json)
    if not all(host["ready"] for host in report["hosts"]):
        sys.exit(1)


@sandbox_group.command("down")
@_name_option
@_handle_errors
def sandbox_down(name: str) -> None:
    """Remove a sandbox's containers, network and files (and nothing else)."""
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


@cli.command("history")
@click.argument("env")
@click.option("--last", type=click.IntRange(1, 100_000), help="Only the last N lines per host.")
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="bgdeploy")
