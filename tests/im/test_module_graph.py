"""The im modules import each other without circles, and no import hides inside a function.

Parsed with ``ast`` (nothing is imported), so a circle shows here even when a function-level
import would let it load. The rules (docs/architecture.md, "Team messaging (im)"): ``im.senders``
at the bottom, then ``im.services.conversations`` ← ``messages`` ← ``groups``, and what a higher
app adds to the send path goes through ``im.hooks``, never a late import. Imports under ``if
TYPE_CHECKING:`` name types only and never run (import-linter ignores them too,
``exclude_type_checking_imports``): ``im.hooks`` names ``MessageDraft`` that way, so they are left
out of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: an import of these packages' modules inside a function hides a dependency
WATCHED = ("kefu", "im", "org", "kbase", "tickets")
#: Django imports models only once the app registry is ready: ``AppConfig.ready`` is where an
#: app connects its receivers, the documented exception.
ALLOWED_FUNCTIONS = {("im.apps", "ready")}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "im").rglob("*.py")):
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


def _graph() -> dict[str, set[str]]:
    modules = _modules()
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


def test_the_module_graph_is_read_whole():
    # given the parsed modules / then the packages and their parts are all there
    graph = _graph()
    assert {
        "im.senders",
        "im.services.messages",
        "im.services.conversations",
        "im.services.receipts",
        "im.services.groups",
    } <= set(graph)
    assert "im.services.conversations" in graph["im.services.messages"]
    assert "im.senders" in graph["im.services.messages"]


def test_the_senders_sit_below_every_service():
    # given the senders module's imports / then it needs no service (only the models)
    graph = _graph()
    assert not {m for m in graph["im.senders"] if m.startswith("im.services")}


def test_no_import_circle_among_im_modules():
    # given every im module's imports, function-level ones included
    graph = _graph()

    # when the circles are looked for
    cycles = _cycles(graph)

    # then there are none
    assert not cycles, "import circles among im modules:\n" + "\n".join(
        " ↔ ".join(c) for c in cycles
    )


def test_no_function_level_import_of_an_app_module():
    # given every import inside a function of an im module
    hidden = []
    for name, path in _modules().items():
        for target, line, function in _imports(name, path):
            if function is None or (name, function) in ALLOWED_FUNCTIONS:
                continue
            if target.split(".")[0] in WATCHED:
                hidden.append(f"{path.relative_to(ROOT)}:{line} in {function}(): {target}")

    # then there is none: a dependency is declared at the top of the module
    assert not hidden, "imports hidden inside functions:\n" + "\n".join(sorted(set(hidden)))
