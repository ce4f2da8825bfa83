"""Fabric connections to the inventory's hosts, with strict host keys, in parallel.

The on-call commands (rollback, emergency, history, postmortem) run over Fabric rather than
pyinfra, but they reach the very same hosts: :func:`targets` reads them from
``inventories/ENV.py`` and its group_data, exactly as pyinfra does (one source of truth).

Fabric accepts any host key by default. Here every connection loads the inventory's
known_hosts file (``ssh_known_hosts_file``; without one, the user's ``~/.ssh/known_hosts``) and
rejects unknown and changed keys before the first command. Connections have a connect
timeout, commands a timeout, and :func:`run_all` runs hosts in parallel and reports every
host's outcome, failed or not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bgdeploy import commands
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.settings import ROOT
from bgdeploy.fleet import runner

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 600.0


@dataclass(frozen=True)
class Target:
    """One inventory host, as Fabric reaches it."""

    name: str
    hostname: str
    port: int
    user: str | None
    key_file: str | None
    known_hosts: str | None
    groups: tuple[str, ...]
    data: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _path(value: Any) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else ROOT / path)


def targets(env: str, groups: Sequence[str] = ("web",), inventory: Any = None) -> list[Target]:
    """The hosts of ``inventories/ENV.py`` in any of ``groups``, in inventory order
    (``inventory``: the one already loaded, e.g. by
    :func:`bgdeploy.fleet.runner.check_environment`).
    """
    inventory = runner.load_inventory(env) if inventory is None else inventory
    found: list[Target] = []
    for host in inventory:
        if not any(group in host.groups for group in groups):
            continue
        data = host.data.dict()
        found.append(
            Target(
                name=host.name,
                hostname=str(data.get("ssh_hostname") or host.name),
                port=int(data.get("ssh_port") or 22),
                user=data.get("ssh_user"),
                key_file=_path(data.get("ssh_key")),
                known_hosts=_path(data.get("ssh_known_hosts_file")),
                groups=tuple(host.groups),
                data=data,
            )
        )
    if not found:
        raise ConfigError(f"inventories/{env}.py has no host in {' or '.join(groups)}")
    return found


def quiet_paramiko() -> None:
    """Keep paramiko's own log (tracebacks of its transport thread, e.g. "Error reading SSH
    protocol banner" from a host that stopped answering) off the operator's terminal: the
    failure reaches the per-host result table, in one line, through
    :func:`bgdeploy.fleet.fabric_backend.classify`."""
    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def connect(target: Target, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A Fabric ``Connection`` that refuses unknown and changed host keys."""
    import paramiko
    from fabric import Config, Connection

    quiet_paramiko()
    connect_kwargs: dict[str, Any] = {
        "look_for_keys": target.key_file is None,
        "allow_agent": target.key_file is None,
        "banner_timeout": timeout,
        "auth_timeout": timeout,
    }
    if target.key_file:
        connect_kwargs["key_filename"] = target.key_file
    connection = Connection(
        target.hostname,
        user=target.user,
        port=target.port,
        connect_timeout=timeout,
        connect_kwargs=connect_kwargs,
        config=Config(overrides={"load_ssh_configs": False}),
    )
    if target.known_hosts:
        if not Path(target.known_hosts).is_file():
            raise ConfigError(f"{target.name}: known_hosts file {target.known_hosts} is missing")
        connection.client.load_host_keys(target.known_hosts)
    else:
        connection.client.load_system_host_keys()
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return connection


@dataclass
class HostResult:
    """What happened on one host: ``ok``, the command's output, or the error."""

    host: str
    ok: bool
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    seconds: float = 0.0
    error: str = ""
    detail: str = ""
    failure: Exception | None = None
    """The typed failure (:class:`bgdeploy.core.errors.HostUnreachable`, ``HostKeyRejected``,
    ``CommandFailed``) when the host failed through the executor; ``error`` says it."""

    def summary(self) -> str:
        if self.ok:
            return self.detail or "ok"
        return self.error or f"exit {self.exit_code}"


def sudo(connection: Any, command: str, **kwargs: Any) -> Any:
    """Run a whole shell command as root on a Fabric connection (see ``commands.as_root``)."""
    kwargs.setdefault("hide", True)
    kwargs.setdefault("in_stream", False)
    return connection.run(commands.as_root(command), **kwargs)


def describe_error(error: BaseException) -> str:
    """One line an operator can act on, for a connection or command failure."""
    import paramiko
    from invoke.exceptions import CommandTimedOut, UnexpectedExit

    if isinstance(error, paramiko.BadHostKeyException):
        return "host key CHANGED: refused (check the server, then known_hosts)"
    if isinstance(error, paramiko.SSHException) and "not found in known_hosts" in str(error):
        return "host key unknown: refused (add the verified key to known_hosts)"
    if isinstance(error, UnexpectedExit | CommandFailed):
        return exit_text(error.result)
    if isinstance(error, CommandTimedOut):
        return f"timed out after {error.timeout} s"
    if isinstance(error, OSError):
        return f"unreachable ({error.strerror or error})"
    return f"{type(error).__name__}: {error}"


Task = Callable[[Any, Target], "str | None"]
Command = str | Callable[[Target], str]


def run_tasks(hosts: Sequence[Target], task: Task) -> list[HostResult]:
    """Run ``task(connection, target)`` on every host in parallel.

    The task returns a one-line description of what it did (or None); an exception fails that
    host only (a refused host key, an unreachable host, a command that failed). Every host gets
    a :class:`HostResult`, in the order given.
    """

    def one(target: Target) -> HostResult:
        started = time.monotonic()
        connection = None
        try:
            connection = connect(target)
            detail = task(connection, target)
            return HostResult(
                target.name, True, seconds=time.monotonic() - started, detail=detail or ""
            )
        except Exception as error:
            return HostResult(
                target.name, False, seconds=time.monotonic() - started, error=describe_error(error)
            )
        finally:
            if connection is not None:
                connection.close()

    with ThreadPoolExecutor(max_workers=max(1, min(32, len(hosts)))) as pool:
        return list(pool.map(one, hosts))


def run_all(
    hosts: Sequence[Target],
    command: Command,
    sudo: bool = False,
    timeout: float = COMMAND_TIMEOUT,
) -> list[HostResult]:
    """Run a shell command on every host in parallel and keep each host's output.

    ``command`` is one string for all hosts, or a function giving each host's command (built
    by :mod:`bgdeploy.commands`). A non-zero exit fails that host only.
    """
    outputs: dict[str, Any] = {}

    def task(connection: Any, target: Target) -> str | None:
        text = command(target) if callable(command) else command
        if sudo:
            text = commands.as_root(text)
        result = connection.run(text, hide=True, warn=True, timeout=timeout, in_stream=False)
        outputs[target.name] = result
        if result.exited != 0:
            raise CommandFailed(result)
        return None

    results = run_tasks(hosts, task)
    for result in results:
        done = outputs.get(result.host)
        if done is not None:
            result.stdout, result.stderr, result.exit_code = done.stdout, done.stderr, done.exited
    return results


class PerCommandFleet:
    """Hosts reached with a new strict connection for each command, closed after it (the
    :class:`bgdeploy.strategies.switch.Fleet` shape): for a deploy lock held through an hours-long
    restore, no connection has to stay up meanwhile."""

    def __init__(self, hosts: Sequence[Target]) -> None:
        self.targets = {target.name: target for target in hosts}
        self.names = [target.name for target in hosts]

    def run(
        self, name: str, command: str, sudo: bool = False, timeout: float | None = None
    ) -> tuple[bool, str, str]:
        """Run ``command`` (as root with ``sudo``): (ok, stdout, stderr); a host that cannot
        be reached, or a command that times out, fails with why in stderr."""
        connection = None
        try:
            connection = connect(self.targets[name])
            text = commands.as_root(command) if sudo else command
            result = connection.run(
                text, hide=True, warn=True, in_stream=False, timeout=timeout or COMMAND_TIMEOUT
            )
        except Exception as error:
            return False, "", describe_error(error)
        finally:
            if connection is not None:
                connection.close()
        return result.exited == 0, result.stdout, result.stderr

    def map(self, function: Callable[[str], T], names: Sequence[str]) -> list[T]:
        with ThreadPoolExecutor(max_workers=max(1, min(32, len(names)))) as pool:
            return list(pool.map(function, names))


class CommandFailed(Exception):
    """A command exited non-zero (its result says how)."""

    def __init__(self, result: Any) -> None:
        super().__init__(exit_text(result))
        self.result = result


def exit_text(result: Any) -> str:
    """``exit N: last line of output`` for a command that failed."""
    tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
    return f"exit {result.exited}" + (f": {tail[0]}" if tail else "")


def format_results(results: Sequence[HostResult], what: str = "result") -> str:
    """The per-host table every Fabric command ends with: host, outcome, duration."""
    width = max([len("host"), *(len(r.host) for r in results)])
    lines = [f"{'host':<{width}}  {'':<6} {'seconds':>7}  {what}"]
    for result in results:
        mark = "ok" if result.ok else "FAILED"
        first, *rest = result.summary().splitlines() or [""]
        lines.append(f"{result.host:<{width}}  {mark:<6} {result.seconds:7.1f}  {first}")
        lines += [" " * (width + 18) + line for line in rest]
    return "\n".join(lines)
