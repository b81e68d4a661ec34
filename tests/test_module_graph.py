"""Inside each app, modules import each other without circles, and no import hides inside a
function to dodge one (docs/architecture.md, "Apps and dependency direction"; the direction
*between* apps is tests/test_architecture.py's).

Parsed with ``ast`` (nothing is imported), so a circle shows here even when a function-level
import would let it load. Pure helpers (``im.senders``, ``kefu.senders``) sit at the bottom of an
app, services on top of them; what a lower module must trigger goes through a hook or signal it
owns (``im.hooks``, ``org.signals``), never a late import. ``AppConfig.ready`` is the one place
that imports late: Django loads models only once the app registry is ready. Imports under ``if
TYPE_CHECKING:`` name types only and never run (import-linter ignores them too), so they are left
out of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: an import of these packages' modules inside a function hides a dependency
WATCHED = ("tenants", "org", "im", "kbase", "kefu", "tickets")
APPS = ("tenants", "org", "im", "kbase", "kefu", "tickets")


def _modules(app: str) -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / app).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if path.name != "__init__.py":
        package.pop()
    package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def _type_checking_only(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) without an ``else``."""
    if not isinstance(node, ast.If) or node.orelse:
        return False
    test = node.test
    name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
    return name == "TYPE_CHECKING"


def _imports(module: str, path: Path) -> list[tuple[str, int, str | None]]:
    """``(imported module or name, line, enclosing function or None)`` of every import."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[str, int, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, function or child.name)
                continue
            if _type_checking_only(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, path, child)
                found.append((base, child.lineno, function))
                found.extend((f"{base}.{a.name}", child.lineno, function) for a in child.names)
            visit(child, function)

    visit(tree, None)
    return found


def _graph(app: str) -> dict[str, set[str]]:
    modules = _modules(app)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _line, _function in _imports(name, path):
            # "from im.services import messages" loads im.services and im.services.messages
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


@pytest.mark.parametrize("app", APPS)
def test_no_import_circle_among_an_apps_modules(app):
    # given every module's imports, function-level ones included
    graph = _graph(app)

    # when the circles are looked for
    cycles = _cycles(graph)

    # then there are none
    assert not cycles, f"import circles among {app} modules:\n" + "\n".join(
        " ↔ ".join(c) for c in cycles
    )


@pytest.mark.parametrize("app", APPS)
def test_no_function_level_import_of_an_app_module(app):
    # given every import inside a function of the app's modules
    hidden = []
    for name, path in _modules(app).items():
        for target, line, function in _imports(name, path):
            if function is None or (name, function) == (f"{app}.apps", "ready"):
                continue
            if target.split(".")[0] in WATCHED:
                hidden.append(f"{path.relative_to(ROOT)}:{line} in {function}(): {target}")

    # then there is none: a dependency is declared at the top of the module
    assert not hidden, "imports hidden inside functions:\n" + "\n".join(sorted(set(hidden)))


def test_the_module_graphs_are_read_whole():
    # given the parsed modules / then the packages and their parts are all there
    im, kefu, tickets = _graph("im"), _graph("kefu"), _graph("tickets")
    assert {
        "im.senders",
        "im.services.drafts",
        "im.services.messages",
        "im.services.groups",
    } <= set(im)
    assert {"kefu.services.messages", "kefu.services.routing", "kefu.robot.answers"} <= set(kefu)
    assert {"tickets.services.sla", "tickets.services.comments"} <= set(tickets)
    assert "im.services.conversations" in im["im.services.messages"]
    assert "kefu.services.routing" in kefu["kefu.services.messages"]


def test_the_senders_sit_below_every_service():
    # given the senders modules' imports / then they need no service
    for app in ("im", "kefu"):
        graph = _graph(app)
        assert not {m for m in graph[f"{app}.senders"] if ".services" in m}
