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
  containers at ``/srv/sandbox/app.git`` as their ``repository``.

``up --monitoring`` (``monitoring=True``) also starts Prometheus on the sandbox network
(:mod:`bgdeploy.sandbox.monitoring`), scraping every web host's ``/metrics`` and loading the
runbook's
alert rules; its API is published on 127.0.0.1 and recorded in ``state.json`` under
``monitoring`` (``SandboxState.prometheus_url``). Running ``up --monitoring`` on a sandbox that is
already up without it adds it.

``down`` removes the containers, the network and that directory, and nothing else. Sandboxes
with different names run side by side.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.files import write_atomic
from bgdeploy.fleet import sshkeys
from bgdeploy.sandbox import image, sampleapp

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,30}\Z")
LABEL = "io.bgdeploy.sandbox"
CONTAINER_REPOSITORY = "/srv/sandbox/app.git"
WEB_SERVICES = "php8.2-fpm nginx supervisor cron"
DB_SERVICES = "postgresql redis-server"
SECRET_NAMES = ("APP_KEY", "DB_PASSWORD", "REDIS_PASSWORD", "API_TOKEN")
READY_TIMEOUT = 90.0

BACKUPS_DIR = "/var/backups/bideshgomon"
BACKUPS_TMPFS = "size=64m"
"""The db host's snapshot directory (group_data's ``backups_dir``): a 64 MiB tmpfs."""
MAX_WEB = 16


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


def state_root() -> Path:
    """Where sandboxes keep their files: ``$BGDEPLOY_STATE_DIR`` or ``~/.local/state/bgdeploy``."""
    root = os.environ.get("BGDEPLOY_STATE_DIR")
    return Path(root) if root else Path.home() / ".local" / "state" / "bgdeploy"


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
    values: dict[str, str] = {}
    path = sandbox_dir(name) / "secrets.env"
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def docker_client() -> Any:
    """A Docker client, or a clear error when the engine cannot be reached."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as error:
        raise OperationFailed(
            f"Docker is not reachable ({error}). Start the Docker engine, or point DOCKER_HOST "
            "at it; the sandbox and the integration tests need it."
        ) from None
    return client


def _generate_secrets() -> dict[str, str]:
    return {
        "APP_KEY": "base64:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "DB_PASSWORD": secrets.token_urlsafe(24),
        "REDIS_PASSWORD": secrets.token_urlsafe(24),
        "API_TOKEN": secrets.token_urlsafe(32),
    }


def published_port(container: Any, port: str) -> int:
    """The 127.0.0.1 port that Docker published for a container's ``port`` (``80/tcp``)."""
    bindings = container.attrs["NetworkSettings"]["Ports"].get(port) or []
    for binding in bindings:
        if binding.get("HostIp") in ("127.0.0.1", ""):
            return int(binding["HostPort"])
    raise OperationFailed(f"container {container.name}: port {port} was not published")


def _host_keys(container: Any) -> list[str]:
    code, output = container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"], demux=False)
    keys = [line for line in output.decode().splitlines() if line.startswith(("ssh-", "ecdsa-"))]
    if code != 0 or not keys:
        raise OperationFailed(f"container {container.name}: could not read its SSH host keys")
    return keys


def _start_container(
    client: Any, state: SandboxState, host_name: str, groups: list[str], public_key: str
) -> Any:
    ports: dict[str, Any] = {"22/tcp": ("127.0.0.1", None)}
    volumes: dict[str, Any] = {}
    services = " ".join(
        ([DB_SERVICES] if "db" in groups else []) + ([WEB_SERVICES] if "web" in groups else [])
    )
    if "web" in groups:
        ports["80/tcp"] = ("127.0.0.1", None)
        ports["8080/tcp"] = ("127.0.0.1", None)
        volumes[state.app_repository] = {"bind": CONTAINER_REPOSITORY, "mode": "ro"}
    return client.containers.run(
        state.image,
        name=f"bgdeploy-{state.name}-{host_name}",
        hostname=host_name,
        detach=True,
        init=True,
        network=state.network,
        ports=ports,
        volumes=volumes,
        environment={"AUTHORIZED_KEY": public_key, "BGDEPLOY_SERVICES": services},
        # Without it root cannot read /proc/PID/exe of another user's process, so the init
        # scripts' start-stop-daemon --exec never finds redis-server (it runs as redis) and
        # `service redis-server stop|restart` silently does nothing.
        cap_add=["SYS_PTRACE"],
        # The db host's snapshots live on a small filesystem of their own, which can fill up
        # (a fault the deploy must refuse before migrating) without filling this machine's.
        tmpfs={BACKUPS_DIR: BACKUPS_TMPFS} if "db" in groups else {},
        labels={LABEL: state.name, f"{LABEL}.host": host_name},
    )


def up(
    name: str = "default",
    web: int = 2,
    progress: Progress = quiet,
    client: Any = None,
    single: bool = False,
    monitoring: bool = False,
) -> SandboxState:
    """Start a sandbox (or report the one already running under that name).

    ``single=True`` starts a single-server install instead: one host ``web1`` in both the
    ``web`` and ``db`` groups, running every service (``web`` must then be 1).
    ``monitoring=True`` also starts Prometheus (added to a running sandbox that lacks it).
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
            pool.map(lambda r: _start_container(client, state, r[0], r[1], public_key), roles)
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
            sshkeys.known_hosts_line("127.0.0.1", ports["ssh"], k) for k in _host_keys(container)
        ]
        address = container.attrs["NetworkSettings"]["Networks"][state.network]["IPAddress"]
        state.hosts.append(SandboxHost(host_name, container.name, groups, ports, address))
        progress(f"{host_name}: ssh 127.0.0.1:{ports['ssh']} ready")
    write_atomic(directory / "known_hosts", "\n".join(known) + "\n", mode=0o644)
    _save(state)


def _save(state: SandboxState) -> None:
    """Write ``state.json`` atomically: the inventory and other commands read it any time."""
    path = Path(state.directory) / "state.json"
    write_atomic(path, json.dumps(asdict(state), indent=2) + "\n")


def _add_monitoring(client: Any, state: SandboxState, progress: Progress) -> None:
    from bgdeploy.sandbox import monitoring  # lazily: the inventory imports this module

    state.monitoring = monitoring.start(client, state, progress)
    _save(state)


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


def _host(state: SandboxState, host_name: str) -> SandboxHost:
    """One host of a sandbox by name (an unknown name is an error naming the sandbox's)."""
    for host in state.hosts:
        if host.name == host_name:
            return host
    names = ", ".join(h.name for h in state.hosts)
    raise ConfigError(f"sandbox {state.name} has no host {host_name!r} (it has {names})")


def start_host(name: str, host_name: str, client: Any = None) -> SandboxState:
    """Start a stopped host of a sandbox again (its services start with the container) and
    wait for its sshd. Docker publishes it on new ports: the state file and ``known_hosts``
    are updated (same host keys), so the inventory reaches it. Returns the new state."""
    state = load_state(name)
    host = _host(state, host_name)
    container = (client or docker_client()).containers.get(host.container)
    container.start()
    deadline = time.monotonic() + 60
    _republish(state, host, container, deadline)
    # A service whose pid file (left by the stop) names a process of this boot may not have
    # started: start what is not running. And sshd starts last, but supervisord and
    # PostgreSQL answer a moment after their start.
    again = 'for s in $BGDEPLOY_SERVICES; do service "$s" status || service "$s" start; done'
    container.exec_run(["sh", "-c", again + " >/dev/null 2>&1"], user="root")
    probe = ["supervisorctl", "pid"] if "web" in host.groups else ["pg_isready", "-q"]
    while container.exec_run(probe, user="root")[0] != 0:
        if time.monotonic() > deadline:
            raise OperationFailed(f"{host_name}: {probe[0]} did not answer after the start")
        time.sleep(0.2)
    return state


def disconnect_host(name: str, host_name: str, client: Any = None) -> None:
    """Cut a running host of a sandbox off: from the sandbox network and so from its published
    ports (nothing reaches it, it reaches nothing; its processes go on). For fault tests;
    :func:`reconnect_host` undoes it."""
    state = load_state(name)
    host = _host(state, host_name)
    client = client or docker_client()
    client.networks.get(state.network).disconnect(host.container)


def reconnect_host(name: str, host_name: str, client: Any = None) -> SandboxState:
    """Connect a host cut off by :func:`disconnect_host` again and wait for its sshd. Docker
    publishes it on new ports: the state file and ``known_hosts`` are updated, as
    :func:`start_host` does. Returns the new state. Docker may give it another private address
    (seen: the same one when no container joined in between); pg_hba trusts the provisioned
    one until ``bgdeploy provision`` runs again."""
    state = load_state(name)
    host = _host(state, host_name)
    client = client or docker_client()
    client.networks.get(state.network).connect(host.container)
    _republish(state, host, client.containers.get(host.container), time.monotonic() + 60)
    return state


def _republish(state: SandboxState, host: SandboxHost, container: Any, deadline: float) -> None:
    """After a host's container started or joined the network again: its new published ports
    and private address saved, ``known_hosts`` updated (same host keys), its sshd awaited."""
    container.reload()
    old = dict(host.ports)
    published = {"ssh": "22/tcp", "http": "80/tcp", "preview": "8080/tcp"}
    host.ports = {key: published_port(container, published[key]) for key in old}
    host.private_ip = container.attrs["NetworkSettings"]["Networks"][state.network]["IPAddress"]
    if not sshkeys.wait_for_banner("127.0.0.1", host.ports["ssh"], deadline):
        raise OperationFailed(f"{host.name}: sshd did not answer")
    stale = f"[127.0.0.1]:{old['ssh']} "
    known = [
        line
        for line in Path(state.known_hosts).read_text().splitlines()
        if not line.startswith(stale)
    ]
    known += [
        sshkeys.known_hosts_line("127.0.0.1", host.ports["ssh"], key)
        for key in _host_keys(container)
    ]
    write_atomic(state.known_hosts, "\n".join(known) + "\n")
    _save(state)


def status(name: str = "default", client: Any = None) -> dict[str, Any]:
    """Each host of a sandbox with its ports, container state and whether SSH answers.

    The shape is stable, other tools read it: ``{"name", "hosts": [{"name", "groups",
    "ports": {"ssh", "http", "preview"}, "ready", "container", "running"}]}``.
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
    report: dict[str, Any] = {"name": state.name, "hosts": hosts, "releases": state.releases}
    if state.monitoring:
        report["monitoring"] = _monitoring_status(client, state)
    return report


def _monitoring_status(client: Any, state: SandboxState) -> dict[str, Any]:
    """The Prometheus container: ``{"container", "running", "url", "ready", "targets"}``;
    ``targets`` maps each web host to ``up``/``down``/``unknown`` as Prometheus sees it."""
    import docker.errors

    from bgdeploy.sandbox import monitoring

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


def ssh_client(state: SandboxState, host: str) -> Any:
    """A plain paramiko client to one sandbox host as ``deploy``, with strict host keys (the
    tests' and benchmarks' direct line; bgdeploy's own commands go through pyinfra or Fabric)."""
    import paramiko

    target = _host(state, host)
    client = paramiko.SSHClient()
    client.load_host_keys(state.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        port=target.ports["ssh"],
        username="deploy",
        key_filename=state.key_file,
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


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
    from bgdeploy.core.settings import SECRET_VARIABLES

    env = os.environ if environ is None else environ
    values = load_secrets(name)
    for secret, variable in SECRET_VARIABLES.items():
        if not env.get(variable) and values.get(secret):
            env[variable] = values[secret]
