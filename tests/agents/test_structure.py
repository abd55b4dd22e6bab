"""The agents app's shape: imports point one way, and production code knows nothing of tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("agents", "project")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(app: str) -> list[Path]:
    return sorted(path for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every module of `known` this file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        found |= {name for name in names if name in known}
    return found


def import_graph(app: str) -> dict[str, set[str]]:
    files = {module_name(path): path for path in source_files(app)}
    return {name: imported_modules(path, set(files)) - {name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            found.append([*trail[trail.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return found


def test_the_agents_app_has_no_import_cycle_not_even_through_an_import_inside_a_function():
    assert cycles(import_graph("agents")) == []


def test_no_module_of_the_app_imports_the_celery_tasks_they_call_services():
    graph = import_graph("agents")
    importers = {name for name, imported in graph.items() if "agents.tasks" in imported}
    assert importers == set()


def test_production_code_never_branches_on_a_tests_transaction_or_an_eager_celery_call():
    shaped_for_tests = re.compile(r"in_atomic_block|is_eager|_from_testcase|ALWAYS_EAGER", re.IGNORECASE)
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for app in APPS
        for path in source_files(app)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if shaped_for_tests.search(line)
    ]
    assert hits == []
