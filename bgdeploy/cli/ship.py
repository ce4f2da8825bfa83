"""``bgdeploy ship ENV --ref REF``: staging, its checks, then the canary
(:mod:`bgdeploy.strategies.ship`)."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import echo_json, env_argument, handle_errors, json_option, progress


@click.command("ship")
@env_argument
@click.option("--ref", required=True, help="The commit (branch, tag or sha) to ship.")
@click.option("--staging", metavar="ENV", help="The staging environment (default: group_data's).")
@click.option(
    "--canary",
    type=float,
    metavar="PCT",
    help="The canary's share of clients on ENV (default: group_data canary_percent, 5).",
)
@click.option(
    "--approved-by",
    metavar="NAME[,NAME]",
    help="Who approved (with the commit's Reviewed-by:/Approved-by: trailers).",
)
@json_option("Print the stages as JSON.")
@handle_errors
def ship_cmd(
    env: str,
    ref: str,
    staging: str | None,
    canary: float | None,
    approved_by: str | None,
    as_json: bool,
) -> None:
    """The runbook's automatic deployment for one commit: ENV's preflight; a blue-green
    deploy to staging (smoke-tested, watched); the staging checks of group_data
    (staging_checks: an E2E suite, run here); then a canary on ENV (the metric gate, promoted
    or sent back). The first stage that fails stops the ship: a release that fails on
    staging never reaches ENV.

    Exit 0 shipped, 1 a stage failed (rolled back or sent back), 2 bad input, 3 refused
    (window, approvals, lock, a failed preflight check). Ends with one row per stage.
    """
    from bgdeploy.strategies import ship

    request = ship.check_request(env, ref, staging=staging, canary=canary, approved_by=approved_by)
    staged = f"staging {request.staging.env}, then " if request.staging else ""
    click.echo(
        f"shipping {request.ref} to {env}: {staged}a {request.production.canary:g}% canary",
        err=True,
    )
    report = ship.ship(request, progress=progress)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.format_table())
    sys.exit(report.exit_code)
