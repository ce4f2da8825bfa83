"""The one way the library reaches a host: run a command on it, or a function on all hosts.

Every remote command of bgdeploy goes through an :class:`Executor`, whichever engine carries
it: :mod:`bgdeploy.fleet.pyinfra_backend` inside a pyinfra deploy (pyinfra's own connections,
on gevent), :mod:`bgdeploy.fleet.fabric_backend` from the command line (Fabric, strict host
keys, one connection per host). Both answer with a :class:`CommandResult`; a failure to reach
a host is classified once, where it is caught (:func:`classify`),
and carried as a type (:class:`bgdeploy.core.errors.HostUnreachable`,
:class:`bgdeploy.core.errors.HostKeyRejected`), never recognised later by its text.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from bgdeploy.core.errors import (
    CommandFailed,
    ConfigError,
    HostError,
    HostKeyRejected,
    HostUnreachable,
)
from bgdeploy.core.explain import explain

T = TypeVar("T")

COMMAND_TIMEOUT = 120.0
"""Seconds a command may take when the caller gives no timeout."""

UNLIMITED_SECONDS = -1.0
"""A timeout that means none: the command may take as long as it takes (a database snapshot),
over the Fabric backend."""


@dataclass
class CommandResult:
    """What one command did on one host.

    ``ok``: it ran and exited 0. ``error``: the host could not be reached or refused us (then
    ``stderr`` holds the same reason, for output that prints it). Unpacks and indexes as
    ``ok, stdout, stderr`` (the shape :class:`Executor` callers have always read).
    """

    host: str
    ok: bool
    stdout: str = ""
    stderr: str = ""
    exit_status: int | None = None
    seconds: float = 0.0
    error: HostError | None = None

    def __iter__(self) -> Iterator[bool | str]:
        return iter((self.ok, self.stdout, self.stderr))

    def __getitem__(self, index: int) -> bool | str:
        return (self.ok, self.stdout, self.stderr)[index]

    def __len__(self) -> int:
        return 3

    @property
    def unreachable(self) -> bool:
        return isinstance(self.error, HostUnreachable)

    @property
    def key_rejected(self) -> bool:
        return isinstance(self.error, HostKeyRejected)

    def explain(self) -> str:
        """The lines that explain a failure (:func:`bgdeploy.core.explain.explain`); the
        reason itself when the host was not reached."""
        if self.error is not None:
            return str(self.error)
        return explain(self.stdout, self.stderr)

    def exit_text(self) -> str:
        """``exit N: last line of output`` for a command that failed (the reason when the host
        was not reached)."""
        if self.error is not None:
            return str(self.error)
        tail = (self.stderr or self.stdout).strip().splitlines()[-1:]
        return f"exit {self.exit_status}" + (f": {tail[0]}" if tail else "")

    def reached(self) -> CommandResult:
        """This result when the command ran (whatever its exit status); else raise the host's
        typed error (:class:`bgdeploy.core.errors.HostError`)."""
        if self.error is not None:
            raise self.error
        return self

    def check(self, step: str, message: str = "") -> CommandResult:
        """This result when ``ok``; else raise its typed error: the host's
        (:class:`bgdeploy.core.errors.HostError`), or
        :class:`bgdeploy.core.errors.CommandFailed` for ``step`` (``message``: its text,
        by default ``exit N: last line``)."""
        if self.error is not None:
            raise self.error
        if not self.ok:
            raise CommandFailed(
                self.host, step, self.exit_status, self.explain(), message or self.exit_text()
            )
        return self


def classify(host: str, error: BaseException) -> HostError | CommandFailed | BaseException:
    """The typed error for an exception caught while reaching ``host``: a refused host key
    (:class:`HostKeyRejected`), a host that did not answer (:class:`HostUnreachable`), a command
    that failed (:class:`CommandFailed`). Typed errors pass through; anything else is returned
    as it is (a bug, not a host's failure)."""
    import gevent
    import paramiko
    from invoke.exceptions import CommandTimedOut, UnexpectedExit
    from pyinfra.api.exceptions import ConnectError

    if isinstance(error, HostError | CommandFailed | ConfigError):
        return error
    if isinstance(error, paramiko.BadHostKeyException):
        return HostKeyRejected(
            host, "host key CHANGED: refused (check the server, then known_hosts)", changed=True
        )
    if isinstance(error, paramiko.SSHException) and "not found in known_hosts" in str(error):
        # paramiko's RejectPolicy says so only in its message: read once, here, into a type.
        return HostKeyRejected(
            host, "host key unknown: refused (add the verified key to known_hosts)"
        )
    if isinstance(error, UnexpectedExit):
        result = error.result
        done = CommandResult(host, False, result.stdout, result.stderr, result.exited)
        return CommandFailed(host, "command", result.exited, done.explain(), done.exit_text())
    if isinstance(error, CommandTimedOut):
        return HostUnreachable(host, f"timed out after {error.timeout} s")
    if isinstance(error, socket.timeout | TimeoutError):
        return HostUnreachable(host, f"unreachable ({error or 'timed out'})")
    if isinstance(error, OSError):
        return HostUnreachable(host, f"unreachable ({error.strerror or error})")
    if isinstance(error, gevent.Timeout):
        return HostUnreachable(host, f"no answer in {error.seconds:g} s: unreachable")
    if isinstance(error, ConnectError):
        return HostUnreachable(host, f"unreachable ({error})")
    if isinstance(error, EOFError):
        return HostUnreachable(host, f"unreachable ({type(error).__name__}: {error})")
    return error


def describe(host: str, error: BaseException) -> str:
    """One line an operator can act on, for any failure caught while reaching ``host``."""
    typed = classify(host, error)
    if isinstance(typed, HostError | CommandFailed | ConfigError):
        return str(typed)
    return f"{type(error).__name__}: {error}"


def failed(host: str, error: BaseException, seconds: float = 0.0) -> CommandResult:
    """The result of a command that raised ``error`` on ``host`` (classified: ``error`` is set
    when the host was not reached; ``stderr`` says why in one line)."""
    if isinstance(error, KeyboardInterrupt | SystemExit):
        raise error
    typed = classify(host, error)
    return CommandResult(
        host,
        False,
        stderr=describe(host, error),
        seconds=seconds,
        error=typed if isinstance(typed, HostError) else None,
    )


class Executor(Protocol):
    """How the library reaches hosts: run a command on one (``timeout``: seconds to wait for
    it, then it fails as unreachable; ``stdin``: its input; ``sudo``: as root; ``pty``: under
    a terminal, so it stops when the connection drops), run a function on all in parallel."""

    names: list[str]

    def run(
        self,
        name: str,
        command: str,
        sudo: bool = False,
        timeout: float | None = None,
        stdin: str | None = None,
        pty: bool = False,
    ) -> CommandResult: ...

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]: ...
