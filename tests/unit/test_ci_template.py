"""The CI workflow template (templates/ci/github-actions-deploy.yml): it parses, its deploy job
follows the runbook's pipeline, and every bgdeploy command and option it uses exists."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import yaml

from bgdeploy.cli.main import COMMANDS, cli, load
from bgdeploy.core.settings import SECRET_VARIABLES
from bgdeploy.oncall import notify

TEMPLATE = Path(__file__).resolve().parents[2] / "templates/ci/github-actions-deploy.yml"


def workflow() -> dict:
    data = yaml.safe_load(TEMPLATE.read_text())
    assert isinstance(data, dict)
    return data


def bgdeploy_calls(data: dict) -> list[list[str]]:
    calls = []
    for job in data["jobs"].values():
        for step in job.get("steps", []):
            for line in str(step.get("run", "")).splitlines():
                words = shlex.split(line, comments=True)
                if words and words[0] == "bgdeploy":
                    calls.append(words[: words.index(">")] if ">" in words else words)
    return calls


def test_the_deploy_job_ships_after_the_runbooks_checks_one_at_a_time() -> None:
    data = workflow()
    assert data[True] == {"push": {"branches": ["main"]}}  # YAML 1.1 reads `on:` as True
    jobs = data["jobs"]
    deploy = jobs["deploy"]
    assert sorted(deploy["needs"]) == ["build", "eslint", "phpstan", "phpunit"]
    assert "self-hosted" in deploy["runs-on"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    checks = {
        name: " ".join(str(s.get("run", "")) for s in job["steps"]) for name, job in jobs.items()
    }
    assert "composer phpstan" in checks["phpstan"] and "composer test" in checks["phpunit"]
    assert "npm run lint:js" in checks["eslint"] and "npm run build" in checks["build"]
    # Every secret bgdeploy reads, for prod and for staging, from the secret store.
    env = deploy["env"]
    secrets = list(SECRET_VARIABLES.values())
    staging = [v.replace("BGDEPLOY_", "BGDEPLOY_STAGING_", 1) for v in secrets]
    hooks = [notify.SLACK_DEPLOYMENTS_ENV, notify.SLACK_INCIDENTS_ENV, notify.PAGERDUTY_KEY_ENV]
    wanted = secrets + staging + hooks
    for variable in wanted:
        assert env[variable] == f"${{{{ secrets.{variable} }}}}", variable
    [call] = bgdeploy_calls(data)
    assert call[:5] == ["bgdeploy", "ship", "prod", "--ref", "$GITHUB_SHA"]


def test_every_bgdeploy_command_and_option_it_uses_exists() -> None:
    calls = bgdeploy_calls(workflow())
    assert calls
    for words in calls:
        name = words[1]
        assert name in COMMANDS, name
        command = load(COMMANDS[name])
        assert isinstance(command, click.Command)
        known = {opt for param in command.params for opt in getattr(param, "opts", [])}
        used = [word.split("=", 1)[0] for word in words[2:] if word.startswith("--")]
        assert used and set(used) <= known, (name, set(used) - known)
        # And the command line parses as bgdeploy would parse it (no missing argument).
        context = command.make_context(name, words[2:], parent=click.Context(cli))
        assert context.params["env"] == "prod" and context.params["ref"] == "$GITHUB_SHA"
