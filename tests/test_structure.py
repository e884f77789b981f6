"""The package's structure, read from its source with ``ast`` (docs/architecture.md).

- no import cycle between the package's modules, counting imports inside functions (those only delay a cycle
  to the first call); imports under ``if TYPE_CHECKING:`` never run and are not counted;
- no module but model.py reads a ``_``-prefixed member of the model (by the names ``SemanticSegmentationModel``
  defines): other modules use the facade's public properties;
- tests read private members only where listed, with the reason (``PRIVATE_READS_IN_TESTS``);
- ``IGNORE_INDEX``, ``__version__``, the class-count check and the atomic file replacement each exist once;
- no function longer than ``MAX_FUNCTION_LINES`` lines but those listed in ``LONG_FUNCTIONS`` (to be split).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deepplantphenomics

PACKAGE = Path(deepplantphenomics.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent
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
    assert f"{NAME}.export" in graph[f"{NAME}.model"]  # imported inside export_onnx
    # An import under `if TYPE_CHECKING:` is not a runtime edge.
    guarded = "if TYPE_CHECKING:\n    from deepplantphenomics.model import SemanticSegmentationModel\n"
    assert _imported_modules(ast.parse(guarded)) == set()


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


def _facade_private_names() -> set[str]:
    """The ``_``-prefixed methods and instance attributes of ``SemanticSegmentationModel``."""
    facade = next(
        node
        for node in TREES[f"{NAME}.model"].body
        if isinstance(node, ast.ClassDef) and node.name == "SemanticSegmentationModel"
    )
    names = set()
    for node in ast.walk(facade):
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_no_module_outside_the_facade_uses_its_private_names():
    """Whatever the variable is called: ``m._settings``, ``self.model._network``, ``getattr``-free reads."""
    private = _facade_private_names()
    assert {"_settings", "_builder", "_build_network"} <= private
    found = [
        f"{name} line {node.lineno}: {ast.unparse(node)}"
        for name, tree in TREES.items()
        if name != f"{NAME}.model"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in private
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert found == []


# Private members that tests may read, per file, with the reason. Everything else goes through the public API
# (the model's settings, input_shape, layer_specs, layer_shapes, build_network()). Lower a count when you
# remove a read; raise one only with a reason here.
PRIVATE_READS_IN_TESTS: dict[str, tuple[int, str]] = {
    "test_augment.py": (4, "known answers for the affine, crop and brightness helpers behind augment_batch"),
    "test_layers_network.py": (1, "TensorFlow's 'SAME' padding formula, checked against known values"),
    "test_patches.py": (1, "the padding helper of tiled prediction"),
    "test_segment_outputs.py": (
        2,
        "counts the vegetation network's calls (its cached loader) and shrinks the band of the view resize",
    ),
    "test_tools.py": (2, "the vegetation tool's cached network loader"),
}


def _private_reads(tree: ast.AST) -> list[str]:
    """``x._name`` reads (not on ``self``/``cls``) and ``from deepplantphenomics... import _name``."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(NAME):
            found += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


def test_private_reads_detector():
    tree = ast.parse("from deepplantphenomics.layers import _same_pad\nm._settings\nself._x\nm.__class__")
    assert _private_reads(tree) == ["line 1: import _same_pad", "line 2: m._settings"]


def test_tests_read_private_members_only_where_listed():
    over = {}
    for path in sorted(TESTS.glob("test_*.py")):
        reads = _private_reads(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        allowed = PRIVATE_READS_IN_TESTS.get(path.name, (0, ""))[0]
        if len(reads) > allowed:
            over[path.name] = (allowed, reads)
    assert over == {}, "use the public API, or list the read in PRIVATE_READS_IN_TESTS with its reason"


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


# ------------------------------------------------------------------------------------------ function length
MAX_FUNCTION_LINES = 80
# Functions longer than that today, to be split (issue 18). Remove an entry once its function is short; add none.
LONG_FUNCTIONS: set[str] = set()


def _function_lengths() -> dict[str, int]:
    """Qualified name (module.Class.function) -> lines, for every function and method of the package."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[prefix + child.name] = child.end_lineno - child.lineno + 1
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    for module, tree in TREES.items():
        visit(tree, f"{module}.")
    return lengths


def test_no_new_long_functions():
    long = {name: n for name, n in _function_lengths().items() if n > MAX_FUNCTION_LINES}
    new = {name: n for name, n in long.items() if name not in LONG_FUNCTIONS}
    assert new == {}, f"split these below {MAX_FUNCTION_LINES} lines (functions that mix concerns)"


def test_the_long_function_list_is_current():
    """An entry whose function was split (or removed) leaves the list, so the list only shrinks."""
    lengths = _function_lengths()
    stale = sorted(name for name in LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES)
    assert stale == [], "remove these from LONG_FUNCTIONS: they are short now"
