"""Building the release in the live colour, host by host in its batch::

    check out the release         the exact commit the ref resolved to (local changes make it
                                  fail); .env and storage linked to shared/
    install dependencies          composer install; npm ci and npm run build
    receive the assets            with ``asset_paths`` and several web hosts: one host per
                                  batch builds the assets, packed and checksummed, and the
                                  others receive them instead of running npm

A failure here, before migrations, stops the batch
(:func:`~bgdeploy.strategies.release.operations.abort_batch`): migrations are not run and
every host of the batch goes back to its previous commit and build
(:func:`~bgdeploy.strategies.release.live.restore_on_failure`).
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

from pyinfra import logger

from bgdeploy import commands
from bgdeploy.core.explain import explain
from bgdeploy.strategies.release.operations import (
    abort_batch,
    add_operation,
    begin_step,
    fail_host,
    record_step,
    run_command,
    run_step,
)
from bgdeploy.strategies.release.run import HostRun, ReleaseRun, current


def check_out(release: ReleaseRun, batch: int) -> None:
    """Check out the exact commit in the live colour (local changes make it fail), and link
    ``.env`` and ``storage`` to ``shared/``."""
    _, name = current()
    add_operation(
        "Check out the release",
        _check_out,
        lambda: release.changing(name, batch),
        release=release,
        batch=batch,
    )


def _check_out(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    run = release.hosts[host.name]
    run.outcome.code_changed = True
    ok = run_step(release, run, host, "check out")
    if ok:
        run.outcome.sha_after = release.sha
    else:
        abort_batch(release, batch, host.name, "check out")
    return ok


def install_dependencies(release: ReleaseRun, batch: int) -> None:
    """``composer install --no-dev --optimize-autoloader`` on every host; ``npm ci`` and
    ``npm run build`` on one host when ``asset_paths`` is set and there are several web hosts
    (its build, packed and checksummed, is then copied to the others: ``Receive the assets``),
    else on every host. One operation: the hosts that only run composer do not wait for the
    building host between steps (its npm work runs beside their composer)."""
    _, name = current()
    add_operation(
        "Install dependencies",
        _install,
        lambda: release.changing(name, batch),
        release=release,
        batch=batch,
    )
    add_operation(
        "Receive the assets",
        _receive_assets,
        lambda: (
            release.changing(name, batch)
            and release.shares_assets(name)
            and release.assets is not None
            and release.asset_builders.get(batch) != name
        ),
        release=release,
        batch=batch,
    )


def _install(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    for step in ("composer install", "npm ci", "npm run build"):
        if not release.changing(host.name, batch):
            return False
        if step != "composer install" and not release.builds_assets(host.name, batch):
            continue
        if not _build_step(state, host, release, batch, step):
            return False
    return True


def _build_step(state: Any, host: Any, release: ReleaseRun, batch: int, step: str) -> bool:
    run = release.hosts[host.name]
    ok = run_step(release, run, host, step)
    if ok and step == "npm run build" and release.shares_assets(host.name):
        ok = _pack_assets(release, run, host)
    if not ok:
        abort_batch(release, batch, host.name, step)
    return ok


def _pack_assets(release: ReleaseRun, run: HostRun, host: Any) -> bool:
    """On the host that built them: the assets packed and brought here, once for all hosts."""
    started = begin_step(run, "pack the assets")
    archive = f"{run.live_dir}/{commands.ASSETS_ARCHIVE}"
    ok, out, err = run_command(host, commands.pack_assets(run.live_dir, run.settings.asset_paths))
    packed = io.BytesIO()
    if ok:
        try:
            ok = bool(host.get_file(archive, packed))
        except Exception as error:
            ok, err = False, f"{type(error).__name__}: {error}"
        run_command(host, f"rm -f {commands.q(archive)}")
    message = "" if ok else f"packing the assets failed: {explain(out, err)}"
    record_step(run, "pack the assets", started, ok, message)
    if not ok:
        fail_host(run, "pack the assets", message, host)
        return False
    release.assets = packed.getvalue()
    release.assets_sha256 = hashlib.sha256(release.assets).hexdigest()
    logger.info(
        f"{host.print_prefix}assets built here, packed ({len(release.assets)} bytes) for the "
        "other web hosts"
    )
    return True


def _receive_assets(state: Any, host: Any, release: ReleaseRun, batch: int) -> bool:
    """The assets built on another host, copied here and unpacked over ``asset_paths`` once
    their checksum matches."""
    run = release.hosts[host.name]
    assert release.assets is not None
    started = begin_step(run, "receive the assets")
    archive = f"{run.live_dir}/{commands.ASSETS_ARCHIVE}"
    try:
        ok, err = bool(host.put_file(io.BytesIO(release.assets), archive)), ""
    except Exception as error:
        ok, err = False, f"{type(error).__name__}: {error}"
    out = ""
    if ok:
        command = commands.unpack_assets(
            run.live_dir, run.settings.asset_paths, release.assets_sha256
        )
        ok, out, err = run_command(host, command)
    message = "" if ok else f"the assets could not be received: {explain(out, err)}"
    record_step(run, "receive the assets", started, ok, message)
    if not ok:
        fail_host(run, "receive the assets", message, host)
        abort_batch(release, batch, host.name, "receive the assets")
    release.save()
    return ok
