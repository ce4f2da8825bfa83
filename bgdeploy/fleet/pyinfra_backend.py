"""The pyinfra backend of the executor: what the deploy files run on.

Inside a pyinfra deploy (``pyinfra inventories/prod.py deploys/release.py``), commands go over
pyinfra's own connections to its hosts, in parallel on gevent as pyinfra runs them. gevent's
timeout also covers opening the channel: a host that stopped answering fails as
:class:`bgdeploy.core.errors.HostUnreachable` instead of hanging the deploy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bgdeploy import commands
from bgdeploy.fleet.executor import COMMAND_TIMEOUT, CommandResult, failed

T = TypeVar("T")


def run_on(
    host: Any,
    command: str,
    sudo: bool = False,
    timeout: float | None = None,
    stdin: str | None = None,
    pty: bool = False,
) -> CommandResult:
    """Run ``command`` on a pyinfra ``Host``; never raises for the host's or the command's
    failure.

    ``pty``: under a terminal (stderr then arrives with stdout): when the deploy is stopped
    and its SSH connection closes, the command gets SIGHUP and stops, rather than go on
    changing the host behind the recovery's back.
    """
    import gevent
    from pyinfra.api import StringCommand

    text = commands.as_root(command) if sudo else command
    limit = timeout or COMMAND_TIMEOUT
    started = time.monotonic()
    deadline = gevent.Timeout(limit + 1)
    try:
        with deadline:
            ok, output = host.run_shell_command(
                StringCommand(text),
                print_output=False,
                _stdin=stdin,
                _get_pty=pty,
                _timeout=limit,
            )
    except gevent.Timeout as error:
        if error is not deadline:  # a caller's own timeout: not this host's failure
            raise
        return failed(host.name, error, time.monotonic() - started)
    except Exception as error:
        return failed(host.name, error, time.monotonic() - started)
    return CommandResult(
        host.name,
        bool(ok),
        output.stdout,
        output.stderr,
        getattr(output, "retcode", None),
        time.monotonic() - started,
    )


class PyinfraFleet:
    """The hosts ``names`` of a pyinfra run (an :class:`bgdeploy.fleet.executor.Executor`):
    commands over pyinfra's own connections, hosts in parallel on gevent."""

    def __init__(self, state: Any, names: Sequence[str]) -> None:
        self.names = list(names)
        self.hosts = {name: state.inventory.get_host(name) for name in names}

    def run(
        self,
        name: str,
        command: str,
        sudo: bool = False,
        timeout: float | None = None,
        stdin: str | None = None,
        pty: bool = False,
    ) -> CommandResult:
        return run_on(self.hosts[name], command, sudo, timeout, stdin, pty)

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]:
        from gevent.pool import Pool

        return list(Pool(max(1, len(names))).map(function, names))
