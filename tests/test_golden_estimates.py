"""Every shipped bundle, every kind it has, on a fixed set of graphs: the estimates of the current code equal
the stored ones (tests/data/golden_estimates.json, written by scripts/golden_estimates.py --write) to a
relative 1e-9, totals and per-layer times, executed-layer names and types."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("golden_estimates", ROOT / "scripts" / "golden_estimates.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_golden_estimates_unchanged() -> None:
    script = _script()
    stored = json.loads(script.GOLDEN.read_text())
    assert stored["schema_version"] == script.SCHEMA_VERSION
    assert {p.stem for p in script.bundles()} == set(stored["estimates"])  # a new bundle: rewrite the file
    found = list(script.differences(stored, rel=1e-9))
    assert not found, f"{len(found)} difference(s), first: " + "\n".join(found[:20])


def test_golden_graphs_are_the_scripts() -> None:
    """The stored graphs are the ones the script builds now (else --write would estimate other graphs)."""
    script = _script()
    assert json.loads(script.GOLDEN.read_text())["graphs"] == script.graph_specs()
