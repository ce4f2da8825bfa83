"""The sandbox fleet: real SSH with strict host keys, status, and a clean teardown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bgdeploy import sandbox
from bgdeploy.fleet import sshkeys

from .conftest import run, unique_name


def sandbox_env(state: sandbox.SandboxState) -> dict[str, str]:
    return {"BGDEPLOY_SANDBOX": state.name}


def test_pyinfra_reaches_every_host_with_strict_host_keys(fleet: sandbox.SandboxState) -> None:
    proc = run(
        [
            "pyinfra",
            "-y",
            "inventories/sandbox.py",
            "exec",
            "--",
            "php -v && nginx -v && psql --version",
        ],
        env=sandbox_env(fleet),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    for host in ("web1", "web2", "db"):
        assert f"[{host}]" in output
    assert "PHP 8.2" in output and "nginx/1.22" in output and "psql (PostgreSQL) 15" in output


def test_changed_host_key_is_refused(fleet: sandbox.SandboxState, tmp_path: Path) -> None:
    other = sshkeys.generate_keypair(tmp_path / "other", "impostor")
    web1 = next(h for h in fleet.hosts if h.name == "web1")
    lines = Path(fleet.known_hosts).read_text().splitlines()
    prefix = f"[127.0.0.1]:{web1.ports['ssh']} "
    changed = [
        sshkeys.known_hosts_line("127.0.0.1", web1.ports["ssh"], other)
        if line.startswith(prefix)
        else line
        for line in lines
    ]
    tampered = tmp_path / "known_hosts"
    tampered.write_text("\n".join(dict.fromkeys(changed)) + "\n")
    proc = run(
        ["pyinfra", "-y", "inventories/sandbox.py", "--limit", "web1",
         "--data", f"ssh_known_hosts_file={tampered}", "exec", "--", "touch /tmp/should-not-exist"],
        env=sandbox_env(fleet),
    )  # fmt: skip
    assert proc.returncode != 0
    assert "web1" in proc.stdout + proc.stderr
    assert "host key" in (proc.stdout + proc.stderr).lower()


def test_unknown_host_is_refused(fleet: sandbox.SandboxState, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    proc = run(
        ["pyinfra", "-y", "inventories/sandbox.py", "--limit", "web2",
         "--data", f"ssh_known_hosts_file={empty}", "exec", "--", "true"],
        env=sandbox_env(fleet),
    )  # fmt: skip
    assert proc.returncode != 0
    assert empty.read_text() == "", "pyinfra must not add unknown keys"


def test_status_json_shape(fleet: sandbox.SandboxState) -> None:
    proc = run(["bgdeploy", "sandbox", "status", "--name", fleet.name, "--json"], check=True)
    report = json.loads(proc.stdout)
    assert report["name"] == fleet.name
    names = [h["name"] for h in report["hosts"]]
    assert names == ["web1", "web2", "db"]
    for host in report["hosts"]:
        assert host["ready"] is True
        ports = host["ports"]
        if host["groups"] == ["web"]:
            assert set(ports) == {"ssh", "http", "preview"}
        else:
            assert host["groups"] == ["db"] and set(ports) == {"ssh"}


def test_ports_are_published_on_loopback_only(
    fleet: sandbox.SandboxState, docker_client: Any
) -> None:
    for host in fleet.hosts:
        container = docker_client.containers.get(host.container)
        for bindings in container.attrs["NetworkSettings"]["Ports"].values():
            for binding in bindings or []:
                assert binding["HostIp"] == "127.0.0.1"


def test_second_sandbox_runs_beside_and_down_leaves_nothing(
    fleet: sandbox.SandboxState, docker_client: Any
) -> None:
    name = unique_name("t2")
    proc = run(["bgdeploy", "sandbox", "up", "--name", name, "--web", "1"])
    assert proc.returncode == 0, proc.stderr
    label = f"{sandbox.LABEL}={name}"
    assert len(docker_client.containers.list(filters={"label": label})) == 2
    status = run(["bgdeploy", "sandbox", "status", "--name", name])
    assert status.returncode == 0 and "web1" in status.stdout
    # The session fleet is untouched by the second sandbox.
    assert all(h["ready"] for h in sandbox.status(fleet.name)["hosts"])

    proc = run(["bgdeploy", "sandbox", "down", "--name", name])
    assert proc.returncode == 0, proc.stderr
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []
    assert docker_client.volumes.list(filters={"label": label}) == []
    assert not sandbox.sandbox_dir(name).exists()
    assert all(h["ready"] for h in sandbox.status(fleet.name)["hosts"])


def test_status_of_missing_sandbox_is_a_usage_error(state_dir: Path) -> None:
    proc = run(["bgdeploy", "sandbox", "status", "--name", "nothing-here"])
    assert proc.returncode == 2
    assert "bgdeploy sandbox up --name nothing-here" in proc.stderr


def test_docker_unreachable_is_a_clear_message(state_dir: Path) -> None:
    proc = run(
        ["bgdeploy", "sandbox", "up", "--name", "nodocker"],
        env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    )
    assert proc.returncode == 1
    assert "Docker is not reachable" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_build_makes_every_image_a_sandbox_uses_and_starts_nothing(
    fleet: sandbox.SandboxState, docker_client: Any
) -> None:
    sandboxes = sandbox.sandbox_dir(fleet.name).parent
    before = sorted(sandboxes.iterdir())
    proc = run(["bgdeploy", "sandbox", "build", "--init", "initd", "--init", "systemd",
                "--monitoring"])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    initd = sandbox.image.image_tag()
    expected = [
        initd,
        sandbox.image.image_tag(init="systemd"),
        sandbox.monitoring.image_tag(initd),
    ]
    assert proc.stdout.split() == [word for tag in expected for word in ("image", tag)]
    assert all(docker_client.images.get(tag) for tag in expected)
    assert fleet.image == initd  # the tag the tests' fleet was started from
    assert sorted(sandboxes.iterdir()) == before  # no sandbox started
    bad = run(["bgdeploy", "sandbox", "build", "--init", "upstart"])
    assert bad.returncode == 2 and "upstart" in bad.stderr
