"""The target image recipe: mirrors from apt, and a tag that follows the recipe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bgdeploy.core.errors import ConfigError
from bgdeploy.sandbox import image


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_mirrors_from_deb822_sources(tmp_path: Path) -> None:
    write(
        tmp_path / "sources.list.d" / "debian.sources",
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n",
    )
    assert image.apt_mirrors(tmp_path, environ={}) == (
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
    )


def test_mirrors_from_one_line_sources(tmp_path: Path) -> None:
    write(
        tmp_path / "sources.list",
        "# comment\ndeb [arch=amd64] http://m.example/debian/ bookworm main\n"
        "deb-src http://m.example/debian bookworm main\n",
    )
    main, security = image.apt_mirrors(tmp_path, environ={})
    assert main == "http://m.example/debian"
    assert security == "http://m.example/debian-security"


def test_environment_wins(tmp_path: Path) -> None:
    write(tmp_path / "sources.list", "deb http://m.example/debian bookworm main\n")
    env = {"DEBIAN_MIRROR": "http://env.example/debian", "DEBIAN_SECURITY_MIRROR": "http://s/"}
    assert image.apt_mirrors(tmp_path, environ=env) == ("http://env.example/debian", "http://s")


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DEBIAN_MIRROR"):
        image.apt_mirrors(tmp_path, environ={})


def test_tag_changes_with_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "image"
    shutil.copytree(image.RECIPE_DIR, recipe)
    before = image.recipe_hash(recipe)
    assert before == image.recipe_hash(recipe)
    (recipe / "packages.txt").write_text((recipe / "packages.txt").read_text() + "htop\n")
    assert image.recipe_hash(recipe) != before


def without_comments(text: str) -> str:
    """The lines Docker (or the package list's reader) acts on: comment lines dropped."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_comment_lines_do_not_count() -> None:
    assert "ssh_host" not in without_comments("# RUN rm -f /etc/ssh/ssh_host_*\n  # rm\nRUN true")


def test_recipe_has_no_baked_host_keys_and_no_mirror_host() -> None:
    raw = (image.RECIPE_DIR / "Dockerfile").read_text()
    dockerfile = without_comments(raw)
    assert "rm -f /etc/ssh/ssh_host_*" in dockerfile
    assert "debian.org" not in raw  # not even in a comment
    packages = without_comments((image.RECIPE_DIR / "packages.txt").read_text()).split()
    for needed in ("systemd-standalone-tmpfiles", "php8.2-fpm", "php-laravel-framework", "npm"):
        assert needed in packages


def test_systemd_flavour_has_its_own_tag_and_the_layer_changes_only_its_own(
    tmp_path: Path,
) -> None:
    recipe = tmp_path / "image"
    shutil.copytree(image.RECIPE_DIR, recipe)
    initd, systemd = image.image_tag(recipe), image.image_tag(recipe, "systemd")
    assert initd.startswith(f"{image.IMAGE_REPOSITORY}:") and systemd.endswith("-systemd")
    assert systemd.removesuffix("-systemd") != initd
    layer = recipe / image.SYSTEMD_DOCKERFILE
    layer.write_text(layer.read_text() + "RUN true\n")
    assert image.image_tag(recipe) == initd  # the init.d image is not rebuilt for the layer
    assert image.image_tag(recipe, "systemd") != systemd
    entrypoint = recipe / "entrypoint.sh"
    entrypoint.write_text(entrypoint.read_text() + "# changed\n")
    assert image.image_tag(recipe) != initd


def test_unknown_init_is_refused() -> None:
    with pytest.raises(ConfigError, match="--init must be one of initd, systemd"):
        image.image_tag(init="upstart")


def test_systemd_layer_runs_systemd_unprivileged() -> None:
    raw = (image.RECIPE_DIR / image.SYSTEMD_DOCKERFILE).read_text()
    layer = without_comments(raw)
    assert "FROM ${BASE}" in layer and "debian.org" not in raw
    assert "STOPSIGNAL SIGRTMIN+3" in layer and "container=docker" in layer
    assert "BGDEPLOY_INIT=systemd" in layer and "systemd-sysv" in layer
    for unit in ("ssh", "postgresql", "redis-server", "php8.2-fpm", "nginx", "supervisor", "cron"):
        assert f" {unit}" in layer.split("systemctl enable", 1)[1].split(";", 1)[0]
    entrypoint = without_comments((image.RECIPE_DIR / "entrypoint.sh").read_text())
    # Stale pid files go before anything starts, in both flavours.
    assert entrypoint.index("-name '*.pid' -delete") < entrypoint.index("exec /lib/systemd/systemd")
    assert entrypoint.index("postmaster.pid") < entrypoint.index('service "$service" start')
