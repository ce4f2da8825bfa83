"""The inventory reader of the on-call commands (:mod:`bgdeploy.fleet.inventory`) reads every
inventory exactly as pyinfra's command line does: the same hosts, in the same order, in the
same groups, with the same data; and it imports no pyinfra."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_sandbox_state import fake_state

from bgdeploy.core.settings import ROOT
from bgdeploy.fleet import inventory, runner


def pyinfra_reading(path: Path, cwd: Path, override: dict[str, Any] | None = None) -> Any:
    return runner.load_with_pyinfra(path, override, cwd)


def described(found: Any) -> dict[str, Any]:
    """Hosts in order with their groups and data, and the web and db groups."""
    return {
        "hosts": [(host.name, list(host.groups), host.data.dict()) for host in found],
        "groups": {
            group: [host.name for host in found.get_group(group, [])]
            for group in ("web", "db", "all", "nothing")
        },
    }


def comparable(found: dict[str, Any]) -> dict[str, Any]:
    """JSON's view (the data holds tuples, sets...: compared by value)."""
    return json.loads(json.dumps(found, sort_keys=True, default=repr))


@pytest.fixture
def sandboxes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox and its staging sandbox that are "up" (their state files, no containers)."""
    monkeypatch.setenv("BGDEPLOY_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("BGDEPLOY_SANDBOX", "inv1")
    monkeypatch.setenv("BGDEPLOY_STAGING_SANDBOX", "inv1-staging")
    fake_state(tmp_path, "inv1")
    fake_state(tmp_path, "inv1-staging")


@pytest.mark.usefixtures("sandboxes")
@pytest.mark.parametrize("env", sorted(p.stem for p in (ROOT / "inventories").glob("*.py")))
@pytest.mark.parametrize("override", [None, {"ref": "v2", "app_name": "other"}])
def test_every_inventory_reads_as_pyinfra_reads_it(
    env: str, override: dict[str, Any] | None
) -> None:
    path = ROOT / "inventories" / f"{env}.py"
    assert inventory.covers(path, ROOT)
    ours = described(inventory.load(path, ROOT, override))
    theirs = described(pyinfra_reading(path, ROOT, override))
    assert comparable(ours) == comparable(theirs)
    assert ours["hosts"] and ours["groups"]["web"]


GROUP_DATA = {
    "all.py": 'from os import path\nimport json as _j\ncolour = "all"\nlevel = 1\n_private = 2\n',
    "web.py": 'colour = "web"\nweb_only = True\n',
    "db.py": '__all__ = ["role"]\nrole = "db"\nhidden = "not exported"\n',
    "mixed.py": 'colour = "mixed"\nlevel = 3\n',
    "unused.py": 'raise RuntimeError("a group without hosts")\n',
}


def tricky_inventory(directory: Path, unused_file: bool) -> Path:
    """An inventory that uses every rule: tuple groups with group data, hosts in several
    groups, ``__all__``, imported names, a private name, and an explicit ``all`` group."""
    (directory / "group_data").mkdir()
    for name, text in GROUP_DATA.items():
        if name != "unused.py" or unused_file:
            (directory / "group_data" / name).write_text(text)
    path = directory / "tricky.py"
    path.write_text(
        "import os\n"
        "_hidden = ['not-a-host']\n"
        "web = [('w1', {'level': 9}), 'w2']\n"
        "db = (['d1', ('w2', {'both': True})], {'colour': 'db-tuple', 'level': 5})\n"
        "mixed = ['w1', 'd1']\n"
        "not_a_group = 'w9'\n"
        "numbers = [1, 2]\n"
    )
    return path


def test_the_rules_of_pyinfra_hold_on_a_tricky_inventory(tmp_path: Path) -> None:
    theirs_dir, ours_dir = tmp_path / "theirs", tmp_path / "ours"
    theirs_dir.mkdir()
    ours_dir.mkdir()
    # pyinfra executes every group_data file; this reader only those of groups with hosts.
    with pytest.raises(Exception) as raised:  # pyinfra's wrapper: its cause below
        pyinfra_reading(tricky_inventory(theirs_dir, unused_file=True), theirs_dir)
    assert "a group without hosts" in repr(raised.value.exception)  # type: ignore[attr-defined]
    theirs_dir = tmp_path / "theirs2"
    theirs_dir.mkdir()
    theirs = pyinfra_reading(tricky_inventory(theirs_dir, unused_file=False), theirs_dir)
    ours = inventory.load(tricky_inventory(ours_dir, unused_file=True), ours_dir)
    assert comparable(described(ours)) == comparable(described(theirs))
    w1 = ours.get_host("w1")
    assert w1.data.dict()["level"] == 9 and w1.data.dict()["colour"] == "mixed"
    assert w1.groups == ["web", "mixed", "tricky"]


def test_an_explicit_all_group_and_its_data(tmp_path: Path) -> None:
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text('level = 1\nname = "all"\n')
    path = tmp_path / "flat.py"
    path.write_text(
        "all = ([('a', {'level': 2}), 'b'], {'name': 'file', 'extra': 1})\n"
        "web = [('b', {'x': 1})]\n"
    )
    ours, theirs = inventory.load(path, tmp_path), pyinfra_reading(path, tmp_path)
    assert comparable(described(ours)) == comparable(described(theirs))


def test_a_connector_or_a_pyinfra_import_is_left_to_pyinfra(tmp_path: Path) -> None:
    path = tmp_path / "conn.py"
    path.write_text("web = ['@local']\n")
    with pytest.raises(inventory.NotCovered):
        inventory.load(path, tmp_path)
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "web.py").write_text("from pyinfra import inventory\nx = 1\n")
    assert not inventory.covers(path, tmp_path)
    assert inventory.covers(ROOT / "inventories" / "prod.py", ROOT)


def test_reading_an_inventory_for_the_on_call_commands_imports_no_pyinfra() -> None:
    """The rollback, the switch and status import none of pyinfra (a third of a second
    before the first connection): their modules, the inventory and the settings."""
    code = (
        "import sys\n"
        "import bgdeploy.cli.rollback, bgdeploy.cli.switch, bgdeploy.cli.status\n"
        "from bgdeploy.strategies import rollback, manual_switch, status\n"
        "from bgdeploy.fleet import remote, runner\n"
        "environment = runner.check_environment('prod')\n"
        "remote.targets('prod', ('web',), environment.inventory)\n"
        "remote.targets('staging')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyinfra', 'pyinfra_cli',"
        " 'gevent')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_one_reading_reads_each_inventory_once() -> None:
    first = runner.load_inventory("prod")
    assert runner.load_inventory("prod") is not first  # outside: read again
    with runner.one_reading():
        inside = runner.load_inventory("prod")
        assert runner.load_inventory("prod") is inside
        assert runner.load_inventory("prod", {"ref": "v2"}) is not inside
        with runner.one_reading():
            assert runner.load_inventory("prod") is inside
    assert runner.load_inventory("prod") is not inside
