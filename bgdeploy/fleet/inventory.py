"""An inventory file and its group_data, read the way pyinfra's command line reads them, without
importing pyinfra.

``pyinfra inventories/ENV.py deploys/FILE.py`` and the command line reach the same hosts with
the same data: the deploy paths run pyinfra itself, and the on-call commands (rollback,
switch, status...) read the inventory here, where importing pyinfra and its command line would
cost them a third of a second before the first connection. The rules are pyinfra 3's
(``pyinfra_cli.inventory.make_inventory_from_files`` and ``pyinfra.api.Inventory``), and a
test compares both readings of every inventory of the repository, host by host:

- the inventory file is executed; each module-level list (or ``(hosts, data)`` tuple) whose
  name does not start with ``_`` is a group of hosts, each a name or ``(name, data)``; every
  host is also in the group named after the file (``inventories/prod.py``: ``prod``);
- each ``group_data/GROUP.py`` is executed; its names, less those bound by an ``import``
  (or the ones ``__all__`` lists) and dunders, are that group's data (``all.py``: every host's);
- a host's data, from the strongest: ``override_data`` (``--data``), its own data in the
  inventory file, its groups' data (a later group's over an earlier one's, in the order the
  groups first appear), ``all``.

Only the group_data of the groups that have hosts is executed (pyinfra executes all of them:
a data file of another environment never changes these hosts). An inventory this reader does
not cover (a connector such as ``@docker/...``, or a file that imports pyinfra to read its
context) is read by pyinfra (:func:`covers`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Data(dict[str, Any]):
    """A host's merged data; ``dict()`` as pyinfra's ``host.data.dict()``."""

    def dict(self) -> dict[str, Any]:
        return dict(self)


@dataclass
class InventoryHost:
    """One host: its name, its groups (in pyinfra's order) and its merged data."""

    name: str
    groups: list[str]
    data: Data = field(default_factory=Data)


class Inventory:
    """Hosts in inventory order, and groups (what :mod:`bgdeploy.fleet.remote` and
    :func:`bgdeploy.fleet.runner.check_environment` read of pyinfra's ``Inventory``)."""

    def __init__(self, hosts: list[InventoryHost]) -> None:
        self.hosts = {host.name: host for host in hosts}

    def __iter__(self) -> Iterator[InventoryHost]:
        return iter(self.hosts.values())

    def __len__(self) -> int:
        return len(self.hosts)

    def get_group(self, name: str, default: Any = None) -> Any:
        members = [host for host in self.hosts.values() if name in host.groups]
        return members if members else default

    def get_host(self, name: str) -> InventoryHost:
        return self.hosts[name]


def _imported_names(source: str, filename: str) -> set[str]:
    """The names an ``import`` binds at the top of a file (pyinfra leaves them out)."""
    names: set[str] = set()
    for node in ast.parse(source, filename=filename).body:
        if isinstance(node, ast.Import):
            names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names if alias.name != "*")
    return names


def _imports_pyinfra(source: str, filename: str) -> bool:
    for node in ast.walk(ast.parse(source, filename=filename)):
        if isinstance(node, ast.Import) and any(
            alias.name.split(".")[0] == "pyinfra" for alias in node.names
        ):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pyinfra":
            return True
    return False


def _execute(path: Path) -> dict[str, Any]:
    """A Python file's top-level names once executed (as pyinfra's ``exec_file``)."""
    source = path.read_text(encoding="utf-8")
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 (an inventory is code)
    return namespace


def _is_group(key: str, value: Any) -> bool:
    if key.startswith("_"):
        return False
    if isinstance(value, tuple):
        value = value[0]
    if not isinstance(value, list):
        return False
    return all(isinstance(item, str | tuple) for item in value)


def _group_data_files(directories: list[Path]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for directory in directories:
        if directory.is_dir():
            for path in sorted(directory.glob("*.py")):
                found.setdefault(path.stem, []).append(path)
    return found


def group_data_directories(inventory_file: Path, cwd: Path) -> list[Path]:
    """Where pyinfra looks for group_data: ``CWD/group_data``, then beside the inventory."""
    directories = [cwd / "group_data"]
    if inventory_file.parent.resolve() != cwd:
        directories.append(inventory_file.parent.resolve() / "group_data")
    return directories


def covers(inventory_file: Path, cwd: Path) -> bool:
    """Whether this reader reads ``inventory_file`` as pyinfra would: no file it executes
    imports pyinfra (:func:`load` checks the hosts' names for connectors)."""
    paths = [inventory_file]
    for files in _group_data_files(group_data_directories(inventory_file, cwd)).values():
        paths += files
    return not any(_imports_pyinfra(p.read_text(encoding="utf-8"), str(p)) for p in paths)


class NotCovered(Exception):
    """The inventory names a host through a connector (``@docker/...``): pyinfra reads it."""


def load(inventory_file: Path, cwd: Path, override_data: dict[str, Any] | None = None) -> Inventory:
    """Read ``inventory_file`` and its group_data (see the module); what the files raise is
    raised as it is. :class:`NotCovered` for a connector host."""
    attrs = _execute(inventory_file)
    groups: dict[str, tuple[list[Any], dict[str, Any]]] = {}
    for key, value in attrs.items():
        if _is_group(key, value):
            hosts, data = value if isinstance(value, tuple) else (value, {})
            groups[key] = (list(hosts), dict(data))
    listed: list[Any] = []
    all_data: dict[str, Any] = {}
    if "all" in groups:
        listed, all_data = groups.pop("all")
    else:
        for hosts, _ in groups.values():
            listed += [_name(item) for item in hosts if _name(item) not in listed]
    all_hosts = [_name(item) for item in listed]
    if any(name.startswith("@") for name in all_hosts):
        raise NotCovered(inventory_file.name)
    file_group = inventory_file.name.rsplit(".", 1)[0]
    if file_group not in groups:
        groups[file_group] = (list(all_hosts), {})

    host_groups: dict[str, list[str]] = {name: [] for name in all_hosts}
    host_data: dict[str, dict[str, Any]] = {name: {} for name in all_hosts}
    for group, (hosts, _) in groups.items():
        for item in hosts:
            name = _name(item)
            host_groups.setdefault(name, []).append(group)
            host_data.setdefault(name, {}).update(item[1] if isinstance(item, tuple) else {})
    for item in listed:  # the hosts of an ``all`` group, last
        host_data[_name(item)].update(item[1] if isinstance(item, tuple) else {})

    wanted = {"all", *(g for names in host_groups.values() for g in names)}
    files = _group_data_files(group_data_directories(inventory_file, cwd))
    group_data: dict[str, dict[str, Any]] = {}
    for group in files:
        if group not in wanted:
            continue
        for path in files[group]:
            group_data.setdefault(group, {}).update(_data_of(path))
    all_data = {**all_data, **group_data.get("all", {})}

    found = []
    for name in all_hosts:
        merged: dict[str, Any] = dict(all_data)
        for group in host_groups[name]:
            merged.update(groups[group][1])
            merged.update(group_data.get(group, {}))
        merged.update(host_data[name])
        merged.update(override_data or {})
        found.append(InventoryHost(name, list(host_groups[name]), Data(merged)))
    return Inventory(found)


def _data_of(path: Path) -> dict[str, Any]:
    """A group_data file's data: its names less the imported ones (or ``__all__``), less
    dunders."""
    attrs = _execute(path)
    if "__all__" in attrs:
        keys = set(attrs["__all__"])
    else:
        keys = set(attrs) - _imported_names(path.read_text(encoding="utf-8"), str(path))
    return {k: v for k, v in attrs.items() if k in keys and not k.startswith("__")}


def _name(item: Any) -> str:
    return str(item[0] if isinstance(item, tuple) else item)
