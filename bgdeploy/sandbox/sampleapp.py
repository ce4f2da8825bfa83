"""The sample BideshGomon application and its git history, for the demo and the tests.

``sandbox/app/`` is a small but real Laravel 8 application on Debian's ``php-laravel-framework``
package, shaped like the platform: ``/api/health`` in the runbook's format, a bearer-token API,
migrations, feature flags, a queued job, a scheduled command, and ``X-Release`` / ``X-Colour``
headers on every response. ``sandbox/app-v2/`` holds the files that release v2 adds or replaces
(an additive migration, a new home page heading).

:func:`build_repository` turns them into a bare git repository whose branch ``main`` has two
commits, tagged ``v1`` and ``v2``; the targets clone and fetch from it. The commits have fixed
authors and dates, and git's user and system configuration are ignored, so the shas are the same
on every machine. :func:`add_commit` adds a commit to such a repository (tests use it to ship a
release that breaks a migration or the health check).

Example:

.. code:: python

    from pathlib import Path
    from bgdeploy.sandbox import sampleapp

    shas = sampleapp.build_repository(Path("/tmp/app.git"))   # {"v1": "...", "v2": "..."}
    broken = sampleapp.add_commit(
        Path("/tmp/app.git"),
        {"app/Http/Controllers/HealthController.php": "<?php throw new Exception('boom');"},
        "Break the health check",
        tag="v3",
    )

From a shell: ``python -m bgdeploy.sandbox.sampleapp DEST`` builds DEST and prints the shas as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.settings import ROOT

REPO_ROOT = ROOT
"""The bgdeploy source tree (where ``sandbox/`` lives)."""

APP_DIR = REPO_ROOT / "sandbox" / "app"
"""The application as of release v1."""

V2_DIR = REPO_ROOT / "sandbox" / "app-v2"
"""Files that release v2 adds or replaces, as an overlay on :data:`APP_DIR`."""

BRANCH = "main"
"""The branch the releases are on."""

AUTHOR_NAME = "BideshGomon Release Bot"
AUTHOR_EMAIL = "releases@bideshgomon.invalid"

RELEASES: tuple[tuple[str, str, str], ...] = (
    ("v1", "2025-06-01T10:00:00+00:00", "BideshGomon v1: visa applications, health, feature flags"),
    ("v2", "2025-07-01T10:00:00+00:00", "BideshGomon v2: passport country, new home page"),
)
"""(tag, commit date, commit message) of each release, oldest first."""

EXECUTABLES = frozenset({"artisan"})
"""Paths (relative to the app root) committed with mode 755; every other file is 644."""

COPY_IGNORE = ("vendor", "node_modules", ".git", "__pycache__")
"""Directories never copied from the source tree (the app's .gitignore covers the rest)."""

GIT_CONFIG = (
    f"user.name={AUTHOR_NAME}",
    f"user.email={AUTHOR_EMAIL}",
    f"init.defaultBranch={BRANCH}",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "core.autocrlf=false",
    "core.fileMode=true",
    "core.hooksPath=/dev/null",
    "gc.auto=0",
)
"""``git -c`` settings that replace whatever the user's configuration says."""

ADD_COMMIT_STEP = 3600
"""Seconds between a parent commit's date and the date :func:`add_commit` gives its child."""


def build_repository(dest: Path) -> dict[str, str]:
    """Create the sample app's bare git repository at ``dest``; return ``{"v1": sha, "v2": sha}``.

    ``dest`` must not exist or be an empty directory. Branch ``main`` gets one commit per
    release: v1 is the tree of :data:`APP_DIR`, v2 adds the overlay :data:`V2_DIR`; each commit
    has a lightweight tag of the release name, so ``git rev-parse v1`` is the commit sha (the
    ``X-Release`` header of a checkout of v1). Files the app's ``.gitignore`` lists (``vendor/``,
    ``.env``, ``public/build`` ...) are left out, ``artisan`` is executable.

    Authors, committers and dates are fixed and git's system and global configuration are
    ignored: the shas are the same on every machine, as long as the sources are.

    The repository is readable by every user (``core.sharedRepository=0644``), so that
    containers mounting it under another uid can clone from it.

    Raises :class:`~bgdeploy.core.errors.ConfigError` when ``dest`` is in use or a source directory
    is missing, :class:`~bgdeploy.core.errors.OperationFailed` when git fails.
    """
    for source in (APP_DIR, V2_DIR):
        if not source.is_dir():
            raise ConfigError(f"sample app sources not found: {source} is missing")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} already exists and is not empty: choose a new path")

    shas: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bgdeploy-sampleapp-") as tmp:
        scratch = Path(tmp)
        work = scratch / "work"
        work.mkdir()
        _git(scratch, "init", "--quiet", "--bare", "--shared=0644", str(dest))
        layers = (APP_DIR, V2_DIR)
        for (tag, date, message), layer in zip(RELEASES, layers, strict=True):
            _copy_tree(layer, work)
            _normalise_modes(work)
            env = {
                "GIT_DIR": str(dest),
                "GIT_WORK_TREE": str(work),
                "GIT_INDEX_FILE": str(scratch / "index"),
            }
            _git(scratch, "add", "--all", env=env, cwd=work)
            _git(scratch, "commit", "--quiet", "--no-verify", "-m", message, env=env, date=date)
            sha = _git(scratch, "rev-parse", "--verify", "HEAD", env=env)
            _git(scratch, "tag", tag, sha, env=env)
            shas[tag] = sha
    return shas


def add_commit(
    repo: Path,
    files: Mapping[str, str | None],
    message: str,
    tag: str | None = None,
    parent: str = BRANCH,
    branch: str | None = None,
) -> str:
    """Commit file changes on top of ``parent`` in the bare repository ``repo``; return the sha.

    ``files`` maps paths relative to the app root to their new content (UTF-8 text), or to
    ``None`` to delete the file. Files keep their mode (``artisan`` stays executable; new files
    are 644). ``parent`` is a branch, tag or sha of ``repo``.

    The commit goes onto ``branch``: by default ``parent`` itself when it names a branch (so
    ``add_commit(repo, {...}, "msg")`` advances ``main``). When ``parent`` is a tag or a sha,
    give ``branch`` or ``tag``: the branch is created or moved (even backwards) to the new
    commit. ``tag``, when given, is a new lightweight tag on it.

    The commit is made with git plumbing on a temporary index (no checkout); its date is one
    hour after its parent's, with the same fixed author as :func:`build_repository`, so the
    same call on the same repository gives the same sha.

    Raises :class:`~bgdeploy.core.errors.ConfigError` on a bad path, an unknown parent, an existing
    tag or a commit that no branch or tag would reach,
    :class:`~bgdeploy.core.errors.OperationFailed`
    when git fails.
    """
    repo = Path(repo)
    if not (repo / "HEAD").is_file() or not (repo / "objects").is_dir():
        raise ConfigError(f"add_commit: {repo} is not a bare git repository")
    if not files:
        raise ConfigError("add_commit: no file changes given")
    for path in files:
        _check_path(path)
    with tempfile.TemporaryDirectory(prefix="bgdeploy-sampleapp-") as tmp:
        scratch = Path(tmp)
        env = {"GIT_DIR": str(repo), "GIT_INDEX_FILE": str(scratch / "index")}
        parent_sha = _resolve(scratch, env, parent)
        if branch is None and _resolve(scratch, env, f"refs/heads/{parent}", quiet=True):
            branch = parent
        if branch is None and tag is None:
            raise ConfigError(
                f"add_commit: parent {parent!r} is not a branch: give branch= or tag= "
                "so that the new commit is reachable"
            )
        if tag is not None and _resolve(scratch, env, f"refs/tags/{tag}", quiet=True):
            raise ConfigError(f"add_commit: tag {tag!r} already exists in {repo}")
        for name, namespace in ((branch, "refs/heads"), (tag, "refs/tags")):
            if name is not None:
                _git(scratch, "check-ref-format", f"{namespace}/{name}", env=env, what="ref name")

        _git(scratch, "read-tree", parent_sha, env=env)
        modes = _index_modes(scratch, env)
        entries: list[str] = []
        for path, content in sorted(files.items()):
            if content is None:
                if path not in modes:
                    raise ConfigError(f"add_commit: cannot delete {path}: not in {parent}")
                entries.append(f"0 {'0' * 40}\t{path}")
                continue
            parents = [str(p) for p in PurePosixPath(path).parents][:-1]
            if any(p in modes for p in parents) or any(m.startswith(f"{path}/") for m in modes):
                raise ConfigError(f"add_commit: {path} would replace a directory or a file")
            blob = _git(scratch, "hash-object", "-w", "--stdin", env=env, stdin=content.encode())
            entries.append(f"{modes.get(path, '100644')} {blob}\t{path}")
        listing = "".join(f"{entry}\0" for entry in entries).encode()
        _git(scratch, "update-index", "-z", "--index-info", env=env, stdin=listing)
        tree = _git(scratch, "write-tree", env=env)

        parent_time = int(_git(scratch, "show", "-s", "--format=%ct", parent_sha, env=env))
        date = f"{parent_time + ADD_COMMIT_STEP} +0000"
        sha = _git(
            scratch, "commit-tree", tree, "-p", parent_sha, "-m", message, env=env, date=date
        )
        if branch is not None:
            _git(
                scratch,
                "update-ref",
                "-m",
                f"add_commit: {message}",
                f"refs/heads/{branch}",
                sha,
                env=env,
            )
        if tag is not None:
            _git(scratch, "tag", tag, sha, env=env)
    return sha


def _copy_tree(source: Path, dest: Path) -> None:
    """Copy ``source`` over ``dest`` (files replaced, nothing deleted), skipping build output."""
    shutil.copytree(
        source,
        dest,
        symlinks=True,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(*COPY_IGNORE),
    )


def _normalise_modes(root: Path) -> None:
    """644 for files, 755 for :data:`EXECUTABLES`: the checkout's own modes do not leak in."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            relative = path.relative_to(root).as_posix()
            path.chmod(0o755 if relative in EXECUTABLES else 0o644)


def _check_path(path: str) -> None:
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or "\\" in path
        or any(ord(char) < 32 or ord(char) == 127 for char in path)
        or any(part in ("", ".", "..", ".git") for part in path.split("/"))
    ):
        raise ConfigError(f"add_commit: bad path {path!r}: give a relative path inside the app")


def _index_modes(scratch: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Path -> mode ("100644", "100755", "120000") of every entry in the temporary index."""
    listing = _git(scratch, "ls-files", "--stage", "-z", env=env, strip=False)
    modes: dict[str, str] = {}
    for entry in listing.split("\0"):
        if entry:
            info, path = entry.split("\t", 1)
            modes[path] = info.split(" ", 1)[0]
    return modes


def _resolve(scratch: Path, env: Mapping[str, str], ref: str, quiet: bool = False) -> str:
    """The commit sha ``ref`` names, or "" when ``quiet`` and it names none."""
    try:
        return _git(scratch, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", env=env)
    except OperationFailed:
        if quiet:
            return ""
        raise ConfigError(
            f"add_commit: {ref!r} is not a branch, tag or commit of the repository"
        ) from None


def _git_environment(scratch: Path, env: Mapping[str, str], date: str | None) -> dict[str, str]:
    """The process environment for git: no user or system config, fixed identity and dates."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    clean.update(
        HOME=str(scratch),
        XDG_CONFIG_HOME=str(scratch / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=AUTHOR_EMAIL,
        LC_ALL="C",
        TZ="UTC",
    )
    if date is not None:
        clean.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    clean.update(env)
    return clean


def _git(
    scratch: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    date: str | None = None,
    stdin: bytes | None = None,
    strip: bool = True,
    what: str | None = None,
    cwd: Path | None = None,
) -> str:
    """Run git with an argument list (no shell); return its standard output.

    ``scratch`` is a private temporary directory (git's HOME); ``cwd`` defaults to it. ``what``
    names the value being checked: a failure is then a :class:`ConfigError` about it.
    """
    command = ["git"]
    for setting in GIT_CONFIG:
        command += ["-c", setting]
    command += list(args)
    try:
        result = subprocess.run(
            command,
            cwd=cwd or scratch,
            env=_git_environment(scratch, env or {}, date),
            input=stdin,
            capture_output=True,
            check=False,
        )
    except FileNotFoundError as error:
        raise OperationFailed("git is not installed: install it (apt-get install git)") from error
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace").strip()
        if what is not None:
            raise ConfigError(f"bad {what}: {stderr or 'refused by git'}")
        raise OperationFailed(f"git {args[0]} failed (exit {result.returncode}): {stderr}")
    out = result.stdout.decode(errors="replace")
    return out.strip() if strip else out


def main(argv: list[str] | None = None) -> int:
    """``python -m bgdeploy.sandbox.sampleapp DEST``: build the repository, print the shas as
    JSON."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bgdeploy.sandbox.sampleapp DEST", file=sys.stderr)
        return 2
    try:
        shas = build_repository(Path(args[0]))
    except (ConfigError, OperationFailed) as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(json.dumps(shas))
    return 0


if __name__ == "__main__":
    sys.exit(main())
