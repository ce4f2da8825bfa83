"""``bgdeploy deploy ENV``: in place, blue-green or canary
(:mod:`bgdeploy.strategies.deploying`)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from bgdeploy.cli.main import echo_json, handle_errors, json_option, output_options

if TYPE_CHECKING:
    from bgdeploy.cli.live import RunOutput
    from bgdeploy.core.release_report import ReleaseReport


@click.command("deploy")
@click.argument("env")
@click.option("--ref", help="Branch, tag or commit to deploy (default: group_data's ref).")
@click.option("--force", is_flag=True, help="Deploy even when that commit is already live.")
@click.option(
    "--emergency",
    is_flag=True,
    help="An emergency deploy: may override the deploy window (needs --severity, --reason).",
)
@click.option(
    "--severity",
    type=click.Choice(("P0", "P1", "P2", "P3"), case_sensitive=False),
    help="The incident's severity, for --emergency (P0 any time; P1-P3 need --approved-by).",
)
@click.option("--reason", help="Why (journaled; required with --emergency).")
@click.option(
    "--hotfix",
    is_flag=True,
    help="A hotfix: 1 approval and --rollback-plan; its review is due within 24 h.",
)
@click.option(
    "--approved-by",
    metavar="NAME[,NAME]",
    help="Who approved (with the commit's Reviewed-by:/Approved-by: trailers).",
)
@click.option("--rollback-plan", metavar="TEXT", help="How this release is undone (hotfixes).")
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
@click.option(
    "--plan",
    is_flag=True,
    help="Print what the deploy would do on each host, from the facts it would read; "
    "change nothing.",
)
@json_option("Print the per-host result as JSON.")
@output_options
@handle_errors
def deploy_cmd(
    env: str,
    ref: str | None,
    strategy: str | None,
    canary: float | None,
    force: bool,
    emergency: bool,
    severity: str | None,
    reason: str | None,
    hotfix: bool,
    approved_by: str | None,
    rollback_plan: str | None,
    allow_destructive: bool,
    as_json: bool,
    quiet: bool,
    verbose: bool,
    plan: bool,
) -> None:
    """Deploy REF to ENV. In place (the runbook's manual deployment, pyinfra
    deploys/release.py): lock, preflight, checkout, composer, npm, snapshot and migrations,
    caches, reloads, workers, health; a failure restores the previous release. Blue-green
    (deploys/blue_green.py): the idle colour is built the same way, smoke-tested, switched to
    on every host or none, watched, and switched back on failure. Canary (--canary PCT,
    blue-green): PCT % of clients (sticky) on the new colour until the metric gate promotes it
    or sends every client back.

    Approvals (group_data ``approvals``; prod: the runbook's): a regular deploy needs 2
    (--approved-by or the commit's Reviewed-by:/Approved-by: trailers), a --hotfix 1 and a
    --rollback-plan, an --emergency a --severity (P0 any time; P1-P3 an --approved-by).

    Exit 0 deployed (or already live), 1 failed, 2 bad input, 3 refused (window, lock,
    destructive migration, approvals). Ends with a table: host, sha before -> after, result,
    duration.

    On a terminal, the run's stage and a line per host are redrawn in place; elsewhere (CI),
    timestamped lines. The full log goes to .bgdeploy/runs/RUN_ID.log (named at the end).
    """
    from bgdeploy.cli import live
    from bgdeploy.strategies import deploying

    if plan:
        chosen = strategy or ("blue-green" if canary is not None else "in-place")
        print_plan(env, ref, chosen, allow_destructive, force, as_json)

    request = deploying.check_request(
        env,
        ref,
        force=force,
        allow_destructive=allow_destructive,
        emergency=emergency,
        reason=reason,
        strategy=strategy or ("blue-green" if canary is not None else "in-place"),
        canary=canary,
        hotfix=hotfix,
        severity=severity,
        approved_by=approved_by,
        rollback_plan=rollback_plan,
    )
    output = live.for_run(request.run_log_dir, quiet, verbose)
    run_id = output.runlog.run_id if output.runlog else ""
    how = request.strategy + (f", canary {request.canary:g}%" if request.canary else "")
    try:
        with output:
            if request.window.emergency:
                output.say(request.window.describe())
            output.say(f"deploying {request.ref} to {env} ({how}), run {run_id}")
            report = deploying.deploy(
                request,
                progress=output.progress,
                observer=output,
                run_id=run_id,
                log_path=str(output.runlog.path) if output.runlog else "",
            )
    except deploying.Interrupted as interrupted:
        print_release(interrupted.report, as_json, output)
        sys.exit(130)
    except BaseException as error:
        output.record(f"bgdeploy: {type(error).__name__}: {error}")
        output.close()
        raise
    print_release(report, as_json, output)
    sys.exit(report.exit_code())


def print_plan(
    env: str, ref: str | None, strategy: str, allow_destructive: bool, force: bool, as_json: bool
) -> None:
    """``--plan``: read what the deploy would (the preflight's reads), print the plan, exit
    with the preflight's code (0 it would go ahead, 3 refused, 1 a host not read)."""
    from bgdeploy.checks import preflight
    from bgdeploy.strategies import plan as plan_mod

    request, environment = preflight.check_request(env, ref, strategy, allow_destructive)
    checklist = preflight.run(request, environment)
    made = plan_mod.make_plan(checklist, environment, strategy, force)
    if as_json:
        echo_json(made.to_dict())
    else:
        click.echo(plan_mod.format_plan(made))
    sys.exit(checklist.exit_code())


def print_release(report: ReleaseReport, as_json: bool, output: RunOutput | None = None) -> None:
    """A deploy's outcome: the refusal (stderr), then the per-host table or the JSON; into
    the run's log too, which is then closed and named (stderr)."""
    from bgdeploy.core import release_report

    if report.refusal is not None:
        click.echo(f"bgdeploy: {report.refusal['message']}", err=True)
    if as_json:
        text = json.dumps(report.to_dict(), indent=2)
        echo_json(report.to_dict())
    elif report.refusal is None or any(o.result != "pending" for o in report.web_hosts):
        text = release_report.format_table(report)
        click.echo(text)
    else:
        text = report.summary()  # refused before any host was touched
        click.echo(text)
    if output is not None:
        if report.refusal is not None:
            output.record(f"bgdeploy: {report.refusal['message']}")
        output.record(text)
        output.close()
