"""Server configuration files, rendered from the jinja2 templates in ``templates/``.

Each function returns the text of one file for one host, from that host's validated
:class:`~bgdeploy.core.settings.Settings` (plus, for ``.env`` and Redis, the secrets). Provisioning
uploads what these return; the blue-green switch renders the colour include with
:func:`colour_include`, so both paths always write the same file for a colour.

Templates are rendered with ``StrictUndefined``: a value a template needs and does not get is an
error, never an empty string. Another template directory (an operator's copy) can be given
with ``--data bgdeploy_template_dir=/path``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bgdeploy.core.errors import ConfigError
from bgdeploy.core.settings import ROOT, Settings

TEMPLATE_DIR = ROOT / "templates"
COLOURS = ("blue", "green")
MANAGED = "Managed by bgdeploy (deploys/provision.py): changes made here are overwritten."

# Where provisioning puts each file (the layout of DESIGN.md "On each server").
NGINX_DIR = "/etc/nginx/bideshgomon"
LIVE_INCLUDE = f"{NGINX_DIR}/live.conf"
IDLE_INCLUDE = f"{NGINX_DIR}/idle.conf"
CANARY_INCLUDE = f"{NGINX_DIR}/canary.conf"

# What may stand unquoted in .env; anything else is single-quoted (no interpolation).
_DOTENV_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+=,-]*\Z")
_COLOUR_MARK = re.compile(r"^# bgdeploy colour: (blue|green)$", re.MULTILINE)


@dataclass(frozen=True)
class Fleet:
    """What one host's configuration needs to know about the others (from the inventory)."""

    db_ip: str
    web_ips: tuple[str, ...]


def _dotenv(value: object) -> str:
    """A value for Laravel's ``.env`` (phpdotenv): plain when safe, else single-quoted."""
    text = str(value)
    if _DOTENV_PLAIN.match(text):
        return text
    if "'" in text or "\n" in text or "\r" in text or "\\" in text:
        raise ConfigError(
            "a value for .env contains a quote, a backslash or a line break, which .env cannot "
            "hold safely: choose another value"
        )
    return f"'{text}'"


def _redis_string(value: object) -> str:
    """A double-quoted string for redis.conf."""
    text = str(value)
    if any(c in text for c in "\n\r\0"):
        raise ConfigError("a value for redis.conf contains a line break")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def environment(template_dir: str | Path | None = None) -> jinja2.Environment:
    """The jinja2 environment of the templates (strict, trailing newlines kept)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir or TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML
    )
    env.filters["dotenv"] = _dotenv
    env.filters["redis_string"] = _redis_string
    return env


def render(
    name: str, settings: Settings | None, template_dir: str | Path | None = None, **context: Any
) -> str:
    """Render ``templates/NAME`` with the settings (as ``s``; None for files that need no
    host's settings, such as the Prometheus configuration) and ``context``."""
    try:
        template = environment(template_dir).get_template(name)
        return template.render(s=settings, managed=MANAGED, **context)
    except jinja2.TemplateNotFound:
        where = template_dir or TEMPLATE_DIR
        raise ConfigError(f"template {name} not found in {where}") from None
    except jinja2.UndefinedError as error:
        raise ConfigError(f"template {name}: {error}") from None


def pool_name(settings: Settings, colour: str) -> str:
    """The php-fpm pool of a colour: ``bideshgomon-blue``."""
    return f"{settings.app_name}-{_colour(colour)}"


def pool_socket(settings: Settings, colour: str) -> str:
    """The Unix socket of a colour's php-fpm pool."""
    return f"/run/php/{pool_name(settings, colour)}.sock"


def _colour(colour: str) -> str:
    if colour not in COLOURS:
        raise ConfigError(f"colour {colour!r} is not one of {', '.join(COLOURS)}")
    return colour


def colour_of_include(text: str) -> str | None:
    """The colour an include file serves (its ``# bgdeploy colour:`` line), if any."""
    match = _COLOUR_MARK.search(text)
    return match.group(1) if match else None


def colour_include(settings: Settings, colour: str, template_dir: str | Path | None = None) -> str:
    """``live.conf`` / ``idle.conf`` for a colour: its document root and its php-fpm pool."""
    return render(
        "nginx/colour.conf.j2",
        settings,
        template_dir,
        colour=_colour(colour),
        socket=pool_socket(settings, colour),
    )


def canary_live_include(
    settings: Settings,
    live: str,
    canary: str,
    percent: str,
    template_dir: str | Path | None = None,
) -> str:
    """``live.conf`` during a canary: still marked ``live`` (the colour everyone goes back
    to), its document root and php-fpm pool chosen per client by the split
    (:func:`canary_split`), and the client cookie set on a first visit."""
    return render(
        "nginx/colour.conf.j2",
        settings,
        template_dir,
        colour=_colour(live),
        canary=_colour(canary),
        percent=percent,
        canary_include=CANARY_INCLUDE,
        socket=f"/run/php/{settings.app_name}-$bgdeploy_colour.sock",
    )


def canary_split(
    settings: Settings,
    live: str | None = None,
    canary: str | None = None,
    percent: str = "0",
    cookie_max_age: int = 86_400,
    template_dir: str | Path | None = None,
) -> str:
    """``canary.conf``: ``percent`` % of clients to ``canary``, the rest to ``live``; without
    a canary colour, a file that splits nothing."""
    return render(
        "nginx/canary.conf.j2",
        settings,
        template_dir,
        live=_colour(live) if canary else live,
        canary=_colour(canary) if canary else None,
        percent=percent,
        cookie_max_age=cookie_max_age,
    )


def nginx_site(settings: Settings, template_dir: str | Path | None = None) -> str:
    """The nginx site: the public server block (live colour) and the preview listener."""
    return render(
        "nginx/site.conf.j2",
        settings,
        template_dir,
        live_include=LIVE_INCLUDE,
        idle_include=IDLE_INCLUDE,
        canary_include=CANARY_INCLUDE,
    )


def fpm_pool(settings: Settings, colour: str, template_dir: str | Path | None = None) -> str:
    """The php-fpm pool of one colour."""
    return render(
        "php-fpm/pool.conf.j2",
        settings,
        template_dir,
        colour=_colour(colour),
        pool=pool_name(settings, colour),
        socket=pool_socket(settings, colour),
    )


def fpm_global(settings: Settings, template_dir: str | Path | None = None) -> str:
    """The php-fpm master's settings (``process_control_timeout``)."""
    return render("php-fpm/global.conf.j2", settings, template_dir)


def queue_worker(settings: Settings, template_dir: str | Path | None = None) -> str:
    """The supervisor program of the queue workers (the live colour, through ``current``)."""
    return render("supervisor/worker.conf.j2", settings, template_dir)


def scheduler_cron(settings: Settings, template_dir: str | Path | None = None) -> str:
    """The ``/etc/cron.d`` entry that runs Laravel's scheduler every minute."""
    return render("cron/scheduler.j2", settings, template_dir)


def logrotate(settings: Settings, template_dir: str | Path | None = None) -> str:
    """logrotate rules for the application logs in ``shared/storage/logs``."""
    return render("logrotate/app.j2", settings, template_dir)


def dotenv(
    settings: Settings,
    fleet: Fleet,
    secrets: dict[str, str],
    template_dir: str | Path | None = None,
) -> str:
    """``shared/.env``: settings from group_data, addresses from the inventory, secrets."""
    app_env = "production" if settings.production else settings.env
    return render(
        "app/env.j2", settings, template_dir, fleet=fleet, secrets=secrets, app_env=app_env
    )


def postgres_conf(
    settings: Settings, private_ip: str, template_dir: str | Path | None = None
) -> str:
    """PostgreSQL settings of the db host (``conf.d``): where it listens."""
    return render("postgresql/bgdeploy.conf.j2", settings, template_dir, private_ip=private_ip)


def pg_hba_lines(settings: Settings, fleet: Fleet, template_dir: str | Path | None = None) -> str:
    """The pg_hba.conf lines that let the web hosts (and only them) reach the database."""
    return render("postgresql/pg_hba.j2", settings, template_dir, fleet=fleet)


def redis_conf(
    settings: Settings,
    private_ip: str,
    password: str,
    template_dir: str | Path | None = None,
) -> str:
    """Redis settings of the db host: bound to loopback and the private address, a password."""
    return render(
        "redis/bgdeploy.conf.j2",
        settings,
        template_dir,
        private_ip=private_ip,
        password=password,
    )


def cron_file_name(settings: Settings) -> str:
    """A name cron accepts for ``/etc/cron.d`` (letters, digits, ``-`` and ``_`` only)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", settings.app_name)
