"""The sandbox: a local fleet of Debian containers that stands in for the servers.

``bgdeploy sandbox up`` starts N web containers and one db container from the target image
(:mod:`bgdeploy.sandbox.image`) on a private Docker network of their own. Each container's SSH port,
public HTTP port and preview HTTP port are published on 127.0.0.1 only, on free ports. The
containers get fresh host keys when they start; their real keys are read back into a
known_hosts file, so pyinfra and Fabric connect with strict host-key checking, exactly as they
do in production.

Everything a sandbox owns sits in its state directory,
``$BGDEPLOY_STATE_DIR/sandboxes/NAME/`` (default ``~/.local/state/bgdeploy``):

- ``state.json``: the hosts, their groups, ports and private addresses (read by
  ``inventories/sandbox.py``; the sandbox is named by ``BGDEPLOY_SANDBOX``, default ``default``);
- ``id_ed25519`` (0600) and ``known_hosts``: how to reach the containers;
- ``secrets.env`` (0600): the sandbox's own APP_KEY, database, Redis and API passwords;
- ``app.git``: the sample app's repository (tags v1, v2), mounted read-only into the web
  containers at ``/srv/sandbox/app.git`` as their ``repository``. ``up --no-repository``
  (``repository=False``) mounts nothing: the web hosts cannot reach any repository, and
  ``group_data/sandbox.py`` sets ``code_delivery = "push"`` with this machine's ``app.git``
  as ``repository`` (:mod:`bgdeploy.fleet.delivery`).

``up --monitoring`` (``monitoring=True``) also starts Prometheus on the sandbox network
(:mod:`bgdeploy.sandbox.monitoring`), scraping every web host's ``/metrics`` and loading the
runbook's
alert rules; its API is published on 127.0.0.1 and recorded in ``state.json`` under
``monitoring`` (``SandboxState.prometheus_url``). Running ``up --monitoring`` on a sandbox that is
already up without it adds it.

The package in modules: :mod:`~bgdeploy.sandbox.state` (the state directory, read without
Docker: what the inventory needs), :mod:`~bgdeploy.sandbox.containers` (Docker, ports, host keys,
one host stopped or cut off and back), :mod:`~bgdeploy.sandbox.image` (the target image),
:mod:`~bgdeploy.sandbox.sampleapp` (the sample app's repository) and
:mod:`~bgdeploy.sandbox.monitoring` (Prometheus); this module starts, removes and reports a
whole sandbox, and re-exports the names the inventory, group_data and tests use.

``down`` removes the containers, the network and that directory, and nothing else. Sandboxes
with different names run side by side.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.files import write_atomic
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.fleet import sshkeys
from bgdeploy.sandbox import image, monitoring, sampleapp
from bgdeploy.sandbox.containers import (
    BACKUPS_DIR,
    BACKUPS_TMPFS,
    CONTAINER_REPOSITORY,
    DB_SERVICES,
    LABEL,
    READY_TIMEOUT,
    WEB_SERVICES,
    disconnect_host,
    docker_client,
    host_keys,
    published_port,
    reconnect_host,
    ssh_client,
    start_container,
    start_host,
)
from bgdeploy.sandbox.state import (
    NAME_PATTERN,
    SandboxHost,
    SandboxState,
    check_name,
    current_name,
    export_secrets,
    inventory_hosts,
    load_secrets,
    load_state,
    sandbox_dir,
    save_state,
    staging_name,
    state_root,
)

__all__ = [
    "BACKUPS_DIR",
    "BACKUPS_TMPFS",
    "CONTAINER_REPOSITORY",
    "DB_SERVICES",
    "LABEL",
    "MAX_WEB",
    "NAME_PATTERN",
    "READY_TIMEOUT",
    "SECRET_NAMES",
    "WEB_SERVICES",
    "SandboxHost",
    "SandboxState",
    "check_name",
    "current_name",
    "disconnect_host",
    "docker_client",
    "down",
    "export_secrets",
    "inventory_hosts",
    "load_secrets",
    "load_state",
    "probe_health",
    "published_port",
    "reconnect_host",
    "sandbox_dir",
    "save_state",
    "ssh_client",
    "staging_name",
    "start_host",
    "state_root",
    "status",
    "up",
]

SECRET_NAMES = ("APP_KEY", "DB_PASSWORD", "REDIS_PASSWORD", "API_TOKEN")
MAX_WEB = 16

_save = save_state
"""Kept for ``tests/unit/test_files.py``, which calls it; new code calls :func:`save_state`."""


def _generate_secrets() -> dict[str, str]:
    return {
        "APP_KEY": "base64:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "DB_PASSWORD": secrets.token_urlsafe(24),
        "REDIS_PASSWORD": secrets.token_urlsafe(24),
        "API_TOKEN": secrets.token_urlsafe(32),
    }


def up(
    name: str = "default",
    web: int = 2,
    progress: Progress = quiet,
    client: Any = None,
    single: bool = False,
    monitoring: bool = False,
    repository: bool = True,
) -> SandboxState:
    """Start a sandbox (or report the one already running under that name).

    ``single=True`` starts a single-server install instead: one host ``web1`` in both the
    ``web`` and ``db`` groups, running every service (``web`` must then be 1).
    ``monitoring=True`` also starts Prometheus (added to a running sandbox that lacks it).
    ``repository=False`` mounts no repository into the web hosts (see the module).
    """
    if single and web != 1:
        raise ConfigError(f"a single-server sandbox has exactly one web host, not {web}")
    check_name(name)
    if not 1 <= web <= MAX_WEB:
        raise ConfigError(f"--web must be between 1 and {MAX_WEB}, not {web}")
    directory = sandbox_dir(name)
    if (directory / "state.json").exists():
        existing = load_state(name)
        if len(existing.group("web")) != web:
            raise ConfigError(
                f"sandbox {name!r} is already up with {len(existing.group('web'))} web hosts: "
                f"run `bgdeploy sandbox down --name {name}` first"
            )
        if existing.repository != repository:
            mounted = "with" if existing.repository else "without"
            raise ConfigError(
                f"sandbox {name!r} is already up {mounted} the repository mounted: "
                f"run `bgdeploy sandbox down --name {name}` first"
            )
        if monitoring and not existing.monitoring:
            _add_monitoring(client or docker_client(), existing, progress)
        return existing
    client = client or docker_client()
    if client.containers.list(all=True, filters={"label": f"{LABEL}={name}"}):
        raise ConfigError(
            f"containers of sandbox {name!r} exist without its state directory: "
            f"run `bgdeploy sandbox down --name {name}` to remove them"
        )
    started = time.monotonic()
    tag = image.ensure_image(client, progress)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    state = SandboxState(
        name=name,
        network=f"bgdeploy-{name}",
        image=tag,
        directory=str(directory),
        created=time.time(),
        repository=repository,
    )
    try:
        _create(client, state, web, progress, single)
        if monitoring:
            _add_monitoring(client, state, progress)
    except BaseException:
        progress("start failed: removing what was created")
        down(name, client=client)
        raise
    progress(f"sandbox {name} ready in {time.monotonic() - started:.1f} s")
    return state


def _create(
    client: Any, state: SandboxState, web: int, progress: Progress, single: bool = False
) -> None:
    directory = Path(state.directory)
    public_key = sshkeys.generate_keypair(
        directory / "id_ed25519", f"bgdeploy-sandbox-{state.name}"
    )
    sshkeys.write_private(
        directory / "secrets.env",
        "".join(f"{k}={v}\n" for k, v in _generate_secrets().items()).encode(),
    )
    progress("building the sample app repository (tags v1, v2)")
    state.releases = sampleapp.build_repository(Path(state.app_repository))
    client.networks.create(state.network, driver="bridge", labels={LABEL: state.name})
    roles = [(f"web{i}", ["web"]) for i in range(1, web + 1)] + [("db", ["db"])]
    if single:
        roles = [("web1", ["web", "db"])]
    progress(f"starting {len(roles)} containers on network {state.network}")
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        containers = list(
            pool.map(lambda r: start_container(client, state, r[0], r[1], public_key), roles)
        )
    deadline = time.monotonic() + READY_TIMEOUT
    known: list[str] = []
    for (host_name, groups), container in zip(roles, containers, strict=True):
        container.reload()
        ports = {"ssh": published_port(container, "22/tcp")}
        if "web" in groups:
            ports["http"] = published_port(container, "80/tcp")
            ports["preview"] = published_port(container, "8080/tcp")
        if not sshkeys.wait_for_banner("127.0.0.1", ports["ssh"], deadline):
            logs = container.logs(tail=20).decode(errors="replace")
            raise OperationFailed(f"{host_name}: sshd did not answer in time\n{logs}")
        known += [
            sshkeys.known_hosts_line("127.0.0.1", ports["ssh"], k) for k in host_keys(container)
        ]
        address = container.attrs["NetworkSettings"]["Networks"][state.network]["IPAddress"]
        state.hosts.append(SandboxHost(host_name, container.name, groups, ports, address))
        progress(f"{host_name}: ssh 127.0.0.1:{ports['ssh']} ready")
    write_atomic(directory / "known_hosts", "\n".join(known) + "\n", mode=0o644)
    save_state(state)


def _add_monitoring(client: Any, state: SandboxState, progress: Progress) -> None:
    state.monitoring = monitoring.start(client, state, progress)
    save_state(state)


def down(name: str = "default", client: Any = None) -> list[str]:
    """Remove a sandbox's containers, network and state directory; returns what was removed."""
    check_name(name)
    client = client or docker_client()
    removed: list[str] = []
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}={name}"}):
        container.remove(force=True, v=True)
        removed.append(f"container {container.name}")
    for network in client.networks.list(filters={"label": f"{LABEL}={name}"}):
        network.remove()
        removed.append(f"network {network.name}")
    directory = sandbox_dir(name)
    if directory.exists():
        shutil.rmtree(directory)
        removed.append(f"directory {directory}")
    return removed


def status(name: str = "default", client: Any = None) -> dict[str, Any]:
    """Each host of a sandbox with its ports, container state and whether SSH answers.

    The shape is stable, other tools read it: ``{"name", "hosts": [{"name", "groups",
    "ports": {"ssh", "http", "preview"}, "ready", "container", "running"}], "releases",
    "repository"}`` (``repository``: where the web hosts fetch from, None without one).
    """
    state = load_state(name)
    client = client or docker_client()
    import docker.errors

    hosts = []
    for host in state.hosts:
        try:
            running = client.containers.get(host.container).status == "running"
        except docker.errors.NotFound:
            running = False
        ready = running and sshkeys.ssh_banner("127.0.0.1", host.ports["ssh"])
        entry: dict[str, Any] = {
            "name": host.name,
            "groups": host.groups,
            "ports": host.ports,
            "ready": ready,
            "container": host.container,
            "running": running,
        }
        if "http" in host.ports:
            entry["url"] = f"http://127.0.0.1:{host.ports['http']}/"
            entry["health"] = probe_health(entry["url"]) if running else "down"
        hosts.append(entry)
    report: dict[str, Any] = {
        "name": state.name,
        "hosts": hosts,
        "releases": state.releases,
        "repository": CONTAINER_REPOSITORY if state.repository else None,
    }
    if state.monitoring:
        report["monitoring"] = _monitoring_status(client, state)
    return report


def _monitoring_status(client: Any, state: SandboxState) -> dict[str, Any]:
    """The Prometheus container: ``{"container", "running", "url", "ready", "targets"}``;
    ``targets`` maps each web host to ``up``/``down``/``unknown`` as Prometheus sees it."""
    import docker.errors

    record = state.monitoring
    try:
        running = client.containers.get(record["container"]).status == "running"
    except docker.errors.NotFound:
        running = False
    ready = running and monitoring.ready(record["url"])
    entry: dict[str, Any] = {
        "container": record["container"],
        "running": running,
        "url": record["url"],
        "ready": ready,
        "targets": {},
    }
    if ready:
        try:
            entry["targets"] = monitoring.targets_health(record["url"])
        except OperationFailed:
            entry["ready"] = False
    return entry


def probe_health(base_url: str, path: str = "api/health") -> str:
    """One look at a web host's health endpoint: ``healthy``, ``unhealthy (503)``, ...

    The sandbox status shows it; deploys verify health their own way, with retries.
    """
    import httpx

    try:
        response = httpx.get(base_url + path, timeout=5)
    except httpx.HTTPError as error:
        return f"unreachable ({type(error).__name__})"
    try:
        body = response.json()
    except ValueError:
        body = {}
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code == 200 and status == "healthy":
        return "healthy"
    return f"{status or 'no app'} (HTTP {response.status_code})"
