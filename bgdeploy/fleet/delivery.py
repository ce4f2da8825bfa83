"""How a release's commit reaches a web host: ``code_delivery = "fetch"`` or ``"push"``.

``fetch`` (the default)
    every web host fetches ``repository`` itself into the colour's ``.git`` (every branch and
    tag, as the runbook's ``git pull``), and refs are resolved there. The host needs a
    credential for the repository: a deploy key of its own, or the operator's key through SSH
    agent forwarding (``ssh_forward_agent``).
``push``
    the operator's machine fetches ``repository`` into a cache clone of its own
    (``$BGDEPLOY_STATE_DIR/repositories/``, default ``~/.local/state/bgdeploy``), resolves
    the ref there, once, and sends each web host a git bundle of what that colour lacks (the
    release's commit and ``origin/main``, without what the colour's refs already hold), base64
    on the stdin of a command over the SSH connection the deploy already holds. The host
    fetches from the bundle (git checks every object) and the commit id is compared there
    before anything is checked out. The hosts need no credential and no route to the
    repository.

Everything that brings code onto a host or reads a ref goes through :class:`Delivery`, so
a deploy (in place, blue-green, canary), ``bgdeploy preflight`` and ``bgdeploy rollback --to``
work the same in both modes:

- :meth:`Delivery.facts_command` and :meth:`Delivery.fetch_error`: a web host's release facts
  (:func:`bgdeploy.commands.release_facts`), with the fetch when hosts fetch;
- :meth:`Delivery.resolve`: the commits a ref names (``kind sha`` lines of
  :func:`bgdeploy.commands.git_resolve`), on the host or in the cache clone;
- :meth:`Delivery.ensure`: commit ``sha`` present in a colour's repository on a host, checked
  by its id there; ``""`` or why not.

Example::

    delivery = Delivery(settings)
    _, out, _ = delivery.resolve("v2", git_on_host)
    why = delivery.ensure(lambda command, stdin=None: host.run(command, stdin=stdin), colour, sha)
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bgdeploy import commands
from bgdeploy.core import refs
from bgdeploy.core.errors import OperationFailed
from bgdeploy.core.explain import explain
from bgdeploy.core.settings import Settings, state_root

Run = Callable[..., Any]
"""Runs one command on one host: ``run(command, stdin=None)`` -> (succeeded, stdout, stderr),
e.g. a :class:`bgdeploy.fleet.executor.CommandResult`."""

Git = Callable[[str], Any]
"""Runs a command in a colour's checkout on a host: (succeeded, stdout, stderr)."""

LOCAL_TIMEOUT = 1800.0
"""Seconds one git command on the operator's machine may take (a first clone)."""
LOCK_TIMEOUT = 600.0
"""Seconds to wait for another bgdeploy process using the same cache clone."""

_FETCHED: set[str] = set()
"""Cache clones fetched by this process: a process fetches its repository once."""
_FETCHING = threading.Lock()


def cache_dir(repository: str, root: Path | None = None) -> Path:
    """The operator's cache clone of ``repository``: a bare repository under
    ``$BGDEPLOY_STATE_DIR/repositories/``, named after the repository and a hash of it."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", repository.rstrip("/").rsplit("/", 1)[-1])[:40]
    digest = hashlib.sha256(repository.encode()).hexdigest()[:12]
    return (root or state_root() / "repositories") / f"{slug.strip('-.') or 'repo'}-{digest}"


class Delivery:
    """The code delivery of one environment (``settings``: a web host's settings)."""

    def __init__(self, settings: Settings, cache_root: Path | None = None) -> None:
        self.pushes = settings.code_delivery == "push"
        self.repository = settings.repository
        self.cache = cache_dir(settings.repository, cache_root)

    # On the hosts -------------------------------------------------------------------------

    def facts_command(self, app_root: str, idle: bool, secrets: tuple[str, ...]) -> str:
        """:func:`bgdeploy.commands.release_facts` of the live (or ``idle``) colour: with the
        fetch of ``repository`` when hosts fetch, without when the operator pushes."""
        return commands.release_facts(app_root, self.repository, idle, secrets, not self.pushes)

    def fetch_error(self, facts: dict[str, Any], out: str, err: str) -> str:
        """Why the facts command's fetch failed (``""`` when it did not), naming the
        repository: a host that cannot reach it, or lacks the credential, says so here."""
        if facts.get("fetch") == ("skipped" if self.pushes else "ok"):
            return ""
        why = explain(out, err)
        if self.pushes:
            return f"the colour's repository could not be prepared: {why}"
        return f"git fetch from {self.repository} failed: {why}"

    def resolve(self, ref: str, git: Git, fetch_unknown: bool = False) -> tuple[bool, str, str]:
        """The commits ``ref`` names, as :func:`bgdeploy.commands.git_resolve` prints them:
        through ``git`` in a fetched colour when hosts fetch (``fetch_unknown``: fetched
        again first when the colour does not know it, for ``rollback --to``); in the cache
        clone, fetched from ``repository`` once per process, when the operator pushes.
        Raises :class:`OperationFailed` when the cache clone cannot be fetched."""
        if not self.pushes:
            command = commands.git_resolve_or_fetch if fetch_unknown else commands.git_resolve
            ok, out, err = git(command(ref))
            return bool(ok), str(out), str(err)
        self.update_cache()
        return self._local(commands.git_resolve(ref))

    def ensure(self, run: Run, directory: str, sha: str) -> str:
        """Commit ``sha`` present in the repository of ``directory`` (a colour) on a host, its
        id checked there: ``""``, or why not. Hosts that fetch fetch it when they lack it;
        otherwise the operator sends it (a bundle of what the colour lacks)."""
        if not self.pushes:
            check = f"git cat-file -e {commands.q(sha + '^{commit}')}"
            ok, out, err = run(
                commands.in_dir(directory, commands.join(commands.git_fetch_missing(sha), check))
            )
            if ok:
                return ""
            return f"commit {sha} is not in {self.repository} (fetched here): {explain(out, err)}"
        try:
            return self._push(run, directory, sha)
        except OperationFailed as error:
            return str(error)

    def _push(self, run: Run, directory: str, sha: str) -> str:
        if not self._local_has(sha):
            self.update_cache(again=True)
            if not self._local_has(sha):
                return f"commit {sha} is not in {self.repository} (fetched on this machine)"
        main = self._local_main()
        wanted = [sha] + ([main] if main else [])
        ok, out, err = run(commands.in_dir(directory, commands.git_delivery_query(wanted)))
        if not ok:
            return f"could not read the repository of {directory}: {explain(out, err)}"
        have = {line[5:].strip() for line in out.splitlines() if line.startswith("have=")}
        tips = [line[4:].strip() for line in out.splitlines() if line.startswith("tip=")]
        names = [] if sha in have else [commands.RELEASE_REF]
        if main and main not in have:
            names.append(_main_ref())
        payload = self._bundle(sha, names, tips) if names else None
        receive = commands.git_receive_bundle(
            names, sha, (refs.MAIN_BRANCH, main) if main else None
        )
        ok, out, err = run(commands.in_dir(directory, receive), stdin=payload)
        delivered = next(
            (line[10:].strip() for line in out.splitlines() if line.startswith("delivered=")), ""
        )
        if not ok or delivered != sha:
            return (
                f"commit {sha[:12]} could not be delivered to {directory} "
                f"(code_delivery = push): {explain(out, err) or 'not found after the bundle'}"
            )
        return ""

    # On the operator's machine -------------------------------------------------------------

    def update_cache(self, again: bool = False) -> None:
        """Fetch ``repository`` into the cache clone (every branch and tag, as a host
        would), once per process unless ``again``. Raises :class:`OperationFailed` naming the
        repository when it cannot be fetched from this machine."""
        with _FETCHING:
            if str(self.cache) in _FETCHED and not again:
                return
            self.cache.mkdir(parents=True, exist_ok=True)
            with self._locked():
                command = commands.join(
                    commands.git_cache_repo(self.repository), commands.git_fetch()
                )
                ok, out, err = self._local(command)
            if not ok:
                raise OperationFailed(
                    f"git fetch from {self.repository} failed on this machine "
                    f"(code_delivery = push: the operator's machine fetches it): "
                    f"{explain(out, err)}"
                )
            _FETCHED.add(str(self.cache))

    def _local(self, command: str, stdin: str | None = None) -> tuple[bool, str, str]:
        """Run ``command`` in the cache clone, on this machine: never prompting (no password
        asked, an unknown host key of the repository's server refused rather than asked
        about: a deploy must fail with the reason, not wait for an answer nobody sees)."""
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        # Either the input or no stdin at all; never both keywords (gevent's run, which
        # pyinfra's process uses, refuses stdin= beside input= even when it is None).
        feed: dict[str, Any] = (
            {"input": stdin} if stdin is not None else {"stdin": subprocess.DEVNULL}
        )
        try:
            proc = subprocess.run(
                ["sh", "-c", command],
                cwd=self.cache,
                env=env,
                capture_output=True,
                text=True,
                timeout=LOCAL_TIMEOUT,
                check=False,
                **feed,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, "", f"{type(error).__name__}: {error}"
        return proc.returncode == 0, proc.stdout, proc.stderr

    def _local_has(self, sha: str) -> bool:
        if not (self.cache / "HEAD").exists():
            return False
        return self._local(f"git cat-file -e {commands.q(sha + '^{commit}')}")[0]

    def _local_main(self) -> str:
        """The commit of ``origin/main`` in the cache clone (``""`` without such a branch)."""
        ok, out, _ = self._local(f"git rev-parse -q --verify {commands.q(_main_ref())}")
        sha = out.strip()
        return sha if ok and refs.FULL_SHA.match(sha) else ""

    def _bundle(self, sha: str, names: list[str], tips: list[str]) -> str:
        """A bundle of ``names`` (:data:`bgdeploy.commands.RELEASE_REF` set to ``sha``)
        without what the commits ``tips`` hold (those of them known here), base64."""
        known = self._known([tip for tip in tips if refs.SHA.match(tip)])
        with self._locked(), tempfile.TemporaryDirectory(prefix="bgdeploy-bundle-") as scratch:
            path = str(Path(scratch) / "release.bundle")
            command = commands.join(
                f"git update-ref {commands.RELEASE_REF} {commands.q(sha)}",
                commands.git_bundle_create(path, names, known),
            )
            ok, out, err = self._local(command)
            if not ok:
                raise OperationFailed(f"the bundle of {sha[:12]} failed: {explain(out, err)}")
            return base64.encodebytes(Path(path).read_bytes()).decode()

    def _known(self, shas: list[str]) -> list[str]:
        """Those of ``shas`` that name an object of the cache clone."""
        if not shas:
            return []
        ok, out, _ = self._local(
            "git cat-file --batch-check='%(objectname) %(objecttype)'", "\n".join(shas) + "\n"
        )
        if not ok:
            return []
        return sorted(
            {line.split()[0] for line in out.splitlines() if line.endswith((" commit", " tag"))}
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The cache clone to this process alone (another bgdeploy process, or another
        greenlet or thread of this one, waits: the lock is polled, never blocking a loop)."""
        path = self.cache.parent / f"{self.cache.name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            deadline = time.monotonic() + LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise OperationFailed(
                            f"{self.cache} is in use by another bgdeploy process"
                        ) from None
                    time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _main_ref() -> str:
    return f"refs/remotes/origin/{refs.MAIN_BRANCH}"
