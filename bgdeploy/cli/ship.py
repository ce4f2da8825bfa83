"""``bgdeploy ship ENV --ref REF``: staging, its checks, then the canary
(:mod:`bgdeploy.strategies.ship`)."""

from __future__ import annotations

import json
import sys

import click

from bgdeploy.cli.main import echo_json, env_argument, handle_errors, json_option, output_options


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
@output_options
@handle_errors
def ship_cmd(
    env: str,
    ref: str,
    staging: str | None,
    canary: float | None,
    approved_by: str | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """The runbook's automatic deployment for one commit: ENV's preflight; a blue-green
    deploy to staging (smoke-tested, watched); the staging checks of group_data
    (staging_checks: an E2E suite, run here); then a canary on ENV (the metric gate, promoted
    or sent back). The first stage that fails stops the ship: a release that fails on
    staging never reaches ENV.

    Exit 0 shipped, 1 a stage failed (rolled back or sent back), 2 bad input, 3 refused
    (window, approvals, lock, a failed preflight check). Ends with one row per stage.

    Each deploy is shown as `bgdeploy deploy` shows it (host lines redrawn on a terminal,
    timestamped lines elsewhere); the whole ship's log goes to .bgdeploy/runs/RUN_ID.log.
    """
    from bgdeploy.cli import live
    from bgdeploy.core import progress as progress_mod
    from bgdeploy.strategies import ship

    request = ship.check_request(env, ref, staging=staging, canary=canary, approved_by=approved_by)
    output = live.for_run(request.run_log_dir, quiet, verbose)
    run_id = output.runlog.run_id if output.runlog else ""
    staged = f"staging {request.staging.env}, then " if request.staging else ""

    def new_stage(_name: str, _env: str) -> None:
        output.view = progress_mod.FleetView()  # the next deploy's hosts, on lines of their own

    try:
        with output:
            output.say(
                f"shipping {request.ref} to {env}: {staged}a {request.production.canary:g}% "
                f"canary, run {run_id}"
            )
            report = ship.ship(
                request, progress=output.progress, observer=output, run_id=run_id,
                log_path=str(output.runlog.path) if output.runlog else "", on_stage=new_stage,
            )  # fmt: skip
    except BaseException as error:
        output.record(f"bgdeploy: {type(error).__name__}: {error}")
        output.close()
        raise
    text = json.dumps(report.to_dict(), indent=2) if as_json else report.format_table()
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(text)
    output.record(text)
    output.close()
    sys.exit(report.exit_code)
