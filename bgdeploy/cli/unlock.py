"""``bgdeploy unlock ENV``: break a stale deploy lock, after showing it and asking
(:func:`bgdeploy.strategies.unlock.unlock`)."""

from __future__ import annotations

import sys

import click

from bgdeploy.cli.main import handle_errors, progress
from bgdeploy.core.errors import ConfigError


@click.command("unlock")
@click.argument("env")
@click.option("--reason", help="Why the lock is broken (journaled).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--force", is_flag=True, help="Break it even while its process still runs on this machine."
)
@handle_errors
def unlock_cmd(env: str, reason: str | None, yes: bool, force: bool) -> None:
    """Break a stale deploy lock on every web host of ENV (left by a deploy that died).

    Shows each host's lock (owner, machine, pid, ref, since when), then asks (--yes does not;
    with nothing to ask on, exit 2). A lock whose process still runs on this machine is not
    stale: exit 3 unless --force. Who broke whose lock, and --reason, are journaled. A lock
    that changed since it was shown is left."""
    from bgdeploy.strategies import unlock

    def confirm(question: str) -> None:
        if not yes:
            ask(question)

    results = unlock.unlock(env, reason, confirm=confirm, force=force, progress=progress)
    width = max(len("host"), *(len(r.host) for r in results))
    for result in results:
        click.echo(f"{result.host:<{width}}  {result.describe()}")
    if not all(result.ok for result in results):
        sys.exit(1)


def ask(question: str) -> None:
    """Ask ``question`` on the terminal, or read the answer from stdin when it is not one;
    raises :class:`click.Abort` unless the answer is yes, and
    :class:`bgdeploy.core.errors.ConfigError` (exit 2) when there is no one to ask."""
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        raise ConfigError(f"{question} There is no terminal to ask on: pass --yes")
    if stdin.isatty():
        click.confirm(question, abort=True, err=True)
        return
    click.echo(f"{question} [y/N]: ", nl=False, err=True)
    answer = stdin.readline()
    if not answer:
        raise ConfigError(f"no answer to {question!r} (no terminal, stdin closed): pass --yes")
    if answer.strip().lower() not in ("y", "yes"):
        raise click.Abort()
