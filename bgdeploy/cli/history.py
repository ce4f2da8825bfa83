"""The deploy journals, read: ``bgdeploy history ENV`` and ``bgdeploy postmortem ENV``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from bgdeploy.cli.main import WholeNumber, handle_errors, json_option

if TYPE_CHECKING:
    from bgdeploy.oncall.history import History


@click.command("history")
@click.argument("env")
@click.option("--last", type=WholeNumber(1, 100_000), help="Only the last N lines per host.")
@json_option("Print the entries as JSON.")
@handle_errors
def history_cmd(env: str, last: int | None, as_json: bool) -> None:
    """Every host's deploy journal, merged in time order (deploys, switches, rollbacks, ...)."""
    from bgdeploy.core import journal
    from bgdeploy.oncall import history

    found = history.read(env, last)
    click.echo(
        journal.format_history_json(found.entries) if as_json
        else journal.format_history(found.entries)
    )  # fmt: skip
    warn_unreadable(found)


@click.command("postmortem")
@click.argument("env")
@click.option("--since", required=True, help="Start of the incident (ISO 8601, Asia/Dhaka).")
@click.option("--until", "until", default=None, help="End of the incident (default: now).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE.")
@handle_errors
def postmortem_cmd(env: str, since: str, until: str | None, output: str | None) -> None:
    """The runbook's postmortem template, with the timeline filled from the journals."""
    from bgdeploy.core import windows
    from bgdeploy.oncall import history, postmortem

    start = windows.parse_at(since, "Asia/Dhaka")
    end = windows.parse_at(until, "Asia/Dhaka") if until else None
    found = history.read(env)
    text = postmortem.render_postmortem(found.entries, env, start, end)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"postmortem written to {output}", err=True)
    else:
        click.echo(text)
    warn_unreadable(found)


def warn_unreadable(found: History) -> None:
    """Warn (stderr) about journal lines that could not be parsed and journals that could not
    be read; exit 1 when a host's journal was not read."""
    for bad in found.merged.bad_lines:
        click.echo(f"warning: {bad}", err=True)
    for result in found.unreadable:
        click.echo(f"warning: {result.host}: journal not read: {result.summary()}", err=True)
    if found.unreadable:
        sys.exit(1)
