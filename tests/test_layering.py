"""The import graph: shared contracts at the bottom, backends that only run.

Every module under ``src/annette`` is parsed (``ast``, nothing is imported); the bottom floor (records, stats,
graph, registry, errors) and the backends must import nothing from the floors above them (the bench engine,
the importers, fitting, estimation, the CLI), neither at the top of a module nor inside a function, and
neither directly nor through another annette module they import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LOW = ("annette.backends", "annette.records", "annette.stats", "annette.graph", "annette.registry", "annette.errors")
HIGH = ("annette.bench", "annette.importers", "annette.fit", "annette.estimate", "annette.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every module name ``path`` imports, anywhere in it (``from a import b`` gives ``a`` and ``a.b``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    """annette module -> the annette modules it imports (a submodule's import runs its packages too)."""
    files = {_module_name(p): p for p in sorted((SRC / "annette").rglob("*.py"))}
    out: dict[str, set[str]] = {}
    for module, path in files.items():
        reached: set[str] = set()
        for name in _imports(path, module):
            parts = name.split(".")
            reached.update(m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in files)
        out[module] = reached - {module}
    return out


def test_the_parser_sees_function_local_and_relative_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef g():\n    from annette.bench.runner import measure\n    from . import x\n")
    assert {"os", "annette.bench.runner", "annette.bench.runner.measure", "pkg", "pkg.x"} <= _imports(f, "pkg.m")


def test_low_modules_import_nothing_from_above(graph: dict[str, set[str]]) -> None:
    low = [m for m in graph if _within(m, LOW)]
    bad = {m: sorted(n for n in graph[m] if _within(n, HIGH)) for m in low}
    assert not {m: v for m, v in bad.items() if v}, "low modules import from above"
    assert {"annette.backends.base", "annette.records", "annette.stats", "annette.graph.ir"} <= set(low)


def test_low_modules_reach_nothing_above_through_others(graph: dict[str, set[str]]) -> None:
    for start in (m for m in graph if _within(m, LOW)):
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                assert not _within(nxt, HIGH), f"{start} reaches {nxt} (through annette modules it imports)"
                seen.add(nxt)
                todo.append(nxt)
