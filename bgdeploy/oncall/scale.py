"""Scaling an SSH fleet: queue workers per web host, php-fpm children per pool.

The runbook scales with ``kubectl scale ... --replicas=10`` and answers a QueueBacklog alert
with "scale queue workers". On these servers the same two levers are the queue workers of
each web host (a supervisor program) and the children of each php-fpm pool:

``bgdeploy scale ENV workers N``
    ``numprocs`` of the queue-worker program on every web host (1 to 32). The program file is
    written again, then ``supervisorctl reread`` and ``update``: supervisor stops the old
    workers with SIGTERM, and a Laravel worker stops after the job it is running (never in the
    middle of one; ``stopwaitsecs`` leaves it the request timeout plus 30 s), then starts N. A
    queued job stays in Redis until a worker takes it: none is lost or run twice.

``bgdeploy scale ENV php-fpm N``
    ``pm.max_children`` of both colours' pools on every web host (1 to 256; both, so that a
    blue-green switch keeps it), ``php-fpm -t`` before anything is reloaded (a failing test
    puts the old pools back), then a graceful reload (requests in flight finish).

The deploy lock of every web host is held throughout (exit 3 while a deploy holds it). Each
host is changed on its own, in parallel: a host whose test fails keeps its old files and is
reported failed (exit 1) while the others keep the new value; the same command, run again once
that host is fixed, brings it level (scaling is not a switch: hosts that differ for a while in
workers or children serve the same release). What was set
is kept in ``APP_ROOT/.bgdeploy/scale`` on each host (``workers=N``,
``php_fpm_max_children=N``): a deploy never touches those files, and ``bgdeploy provision``
keeps the scaled values instead of group_data's, and says so. Each change is journaled
(``emergency``, action ``scale workers`` / ``scale php-fpm``, from and to).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bgdeploy import commands
from bgdeploy.core import journal, render
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.progress import Progress, quiet
from bgdeploy.core.render import COLOURS
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import fabric_backend, fleetlock, remote, runner


@dataclass(frozen=True)
class Lever:
    """One thing ``bgdeploy scale`` changes: its name on the command line, its key in the
    scale file, the settings field it overrides, and its range."""

    name: str
    key: str
    field: str
    low: int
    high: int


LEVERS = {
    "workers": Lever("workers", "workers", "queue_workers", 1, 32),
    "php-fpm": Lever("php-fpm", "php_fpm_max_children", "fpm_max_children", 1, 256),
}
"""What can be scaled, by its name on the command line."""

_LINE = re.compile(r"^(\w+)=(\d+)\Z")


def check(what: str, count: int) -> Lever:
    """The lever named ``what`` with ``count`` in its range; ConfigError (exit 2) otherwise."""
    lever = LEVERS.get(what)
    if lever is None:
        raise ConfigError(f"cannot scale {what!r}: choose {' or '.join(LEVERS)}")
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or not lever.low <= count <= lever.high
    ):
        raise ConfigError(f"{what} must be from {lever.low} to {lever.high}, not {count!r}")
    return lever


def scale_path(settings: Settings) -> str:
    """Where a host keeps what ``bgdeploy scale`` set."""
    return settings.scale_path


def parse(text: str) -> dict[str, int]:
    """The scale file's ``key=N`` lines (anything else ignored)."""
    found = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def overrides(settings: Settings, scaled: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """The settings fields a host's scale file overrides: field -> (group_data's, scaled)."""
    found = {}
    for lever in LEVERS.values():
        value = scaled.get(lever.key)
        if value is not None and lever.low <= value <= lever.high:
            found[lever.field] = (getattr(settings, lever.field), value)
    return found


def apply(settings: Settings, scaled: Mapping[str, int]) -> Settings:
    """``settings`` with what the host's scale file overrides (see :func:`overrides`)."""
    changes = {name: value for name, (_, value) in overrides(settings, scaled).items()}
    return dataclasses.replace(settings, **changes) if changes else settings


def config_files(lever: Lever, settings: Settings) -> dict[str, str]:
    """The configuration files ``lever`` writes on a host, with ``settings``' values."""
    if lever.name == "workers":
        path = f"/etc/supervisor/conf.d/{settings.app_name}-worker.conf"
        return {path: render.queue_worker(settings)}
    pool_dir = settings.php_fpm_pool_dir
    return {
        f"{pool_dir}/{render.pool_name(settings, colour)}.conf": render.fpm_pool(settings, colour)
        for colour in COLOURS
    }


def _current(lever: Lever, settings: Settings) -> str:
    """A command printing the value now in force on a host."""
    path = next(iter(config_files(lever, settings)))
    pattern = "^numprocs=" if lever.name == "workers" else r"^pm.max_children *= *"
    return f"sed -n {commands.q(f's/{pattern}//p')} {commands.q(path)} | head -n 1"


def scale(
    env: str, what: str, count: int, reason: str | None = None, progress: Progress = quiet
) -> list[remote.HostResult]:
    """Set ``what`` (``workers`` or ``php-fpm``) to ``count`` on every web host of ``env``
    (see the module); each host's result, ``from -> to`` in its detail."""
    lever = check(what, count)
    environment = runner.check_environment(env)
    web = remote.targets(env, ("web",), environment.inventory)

    def task(host: fabric_backend.Host) -> str:
        settings = environment.settings[host.name]
        before = host.check(_current(lever, settings), sudo=True).stdout.strip() or "?"
        kept = parse(host.run(f"cat {commands.q(scale_path(settings))}", sudo=True).stdout)
        scaled = apply(settings, {**kept, lever.key: count})
        if lever.name == "workers":
            test, then = "true", commands.supervisor_update()
        else:
            test = commands.php_fpm_test(settings.php_version)
            then = commands.php_fpm_reload(settings.php_version)
        was = int(before) if before.isdigit() else None
        entry = journal.new_entry(
            "emergency", host=host.name, env=env, result="ok", reason=reason,
            message=f"scale {lever.name}: {before} -> {count}",
            details={"action": f"scale {lever.name}", "from": was, "to": count},
        )  # fmt: skip
        lines = "".join(f"{k}={v}\n" for k, v in sorted({**kept, lever.key: count}.items()))
        host.check(
            commands.join(
                commands.replace_tested(config_files(lever, scaled), test, then),
                commands.write_file(scale_path(settings), lines),
                f"chown {commands.q(settings.deploy_user)} {commands.q(scale_path(settings))}",
                commands.journal_append(settings, entry),
            ),
            f"scale {lever.name}",
            sudo=True,
        )
        return f"{lever.name}: {before} -> {count}"

    paths = {t.name: environment.settings[t.name].lock_path for t in web}
    with fleetlock.hold(
        fabric_backend.PerCommandFleet(web), paths, env, f"scale {lever.name} {count}",
        progress=progress,
    ):  # fmt: skip
        progress(f"scaling {lever.name} to {count} on {', '.join(t.name for t in web)}")
        return fabric_backend.run_tasks(web, task)
