"""Sandbox state without Docker: names, the state file and the inventory built from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bgdeploy import sandbox
from bgdeploy.core.errors import ConfigError


@pytest.mark.parametrize("name", ["", "A", "1abc", "a b", "a;rm", "../x", "x" * 40, "a_b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="sandbox name"):
        sandbox.check_name(name)


def fake_state(root: Path, name: str) -> None:
    directory = root / "sandboxes" / name
    directory.mkdir(parents=True)
    state = {
        "name": name,
        "network": f"bgdeploy-{name}",
        "image": "bgdeploy/target:x",
        "directory": str(directory),
        "created": 0,
        "releases": {"v1": "a" * 40},
        "hosts": [
            {"name": "web1", "container": "c1", "groups": ["web"],
             "ports": {"ssh": 2201, "http": 8001, "preview": 9001}, "private_ip": "172.30.0.2"},
            {"name": "db", "container": "c2", "groups": ["db"],
             "ports": {"ssh": 2202}, "private_ip": "172.30.0.3"},
        ],
    }  # fmt: skip
    (directory / "state.json").write_text(json.dumps(state))
    (directory / "secrets.env").write_text("APP_KEY=base64:k\nDB_PASSWORD=d\n")


def test_inventory_uses_strict_host_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("BGDEPLOY_SANDBOX", "t9")
    fake_state(tmp_path, "t9")
    groups = sandbox.inventory_hosts()
    ((name, data),) = groups["web"]
    assert name == "web1"
    assert data["ssh_hostname"] == "127.0.0.1" and data["ssh_port"] == 2201
    assert data["ssh_strict_host_key_checking"] == "yes"
    assert data["ssh_known_hosts_file"].endswith("sandboxes/t9/known_hosts")
    assert groups["db"][0][1]["private_ip"] == "172.30.0.3"


def test_missing_sandbox_says_how_to_start_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="bgdeploy sandbox up --name nope"):
        sandbox.load_state("nope")


def test_export_secrets_keeps_what_is_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    fake_state(tmp_path, "t8")
    env = {"BGDEPLOY_DB_PASSWORD": "mine"}
    sandbox.export_secrets("t8", env)
    assert env == {"BGDEPLOY_DB_PASSWORD": "mine", "BGDEPLOY_APP_KEY": "base64:k"}


def test_secrets_are_read_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    fake_state(tmp_path, "t8")
    written = {"APP_KEY": "base64:ab+/cd==", "DB_PASSWORD": "a$b-_x", "API_TOKEN": "t=k"}
    path = tmp_path / "sandboxes" / "t8" / "secrets.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in written.items()))
    assert sandbox.load_secrets("t8") == written


def test_a_state_from_before_the_flavours_is_initd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    fake_state(tmp_path, "old")
    assert sandbox.load_state("old").init == "initd"


def test_unknown_init_is_refused_before_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="--init must be one of initd, systemd, not 'upstart'"):
        sandbox.up("new", init="upstart", client=object())
    assert not (tmp_path / "sandboxes").exists()


def test_a_sandbox_up_with_another_init_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    fake_state(tmp_path, "sd")
    state = sandbox.load_state("sd")
    state.init = "systemd"
    sandbox.save_state(state)
    with pytest.raises(ConfigError, match="already up with --init systemd"):
        sandbox.up("sd", web=1, client=object())
    assert sandbox.up("sd", web=1, init="systemd", client=object()).init == "systemd"


def test_cli_offers_the_image_flavours() -> None:
    from bgdeploy.cli.sandbox import sandbox_up
    from bgdeploy.sandbox import image

    (option,) = [p for p in sandbox_up.params if p.name == "init"]
    assert tuple(option.type.choices) == image.INITS and option.default == "initd"
