"""The import graph of the project's packages: layered, and free of cycles at import time.

Imports are read with `ast` (nothing is executed), lazy ones inside functions included. Layering
(docs/STYLE.md, "nothing reaches back"): umed_common imports none of our packages; drr and
data_manifests only umed_common; model drr and umed_common; benchmark all of those; demo, on top,
all of them (and nothing imports demo).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "umed_common": {"umed_common"},
    "drr": {"drr", "umed_common"},
    "data_manifests": {"data_manifests", "umed_common"},
    "model": {"model", "drr", "umed_common"},
    "benchmark": {"benchmark", "model", "drr", "umed_common", "data_manifests"},
    "demo": {"demo", "benchmark", "model", "drr", "umed_common", "data_manifests"},
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of our packages (pkg/__init__.py is `pkg`)."""
    modules = {}
    for package in ALLOWED:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that `name` is or lies in; None for a module not ours."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported module of ours, at import time?) for every import statement of one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    lazy = {id(node) for func in ast.walk(tree) if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef))
            for node in ast.walk(func) if isinstance(node, (ast.Import, ast.ImportFrom))}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module:
                found.append((resolved, id(node) not in lazy))
    return found


def import_graph(import_time_only: bool) -> dict[str, set[str]]:
    modules = module_files()
    known = set(modules)
    return {module: {target for target, eager in imports_of(module, path, known) if eager or not import_time_only}
            for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}   # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_sees_relative_absolute_and_lazy_imports():
    graph = import_graph(import_time_only=False)
    assert "umed_common.errors" in graph["model.finetune"]          # absolute
    assert "model.config" in graph["model.finetune"]                # relative
    assert "model.api" in graph["benchmark.single_view"]            # `from model import api`, inside a function
    assert "model.api" not in import_graph(import_time_only=True)["benchmark.single_view"]
    assert "demo.report" in graph["demo.cli"] and "demo.phantoms" in graph["demo.report"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_the_layers_below(package):
    graph = import_graph(import_time_only=False)
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items()
                    if module.split(".")[0] == package
                    for target in targets if target.split(".")[0] not in ALLOWED[package])
    assert not upward, f"{package} imports a package it must not: {upward}"


def test_no_import_cycle_between_modules_at_import_time():
    cycle = find_cycle(import_graph(import_time_only=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
