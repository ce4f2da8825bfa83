"""Fabric connections to the inventory's hosts, with strict host keys, in parallel.

The on-call commands (rollback, emergency, history, postmortem) run over Fabric rather than
pyinfra, but they reach the very same hosts: :func:`targets` reads them from
``inventories/ENV.py`` and its group_data, exactly as pyinfra does (one source of truth).

The operator's SSH agent is forwarded when group_data says ``ssh_forward_agent = True`` (the
same key pyinfra reads for the deploy files), so hosts that fetch the repository can use the
operator's key. Fabric accepts any host key by default. Here every connection loads the inventory's
known_hosts file (``ssh_known_hosts_file``; without one, the user's ``~/.ssh/known_hosts``) and
rejects unknown and changed keys before the first command, with a connect timeout. Commands
run on these connections through the executor (:mod:`bgdeploy.fleet.fabric_backend`), and
each host's outcome is a :class:`HostResult` (:func:`format_results` prints them).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bgdeploy.core import timing
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.settings import ROOT
from bgdeploy.fleet import runner

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
COMMAND_TIMEOUT = 600.0
"""Seconds an on-call command may take by default."""


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
    forward_agent: bool = False
    """Forward the operator's SSH agent (group_data ``ssh_forward_agent``, as pyinfra does)."""


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
                forward_agent=data.get("ssh_forward_agent") is True,
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
    """A Fabric ``Connection`` that refuses unknown and changed host keys (not connected yet)."""
    with timing.phase("ssh library"):
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
        forward_agent=target.forward_agent,
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
