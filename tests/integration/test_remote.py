"""Fabric connections from the inventory: strict host keys, parallel results, history."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bgdeploy import sandbox
from bgdeploy.core.journal import JournalEntry, journal_append_command
from bgdeploy.fleet import fabric_backend, remote, sshkeys

from .conftest import run, sh


@pytest.fixture
def sandbox_env(fleet: sandbox.SandboxState, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BGDEPLOY_SANDBOX", fleet.name)
    return fleet.name


def test_targets_come_from_the_inventory(sandbox_env: str, fleet: sandbox.SandboxState) -> None:
    hosts = remote.targets("sandbox", groups=("web", "db"))
    assert [h.name for h in hosts] == ["web1", "web2", "db"]
    web1 = hosts[0]
    assert (web1.hostname, web1.port) == ("127.0.0.1", fleet.hosts[0].ports["ssh"])
    assert web1.known_hosts == fleet.known_hosts


def test_commands_run_in_parallel_with_per_host_results(sandbox_env: str) -> None:
    hosts = remote.targets("sandbox", groups=("web", "db"))
    results = fabric_backend.run_all(hosts, lambda host: f"hostname; test {host.name} != web2")
    by_host = {r.host: r for r in results}
    assert by_host["web1"].ok and by_host["web1"].stdout.strip() == "web1"
    assert by_host["db"].ok
    assert not by_host["web2"].ok and by_host["web2"].exit_code == 1
    table = remote.format_results(results)
    assert "web2" in table and "FAILED" in table


def test_changed_and_unknown_host_keys_are_refused(sandbox_env: str, tmp_path: Path) -> None:
    web1 = remote.targets("sandbox")[0]
    impostor = sshkeys.generate_keypair(tmp_path / "k", "impostor")
    changed = tmp_path / "changed"
    changed.write_text(sshkeys.known_hosts_line("127.0.0.1", web1.port, impostor) + "\n")
    unknown = tmp_path / "unknown"
    unknown.write_text("")
    marker = f"/tmp/fabric-strict-{os.getpid()}"
    for known_hosts, message in ((changed, "CHANGED"), (unknown, "unknown")):
        target = dataclasses.replace(web1, known_hosts=str(known_hosts))
        (result,) = fabric_backend.run_all([target], f"touch {marker}")
        assert not result.ok and message in result.error
    assert unknown.read_text() == ""
    (check,) = fabric_backend.run_all([web1], f"test ! -e {marker}")
    assert check.ok, "no command may run on a host whose key was refused"


def test_unreachable_host_is_reported_not_hidden(sandbox_env: str) -> None:
    hosts = remote.targets("sandbox", groups=("web",))
    dead = dataclasses.replace(hosts[1], port=1)
    results = fabric_backend.run_all([hosts[0], dead], "true")
    assert results[0].ok
    assert not results[1].ok and "unreachable" in results[1].error


def test_history_merges_every_hosts_journal(fleet: sandbox.SandboxState) -> None:
    path = "/var/www/bideshgomon/.bgdeploy/journal.jsonl"
    events = [
        ("web2", "2026-11-20T10:00:02+00:00", "deploy_start"),
        ("web1", "2026-11-20T10:00:01+00:00", "deploy_start"),
        ("web1", "2026-11-20T10:05:00+00:00", "deploy_finish"),
    ]
    for host in ("web1", "web2"):
        code, out = sh(fleet, host, "sudo mkdir -p /var/www/bideshgomon/.bgdeploy && "
                       "sudo chown deploy /var/www/bideshgomon/.bgdeploy")  # fmt: skip
        assert code == 0, out
    for host, at, event in events:
        entry = JournalEntry(
            event=event, at=datetime.fromisoformat(at).astimezone(UTC), host=host,
            env="sandbox", ref="v1", who="tester@ci", reason="it's a \"test\" $(id)",
        )  # fmt: skip
        code, out = sh(fleet, host, journal_append_command(path, entry))
        assert code == 0, out
    proc = run(["bgdeploy", "history", "sandbox", "--json"], env={"BGDEPLOY_SANDBOX": fleet.name})
    assert proc.returncode == 0, proc.stderr
    entries = [e for e in json.loads(proc.stdout) if e["who"] == "tester@ci"]
    assert [(e["host"], e["event"]) for e in entries] == [
        ("web1", "deploy_start"),
        ("web2", "deploy_start"),
        ("web1", "deploy_finish"),
    ]
    assert entries[0]["reason"] == 'it\'s a "test" $(id)'
    table = run(["bgdeploy", "history", "sandbox"], env={"BGDEPLOY_SANDBOX": fleet.name})
    assert table.returncode == 0 and "deploy_finish" in table.stdout
