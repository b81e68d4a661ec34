"""The tickets app's modules import each other one way: no import circle, and no import hidden
inside a function to dodge one (only ``AppConfig.ready`` imports late, as Django requires)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("tickets", "kefu", "im", "org", "kbase", "tenants", "weiyu")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "tickets").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(tree: ast.AST, known: set[str]) -> set[str]:
    """The tickets modules a module imports (``from tickets.services import comments`` counts as
    ``tickets.services.comments``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def test_no_import_circle_between_tickets_modules():
    modules = _modules()
    graph = {
        name: _imports(ast.parse(path.read_text()), set(modules)) - {name}
        for name, path in modules.items()
    }
    circles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == []


def test_no_app_import_inside_a_function():
    hidden = []
    for name, path in _modules().items():
        for func in ast.walk(ast.parse(path.read_text())):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if name == "tickets.apps" and func.name == "ready":
                continue
            for node in ast.walk(func):
                target = (
                    node.module
                    if isinstance(node, ast.ImportFrom)
                    else node.names[0].name
                    if isinstance(node, ast.Import)
                    else None
                )
                if target and target.split(".")[0] in APPS:
                    hidden.append(f"{path.relative_to(ROOT)}:{node.lineno} {target}")
    assert hidden == []
