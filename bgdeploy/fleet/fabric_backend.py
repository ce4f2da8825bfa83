"""The Fabric backend of the executor: what the command line runs on (switch, rollback, the
on-call commands, the checks).

Strict host keys (:func:`bgdeploy.fleet.remote.connect`), one connection per host, and
timeouts that also cover a host that stopped answering (opening a channel alone would wait for
ever): a command that gets no answer in time closes its connection and fails as
:class:`bgdeploy.core.errors.HostUnreachable`. Every exception is classified once, at the executor
(:func:`bgdeploy.fleet.executor.classify`), into a typed error the callers test by type.

- :class:`FabricFleet`: one connection per host, kept for a whole operation (a switch, a
  rollback);
- :class:`PerCommandFleet`: a new connection for each command (for a lock held through an
  hours-long restore: no connection has to stay up meanwhile);
- :func:`run_tasks` / :func:`run_all`: a task or a command on every host in parallel, each
  host's outcome in a :class:`bgdeploy.fleet.remote.HostResult`.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO, TypeVar

from bgdeploy import commands
from bgdeploy.core import timing
from bgdeploy.core.errors import CommandFailed, HostError, HostUnreachable
from bgdeploy.fleet import remote
from bgdeploy.fleet.executor import (
    COMMAND_TIMEOUT,
    UNLIMITED_SECONDS,
    CommandResult,
    classify,
    describe,
    failed,
)
from bgdeploy.fleet.remote import HostResult, Target, connect

T = TypeVar("T")

TASK_COMMAND_TIMEOUT = remote.COMMAND_TIMEOUT
"""Seconds a command of :func:`run_tasks` / :func:`run_all` may take by default."""


def run_on(
    connection: Any,
    host: str,
    command: str,
    sudo: bool = False,
    timeout: float | None = None,
    stdin: str | None = None,
    pty: bool = False,
) -> CommandResult:
    """Run ``command`` on an open (or openable) Fabric ``connection``; never raises. After
    ``timeout`` seconds without an answer the connection is closed and the host counted
    unreachable."""
    limit = timeout or COMMAND_TIMEOUT
    if limit == UNLIMITED_SECONDS:
        limit = 0.0
    text = commands.as_root(command) if sudo else command
    done: dict[str, Any] = {}
    started = time.monotonic()

    def call() -> None:
        try:
            done["result"] = connection.run(
                text,
                hide=True,
                warn=True,
                pty=pty,
                in_stream=io.StringIO(stdin) if stdin is not None else False,
                timeout=limit or None,
            )
        except BaseException as error:  # classified below, in the caller's thread
            done["error"] = error

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(limit + 1 if limit else None)
    seconds = time.monotonic() - started
    if worker.is_alive():
        connection.close()
        why = HostUnreachable(host, f"no answer in {limit:g} s: unreachable")
        return CommandResult(host, False, stderr=str(why), seconds=seconds, error=why)
    if "error" in done:
        return failed(host, done["error"], seconds)
    result = done["result"]
    return CommandResult(
        host, result.exited == 0, result.stdout, result.stderr, result.exited, seconds
    )


def _map(function: Callable[[Any], T], items: Sequence[Any]) -> list[T]:
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(items)))) as pool:
        return list(pool.map(function, items))


class FabricFleet:
    """Hosts over Fabric: one strict connection per host, kept for the whole operation (an
    :class:`bgdeploy.fleet.executor.Executor`)."""

    def __init__(self, targets: Sequence[Target]) -> None:
        self.names = [target.name for target in targets]
        self.connections = {target.name: connect(target) for target in targets}
        self.unreachable: dict[str, HostError] = {}
        """The hosts :meth:`open_all` could not reach, with why: a command on one of them
        fails at once with that reason (it is not connected to again)."""

    def run(
        self,
        name: str,
        command: str,
        sudo: bool = False,
        timeout: float | None = None,
        stdin: str | None = None,
        pty: bool = False,
    ) -> CommandResult:
        if name in self.unreachable:
            why = self.unreachable[name]
            return CommandResult(name, False, stderr=str(why), error=why)
        return run_on(self.connections[name], name, command, sudo, timeout, stdin, pty)

    def open_all(self) -> dict[str, HostError]:
        """Connect to every host at once (rather than each at its first command, one after
        the other when the first command is sent to one host first, as the lock's is); the
        hosts that cannot be reached, with why (also kept in :attr:`unreachable`)."""
        with timing.phase("connect"):
            errors = self.map(self.open, self.names)
        found = {name: error for name, error in zip(self.names, errors, strict=True) if error}
        self.unreachable.update(found)
        return found

    def open(self, name: str) -> HostError | None:
        """Connect to ``name`` now; the typed reason when it cannot be reached."""
        try:
            self.connections[name].open()
        except Exception as error:
            typed = classify(name, error)
            if isinstance(typed, HostError):
                return typed
            return HostUnreachable(name, f"{type(error).__name__}: {error}")
        return None

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]:
        return _map(function, names)

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()


class PerCommandFleet:
    """Hosts reached with a new strict connection for each command, closed after it (an
    :class:`bgdeploy.fleet.executor.Executor`): for a deploy lock held through an hours-long
    restore, no connection has to stay up meanwhile."""

    def __init__(self, hosts: Sequence[Target]) -> None:
        self.targets = {target.name: target for target in hosts}
        self.names = [target.name for target in hosts]

    def run(
        self,
        name: str,
        command: str,
        sudo: bool = False,
        timeout: float | None = None,
        stdin: str | None = None,
        pty: bool = False,
    ) -> CommandResult:
        connection = None
        try:
            connection = connect(self.targets[name])
            return run_on(connection, name, command, sudo, timeout, stdin, pty)
        except Exception as error:  # a missing known_hosts too: that host fails, as before
            return failed(name, error)
        finally:
            if connection is not None:
                connection.close()

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]:
        return _map(function, names)


class Host:
    """One host of :func:`run_tasks`, over its own connection: what a task runs commands on."""

    def __init__(self, target: Target, connection: Any) -> None:
        self.target = target
        self.name = target.name
        self.connection = connection

    def run(
        self,
        command: str,
        sudo: bool = False,
        timeout: float | None = TASK_COMMAND_TIMEOUT,
        stdin: str | None = None,
        pty: bool = False,
    ) -> CommandResult:
        """Run ``command``; never raises for the host's or the command's failure (see
        :meth:`bgdeploy.fleet.executor.CommandResult.check`)."""
        return run_on(self.connection, self.name, command, sudo, timeout, stdin, pty)

    def check(
        self,
        command: str,
        step: str = "command",
        sudo: bool = False,
        timeout: float | None = TASK_COMMAND_TIMEOUT,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run ``command``; raise the typed error when it fails
        (:class:`bgdeploy.core.errors.CommandFailed` saying ``exit N: last line``)."""
        return self.run(command, sudo, timeout, stdin).check(step)

    def stream(
        self, command: str, out: TextIO, sudo: bool = False, timeout: float | None = None
    ) -> CommandResult:
        """Run ``command`` writing its output (stdout and stderr) to ``out`` as it comes
        (``timeout`` None: as long as it runs, e.g. ``tail -f``). A host that cannot be
        reached or stops answering raises its typed error."""
        text = commands.as_root(command) if sudo else command
        started = time.monotonic()
        try:
            result = self.connection.run(
                text,
                hide=False,
                warn=True,
                in_stream=False,
                out_stream=out,
                err_stream=out,
                timeout=timeout,
            )
        except Exception as error:
            done = failed(self.name, error, time.monotonic() - started)
            return done.reached()
        return CommandResult(
            self.name,
            result.exited == 0,
            result.stdout,
            result.stderr,
            result.exited,
            time.monotonic() - started,
        )


Task = Callable[[Host], "str | None"]
Command = str | Callable[[Target], str]


def run_tasks(hosts: Sequence[Target], task: Task) -> list[HostResult]:
    """Run ``task(host)`` on every host in parallel, each over its own connection.

    The task returns a one-line description of what it did (or None); an exception fails that
    host only (a refused host key, an unreachable host, a command that failed), carried typed
    in :attr:`HostResult.failure`. Every host gets a :class:`HostResult`, in the order given.
    """

    def one(target: Target) -> HostResult:
        started = time.monotonic()
        connection = None
        try:
            connection = connect(target)
            detail = task(Host(target, connection))
            return HostResult(
                target.name, True, seconds=time.monotonic() - started, detail=detail or ""
            )
        except Exception as error:
            typed = classify(target.name, error)
            return HostResult(
                target.name,
                False,
                seconds=time.monotonic() - started,
                error=describe(target.name, error),
                failure=typed if isinstance(typed, HostError | CommandFailed) else None,
            )
        finally:
            if connection is not None:
                connection.close()

    return _map(one, hosts)


def run_all(
    hosts: Sequence[Target],
    command: Command,
    sudo: bool = False,
    timeout: float = TASK_COMMAND_TIMEOUT,
) -> list[HostResult]:
    """Run a shell command on every host in parallel and keep each host's output.

    ``command`` is one string for all hosts, or a function giving each host's command (built
    by :mod:`bgdeploy.commands`). A non-zero exit fails that host only.
    """
    outputs: dict[str, CommandResult] = {}

    def task(host: Host) -> str | None:
        text = command(host.target) if callable(command) else command
        done = host.run(text, sudo=sudo, timeout=timeout)
        outputs[host.name] = done
        done.check("command")
        return None

    results = run_tasks(hosts, task)
    for result in results:
        done = outputs.get(result.host)
        if done is not None and done.error is None:
            result.stdout, result.stderr, result.exit_code = (
                done.stdout,
                done.stderr,
                done.exit_status,
            )
    return results
