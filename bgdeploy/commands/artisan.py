"""Laravel's ``php artisan``: caches, migrations, queue restart, maintenance mode.

Every word of an artisan call is checked (:data:`ARTISAN_WORD`), then quoted. Two ways to run:

- in a directory as the deploy user (:func:`artisan`, :func:`artisan_here`, and the release's
  steps: :func:`warm_caches`, :func:`storage_link`, :func:`migrate`, :func:`migrate_rollback`,
  :func:`queue_restart`);
- in the live colour (through ``current``) as the php-fpm user, so that the caches it writes stay
  writable by php-fpm (:func:`in_live`, :func:`live_artisan`, :func:`clear_and_warm_caches`,
  :func:`maintenance_down`, :func:`maintenance_up`, :func:`migrate_fresh`): the on-call commands.

:func:`artisan_batch` runs several commands in ONE PHP process (the application boots once).

Example::

    in_dir(colour_dir, migrate())          # php artisan migrate --force --no-interaction
    clear_and_warm_caches(settings)        # bgdeploy emergency ENV clear-caches
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from bgdeploy.commands.shell import as_user, q, wide
from bgdeploy.core.errors import ConfigError

if TYPE_CHECKING:
    from bgdeploy.core.settings import Settings


ARTISAN_WORD = re.compile(r"^[A-Za-z0-9:_=,./-]+\Z")


def artisan(app_dir: str, *words: str) -> str:
    """``php artisan WORDS`` in ``app_dir`` (:func:`wide`); each word is checked, then
    quoted."""
    for word in words:
        if not ARTISAN_WORD.match(word):
            raise ConfigError(f"artisan argument {word!r} is not allowed")
    return f"cd {q(app_dir)} && {wide('php artisan')} {' '.join(q(w) for w in words)}"


def artisan_here(*words: str) -> str:
    """``php artisan WORDS`` in the current directory (each word checked, then quoted)."""
    return artisan(".", *words).removeprefix("cd . && ")


ARTISAN_BATCH = (
    "define('LARAVEL_START', microtime(true));"
    "require 'vendor/autoload.php';"
    "$app = require_once 'bootstrap/app.php';"
    "$kernel = $app->make(Illuminate\\Contracts\\Console\\Kernel::class);"
    "foreach (array_slice($argv, 1) as $command) {"
    " $status = $kernel->call($command);"
    " echo $kernel->output();"
    " if ($status !== 0) {"
    '  fwrite(STDERR, "php artisan $command failed (exit $status)\\n");'
    "  exit($status);"
    " }"
    "}"
)
"""Boots the application once (as ``artisan`` does) and runs each command of ``$argv``."""


def artisan_batch(*words: str) -> str:
    """``php artisan WORD`` for each word in order, stopping at the first failure, in ONE PHP
    process in the current directory: the application boots once instead of once per
    command (about 0.2 s of CPU each, which adds up on many hosts sharing cores); at
    :func:`wide`'s width."""
    for word in words:
        if not ARTISAN_WORD.match(word) or ":" not in word:
            raise ConfigError(f"artisan command {word!r} is not allowed")
    return wide(f"php -r {q(ARTISAN_BATCH)} -- {' '.join(q(w) for w in words)}")


CACHE_CLEARS = ("optimize:clear", "config:clear", "route:clear", "view:clear", "cache:clear")


CACHE_WARMS = ("config:cache", "route:cache", "view:cache", "event:cache")
"""The runbook's ``config:cache``, ``route:cache``, ``view:cache`` and ``optimize`` (which is
``config:cache`` + ``route:cache`` again), and ``event:cache``."""


def warm_caches() -> str:
    """``config:cache``, ``route:cache``, ``view:cache``, ``event:cache`` (:data:`CACHE_WARMS`),
    in one PHP process."""
    return artisan_batch(*CACHE_WARMS)


def storage_link() -> str:
    """``php artisan storage:link`` unless ``public/storage`` already is a link."""
    return f"{{ [ -L public/storage ] || {artisan_here('storage:link')}; }}"


def migrate() -> str:
    """``php artisan migrate --force``: pending migrations, each in a transaction on
    PostgreSQL (a failed one leaves the schema as it was)."""
    return artisan_here("migrate", "--force", "--no-interaction")


def migrate_rollback(steps: int) -> str:
    """``php artisan migrate:rollback --step=N --force``: the ``down()`` of the last ``steps``
    migrations, run with the code that has them (``bgdeploy rollback --migrations N``)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 100:
        raise ConfigError(f"migration steps {steps!r} must be a whole number from 1 to 100")
    return artisan_here("migrate:rollback", f"--step={steps}", "--force", "--no-interaction")


def queue_restart() -> str:
    """``php artisan queue:restart``: workers finish their job, then exit (supervisor restarts
    them)."""
    return artisan_here("queue:restart")


def in_live(settings: Settings, command: str) -> str:
    """``command`` in the live colour (through ``current``), as the php-fpm user, so that the
    caches it writes stay writable by php-fpm."""
    return as_user(settings.php_fpm_user, f"cd {q(settings.app_root + '/current')} && {command}")


def live_artisan(settings: Settings, *words: str) -> str:
    """``php artisan WORDS`` in the live colour, as the php-fpm user (:func:`in_live`)."""
    return in_live(settings, artisan_here(*words))


def clear_and_warm_caches(settings: Settings) -> str:
    """The runbook's cache clears, then the caches warmed again, in the live colour, in one PHP
    process, as the php-fpm user (the caches it writes stay writable by php-fpm)."""
    return in_live(settings, artisan_batch(*CACHE_CLEARS, *CACHE_WARMS))


def maintenance_down(settings: Settings) -> str:
    """``php artisan down`` in the live colour; prints ``bgdeploy-maintenance: down``, or
    ``bgdeploy-maintenance: already`` (and changes nothing) when the app was down before."""
    flag = f"{settings.app_root}/current/storage/framework/down"
    return (
        f"if [ -e {q(flag)} ]; then echo 'bgdeploy-maintenance: already'; "
        f"else {live_artisan(settings, 'down')} > /dev/null && "
        "echo 'bgdeploy-maintenance: down'; fi"
    )


def maintenance_up(settings: Settings) -> str:
    """``php artisan up`` in the live colour: the app serves requests again."""
    return live_artisan(settings, "up")


def migrate_fresh(settings: Settings, seed: bool = False) -> str:
    """``php artisan migrate:fresh --force [--seed]`` in the live colour: every table dropped
    and migrated again (for environments marked ``production = False`` only)."""
    words = ["migrate:fresh", "--force", "--no-interaction"] + (["--seed"] if seed else [])
    return live_artisan(settings, *words)
