"""``bgdeploy preflight ENV``: the runbook's pre-deployment checklist
(:mod:`bgdeploy.checks.preflight`)."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import handle_errors, json_option


@click.command("preflight")
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
@json_option("Print the checklist as JSON.")
@handle_errors
def preflight_cmd(
    env: str, ref: str | None, strategy: str, allow_destructive: bool, as_json: bool
) -> None:
    """The runbook's pre-deployment checklist for REF on ENV, each line pass, warn or fail:
    the ref, on main, pending and destructive migrations, feature flag removal dates, secrets,
    the deploy window, the lock, disk on the web hosts and for the database snapshot. The
    same checks start every deploy. Hotfix and emergency deploys whose post-deployment
    review is still due (``bgdeploy review``) are warnings.

    Exit 0 ready (warnings allowed), 3 a check failed, 1 a host could not be read, 2 bad
    input (checked before any connection).
    """
    from bgdeploy.checks import preflight
    from bgdeploy.oncall import reviews

    request, environment = preflight.check_request(env, ref, strategy, allow_destructive)
    result = preflight.run(request, environment)
    result.checks.extend(reviews.preflight_checks(env))
    click.echo(result.to_json() if as_json else result.format_table())
    sys.exit(result.exit_code())
