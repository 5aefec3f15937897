"""The package's shape, checked from its sources: no module uses another module's
private names, no import cycle, and input checks raise the package error."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.portable

ROOT = Path(__file__).resolve().parent.parent / "grok_interp"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every import in the file, lazy ones included."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out += [(mod, a.name, node.lineno) for a in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for mod, item, _ in _imports(name, path):
            if item is not None and f"{mod}.{item}" in MODULES:
                target = f"{mod}.{item}"  # `from pkg import submodule`
            elif mod in MODULES:
                target = mod
            else:
                continue
            if target != name:
                graph[name].add(target)
    return graph


def test_no_module_imports_another_modules_private_names():
    bad = [
        f"{path.relative_to(ROOT.parent)}:{line}: from {mod} import {item}"
        for name, path in MODULES.items()
        for mod, item, line in _imports(name, path)
        if item and item.startswith("_") and f"{mod}.{item}" not in MODULES and mod.startswith("grok_interp")
    ]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_import_graph_has_no_cycle():
    # A package's __init__ re-exports its modules; the modules never import it back.
    graph = _graph()
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_store_knows_no_run_kind():
    graph = _graph()
    below = set()
    todo = ["grok_interp.store"]
    while todo:
        n = todo.pop()
        for m in graph[n]:
            if m not in below:
                below.add(m)
                todo.append(m)
    assert not below & {"grok_interp.runs", "grok_interp.many_runs", "grok_interp.sweeps", "grok_interp.vision",
                        "grok_interp.vision.train", "grok_interp.training", "grok_interp.models"}, below
    assert "grok_interp.vision.train" not in graph["grok_interp.runs"]
    assert "grok_interp.runs" not in graph["grok_interp.vision.train"]


def test_input_checks_raise_the_package_error():
    """No bare ``raise ValueError/TypeError(...)``: every check raises GrokInterpError
    (``bad_value``), which the CLI prints as one line."""
    bad = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and isinstance(node.exc.func, ast.Name):
                if node.exc.func.id in ("ValueError", "TypeError", "KeyError"):
                    bad.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: raise {node.exc.func.id}")
    assert not bad, "use grok_interp._validate.bad_value or grok_interp.errors:\n" + "\n".join(bad)
