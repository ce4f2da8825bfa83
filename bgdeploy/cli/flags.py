"""``bgdeploy flags ENV ACTION [NAME [VALUE]]``: feature flags at runtime
(:mod:`bgdeploy.oncall.flags`)."""

from __future__ import annotations

import json

import click

from bgdeploy.cli.main import LibraryChoice, echo_json, env_argument, handle_errors, json_option


@click.command("flags")
@env_argument
@click.argument("action", type=LibraryChoice("bgdeploy.oncall.flags:ACTIONS"))
@click.argument("name", required=False)
@click.argument("value", required=False)
@json_option("Print the flags as JSON.")
@handle_errors
def flags_cmd(env: str, action: str, name: str | None, value: str | None, as_json: bool) -> None:
    """Feature flags at runtime, on every web host at once (they share Redis).

    \b
    bgdeploy flags prod disable visa_new_flow_20250601        # the kill switch
    bgdeploy flags prod rollout visa_new_flow_20250601 25
    bgdeploy flags prod users visa_new_flow_20250601 1,2,3
    bgdeploy flags prod enable|reset NAME;  bgdeploy flags prod list
    """
    from bgdeploy.oncall import flags

    outcome = flags.change(env, action, name, value)
    if as_json:
        echo_json(outcome)
        return
    click.echo(f"{action} {name or ''} on {outcome['host']}; flags now:".replace("  ", " "))
    click.echo(json.dumps(outcome["flags"], indent=2))
