"""``bgdeploy db ENV ...``: the app's database beyond snapshots."""

from __future__ import annotations

import click

from bgdeploy.cli.main import echo_json, finish, handle_errors, json_option, progress, yes_option


@click.group("db")
@click.argument("env")
@click.pass_context
def db_group(ctx: click.Context, env: str) -> None:
    """The app's database on ENV, beyond snapshots (bgdeploy db ENV ACTION)."""
    ctx.obj = env


@db_group.command("fresh")
@click.pass_obj
@click.option("--seed", is_flag=True, help="Seed the database afterwards (db:seed).")
@yes_option
@handle_errors
def db_fresh(env: str, seed: bool, yes: bool) -> None:
    """php artisan migrate:fresh [--seed]: drop every table and migrate again, once, from the
    migrate host (asks first), under the deploy lock of every web host (exit 3 while a
    deploy holds it). Only for environments marked production = False in group_data
    (staging, the sandbox); elsewhere refused with exit 3 before any connection."""
    from bgdeploy.oncall import snapshots

    environment = snapshots.check_fresh_allowed(env)
    if not yes:
        click.confirm(
            f"migrate:fresh drops every table of {env}'s database and migrates again"
            + (" (then seeds it)" if seed else "") + ". Continue?", abort=True,
        )  # fmt: skip
    finish(snapshots.migrate_fresh(environment, seed, progress=progress), "migrate:fresh")


@db_group.command("status")
@click.pass_obj
@json_option("Print the migrations as JSON.")
@handle_errors
def db_status(env: str, as_json: bool) -> None:
    """php artisan migrate:status on the migrate host, in the live colour: each migration of
    the live release, ran (in which batch) or PENDING. Read only."""
    from bgdeploy.oncall import database

    found = database.status(env)
    if as_json:
        echo_json(found.to_dict())
    else:
        click.echo(found.format_table())


@db_group.command("rollback")
@click.pass_obj
@click.option("--step", type=int, help="Undo the last N migrations.")
@click.option("--batch", type=int, help="Undo batch N and every later one.")
@click.option("--reason", help="Why (journaled).")
@yes_option
@json_option("Print the report as JSON.")
@handle_errors
def db_rollback(
    env: str, step: int | None, batch: int | None, reason: str | None, yes: bool, as_json: bool
) -> None:
    """php artisan migrate:rollback on ENV's database, the code left as it is: after a
    verified snapshot, under the deploy lock of every web host (exit 3 while a deploy holds
    it), on the migrate host in its live colour. --batch N undoes batch N and every later
    one. Reports the migrations undone, their batches and the schema fingerprint before and
    after; the undone migrations are pending afterwards."""
    from bgdeploy.strategies.rollback import database_only

    database_only.check(step, batch)
    if not yes:
        what = f"the last {step} migration(s)" if step else f"batch {batch} and every later one"
        click.confirm(
            f"migrate:rollback of {what} on {env}'s database (a snapshot first; the code "
            "stays). Continue?",
            abort=True,
        )
    report = database_only.database_only(env, step, batch, reason=reason, progress=progress)
    if as_json:
        echo_json(report.to_dict())
    else:
        for note in report.notes:
            click.echo(note)
