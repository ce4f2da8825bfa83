"""``code_delivery`` and ``ssh_forward_agent``: the settings, both SSH backends, and the push
delivery itself with real git repositories (a "host" colour is a directory here, its
commands run by ``sh`` as they would over SSH).
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bgdeploy import commands
from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.settings import Settings, from_data
from bgdeploy.fleet import delivery, remote, runner

WEB1 = "web1.bideshgomon.com"


def git(cwd: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org", "PATH": "/usr/bin:/bin",
        "HOME": str(cwd),
    }  # fmt: skip
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> dict[str, Any]:
    """A repository with ``main`` (v1, then v2) and a branch ``feature`` off v1: its path and
    the commits."""
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    shas: dict[str, Any] = {}
    for tag in ("v1", "v2"):
        # Incompressible, so that a bundle's size says what it holds.
        (work / f"{tag}.txt").write_text(secrets.token_hex(20000))
        git(work, "add", f"{tag}.txt")
        git(work, "commit", "-q", "-m", tag)
        git(work, "tag", tag)
        shas[tag] = git(work, "rev-parse", "HEAD")
    git(work, "checkout", "-q", "-b", "feature", "v1")
    (work / "feature.txt").write_text("feature\n")
    git(work, "add", "feature.txt")
    git(work, "commit", "-q", "-m", "feature")
    shas["feature"] = git(work, "rev-parse", "HEAD")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    shas["path"] = str(bare)
    return shas


def settings_for(group_data: Any, **values: Any) -> Settings:
    return from_data({**group_data("prod"), **values}, "prod")


class Colour:
    """A colour's checkout standing in for a host's: commands run in ``sh``, as over SSH,
    each remembered with the size of its stdin."""

    def __init__(self, path: Path, repository: str) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.calls: list[tuple[str, int]] = []
        ok, _, err = self.run(commands.in_dir(str(path), commands.git_ensure_repo(repository)))
        assert ok, err

    def run(self, command: str, stdin: str | None = None) -> tuple[bool, str, str]:
        self.calls.append((command, len(stdin or "")))
        done = subprocess.run(
            ["sh", "-c", command], input=stdin, capture_output=True, text=True, check=False
        )
        return done.returncode == 0, done.stdout, done.stderr

    def head_after_checkout(self, sha: str) -> str:
        ok, _, err = self.run(commands.in_dir(str(self.path), commands.git_checkout(sha)))
        assert ok, err
        return git(self.path, "rev-parse", "HEAD")


# The settings ----------------------------------------------------------------------------


def test_code_delivery_is_fetch_by_default_and_push_when_set(group_data) -> None:
    assert settings_for(group_data).code_delivery == "fetch"
    assert settings_for(group_data, code_delivery="push").code_delivery == "push"
    assert settings_for(group_data).ssh_forward_agent is False


@pytest.mark.parametrize("value", ["rsync", "", None, True, "PUSH"])
def test_an_unknown_code_delivery_names_the_key_and_the_choices(group_data, value) -> None:
    with pytest.raises(ConfigError, match=r"code_delivery (must be one of fetch, push|is missing)"):
        settings_for(group_data, code_delivery=value)


def test_an_unknown_code_delivery_fails_the_environment_before_any_connection() -> None:
    # What every command checks first (bgdeploy deploy, preflight, rollback): exit 2.
    with pytest.raises(ConfigError, match=r"group_data/all.py: code_delivery must be one of"):
        runner.check_environment("prod", {"code_delivery": "scp"})


def test_ssh_forward_agent_must_be_true_or_false(group_data) -> None:
    assert settings_for(group_data, ssh_forward_agent=True).ssh_forward_agent is True
    with pytest.raises(ConfigError, match="ssh_forward_agent must be True or False"):
        settings_for(group_data, ssh_forward_agent="yes")


# Agent forwarding reaches both SSH backends ----------------------------------------------


@pytest.mark.parametrize("forward", [True, False])
def test_pyinfra_receives_ssh_forward_agent(forward: bool) -> None:
    from pyinfra.api import Config, State

    # pyinfra's own reading (the command line reads inventories without pyinfra)
    path = runner.inventory_path("prod")
    inventory = runner.load_with_pyinfra(path, {"ssh_forward_agent": forward})
    state = State(inventory, Config())
    connector = state.inventory.get_host(WEB1).connector
    assert connector.make_paramiko_kwargs()["_pyinfra_ssh_forward_agent"] is forward


@pytest.mark.parametrize("forward", [True, False])
def test_fabric_receives_forward_agent(forward: bool) -> None:
    inventory = runner.load_inventory("prod", {"ssh_forward_agent": forward})
    target = remote.targets("prod", inventory=inventory)[0]
    assert target.forward_agent is forward
    assert remote.connect(target).forward_agent is forward  # no connection is opened


def test_forwarding_is_off_unless_group_data_says_so() -> None:
    target = remote.targets("prod", inventory=runner.load_inventory("prod"))[0]
    assert target.forward_agent is False
    assert remote.connect(target).forward_agent is False


# The push delivery, with real repositories -------------------------------------------------


def test_push_resolves_on_this_machine_and_sends_only_what_the_colour_lacks(
    group_data, origin: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = subprocess.run

    def as_gevent_runs(*args: Any, **kwargs: Any) -> Any:
        # pyinfra's process runs gevent's subprocess.run: stdin= beside input= is refused.
        if "input" in kwargs and "stdin" in kwargs:
            raise ValueError("stdin and input arguments may not both be used.")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", as_gevent_runs)
    settings = settings_for(group_data, code_delivery="push", repository=origin["path"])
    code = delivery.Delivery(settings, cache_root=tmp_path / "cache")
    # The "host" cannot reach the repository: its origin names a path it does not have.
    colour = Colour(tmp_path / "host" / "blue", "/nowhere/app.git")

    def on_host(_command: str) -> Any:
        raise AssertionError("a push resolves refs on this machine, never on the host")

    ok, out, _ = code.resolve("v1", on_host)
    assert ok and out.split() == ["tag", origin["v1"]]
    assert code.ensure(colour.run, str(colour.path), origin["v1"]) == ""
    first = colour.calls[-1][1]
    assert colour.head_after_checkout(origin["v1"]) == origin["v1"]
    # origin/main came along: "is the release on main" reads the same as after a fetch.
    assert git(colour.path, "rev-parse", "refs/remotes/origin/main") == origin["v2"]

    # The feature branch's commit: only what the colour lacks travels (v1 is a prerequisite).
    _, out, _ = code.resolve("feature", on_host)
    assert out.split() == ["branch", origin["feature"]]
    assert code.ensure(colour.run, str(colour.path), origin["feature"]) == ""
    second = colour.calls[-1][1]
    assert 0 < second < first / 4
    assert colour.head_after_checkout(origin["feature"]) == origin["feature"]

    # v2 came with origin/main: nothing to send, the id still compared on the host.
    assert code.ensure(colour.run, str(colour.path), origin["v2"]) == ""
    assert colour.calls[-1][1] == 0
    assert colour.head_after_checkout(origin["v2"]) == origin["v2"]


def test_push_names_what_it_cannot_find_or_fetch(
    group_data, origin: dict[str, Any], tmp_path: Path
) -> None:
    settings = settings_for(group_data, code_delivery="push", repository=origin["path"])
    code = delivery.Delivery(settings, cache_root=tmp_path / "cache")
    colour = Colour(tmp_path / "host" / "blue", origin["path"])
    _, out, _ = code.resolve("no-such-tag", lambda command: (True, "", ""))
    assert out.strip() == ""
    missing = "f" * 40
    why = code.ensure(colour.run, str(colour.path), missing)
    assert why == f"commit {missing} is not in {origin['path']} (fetched on this machine)"

    unreachable = settings_for(
        group_data, code_delivery="push", repository=str(tmp_path / "gone.git")
    )
    with pytest.raises(OperationFailed, match=r"git fetch from .*gone\.git failed on this machine"):
        delivery.Delivery(unreachable, cache_root=tmp_path / "cache2").resolve("v1", print)


def test_a_bundle_that_does_not_hold_the_commit_is_caught_on_the_host(
    group_data, origin: dict[str, Any], tmp_path: Path
) -> None:
    settings = settings_for(group_data, code_delivery="push", repository=origin["path"])
    code = delivery.Delivery(settings, cache_root=tmp_path / "cache")
    colour = Colour(tmp_path / "host" / "blue", "/nowhere/app.git")
    code.resolve("v1", print)
    # A transport that carries another commit's bundle (under the same ref names).
    wrong = tmp_path / "wrong"
    git(tmp_path, "clone", "-q", "--mirror", origin["path"], str(wrong))
    for name in (commands.RELEASE_REF, "refs/remotes/origin/main"):
        git(wrong, "update-ref", name, origin["feature"])
    git(wrong, "bundle", "create", "-q", "wrong.bundle", commands.RELEASE_REF,
        "refs/remotes/origin/main")  # fmt: skip
    payload = base64.encodebytes((wrong / "wrong.bundle").read_bytes()).decode()

    def swapped(command: str, stdin: str | None = None) -> tuple[bool, str, str]:
        return colour.run(command, payload if stdin else None)

    why = code.ensure(swapped, str(colour.path), origin["v1"])
    assert why.startswith(f"commit {origin['v1'][:12]} could not be delivered to ")
    assert git(colour.path, "cat-file", "-t", origin["feature"]) == "commit"  # it did arrive


def test_fetch_mode_fetches_on_the_host_and_resolves_there(
    group_data, origin: dict[str, Any], tmp_path: Path
) -> None:
    settings = settings_for(group_data, repository=origin["path"])
    code = delivery.Delivery(settings, cache_root=tmp_path / "cache")
    colour = Colour(tmp_path / "host" / "blue", origin["path"])

    def on_host(command: str) -> tuple[bool, str, str]:
        return colour.run(commands.in_dir(str(colour.path), command))

    _, out, _ = code.resolve("v2", on_host, fetch_unknown=True)  # fetched there first
    assert out.split() == ["tag", origin["v2"]]
    assert code.ensure(colour.run, str(colour.path), origin["feature"]) == ""
    assert not (tmp_path / "cache").exists()  # this machine fetched nothing
    why = code.ensure(colour.run, str(colour.path), "e" * 40)
    assert why.startswith(f"commit {'e' * 40} is not in {origin['path']} (fetched here)")


def test_the_facts_command_fetches_only_when_hosts_fetch(group_data, tmp_path: Path) -> None:
    fetching = delivery.Delivery(settings_for(group_data), tmp_path)
    pushing = delivery.Delivery(settings_for(group_data, code_delivery="push"), tmp_path)
    assert "git fetch" in fetching.facts_command("/srv/app", False, ())
    assert "git fetch" not in pushing.facts_command("/srv/app", False, ())
    assert fetching.fetch_error({"fetch": "ok"}, "", "") == ""
    assert pushing.fetch_error({"fetch": "skipped"}, "", "") == ""
    why = fetching.fetch_error({"fetch": "failed"}, "", "fatal: repository not found")
    assert why == (
        "git fetch from https://github.com/bideshgomon/platform.git failed: "
        "fatal: repository not found"
    )
