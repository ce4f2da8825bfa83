"""State files rewritten whole or not at all (bgdeploy.core.files), and the callers that use it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bgdeploy import sandbox
from bgdeploy.core import files
from bgdeploy.core.release_report import ReleaseReport
from bgdeploy.fleet import sshkeys


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_text_or_bytes_with_the_mode_asked(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    files.write_atomic(path, "[127.0.0.1]:2201 ssh-ed25519 AAAA\n")
    assert path.read_text() == "[127.0.0.1]:2201 ssh-ed25519 AAAA\n"
    assert mode(path) == 0o644
    files.write_atomic(path, b"secret", mode=0o600)
    assert path.read_bytes() == b"secret" and mode(path) == 0o600
    assert os.listdir(tmp_path) == ["known_hosts"]


def test_rewriting_keeps_the_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "secrets.env"
    files.write_atomic(path, "DB_PASSWORD=a\n", mode=0o600)
    files.write_atomic(path, "DB_PASSWORD=b\n")
    assert mode(path) == 0o600 and path.read_text() == "DB_PASSWORD=b\n"


def test_the_temporary_file_is_never_readable_by_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    files.write_atomic(tmp_path / "id_ed25519", b"key", mode=0o600)
    assert seen == [0o600]


@pytest.mark.parametrize("fails_in", ["fsync", "replace"])
def test_a_failed_write_leaves_the_old_file_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails_in: str
) -> None:
    path = tmp_path / "state.json"
    files.write_atomic(path, '{"old": true}\n', mode=0o600)

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, fails_in, broken)
    with pytest.raises(OSError, match="No space left"):
        files.write_atomic(path, '{"new": true, "half": "written"}\n')
    assert path.read_text() == '{"old": true}\n' and mode(path) == 0o600
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left behind


def test_sandbox_state_json_is_written_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = sandbox.SandboxState("t1", "bgdeploy-t1", "img", str(tmp_path), created=1.0)
    sandbox._save(state)
    path = tmp_path / "state.json"
    os.chmod(path, 0o600)
    saved = path.read_text()
    state.releases = {"v1": "a" * 40}

    def interrupted(handle: int) -> None:  # the machine dies after part of the write
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(OSError):
        sandbox._save(state)
    assert path.read_text() == saved and json.loads(saved)["releases"] == {}
    assert os.listdir(tmp_path) == ["state.json"]
    monkeypatch.undo()
    sandbox._save(state)
    assert json.loads(path.read_text())["releases"] == {"v1": "a" * 40}
    assert mode(path) == 0o600  # its mode kept


def test_keys_secrets_and_the_release_report_are_private(tmp_path: Path) -> None:
    line = sshkeys.generate_keypair(tmp_path / "id_ed25519", "bgdeploy-sandbox-t")
    assert mode(tmp_path / "id_ed25519") == 0o600
    assert (tmp_path / "id_ed25519.pub").read_text() == line + "\n"
    sshkeys.write_private(tmp_path / "secrets.env", b"APP_KEY=base64:k\n")
    assert mode(tmp_path / "secrets.env") == 0o600
    ReleaseReport(env="sandbox", ref="v2", run="r1").save(tmp_path / "report.json")
    assert mode(tmp_path / "report.json") == 0o600
    assert ReleaseReport.load(tmp_path / "report.json") is not None
    assert sorted(os.listdir(tmp_path)) == [
        "id_ed25519",
        "id_ed25519.pub",
        "report.json",
        "secrets.env",
    ]
