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
