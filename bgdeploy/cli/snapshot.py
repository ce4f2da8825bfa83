"""``bgdeploy snapshot ENV create|list|verify|restore``: database snapshots on the db host
(:mod:`bgdeploy.oncall.snapshots`)."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import (
    echo_json,
    finish,
    handle_errors,
    json_option,
    output_options,
    yes_option,
)


@click.group("snapshot")
@click.argument("env")
@click.pass_context
def snapshot_group(ctx: click.Context, env: str) -> None:
    """Database snapshots on ENV's db host (backups_dir: NAME.dump + NAME.dump.sha256).

    \b
    bgdeploy snapshot prod list
    bgdeploy snapshot prod create [--name NAME]
    bgdeploy snapshot prod verify ID          # sha256 and pg_restore read it
    bgdeploy snapshot prod restore ID [--yes] # scratch database first, then the swap
    """
    ctx.obj = env


@snapshot_group.command("create")
@click.pass_obj
@click.option("--name", help="The snapshot's name (default: <UTC time>-manual).")
@handle_errors
def snapshot_create(env: str, name: str | None) -> None:
    """Take a verified snapshot now (pg_dump -Fc, read back whole, sha256 sidecar, 0600;
    the newest snapshot_keep kept)."""
    from bgdeploy.oncall import snapshots

    finish(snapshots.create(env, name), "snapshot")


@snapshot_group.command("list")
@click.pass_obj
@json_option("Print the snapshots as JSON.")
@handle_errors
def snapshot_list(env: str, as_json: bool) -> None:
    """The snapshots on the db host, newest first."""
    from bgdeploy.oncall import snapshots

    found = snapshots.list_snapshots(env)
    if as_json:
        echo_json([s.to_dict() for s in found])
    else:
        click.echo(snapshots.format_list(found))


@snapshot_group.command("verify")
@click.pass_obj
@click.argument("snapshot_id", metavar="ID")
@handle_errors
def snapshot_verify(env: str, snapshot_id: str) -> None:
    """Check a snapshot: its sha256 against the sidecar, and that pg_restore reads it."""
    from bgdeploy.oncall import snapshots

    finish(snapshots.verify(env, snapshot_id), "verify")


@snapshot_group.command("restore")
@click.pass_obj
@click.argument("snapshot_id", metavar="ID")
@yes_option
@output_options
@handle_errors
def snapshot_restore(env: str, snapshot_id: str, yes: bool, quiet: bool, verbose: bool) -> None:
    """Restore snapshot ID into ENV's database (asks first).

    The snapshot is verified, the deploy lock taken on every web host, the dump restored
    into a scratch database; only when that succeeded is every web host put in maintenance
    mode (php artisan down), the scratch database swapped in under the live name, and every
    host brought back (php artisan up, workers restarted), also on failure. The replaced
    database is kept as DB_before_restore. A failure leaves the live database untouched.
    The full log goes to .bgdeploy/runs/RUN_ID.log (named at the end, and journaled).
    """
    from bgdeploy.cli import live
    from bgdeploy.fleet import remote, runner
    from bgdeploy.oncall import snapshots

    environment = runner.check_environment(env)
    settings = environment.settings[environment.web[0]]
    output = live.for_run(settings.run_log_dir, quiet, verbose)
    assert output.runlog is not None
    log = str(output.runlog.path)

    def confirm(question: str) -> None:
        if not yes:
            output.pause()  # the question is asked below the progress, never under it
            click.confirm(question, abort=True)
            output.start()

    try:
        with output:
            output.say(f"restoring {snapshot_id} to {env}, run {output.runlog.run_id}")
            report = snapshots.restore(env, snapshot_id, confirm, output.progress, log)
    except BaseException as error:
        output.record(f"bgdeploy: {type(error).__name__}: {error}")
        output.close()
        raise
    text = remote.format_results(report.results, f"restore {report.name}")
    click.echo(text)
    output.record(text)
    if not report.ok:
        click.echo(f"bgdeploy: {report.error or 'restore failed'}", err=True)
        output.record(f"bgdeploy: {report.error or 'restore failed'}")
    output.close()
    if not report.ok:
        sys.exit(1)
