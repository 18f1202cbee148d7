"""No import cycles inside ros2_fed/ and training/.

Why: a cycle makes import order matter (a half-initialised module hands out missing names) and
ties modules that should change apart. Imports inside functions count too: a lazy import hides
a cycle from the import machinery, not from the design. Imports under ``if TYPE_CHECKING:`` do
not count (they never run).
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ros2_fed", "training")


def module_name(path: Path) -> str:
    """``ros2_fed/engine/base.py`` -> ``ros2_fed.engine.base``; a package's ``__init__`` is the
    package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: module level, in functions and classes, not TYPE_CHECKING."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        for child in ast.iter_child_nodes(node):
            if not _is_type_checking_block(child):
                stack.append(child)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owning_module(name: str, modules: dict[str, Path]) -> Optional[str]:
    """The longest project module that ``name`` is or lies in (None outside the project)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, modules: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports (``from pkg import sub`` counts as ``pkg.sub``)."""
    path = modules[module]
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            source = _absolute(module, is_package, node)
            targets = [f"{source}.{alias.name}" for alias in node.names] + [source]
        for target in targets:
            owner = _owning_module(target, modules)
            if owner is not None and owner != module:
                found.add(owner)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {module: imports_of(module, modules) for module in modules}


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_finder_reports_a_cycle() -> None:
    """The check can fail: a two-module loop and a three-module loop are found."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) is not None
    cycle = find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert cycle is not None and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_lazy_and_relative_imports_are_edges(tmp_path: Path) -> None:
    """A relative import inside a function is an edge; one under TYPE_CHECKING is not."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from . import c\n"
        "def f():\n    from .b import x\n    from . import d\n"
    )
    tree = ast.parse(source)
    found = []
    for node in _import_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append(_absolute("pkg.a", False, node))
    assert sorted(found) == ["pkg", "pkg.b"]


def test_no_import_cycles_in_ros2_fed_and_training() -> None:
    graph = import_graph()
    assert "ros2_fed.engine.export" in graph and graph["ros2_fed.engine.export"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
