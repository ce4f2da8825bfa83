"""``bgdeploy rollback ENV``: the previous release back (:mod:`bgdeploy.strategies.rollback`)."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import (
    WholeNumber,
    echo_json,
    env_argument,
    handle_errors,
    json_option,
    progress,
)


@click.command("rollback")
@env_argument
@click.option("--to", "to", help="The release to go back to: tag, branch or commit.")
@click.option(
    "--migrations",
    type=WholeNumber(1, 100),
    help="Also undo the last N migrations (migrate:rollback --step=N), after a snapshot.",
)
@click.option("--no-smoke", is_flag=True, help="Skip the smoke tests of the previous colour.")
@click.option("--reason", help="Why (journaled).")
@json_option("Print the per-host result as JSON.")
@handle_errors
def rollback_cmd(
    env: str,
    to: str | None,
    migrations: int | None,
    no_smoke: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Bring the previous release back on every web host.

    When the other colour holds the previous release, built and verified, on every host:
    switch to it (seconds, after its smoke tests). Otherwise in place: the previous good
    commit from the journals (or --to REF) is checked out and built again in the live
    colour under the deploy lock, caches, reloads, workers, health. The release left is
    journaled as bad and never picked again. --migrations N first snapshots the database,
    then runs migrate:rollback --step=N once. Exit 0 done, 1 a host failed (the others are
    reported), 2 bad input, 3 refused (host key, lock, smoke tests).
    """
    from bgdeploy.fleet import remote
    from bgdeploy.strategies import rollback

    request = rollback.check_request(env, to, migrations, reason, no_smoke)
    try:
        report = rollback.rollback(request, progress=progress)
    except rollback.SmokeRefused as refused:
        click.echo(remote.format_results(refused.report.results, "smoke tests"))
        raise
    for note in report.notes:
        click.echo(note, err=True)
    if report.results:
        app = request.settings.app_name
        for outcome in rollback.announce_rollback(env, app, report, reason):
            progress(outcome.line())
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(remote.format_results(report.results, report.heading()))
    if not report.ok:
        sys.exit(1)
