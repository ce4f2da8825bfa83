"""``bgdeploy provision ENV``: server setup (pyinfra ``deploys/provision.py``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from bgdeploy.cli.main import handle_errors, output_options

if TYPE_CHECKING:
    from bgdeploy.fleet.runner import DeployRun


@click.command("provision")
@click.argument("env")
@click.option("--limit", multiple=True, help="Only these hosts or groups (repeatable).")
@output_options
@handle_errors
def provision_cmd(env: str, limit: tuple[str, ...], quiet: bool, verbose: bool) -> None:
    """Set up the servers of ENV (pyinfra deploys/provision.py): users, layout, nginx, php-fpm,
    supervisor, cron, logrotate, PostgreSQL and Redis. Idempotent: a second run changes nothing.
    The full log goes to .bgdeploy/runs/RUN_ID.log (named at the end)."""
    from bgdeploy.cli import live
    from bgdeploy.core import settings
    from bgdeploy.fleet import runner

    environment = runner.check_environment(env)
    settings.secrets_from_env()
    output = live.for_run(environment.settings[environment.web[0]].run_log_dir, quiet, verbose)
    try:
        with output:
            output.say(f"provisioning {env}, run {output.runlog.run_id if output.runlog else ''}")
            result = runner.run_deploy(
                env, "deploys/provision.py", limit=list(limit), observer=output
            )
    except BaseException as error:
        output.record(f"bgdeploy: {type(error).__name__}: {error}")
        output.close()
        raise
    text = run_summary(result)
    click.echo(text)
    output.record(text)
    output.close()
    if result.returncode != 0:
        sys.exit(1)


def run_summary(result: DeployRun) -> str:
    """One line per host of a pyinfra run: FAILED, changed or no change."""
    changed = result.changed_hosts()
    hosts = sorted(changed | set(result.failed_hosts) | _all_result_hosts(result))
    lines = [f"{'host':<24} result"]
    for host in hosts:
        if host in result.failed_hosts:
            outcome = "FAILED"
        elif host in changed:
            outcome = "changed"
        else:
            outcome = "no change"
        lines.append(f"{host:<24} {outcome}")
    return "\n".join(lines)


def _all_result_hosts(result: DeployRun) -> set[str]:
    hosts: set[str] = set()
    for op in result.results.get("operations", []):
        for key in ("success", "error", "no_change"):
            hosts.update(op.get(key, []))
    return hosts
