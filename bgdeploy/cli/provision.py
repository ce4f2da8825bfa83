"""``bgdeploy provision ENV``: server setup (pyinfra ``deploys/provision.py``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from bgdeploy.cli.main import handle_errors

if TYPE_CHECKING:
    from bgdeploy.fleet.runner import DeployRun


@click.command("provision")
@click.argument("env")
@click.option("--limit", multiple=True, help="Only these hosts or groups (repeatable).")
@handle_errors
def provision_cmd(env: str, limit: tuple[str, ...]) -> None:
    """Set up the servers of ENV (pyinfra deploys/provision.py): users, layout, nginx, php-fpm,
    supervisor, cron, logrotate, PostgreSQL and Redis. Idempotent: a second run changes nothing."""
    from bgdeploy.core import settings
    from bgdeploy.fleet import runner

    runner.check_environment(env)
    settings.secrets_from_env()
    result = runner.run_deploy(env, "deploys/provision.py", limit=list(limit))
    print_run_summary(result)
    if result.returncode != 0:
        sys.exit(1)


def print_run_summary(result: DeployRun) -> None:
    """One line per host of a pyinfra run: FAILED, changed or no change."""
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


def _all_result_hosts(result: DeployRun) -> set[str]:
    hosts: set[str] = set()
    for op in result.results.get("operations", []):
        for key in ("success", "error", "no_change"):
            hosts.update(op.get(key, []))
    return hosts
