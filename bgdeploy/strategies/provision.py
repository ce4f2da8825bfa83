"""Server setup: what turns a bare Debian host into a BideshGomon web server, db server, or both.

``deploys/provision.py`` calls :func:`database_server` on the hosts of the inventory group
``db`` and :func:`web_server` on the hosts of ``web``; a host in both groups (a single-server
install) gets both. Every step is declarative and idempotent: a second run changes nothing.
Configuration files come from ``templates/`` (:mod:`bgdeploy.core.render`); a file the service can
test (nginx, php-fpm) is installed only if the test passes with it, and a service is reloaded
only when its configuration changed. Services are driven with ``service NAME ...``, which works
on systemd hosts and in the sandbox's containers alike.

The layout on a web host (DESIGN.md, "On each server")::

    APP_ROOT/blue/ green/          the two colours (filled by deploys)
    APP_ROOT/shared/.env           0640 deploy:www-data, from templates/app/env.j2
    APP_ROOT/shared/storage/...    Laravel's storage tree, writable by deploy and php-fpm
    APP_ROOT/current -> blue       created once; afterwards only a deploy moves it
    APP_ROOT/.bgdeploy/            journal and deploy lock
"""

from __future__ import annotations

import ipaddress
from io import StringIO
from typing import Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.server import Command, Home, User
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

from bgdeploy import commands
from bgdeploy.core import render
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.render import COLOURS, IDLE_INCLUDE, LIVE_INCLUDE, Fleet
from bgdeploy.core.settings import Settings
from bgdeploy.oncall import scale
from bgdeploy.strategies.serverops import (
    checked_file,
    file_if_missing,
    link_if_missing,
    packages,
    postgres_database,
    postgres_role,
    secret_file,
    service_running,
)

# Laravel's storage tree, shared by both colours (writable by the deploy user and php-fpm).
STORAGE_DIRS = (
    "storage",
    "storage/app",
    "storage/app/public",
    "storage/framework",
    "storage/framework/cache",
    "storage/framework/cache/data",
    "storage/framework/sessions",
    "storage/framework/views",
    "storage/logs",
)


def web_packages(settings: Settings) -> list[str]:
    """Debian packages of a web host: nginx, php-fpm and the app's extensions, workers."""
    php = f"php{settings.php_version}"
    extensions = ("fpm", "cli", "pgsql", "redis", "mbstring", "xml", "curl", "zip", "bcmath")
    return [
        "nginx",
        *(f"{php}-{extension}" for extension in (*extensions, "intl")),
        "supervisor",
        "cron",
        "logrotate",
        "git",
        "composer",
        "nodejs",
        "npm",
        f"postgresql-client-{settings.postgres_version}",
        "redis-tools",
    ]


def db_packages(settings: Settings) -> list[str]:
    """Debian packages of a db host: PostgreSQL and Redis."""
    return [f"postgresql-{settings.postgres_version}", "redis-server"]


def _address(value: Any, where: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ConfigError(
            f"{where}: private_ip must be the host's address on the private network, "
            f"not {value!r} (set it in the inventory)"
        ) from None


def fleet(inventory: Any) -> Fleet:
    """The addresses one host's configuration needs: the db host's and every web host's
    ``private_ip`` (inventory host data). There must be exactly one db host."""
    db_hosts = list(inventory.get_group("db", []))
    if len(db_hosts) != 1:
        names = ", ".join(h.name for h in db_hosts) or "none"
        raise ConfigError(f"the inventory needs exactly one host in the group 'db' ({names})")
    db = db_hosts[0]
    web_ips = tuple(
        _address(h.data.get("private_ip"), f"inventory host {h.name}")
        for h in inventory.get_group("web", [])
    )
    return Fleet(_address(db.data.get("private_ip"), f"inventory host {db.name}"), web_ips)


def checked_inputs(inventory: Any) -> tuple[Settings, dict[str, str], Fleet]:
    """This host's settings, the secrets and the fleet's addresses, all checked before any
    operation exists: a wrong setting, a missing secret or a host without ``private_ip``
    stops the run here, with pyinfra's one-line error naming the key or the variable."""
    from pyinfra.api.exceptions import PyinfraError

    from bgdeploy.core.settings import secrets_from_env
    from bgdeploy.fleet.runner import current_settings

    try:
        return current_settings(), secrets_from_env(), fleet(inventory)
    except ConfigError as error:
        raise PyinfraError(f"bgdeploy: {error}") from None


def _template_dir() -> str | None:
    """``--data bgdeploy_template_dir=PATH``: render from another copy of ``templates/``."""
    value = host.data.get("bgdeploy_template_dir")
    return str(value) if value else None


def _check_secrets(secrets: dict[str, str]) -> None:
    for name in ("DB_PASSWORD", "REDIS_PASSWORD"):
        value = secrets.get(name, "")
        if not value.isascii() or not value.isprintable():
            raise ConfigError(f"the {name} secret must be printable ASCII (no line breaks)")


def _upload_dir() -> tuple[str, str]:
    """(directory, owner) for uploads of secret files: private to the SSH user."""
    user = host.get_fact(User, _sudo=False)
    home = host.get_fact(Home, _sudo=False)
    return f"{home}/.bgdeploy-upload", user


def _private_upload_dir() -> str:
    directory, owner = _upload_dir()
    files.directory(
        name="Private upload directory for secret files",
        path=directory,
        user=owner,
        mode="700",
    )
    return directory


@deploy("Database server")
def database_server(settings: Settings, fleet: Fleet, secrets: dict[str, str]) -> None:
    """PostgreSQL (role and database of the app, listening on the private network, reachable
    from the web hosts only), Redis (private address, password) and the snapshot directory."""
    s = settings
    templates = _template_dir()
    _check_secrets(secrets)
    private_ip = _address(host.data.get("private_ip"), f"inventory host {host.name}")
    packages(name="Install PostgreSQL and Redis", packages=db_packages(s))
    upload_dir = _private_upload_dir()
    files.directory(
        name="Snapshot directory (postgres only)",
        path=s.backups_dir,
        user="postgres",
        group="postgres",
        mode="700",
    )

    pg_dir = f"/etc/postgresql/{s.postgres_version}/main"
    listen = files.put(
        name="PostgreSQL: listen on the private address",
        src=StringIO(render.postgres_conf(s, private_ip, templates)),
        dest=f"{pg_dir}/conf.d/{s.app_name}.conf",
        user="postgres",
        group="postgres",
        mode="644",
    )
    hba = files.block(
        name="PostgreSQL: the web hosts (only) may connect (pg_hba.conf)",
        path=f"{pg_dir}/pg_hba.conf",
        content=render.pg_hba_lines(s, fleet, templates).rstrip("\n"),
        marker="# {mark} bgdeploy: web hosts",
    )
    service_running(name="PostgreSQL: running", service="postgresql")
    server.shell(
        name="PostgreSQL: restart (listen address or port changed)",
        commands=[commands.service("postgresql", "restart")],
        _if=listen.did_change,
    )
    server.shell(
        name="PostgreSQL: reload (pg_hba.conf changed)",
        commands=[commands.service("postgresql", "reload")],
        _if=lambda: hba.did_change() and not listen.did_change(),
    )
    postgres_role(
        name=f"PostgreSQL: role {s.db_user}",
        role=s.db_user,
        password=secrets["DB_PASSWORD"],
        port=s.db_port,
    )
    postgres_database(
        name=f"PostgreSQL: database {s.db_name}",
        database=s.db_name,
        owner=s.db_user,
        port=s.db_port,
    )

    redis_conf = secret_file(
        name="Redis: private address, password, protected mode",
        path="/etc/redis/bgdeploy.conf",
        content=render.redis_conf(s, private_ip, secrets["REDIS_PASSWORD"], templates),
        user="redis",
        group="redis",
        mode="640",
        upload_dir=upload_dir,
    )
    redis_include = files.line(
        name="Redis: read bgdeploy.conf last",
        path="/etc/redis/redis.conf",
        line=r"^include /etc/redis/bgdeploy\.conf$",
        replace="include /etc/redis/bgdeploy.conf",
    )
    service_running(name="Redis: running", service="redis-server")
    redis_changed = any_changed(redis_conf, redis_include)
    server.shell(
        name="Redis: restart (configuration changed)",
        commands=[commands.service("redis-server", "restart")],
        _if=redis_changed,
    )
    server.shell(
        name="Redis: answers on the private address, password required",
        commands=[commands.redis_wait_protected(private_ip, s.redis_port)],
        _if=redis_changed,
    )


@deploy("Web server")
def web_server(settings: Settings, fleet: Fleet, secrets: dict[str, str]) -> None:
    """nginx (public listener: live colour; preview listener: idle colour), one php-fpm pool
    per colour, the app layout and ``shared/.env``, queue workers, scheduler, logrotate."""
    s = _keep_scaled(settings)
    templates = _template_dir()
    _check_secrets(secrets)
    packages(name="Install nginx, php-fpm and the app's tools", packages=web_packages(s))
    server.group(name=f"Deploy group {s.deploy_user}", group=s.deploy_user)
    server.user(  # noqa: S604 - "shell" is the login shell, not a subprocess flag
        name=f"Deploy user {s.deploy_user} (in {s.php_fpm_group})",
        user=s.deploy_user,
        group=s.deploy_user,
        groups=[s.php_fpm_group],
        append=True,
        shell="/bin/bash",
        create_home=True,
    )
    upload_dir = _private_upload_dir()
    _app_layout(s)
    secret_file(
        name="shared/.env (settings and secrets)",
        path=f"{s.app_root}/shared/.env",
        content=render.dotenv(s, fleet, secrets, templates),
        user=s.deploy_user,
        group=s.php_fpm_group,
        mode="640",
        upload_dir=upload_dir,
    )
    _php_fpm(s, templates)
    _nginx(s, templates)
    _queue_workers(s, templates)
    files.put(
        name="Scheduler (cron, through current)",
        src=StringIO(render.scheduler_cron(s, templates)),
        dest=f"/etc/cron.d/{render.cron_file_name(s)}",
        user="root",
        group="root",
        mode="644",
    )
    service_running(name="cron: running", service="cron")
    files.put(
        name="logrotate for shared/storage/logs",
        src=StringIO(render.logrotate(s, templates)),
        dest=f"/etc/logrotate.d/{render.cron_file_name(s)}",
        user="root",
        group="root",
        mode="644",
    )


def _keep_scaled(settings: Settings) -> Settings:
    """group_data's settings, with what ``bgdeploy scale`` set on this host kept, and said
    (:mod:`bgdeploy.oncall.scale`): a provision does not undo an operator's scaling."""
    path = scale.scale_path(settings)
    kept = scale.parse(host.get_fact(Command, f"cat {commands.q(path)} 2>/dev/null || true") or "")
    for field, (configured, scaled) in scale.overrides(settings, kept).items():
        if configured != scaled:
            logger.warning(
                f"{host.print_prefix}{field} stays {scaled}, set by `bgdeploy scale` ({path}); "
                f"group_data says {configured}"
            )
    return scale.apply(settings, kept)


def _app_layout(s: Settings) -> None:
    root = s.app_root
    files.directory(name="app_root", path=root, user=s.deploy_user, group=s.deploy_user, mode="755")
    for colour in host.loop(COLOURS):
        files.directory(
            name=f"Colour {colour}",
            path=f"{root}/{colour}",
            user=s.deploy_user,
            group=s.php_fpm_group,
            mode="755",
        )
    files.directory(
        name="shared/", path=f"{root}/shared", user=s.deploy_user, group=s.deploy_user, mode="755"
    )
    for path in host.loop(STORAGE_DIRS):
        files.directory(
            name=f"shared/{path} (deploy and php-fpm write here)",
            path=f"{root}/shared/{path}",
            user=s.deploy_user,
            group=s.php_fpm_group,
            mode="2775",
        )
    files.directory(
        name=".bgdeploy/ (journal, lock)",
        path=f"{root}/.bgdeploy",
        user=s.deploy_user,
        group=s.deploy_user,
        mode="750",
    )
    link_if_missing(
        name="current -> blue (first provisioning only)",
        path=f"{root}/current",
        target="blue",
        user=s.deploy_user,
        group=s.deploy_user,
    )


def _php_fpm(s: Settings, templates: str | None) -> None:
    pool_dir = s.php_fpm_pool_dir
    test = commands.php_fpm_test(s.php_version)
    changes = [
        checked_file(
            name="php-fpm: process_control_timeout (reloads finish requests in flight)",
            path=f"{pool_dir}/{s.app_name}-global.conf",
            content=render.fpm_global(s, templates),
            test=test,
        )
    ]
    for colour in host.loop(COLOURS):
        changes.append(
            checked_file(
                name=f"php-fpm: pool {render.pool_name(s, colour)}",
                path=f"{pool_dir}/{render.pool_name(s, colour)}.conf",
                content=render.fpm_pool(s, colour, templates),
                test=test,
            )
        )
    changes.append(
        files.file(
            name="php-fpm: remove Debian's default pool (www)",
            path=f"{pool_dir}/www.conf",
            present=False,
        )
    )
    service_running(name="php-fpm: running", service=s.php_fpm_service)
    server.shell(
        name="php-fpm: test and reload (configuration changed)",
        commands=[commands.php_fpm_reload(s.php_version)],
        _if=any_changed(*changes),
    )


def _nginx(s: Settings, templates: str | None) -> None:
    changes = [
        file_if_missing(
            name="nginx: live.conf (blue, unless a switch already chose)",
            path=LIVE_INCLUDE,
            content=render.colour_include(s, "blue", templates),
        ),
        file_if_missing(
            name="nginx: idle.conf (green, unless a switch already chose)",
            path=IDLE_INCLUDE,
            content=render.colour_include(s, "green", templates),
        ),
        files.link(
            name="nginx: disable Debian's default site",
            path="/etc/nginx/sites-enabled/default",
            present=False,
        ),
        checked_file(
            name="nginx: the site (public and preview listeners)",
            path=f"/etc/nginx/sites-available/{s.app_name}.conf",
            content=render.nginx_site(s, templates),
            test=commands.nginx_test(),
            enable=f"/etc/nginx/sites-enabled/{s.app_name}.conf",
        ),
    ]
    service_running(name="nginx: running", service="nginx")
    server.shell(
        name="nginx: test and reload (configuration changed)",
        commands=[commands.nginx_reload()],
        _if=any_changed(*changes),
    )


def _queue_workers(s: Settings, templates: str | None) -> None:
    path = f"/etc/supervisor/conf.d/{s.app_name}-worker.conf"
    if s.queue_workers:
        program = files.put(
            name=f"Queue workers ({s.queue_workers}, supervisor, through current)",
            src=StringIO(render.queue_worker(s, templates)),
            dest=path,
            user="root",
            group="root",
            mode="644",
        )
    else:
        program = files.file(name="Queue workers: none", path=path, present=False)
    service_running(name="supervisor: running", service="supervisor")
    server.shell(
        name="supervisor: apply the changed program",
        commands=[commands.supervisor_update()],
        _if=program.did_change,
    )
