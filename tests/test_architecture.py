"""The dependency direction between the apps (docs/architecture.md, "Apps and dependency
direction"): ``tickets → kefu → kbase | im → org → tenants``, and ``weiyu/`` imports no app
outside its composition root.

Imports are checked by import-linter's contracts (``[tool.importlinter]`` in pyproject.toml, also
run by .ci/run); it sees only ``import`` statements, so references by name are checked here by
reading every module with ``ast``: ``"app.Model"`` strings (``ForeignKey("kefu.Visitor")``,
``apps.get_model("kefu.Visitor")``), ``get_model("kefu", "Visitor")`` and dotted paths given to
``import_string``/``import_module``. Migrations are history and are not checked.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: layer of each app: an app may refer to apps of a lower layer only (same layer: not at all)
LAYERS = {"tenants": 0, "org": 1, "im": 2, "kbase": 2, "kefu": 3, "tickets": 4}
#: weiyu/ modules that put the project together and so may refer to any app
WEIYU_ROOT = {"settings", "urls", "urls_public", "asgi", "routing", "celery"}
#: calls whose string argument names a module
MODULE_LOADERS = {"import_string", "import_module"}
MODEL_REF = re.compile(r"^(?P<app>[a-z_]+)\.[A-Z]\w*$")
MODULE_REF = re.compile(r"^(?P<app>[a-z_]+)(\.\w+)+$")


def _may_refer(source: str, target: str) -> bool:
    """Whether code of ``source`` (an app, or ``weiyu`` for its non-root modules) may name
    ``target`` (an app)."""
    if source == target:
        return True
    if source == "weiyu":
        return False
    return LAYERS[target] < LAYERS[source]


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def references(tree: ast.AST) -> list[tuple[int, str, str]]:
    """``(line, app, what)`` for every app a module's code names in a string, in line order:
    ``"app.Model"`` anywhere, ``get_model("app", "Model")``, ``import_string("app.module.x")``."""
    return sorted(_references(tree))


def _references(tree: ast.AST) -> Iterator[tuple[int, str, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = MODEL_REF.match(node.value)
            if match and match["app"] in LAYERS:
                yield node.lineno, match["app"], repr(node.value)
        elif isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue
            name = _name(node.func)
            if name == "get_model" and len(node.args) >= 2 and first.value in LAYERS:
                yield node.lineno, first.value, ast.unparse(node)
            elif name in MODULE_LOADERS:
                match = MODULE_REF.match(first.value)
                if match and match["app"] in LAYERS:
                    yield node.lineno, match["app"], ast.unparse(node)


def _modules() -> Iterator[tuple[str, Path]]:
    """``(owner, path)`` of every checked module: each app's, and weiyu's outside its root."""
    for owner in [*LAYERS, "weiyu"]:
        for path in sorted((ROOT / owner).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts:
                continue
            if owner == "weiyu" and len(relative.parts) == 2 and path.stem in WEIYU_ROOT:
                continue
            yield owner, path


def upward_references() -> list[str]:
    """Every reference by name against the direction, as ``file:line: what (rule)``."""
    found = []
    for owner, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, app, what in references(tree):
            if not _may_refer(owner, app):
                rule = (
                    "weiyu/ outside its composition root names no app"
                    if owner == "weiyu"
                    else f"{owner} may name only apps below it"
                )
                found.append(f"{path.relative_to(ROOT)}:{line}: {what} ({rule})")
    return found


def test_imports_follow_the_dependency_direction():
    # given the contracts in pyproject.toml, when import-linter checks every import (also those
    # inside functions), then none is broken
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    report = result.stdout + result.stderr
    broken = report[report.find("Broken contracts") :] if "Broken contracts" in report else report
    if result.returncode != 0:
        pytest.fail(f"import-linter found imports against the direction:\n{broken}", pytrace=False)


def test_no_module_names_a_higher_app_in_a_string():
    # when every non-migration module is read, then none names an app it may not import
    found = upward_references()
    if found:
        pytest.fail(
            "references against the dependency direction:\n" + "\n".join(found), pytrace=False
        )


def test_the_string_check_sees_each_kind_of_reference():
    # given code naming kefu in each way the check knows
    source = """
from django.apps import apps
from django.db import models
from django.utils.module_loading import import_string

class Contact(models.Model):
    visitor = models.ForeignKey("kefu.Visitor", on_delete=models.CASCADE)

def load():
    apps.get_model("kefu", "Session")
    return import_string("kefu.services.session_close")
"""
    # when it is read, then every reference is found with its line
    found = [(line, app) for line, app, _what in references(ast.parse(source))]
    assert found == [(7, "kefu"), (10, "kefu"), (11, "kefu")]
    # and the rule tells what may be named from where
    assert _may_refer("tickets", "kefu")
    assert not _may_refer("org", "kefu")
    assert not _may_refer("kbase", "im")
    assert not _may_refer("weiyu", "tenants")
