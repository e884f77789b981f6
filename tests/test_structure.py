"""The package's structure, read from its source with ``ast`` (docs/architecture.md).

- no import cycle between the package's modules, counting imports inside functions (those only delay a cycle
  to the first call); imports under ``if TYPE_CHECKING:`` never run and are not counted;
- no module but model.py reads a ``_``-prefixed attribute of a variable called ``model``: other modules use the
  facade's public properties;
- ``IGNORE_INDEX``, ``__version__``, the class-count check and the atomic file replacement each exist once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deepplantphenomics

PACKAGE = Path(deepplantphenomics.__file__).resolve().parent
NAME = "deepplantphenomics"


def _module_name(path: Path) -> str:
    parts = (NAME, *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), str(path)) for name, path in MODULES.items()}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (their ``else`` branch is kept)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported_modules(tree: ast.AST) -> set[str]:
    """The package's modules that ``tree`` imports anywhere (module level or inside functions)."""
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import module` imports the module; `from pkg.module import name` the module itself.
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                if child in MODULES:
                    found.add(child)
                elif node.module in MODULES:
                    found.add(node.module)
    return found


def _graph() -> dict[str, set[str]]:
    # Importing a submodule also runs its package's __init__ (which imports the facade and the tools); that
    # implicit edge would make every module part of one cycle and says nothing about the design, so only the
    # imports written in the source count.
    return {name: _imported_modules(tree) - {name} for name, tree in TREES.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search with white/grey/black colouring)."""
    colour = dict.fromkeys(graph, 0)
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return path[path.index(nxt) :] + [nxt]
            if colour[nxt] == 0 and (cycle := visit(nxt)):
                return cycle
        path.pop()
        colour[node] = 2
        return None

    for start in sorted(graph):
        if colour[start] == 0 and (cycle := visit(start)):
            return cycle
    return None


def test_the_structure_checks_see_the_package():
    assert {f"{NAME}.model", f"{NAME}.state", f"{NAME}.validation", f"{NAME}.data.io"} <= set(MODULES)
    graph = _graph()
    # Imports at module level and inside functions are both seen.
    assert f"{NAME}.network" in graph[f"{NAME}.model"]
    assert f"{NAME}.architectures" in graph[f"{NAME}.model"]  # imported inside use_predefined_model
    # An import under `if TYPE_CHECKING:` is not a runtime edge.
    assert f"{NAME}.model" not in graph[f"{NAME}.architectures"]


def test_cycle_finder_finds_a_known_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_even_inside_functions():
    assert _find_cycle(_graph()) is None


@pytest.mark.parametrize("helper", ["state", "report", "export", "validation", "_version"])
def test_helpers_never_import_the_facade(helper):
    graph = _graph()
    reachable, todo = set(), [f"{NAME}.{helper}"]
    while todo:
        for nxt in graph[todo.pop()] - reachable:
            reachable.add(nxt)
            todo.append(nxt)
    assert f"{NAME}.model" not in reachable


def _private_model_reads(tree: ast.AST) -> list[str]:
    return [
        f"line {node.lineno}: model.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "model"
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]


def test_private_read_detector_sees_one():
    assert _private_model_reads(ast.parse("model._settings.batch_size\nmodel.settings\nmodel.__class__")) == [
        "line 1: model._settings"
    ]


def test_no_module_outside_the_facade_reads_its_private_members():
    found = {
        name: reads
        for name, tree in TREES.items()
        if name != f"{NAME}.model" and (reads := _private_model_reads(tree))
    }
    assert found == {}


def _module_level_assignments(name: str) -> list[str]:
    where = []
    for module, tree in TREES.items():
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                where.append(module)
    return where


@pytest.mark.parametrize(("constant", "home"), [("IGNORE_INDEX", "validation"), ("__version__", "_version")])
def test_constants_defined_once(constant, home):
    assert _module_level_assignments(constant) == [f"{NAME}.{home}"]


def _functions(predicate) -> list[str]:
    return [
        f"{module}.{node.name}"
        for module, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and predicate(node)
    ]


def test_one_class_count_check():
    assert _functions(lambda f: "num_classes" in f.name and f.name.lstrip("_").startswith("check")) == [
        f"{NAME}.validation.check_num_classes"
    ]


def test_one_atomic_writer():
    """Files are put in place by a rename in one function only: state.atomic_write."""
    renames = _functions(
        lambda f: any(
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("replace", "rename")
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id == "os"
            for n in ast.walk(f)
        )
    )
    assert renames == [f"{NAME}.state.atomic_write"]
