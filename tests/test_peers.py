"""benchmarks/peers: the pure parts of the nn-Meter comparison (no nn-Meter needed)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"peers_{name}", PEERS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_nnmeter_script_imports_without_nn_meter() -> None:
    before = {m for m in sys.modules if m.startswith("nn_meter")}
    mod = load("nnmeter")
    assert {m for m in sys.modules if m.startswith("nn_meter")} == before
    numbers = [s.number for s in mod.SHIMS]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert len({s.key for s in mod.SHIMS}) == len(mod.SHIMS)
    assert all(s.where in ("build", "predict") and len(s.reason) > 40 for s in mod.SHIMS)


def test_fit_scale_recovers_a_proportional_law() -> None:
    cmp = load("compare")
    flops = [1e9, 2e9, 5e9]
    measured = [3e-9 * f for f in flops]
    assert cmp.fit_scale(flops, measured) == pytest.approx(3e-9)


def test_flops_baseline_leave_one_out_never_sees_its_own_measurement() -> None:
    cmp = load("compare")
    flops = [1.0, 2.0, 4.0]
    measured = [1.0, 2.0, 100.0]  # the last network is off the law
    est, how = cmp.flops_baseline(flops, measured, None)
    assert "leave-one-out" in how
    assert est[2] == pytest.approx(4.0)  # fitted on the first two only (scale 1)
    assert est[0] != pytest.approx(1.0)  # its fit includes the outlier


def test_flops_baseline_with_calibration_uses_one_scale() -> None:
    cmp = load("compare")
    est, how = cmp.flops_baseline([1.0, 3.0], [9.0, 9.0], ([2.0, 4.0], [4.0, 8.0]))
    assert est == pytest.approx([2.0, 6.0])
    assert "2 calibration networks" in how


def test_resolve_rejects_what_it_cannot_compare(tmp_path: Path) -> None:
    cmp = load("compare")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for p in (tmp_path / "a" / "net.onnx", tmp_path / "b" / "net.onnx", tmp_path / "x.txt"):
        p.write_bytes(b"")
    with pytest.raises(SystemExit, match="share a name"):
        cmp.resolve([str(tmp_path / "a" / "net.onnx"), str(tmp_path / "b" / "net.onnx")], None, tmp_path)
    with pytest.raises(SystemExit, match="not ONNX"):
        cmp.resolve([str(tmp_path / "x.txt")], None, tmp_path)
    with pytest.raises(SystemExit, match="not found"):
        cmp.resolve([str(tmp_path / "missing.onnx")], None, tmp_path)
    with pytest.raises(SystemExit, match="unknown set"):
        cmp.set_specs("imagenet")


def test_nb201_set_is_deterministic() -> None:
    cmp = load("compare")
    a, b = cmp.set_specs("nb201-4"), cmp.set_specs("nb201-4")
    assert a == b and len(set(a)) == 4 and all(s.startswith("nb201:") for s in a)


def test_dropped_summary_counts_ops() -> None:
    cmp = load("compare")
    dropped = [{"op": "mul"}, {"op": "mul"}, {"op": "reshape"}]
    assert cmp.dropped_summary(dropped) == "3 (mul x2, reshape)"
    assert cmp.dropped_summary([]) == "0"
