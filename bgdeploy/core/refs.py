"""Git refs that may be deployed: checked on the operator's machine, before any connection.

A ref names a branch (``main``), a tag (``v2.4.0``), a full ref (``refs/tags/v2.4.0``) or a
commit (``4f1c2e9``, at least 7 hex digits). :func:`validate_ref` refuses anything that could
reach a shell as something other than one word, or that git itself would refuse: shell
metacharacters, spaces, a leading ``-`` (an option to git), and git's ``check-ref-format``
rules (no ``..``, no ``@{``, no component starting with ``.`` or ending in ``.lock`` ...).

A ref that passes is still quoted wherever it reaches a shell; whether it exists in the
repository, and which single commit it names, is decided on the servers
(:mod:`bgdeploy.strategies.release`).

.. code:: python

    validate_ref("v2.4.0")            # "v2.4.0"
    validate_ref("main; rm -rf /")    # ConfigError: ... not allowed in a ref: ';', ' '
"""

from __future__ import annotations

import re

from bgdeploy.core.errors import ConfigError

MAIN_BRANCH = "main"
"""The branch every release is merged to first (runbook: "Merge to Main Branch")."""

MAX_LENGTH = 200
"""Longest ref accepted."""

ALLOWED = re.compile(r"^[A-Za-z0-9._/+@-]+\Z")
"""The characters a ref may use (anything else is refused, never escaped)."""

SHA = re.compile(r"^[0-9a-f]{7,64}\Z")
"""An abbreviated or full commit id (sha-1 or sha-256)."""

FULL_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?\Z")
"""A full commit id, as ``git rev-parse`` prints it."""


def validate_ref(ref: object) -> str:
    """Return ``ref`` when it may be deployed; raise :class:`ConfigError` saying why not.

    + ref: the branch, tag, full ref or commit to deploy (``--ref`` or ``--data ref=...``)

    The message names the first problem found and the rule it breaks, e.g. ``ref '-x' starts
    with '-': git would read it as an option``.
    """
    if not isinstance(ref, str):
        raise ConfigError(
            f"ref {ref!r} is not text: pass it quoted (--data 'ref=\"{ref}\"') so that "
            "pyinfra does not turn it into a number"
        )
    if not ref:
        raise ConfigError("ref is empty: give a branch, tag or commit")
    if len(ref) > MAX_LENGTH:
        raise ConfigError(f"ref is {len(ref)} characters long (at most {MAX_LENGTH})")
    bad = sorted({char for char in ref if not ALLOWED.match(char)})
    if bad:
        shown = ", ".join(repr(char) for char in bad)
        raise ConfigError(
            f"ref {ref!r} is refused: {shown} not allowed in a ref "
            "(letters, digits and . _ / + @ - only)"
        )
    if ref.startswith("-"):
        raise ConfigError(f"ref {ref!r} starts with '-': git would read it as an option")
    problem = _check_ref_format(ref)
    if problem:
        raise ConfigError(f"ref {ref!r} is not a valid git ref: {problem}")
    if ref == "HEAD" or ref.endswith("/HEAD"):
        raise ConfigError(f"ref {ref!r} is refused: name a branch, tag or commit, not HEAD")
    return ref


def _check_ref_format(ref: str) -> str | None:
    """The rule of ``git check-ref-format --allow-onelevel`` that ``ref`` breaks, or None."""
    if ref == "@":
        return "'@' alone is not a ref"
    if "@{" in ref:
        return "it contains '@{'"
    if ".." in ref:
        return "it contains '..'"
    if ref.startswith("/") or ref.endswith("/"):
        return "it starts or ends with '/'"
    if "//" in ref:
        return "it contains '//'"
    if ref.endswith("."):
        return "it ends with '.'"
    for component in ref.split("/"):
        if component.startswith("."):
            return f"the component {component!r} starts with '.'"
        if component.endswith(".lock"):
            return f"the component {component!r} ends with '.lock'"
    return None


def is_sha(ref: str) -> bool:
    """True when ``ref`` looks like a commit id (7 to 64 lower-case hex digits)."""
    return bool(SHA.match(ref))


def short(sha: str | None) -> str:
    """The first 12 characters of a commit id, or ``-``."""
    return sha[:12] if sha else "-"
