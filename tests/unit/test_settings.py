"""Settings: every wrong or missing value is refused before any host is touched."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from bgdeploy.core import settings
from bgdeploy.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_for_every_environment(group_data) -> None:
    for env in ("prod", "staging", "sandbox"):
        merged = group_data(env) if (ROOT / "group_data" / f"{env}.py").exists() else group_data()
        loaded = settings.from_data(merged, env)
        assert loaded.env == env
        assert loaded.process_control_timeout > 0


def test_sandbox_is_not_production(group_data) -> None:
    assert settings.from_data(group_data("sandbox"), "sandbox").production is False


def test_missing_key_names_key(group_data) -> None:
    data = group_data()
    del data["app_root"]
    with pytest.raises(ConfigError, match="app_root is missing"):
        settings.from_data(data, "prod")


def test_wrong_type_names_key_and_file(group_data) -> None:
    data = group_data()
    data["health_deadline"] = "soon"
    with pytest.raises(ConfigError, match=r"group_data/all.py.*health_deadline must be a number"):
        settings.from_data(data, "prod")


def test_typo_suggests_the_known_key(group_data) -> None:
    data = group_data()
    data["helth_deadline"] = 5
    with pytest.raises(ConfigError, match=r"unknown setting .helth_deadline.*.health_deadline."):
        settings.from_data(data, "prod")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("app_root", "/var/www/x; rm -rf /"),
        ("app_root", "relative/path"),
        ("php_version", "8.2 && id"),
        ("deploy_user", "$(whoami)"),
        ("public_port", 0),
        ("public_port", True),
        ("preview_allow", ["not-an-address"]),
        ("preview_allow", []),
        ("migrate_host", "web1 web2"),
        ("auto_rollback", "yes"),
        ("rolling_batch", 0),
        ("repository", "--upload-pack=touch /tmp/pwned"),
        ("asset_paths", "public/build"),
        ("asset_paths", ["../etc"]),
        ("asset_paths", ["/public/build"]),
        ("asset_paths", ["public/build; id"]),
        ("asset_paths", ["-rf"]),
        ("asset_paths", ["public/build\n"]),
        ("asset_paths", ["public/build", "public/build"]),
        ("asset_paths", ["public", "public/build"]),
    ],
)
def test_hostile_or_wrong_values_are_refused(group_data, key: str, value: object) -> None:
    data = group_data()
    data[key] = value
    with pytest.raises(ConfigError, match=key):
        settings.from_data(data, "prod")


def test_pyinfra_and_host_keys_are_not_settings_but_allowed(group_data) -> None:
    plain = settings.from_data(group_data(), "prod")
    data = group_data()
    extra = {"_sudo": True, "ssh_port": 22, "private_ip": "10.0.0.1", "http_port": 8080}
    data.update(extra)
    loaded = settings.from_data(data, "prod")
    assert loaded == plain  # accepted, and none of them became or changed a setting
    assert not {field.name for field in fields(settings.Settings)} & set(extra)
    with pytest.raises(ConfigError, match="helth_deadline"):  # beside them, a typo still fails
        settings.from_data({**data, "helth_deadline": 1}, "prod")


def test_secrets_come_from_environment_and_name_the_missing_variable() -> None:
    env = {"BGDEPLOY_APP_KEY": "base64:x", "BGDEPLOY_DB_PASSWORD": "p"}
    with pytest.raises(ConfigError) as info:
        settings.secrets_from_env(environ=env)
    message = str(info.value)
    assert "BGDEPLOY_REDIS_PASSWORD" in message and "BGDEPLOY_API_TOKEN" in message
    assert "base64:x" not in message
    full = {**env, "BGDEPLOY_REDIS_PASSWORD": "r", "BGDEPLOY_API_TOKEN": "t"}
    assert settings.secrets_from_env(environ=full)["APP_KEY"] == "base64:x"


def test_asset_paths_default_and_empty(group_data) -> None:
    data = group_data()
    assert settings.from_data(data, "prod").asset_paths == ("public/build",)
    data["asset_paths"] = []
    assert settings.from_data(data, "prod").asset_paths == ()


def test_root_is_the_checkout_or_bgdeploy_root(tmp_path: Path) -> None:
    assert settings.find_root({}) == ROOT  # this checkout: it has inventories/
    assert settings.ROOT == ROOT
    assert settings.find_root({"BGDEPLOY_ROOT": str(tmp_path)}) == tmp_path.resolve()
