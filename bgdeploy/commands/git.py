"""git in a colour's checkout: fetch, resolve a ref, check out a commit, read files of it.

Each colour (``<app_root>/blue``, ``<app_root>/green``) is a git repository of the app, its
shared ``storage/`` left out of the checkout. Commands run in the current directory (wrap them
with :func:`~bgdeploy.commands.shell.in_dir`); commit ids are checked (7 to 64 hex digits),
refs validated by :mod:`bgdeploy.core.refs`, paths checked before they reach git.

- :func:`git_ensure_repo`, :func:`git_fetch`, :func:`git_fetch_missing`: the repository and
  ``origin``'s branches and tags
- :func:`git_resolve`, :func:`git_resolve_or_fetch`, :func:`git_is_ancestor`: what a ref names
- :func:`git_checkout`, :func:`git_force_checkout`: exactly one commit, detached
- :func:`git_changed_files`, :func:`migration_files`, :func:`show_files`,
  :func:`show_optional_file`: what a commit holds (the migration scanner reads them)
- :func:`mark_built`, :func:`unmark_built`: the stamp (``.git/bgdeploy-built``) that says a
  checkout is built and verified at a commit
- ``code_delivery = "push"`` (:mod:`bgdeploy.fleet.delivery`): :func:`git_cache_repo` and
  :func:`git_bundle_create` in the operator's cache clone, :func:`git_delivery_query` and
  :func:`git_receive_bundle` in a colour on the host

Example::

    in_dir(colour_dir, join(git_fetch_missing(sha), git_checkout(sha)))
"""

from __future__ import annotations

import re

from bgdeploy.commands.shell import join, q
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.refs import is_sha, validate_ref

SHA_WORD = re.compile(r"^[0-9a-f]{7,64}\Z")


MIGRATION_PATH = re.compile(r"^database/migrations/[A-Za-z0-9_.-]+\.php\Z")


def _sha(sha: str) -> str:
    if not SHA_WORD.match(sha):
        raise ConfigError(f"commit id {sha!r} is not valid")
    return sha


def git_ensure_repo(repository: str) -> str:
    """In the current directory: a git repository whose ``origin`` is ``repository``, with the
    shared ``storage/`` left out of its checkout (a sparse checkout), so the link to
    ``shared/storage`` is never touched by git."""
    sparse = "printf '%s\\n' '/*' '!/storage/' > .git/info/sparse-checkout"
    return (
        f"{{ [ -d .git ] || {{ git init -q && git config core.sparseCheckout true && "
        f"mkdir -p .git/info && {sparse}; }}; }} && "
        f"{{ git remote set-url origin {q(repository)} 2>/dev/null || "
        f"git remote add origin {q(repository)}; }}"
    )


def git_fetch() -> str:
    """Fetch every branch and tag of ``origin`` into the current repository (tags forced:
    a moved tag is followed)."""
    return "git fetch -q --prune --force --tags origin '+refs/heads/*:refs/remotes/origin/*'"


def git_resolve(ref: str) -> str:
    """Print each commit ``ref`` names in the current repository, one ``kind sha`` per line:
    ``tag``, ``branch`` (``origin``'s), ``full`` (a full ref name) or ``commit`` (a sha)."""
    validate_ref(ref)
    checks: list[tuple[str, str]] = []
    if ref.startswith("refs/heads/"):
        checks.append(("branch", "refs/remotes/origin/" + ref.removeprefix("refs/heads/")))
    elif ref.startswith("refs/"):
        checks.append(("full", ref))
    else:
        checks += [("tag", f"refs/tags/{ref}"), ("branch", f"refs/remotes/origin/{ref}")]
        if is_sha(ref):
            checks.append(("commit", ref))
    return (
        "; ".join(
            f's=$(git rev-parse -q --verify {q(name + "^{commit}")}) && echo {kind} "$s"'
            for kind, name in checks
        )
        + "; true"
    )


def git_resolve_or_fetch(ref: str) -> str:
    """:func:`git_resolve`, and when the repository does not know ``ref``, :func:`git_fetch`
    first and again (``bgdeploy rollback --to REF`` naming a release never fetched here)."""
    resolve = git_resolve(ref)
    return (
        f'out=$({resolve}); if [ -z "$out" ]; then {git_fetch()} >&2; out=$({resolve}); fi; '
        'echo "$out"'
    )


def git_fetch_missing(sha: str) -> str:
    """:func:`git_fetch` unless the current repository already has commit ``sha``."""
    return f"git cat-file -e {_sha(sha)}^{{commit}} 2>/dev/null || {git_fetch()}"


def git_trailers(sha: str) -> str:
    """Print the trailers of commit ``sha``'s message (``Reviewed-by: Name <mail>``), one per
    line, folded lines joined (:func:`bgdeploy.core.approvals.parse_trailers` reads them)."""
    return f"git log -1 {q('--format=%(trailers:only,unfold)')} {_sha(sha)}"


def git_checkout(sha: str) -> str:
    """Check out exactly ``sha`` (detached) in the current repository. Local changes to
    tracked files make it fail rather than be lost."""
    return f"git -c advice.detachedHead=false checkout -q --detach {_sha(sha)}"


def git_force_checkout(sha: str) -> str:
    """Check out ``sha`` over whatever a failed deploy left (restoring the previous release)."""
    return f"git -c advice.detachedHead=false checkout -q -f --detach {_sha(sha)}"


def git_is_ancestor(sha: str, branch: str) -> str:
    """Print ``yes`` when commit ``sha`` is reachable from ``origin``'s ``branch``, ``no`` when
    not, ``missing`` when ``origin`` has no such branch (current repository)."""
    validate_ref(branch)
    tip = q(f"refs/remotes/origin/{branch}")
    return (
        f"if ! git rev-parse -q --verify {tip} >/dev/null; then echo missing; "
        f"elif git merge-base --is-ancestor {_sha(sha)} {tip}; then echo yes; else echo no; fi"
    )


REPO_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\Z")


def _repo_path(path: str, what: str) -> str:
    """``path`` inside the repository, checked: no leading ``/`` or ``.``, no ``..``."""
    if not REPO_PATH.match(path) or ".." in path:
        raise ConfigError(f"{what} {path!r} is not valid")
    return path


def git_changed_files(base: str, sha: str, directory: str) -> str:
    """``git diff --name-status BASE SHA -- DIRECTORY/``: files added (A), modified (M) or
    deleted (D) from commit ``base`` to ``sha`` (current repository)."""
    _repo_path(directory, "directory")
    return f"git diff --no-renames --name-status {_sha(base)} {_sha(sha)} -- {q(directory + '/')}"


def migration_files(sha: str) -> str:
    """List the migration files of commit ``sha`` (current repository)."""
    return f"git ls-tree --name-only {_sha(sha)} database/migrations/"


def show_files(sha: str, paths: list[str]) -> str:
    """Print files of commit ``sha``, each after a line ``==> bgdeploy-file PATH``."""
    parts = []
    for path in paths:
        if not MIGRATION_PATH.match(path):
            raise ConfigError(f"migration path {path!r} is not valid")
        parts.append(f"echo {q('==> bgdeploy-file ' + path)} && git show {q(sha + ':' + path)}")
    _sha(sha)
    return join(*parts) if parts else "true"


def show_optional_file(sha: str, path: str) -> str:
    """Print file ``path`` of commit ``sha`` after a line ``==> bgdeploy-file PATH``, or only
    ``==> bgdeploy-missing PATH`` when that commit has no such file."""
    _repo_path(path, "file path")
    spec = q(f"{_sha(sha)}:{path}")
    return (
        f"if git cat-file -e {spec} 2>/dev/null; then echo {q('==> bgdeploy-file ' + path)} "
        f"&& git show {spec}; else echo {q('==> bgdeploy-missing ' + path)}; fi"
    )


def mark_built(directory: str, sha: str) -> str:
    """Record that ``directory`` is built and healthy at ``sha`` (``.git/bgdeploy-built``):
    deploying that commit again is then a no-op. A checkout whose build failed is never
    marked, so deploying it again rebuilds it."""
    return f"printf '%s\\n' {_sha(sha)} > {q(directory + '/.git/bgdeploy-built')}"


def unmark_built(directory: str) -> str:
    """Forget that ``directory`` was built and verified (a release rolled back from, or that
    failed once live): it is then never switched or rolled back to until it is deployed
    again."""
    return f"rm -f {q(directory + '/.git/bgdeploy-built')}"


# code_delivery = "push": the operator's cache clone sends a colour a bundle of what it lacks.

RELEASE_REF = "refs/bgdeploy/release"
"""The ref a pushed release's commit travels under (in the cache clone and on the host)."""

BUNDLE_FILE = ".git/bgdeploy-delivery.bundle"
"""Where a colour keeps a bundle while it fetches from it (relative to the colour)."""


def git_cache_repo(repository: str) -> str:
    """In the current directory (the operator's cache clone): a bare repository whose
    ``origin`` is ``repository``; :func:`git_fetch` then fetches it as a host would."""
    return (
        "{ [ -f HEAD ] || git init -q --bare; } && "
        f"{{ git remote set-url origin {q(repository)} 2>/dev/null || "
        f"git remote add origin {q(repository)}; }}"
    )


def git_bundle_create(path: str, names: list[str], haves: list[str]) -> str:
    """Write a bundle of the refs ``names`` (full ref names) to ``path``, leaving out what
    the commits ``haves`` already hold (current repository)."""
    for name in names:
        if name != RELEASE_REF and not name.startswith("refs/remotes/origin/"):
            raise ConfigError(f"ref {name!r} is not one a delivery sends")
        validate_ref(name)
    excluded = " ".join(_sha(sha) for sha in haves)
    return f"git bundle create -q {q(path)} {' '.join(q(name) for name in names)}" + (
        f" --not {excluded}" if excluded else ""
    )


def git_delivery_query(shas: list[str]) -> str:
    """What a colour's repository holds, before a bundle is made for it (current
    repository): ``have=SHA`` for each of ``shas`` it has, then ``tip=SHA`` for each of its
    refs and its HEAD (a bundle leaves out what they hold)."""
    checks = "".join(
        f"if git cat-file -e {_sha(sha)}^{{commit}} 2>/dev/null; then echo have={sha}; fi; "
        for sha in shas
    )
    return (
        f"{checks}git for-each-ref --format='tip=%(objectname)'; "
        'echo "tip=$(git rev-parse -q --verify HEAD)"'
    )


def git_receive_bundle(names: list[str], sha: str, main: tuple[str, str] | None) -> str:
    """In a colour (current directory): read a base64 bundle of the refs ``names`` from stdin
    (none: nothing to read), fetch them from it and remove it; point :data:`RELEASE_REF` at
    ``sha`` and ``main`` (``(branch, sha)``) at its commit, then print ``delivered=`` the
    commit ``sha`` names here (empty when it is missing): the operator compares it."""
    _sha(sha)
    steps = []
    if names:
        specs = " ".join(q(f"+{name}:{name}") for name in names)
        steps.append(
            f"{{ base64 -d > {BUNDLE_FILE} && git fetch -q {BUNDLE_FILE} {specs}; }}; "
            f"s=$?; rm -f {BUNDLE_FILE}; [ $s = 0 ]"
        )
    steps.append(f"git update-ref {RELEASE_REF} {sha}")
    if main is not None:
        branch, tip = main
        ref = q("refs/remotes/origin/" + validate_ref(branch))
        steps.append(f"git update-ref {ref} {_sha(tip)}")
    verify = f'echo "delivered=$(git rev-parse -q --verify {sha}^{{commit}})"'
    return " && ".join(steps) + f" && {verify}"
