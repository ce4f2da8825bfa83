"""A sandbox's state on this machine: its ``state.json``, ``secrets.env`` and the inventory.

What ``bgdeploy sandbox up`` leaves in ``$BGDEPLOY_STATE_DIR/sandboxes/NAME/`` (default
``~/.local/state/bgdeploy``), read and written without Docker: the hosts with their groups,
published ports and private addresses (:class:`SandboxState`), the secrets the sandbox generated
for itself, and the pyinfra inventory groups built from them (``inventories/sandbox.py``,
``group_data/sandbox.py``). The containers themselves are :mod:`bgdeploy.sandbox.containers`.

pyinfra loads every ``group_data/*.py`` for any inventory, so ``group_data/sandbox.py`` imports
this package on an operator's machine too: the package imports without the ``sandbox`` extra
(Docker SDK, python-dotenv, prometheus-client are imported where they are used).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bgdeploy.core.errors import ConfigError
from bgdeploy.core.files import write_atomic
from bgdeploy.core.settings import SECRET_VARIABLES
from bgdeploy.core.settings import state_root as settings_state_root

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}\Z")


@dataclass
class SandboxHost:
    """One container of a sandbox, as the inventory and the tests see it."""

    name: str
    container: str
    groups: list[str]
    ports: dict[str, int]
    private_ip: str = ""


@dataclass
class SandboxState:
    """What ``up`` created; saved as ``state.json``."""

    name: str
    network: str
    image: str
    directory: str
    hosts: list[SandboxHost] = field(default_factory=list)
    releases: dict[str, str] = field(default_factory=dict)
    created: float = 0.0
    monitoring: dict[str, Any] = field(default_factory=dict)
    """The Prometheus container when started with monitoring: ``{"container", "image",
    "ports": {"prometheus"}, "url", "config_dir"}``; empty without."""
    repository: bool = True
    """Whether the web hosts can reach the sample app's repository (``app.git`` mounted
    read-only at :data:`~bgdeploy.sandbox.containers.CONTAINER_REPOSITORY`). False
    (``up --no-repository``): nothing to fetch from, the operator pushes the code."""

    @property
    def key_file(self) -> str:
        return str(Path(self.directory) / "id_ed25519")

    @property
    def known_hosts(self) -> str:
        return str(Path(self.directory) / "known_hosts")

    @property
    def app_repository(self) -> str:
        """The sample app's bare repository on this machine (tests add commits to it)."""
        return str(Path(self.directory) / "app.git")

    @property
    def prometheus_url(self) -> str | None:
        """The sandbox's Prometheus (``http://127.0.0.1:PORT``), or None without monitoring."""
        return self.monitoring.get("url") or None

    def group(self, name: str) -> list[SandboxHost]:
        return [host for host in self.hosts if name in host.groups]

    def host(self, host_name: str) -> SandboxHost:
        """One host by name (an unknown name is an error naming the sandbox's hosts)."""
        for host in self.hosts:
            if host.name == host_name:
                return host
        names = ", ".join(h.name for h in self.hosts)
        raise ConfigError(f"sandbox {self.name} has no host {host_name!r} (it has {names})")


def state_root() -> Path:
    """Where sandboxes keep their files: ``$BGDEPLOY_STATE_DIR`` or ``~/.local/state/bgdeploy``
    (:func:`bgdeploy.core.settings.state_root`)."""
    return settings_state_root()


def check_name(name: str) -> str:
    """Refuse sandbox names that could not name a container, a network or a directory."""
    if not NAME_PATTERN.match(name or ""):
        raise ConfigError(
            f"sandbox name {name!r} is not valid: use 1 to 31 lower-case letters, digits "
            "and dashes, starting with a letter"
        )
    return name


def sandbox_dir(name: str) -> Path:
    return state_root() / "sandboxes" / check_name(name)


def current_name() -> str:
    """The sandbox the inventory reads: ``BGDEPLOY_SANDBOX``, default ``default``."""
    return check_name(os.environ.get("BGDEPLOY_SANDBOX", "default"))


def staging_name() -> str:
    """The sandbox ``inventories/sandbox_staging.py`` reads (a second sandbox standing in for
    staging): ``BGDEPLOY_STAGING_SANDBOX``, default the sandbox's name + ``-staging``."""
    return check_name(os.environ.get("BGDEPLOY_STAGING_SANDBOX") or current_name() + "-staging")


def load_state(name: str) -> SandboxState:
    """Read a sandbox's ``state.json``; a clear error when it is not up."""
    path = sandbox_dir(name) / "state.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"sandbox {name!r} is not up (no {path}): run `bgdeploy sandbox up --name {name}`"
        ) from None
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"{path} is not valid JSON ({error}): run `bgdeploy sandbox down --name {name}`"
        ) from None
    hosts = [SandboxHost(**host) for host in raw.pop("hosts", [])]
    return SandboxState(hosts=hosts, **raw)


def load_secrets(name: str) -> dict[str, str]:
    """The secrets a sandbox generated for itself (``secrets.env``)."""
    import dotenv  # the sandbox extra: pyinfra loads group_data/sandbox.py for every inventory

    with (sandbox_dir(name) / "secrets.env").open() as stream:
        values = dotenv.dotenv_values(stream=stream, interpolate=False)
    return {key: value for key, value in values.items() if value is not None}


def save_state(state: SandboxState) -> None:
    """Write ``state.json`` atomically: the inventory and other commands read it any time."""
    path = Path(state.directory) / "state.json"
    write_atomic(path, json.dumps(asdict(state), indent=2) + "\n")


def inventory_hosts(name: str | None = None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Inventory groups for pyinfra: ``{"web": [(name, data)], "db": [...]}``.

    Every host is reached on 127.0.0.1 through its published SSH port, with the sandbox's key
    and known_hosts file and strict host-key checking.
    """
    state = load_state(name or current_name())
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {"web": [], "db": []}
    for host in state.hosts:
        data = {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": host.ports["ssh"],
            "ssh_user": "deploy",
            "ssh_key": state.key_file,
            "ssh_known_hosts_file": state.known_hosts,
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
            "private_ip": host.private_ip,
            "http_port": host.ports.get("http"),
            # Not preview_port: that is the port nginx listens on inside the container.
            "preview_http_port": host.ports.get("preview"),
        }
        for group in host.groups:
            groups.setdefault(group, []).append((host.name, data))
    return groups


def export_secrets(name: str, environ: dict[str, str] | None = None) -> None:
    """Put a sandbox's secrets into the BGDEPLOY_* variables that are not set already."""
    env = os.environ if environ is None else environ
    values = load_secrets(name)
    for secret, variable in SECRET_VARIABLES.items():
        if not env.get(variable) and values.get(secret):
            env[variable] = values[secret]
