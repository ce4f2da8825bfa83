"""What the fleet serves, read only: ``bgdeploy status ENV``, ``health ENV``, ``smoke ENV``."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import echo_json, env_argument, finish, handle_errors, json_option
from bgdeploy.core import timing
from bgdeploy.core.errors import BgdeployError


@click.command("status")
@env_argument
@json_option("Print the colours as JSON.")
@handle_errors
def status_cmd(env: str, as_json: bool) -> None:
    """The live colour of every web host and the commit each colour holds. A host whose live
    commit is not the fleet's (the one most hosts serve, or built last) is noted "behind".
    Then the post-deployment reviews still due (hotfixes, emergency deploys; not in --json:
    ``bgdeploy review ENV`` lists them)."""
    with timing.phase("imports"):
        from bgdeploy.fleet import runner
        from bgdeploy.oncall import reviews
        from bgdeploy.strategies import status

    with runner.one_reading():
        found = status.read(env, reviews_due=not as_json)
    if as_json:
        echo_json(found.to_dict())
    else:
        click.echo(found.format_table())
        for line in reviews.describe_due(found.reviews or []):
            click.echo(line)
    try:
        found.check()
    except BgdeployError as error:
        click.echo(str(error), err=True)
        sys.exit(error.exit_code)


@click.command("health")
@env_argument
@json_option("Print the reports as JSON.")
@handle_errors
def health_cmd(env: str, as_json: bool) -> None:
    """The app's health report (/api/health) on every web host, per check: database, cache,
    queue, storage. A 503 answer is shown with its failing checks. Exit 1 when a host is
    unhealthy or does not answer."""
    from bgdeploy.checks import health

    results, reports = health.run(env)
    if as_json:
        echo_json([reports[r.host].to_dict() if r.host in reports else
                   {"host": r.host, "ok": False, "problem": r.error}
                   for r in results])  # fmt: skip
        if any(not result.ok for result in results):
            sys.exit(1)
        return
    for name, report in reports.items():
        for check in report.checks:
            mark = "ok" if check.ok else "FAILED"
            click.echo(f"{name:<12} {mark:<6} {check.name:<10} {check.message}")
    finish(results, "health")


@click.command("smoke")
@env_argument
@click.option("--idle", is_flag=True, help="Test the idle colour (through the preview listener).")
@handle_errors
def smoke_cmd(env: str, idle: bool) -> None:
    """The runbook's five smoke tests on every web host: health, homepage, API authentication,
    database connectivity, cache."""
    from bgdeploy.checks import smoke

    results, checks = smoke.run(env, idle=idle)
    for host, host_checks in checks.items():
        for check in host_checks:
            click.echo(
                f"{host:<12} {'ok' if check.ok else 'FAILED':<6} {check.name:<20} {check.detail}"
            )
    finish(results)
