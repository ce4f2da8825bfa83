"""Hooks: the operator's own steps at fixed points of a deploy, without editing bgdeploy.

A Sentry release marker, a CDN purge, a message in another chat tool: each is an executable
the operator provides. Hooks run on the operator's machine (where ``bgdeploy`` runs), one
after the other, at five stages:

``pre-deploy``
    Before a deploy touches any host. A failing pre-deploy hook (exit not 0, or over its
    time) stops the deploy: exit 3, nothing changed anywhere.
``post-deploy``, ``post-switch``, ``post-rollback``
    After a deploy that succeeded (or a promoted canary), a ``bgdeploy switch``, a
    ``bgdeploy rollback``. A failure is reported (a line in the output), never undoes them.
``on-failure``
    After a deploy that failed or was rolled back automatically.

Where they come from, in this order: the executables in ``hooks/STAGE/`` of the deploy
repository (sorted by name; files that are not executable are skipped and said so), then the
paths in group_data ``hooks`` (``{"post-deploy": ["scripts/sentry-release"]}``, relative to
the deploy repository). Each runs with the operator's environment plus:

``BGDEPLOY_STAGE``, ``BGDEPLOY_ENV``, ``BGDEPLOY_REF``, ``BGDEPLOY_RELEASE`` (the commit),
``BGDEPLOY_STRATEGY``, ``BGDEPLOY_COLOUR`` (the colour that serves after it),
``BGDEPLOY_RUN_ID``, ``BGDEPLOY_RESULT`` (after a deploy ``succeeded``, ``promoted``,
``failed`` or ``rolled_back``; ``ok`` after a switch or a rollback; empty before a deploy),
``BGDEPLOY_CANARY`` (the percentage, when a canary ran).

Each hook has ``hook_timeout`` seconds (group_data, default 60); its output is shown after
its name, its last lines when it fails. ``hooks/examples/sentry-release`` posts a release
marker to Sentry's releases API.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bgdeploy.core.errors import ConfigError, PolicyRefusal
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.settings import HOOK_STAGES, ROOT

STAGES = HOOK_STAGES
"""Where a hook can run."""

DEFAULT_TIMEOUT = 60.0
"""Seconds a hook may take when group_data sets no ``hook_timeout``."""

OUTPUT_LINES = 8
"""How many of a failed hook's last output lines are shown."""


@dataclass(frozen=True)
class Context:
    """What a hook is told about the deploy (its ``BGDEPLOY_*`` environment)."""

    env: str
    ref: str = ""
    release: str = ""
    strategy: str = ""
    colour: str = ""
    run_id: str = ""
    result: str = ""
    canary: float | None = None

    def variables(self, stage: str) -> dict[str, str]:
        found = {
            "BGDEPLOY_STAGE": stage,
            "BGDEPLOY_ENV": self.env,
            "BGDEPLOY_REF": self.ref,
            "BGDEPLOY_RELEASE": self.release,
            "BGDEPLOY_STRATEGY": self.strategy,
            "BGDEPLOY_COLOUR": self.colour,
            "BGDEPLOY_RUN_ID": self.run_id,
            "BGDEPLOY_RESULT": self.result,
        }
        if self.canary is not None:
            found["BGDEPLOY_CANARY"] = f"{self.canary:g}"
        return found


@dataclass
class HookResult:
    """One hook's run: its path, exit code (None: it could not run or ran out of time)."""

    path: str
    code: int | None
    seconds: float
    output: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 0

    def line(self, stage: str) -> str:
        """``hook post-deploy sentry-release: ok (0.4 s)`` or its failure and last lines."""
        name = Path(self.path).name
        if self.ok:
            return f"hook {stage} {name}: ok ({self.seconds:.1f} s)"
        why = self.problem or f"exit {self.code}"
        tail = "\n".join(f"    {x}" for x in self.output.strip().splitlines()[-OUTPUT_LINES:])
        return f"hook {stage} {name}: FAILED ({why})" + (f"\n{tail}" if tail else "")


@dataclass
class StageResult:
    """Every hook of one stage, in the order they ran (a pre-deploy stage stops at the first
    failure)."""

    stage: str
    results: list[HookResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.results)


def find(stage: str, root: Path, configured: Mapping[str, Sequence[str]] | None) -> list[Path]:
    """The hooks of ``stage``: ``root/hooks/STAGE/*`` (sorted) then group_data's paths.
    Raises :class:`ConfigError` for an unknown stage or a configured path that is missing."""
    if stage not in STAGES:
        raise ConfigError(f"hook stage {stage!r} is not one of {', '.join(STAGES)}")
    directory = root / "hooks" / stage
    found = sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
    for entry in (configured or {}).get(stage, []):
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        if not path.is_file():
            raise ConfigError(f"group_data hooks[{stage!r}]: {entry!r} is not a file")
        found.append(path)
    return found


def run_stage(
    stage: str,
    context: Context,
    configured: Mapping[str, Sequence[str]] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: Progress = quiet,
    environ: Mapping[str, str] | None = None,
    root: Path = ROOT,
) -> StageResult:
    """Run the hooks of ``stage`` (see the module; ``configured`` and ``timeout`` are
    group_data's ``hooks`` and ``hook_timeout``, ``root`` the deploy repository). Never raises
    for a failing hook; a pre-deploy stage stops at its first failure. :func:`refuse_unless_ok`
    turns that into the deploy's refusal."""
    outcome = StageResult(stage)
    variables = {**(os.environ if environ is None else environ), **context.variables(stage)}
    for path in find(stage, root, configured):
        if not os.access(path, os.X_OK):
            outcome.skipped.append(str(path))
            progress(f"hook {stage} {path.name}: skipped (not executable: chmod +x {path})")
            continue
        result = run_process([str(path)], variables, timeout, root)
        outcome.results.append(result)
        progress(result.line(stage))
        if stage == "pre-deploy" and not result.ok:
            break
    return outcome


def refuse_unless_ok(outcome: StageResult) -> None:
    """A failed pre-deploy hook stops the deploy: :class:`PolicyRefusal` (exit 3)."""
    failed = [result for result in outcome.results if not result.ok]
    if failed:
        raise PolicyRefusal(
            f"pre-deploy hook {Path(failed[0].path).name} failed "
            f"({failed[0].problem or f'exit {failed[0].code}'}): nothing was changed"
        )


def run_process(
    argv: Sequence[str], variables: Mapping[str, str], timeout: float, root: Path
) -> HookResult:
    """Run one hook (or any command of the operator's: ``bgdeploy ship``'s staging checks) in
    ``root``, in a session of its own: over its time, it and every process it started are
    killed (none is left holding its output open). Never raises."""
    path = argv[0]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv), cwd=root, env=dict(variables), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    except OSError as error:
        return HookResult(str(path), None, time.monotonic() - started, "", str(error))
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return HookResult(str(path), None, time.monotonic() - started, output,
                          f"still running after {timeout:g} s: stopped")  # fmt: skip
    return HookResult(str(path), proc.returncode, time.monotonic() - started, output)
