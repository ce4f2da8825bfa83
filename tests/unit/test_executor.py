"""The one executor (:mod:`bgdeploy.fleet.executor`) and its two backends: typed results, and
failures classified once, by type, where they are caught.

A closed port on this machine is a real unreachable host. An sshd whose key a known_hosts
lacks is not available here, so paramiko's host-key exceptions are constructed directly.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import gevent
import paramiko
import pytest

from bgdeploy.core.errors import CommandFailed, HostKeyRejected, HostUnreachable
from bgdeploy.fleet import executor, fabric_backend, pyinfra_backend, remote
from bgdeploy.fleet.executor import CommandResult

PACKAGE = Path(__file__).resolve().parents[2] / "bgdeploy"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def target(tmp_path: Path, port: int) -> remote.Target:
    known = tmp_path / "known_hosts"
    known.write_text("")
    return remote.Target("web9", "127.0.0.1", port, "root", None, str(known), ("web",))


def test_no_remote_call_outside_the_fleet_package() -> None:
    """pyinfra's ``run_shell_command`` and Fabric's ``Connection.run`` (and paramiko, fabric
    themselves) are used only in ``bgdeploy/fleet/``: every other module goes through the
    executor."""
    direct = re.compile(
        r"run_shell_command|connection\.run\(|connections\[[^]]*\]\.run\("
        r"|^\s*(from|import) (fabric|paramiko)\b"
    )
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("fleet/", "sandbox/")):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if direct.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []


def test_a_closed_port_is_unreachable_over_fabric(tmp_path: Path) -> None:
    fleet = fabric_backend.PerCommandFleet([target(tmp_path, closed_port())])
    result = fleet.run("web9", "true", timeout=5)
    assert not result.ok
    assert isinstance(result.error, HostUnreachable)
    assert result.error.host == "web9"
    assert result.unreachable and not result.key_rejected
    assert result.stderr.startswith("unreachable")
    ok, out, err = result
    assert (ok, out, err) == (False, "", result.stderr)
    with pytest.raises(HostUnreachable):
        result.check("read")


def test_run_tasks_carries_the_type_of_a_closed_port(tmp_path: Path) -> None:
    (result,) = fabric_backend.run_tasks(
        [target(tmp_path, closed_port())], lambda h: h.check("true").stdout
    )
    assert not result.ok
    assert isinstance(result.failure, HostUnreachable)
    assert result.error.startswith("unreachable")


def test_a_fleet_host_that_cannot_be_opened_is_typed(tmp_path: Path) -> None:
    fleet = fabric_backend.FabricFleet([target(tmp_path, closed_port())])
    assert isinstance(fleet.open("web9"), HostUnreachable)


@pytest.mark.parametrize(
    ("error", "kind", "changed"),
    [
        (
            paramiko.BadHostKeyException(
                "web9", paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
            ),
            HostKeyRejected,
            True,
        ),
        (
            paramiko.SSHException("Server '[127.0.0.1]:2222' not found in known_hosts"),
            HostKeyRejected,
            False,
        ),
        (ConnectionRefusedError(111, "Connection refused"), HostUnreachable, None),
        (TimeoutError("timed out"), HostUnreachable, None),
        (gevent.Timeout(3), HostUnreachable, None),
        (EOFError(), HostUnreachable, None),
    ],
)
def test_exceptions_are_classified_by_type(
    error: Exception, kind: type, changed: bool | None
) -> None:
    typed = executor.classify("web9", error)
    assert isinstance(typed, kind)
    assert typed.host == "web9"  # type: ignore[attr-defined]
    if changed is not None:
        assert typed.changed is changed  # type: ignore[attr-defined]
    result = executor.failed("web9", error)
    assert result.error is typed or type(result.error) is kind
    assert result.stderr == str(typed)


def test_an_unknown_exception_is_not_a_host_failure() -> None:
    result = executor.failed("web9", ValueError("bug"))
    assert result.error is None and not result.ok
    assert result.stderr == "ValueError: bug"


def test_ctrl_c_is_never_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt):
        executor.failed("web9", KeyboardInterrupt())


class FakePyinfraHost:
    """A pyinfra ``Host`` whose command raises ``error``, or sleeps ``sleep`` seconds."""

    name = "web9"

    def __init__(self, error: BaseException | None = None, sleep: float = 0.0) -> None:
        self.error = error
        self.sleep = sleep

    def run_shell_command(self, command: Any, **kwargs: Any) -> Any:
        if self.error is not None:
            raise self.error
        gevent.sleep(self.sleep)
        raise AssertionError("should have timed out")


def test_pyinfra_backend_classifies_a_refused_connection() -> None:
    host = FakePyinfraHost(ConnectionRefusedError(111, "Connection refused"))
    result = pyinfra_backend.run_on(host, "true")
    assert isinstance(result.error, HostUnreachable)
    assert "Connection refused" in result.stderr


def test_pyinfra_backend_classifies_a_changed_host_key() -> None:
    key = paramiko.RSAKey.generate(1024)
    host = FakePyinfraHost(paramiko.BadHostKeyException("web9", key, key))
    result = pyinfra_backend.run_on(host, "true")
    assert isinstance(result.error, HostKeyRejected) and result.error.changed


def test_pyinfra_backend_times_out_a_host_that_stopped_answering() -> None:
    result = pyinfra_backend.run_on(FakePyinfraHost(sleep=30), "true", timeout=0.2)
    assert isinstance(result.error, HostUnreachable)
    assert "no answer" in result.stderr


def test_command_result_explains_and_checks() -> None:
    result = CommandResult("web1", False, "", "boom\nSQLSTATE[42P01]: table missing\n", 1, 0.5)
    assert "SQLSTATE" in result.explain()
    assert result.exit_text() == "exit 1: SQLSTATE[42P01]: table missing"
    with pytest.raises(CommandFailed) as raised:
        result.check("migrate")
    assert raised.value.host == "web1"
    assert raised.value.step == "migrate"
    assert raised.value.exit_status == 1
    assert "SQLSTATE" in raised.value.lines
    assert CommandResult("web1", True).check("migrate").ok
