"""Shell commands, built in one place for both engines.

pyinfra operations (``server.shell``) and Fabric tasks (``Connection.run``) run the same
strings, built here: artisan calls, service control, health probes, git, snapshots. Every value
that reaches a shell is validated by its builder or quoted with :func:`shlex.quote`; nothing
else in bgdeploy formats a command line by hand.
"""

from __future__ import annotations

import re
import shlex

from bgdeploy.errors import ConfigError

SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ARTISAN_WORD = re.compile(r"^[A-Za-z0-9:_=,./-]+$")
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


def artisan(app_dir: str, *words: str) -> str:
    """``php artisan WORDS`` in ``app_dir``; each word is checked, then quoted."""
    for word in words:
        if not ARTISAN_WORD.match(word):
            raise ConfigError(f"artisan argument {word!r} is not allowed")
    return f"cd {q(app_dir)} && php artisan {' '.join(q(w) for w in words)}"


def as_user(user: str, command: str) -> str:
    """Run a shell command as another user (through sudo, with a login-free shell)."""
    return f"sudo -u {q(user)} -H sh -c {q(command)}"
