"""``bgdeploy switch ENV blue|green``: every web host to one colour, or none
(:mod:`bgdeploy.strategies.manual_switch`)."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import LibraryChoice, env_argument, handle_errors, progress
from bgdeploy.core import timing


@click.command("switch")
@env_argument
@click.argument("colour", type=LibraryChoice("bgdeploy.core.render:COLOURS"))
@click.option("--no-smoke", is_flag=True, help="Skip the smoke tests of COLOUR before switching.")
@click.option("--force", is_flag=True, help="Switch even to a colour not marked built.")
@click.option("--reason", help="Why (journaled).")
@handle_errors
def switch_cmd(env: str, colour: str, no_smoke: bool, force: bool, reason: str | None) -> None:
    """Switch every web host to COLOUR (all hosts or none), after smoke-testing it.

    The deploy lock is taken on every web host first and released at the end, however it
    ends: while a deploy, a rollback or another switch holds it, exit 3 naming the holder."""
    with timing.phase("imports"):
        from bgdeploy.fleet import remote, runner
        from bgdeploy.strategies import manual_switch

    try:
        with runner.one_reading():
            report = manual_switch.switch_to(
                env, colour, smoke_test=not no_smoke, force=force, reason=reason, progress=progress
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
