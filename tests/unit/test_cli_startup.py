"""The command line's start-up: loading it, and ``bgdeploy --help``, import none of the heavy
libraries (each command imports what it needs when it runs), and every command is still
there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bgdeploy.cli import cli
from bgdeploy.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pyinfra", "fabric", "docker", "paramiko", "httpx", "jinja2")

COMMAND_NAMES = [
    "db", "deploy", "emergency", "flags", "health", "history", "postmortem", "preflight",
    "provision", "review", "rollback", "sandbox", "scale", "ship", "smoke", "snapshot", "status",
    "switch", "unlock", "window",
]  # fmt: skip
"""``bgdeploy --help``'s commands (the ones before the CLI was split into one module per group,
and those added since)."""


def heavy_modules_after(code: str) -> list[str]:
    """The heavy libraries' modules loaded once ``code`` ran, in a fresh interpreter started
    in the repository's root (so that it imports this checkout's bgdeploy)."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout.splitlines()[-1])


def test_importing_the_cli_imports_no_heavy_library() -> None:
    assert heavy_modules_after("import bgdeploy.cli") == []


def test_help_imports_no_heavy_library() -> None:
    code = (
        "from bgdeploy.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='bgdeploy')\nexcept SystemExit:\n    pass"
    )
    assert heavy_modules_after(code) == []


def test_help_lists_the_same_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.split("Commands:\n", 1)[1].splitlines()
    assert [line.split()[0] for line in lines if line.strip()] == COMMAND_NAMES
    assert sorted(COMMANDS) == COMMAND_NAMES


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_each_command_loads_under_its_name(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert isinstance(command, click.Command)
    assert command.name == name


@pytest.mark.parametrize(
    ("args", "choices"),
    [
        (["switch", "--help"], "{blue|green}"),
        (["flags", "--help"], "{enable|disable|rollout|users|reset|list}"),
        (["emergency", "prod", "logs", "--help"], "[laravel|php-fpm|nginx-access|nginx-error]"),
        (["emergency", "prod", "restart", "--help"], "[php-fpm|nginx|redis|workers]..."),
    ],
)
def test_choices_come_from_the_library(args: list[str], choices: str) -> None:
    result = CliRunner().invoke(cli, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert choices in result.output


def test_a_value_outside_the_choices_is_bad_usage() -> None:
    result = CliRunner().invoke(cli, ["switch", "prod", "purple"])
    assert result.exit_code == 2
    assert "'purple' is not one of 'blue', 'green'" in result.output
