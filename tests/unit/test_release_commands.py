"""The release's shell commands (bgdeploy.commands), run for real against a local copy of the
sample app's repository and a fake app layout: no Docker, no SSH."""

from __future__ import annotations

import dataclasses
import grp
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bgdeploy import commands
from bgdeploy.checks.preflight import split_files
from bgdeploy.core.errors import ConfigError
from bgdeploy.core.settings import Settings
from bgdeploy.fleet import runner
from bgdeploy.sandbox import sampleapp
from bgdeploy.strategies.release import snapshot_name

GROUP = grp.getgrgid(os.getgid()).gr_name


def sh(command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, check=False, cwd=cwd, env=env
    )


def facts(output: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("repo") / "app.git"
    return path, sampleapp.build_repository(path)


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    """A provisioned web host's layout (DESIGN.md): colours, shared/, current -> blue."""
    root = tmp_path / "var www" / "bideshgomon"  # a space: every path must be quoted
    for path in ("blue", "green", "shared/storage/logs", ".bgdeploy"):
        (root / path).mkdir(parents=True)
    (root / "shared" / ".env").write_text("APP_NAME=x\nAPP_KEY=base64:c2VjcmV0\n")
    (root / "current").symlink_to("blue")
    return root


def test_facts_fetch_resolve_check_out_and_link(
    repo: tuple[Path, dict[str, str]], app_root: Path
) -> None:
    path, shas = repo
    found = facts(sh(commands.release_facts(str(app_root), str(path))).stdout)
    assert found["colour"] == ["blue"]
    assert found["app_key"] == ["yes"]
    assert found["head"] == [""]
    assert found["fetch"] == ["ok"]
    assert int(found["free_kb"][0]) > 0
    assert "c2VjcmV0" not in sh(commands.release_facts(str(app_root), str(path))).stdout

    blue = app_root / "blue"
    assert sh(commands.live_colour_dir(str(app_root))).stdout.strip() == str(blue)
    resolved = sh(commands.git_resolve("v1"), blue).stdout.split()
    assert resolved == ["tag", shas["v1"]]
    assert sh(commands.git_resolve("main"), blue).stdout.split() == ["branch", shas["v2"]]
    assert sh(commands.git_resolve("refs/heads/main"), blue).stdout.split()[1] == shas["v2"]
    assert sh(commands.git_resolve(shas["v1"][:10]), blue).stdout.split() == [
        "commit",
        shas["v1"],
    ]
    assert sh(commands.git_resolve("no-such-ref"), blue).stdout == ""

    steps = dict(commands.release_steps(settings(app_root), str(blue), shas["v1"]))
    done = sh(steps["check out"])
    assert done.returncode == 0, done.stderr
    assert (blue / "storage").is_symlink()
    assert os.readlink(blue / "storage") == str(app_root / "shared" / "storage")
    assert (blue / ".env").is_symlink()
    assert (blue / "bootstrap" / "cache").stat().st_mode & 0o2070 == 0o2070
    # The shared storage is left out of git's checkout: the tree is clean, nothing is dirty.
    found = facts(sh(commands.release_facts(str(app_root), str(path))).stdout)
    assert found["head"] == [shas["v1"]]
    assert "dirty" not in found
    assert found["built"] == [""]
    assert sh(commands.mark_built(str(blue), shas["v1"])).returncode == 0
    found = facts(sh(commands.release_facts(str(app_root), str(path))).stdout)
    assert found["built"] == [shas["v1"]]


def test_local_changes_are_reported_and_never_overwritten(
    repo: tuple[Path, dict[str, str]], app_root: Path
) -> None:
    path, shas = repo
    blue = app_root / "blue"
    sh(commands.release_facts(str(app_root), str(path)))
    v1 = dict(commands.release_steps(settings(app_root), str(blue), shas["v1"]))
    assert sh(v1["check out"]).returncode == 0
    view = blue / "resources" / "views" / "home.blade.php"  # v2 changes this file
    view.write_text("hot fix on the server\n")

    found = facts(sh(commands.release_facts(str(app_root), str(path))).stdout)
    assert found["dirty"] == [" M resources/views/home.blade.php"]
    v2 = dict(commands.release_steps(settings(app_root), str(blue), shas["v2"]))
    refused = sh(v2["check out"])
    assert refused.returncode != 0
    assert view.read_text() == "hot fix on the server\n"

    # A restore (after a failed deploy) is forced: it puts the commit back exactly.
    restore = dict(commands.release_steps(settings(app_root), str(blue), shas["v1"], restore=True))
    assert sh(restore["check out"]).returncode == 0
    assert "hot fix" not in view.read_text()


def test_facts_when_current_is_missing(tmp_path: Path) -> None:
    found = facts(sh(commands.release_facts(str(tmp_path), "/nowhere")).stdout)
    assert found == {"colour": [""]}


def settings(app_root: Path, **changes: object) -> Settings:
    """Staging's settings (group_data, no connection), with this test's layout."""
    base = next(iter(runner.check_environment("staging").settings.values()))
    return dataclasses.replace(
        base,
        app_root=str(app_root),
        php_fpm_group=GROUP,
        **changes,  # type: ignore[arg-type]
    )


def test_release_steps_in_runbook_order() -> None:
    steps = commands.release_steps(settings(Path("/srv/app")), "/srv/app/blue", "a" * 40)
    assert [name for name, _ in steps] == [
        "check out",
        "composer install",
        "npm ci",
        "npm run build",
        "caches",
        "storage link",
        "reload php-fpm",
        "reload nginx",
        "restart workers",
    ]
    text = dict(steps)
    assert (
        "composer install --no-dev --optimize-autoloader --no-interaction"
        in text["composer install"]
    )
    assert "npm ci" in text["npm ci"] and "npm run build" in text["npm run build"]
    # The runbook's caches (its `optimize` is config:cache + route:cache), in one PHP process.
    assert text["caches"].endswith(" -- config:cache route:cache view:cache event:cache")
    assert text["caches"].count("php -r") == 1
    assert "php-fpm8.2 -t && service php8.2-fpm reload" in text["reload php-fpm"]
    assert text["reload php-fpm"].startswith("sudo -n ")
    assert "nginx -t -q && service nginx reload" in text["reload nginx"]
    workers = text["restart workers"]
    assert "php artisan queue:restart" in workers
    # stop, signal, start: never queue:restart racing a supervisorctl restart (90 s stalls)
    words = shlex.split(workers)
    (stop,) = [i for i, w in enumerate(words) if "supervisor.sock stop bideshgomon-worker" in w]
    (start,) = [i for i, w in enumerate(words) if "supervisor.sock start bideshgomon-worker" in w]
    signal = next(i for i, w in enumerate(words) if "queue:restart" in w)
    assert stop < signal < start
    # supervisorctl where supervisord's socket is not where Debian puts it
    assert "else supervisorctl stop 'bideshgomon-worker:*'" in words[stop]
    assert "checkout -q --detach" in text["check out"] and " -f " not in text["check out"]
    restore = dict(
        commands.release_steps(settings(Path("/srv/app")), "/srv/app/blue", "a" * 40, True)
    )
    assert "checkout -q -f --detach" in restore["check out"]


def test_no_workers_no_supervisor_restart() -> None:
    steps = dict(commands.release_steps(settings(Path("/a"), queue_workers=0), "/a/blue", "b" * 40))
    assert "supervisorctl" not in steps["restart workers"]


@pytest.mark.parametrize(
    "call",
    [
        lambda: commands.git_checkout("main; reboot"),
        lambda: commands.mark_built("/a", "$(id)"),
        lambda: commands.health_probe(80, "/api/health;id"),
        lambda: commands.snapshot_create("/b", "../etc/passwd", "db", 5432, 3),
        lambda: commands.snapshot_create("/b", "ok-name", "db", 5432, 0),
        lambda: commands.show_files("a" * 40, ["../../etc/shadow"]),
        lambda: commands.migration_files("HEAD"),
        lambda: commands.supervisor_restart("x y"),
        lambda: commands.git_resolve("main;id"),
    ],
)
def test_builders_refuse_values_that_are_not_theirs(call: object) -> None:
    with pytest.raises(ConfigError):
        call()  # type: ignore[operator]


def test_snapshot_command_is_verified_private_and_rotated() -> None:
    command = commands.snapshot_create(
        "/var/backups/bideshgomon", "20261203T041209Z-4f1c2e9a8b7c", "bideshgomon", 5432, 5
    )
    assert command.startswith("sudo -u postgres -H sh -c ")
    script = shlex.split(command)[-1]
    assert "pg_dump -Fc" in script
    assert "pg_restore -f /dev/null 20261203T041209Z-4f1c2e9a8b7c.dump.tmp" in script
    assert script.index("pg_restore -f /dev/null") < script.index("mv -f")
    assert "sha256sum 20261203T041209Z-4f1c2e9a8b7c.dump > " in script
    assert "chmod 0600" in script and "umask 077" in script
    assert "tail -n +6" in script  # keep the newest 5
    assert script.index("df -Pk") < script.index("pg_dump")  # disk checked before dumping


def test_health_probe_prints_status_and_release() -> None:
    command = commands.health_probe(8080, "/api/health")
    assert "http://127.0.0.1:8080/api/health" in command
    assert "%{http_code} %header{x-release}" in command
    assert command.endswith("|| true")


def test_show_files_and_split() -> None:
    command = commands.show_files("a" * 40, ["database/migrations/2026_01_01_x.php"])
    assert "git show " in command
    output = (
        "==> bgdeploy-file database/migrations/a.php\n<?php // a\n"
        "==> bgdeploy-file database/migrations/b.php\n<?php // b\nline\n"
    )
    assert split_files(output) == {"a.php": "<?php // a\n", "b.php": "<?php // b\nline\n"}


def test_snapshot_names_sort_by_time() -> None:
    from datetime import UTC, datetime

    name = snapshot_name("4f1c2e9a8b7c6d5e", datetime(2026, 12, 3, 4, 12, 9, tzinfo=UTC))
    assert name == "20261203T041209Z-4f1c2e9a8b7c"
    assert commands.SNAPSHOT_NAME.match(name)


def test_assets_built_once_are_packed_and_unpacked_over_the_old_ones(tmp_path: Path) -> None:
    import hashlib

    builder, other = tmp_path / "builder", tmp_path / "other"
    for checkout in (builder, other):
        (checkout / ".git").mkdir(parents=True)
    (builder / "public" / "build" / "assets").mkdir(parents=True)
    (builder / "public" / "build" / "manifest.json").write_text('{"app.css": "app-2.css"}')
    (builder / "public" / "build" / "assets" / "app-2.css").write_text("new")
    (other / "public" / "build" / "assets").mkdir(parents=True)
    (other / "public" / "build" / "assets" / "app-1.css").write_text("old")
    paths = ("public/build",)
    assert sh(commands.pack_assets(str(builder), paths)).returncode == 0
    archive = (builder / commands.ASSETS_ARCHIVE).read_bytes()
    digest = hashlib.sha256(archive).hexdigest()
    # A copy that does not match its checksum is refused, and nothing changes.
    (other / commands.ASSETS_ARCHIVE).write_bytes(archive[:-1] + b"x")
    assert sh(commands.unpack_assets(str(other), paths, digest)).returncode != 0
    assert (other / "public" / "build" / "assets" / "app-1.css").exists()
    (other / commands.ASSETS_ARCHIVE).write_bytes(archive)
    done = sh(commands.unpack_assets(str(other), paths, digest))
    assert done.returncode == 0, done.stderr
    built = sorted(p.relative_to(other).as_posix() for p in (other / "public").rglob("*"))
    assert built == [
        "public/build",
        "public/build/assets",
        "public/build/assets/app-2.css",
        "public/build/manifest.json",
    ]
    assert not (other / commands.ASSETS_ARCHIVE).exists()
    assert sorted(p.name for p in (other / ".git").iterdir()) == []


def test_packing_names_an_asset_path_the_build_did_not_write(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    done = sh(commands.pack_assets(str(tmp_path), ("public/build",)))
    assert done.returncode != 0 and "public/build does not exist" in done.stderr
    with pytest.raises(ConfigError):
        commands.unpack_assets(str(tmp_path), ("public/build",), "not-a-sha; id")


def test_artisan_batch_runs_each_command_in_one_process() -> None:
    command = commands.artisan_batch("config:cache", "route:cache")
    assert command.startswith("COLUMNS=1000 php -r ") and command.endswith(
        " -- config:cache route:cache"
    )
    for bad in ("config:cache; id", "--env=prod", "list"):
        with pytest.raises(ConfigError):
            commands.artisan_batch(bad)


def test_supervisor_group_through_the_socket(tmp_path: Path) -> None:
    """:data:`commands.SUPERVISOR_RPC` against an XML-RPC server on a unix socket that answers
    as supervisord does (a list of per-process results, or a fault)."""
    import socket
    import threading
    import xmlrpc.client
    import xmlrpc.server

    class Server(xmlrpc.server.SimpleXMLRPCServer):
        address_family = socket.AF_UNIX

    class Handler(xmlrpc.server.SimpleXMLRPCRequestHandler):
        disable_nagle_algorithm = False  # a TCP option: not on a unix socket

    def result(name: str, status: int, description: str) -> dict[str, object]:
        return {"name": name, "group": "g", "status": status, "description": description}

    def start(group: str, wait: bool) -> list[dict[str, object]]:
        if group == "nosuch":
            raise xmlrpc.client.Fault(10, "BAD_NAME: nosuch")
        if group == "broken":
            return [result("broken_00", 80, "OK"), result("broken_01", 50, "SPAWN_ERROR")]
        return [result(f"{group}_00", 80, "OK")]

    path = str(tmp_path / "supervisor.sock")
    server = Server(path, Handler, logRequests=False, allow_none=True)  # type: ignore[arg-type]
    server.register_function(start, "supervisor.startProcessGroup")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:

        def rpc(group: str) -> subprocess.CompletedProcess[str]:
            args = [sys.executable, "-I", "-S", "-c", commands.SUPERVISOR_RPC, path, "start"]
            return subprocess.run([*args, group], capture_output=True, text=True, check=False)

        done = rpc("bideshgomon-worker")
        assert (done.returncode, done.stdout) == (0, "bideshgomon-worker_00: started\n"), (
            done.stderr
        )
        done = rpc("broken")
        assert done.returncode == 1 and "broken_01: SPAWN_ERROR" in done.stderr
        done = rpc("nosuch")
        assert done.returncode == 1 and "BAD_NAME: nosuch" in done.stderr
    finally:
        server.shutdown()
        server.server_close()
