"""PHP's version is a setting: every name bgdeploy derives from it (the php-fpm service and
binary, the pool directory and sockets, the packages, the logs, the commands) and every
template follow ``php_version``, so a host on PHP 8.3 is provisioned and deployed alike."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import load_group_data

from bgdeploy import commands
from bgdeploy.core import render, settings
from bgdeploy.core.render import COLOURS
from bgdeploy.oncall import emergency, scale
from bgdeploy.strategies import provision


@pytest.fixture
def php83() -> settings.Settings:
    s = settings.from_data({**load_group_data("prod"), "php_version": "8.3"}, "prod")
    assert s.php_version == "8.3"
    return s


def everything_rendered(s: settings.Settings) -> str:
    fleet = render.Fleet(db_ip="10.0.0.21", web_ips=("10.0.0.11",))
    secrets = dict.fromkeys(("APP_KEY", "DB_PASSWORD", "REDIS_PASSWORD", "API_TOKEN"), "x")
    parts = [
        render.nginx_site(s), render.fpm_global(s), render.queue_worker(s),
        render.scheduler_cron(s), render.logrotate(s), render.dotenv(s, fleet, secrets),
        *(render.fpm_pool(s, colour) for colour in COLOURS),
        *(render.colour_include(s, colour) for colour in COLOURS),
    ]  # fmt: skip
    return "\n".join(parts)


def test_every_derived_name_follows_php_version(php83: settings.Settings) -> None:
    assert php83.php_fpm_service == "php8.3-fpm"
    assert php83.php_fpm_pool_dir == "/etc/php/8.3/fpm/pool.d"
    packages = provision.web_packages(php83)
    assert "php8.3-fpm" in packages and "php8.3-pgsql" in packages
    assert not [p for p in packages if p.startswith("php8.2")]
    assert commands.php_fpm_reload("8.3") == "php-fpm8.3 -t && service php8.3-fpm reload"
    assert emergency.log_path(php83, "php-fpm") == "/var/log/php8.3-fpm.log"
    pools = scale.config_files(scale.LEVERS["php-fpm"], php83)
    assert all(path.startswith("/etc/php/8.3/fpm/pool.d/") for path in pools)


def test_every_template_follows_php_version(php83: settings.Settings) -> None:
    text = everything_rendered(php83)
    assert "8.2" not in text
    assert "/usr/bin/php8.3 " in render.queue_worker(php83)
    assert "/usr/bin/php8.3 artisan schedule:run" in render.scheduler_cron(php83)
    php82 = dataclasses.replace(php83, php_version="8.2")
    assert everything_rendered(php82).replace("8.2", "8.3") == text
