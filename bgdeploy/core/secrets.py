"""The secrets bgdeploy writes to each host's ``shared/.env``, and where they come from.

Secrets never sit in group_data: each comes from an environment variable
(:data:`SECRET_VARIABLES`), read by :func:`secrets_from_env`; their values are never printed.
:mod:`bgdeploy.core.settings` re-exports both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bgdeploy.core.errors import ConfigError

SECRET_VARIABLES = {
    "APP_KEY": "BGDEPLOY_APP_KEY",
    "DB_PASSWORD": "BGDEPLOY_DB_PASSWORD",
    "REDIS_PASSWORD": "BGDEPLOY_REDIS_PASSWORD",
    "API_TOKEN": "BGDEPLOY_API_TOKEN",
}
"""Each secret, and the environment variable it comes from."""

__all__ = ["SECRET_VARIABLES", "secrets_from_env"]


def secrets_from_env(
    names: tuple[str, ...] = tuple(SECRET_VARIABLES), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The secrets, read from their environment variables; a missing one is an error naming
    the variable. Values are never printed."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {}
    missing = []
    for name in names:
        variable = SECRET_VARIABLES[name]
        value = env.get(variable, "")
        if not value:
            missing.append(variable)
        values[name] = value
    if missing:
        raise ConfigError(
            "missing secret: set the environment variable"
            + ("s " if len(missing) > 1 else " ")
            + ", ".join(missing)
            + " (secrets never sit in group_data)"
        )
    return values
