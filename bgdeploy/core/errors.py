"""Errors that carry the command line's exit codes.

Every command exits 0 on success, 1 when an operation failed, 2 on bad usage or configuration,
and 3 when a policy (deploy window, lock, destructive migration) refused to act. Library code
raises one of these; the CLI turns it into a message and that exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bgdeploy.core.lock import LockInfo


class BgdeployError(Exception):
    """Base class: ``str(error)`` is the message shown to the operator."""

    exit_code = 1


class OperationFailed(BgdeployError):
    """Something was tried and failed (a host, a command, Docker)."""

    exit_code = 1


class ConfigError(BgdeployError):
    """Bad usage or configuration: nothing was changed anywhere."""

    exit_code = 2


class PolicyRefusal(BgdeployError):
    """A policy (deploy window, lock, destructive migration) refused to act."""

    exit_code = 3


class LockHeld(PolicyRefusal):
    """The deploy lock is held by someone else: nothing was changed (exit 3).

    ``holders`` maps each web host where it was found taken to its holder (a
    :class:`bgdeploy.core.lock.LockInfo`, or None when the lock's content could not be read).
    """

    def __init__(self, message: str, holders: dict[str, LockInfo | None]) -> None:
        super().__init__(message)
        self.holders = holders


class HostError(OperationFailed):
    """One host could not be reached or refused us (exit 1). ``host`` names it; ``str(error)``
    is the reason alone (callers put the host in front, as their table or sentence wants)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(reason)
        self.host = host
        self.reason = reason


class HostUnreachable(HostError):
    """The host did not answer: connection refused or reset, DNS, a timeout, a host that
    stopped answering in the middle of a command."""


class HostKeyRejected(HostError):
    """The host's SSH key is unknown to the inventory's known_hosts, or changed: nothing was
    run there. ``changed`` tells which."""

    def __init__(self, host: str, reason: str, changed: bool = False) -> None:
        super().__init__(host, reason)
        self.changed = changed


class CommandFailed(OperationFailed):
    """A command ran and exited non-zero (exit 1): on ``host``, during ``step``, with
    ``exit_status`` and the output ``lines`` that explain it
    (:func:`bgdeploy.core.explain.explain`)."""

    def __init__(
        self, host: str, step: str, exit_status: int | None, lines: str, message: str = ""
    ) -> None:
        super().__init__(message or f"{host}: {step} failed (exit {exit_status}): {lines}")
        self.host = host
        self.step = step
        self.exit_status = exit_status
        self.lines = lines
