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
    output_options,
)
from bgdeploy.core import timing


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
@output_options
@handle_errors
def rollback_cmd(
    env: str,
    to: str | None,
    migrations: int | None,
    no_smoke: bool,
    reason: str | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    """Bring the previous release back on every web host.

    When the other colour holds the previous release, built and verified, on every host:
    switch to it (seconds, after its smoke tests). Otherwise in place: the previous good
    commit from the journals (or --to REF) is checked out and built again in the live
    colour under the deploy lock, caches, reloads, workers, health. The release left is
    journaled as bad and never picked again. --migrations N first snapshots the database,
    then runs migrate:rollback --step=N once. Exit 0 done, 1 a host failed (the others are
    reported), 2 bad input, 3 refused (host key, lock, smoke tests). The full log goes to
    .bgdeploy/runs/RUN_ID.log (named at the end, and journaled).
    """
    with timing.phase("imports"):
        from bgdeploy.fleet import runner

    with runner.one_reading():  # the inventory is read once, whatever reads it
        _rollback(env, to, migrations, no_smoke, reason, as_json, quiet, verbose)


def _rollback(
    env: str,
    to: str | None,
    migrations: int | None,
    no_smoke: bool,
    reason: str | None,
    as_json: bool,
    quiet: bool,
    verbose: bool,
) -> None:
    from dataclasses import replace

    with timing.phase("imports"):
        from bgdeploy.cli import live
        from bgdeploy.fleet import remote
        from bgdeploy.strategies import rollback

    request = rollback.check_request(env, to, migrations, reason, no_smoke)
    with timing.phase("run log"):
        output = live.for_run(request.settings.run_log_dir, quiet, verbose)
    assert output.runlog is not None
    request = replace(request, log=str(output.runlog.path), observer=output)
    try:
        with output:
            output.say(f"rolling back {env}, run {output.runlog.run_id}")
            report = rollback.rollback(request, progress=output.progress)
            for note in report.notes:
                output.say(note)
            if report.results:
                app = request.settings.app_name
                with timing.phase("notify"):
                    announced = rollback.announce_rollback(env, app, report, reason)
                for outcome in announced:
                    output.progress(outcome.line())
    except rollback.SmokeRefused as refused:
        text = remote.format_results(refused.report.results, "smoke tests")
        click.echo(text)
        output.record(f"{text}\nbgdeploy: {refused}")
        output.close()
        raise
    except BaseException as error:
        output.record(f"bgdeploy: {type(error).__name__}: {error}")
        output.close()
        raise
    text = remote.format_results(report.results, report.heading())
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(text)
    output.record(text)
    output.close()
    if not report.ok:
        sys.exit(1)
