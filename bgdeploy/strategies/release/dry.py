"""``pyinfra inventories/ENV.py deploys/release.py --dry`` (and ``deploys/blue_green.py``):
the plan of the deploy, not a list of operations that "may" run.

A release decides at run time (which hosts build, whether a snapshot is taken, whether the
commit is live already), so pyinfra's own dry run could only list operations without saying
which would run. Under ``--dry`` the deploy files add no operation: the first host prints
the plan ``bgdeploy deploy ENV --ref REF --plan`` prints (:mod:`bgdeploy.strategies.plan`),
read from the same facts, with the same ``--data`` (``ref``, ``force``,
``allow_destructive``), changing nothing on any host.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

from pyinfra import logger

from bgdeploy.core.settings import ROOT, Settings
from bgdeploy.strategies.release.run import current_host

_PRINTED: list[bool] = []


def dry_run(argv: list[str] | None = None) -> bool:
    """True when pyinfra was started with ``--dry``."""
    return "--dry" in (sys.argv if argv is None else argv)


def plan_command(settings: Settings, data: Any, strategy: str) -> list[str]:
    """The ``bgdeploy deploy ENV --plan`` command line for this run's ``--data``."""
    args = [sys.executable, "-c", "from bgdeploy.cli import main; main()", "deploy"]
    args += [settings.env, "--plan", "--strategy", strategy]
    ref = data.get("ref")
    if ref not in (None, ""):
        args += ["--ref", str(ref)]
    for key, option in (("force", "--force"), ("allow_destructive", "--allow-destructive")):
        if str(data.get(key, "")).lower() in ("true", "1", "yes"):
            args.append(option)
    return args


def print_plan(settings_factory: Callable[[], Settings], strategy: str) -> None:
    """Print the deploy's plan once (on the first host's pass through the deploy file)."""
    if _PRINTED:
        return
    _PRINTED.append(True)
    args = plan_command(settings_factory(), current_host().data, strategy)
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)
    logger.info("--> The plan (a dry run adds no operation; bgdeploy deploy ... --plan):")
    for line in (proc.stdout + proc.stderr).splitlines():
        logger.info(line)
    if proc.returncode != 0:
        logger.warning(f"the deploy would not go ahead (exit {proc.returncode})")
