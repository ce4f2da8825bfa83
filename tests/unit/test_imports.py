"""An operator's machine needs no Docker: every module outside bgdeploy.sandbox imports without
the Docker SDK (``pip install .`` leaves the ``sandbox`` extra out), the commands an operator
runs work, and bgdeploy.sandbox itself imports (pyinfra loads group_data/sandbox.py for every
inventory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "bgdeploy"

# Importing any of these fails from now on, as if the sandbox extra were not installed.
WITHOUT_SANDBOX_EXTRA = ("docker", "dotenv", "prometheus_client")


def modules_outside_the_sandbox() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "sandbox" in parts:
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_module_but_the_sandbox_imports_without_the_sandbox_extra() -> None:
    names = modules_outside_the_sandbox()
    assert "bgdeploy.cli" in names and "bgdeploy.strategies.release" in names
    script = "\n".join(
        [
            "import importlib, sys",
            f"for blocked in {WITHOUT_SANDBOX_EXTRA!r}:",
            "    sys.modules[blocked] = None",
            f"for name in {names!r}:",
            "    importlib.import_module(name)",
            "from click.testing import CliRunner",
            "from bgdeploy.cli import cli",
            'for args in (["--help"], ["deploy", "--help"], ["rollback", "--help"],',
            '             ["status", "--help"]):',
            "    result = CliRunner().invoke(cli, args)",
            "    assert result.exit_code == 0, (args, result.output, result.exception)",
            "leaked = sorted(m for m in sys.modules if m.startswith('bgdeploy.sandbox'))",
            "assert not leaked, leaked",
            "# pyinfra loads every group_data file, group_data/sandbox.py (bgdeploy.sandbox) too:",
            "result = CliRunner().invoke(cli, ['window', 'prod', '--at', '2026-12-08T11:00'])",
            "assert result.exit_code == 0, (result.output, result.exception)",
            "import bgdeploy.sandbox, bgdeploy.sandbox.monitoring",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
