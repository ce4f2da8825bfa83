"""The commit a deploy would ship: the one its ref names, whether it is on main, its flags.

================  ======================================================================
check             what is read, and when it fails or warns
================  ======================================================================
ref               the ref names exactly one commit of the repository (fail: none, or
                  several, such as a tag and a branch of one name on different commits)
main              the commit is reachable from ``origin/main``: the runbook merges to main
                  before deploying (warn when not)
feature flags     ``config/features.php`` of the commit against the live commit's
                  (:mod:`bgdeploy.checks.preflight.features`; warn only)
================  ======================================================================

:func:`release_advice` reads the last two through any way of running git in a fetched colour
(:data:`Git`): a deploy logs them, ``bgdeploy preflight`` shows them. :func:`split_files` reads
the files of a commit as :func:`bgdeploy.commands.show_files` prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from bgdeploy import commands
from bgdeploy.checks.preflight.features import FEATURES_FILE, check_flags
from bgdeploy.checks.preflight.report import FAIL, PASS, WARN, Check
from bgdeploy.core import refs
from bgdeploy.fleet.executor import CommandResult

MAIN_BRANCH = refs.MAIN_BRANCH
"""The branch every release is merged to first (runbook: "Merge to Main Branch")."""


def resolve_ref(
    ref: str, output: str, repository: str, host: str | None = None
) -> tuple[str | None, Check]:
    """Read :func:`bgdeploy.commands.git_resolve` output: (the one commit, the check).

    Fails when ``ref`` names no commit of ``repository``, or more than one (a tag and a
    branch of the same name on different commits).
    """
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        kind, _, sha = line.strip().partition(" ")
        if refs.FULL_SHA.match(sha):
            found.setdefault(sha, []).append(kind)
    if not found:
        message = f"ref {ref!r} is not a branch, tag or commit of {repository}"
        return None, Check("ref", FAIL, message, host)
    if len(found) > 1:
        names = "; ".join(f"{'/'.join(kinds)} {sha[:12]}" for sha, kinds in found.items())
        message = (
            f"ref {ref!r} names more than one commit ({names}): deploy the commit itself, "
            "or refs/tags/... or refs/heads/..."
        )
        return None, Check("ref", FAIL, message, host)
    sha, kinds = next(iter(found.items()))
    return sha, Check("ref", PASS, f"{'/'.join(kinds)} {ref} is commit {sha}", host, (sha,))


def check_on_main(answer: str, sha: str, host: str | None = None) -> Check:
    """Read :func:`bgdeploy.commands.git_is_ancestor` output (``yes``, ``no``, ``missing``)."""
    word = answer.strip().splitlines()[-1].strip() if answer.strip() else ""
    branch = f"origin/{MAIN_BRANCH}"
    if word == "yes":
        return Check("main", PASS, f"{sha[:12]} is reachable from {branch}", host)
    if word == "missing":
        return Check("main", WARN, f"the repository has no branch {MAIN_BRANCH}", host)
    return Check(
        "main",
        WARN,
        f"{sha[:12]} is not on {branch}: the runbook merges to {MAIN_BRANCH} before deploying",
        host,
    )


def _split_files(output: str) -> dict[str, str | None]:
    """Output of :func:`bgdeploy.commands.show_files` / ``show_optional_file``: path ->
    content (None for a file reported missing)."""
    files: dict[str, list[str] | None] = {}
    current: str | None = None
    for line in output.splitlines(keepends=True):
        if line.startswith("==> bgdeploy-file "):
            current = line.removeprefix("==> bgdeploy-file ").strip()
            files[current] = []
        elif line.startswith("==> bgdeploy-missing "):
            files[line.removeprefix("==> bgdeploy-missing ").strip()] = None
            current = None
        elif current is not None:
            content = files[current]
            assert content is not None
            content.append(line)
    return {path: None if lines is None else "".join(lines) for path, lines in files.items()}


def split_files(output: str) -> dict[str, str]:
    """Files printed by :func:`bgdeploy.commands.show_files`, by file name (no folder)."""
    return {
        path.rsplit("/", 1)[-1]: text
        for path, text in _split_files(output).items()
        if text is not None
    }


Git = Callable[[str], "CommandResult | tuple[bool, str, str]"]
"""Runs a command in a colour's checkout: (succeeded, stdout, stderr), e.g. a
:class:`bgdeploy.fleet.executor.CommandResult`."""


def release_advice(git: Git, sha: str, live_sha: str, today: date, host: str | None) -> list[Check]:
    """The checks that only warn, read with ``git`` in a fetched colour: ``sha`` on main, and
    ``config/features.php`` of ``sha`` against the one of ``live_sha``
    (:func:`~bgdeploy.checks.preflight.features.check_flags`). A deploy logs them;
    ``bgdeploy preflight`` shows them."""
    _, out, _ = git(commands.git_is_ancestor(sha, MAIN_BRANCH))
    checks = [check_on_main(out, sha, host)]
    sources: dict[str, str | None] = {}
    for key, commit in (("release", sha), ("live", live_sha)):
        if not commit or not refs.SHA.match(commit):
            sources[key] = None
            continue
        _, out, _ = git(commands.show_optional_file(commit, FEATURES_FILE))
        sources[key] = _split_files(out).get(FEATURES_FILE)
    checks.append(check_flags(sources["release"], sources["live"], today, host))
    return checks
