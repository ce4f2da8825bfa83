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
