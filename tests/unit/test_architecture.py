"""The package's shape, read from its source with :mod:`ast` (nothing is imported).

- no module over 500 lines;
- no module uses a private name (``_name``) of another bgdeploy module;
- no import cycle among bgdeploy modules (module-level imports, ``TYPE_CHECKING`` left out);
- layers: core < commands < fleet < checks < strategies < cli. ``bgdeploy.core`` imports only
  core, ``bgdeploy.commands`` only core and commands, ``bgdeploy.fleet`` nothing above fleet,
  ``bgdeploy.checks`` nothing above checks (never strategies or the CLI).

Where today's code of other subpackages breaks a rule, the offenders are listed as known
exceptions, each with the reason; the test fails on any new one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "bgdeploy"
MAX_LINES = 500


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: int
    is_package: bool
    imports: set[str] = field(default_factory=set)
    """Every bgdeploy module this one imports, anywhere in it."""
    runtime_imports: set[str] = field(default_factory=set)
    """The bgdeploy modules imported at module level when it is loaded (no ``TYPE_CHECKING``)."""


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _load() -> dict[str, Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name, is_package = _module_name(path)
        tree = ast.parse(source, filename=str(path))
        modules[name] = Module(name, path, tree, len(source.splitlines()), is_package)
    return modules


MODULES = _load()


def _relpath(module: Module) -> str:
    return str(module.path.relative_to(PACKAGE.parent))


def _base(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _imported(module: Module, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str]]:
    """``(module, name)`` for each name the import statement brings in (``name`` empty for
    ``import x``); ``module`` is the submodule itself when the name is one."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, ""
        return
    base = _base(module, node)
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield (sub, "") if sub in MODULES else (base, alias.name)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements run when the module is loaded."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            yield from _module_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _module_level(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                yield from _module_level(handler.body)


for _module in MODULES.values():
    for _node in ast.walk(_module.tree):
        if isinstance(_node, ast.Import | ast.ImportFrom):
            for _target, _name in _imported(_module, _node):
                if _target in MODULES and _target != _module.name:
                    _module.imports.add(_target)
    for _node in _module_level(_module.tree.body):
        for _target, _name in _imported(_module, _node):
            if _target in MODULES and _target != _module.name:
                _module.runtime_imports.add(_target)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: Module) -> set[str]:
    """``module -> other.name`` for each private name of another bgdeploy module it uses."""
    found: set[str] = set()
    bound: dict[str, str] = {}  # a local name -> the bgdeploy module it stands for
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for alias, (target, name) in zip(node.names, _imported(module, node), strict=True):
            if target not in MODULES:
                continue
            if name and _private(name) and target != module.name:
                found.add(f"{module.name} -> {target}.{name}")
            if not name:
                if isinstance(node, ast.Import) and alias.asname is None:
                    bound[alias.name.partition(".")[0]] = alias.name.partition(".")[0]
                else:
                    bound[alias.asname or alias.name] = target
            if _private(target.rpartition(".")[2]) and target != module.name:
                found.add(f"{module.name} -> {target}")
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain: list[str] = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            chain.insert(0, value.attr)
            value = value.value
        if not isinstance(value, ast.Name) or value.id not in bound:
            continue
        target = bound[value.id]
        for attr in chain:
            if f"{target}.{attr}" in MODULES:
                target = f"{target}.{attr}"
                continue
            if _private(attr) and target != module.name:
                found.add(f"{module.name} -> {target}.{attr}")
            break
    return found


def import_cycles() -> set[frozenset[str]]:
    """The strongly connected groups of modules (two or more) of the module-level import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: set[frozenset[str]] = set()

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in sorted(MODULES[name].runtime_imports):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == name:
                    break
            if len(group) > 1:
                groups.add(frozenset(group))

    for name in sorted(MODULES):
        if name not in index:
            visit(name)
    return groups


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


LAYERS = {
    # subpackage: what its modules may import of bgdeploy
    "bgdeploy.core": ("bgdeploy.core",),
    "bgdeploy.commands": ("bgdeploy.core", "bgdeploy.commands"),
    "bgdeploy.fleet": ("bgdeploy.core", "bgdeploy.commands", "bgdeploy.fleet"),
    "bgdeploy.checks": ("bgdeploy.core", "bgdeploy.commands", "bgdeploy.fleet", "bgdeploy.checks"),
}


def layer_breaches(modules: Iterable[Module] = MODULES.values()) -> set[str]:
    found = set()
    for module in modules:
        for layer, allowed in LAYERS.items():
            if not _in(module.name, layer):
                continue
            for target in module.imports:
                if not any(_in(target, ok) for ok in allowed):
                    found.add(f"{module.name} -> {target}")
    return found


# Known exceptions: code of other subpackages, being reshaped in parallel (issue 15). Remove an
# entry when its code is fixed; never add one for new code.

KNOWN_LONG: set[str] = set()  # none today

KNOWN_PRIVATE_USES: set[str] = set()  # none today

KNOWN_CYCLES: set[frozenset[str]] = set()  # none today

KNOWN_LAYER_BREACHES: set[str] = set()  # none today


def _long() -> set[str]:
    return {_relpath(m) for m in MODULES.values() if m.lines > MAX_LINES}


def test_the_package_is_read() -> None:
    assert "bgdeploy.commands" in MODULES
    assert "bgdeploy.core.settings" in MODULES["bgdeploy.core.render"].runtime_imports


def test_no_module_is_over_500_lines() -> None:
    assert not _long()


def test_no_new_module_is_over_500_lines() -> None:
    assert not _long() - KNOWN_LONG


def test_no_module_uses_a_private_name_of_another() -> None:
    found = set().union(*(private_uses(m) for m in MODULES.values()))
    assert not found - KNOWN_PRIVATE_USES


def test_no_import_cycle() -> None:
    assert not import_cycles() - KNOWN_CYCLES


def test_core_commands_fleet_and_checks_import_only_the_layers_below() -> None:
    assert not layer_breaches() - KNOWN_LAYER_BREACHES


def test_the_checks_see_what_they_look_for() -> None:
    """Each check, run on a made-up module, finds the offence it is for."""
    tree = ast.parse(
        "from bgdeploy.commands import _sha\n"
        "from bgdeploy import commands\n"
        "import bgdeploy.core.journal\n"
        "commands._token('x')\n"
        "bgdeploy.core.journal._private\n"
    )
    module = Module("bgdeploy.oncall.made_up", PACKAGE / "oncall/made_up.py", tree, 5, False)
    assert private_uses(module) == {
        "bgdeploy.oncall.made_up -> bgdeploy.commands._sha",
        "bgdeploy.oncall.made_up -> bgdeploy.commands._token",
        "bgdeploy.oncall.made_up -> bgdeploy.core.journal._private",
    }
    fleet = Module("bgdeploy.fleet.made_up", PACKAGE / "fleet/made_up.py", tree, 5, False)
    fleet.imports = {"bgdeploy.strategies.switch", "bgdeploy.core.lock", "bgdeploy.fleet.executor"}
    checks = Module("bgdeploy.checks.made_up", PACKAGE / "checks/made_up.py", tree, 5, False)
    checks.imports = {"bgdeploy.cli.main", "bgdeploy.fleet.colours", "bgdeploy.checks.migrations"}
    assert layer_breaches([fleet, checks]) == {
        "bgdeploy.fleet.made_up -> bgdeploy.strategies.switch",
        "bgdeploy.checks.made_up -> bgdeploy.cli.main",
    }


def _top_level_names(module: Module) -> set[str]:
    names = set()
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("package", ["bgdeploy.commands", "bgdeploy.checks.preflight"])
def test_an_index_exports_every_public_name_of_its_modules_and_nothing_else(package: str) -> None:
    """``bgdeploy.commands`` re-exports each public name of its modules (``commands.x(...)``
    works for every builder), and every module of it says what it builds; so does
    ``bgdeploy.checks.preflight`` for its checks (``preflight.check_lock(...)``)."""
    index = MODULES[package]
    exported: set[str] = set()
    for node in index.tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported = set(ast.literal_eval(node.value))
    defined: set[str] = set()
    for name, module in MODULES.items():
        if name.startswith(package + "."):
            defined |= _top_level_names(module)
            assert ast.get_docstring(module.tree), f"{_relpath(module)} has no module docstring"
    assert exported == defined
    assert not _top_level_names(index), "the index defines nothing of its own"
