"""``bgdeploy scale ENV workers|php-fpm N``: queue workers per web host, php-fpm children per
pool (:mod:`bgdeploy.oncall.scale`)."""

from __future__ import annotations

import click

from bgdeploy.cli.main import env_argument, finish, handle_errors, progress


@click.command("scale")
@env_argument
@click.argument("what", type=click.Choice(["workers", "php-fpm"]))
@click.argument("count", type=int)
@click.option("--reason", help="Why (journaled).")
@handle_errors
def scale_cmd(env: str, what: str, count: int, reason: str | None) -> None:
    """Set the queue workers of every web host (workers: 1 to 32, supervisor; a worker stops
    after its current job) or the children of both colours' php-fpm pools (php-fpm: 1 to 256;
    tested, then a graceful reload). Under the deploy lock of every web host (exit 3 while a
    deploy holds it); kept on each host, so that `bgdeploy provision` keeps it too."""
    from bgdeploy.oncall import scale

    scale.check(what, count)
    finish(scale.scale(env, what, count, reason=reason, progress=progress), f"scale {what}")
