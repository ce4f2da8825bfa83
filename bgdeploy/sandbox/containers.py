"""The sandbox's containers: Docker, their ports and host keys, and stopping, cutting off and
starting one host again (for fault tests).

Every container of a sandbox carries the label :data:`LABEL` (its value the sandbox's name), so
``down`` finds all of them. Ports are published on 127.0.0.1 only; when Docker publishes a host
again on new ports, the state file and ``known_hosts`` follow (:func:`start_host`,
:func:`reconnect_host`). The Docker SDK is imported where it is used: it is the ``sandbox``
extra, and an operator's machine needs none.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bgdeploy.core.errors import OperationFailed
from bgdeploy.core.files import write_atomic
from bgdeploy.fleet import sshkeys
from bgdeploy.sandbox.state import SandboxHost, SandboxState, load_state, save_state

LABEL = "io.bgdeploy.sandbox"
CONTAINER_REPOSITORY = "/srv/sandbox/app.git"
WEB_SERVICES = "php8.2-fpm nginx supervisor cron"
DB_SERVICES = "postgresql redis-server"
READY_TIMEOUT = 90.0

BACKUPS_DIR = "/var/backups/bideshgomon"
BACKUPS_TMPFS = "size=64m"
"""The db host's snapshot directory (group_data's ``backups_dir``): a 64 MiB tmpfs."""


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


def published_port(container: Any, port: str) -> int:
    """The 127.0.0.1 port that Docker published for a container's ``port`` (``80/tcp``)."""
    bindings = container.attrs["NetworkSettings"]["Ports"].get(port) or []
    for binding in bindings:
        if binding.get("HostIp") in ("127.0.0.1", ""):
            return int(binding["HostPort"])
    raise OperationFailed(f"container {container.name}: port {port} was not published")


def host_keys(container: Any) -> list[str]:
    code, output = container.exec_run(["sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"], demux=False)
    keys = [line for line in output.decode().splitlines() if line.startswith(("ssh-", "ecdsa-"))]
    if code != 0 or not keys:
        raise OperationFailed(f"container {container.name}: could not read its SSH host keys")
    return keys


def start_container(
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
        if state.repository:  # else (--no-repository) the host has nothing to fetch from
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


def start_host(name: str, host_name: str, client: Any = None) -> SandboxState:
    """Start a stopped host of a sandbox again (its services start with the container) and
    wait for its sshd. Docker publishes it on new ports: the state file and ``known_hosts``
    are updated (same host keys), so the inventory reaches it. Returns the new state."""
    state = load_state(name)
    host = state.host(host_name)
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
    host = state.host(host_name)
    client = client or docker_client()
    client.networks.get(state.network).disconnect(host.container)


def reconnect_host(name: str, host_name: str, client: Any = None) -> SandboxState:
    """Connect a host cut off by :func:`disconnect_host` again and wait for its sshd. Docker
    publishes it on new ports: the state file and ``known_hosts`` are updated, as
    :func:`start_host` does. Returns the new state. Docker may give it another private address
    (seen: the same one when no container joined in between); pg_hba trusts the provisioned
    one until ``bgdeploy provision`` runs again."""
    state = load_state(name)
    host = state.host(host_name)
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
        for key in host_keys(container)
    ]
    write_atomic(state.known_hosts, "\n".join(known) + "\n")
    save_state(state)


def ssh_client(state: SandboxState, host: str) -> Any:
    """A plain paramiko client to one sandbox host as ``deploy``, with strict host keys (the
    tests' and benchmarks' direct line; bgdeploy's own commands go through pyinfra or Fabric)."""
    import paramiko

    target = state.host(host)
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
