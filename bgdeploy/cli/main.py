"""The root of the ``bgdeploy`` command line, and what its command groups share.

Every command prints what it did per host and exits 0 on success, 1 when an operation failed,
2 on bad usage or configuration, and 3 when a policy refused to act (:func:`handle_errors`
maps the library's typed errors to those codes). ``--json`` gives machine-readable output on
stdout; progress goes to stderr (:func:`progress`).

Each command group lives in a module of its own (:data:`COMMANDS` says which), imported only
when that command runs or a help page needs it: the modules import the library inside their
commands, so ``bgdeploy --help`` loads neither pyinfra, Fabric nor the Docker SDK.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from functools import wraps
from typing import TYPE_CHECKING, Any

import click

from bgdeploy.core import timing
from bgdeploy.core.errors import BgdeployError

if TYPE_CHECKING:
    from bgdeploy.fleet.remote import HostResult

COMMANDS: dict[str, str] = {
    "sandbox": "bgdeploy.cli.sandbox:sandbox_group",
    "provision": "bgdeploy.cli.provision:provision_cmd",
    "deploy": "bgdeploy.cli.deploy:deploy_cmd",
    "rollback": "bgdeploy.cli.rollback:rollback_cmd",
    "switch": "bgdeploy.cli.switch:switch_cmd",
    "status": "bgdeploy.cli.status:status_cmd",
    "health": "bgdeploy.cli.status:health_cmd",
    "smoke": "bgdeploy.cli.status:smoke_cmd",
    "history": "bgdeploy.cli.history:history_cmd",
    "postmortem": "bgdeploy.cli.history:postmortem_cmd",
    "snapshot": "bgdeploy.cli.snapshot:snapshot_group",
    "db": "bgdeploy.cli.db:db_group",
    "flags": "bgdeploy.cli.flags:flags_cmd",
    "emergency": "bgdeploy.cli.emergency:emergency_group",
    "preflight": "bgdeploy.cli.preflight:preflight_cmd",
    "window": "bgdeploy.cli.window:window_cmd",
    "unlock": "bgdeploy.cli.unlock:unlock_cmd",
    "scale": "bgdeploy.cli.scale:scale_cmd",
    "review": "bgdeploy.cli.review:review_cmd",
    "ship": "bgdeploy.cli.ship:ship_cmd",
}
"""Each command's name -> ``module:attribute`` of its click command (or group)."""


def load(where: str) -> Any:
    """The object ``where`` names (``"package.module:attribute"``), importing its module."""
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)


class LazyGroup(click.Group):
    """A click group whose commands are imported when first needed (click's "lazily loading
    subcommands" pattern): ``lazy`` maps each name to ``module:attribute``."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        with timing.phase("imports"):
            command = load(self.lazy[cmd_name])
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
        self.add_command(command, cmd_name)
        return command


class WholeNumber(click.IntRange):
    """A whole number written as digits only, in ``[low, high]``: no sign, space, newline or
    underscore (Python's ``int()`` would take ``" 1\\n"`` or ``1_0``)."""

    name = "whole number"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            self.fail(f"{value!r} is not a whole number (digits only)", param, ctx)
        return super().convert(value, param, ctx)


class LibraryChoice(click.Choice):  # type: ignore[type-arg]
    """One of the values a library module lists (``"bgdeploy.oncall.flags:ACTIONS"``): the
    library holds the one list, read when a command is parsed or its help shown, not when the
    command line is loaded."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.case_sensitive = True

    @property  # type: ignore[override]
    def choices(self) -> tuple[str, ...]:
        values: Sequence[str] = load(self.where)
        return tuple(values)


def progress(line: str) -> None:
    """Print one line of progress of a long operation (on stderr, indented)."""
    click.echo(f"  {line}", err=True)


def echo_json(data: Any) -> None:
    """Print ``data`` as the ``--json`` output (indented JSON, on stdout)."""
    click.echo(json.dumps(data, indent=2))


def json_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--json`` flag (the parameter ``as_json``), with its command's help text."""
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def output_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--quiet`` (only the final table) and ``--verbose`` (pyinfra's log live too): the
    parameters ``quiet`` and ``verbose`` (:mod:`bgdeploy.cli.live`)."""
    func = click.option(
        "--verbose", "-v", is_flag=True, help="Also show pyinfra's log as it comes."
    )(func)
    return click.option(
        "--quiet", "-q", is_flag=True, help="Print only the final table (no progress)."
    )(func)


env_argument = click.argument("env")
yes_option = click.option("--yes", is_flag=True, help="Do not ask for confirmation.")


def finish(results: Sequence[HostResult], what: str = "result") -> None:
    """Print the per-host table; exit 1 when any host failed (the others are still shown)."""
    from bgdeploy.fleet import remote

    click.echo(remote.format_results(results, what))
    if any(not result.ok for result in results):
        sys.exit(1)


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into a message on stderr and the documented exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BgdeployError as error:
            click.echo(f"bgdeploy: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("bgdeploy: interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bgdeploy")
@click.option(
    "--profile",
    is_flag=True,
    help="Print where the time went (each phase of the command) on stderr at the end "
    f"(or set {timing.VARIABLE}=1).",
)
def cli(profile: bool) -> None:
    """Deploy the BideshGomon platform safely, and bring it back when something breaks."""
    if profile:
        timing.enable()


def main() -> None:
    """Console-script entry point."""
    timing.record("python start and imports", timing.PROFILE.origin, time.monotonic())
    how = timing.mode()
    if how:
        timing.enable(how)
    cli(prog_name="bgdeploy")
