"""The sample app's git repository: tags, overlay, stable shas, add_commit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from bgdeploy.core.errors import ConfigError
from bgdeploy.sandbox import sampleapp


def git(repo: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    result = subprocess.run(
        ["git", "--git-dir", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return result.stdout.strip()


def overlay_files() -> set[str]:
    return {
        path.relative_to(sampleapp.V2_DIR).as_posix()
        for path in sampleapp.V2_DIR.rglob("*")
        if path.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("sampleapp") / "app.git"
    return repo, sampleapp.build_repository(repo)


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    repo = tmp_path / "app.git"
    sampleapp.build_repository(repo)
    return repo


def test_sources_exist() -> None:
    assert (sampleapp.APP_DIR / "artisan").is_file()
    assert (sampleapp.APP_DIR / "composer.json").is_file()
    assert sampleapp.V2_DIR.is_dir()


def test_tags_resolve_to_the_returned_commits(built: tuple[Path, dict[str, str]]) -> None:
    repo, shas = built
    assert set(shas) == {"v1", "v2"}
    assert git(repo, "rev-parse", "v1") == shas["v1"]
    assert git(repo, "rev-parse", "v2") == shas["v2"]
    assert git(repo, "rev-parse", "refs/heads/main") == shas["v2"]
    assert git(repo, "rev-parse", "v2^") == shas["v1"]
    assert git(repo, "rev-list", "--count", "main") == "2"
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "rev-parse", "--is-bare-repository") == "true"


def test_v1_is_the_app_tree_without_build_output(built: tuple[Path, dict[str, str]]) -> None:
    repo, _ = built
    files = set(git(repo, "ls-tree", "-r", "--name-only", "v1").splitlines())
    for required in (
        "artisan",
        "composer.json",
        "composer.lock",
        "package.json",
        "package-lock.json",
        "bootstrap/app.php",
        "public/index.php",
        "routes/api.php",
        "config/features.php",
        "storage/logs/.gitignore",
        "bootstrap/cache/.gitignore",
    ):
        assert required in files
    assert not any(f.startswith(("vendor/", "node_modules/", "public/build/")) for f in files)
    assert ".env" not in files
    assert not any("add_passport_country" in f for f in files)
    assert git(repo, "ls-tree", "v1", "artisan").split()[0] == "100755"
    assert git(repo, "ls-tree", "v1", "composer.json").split()[0] == "100644"
    lock = json.loads(git(repo, "show", "v1:composer.lock"))
    assert lock["packages"] == []
    npm_lock = json.loads(git(repo, "show", "v1:package-lock.json"))
    assert npm_lock["lockfileVersion"] == 3
    assert set(npm_lock["packages"]) == {""}


def test_v2_differs_by_the_overlay(built: tuple[Path, dict[str, str]]) -> None:
    repo, _ = built
    changed = set(git(repo, "diff", "--name-only", "v1", "v2").splitlines())
    assert changed == overlay_files()
    added = git(repo, "diff", "--name-only", "--diff-filter=A", "v1", "v2").splitlines()
    assert any("add_passport_country" in path for path in added)
    assert "<h1>BideshGomon</h1>" in git(repo, "show", "v1:resources/views/home.blade.php")
    assert "<h1>BideshGomon v2</h1>" in git(repo, "show", "v2:resources/views/home.blade.php")
    for path in overlay_files():
        expected = (sampleapp.V2_DIR / path).read_text()
        assert git(repo, "show", f"v2:{path}") == expected.strip()


def test_shas_are_stable_and_ignore_user_config(
    built: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, shas = built
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Someone Else\n\temail = else@example.com\n"
        "[init]\n\tdefaultBranch = trunk\n[core]\n\tautocrlf = true\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Intruder")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2001-01-01T00:00:00Z")
    again = sampleapp.build_repository(tmp_path / "again.git")
    assert again == shas
    log = git(tmp_path / "again.git", "log", "--format=%an <%ae> %cI", "main")
    assert log.splitlines() == [
        f"{sampleapp.AUTHOR_NAME} <{sampleapp.AUTHOR_EMAIL}> 2025-07-01T10:00:00Z",
        f"{sampleapp.AUTHOR_NAME} <{sampleapp.AUTHOR_EMAIL}> 2025-06-01T10:00:00Z",
    ]


def test_build_refuses_a_used_destination(tmp_path: Path) -> None:
    dest = tmp_path / "used"
    dest.mkdir()
    (dest / "file").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        sampleapp.build_repository(dest)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert set(sampleapp.build_repository(empty)) == {"v1", "v2"}


def test_add_commit_on_main(fresh: Path) -> None:
    v2 = git(fresh, "rev-parse", "v2")
    sha = sampleapp.add_commit(
        fresh,
        {
            "routes/extra.php": "<?php\n// added\n",
            "artisan": "#!/usr/bin/env php\n<?php\nexit(1);\n",
            "public/robots.txt": None,
        },
        "Break things",
        tag="v3",
    )
    assert git(fresh, "rev-parse", "main") == sha
    assert git(fresh, "rev-parse", "v3") == sha
    assert git(fresh, "rev-parse", f"{sha}^") == v2
    assert git(fresh, "show", f"{sha}:routes/extra.php") == "<?php\n// added"
    assert git(fresh, "ls-tree", sha, "artisan").split()[0] == "100755"
    assert git(fresh, "ls-tree", sha, "routes/extra.php").split()[0] == "100644"
    assert "public/robots.txt" not in git(fresh, "ls-tree", "-r", "--name-only", sha)
    changed = set(git(fresh, "diff", "--name-only", "v2", sha).splitlines())
    assert changed == {"routes/extra.php", "artisan", "public/robots.txt"}
    assert git(fresh, "log", "-1", "--format=%s", sha) == "Break things"

    second = sampleapp.add_commit(fresh, {"routes/extra.php": "<?php\n"}, "Fix")
    assert git(fresh, "rev-parse", "main") == second
    assert git(fresh, "rev-parse", f"{second}^") == sha


def test_add_commit_is_deterministic(tmp_path: Path) -> None:
    results = []
    for name in ("one.git", "two.git"):
        repo = tmp_path / name
        sampleapp.build_repository(repo)
        results.append(sampleapp.add_commit(repo, {"README.md": "hello\n"}, "Add readme"))
    assert results[0] == results[1]


def test_add_commit_on_a_tag_onto_a_branch(fresh: Path) -> None:
    main_before = git(fresh, "rev-parse", "main")
    sha = sampleapp.add_commit(
        fresh, {"README.md": "hotfix\n"}, "Hotfix", parent="v1", branch="hotfix"
    )
    assert git(fresh, "rev-parse", "hotfix") == sha
    assert git(fresh, "rev-parse", f"{sha}^") == git(fresh, "rev-parse", "v1")
    assert git(fresh, "rev-parse", "main") == main_before

    tagged = sampleapp.add_commit(fresh, {"README.md": "x\n"}, "Tagged", parent="v1", tag="v1.1")
    assert git(fresh, "rev-parse", "v1.1") == tagged
    assert git(fresh, "rev-parse", "main") == main_before


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"files": {"../escape": "x"}}, "bad path"),
        ({"files": {"/etc/passwd": "x"}}, "bad path"),
        ({"files": {".git/config": "x"}}, "bad path"),
        ({"files": {}}, "no file changes"),
        ({"files": {"missing.txt": None}}, "cannot delete"),
        ({"files": {"a": "x"}, "parent": "nope"}, "not a branch, tag or commit"),
        ({"files": {"a": "x"}, "parent": "v1"}, "give branch= or tag="),
        ({"files": {"a": "x"}, "tag": "v2"}, "already exists"),
        ({"files": {"a": "x"}, "tag": "bad..name"}, "bad ref name"),
        ({"files": {"a\nb": "x"}}, "bad path"),
        ({"files": {"routes": "x"}}, "would replace"),
        ({"files": {"artisan/x": "x"}}, "would replace"),
    ],
)
def test_add_commit_refuses(fresh: Path, kwargs: dict, match: str) -> None:
    before = git(fresh, "for-each-ref")
    with pytest.raises(ConfigError, match=match):
        sampleapp.add_commit(fresh, message="nope", **kwargs)
    assert git(fresh, "for-each-ref") == before


def test_add_commit_needs_a_repository(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a bare git repository"):
        sampleapp.add_commit(tmp_path, {"a": "x"}, "msg")


def test_main_prints_the_shas(built: tuple[Path, dict[str, str]], tmp_path: Path, capsys) -> None:
    _, shas = built
    assert sampleapp.main([str(tmp_path / "cli.git")]) == 0
    assert json.loads(capsys.readouterr().out) == shas
    assert sampleapp.main([]) == 2
