"""Hooks without Docker: real executables in a temporary deploy repository, run as bgdeploy
runs them; the sample Sentry hook against a local receiver."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import WebhookReceiver, load_group_data

from bgdeploy.core import settings
from bgdeploy.core.errors import ConfigError, PolicyRefusal
from bgdeploy.oncall import hooks

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = hooks.Context(
    env="prod", ref="v2", release="a" * 40, strategy="blue-green", colour="green",
    run_id="0123456789ab", result="ok", canary=5.0,
)  # fmt: skip


def hook(root: Path, stage: str, name: str, body: str, executable: bool = True) -> Path:
    path = root / "hooks" / stage / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def test_a_hook_gets_the_deploy_in_its_environment(tmp_path: Path) -> None:
    hook(tmp_path, "post-deploy", "10-record", 'env | grep ^BGDEPLOY_ | sort > "$PWD/seen"')
    outcome = hooks.run_stage("post-deploy", CONTEXT, environ={"PATH": os.defpath}, root=tmp_path)
    assert outcome.ok and len(outcome.results) == 1
    seen = dict(line.split("=", 1) for line in (tmp_path / "seen").read_text().splitlines())
    assert seen == {
        "BGDEPLOY_STAGE": "post-deploy", "BGDEPLOY_ENV": "prod", "BGDEPLOY_REF": "v2",
        "BGDEPLOY_RELEASE": "a" * 40, "BGDEPLOY_STRATEGY": "blue-green",
        "BGDEPLOY_COLOUR": "green", "BGDEPLOY_RUN_ID": "0123456789ab", "BGDEPLOY_RESULT": "ok",
        "BGDEPLOY_CANARY": "5",
    }  # fmt: skip


def test_hooks_run_in_name_order_then_group_data_ones(tmp_path: Path) -> None:
    order = tmp_path / "order"
    hook(tmp_path, "post-switch", "20-b", f"echo b >> {order}")
    hook(tmp_path, "post-switch", "10-a", f"echo a >> {order}")
    extra = tmp_path / "scripts" / "c"
    extra.parent.mkdir()
    extra.write_text(f"#!/bin/sh\necho c >> {order}\n")
    extra.chmod(0o755)
    said: list[str] = []
    outcome = hooks.run_stage(
        "post-switch", CONTEXT, {"post-switch": ["scripts/c"]}, progress=said.append, root=tmp_path
    )
    assert outcome.ok and order.read_text().split() == ["a", "b", "c"]
    assert said[0].startswith("hook post-switch 10-a: ok (")


def test_a_failing_pre_deploy_hook_stops_at_once_and_refuses(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    hook(tmp_path, "pre-deploy", "10-check", "echo 'change freeze: ask #releases' >&2; exit 4")
    hook(tmp_path, "pre-deploy", "20-never", f"touch {ran}")
    said: list[str] = []
    outcome = hooks.run_stage("pre-deploy", CONTEXT, progress=said.append, root=tmp_path)
    assert not outcome.ok and len(outcome.results) == 1 and not ran.exists()
    assert "hook pre-deploy 10-check: FAILED (exit 4)" in said[0]
    assert "change freeze: ask #releases" in said[0]
    with pytest.raises(PolicyRefusal, match=r"pre-deploy hook 10-check failed \(exit 4\): nothing"):
        hooks.refuse_unless_ok(outcome)


def test_a_failing_post_hook_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    hook(tmp_path, "post-deploy", "10-bad", "exit 1")
    hook(tmp_path, "post-deploy", "20-good", "true")
    outcome = hooks.run_stage("post-deploy", CONTEXT, root=tmp_path)
    assert [r.ok for r in outcome.results] == [False, True]


def test_a_hook_over_its_time_is_stopped(tmp_path: Path) -> None:
    hook(tmp_path, "pre-deploy", "slow", "echo started; sleep 30 & wait")
    outcome = hooks.run_stage("pre-deploy", CONTEXT, timeout=0.5, root=tmp_path)
    (result,) = outcome.results
    assert result.code is None and "still running after 0.5 s" in result.problem
    assert result.seconds < 10 and "started" in result.output


def test_not_executable_is_skipped_and_said(tmp_path: Path) -> None:
    hook(tmp_path, "post-deploy", "notes.txt", "exit 1", executable=False)
    said: list[str] = []
    outcome = hooks.run_stage("post-deploy", CONTEXT, progress=said.append, root=tmp_path)
    assert outcome.ok and not outcome.results and outcome.skipped
    assert "not executable" in said[0]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x", "hooks must be a dict"),
        ({"post-merge": ["a"]}, "names 'post-merge', not a stage"),
        ({"post-deploy": "a"}, "must be a list of paths"),
    ],
)
def test_bad_group_data_hooks_name_the_file(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings.from_data({**load_group_data("staging"), "hooks": value}, "staging")
    good = settings.from_data(
        {**load_group_data("staging"), "hooks": {"on-failure": ["x"]}}, "staging"
    )
    assert good.hooks == {"on-failure": ["x"]} and good.hook_timeout == 60.0


def test_a_configured_hook_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'scripts/nope' is not a file"):
        hooks.find("post-deploy", tmp_path, {"post-deploy": ["scripts/nope"]})


@pytest.fixture
def sentry() -> Iterator[WebhookReceiver]:
    """Sentry's releases API, as far as the sample hook uses it (answers 201)."""
    found = WebhookReceiver(status=201, body=b"{}")
    try:
        yield found
    finally:
        found.close()


def test_the_sample_sentry_hook_posts_a_release_marker(
    tmp_path: Path, sentry: WebhookReceiver
) -> None:
    installed = tmp_path / "hooks" / "post-deploy" / "sentry-release"
    installed.parent.mkdir(parents=True)
    shutil.copy2(ROOT / "hooks" / "examples" / "sentry-release", installed)
    token = "sntrys_secret_token_0123456789"
    environ = {
        "PATH": os.environ["PATH"], "SENTRY_URL": sentry.url, "SENTRY_ORG": "bideshgomon",
        "SENTRY_PROJECT": "laravel", "SENTRY_AUTH_TOKEN": token,
    }  # fmt: skip
    outcome = hooks.run_stage("post-deploy", CONTEXT, environ=environ, root=tmp_path)
    assert outcome.ok, [r.line("post-deploy") for r in outcome.results]
    assert token not in outcome.results[0].output
    (release_path, headers, release), (deploy_path, _, deploy) = sentry.posts
    assert release_path == "/api/0/organizations/bideshgomon/releases/"
    assert headers["Authorization"] == f"Bearer {token}"
    assert release == {"version": "a" * 40, "projects": ["laravel"]}
    assert deploy_path == f"/api/0/organizations/bideshgomon/releases/{'a' * 40}/deploys/"
    assert deploy == {"environment": "prod"}
