"""Building a release: PHP dependencies, front-end assets, and assets carried between hosts.

The runbook's ``composer install --no-dev --optimize-autoloader`` and ``npm ci && npm run
build``, run in a colour's checkout (:func:`~bgdeploy.commands.shell.in_dir`). On a fleet the
assets can be built once: :func:`pack_assets` on the first host, the archive copied to the
others, :func:`unpack_assets` there (checked against its sha256, each path renamed into place).

- :func:`composer_install`, :func:`npm_ci`, :func:`npm_build`
- :func:`pack_assets`, :func:`unpack_assets`, :data:`ASSETS_ARCHIVE`
"""

from __future__ import annotations

import re

from bgdeploy.commands.shell import in_dir, join, q, wide
from bgdeploy.core.errors import ConfigError


def composer_install() -> str:
    """The runbook's ``composer install --no-dev --optimize-autoloader``, never prompting."""
    return wide("composer install --no-dev --optimize-autoloader --no-interaction --no-progress")


def npm_ci() -> str:
    """``npm ci``: exactly the lock file's packages."""
    return "npm ci --no-audit --no-fund"


def npm_build() -> str:
    """``npm run build``: the front-end assets."""
    return "npm run build"


ASSETS_ARCHIVE = ".git/bgdeploy-assets.tar.gz"
"""Where a release's packed assets wait in a checkout (inside ``.git``: never a local change)."""


def pack_assets(directory: str, paths: tuple[str, ...]) -> str:
    """Pack ``paths`` (what ``npm run build`` wrote) of the checkout ``directory`` into
    :data:`ASSETS_ARCHIVE`; fails naming a path the build did not write."""
    checks = []
    for path in paths:
        missing = f"{path} does not exist after npm run build (asset_paths)"
        checks.append(f"{{ [ -e {q(path)} ] || {{ echo {q(missing)} >&2; exit 1; }}; }}")
    words = " ".join(q(path) for path in paths)
    return in_dir(directory, join(*checks, f"tar -czf {q(ASSETS_ARCHIVE)} -- {words}"))


def unpack_assets(directory: str, paths: tuple[str, ...], sha256: str) -> str:
    """Check :data:`ASSETS_ARCHIVE` against ``sha256``, unpack it beside the checkout's
    ``paths`` and rename each over the old one; the archive is removed."""
    if not re.match(r"^[0-9a-f]{64}\Z", sha256):
        raise ConfigError(f"checksum {sha256!r} is not a sha256")
    staging = ".git/bgdeploy-assets"
    swaps = []
    for path in paths:
        new, old = q(f"{staging}/{path}"), q(f"{path}.bgdeploy-old")
        swaps.append(
            join(
                f"rm -rf {old}",
                f"{{ [ ! -e {q(path)} ] || mv -T {q(path)} {old}; }}",
                f'mkdir -p "$(dirname {q(path)})"',
                f"mv -T {new} {q(path)}",
                f"rm -rf {old}",
            )
        )
    return in_dir(
        directory,
        join(
            f"echo {q(f'{sha256}  {ASSETS_ARCHIVE}')} | sha256sum -c --quiet -",
            f"rm -rf {staging} && mkdir {staging}",
            f"tar -xzf {q(ASSETS_ARCHIVE)} -C {staging}",
            *swaps,
            f"rm -rf {staging} {q(ASSETS_ARCHIVE)}",
        ),
    )
