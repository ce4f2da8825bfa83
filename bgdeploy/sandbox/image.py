"""The sandbox target image: a Debian bookworm server built without a container registry.

The recipe is ``sandbox/image/`` (``Dockerfile``, ``packages.txt``, ``entrypoint.sh``). Its
image is tagged with a hash of those files, so ``bgdeploy sandbox up`` builds it only when it is
missing or the recipe changed.

Two flavours of init (:data:`INITS`): ``initd``, the image above (services started by their
init.d scripts, tini as PID 1), and ``systemd``, one layer on top of it (``Dockerfile.systemd``:
systemd as PID 1, the services its units), tagged ``HASH-systemd`` with a hash of every file of
the recipe. The ``initd`` hash leaves ``Dockerfile.systemd`` out: changing the layer rebuilds the
layer only.

The base is ``debian:bookworm-slim`` where that image exists locally. Where it does not (no
registry is reachable), a minimal bookworm root is made with ``debootstrap --variant=minbase``
from the package mirror of this machine's apt configuration (or ``DEBIAN_MIRROR`` and
``DEBIAN_SECURITY_MIRROR``) and imported with ``docker import``. The same Dockerfile and package
list serve both bases; the build uses host networking so it reaches the mirror exactly as the
machine itself does.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.settings import ROOT

RECIPE_DIR = ROOT / "sandbox" / "image"
IMAGE_REPOSITORY = "bgdeploy/target"
SLIM_BASE = "debian:bookworm-slim"
DEBOOTSTRAP_BASE = "bgdeploy/debian-base:bookworm"
SUITE = "bookworm"

INITS = ("initd", "systemd")
"""The flavours of the target: services started by init.d scripts, or systemd as PID 1."""
SYSTEMD_DOCKERFILE = "Dockerfile.systemd"


def check_init(init: str) -> str:
    """Refuse an init flavour that is not one of :data:`INITS`."""
    if init not in INITS:
        raise ConfigError(f"--init must be one of {', '.join(INITS)}, not {init!r}")
    return init


def recipe_hash(recipe_dir: Path = RECIPE_DIR, init: str = "initd") -> str:
    """A short hash of the recipe's files: the image's tag (``initd``: every file but
    ``Dockerfile.systemd``; ``systemd``: every file)."""
    check_init(init)
    digest = hashlib.sha256()
    for path in sorted(p for p in recipe_dir.rglob("*") if p.is_file()):
        if init == "initd" and path.name == SYSTEMD_DOCKERFILE:
            continue
        digest.update(path.relative_to(recipe_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_tag(recipe_dir: Path = RECIPE_DIR, init: str = "initd") -> str:
    """The full tag of the target image of flavour ``init`` for the current recipe."""
    suffix = "" if init == "initd" else f"-{init}"
    return f"{IMAGE_REPOSITORY}:{recipe_hash(recipe_dir, init)}{suffix}"


def _sources_entries(text: str, deb822: bool) -> list[tuple[str, list[str]]]:
    """(uri, suites) pairs of one apt sources file."""
    entries: list[tuple[str, list[str]]] = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split()))
        return entries
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]]))
    return entries


def apt_mirrors(
    apt_dir: Path = Path("/etc/apt"), environ: dict[str, str] | None = None
) -> tuple[str, str]:
    """The (main, security) Debian mirrors to build from.

    ``DEBIAN_MIRROR`` and ``DEBIAN_SECURITY_MIRROR`` win; otherwise they are read from this
    machine's apt sources (``sources.list`` and ``sources.list.d/*.list|*.sources``).
    """
    env = os.environ if environ is None else environ
    main = env.get("DEBIAN_MIRROR", "").strip()
    security = env.get("DEBIAN_SECURITY_MIRROR", "").strip()
    entries: list[tuple[str, list[str]]] = []
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        if path.is_file() and path.suffix in (".list", ".sources"):
            text = path.read_text(errors="replace")
            entries += _sources_entries(text, deb822=path.suffix == ".sources")
    for uri, suites in entries:
        if not security and any(s.endswith("-security") for s in suites):
            security = uri
        if not main and any(
            s and not s.endswith(("-security", "-updates", "-backports")) for s in suites
        ):
            main = uri
    if not main:
        raise ConfigError(
            "no Debian mirror found in /etc/apt sources: set DEBIAN_MIRROR "
            "(and DEBIAN_SECURITY_MIRROR) to the mirror to build the sandbox image from"
        )
    if not security:
        security = main.rstrip("/") + "-security"
    return main.rstrip("/"), security.rstrip("/")


def _has_image(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise OperationFailed(f"{what} failed (exit {proc.returncode}):\n{tail}")


def build_debootstrap_base(client: Any, mirror: str, progress: Progress = quiet) -> str:
    """Make ``bgdeploy/debian-base:bookworm`` with debootstrap and ``docker import``."""
    if shutil.which("debootstrap") is None:
        raise OperationFailed(
            "debootstrap is not installed and no Debian base image is present: "
            "install it (apt-get install debootstrap) or load debian:bookworm-slim"
        )
    with tempfile.TemporaryDirectory(prefix="bgdeploy-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        progress(f"debootstrap --variant=minbase {SUITE} (about 30 s)")
        _run(["debootstrap", "--variant=minbase", SUITE, str(root), mirror], "debootstrap")
        tarball = Path(tmp) / "rootfs.tar"
        progress("packing the root file system")
        _run(
            [
                "tar", "-C", str(root), "--numeric-owner", "--sort=name",
                "--exclude=./var/cache/apt/*", "--exclude=./var/lib/apt/lists/*",
                "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                "-cf", str(tarball), ".",
            ],
            "tar of the debootstrap root",
        )  # fmt: skip
        progress(f"docker import -> {DEBOOTSTRAP_BASE}")
        repository, tag = DEBOOTSTRAP_BASE.split(":")
        client.api.import_image(
            src=str(tarball), repository=repository, tag=tag, changes=['CMD ["/bin/bash"]']
        )
    return DEBOOTSTRAP_BASE


def base_image(client: Any, mirror: str, progress: Progress = quiet) -> str:
    """The base to build on: bookworm-slim if present, else the debootstrap import."""
    if _has_image(client, SLIM_BASE):
        return SLIM_BASE
    if _has_image(client, DEBOOTSTRAP_BASE):
        return DEBOOTSTRAP_BASE
    return build_debootstrap_base(client, mirror, progress)


BUILD_LOCK = Path(tempfile.gettempdir()) / "bgdeploy-image-build.lock"
"""Held while the image is built: side-by-side sandboxes wait for one build, never race it."""


def ensure_image(
    client: Any, progress: Progress = quiet, force: bool = False, init: str = "initd"
) -> str:
    """Build the target image of flavour ``init`` unless the current recipe's image exists;
    returns its tag. The ``systemd`` image is a layer on the ``initd`` one, built first when
    missing (``force`` rebuilds the layer only).

    Concurrent callers (two sandboxes started at once) build it once: the others wait for the
    build lock and then find the image.
    """
    check_init(init)
    if init == "systemd":
        base = ensure_image(client, progress)
        tag = image_tag(init="systemd")

        def layer() -> str:
            progress(f"building {tag}: systemd on {base} (about 40 s)")
            return build_recipe(
                client, RECIPE_DIR, tag, {"BASE": base}, progress,
                what="the systemd sandbox image", dockerfile=SYSTEMD_DOCKERFILE,
            )  # fmt: skip

        return build_once(client, tag, layer, progress, force)
    tag = image_tag()
    return build_once(client, tag, lambda: _build(client, tag, progress), progress, force)


def build_once(
    client: Any,
    tag: str,
    build: Callable[[], object],
    progress: Progress = quiet,
    force: bool = False,
) -> str:
    """Run ``build`` unless image ``tag`` exists, holding :data:`BUILD_LOCK`; returns ``tag``.

    Every sandbox image (the target, the monitoring image) is built under the same lock: a
    caller that finds a build under way waits for it, then looks for its image again.
    """
    if not force and _has_image(client, tag):
        return tag
    with BUILD_LOCK.open("a") as lock_file:
        if not _try_lock(lock_file):
            progress("another process is building a sandbox image: waiting for it")
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        if not force and _has_image(client, tag):
            return tag
        build()
    return tag


def _try_lock(lock_file: Any) -> bool:
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _build(client: Any, tag: str, progress: Progress) -> str:
    main, security = apt_mirrors()
    base = base_image(client, main, progress)
    progress(f"building {tag} on {base} (1 to 2 minutes)")
    buildargs = {"BASE": base, "DEBIAN_MIRROR": main, "DEBIAN_SECURITY_MIRROR": security}
    return build_recipe(client, RECIPE_DIR, tag, buildargs, progress)


def build_recipe(
    client: Any,
    recipe_dir: Path,
    tag: str,
    buildargs: dict[str, str],
    progress: Progress = quiet,
    what: str = "the sandbox image",
    dockerfile: str = "Dockerfile",
) -> str:
    """``docker build`` of ``recipe_dir`` (its ``dockerfile``) as ``tag`` (host network, never
    pulling).

    The progress callback sees each ``Step`` and ``Setting up`` line; a failed build raises
    :class:`OperationFailed` with the last lines of its output.
    """
    stream = client.api.build(
        path=str(recipe_dir),
        dockerfile=dockerfile,
        tag=tag,
        buildargs=buildargs,
        network_mode="host",
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    last: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            detail = "\n".join(last[-15:])
            raise OperationFailed(f"building {what} failed: {chunk['error']}\n{detail}")
        line = str(chunk.get("stream", "")).rstrip()
        if line:
            last.append(line)
            if line.startswith("Step ") or line.startswith("Setting up "):
                progress(line)
    if not _has_image(client, tag):
        raise OperationFailed(f"building {what} ended without {tag}")
    return tag
