"""The shape of `retrieval/`: no import cycles, roles as leaves, training apart from serving.

Read from the source (every `import` statement, those inside functions too), so a new edge that
breaks the shape fails here before it tangles anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from retrieval.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

PACKAGE = PROJECT_ROOT / "retrieval"
SHARED = {"retrieval.types", "retrieval.errors", "retrieval.util", "retrieval.text", "retrieval.batching"}
"""What every role may import: value types, the error base, helpers, text normalisation, micro-batching."""
ROLES = ("encoders", "sparse", "store", "fusion", "ranking", "routing", "cache", "understanding")
"""Packages (or modules) that play one role each and compose nothing."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imported(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _graph() -> dict[str, set[str]]:
    """Module -> the `retrieval` modules it imports (a package's import counts as its `__init__`)."""
    return {
        name: {target for target in _imported(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _role(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ROLES else None


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(planted) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_retrieval_modules() -> None:
    assert _cycles(_graph()) == []


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_two_packages_import_each_other() -> None:
    # Module cycles are checked above; this keeps the coarser map readable too: if `collections`
    # uses the knowledge base, the knowledge base uses nothing of `collections`.
    edges = {
        (_package(module), _package(target))
        for module, targets in _graph().items()
        for target in targets
        if _package(module) != _package(target)
    }
    assert sorted({tuple(sorted(edge)) for edge in edges if edge[::-1] in edges}) == []


def test_roles_import_only_themselves_and_the_shared_modules() -> None:
    wrong = {
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if (role := _role(module)) is not None
        for target in targets
        if _role(target) != role and target not in SHARED
    }
    assert wrong == set()


def test_the_shared_modules_import_no_role() -> None:
    graph = _graph()
    assert {f"{m} -> {t}" for m in SHARED for t in graph[m] if t not in SHARED} == set()


def test_serving_never_imports_training() -> None:
    # The one exception: a first start with no intent head trains one (`open_engine`, lazily).
    allowed = {"retrieval.engine"}
    leaks = {
        f"{module} -> {target}"
        for module, targets in _graph().items()
        if not module.startswith("retrieval.training") and module not in allowed
        for target in targets
        if target.startswith("retrieval.training")
    }
    assert leaks == set()
