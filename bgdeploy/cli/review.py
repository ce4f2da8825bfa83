"""``bgdeploy review ENV [RUN_ID]``: the post-deployment reviews of hotfix and emergency
deploys (:mod:`bgdeploy.oncall.reviews`)."""

from __future__ import annotations

import click

from bgdeploy.cli.main import env_argument, finish, handle_errors


@click.command("review")
@env_argument
@click.argument("run_id", required=False)
@click.option("--notes", metavar="TEXT", help="What the review found (journaled).")
@handle_errors
def review_cmd(env: str, run_id: str | None, notes: str | None) -> None:
    """Record the post-deployment review of the hotfix or emergency deploy RUN_ID (a
    ``review`` line on every web host's journal): ``status`` and ``preflight`` stop showing it
    as due. Without RUN_ID, list the reviews still due, overdue first."""
    from bgdeploy.oncall import reviews

    if run_id is None:
        items, unreadable = reviews.due(env)
        for line in reviews.describe_due(items) or ["no review is due"]:
            click.echo(line)
        for result in unreadable:
            click.echo(f"{result.host}: journal not read: {result.summary()}", err=True)
        return
    finish(reviews.record(env, run_id, notes), "review")
