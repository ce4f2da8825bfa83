"""Shell commands, built in one place for both engines.

pyinfra operations (``server.shell``) and Fabric tasks (``Connection.run``) run the same
strings, built here: artisan calls, service control, health probes, git, snapshots. Every value
that reaches a shell is validated by its builder or quoted with :func:`shlex.quote`; nothing
else in bgdeploy formats a command line by hand.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

from bgdeploy.core.errors import ConfigError

if TYPE_CHECKING:
    from bgdeploy.core.settings import Settings

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}\Z")
ARTISAN_WORD = re.compile(r"^[A-Za-z0-9:_=,./-]+\Z")
SERVICE_ACTIONS = ("start", "stop", "restart", "reload", "status")


def q(value: object) -> str:
    """Quote one value for a POSIX shell."""
    return shlex.quote(str(value))


def join(*commands: str) -> str:
    """Run commands one after the other, stopping at the first failure."""
    return " && ".join(f"{c}" for c in commands if c)


def service(name: str, action: str) -> str:
    """``service NAME ACTION``: works on systemd hosts and in containers without systemd."""
    if not SERVICE_NAME.match(name):
        raise ConfigError(f"service name {name!r} is not valid")
    if action not in SERVICE_ACTIONS:
        raise ConfigError(f"service action {action!r} is not one of {', '.join(SERVICE_ACTIONS)}")
    return f"service {name} {action}"


def nginx_test() -> str:
    """Test the whole nginx configuration, quietly (errors still print)."""
    return "nginx -t -q"


def php_fpm_test(php_version: str) -> str:
    """Test the php-fpm configuration before a reload (the init script's reload does not)."""
    return f"php-fpm{php_version} -t"


def nginx_reload() -> str:
    """Test, then gracefully reload nginx: requests in flight finish on the old workers."""
    return join(nginx_test(), service("nginx", "reload"))


def php_fpm_reload(php_version: str) -> str:
    """Test, then gracefully reload php-fpm (needs ``process_control_timeout`` > 0)."""
    return join(php_fpm_test(php_version), service(f"php{php_version}-fpm", "reload"))


TERMINAL_COLUMNS = 1000
"""The console width artisan and composer run at (``COLUMNS``, :func:`wide`)."""


def wide(command: str) -> str:
    """``command`` (one simple command) with ``COLUMNS`` at :data:`TERMINAL_COLUMNS` in its
    environment. Symfony's console (artisan, composer) reads ``COLUMNS`` before asking the
    terminal, so under the release's pty (80 columns) an error is not wrapped and a table
    name in it not cut in two (:mod:`bgdeploy.core.explain` reads those messages). Set on the
    command itself: bash (``checkwinsize``) resets an exported ``COLUMNS`` to the terminal's
    width after each program it runs."""
    return f"COLUMNS={TERMINAL_COLUMNS} {command}"


def artisan(app_dir: str, *words: str) -> str:
    """``php artisan WORDS`` in ``app_dir`` (:func:`wide`); each word is checked, then
    quoted."""
    for word in words:
        if not ARTISAN_WORD.match(word):
            raise ConfigError(f"artisan argument {word!r} is not allowed")
    return f"cd {q(app_dir)} && {wide('php artisan')} {' '.join(q(w) for w in words)}"


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


def as_user(user: str, command: str) -> str:
    """Run a shell command as another user (through sudo, with a login-free shell)."""
    return f"sudo -u {q(user)} -H sh -c {q(command)}"


# Server setup (deploys/provision.py) -------------------------------------------------------

PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,99}\Z")
SQL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}\Z")


def apt_install(packages: list[str]) -> str:
    """Refresh the package lists, then install Debian packages (no recommends, no prompts)."""
    for package in packages:
        if not PACKAGE_NAME.match(package):
            raise ConfigError(f"package name {package!r} is not valid")
    names = " ".join(q(p) for p in packages)
    apt = "DEBIAN_FRONTEND=noninteractive apt-get"
    return join(f"{apt} update -q", f"{apt} install -y -q --no-install-recommends {names}")


def service_state(name: str) -> str:
    """Print ``running`` or ``stopped`` (``service NAME status``; never fails)."""
    return f"if {service(name, 'status')} >/dev/null 2>&1; then echo running; else echo stopped; fi"


def install_checked(new: str, dest: str, test: str, enable: str | None = None) -> str:
    """Put the file ``new`` in place of ``dest`` and run the configuration ``test``; when the
    test fails, the previous ``dest`` comes back (or none, if there was none) and the command
    fails. ``enable``: a symlink to point at ``dest`` as part of the same change (an nginx site
    in ``sites-enabled``), removed again on failure if this command created it.
    """
    backup = f"{dest}.bgdeploy-old"
    steps = [
        f"if [ -e {q(dest)} ]; then cp -p {q(dest)} {q(backup)}; else rm -f {q(backup)}; fi",
        f"mv -f {q(new)} {q(dest)}",
    ]
    undo = [f"if [ -e {q(backup)} ]; then mv -f {q(backup)} {q(dest)}; else rm -f {q(dest)}; fi"]
    if enable is not None:
        steps.append(
            f'{{ [ "$(readlink {q(enable)})" = {q(dest)} ] || '
            f"{{ ln -sfn {q(dest)} {q(enable)} && linked=1; }}; }}"
        )
        undo.append(f'if [ -n "$linked" ]; then rm -f {q(enable)}; fi')
    message = f"bgdeploy: {dest} failed the configuration test ({test}); the previous file is kept"
    return (
        "linked=; "
        + " && ".join(steps)
        + f" && if {test}; then rm -f {q(backup)}; else "
        + "; ".join(undo)
        + f"; echo {q(message)} >&2; exit 1; fi"
    )


def supervisor_update() -> str:
    """Make supervisord read changed program files and apply them (starts added programs)."""
    return join("supervisorctl reread", "supervisorctl update")


def sql_ident(name: str) -> str:
    """A PostgreSQL identifier (role or database name), checked, then double-quoted."""
    if not SQL_NAME.match(name):
        raise ConfigError(f"database name {name!r} is not valid")
    return f'"{name}"'


def sql_literal(value: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings: only ' is special)."""
    if "\0" in value:
        raise ConfigError("a NUL byte cannot be part of an SQL string")
    return "'" + value.replace("'", "''") + "'"


def psql(port: int, database: str | None = None) -> str:
    """``psql`` as the postgres superuser over the local socket, reading SQL on stdin and
    stopping at the first error. Statements go on stdin so that no value (a password hash)
    shows in process lists or in pyinfra's output."""
    target = f" -d {q(database)}" if database else ""
    return f"cd / && sudo -u postgres psql -X -q -v ON_ERROR_STOP=1 -p {int(port)}{target}"


def psql_query(port: int, sql: str, database: str | None = None) -> str:
    """One read-only query as the postgres superuser; rows unaligned, ``|`` between fields."""
    target = f" -d {q(database)}" if database else ""
    return f"cd / && sudo -u postgres psql -X -tA -p {int(port)}{target} -c {q(sql)}"


# On-call commands (bgdeploy emergency, history) ----------------------------------------------


def tail(path: str, lines: int, follow: bool = False) -> str:
    """The last ``lines`` lines of a log (``follow``: and every new one, across rotations).

    A log that does not exist yet (nothing logged since the last rotation) is said so, and is
    not a failure; ``follow`` waits for it to appear.
    """
    if follow:
        return f"tail -n {int(lines)} -F {q(path)}"
    return (
        f"if [ -e {q(path)} ]; then tail -n {int(lines)} {q(path)}; "
        f"else echo {q(f'(no log yet: {path} does not exist)')}; fi"
    )


def in_live(settings: Settings, command: str) -> str:
    """``command`` in the live colour (through ``current``), as the php-fpm user, so that the
    caches it writes stay writable by php-fpm."""
    return as_user(settings.php_fpm_user, f"cd {q(settings.app_root + '/current')} && {command}")


def live_artisan(settings: Settings, *words: str) -> str:
    """``php artisan WORDS`` in the live colour, as the php-fpm user (:func:`in_live`)."""
    return in_live(settings, artisan_here(*words))


CACHE_CLEARS = ("optimize:clear", "config:clear", "route:clear", "view:clear", "cache:clear")
CACHE_WARMS = ("config:cache", "route:cache", "view:cache", "event:cache")
"""The runbook's ``config:cache``, ``route:cache``, ``view:cache`` and ``optimize`` (which is
``config:cache`` + ``route:cache`` again), and ``event:cache``."""


def clear_and_warm_caches(settings: Settings) -> str:
    """The runbook's cache clears, then the caches warmed again, in the live colour, in one PHP
    process, as the php-fpm user (the caches it writes stay writable by php-fpm)."""
    return in_live(settings, artisan_batch(*CACHE_CLEARS, *CACHE_WARMS))


def restart_workers(settings: Settings) -> str:
    """Restart the live colour's queue workers (see :func:`restart_live_workers`)."""
    return restart_live_workers(settings, f"{settings.app_root}/current")


def redis_cli(port: int) -> str:
    """``redis-cli`` reading its commands (``AUTH`` first) on stdin: no password in argv."""
    return f"redis-cli -p {int(port)}"


def journal_append(settings: Settings, entry: Any) -> str:
    """Append a journal entry on a host, as the deploy user (the journal's owner)."""
    from bgdeploy.core.journal import journal_append_command

    directory = settings.journal_path.rsplit("/", 1)[0]
    return join(
        f"install -d -o {q(settings.deploy_user)} -m 0750 {q(directory)}",
        as_user(settings.deploy_user, journal_append_command(settings.journal_path, entry)),
    )


def redis_wait_protected(address: str, port: int, seconds: int = 10) -> str:
    """Wait until Redis answers on ``address:port`` and refuses an unauthenticated client
    (``NOAUTH``); fails after ``seconds``. Proves a restart took the new bind and password."""
    probe = f"redis-cli -h {q(address)} -p {int(port)} ping 2>&1 | grep -q NOAUTH"
    message = f"bgdeploy: redis does not answer on {address}:{port} with a password required"
    return (
        f"for i in $(seq {int(seconds) * 4}); do if {probe}; then exit 0; fi; sleep 0.25; done; "
        f"echo {q(message)} >&2; exit 1"
    )


# In-place release (deploys/release.py) -------------------------------------------------------
#
# Commands that change the live colour run in it with ``umask 002``: the colour and the shared
# storage are group-writable by php-fpm's group, and what a deploy writes there stays so.

SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
SHA_WORD = re.compile(r"^[0-9a-f]{7,64}\Z")
MIGRATION_PATH = re.compile(r"^database/migrations/[A-Za-z0-9_.-]+\.php\Z")


def lock_acquire(path: str, content: str) -> str:
    """Create the deploy lock atomically (``set -C``: O_EXCL) holding ``content``.

    Prints ``bgdeploy-lock: acquired``, or ``bgdeploy-lock: held`` and the holder's lock;
    exits 0 either way (the caller reads which).
    """
    directory = path.rsplit("/", 1)[0]
    return (
        f"mkdir -p {q(directory)} && "
        f"if ( set -C; printf '%s\\n' {q(content)} > {q(path)} ) 2>/dev/null; "
        f"then echo 'bgdeploy-lock: acquired'; "
        f"else echo 'bgdeploy-lock: held'; cat {q(path)} 2>/dev/null; true; fi"
    )


def lock_release(path: str, run: str) -> str:
    """Remove the deploy lock if deploy ``run`` holds it (never someone else's); prints
    ``released`` or ``not held``."""
    if not re.match(r"^[A-Za-z0-9_-]{1,64}\Z", run):
        raise ConfigError(f"deploy run id {run!r} is not valid")
    return (
        f"if grep -qF {q(chr(34) + 'run' + chr(34) + ':' + chr(34) + run + chr(34))} "
        f"{q(path)} 2>/dev/null; then rm -f {q(path)} && echo released; else echo 'not held'; fi"
    )


def lock_read(path: str) -> str:
    """Print the deploy lock's content (nothing when there is no lock)."""
    return f"cat {q(path)} 2>/dev/null || true"


def lock_break(path: str) -> str:
    """Print the deploy lock's content, then remove it (``bgdeploy unlock``)."""
    return f"if [ -e {q(path)} ]; then cat {q(path)}; echo; rm -f {q(path)}; fi"


LOCK_BROKEN = "bgdeploy-lock: broken"
LOCK_CHANGED = "bgdeploy-lock: changed"


def lock_break_if(path: str, content: str) -> str:
    """Remove the deploy lock only if it still holds ``content`` (what the operator was shown
    and agreed to break): prints ``bgdeploy-lock: broken``; otherwise ``bgdeploy-lock:
    changed`` and the lock as it is now (nothing when there is none), and leaves it."""
    expected = content.rstrip("\n")
    return (
        f'if [ -e {q(path)} ] && [ "$(cat {q(path)})" = {q(expected)} ]; '
        f"then rm -f {q(path)} && echo {q(LOCK_BROKEN)}; "
        f"else echo {q(LOCK_CHANGED)}; cat {q(path)} 2>/dev/null; true; fi"
    )


def in_dir(directory: str, command: str) -> str:
    """``command`` in ``directory``, with ``umask 002`` (files stay group-writable)."""
    return f"cd {q(directory)} && umask 002 && {command}"


def _sha(sha: str) -> str:
    if not SHA_WORD.match(sha):
        raise ConfigError(f"commit id {sha!r} is not valid")
    return sha


def live_colour_dir(app_root: str, idle: bool = False) -> str:
    """Print the directory of the live colour (``<app_root>/<target of current>``), or with
    ``idle`` of the other colour."""
    root = q(app_root)
    swap = ' && case "$c" in blue) c=green;; green) c=blue;; esac' if idle else ""
    return f'c=$(basename "$(readlink {root}/current)"){swap} && echo {root}/"$c"'


def release_facts(
    app_root: str, repository: str, idle: bool = False, secrets: tuple[str, ...] = ()
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
    follows, git's error on stderr.
    """
    root = q(app_root)
    # idle: the same, for the colour that does not serve (a blue-green deploy builds it).
    swap = 'case "$c" in blue) c=green;; green) c=blue;; esac; ' if idle else ""
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
        f'else echo head=; fi; cd "$d" && {git_ensure_repo(repository)} && {git_fetch()} '
        f"&& echo fetch=ok || echo fetch=failed"
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
    from bgdeploy.core.refs import is_sha, validate_ref

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


def record_group(path: str) -> str:
    """Write the process group of this command's shell to ``path`` (under a terminal the
    shell leads its own session and group), for :func:`stop_group`."""
    return f"echo $$ > {q(path)}"


def stop_group(path: str) -> str:
    """Terminate the process group recorded in ``path`` (a build step still running after
    its client went away: composer, npm and their children), then remove the file."""
    return (
        f'if [ -f {q(path)} ]; then kill -TERM "-$(cat {q(path)})" 2>/dev/null; '
        f"rm -f {q(path)}; fi; true"
    )


def forget_group(path: str) -> str:
    """Remove a :func:`record_group` file once its steps are over."""
    return f"rm -f {q(path)}"


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


def git_checkout(sha: str) -> str:
    """Check out exactly ``sha`` (detached) in the current repository. Local changes to
    tracked files make it fail rather than be lost."""
    return f"git -c advice.detachedHead=false checkout -q --detach {_sha(sha)}"


def git_force_checkout(sha: str) -> str:
    """Check out ``sha`` over whatever a failed deploy left (restoring the previous release)."""
    return f"git -c advice.detachedHead=false checkout -q -f --detach {_sha(sha)}"


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


def artisan_here(*words: str) -> str:
    """``php artisan WORDS`` in the current directory (each word checked, then quoted)."""
    return artisan(".", *words).removeprefix("cd . && ")


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


def supervisor_restart(program: str) -> str:
    """Restart every process of a supervisor program (``NAME:*``)."""
    return supervisor_control("restart", program)


def health_request(port: int, path: str) -> str:
    """GET ``http://127.0.0.1:PORT/PATH`` through nginx: prints the body (4 KiB at most), then
    a last line ``bgdeploy-health STATUS X-RELEASE X-COLOUR SECONDS`` (``000`` when nothing
    answered). Never fails."""
    if not re.match(r"^/[A-Za-z0-9_./-]*\Z", path):
        raise ConfigError(f"health path {path!r} is not valid")
    url = q(f"http://127.0.0.1:{int(port)}{path}")
    meta = "bgdeploy-health %{http_code} %header{x-release} %header{x-colour} %{time_total}"
    return (
        "d=$(mktemp) && trap 'rm -f \"$d\"' EXIT; "
        f"m=$(curl -s -m 10 -H 'Accept: application/json' -o \"$d\" -w {q(meta)} {url}); "
        'head -c 4096 "$d"; printf \'\\n%s\\n\' "${m:-bgdeploy-health 000}"; true'
    )


def health_probe(port: int, path: str) -> str:
    """One request to ``http://127.0.0.1:PORT/PATH`` through nginx: prints the HTTP status and
    the ``X-Release`` header (``000`` when nothing answered). Never fails."""
    if not re.match(r"^/[A-Za-z0-9_./-]*\Z", path):
        raise ConfigError(f"health path {path!r} is not valid")
    url = f"http://127.0.0.1:{int(port)}{path}"
    return (
        f"curl -s -m 5 -o /dev/null -H 'Cache-Control: no-cache' "
        f"-w '%{{http_code}} %header{{x-release}}\\n' {q(url)} || true"
    )


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


def applied_migrations(port: int, database: str) -> str:
    """Print the migrations recorded in the database's ``migrations`` table (nothing when the
    table does not exist yet), as the postgres superuser on the db host."""
    exists = psql_query(port, "SELECT to_regclass('migrations') IS NOT NULL", database)
    rows = psql_query(port, "SELECT migration FROM migrations ORDER BY 1", database)
    return f'if [ "$({exists})" = t ]; then {rows}; fi'


def _wait_for_postgres(port: int, seconds: int) -> str:
    """Shell: wait until PostgreSQL accepts connections, at most ``seconds`` (then go on: the
    next command says what is wrong)."""
    return (
        f"i=0; until pg_isready -q -p {int(port)}; do i=$((i+1)); "
        f'[ "$i" -ge {int(seconds)} ] && break; sleep 1; done'
    )


def schema_fingerprint(
    port: int, database: str, compare_with: str | None = None, wait: int = 0
) -> str:
    """The database's fingerprint (:mod:`bgdeploy.checks.schema`), as the postgres user on the db
    host.

    Prints ``bgdeploy-fingerprint: SHA256 BATCH ROWS``: the sha256 of the schema
    (``pg_dump --schema-only --no-owner --no-privileges`` without its comments, blank lines and
    per-run ``\\restrict`` keys) followed by the ``migrations`` table's rows (name and batch,
    sorted), the highest batch (0 without the table) and the number of rows.
    ``compare_with``: a snapshot (``.dump``) whose schema is compared with the database's: each
    differing line printed as ``bgdeploy-schema-diff: < line`` (snapshot) or ``> line`` (now),
    at most 40. ``wait``: seconds to wait for PostgreSQL to accept connections first. Changes
    nothing."""

    def filtered(source: str) -> str:
        return (
            "grep -v -e '^--' -e '^\\\\restrict' -e '^\\\\unrestrict' -e '^[[:space:]]*$' "
            f'"{source}" || true'
        )

    exists = f"psql -X -tA -p {int(port)} -d {q(database)} -c {q(_MIGRATIONS_EXIST)}"
    rows_sql = "SELECT migration || ' ' || batch FROM migrations ORDER BY migration, batch"
    rows = f"psql -X -tA -p {int(port)} -d {q(database)} -c {q(rows_sql)}"
    lines = [
        "set -e",
        "umask 077",
        't=$(mktemp); trap \'rm -f "$t" "$t.raw" "$t.rows" "$t.snap"\' EXIT',
        *([_wait_for_postgres(port, wait)] if wait else []),
        f'pg_dump --schema-only --no-owner --no-privileges -p {int(port)} -f "$t.raw" '
        f"{q(database)}",
        f'{{ {filtered("$t.raw")}; }} > "$t"',
        f'if [ "$({exists})" = t ]; then {rows} > "$t.rows"; else : > "$t.rows"; fi',
        'echo "bgdeploy-fingerprint: $(cat "$t" "$t.rows" | sha256sum | cut -c1-64) '
        "$(awk 'BEGIN {m = 0} $NF > m {m = $NF} END {print m}' \"$t.rows\") "
        '$(wc -l < "$t.rows")"',
    ]
    if compare_with is not None:
        if not compare_with.endswith(".dump") or not SNAPSHOT_PATH.match(compare_with):
            raise ConfigError(f"snapshot path {compare_with!r} is not valid")
        lines.append(
            f"if [ -r {q(compare_with)} ]; then "
            f'pg_restore --schema-only --no-owner --no-privileges -f "$t.raw" {q(compare_with)} '
            f'&& {{ {filtered("$t.raw")}; }} > "$t.snap" && '
            '{ diff "$t.snap" "$t" | grep "^[<>]" | head -n 40 | '
            "sed 's/^/bgdeploy-schema-diff: /'; true; }; fi"
        )
    return as_user("postgres", "; ".join(lines))


_MIGRATIONS_EXIST = "SELECT to_regclass('migrations') IS NOT NULL"

SNAPSHOT_PATH = re.compile(r"^/[A-Za-z0-9_./-]+\Z")


def migrations_after(port: int, database: str, batch: int, wait: int = 0) -> str:
    """The migrations recorded in a batch above ``batch`` (what one ``migrate`` run added), in
    the order ``migrate:rollback`` undoes them (newest first), one line
    ``bgdeploy-migration: NAME BATCH`` each, as the postgres user on the db host. ``wait``:
    seconds to wait for PostgreSQL to accept connections first."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 0:
        raise ConfigError(f"migration batch {batch!r} must be a whole number")
    sql = (
        "SELECT 'bgdeploy-migration: ' || migration || ' ' || batch FROM migrations "  # noqa: S608
        f"WHERE batch > {int(batch)} ORDER BY batch DESC, migration DESC"
    )
    exists = f"psql -X -tA -p {int(port)} -d {q(database)} -c {q(_MIGRATIONS_EXIST)}"
    query = f"psql -X -tA -v ON_ERROR_STOP=1 -p {int(port)} -d {q(database)} -c {q(sql)}"
    script = "; ".join(
        [
            *([_wait_for_postgres(port, wait)] if wait else []),
            f'e=$({exists}) || exit 1; if [ "$e" = t ]; then {query}; fi',
        ]
    )
    return as_user("postgres", script)


SNAPSHOT_CREATED = re.compile(r"^bgdeploy-snapshot: (\S+) (\d+) ([0-9a-f]{64})$", re.MULTILINE)
"""The line :func:`snapshot_create` ends with: name, size in bytes, sha256."""


def snapshot_create(backups_dir: str, name: str, database: str, port: int, keep: int) -> str:
    """A verified database snapshot, to run as the postgres user on the db host.

    Checks free disk first (at least twice the previous dump; before the first one, the
    database's size), then ``pg_dump -Fc`` to ``<backups_dir>/<name>.dump``, reads it back
    completely (``pg_restore -f /dev/null``: ``--list`` alone misses a truncated dump), writes
    the ``<name>.dump.sha256`` sidecar, makes both 0600 and keeps the newest ``keep`` dumps.
    Prints ``bgdeploy-snapshot: NAME SIZE SHA256``.
    """
    if not SNAPSHOT_NAME.match(name):
        raise ConfigError(f"snapshot name {name!r} is not valid")
    if not 1 <= int(keep) <= 1000:
        raise ConfigError(f"snapshot_keep {keep!r} must be from 1 to 1000")
    dump, tmp = f"{name}.dump", f"{name}.dump.tmp"
    script = "; ".join(
        [
            "set -e",
            f"cd {q(backups_dir)}",
            "umask 077",
            f"trap 'rm -f {tmp}' EXIT",
            *_snapshot_need(database, port),
            'if [ "$free" -lt "$need" ]; then echo "bgdeploy-snapshot: not enough disk in '
            f'{backups_dir}: $free KiB free, $need KiB needed (twice the previous dump)" >&2; '
            "exit 1; fi",
            f"pg_dump -Fc -Z 6 --no-owner -p {int(port)} -f {tmp} {q(database)}",
            f"pg_restore -f /dev/null {tmp}",
            f"mv -f {tmp} {dump}",
            f"sha256sum {dump} > {dump}.sha256",
            f"chmod 0600 {dump} {dump}.sha256",
            f"ls -1t -- *.dump | tail -n +{int(keep) + 1} | "
            'while read -r old; do rm -f -- "$old" "$old.sha256"; done',
            f'echo "bgdeploy-snapshot: {name} $(stat -c %s {dump}) $(cut -d" " -f1 {dump}.sha256)"',
        ]
    )
    return as_user("postgres", script)


def _snapshot_need(database: str, port: int) -> list[str]:
    """Shell lines (in the backups directory) setting ``need`` and ``free`` in KiB: a snapshot
    needs twice the previous dump, or before the first one the database's size."""
    size_sql = "SELECT pg_database_size(current_database()) / 1024"
    return [
        "prev=$(ls -1t -- *.dump 2>/dev/null | head -n 1)",
        'if [ -n "$prev" ]; then need=$(( $(stat -c %s -- "$prev") * 2 / 1024 )); '
        f"else need=$(psql -X -tA -p {int(port)} -d {q(database)} -c {q(size_sql)}); fi",
        "free=$(df -Pk . | awk 'NR==2 {print $4}')",
    ]


def snapshot_space(backups_dir: str, database: str, port: int) -> str:
    """Print ``need_kb=N``, ``free_kb=N`` and ``db_kb=N`` for the next snapshot on the db host
    (the rule :func:`snapshot_create` enforces), as the postgres user. Changes nothing."""
    size_sql = "SELECT pg_database_size(current_database()) / 1024"
    script = "; ".join(
        [
            "set -e",
            f"cd {q(backups_dir)}",
            *_snapshot_need(database, port),
            f"db=$(psql -X -tA -p {int(port)} -d {q(database)} -c {q(size_sql)})",
            'echo "need_kb=$need"; echo "free_kb=$free"; echo "db_kb=$db"',
        ]
    )
    return as_user("postgres", script)


def git_is_ancestor(sha: str, branch: str) -> str:
    """Print ``yes`` when commit ``sha`` is reachable from ``origin``'s ``branch``, ``no`` when
    not, ``missing`` when ``origin`` has no such branch (current repository)."""
    from bgdeploy.core.refs import validate_ref

    validate_ref(branch)
    tip = q(f"refs/remotes/origin/{branch}")
    return (
        f"if ! git rev-parse -q --verify {tip} >/dev/null; then echo missing; "
        f"elif git merge-base --is-ancestor {_sha(sha)} {tip}; then echo yes; else echo no; fi"
    )


def git_changed_files(base: str, sha: str, directory: str) -> str:
    """``git diff --name-status BASE SHA -- DIRECTORY/``: files added (A), modified (M) or
    deleted (D) from commit ``base`` to ``sha`` (current repository)."""
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\Z", directory) or ".." in directory:
        raise ConfigError(f"directory {directory!r} is not valid")
    return f"git diff --no-renames --name-status {_sha(base)} {_sha(sha)} -- {q(directory + '/')}"


def show_optional_file(sha: str, path: str) -> str:
    """Print file ``path`` of commit ``sha`` after a line ``==> bgdeploy-file PATH``, or only
    ``==> bgdeploy-missing PATH`` when that commit has no such file."""
    if not re.match(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\Z", path) or ".." in path:
        raise ConfigError(f"file path {path!r} is not valid")
    spec = q(f"{_sha(sha)}:{path}")
    return (
        f"if git cat-file -e {spec} 2>/dev/null; then echo {q('==> bgdeploy-file ' + path)} "
        f"&& git show {spec}; else echo {q('==> bgdeploy-missing ' + path)}; fi"
    )


def snapshot_id(name: str) -> str:
    """A snapshot's name, checked: letters, digits, ``.``, ``_``, ``-`` (no ``/``, no leading
    dot), at most 128 characters; a trailing ``.dump`` is dropped (``snapshot list`` names)."""
    base = name.removesuffix(".dump") if isinstance(name, str) else ""
    if not SNAPSHOT_NAME.match(base):
        raise ConfigError(
            f"snapshot name {name!r} is not valid (letters, digits, '.', '_', '-'; "
            "no '/', not starting with '.')"
        )
    return base


SNAPSHOT_LIST_PREFIX = "bgdeploy-snapshot-list "


def snapshot_list(backups_dir: str) -> str:
    """List the snapshots in ``backups_dir``, newest first, as the postgres user: one line
    ``bgdeploy-snapshot-list NAME|BYTES|TAKEN (UTC)|SIDECAR (yes/no)`` per ``.dump``."""
    line = (
        f"printf '{SNAPSHOT_LIST_PREFIX}%s|%s|%s|%s\\n' \"${{f%.dump}}\" "
        '"$(stat -c %s -- "$f")" "$(date -u -r "$f" +%Y-%m-%dT%H:%M:%SZ)" '
        '"$(if [ -f "$f.sha256" ]; then echo yes; else echo no; fi)"'
    )
    script = (
        f"cd {q(backups_dir)} && {{ ls -1t -- *.dump 2>/dev/null || true; }} | "
        f"while IFS= read -r f; do {line}; done"
    )
    return as_user("postgres", script)


def snapshot_verify(backups_dir: str, name: str) -> str:
    """Verify a snapshot, as the postgres user on the db host: the dump's sha256 equals its
    ``.sha256`` sidecar, ``pg_restore --list`` reads its table of contents, and
    ``pg_restore -f /dev/null`` reads it whole. Prints ``bgdeploy-verify: NAME ok BYTES SHA256``;
    otherwise fails with the reason on stderr."""
    name = snapshot_id(name)
    dump = f"{name}.dump"

    def fail(why: str) -> str:
        return f"{{ echo {q('bgdeploy-verify: ' + name + ': ' + why)} >&2; exit 1; }}"

    script = "\n".join(
        [
            f"cd {q(backups_dir)} || exit 1",
            f"[ -f {dump} ] || {fail(f'no {dump} in {backups_dir}')}",
            f"[ -f {dump}.sha256 ] || {fail(f'{dump}.sha256 is missing')}",
            f"want=$(cut -d' ' -f1 {dump}.sha256)",
            f"have=$(sha256sum < {dump} | cut -d' ' -f1)",
            f'[ "$want" = "$have" ] || {fail("sha256 does not match its .sha256 sidecar")}',
            f"pg_restore --list {dump} > /dev/null || {fail('pg_restore --list cannot read it')}",
            f"pg_restore -f /dev/null {dump} || {fail('pg_restore cannot read it whole')}",
            f'echo "bgdeploy-verify: {name} ok $(stat -c %s {dump}) $have"',
        ]
    )
    return as_user("postgres", script)


def _psql_script(port: int) -> str:
    """``P``: the postgres superuser's psql on the maintenance database (for scripts)."""
    return f'P="psql -X -q -v ON_ERROR_STOP=1 -p {int(port)} -d postgres"'


def snapshot_restore_scratch(
    backups_dir: str, name: str, port: int, scratch: str, owner: str, before: str
) -> str:
    """Restore a snapshot into the empty database ``scratch`` (owned by ``owner``, the app's
    role, its objects too), as the postgres user on the db host; the live database is not
    touched. The database a previous restore replaced (``before``) is dropped first (fails
    while someone is connected to it). Fails, ``scratch`` dropped again, when
    ``pg_restore`` (one transaction, stop at the first error) fails."""
    dump = f"{snapshot_id(name)}.dump"
    create = f"CREATE DATABASE {sql_ident(scratch)} OWNER {sql_ident(owner)} TEMPLATE template0"
    drop = f"DROP DATABASE IF EXISTS {sql_ident(scratch)}"
    message = f"bgdeploy-restore: {dump} could not be restored into {scratch}; live not touched"
    script = "\n".join(
        [
            "set -e",
            f"cd {q(backups_dir)}",
            _psql_script(port),
            f"$P -c {q(f'DROP DATABASE IF EXISTS {sql_ident(before)}')}",
            f"$P -c {q(drop)}",
            f"$P -c {q(create)}",
            f"if ! pg_restore --no-owner --role={q(owner)} --single-transaction --exit-on-error "
            f"-p {int(port)} -d {q(scratch)} {dump}; then "
            f"$P -c {q(drop)}; echo {q(message)} >&2; exit 1; fi",
            f"echo {q('bgdeploy-restore: ' + scratch + ' ready')}",
        ]
    )
    return as_user("postgres", script)


def drop_database(port: int, database: str) -> str:
    """Drop a database if it exists, as the postgres user (a scratch restore left behind)."""
    sql = f"DROP DATABASE IF EXISTS {sql_ident(database)}"
    return as_user("postgres", f"cd / && {_psql_script(port)} && $P -c {q(sql)}")


def database_swap(port: int, live: str, scratch: str, before: str, wait: int = 10) -> str:
    """Swap the database ``scratch`` in under the name ``live``, as the postgres user.

    New connections to ``live`` are refused (``ALLOW_CONNECTIONS false``), its sessions are
    terminated (for up to ``wait`` seconds), then in one transaction ``live`` becomes
    ``before`` and ``scratch`` becomes ``live``. On any failure ``live`` takes connections
    again, unchanged, and the command fails. Prints ``bgdeploy-swap: ok``.
    """
    ident, literal = sql_ident(live), sql_literal(live)
    for name in (scratch, before):
        sql_ident(name)
    # live is a checked name, quoted by sql_literal: nothing reaches SQL unquoted.
    count = f"SELECT count(*) FROM pg_stat_activity WHERE datname = {literal}"  # noqa: S608
    terminate = (
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {literal} "  # noqa: S608
        "AND pid <> pg_backend_pid()"
    )
    rename_live = f"ALTER DATABASE {ident} RENAME TO {sql_ident(before)}"
    rename_scratch = f"ALTER DATABASE {sql_ident(scratch)} RENAME TO {ident}"
    message = f"bgdeploy-swap: {live} still has sessions or could not be renamed; it is unchanged"
    script = "\n".join(
        [
            "cd /",
            _psql_script(port),
            f"$P -c {q(f'ALTER DATABASE {ident} WITH ALLOW_CONNECTIONS false')} || exit 1",
            "n=unknown",
            f"for i in $(seq {int(wait) * 5}); do $P -tA -c {q(terminate)} > /dev/null; "
            f'n=$($P -tA -c {q(count)}); [ "$n" = 0 ] && break; sleep 0.2; done',
            f'if [ "$n" = 0 ] && $P -1 -c {q(rename_live)} -c {q(rename_scratch)}; then',
            f"  $P -c {q(f'ALTER DATABASE {sql_ident(before)} WITH ALLOW_CONNECTIONS true')}",
            "  echo 'bgdeploy-swap: ok'",
            "else",
            f"  $P -c {q(f'ALTER DATABASE {ident} WITH ALLOW_CONNECTIONS true')}",
            f"  echo {q(message)} >&2; exit 1",
            "fi",
        ]
    )
    return as_user("postgres", script)


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


def as_root(command: str) -> str:
    """Run a shell command as root through ``sudo -n`` (fails instead of prompting)."""
    return f"sudo -n -H sh -c {q(command)}"


def restart_live_workers(settings: Settings, directory: str) -> str:
    """Restart the queue workers on the new code: the supervisor program is stopped (each
    worker finishes its job), ``queue:restart`` is signalled in ``directory`` (for workers
    elsewhere), and the program started again.

    Not ``queue:restart`` followed by ``supervisorctl restart``: a worker that exits for the
    queue restart is respawned, and a stop that reaches the new process in its first seconds
    waits the program's whole ``stopwaitsecs`` (90 s, measured) before supervisor kills it.
    """
    signal = in_dir(directory, queue_restart())
    if not settings.queue_workers:
        return signal
    program = f"{settings.app_name}-worker"
    return join(
        as_root(supervisor_group("stop", program)),
        signal,
        as_root(supervisor_group("start", program)),
    )


def supervisor_control(action: str, program: str) -> str:
    """``supervisorctl stop|start|restart NAME:*`` (every process of the program)."""
    if action not in ("stop", "start", "restart"):
        raise ConfigError(f"supervisor action {action!r} is not stop, start or restart")
    if not SERVICE_NAME.match(program):
        raise ConfigError(f"supervisor program {program!r} is not valid")
    return f"supervisorctl {action} {q(program + ':*')}"


SUPERVISOR_SOCKET = "/var/run/supervisor.sock"

SUPERVISOR_RPC = """
import http.client, socket, sys, xmlrpc.client
class Connection(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(sys.argv[1])
class Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        return Connection("localhost")
action, group = sys.argv[2], sys.argv[3]
rpc = xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=Transport()).supervisor
try:
    done = getattr(rpc, action + "ProcessGroup")(group, True)
except (OSError, xmlrpc.client.Error) as error:
    sys.exit(f"supervisor: {action} {group}: {getattr(error, 'faultString', error)}")
for result in done:
    if result["status"] == 80:
        print(result["name"] + (": stopped" if action == "stop" else ": started"))
failed = [r["name"] + ": " + r["description"] for r in done if r["status"] != 80]
if failed:
    sys.exit(f"supervisor: {action} {group}: " + "; ".join(failed))
"""
"""``stop``/``start`` of a program's process group through supervisord's XML-RPC socket,
waiting as ``supervisorctl`` does: a few standard modules instead of supervisorctl's start-up
(about a tenth of the CPU, which adds up with many hosts on shared cores)."""


def supervisor_group(action: str, program: str) -> str:
    """``supervisorctl stop|start NAME:*``, through supervisord's socket when it is at
    :data:`SUPERVISOR_SOCKET` (:data:`SUPERVISOR_RPC`), else through ``supervisorctl``. Run as
    root; fails naming each process that did not stop or start."""
    if action not in ("stop", "start"):
        raise ConfigError(f"supervisor group action {action!r} is not stop or start")
    fallback = supervisor_control(action, program)
    sock = q(SUPERVISOR_SOCKET)
    rpc = f"python3 -I -S -c {q(SUPERVISOR_RPC)} {sock} {action} {q(program)}"
    return f"if [ -S {sock} ]; then {rpc}; else {fallback}; fi"


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


# Smoke tests (bgdeploy smoke, blue-green before a switch) ------------------------------------

SMOKE_REQUESTS = (
    # name, path, with the API token
    ("health", "/api/health", False),
    ("homepage", "/", False),
    ("api auth", "/api/me", True),
    ("api without token", "/api/me", False),
    ("database", "/api/visa-applications", True),
)


def smoke_requests(port: int) -> str:
    """The runbook's smoke-test requests against ``127.0.0.1:PORT`` on a host (the public
    listener, or the preview listener for the idle colour), all at once: the time of the
    slowest, not of the five.

    The API token arrives on stdin (first line) and reaches curl on stdin too, so it never
    shows in a process list. For each request, in order, one line: ``bgdeploy-smoke
    NAME|STATUS|X-RELEASE|X-COLOUR|SECONDS|BODY`` (the body cut to 4 KiB, newlines removed).
    Never fails.
    """
    lines = [
        "IFS= read -r token || true",
        "d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT",
    ]
    for number, (_name, path, auth) in enumerate(SMOKE_REQUESTS):
        url = q(f"http://127.0.0.1:{int(port)}{path}")
        header = 'printf "Authorization: Bearer %s\\n" "$token"' if auth else "printf ''"
        lines.append(
            f"{{ {header} | curl -s -m 10 -H @- -H 'Accept: application/json' "
            f'-o "$d/{number}.body" -w \'%{{http_code}}|%header{{x-release}}|%header{{x-colour}}|'
            f'%{{time_total}}\' {url} > "$d/{number}.meta" || true; }} &'
        )
    lines.append("wait")
    for number, (name, _path, _auth) in enumerate(SMOKE_REQUESTS):
        lines.append(
            f'printf \'bgdeploy-smoke {name}|%s|%s\\n\' "$(cat "$d/{number}.meta" 2>/dev/null)" '
            f'"$(head -c 4096 "$d/{number}.body" 2>/dev/null | tr -d \'\\n\\r\')"'
        )
    return "\n".join(lines)


# The blue-green colour switch (bgdeploy/strategies/switch.py) -------------------------------------

SWITCH_NEW = ".bgdeploy-new"
SWITCH_PREV = ".bgdeploy-prev"
SWITCH_PENDING = ".bgdeploy-pending"
"""Beside the live include while a switch waits for the operator's confirmation: its token."""
SWITCH_LOCK = ".bgdeploy-lock"
"""Beside the live include: the lock a switch, its confirmation, its undo and its watchdog
take (``flock``), so that the watchdog never undoes a switch half-way through its
confirmation, nor an older switch's watchdog a newer switch."""
SWITCH_TOKEN = re.compile(r"^[0-9a-f]{8,32}\Z")


def colour_facts(
    app_root: str, live_include: str, idle_include: str, lock_path: str | None = None
) -> str:
    """Print ``key=value`` lines about both colours of a web host: ``current`` (the target of
    ``current``), ``live`` and ``idle`` (the colours the nginx includes serve), and for each
    colour ``blue_head``/``green_head`` (its checked-out commit) and ``blue_built``/
    ``green_built`` (the commit it was last built and verified at), ``blue_built_at``/
    ``green_built_at`` (when, in epoch seconds), and ``now``: the host's
    clock (epoch seconds; a switch's deadline is set by it); with ``lock_path``, ``lock``: the
    deploy lock's one line of JSON (empty when nobody holds it). Never fails."""
    root = q(app_root)
    lines = [
        'echo "now=$(date +%s)"',
        f'echo "current=$(basename "$(readlink {root}/current 2>/dev/null)")"',
        f"echo \"live=$(sed -n 's/^# bgdeploy colour: //p' {q(live_include)} 2>/dev/null)\"",
        f"echo \"idle=$(sed -n 's/^# bgdeploy colour: //p' {q(idle_include)} 2>/dev/null)\"",
        f"echo \"canary=$(sed -n 's/^# bgdeploy canary: //p' {q(live_include)} 2>/dev/null)\"",
    ]
    for colour in ("blue", "green"):
        d = f"{root}/{colour}"
        lines.append(f'echo "{colour}_head=$(git -C {d} rev-parse -q --verify HEAD 2>/dev/null)"')
        lines.append(f'echo "{colour}_built=$(cat {d}/.git/bgdeploy-built 2>/dev/null)"')
        stamp = f"{d}/.git/bgdeploy-built"
        lines.append(f'echo "{colour}_built_at=$(stat -c %Y {stamp} 2>/dev/null)"')
    if lock_path:
        lines.append(f"echo \"lock=$(tr -d '\\n' < {q(lock_path)} 2>/dev/null)\"")
    return "; ".join(lines) + "; true"


def write_file(path: str, content: str, mode: str = "0644") -> str:
    """Write ``content`` to ``path`` (no secret: the content is part of the command)."""
    if not re.match(r"^0[0-7]{3}\Z", mode):
        raise ConfigError(f"file mode {mode!r} is not valid")
    return f"printf '%s' {q(content)} > {q(path)} && chmod {mode} {q(path)}"


def switch_prepare(live_include: str, idle_include: str, live: str, idle: str) -> str:
    """Phase 1 of a switch: the new includes written beside the old ones (nothing changes)."""
    return join(
        write_file(live_include + SWITCH_NEW, live), write_file(idle_include + SWITCH_NEW, idle)
    )


def switch_apply(live_include: str, idle_include: str, before_reload: str = "") -> str:
    """Phase 2 of a switch: keep the old includes, rename the new ones over them (atomic),
    ``nginx -t``, ``before_reload``, reload (graceful: requests in flight finish). A failing
    test puts the old includes back and fails."""
    steps = []
    for path in (live_include, idle_include):
        steps.append(f"cp -p {q(path)} {q(path + SWITCH_PREV)}")
    for path in (live_include, idle_include):
        steps.append(f"mv -fT {q(path + SWITCH_NEW)} {q(path)}")
    restore = "; ".join(f"mv -fT {q(p + SWITCH_PREV)} {q(p)}" for p in (live_include, idle_include))
    undo = f"{{ {restore}; echo 'bgdeploy: nginx -t failed, switch undone' >&2; exit 1; }}"
    tested = join(*steps) + f" && {{ {nginx_test()} || {undo}; }}"
    return join(tested, before_reload, nginx_reload_settled())


NGINX_WORKER = "nginx: worker process"


def nginx_reload_settled(seconds: float = 5.0) -> str:
    """Gracefully reload nginx (already tested), then wait until no worker of the old
    configuration takes new connections: each one is gone or ``is shutting down`` (finishing
    its requests). So the new configuration serves every new request when this returns. The
    wait ends after ``seconds`` in any case (the reload was sent)."""
    workers = f"$(pgrep -d ' ' -f -x {q(NGINX_WORKER)})"
    stale = 'stale=; for p in $old; do case " $now " in *" $p "*) stale=1;; esac; done'
    loop = (
        f"i=0; while [ $i -lt {int(seconds * 100)} ]; do now={workers}; {stale}; "
        '[ -z "$stale" ] && break; i=$((i+1)); sleep 0.01; done; true'
    )
    return f"{{ old={workers}; {nginx_signal_reload()} && {{ {loop}; }}; }}"


NGINX_PID = "/run/nginx.pid"


def nginx_signal_reload() -> str:
    """Reload nginx by its master's ``HUP`` (what ``nginx -s reload`` and the systemd unit's
    reload send), the configuration already tested: the init script would test it again, a
    whole parse of the configuration per host. Falls back on ``service nginx reload`` when
    the pid file does not name a running nginx."""
    master = (
        f"p=$(cat {NGINX_PID} 2>/dev/null) && "
        '[ "$(cat /proc/$p/comm 2>/dev/null)" = nginx ] && kill -HUP "$p"'
    )
    return f"{{ {{ {master}; }} || {service('nginx', 'reload')} >/dev/null; }}"


def locked(live_include: str, command: str, wait: int = 10) -> str:
    """``command`` in a subshell holding the switch lock (:data:`SWITCH_LOCK`); fails when the
    lock is not free within ``wait`` seconds."""
    lock = q(live_include + SWITCH_LOCK)
    busy = "bgdeploy: another switch holds the switch lock on this host"
    return f"( flock -w {int(wait)} 9 || {{ echo {q(busy)} >&2; exit 1; }}; {command} ) 9>{lock}"


def _token(token: str) -> str:
    if not SWITCH_TOKEN.match(token):
        raise ConfigError(f"switch token {token!r} is not valid")
    return token


def switch_colour(
    live_include: str,
    idle_include: str,
    live: str,
    idle: str,
    app_root: str,
    colour: str,
    deadline: int | None = None,
    watchdog: tuple[str, int, str, str] | None = None,
) -> str:
    """A whole switch of one host to ``colour``, in one round trip: the new includes written
    (:func:`switch_prepare`) and renamed over the old ones, ``nginx -t``, ``current`` moved,
    nginx reloaded (:func:`switch_apply`); :func:`switch_revert` undoes it.

    + deadline: the host's clock (epoch seconds) after which the command refuses to start: a
      switch that reaches a host late (it stopped answering, the switch gave up on it) must
      not switch it afterwards
    + watchdog: ``(token, seconds, colour back, on undo)``: the switch stays pending under
      ``token`` until :func:`switch_confirm`; a host that hears nothing more within
      ``seconds`` (its network was cut after it switched, the operator's process died) undoes
      the switch by itself (back on ``colour back``) and runs ``on undo`` (a journal line)
    """
    guard = ""
    if deadline is not None:
        late = "bgdeploy: the switch reached this host after its deadline: not applied"
        guard = f'{{ [ "$(date +%s)" -lt {int(deadline)} ] || {{ echo {q(late)} >&2; exit 1; }}; }}'
    steps = [guard]
    if watchdog is not None:
        token, seconds, back, on_undo = watchdog
        pending = q(live_include + SWITCH_PENDING)
        undo = join(
            f"grep -qxF {_token(token)} {pending} || exit 0",
            switch_revert(live_include, idle_include, app_root, back, lock=False),
            on_undo,
        )
        # Armed before anything changes: a switch that dies half-way is undone too.
        steps.append(f"echo {token} > {pending}")
        steps.append(in_background(f"sleep {int(seconds)}; {locked(live_include, undo, wait=60)}"))
    steps += [
        switch_prepare(live_include, idle_include, live, idle),
        switch_apply(live_include, idle_include, move_current(app_root, colour)),
    ]
    if watchdog is None:
        return join(*steps)
    # The operator's connection may drop at any moment: finish (or be undone), never be killed
    # by the hangup half-way.
    return f"trap '' HUP PIPE; {locked(live_include, join(*steps))}"


SWITCH_CONFIRMED = "bgdeploy-switch-confirmed"


def switch_confirm(live_include: str, idle_include: str, token: str) -> str:
    """Confirm a pending switch (:func:`switch_colour`'s watchdog) and remove its leftovers;
    fails when the host's watchdog already undid it."""
    pending = q(live_include + SWITCH_PENDING)
    undone = "bgdeploy: this host had already undone the switch (no confirmation in time)"
    return locked(
        live_include,
        join(
            f"{{ grep -qxF {_token(token)} {pending} || {{ echo {q(undone)} >&2; exit 1; }}; }}",
            switch_cleanup(live_include, idle_include),
            f"echo {SWITCH_CONFIRMED}",
        ),
    )


def switch_revert(
    live_include: str, idle_include: str, app_root: str, colour: str, lock: bool = True
) -> str:
    """Undo :func:`switch_colour` on a host where it ran, even in part: the old includes back,
    ``current`` back on ``colour``, nginx tested and reloaded; then the leftovers removed. A
    host the switch never reached is left as it is. Under the switch lock unless ``lock`` is
    False (the caller holds it)."""
    prev = [(p + SWITCH_PREV, p) for p in (live_include, idle_include)]
    any_prev = " || ".join(f"[ -e {q(kept)} ]" for kept, _ in prev)
    back = join(
        *(f"{{ [ ! -e {q(kept)} ] || mv -fT {q(kept)} {q(path)}; }}" for kept, path in prev),
        move_current(app_root, colour),
        nginx_test(),
        nginx_reload_settled(),
    )
    command = (
        f"{{ if {any_prev}; then {back}; fi; }} && {switch_cleanup(live_include, idle_include)}"
    )
    return locked(live_include, command) if lock else command


def in_background(command: str, on_failure: str = "") -> str:
    """Start ``command`` detached from the session (``setsid``, no input, output discarded) and
    go on at once; ``on_failure`` runs when it fails."""
    body = f"{{ {command}; }} || {{ {on_failure}; }}" if on_failure else command
    # fd 9 closed: a switch lock (:func:`locked`) stays with the caller.
    return f"{{ setsid sh -c {q(body)} </dev/null >/dev/null 2>&1 9>&- & }}"


def switch_cleanup(live_include: str, idle_include: str) -> str:
    """Remove what a switch left beside the includes."""
    paths = [
        p + suffix for p in (live_include, idle_include) for suffix in (SWITCH_NEW, SWITCH_PREV)
    ]
    return "rm -f " + " ".join(q(p) for p in [*paths, live_include + SWITCH_PENDING])


def canary_apply(live_include: str, split_include: str, live: str, split: str) -> str:
    """Start or end a canary on one host, in one round trip, with the switch's own steps: the
    split (``split_include``, at nginx's http level; created empty when missing) and the live
    include written beside the old ones (:func:`switch_prepare`), renamed over them,
    ``nginx -t``, reload (:func:`switch_apply`). :func:`switch_revert` undoes it;
    :func:`switch_cleanup` removes the leftovers."""
    ensure = f"{{ [ -e {q(split_include)} ] || : > {q(split_include)}; }}"
    return join(
        ensure,
        switch_prepare(live_include, split_include, live, split),
        switch_apply(live_include, split_include),
    )


def move_current(app_root: str, colour: str) -> str:
    """Point ``current`` at ``colour`` atomically (a new link renamed over the old one)."""
    if colour not in ("blue", "green"):
        raise ConfigError(f"colour {colour!r} is not blue or green")
    root = q(app_root)
    new = f"{root}/current.bgdeploy-new"
    return f"ln -sfn {colour} {new} && mv -fT {new} {root}/current"
