"""The in-place release of a commit in a colour, as the runbook lists its steps.

:func:`release_facts` reads what a release needs to know about a web host (its colours, the
``.env``'s APP_KEY and secrets, free disk, the commit checked out and the one built) and
fetches; :func:`release_steps` lists the steps that follow, as ``(step, command)`` pairs:
check out (and link ``.env`` and ``storage`` to ``shared/``, :func:`link_shared`), ``composer
install``, ``npm ci``, ``npm run build``, caches, storage link, reload php-fpm, reload nginx,
restart workers. Migrations are left out: they run once per deploy, from one host, after a
snapshot (:mod:`bgdeploy.commands.postgres`). The same list restores a previous release.

Example::

    for step, command in release_steps(settings, f"{settings.app_root}/blue", sha):
        run(step, command)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bgdeploy.commands.artisan import storage_link, warm_caches
from bgdeploy.commands.build import composer_install, npm_build, npm_ci
from bgdeploy.commands.git import git_checkout, git_ensure_repo, git_fetch, git_force_checkout
from bgdeploy.commands.services import nginx_reload, php_fpm_reload, restart_live_workers
from bgdeploy.commands.shell import as_root, in_dir, join, q
from bgdeploy.commands.switch import OTHER_COLOUR
from bgdeploy.core.errors import ConfigError

if TYPE_CHECKING:
    from bgdeploy.core.settings import Settings


def release_facts(
    app_root: str,
    repository: str,
    idle: bool = False,
    secrets: tuple[str, ...] = (),
    fetch: bool = True,
) -> str:
    """Read what a release needs to know about a web host, changing nothing but ``.git``.

    Prints ``key=value`` lines: ``colour`` (the target of ``current``), ``app_key`` (yes/no:
    ``shared/.env`` has a non-empty APP_KEY; the value is never printed), ``free_kb`` (free disk
    under ``app_root``), ``head`` (the commit checked out in the live colour, empty before the
    first deploy), ``built`` (the commit last deployed there successfully, see
    :func:`mark_built`), one ``dirty=`` line per locally changed tracked file, one
    ``missing_secret=NAME`` line per name of ``secrets`` that ``shared/.env`` lacks. Then the live
    colour is made a git repository of ``repository`` when it is not one yet (shared
    ``storage/`` left out of its checkout) and fetched; ``fetch=ok`` or ``fetch=failed``
    follows, git's error on stderr. Without ``fetch`` (``code_delivery = "push"``: the
    commit is sent, :mod:`bgdeploy.fleet.delivery`) nothing is fetched: ``fetch=skipped``.
    """
    root = q(app_root)
    # idle: the same, for the colour that does not serve (a blue-green deploy builds it).
    swap = f"{OTHER_COLOUR}; " if idle else ""
    return (
        f'c=$(basename "$(readlink {root}/current 2>/dev/null)"); {swap}echo "colour=$c"; '
        f'case "$c" in blue|green) ;; *) exit 0;; esac; d={root}/"$c"; '
        f'if grep -Eq "^APP_KEY=[\\"\']?[^\\"\' ]" {root}/shared/.env 2>/dev/null; '
        f"then echo app_key=yes; else echo app_key=no; fi; "
        f"{_missing_secrets(app_root + '/shared/.env', secrets)}"
        f"echo \"free_kb=$(df -Pk {root} | awk 'NR==2 {{print $4}}')\"; "
        f'if [ -d "$d/.git" ]; then echo "head=$(git -C "$d" rev-parse -q --verify HEAD)"; '
        f'echo "built=$(cat "$d/.git/bgdeploy-built" 2>/dev/null)"; '
        f'git -C "$d" status --porcelain --untracked-files=no | sed "s/^/dirty=/"; '
        f'else echo head=; fi; cd "$d" && {git_ensure_repo(repository)} && '
        + (f"{git_fetch()} && echo fetch=ok" if fetch else "echo fetch=skipped")
        + " || echo fetch=failed"
    )


def _missing_secrets(env_file: str, names: tuple[str, ...]) -> str:
    """``missing_secret=NAME`` for each of ``names`` without a non-empty value in ``env_file``
    (values are never printed)."""
    parts = []
    for name in names:
        if not re.match(r"^[A-Z][A-Z0-9_]{0,63}\Z", name):
            raise ConfigError(f"secret name {name!r} is not valid")
        parts.append(
            f'grep -Eq "^{name}=[\\"\']?[^\\"\' ]" {q(env_file)} 2>/dev/null '
            f"|| echo missing_secret={name}; "
        )
    return "".join(parts)


def link_shared(app_root: str, group: str) -> str:
    """In a colour: ``.env`` and ``storage`` link to ``shared/``; ``bootstrap/cache`` is
    writable by php-fpm's ``group`` (caches are rebuilt by the deploy user and php-fpm)."""
    shared = f"{app_root}/shared"
    return join(
        f"ln -sfn {q(shared + '/.env')} .env",
        f"{{ [ -L storage ] || {{ rm -rf storage && ln -s {q(shared + '/storage')} storage; }}; }}",
        "mkdir -p bootstrap/cache",
        f"chgrp {q(group)} bootstrap/cache",
        "chmod 2775 bootstrap/cache",
    )


def release_steps(
    settings: Settings, directory: str, sha: str, restore: bool = False
) -> list[tuple[str, str]]:
    """The in-place release of ``sha`` in ``directory`` (a colour) once its ``.git`` is
    fetched, as ``(step, command)`` pairs in order, migrations left out.

    The release path runs them one operation each (its checkout refuses to overwrite local
    changes); restoring a previous release (``restore``: after a failure, an interrupted
    deploy, or a rollback) runs them all with the previous commit, its checkout forced.
    """
    checkout = git_force_checkout(sha) if restore else git_checkout(sha)
    links = link_shared(settings.app_root, settings.php_fpm_group)
    return [
        ("check out", in_dir(directory, join(checkout, links))),
        ("composer install", in_dir(directory, composer_install())),
        ("npm ci", in_dir(directory, npm_ci())),
        ("npm run build", in_dir(directory, npm_build())),
        ("caches", in_dir(directory, warm_caches())),
        ("storage link", in_dir(directory, storage_link())),
        ("reload php-fpm", as_root(php_fpm_reload(settings.php_version))),
        ("reload nginx", as_root(nginx_reload())),
        ("restart workers", restart_live_workers(settings, directory)),
    ]
