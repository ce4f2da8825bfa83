"""``bgdeploy window ENV [--at TIME]``: is a deploy allowed then (:mod:`bgdeploy.core.windows`)."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import echo_json, handle_errors, json_option


@click.command("window")
@click.argument("env")
@click.option(
    "--at", "at", default="now", help="When (ISO 8601; default now; local to the policy)."
)
@click.option(
    "--list",
    "year",
    type=click.IntRange(1900, 2200),
    help="Print every blackout of YEAR (dates and where they come from) instead.",
)
@json_option("Print the decision as JSON.")
@handle_errors
def window_cmd(env: str, at: str, year: int | None, as_json: bool) -> None:
    """Is a deploy to ENV allowed at that time, why not, and when does the next window open?

    Reads group_data only; connects to no host. Exit 0 when allowed, 3 when not. With
    --list YEAR: every blackout of that year, with its source (group_data, or the holidays
    calendar, whose computed dates say "(estimated)").
    """
    from bgdeploy.core import windows
    from bgdeploy.fleet import runner

    environment = runner.check_environment(env)
    policy = environment.settings[environment.web[0]].window
    if year is not None:
        found = windows.blackouts_in(policy, year)
        if as_json:
            echo_json([b.to_dict() for b in found])
            return
        click.echo(f"{policy.describe()}; the blackouts of {year}:")
        for blackout in found:
            click.echo("  " + blackout.describe())
        return
    decision = windows.decide(policy, windows.parse_at(at, policy.tz))
    if as_json:
        echo_json(decision.to_dict())
    else:
        click.echo(decision.describe())
    if not decision.allowed:
        sys.exit(3)
