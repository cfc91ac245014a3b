"""The package's layout rules: a short top level, and no modules that import each other.

Every ``import`` counts, wherever it stands (module level, inside a function, or under
``TYPE_CHECKING``): a cycle for types only still ties two modules together. The fix is to move
the shared type down, not to hide the import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cocalc_tasks", "airflow_provider", "prefect_tasks")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """The project's modules that ``path`` imports: ``from a.b import c`` is ``a.b.c`` when that
    is a module, else ``a.b``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target in known and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: set(_imports(path, name, known)) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_top_level_holds_at_most_eight_modules() -> None:
    top = sorted(p.name for p in (ROOT / "cocalc_tasks").glob("*.py"))
    assert len(top) <= 8, top


def test_no_two_modules_import_each_other() -> None:
    graph = _graph()
    pairs = sorted(
        (a, b) for a, targets in graph.items() for b in targets if a < b and a in graph[b]
    )
    assert pairs == []


def test_no_import_cycles_of_any_length() -> None:
    assert _cycles(_graph()) == []


def test_the_checker_sees_a_cycle_and_a_type_only_import(tmp_path: Path) -> None:
    """The rules above can fail: a cycle through a ``TYPE_CHECKING`` import is found."""
    known = {"pkg.a": Path("a.py"), "pkg.b": Path("b.py"), "pkg": Path("__init__.py")}
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n"
    a = tmp_path / "a.py"
    a.write_text(source)
    assert list(_imports(a, "pkg.a", known)) == ["pkg.b"]
    assert _cycles({"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}) == [
        ["pkg.a", "pkg.b", "pkg.c"]
    ]


def test_each_server_folder_holds_one_concern() -> None:
    """The folders the guide names exist, and no process-starting module is left loose."""
    server = ROOT / "cocalc_tasks" / "server"
    folders = {p.name for p in server.iterdir() if (p / "__init__.py").exists()}
    assert {"http", "jupyter", "exec", "processes", "sandbox", "storage"} <= folders
    loose = {p.stem for p in server.glob("*.py")}
    assert not loose & {"kernel", "runner", "spawner", "area_spawners", "zygote", "forkserver"}
