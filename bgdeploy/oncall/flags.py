"""Feature flags at runtime: the runbook's kill switch and gradual rollout, without a deploy.

The app keeps runtime overrides of ``config/features.php`` in Redis, shared by every web host
and both colours, so one ``php artisan feature:set`` on one web host changes the flag
everywhere. ``bgdeploy flags ENV ...`` runs it on the first reachable web host, journals the
change there, and shows the flags as the app now sees them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bgdeploy import commands
from bgdeploy.core import journal
from bgdeploy.core import settings as settings_mod
from bgdeploy.core.errors import ConfigError, OperationFailed
from bgdeploy.fleet import fabric_backend, remote

FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")
ACTIONS = ("enable", "disable", "rollout", "users", "reset", "list")


def feature_words(action: str, name: str | None, value: str | None) -> list[str]:
    """The ``artisan`` words for an action; every value is checked before it is used."""
    if action not in ACTIONS:
        raise ConfigError(f"flag action {action!r} is not one of {', '.join(ACTIONS)}")
    if action == "list":
        return ["feature:list", "--json"]
    if name is None or not FLAG_NAME.match(name):
        raise ConfigError(f"flag name {name!r} is not valid (lower-case letters, digits, _)")
    if action == "rollout":
        if value is None or not value.isdigit() or not 0 <= int(value) <= 100:
            raise ConfigError(f"rollout takes a percentage from 0 to 100, not {value!r}")
        return ["feature:set", name, f"--rollout={int(value)}"]
    if action == "users":
        ids = (value or "").split(",")
        if not value or not all(i.isdigit() for i in ids):
            raise ConfigError(f"users takes comma-separated user ids, not {value!r}")
        return ["feature:set", name, f"--users={','.join(str(int(i)) for i in ids)}"]
    if value is not None:
        raise ConfigError(f"{action} takes no value")
    return ["feature:set", name, f"--{action}"]


def change(
    env: str, action: str, name: str | None = None, value: str | None = None
) -> dict[str, Any]:
    """Apply a flag action on the first reachable web host; returns the flags afterwards.

    Raises :class:`OperationFailed` naming every host tried when none could do it.
    """
    words = feature_words(action, name, value)

    def task(host: fabric_backend.Host) -> str:
        target = host.target
        settings = settings_mod.from_data(target.data, env)
        if action != "list":
            host.check(commands.live_artisan(settings, *words), sudo=True)
            entry = journal.new_entry(
                "flag", host=target.name, env=env, result="ok",
                message=f"{action} {name}" + (f" {value}" if value else ""),
                details={"flag": name, "action": action, "value": value},
            )  # fmt: skip
            host.check(commands.journal_append(settings, entry), sudo=True)
        listed = commands.live_artisan(settings, "feature:list", "--json")
        return host.check(listed, sudo=True).stdout

    failures = []
    for target in remote.targets(env, ("web",)):
        (result,) = fabric_backend.run_tasks([target], task)
        if result.ok:
            return {"host": result.host, "flags": json.loads(result.detail)}
        failures.append(f"{result.host}: {result.summary()}")
    raise OperationFailed("no web host could change the flag: " + "; ".join(failures))
