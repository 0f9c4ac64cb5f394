"""Bad ONNX files: bounded cost (nothing allocated to learn a shape), named errors, external data refused."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from annette.errors import ModelFileError, ShapeError
from annette.importers.onnx import graph_from_onnx, load_onnx

I64 = TensorProto.INT64


def value_sized(op: str, n: int) -> onnx.ModelProto:
    """A ~250-byte model: ``op`` makes a tensor of ``n`` int64 elements from constants, then an Add (which
    onnx's data propagation would materialise, ~145 bytes per element)."""
    inits = [numpy_helper.from_array(np.array([n], np.int64), "n"), numpy_helper.from_array(np.array(0, np.int64), "zero"),
             numpy_helper.from_array(np.array(n - 1, np.int64), "nm1"), numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.array([1], np.int64), "one1")]
    first = {
        "ConstantOfShape": helper.make_node("ConstantOfShape", ["n"], ["z"], value=helper.make_tensor("v", I64, [1], [1])),
        "Range": helper.make_node("Range", ["zero", "limit", "one"], ["z"]),
        "Expand": helper.make_node("Expand", ["one1", "n"], ["z"]),
        "Tile": helper.make_node("Tile", ["one1", "n"], ["z"]),
    }[op]
    nodes = [helper.make_node("Add", ["nm1", "one"], ["limit"]), first, helper.make_node("Add", ["z", "z"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [], [helper.make_tensor_value_info("y", I64, [n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op", ["ConstantOfShape", "Range", "Expand", "Tile"])
def test_value_sized_constants_are_bounded(op: str) -> None:
    """Before: N = 2e7 took 2.9 GB and 4.2 s in shape inference with data propagation; 7.5e8 over 16 GB."""
    for n in (20_000_000, 750_000_000):
        model = value_sized(op, n)
        assert len(model.SerializeToString()) < 300
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        with pytest.raises(ShapeError, match=rf"{op}.*would create a constant of {n:,} elements"):
            graph_from_onnx(model)
        assert time.perf_counter() - t0 < 5.0
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: < 200 MB more
    g = graph_from_onnx(value_sized(op, 1000))  # a small one still folds and imports
    assert g.layers[-1].outputs[0].shape == (1000,)


def test_initializer_whose_dims_disagree_with_its_data(make_onnx) -> None:  # type: ignore[no-untyped-def]
    model = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [("x", [1, 8])], [("y", [1, 8])],
                      {"w": np.ones((1, 8), np.float32)})
    w = model.graph.initializer[0]
    del w.dims[:]
    w.dims.extend([100_000, 100_000])  # 4e10 bytes declared, 32 held: hidden from the checker (large)
    with pytest.raises(ModelFileError, match=r"initializer 'w' declares dims \[100000, 100000\].*holds 32 bytes"):
        graph_from_onnx(model)
    typed = make_onnx([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [("x", [1, 8])], [("y", [1, 8])])
    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 8], [1.0] * 8)
    del w.float_data[3:]
    typed.graph.initializer.append(w)
    with pytest.raises(ModelFileError, match=r"initializer 'w' declares dims \[1, 8\] \(8 elements\) but holds 3"):
        graph_from_onnx(typed)


def test_runtime_fallback_never_allocates_the_declared_input(make_onnx) -> None:  # type: ignore[no-untyped-def]
    """NonZero's output size is data-dependent, so its shape is learned from an ONNX Runtime run on zero inputs:
    with a declared 1x3x100000x100000 input, that was a 120 GB np.zeros."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 100_000, 100_000])
    y = helper.make_tensor_value_info("y", I64, [4, "n"])
    graph = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"], name="nz")], "big", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ShapeError, match="would allocate too much"):
        graph_from_onnx(model)
    small = helper.make_model(helper.make_graph(graph.node, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    assert graph_from_onnx(small).layers[0].outputs[0].shape == (4, 0)  # zeros: no non-zero element


def test_input_messages_name_the_problem(make_onnx) -> None:  # type: ignore[no-untyped-def]
    relu = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    zero = make_onnx(relu, [("x", [1, 0, 4])], [("y", [1, 0, 4])])
    with pytest.raises(ShapeError, match=r"'x' declares shape \[1, 0, 4\]: dimensions must be positive") as info:
        graph_from_onnx(zero)
    assert "symbolic" not in str(info.value)
    no_shape = make_onnx(relu, [("x", [1, 2])], [("y", [1, 2])])
    no_shape.graph.input[0].type.tensor_type.ClearField("shape")
    with pytest.raises(ShapeError, match=r"graph input 'x' has no shape; set it with --input-shape x="):
        graph_from_onnx(no_shape)
    assert graph_from_onnx(no_shape, input_shapes={"x": (1, 2)}).inputs[0].shape == (1, 2)
    sym = make_onnx(relu, [("x", [1, "C", 8])], [("y", [1, "C", 8])])
    with pytest.raises(ShapeError, match="up to 2147483647"):
        graph_from_onnx(sym, input_shapes={"x": (1, 3, 99999999999999999999)})
    huge = make_onnx(relu, [("x", [1, 3, 2**40, 8])], [("y", [1, 3, 2**40, 8])])
    with pytest.raises(ShapeError, match="too large"):
        graph_from_onnx(huge)
    out_no_shape = make_onnx(relu, [("x", [1, 2])], [("y", [1, 2])])
    out_no_shape.graph.output[0].type.tensor_type.ClearField("shape")
    with pytest.raises(ModelFileError, match="graph output 'y' declares no shape"):
        graph_from_onnx(out_no_shape)


def test_memory_error_is_a_named_error(make_onnx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import annette.importers.onnx as onnx_importer

    def boom(*args: object, **kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr(onnx_importer, "_graph_from_onnx", boom)
    with pytest.raises(ModelFileError, match="out of memory"):
        graph_from_onnx(make_onnx([helper.make_node("Relu", ["x"], ["y"])], [("x", [1, 2])], [("y", [1, 2])]))


# -- external data: onnx's own checks, relied on (pyproject pins onnx to a range where this holds) ----------------
def _external_model(tmp_path: Path, location: str) -> Path:
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(64 * 64 * 4))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "ext",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w])
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def test_external_data_is_read_only_from_beside_the_model(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(64 * 64, 7, np.float32).tobytes())
    ok = _external_model(tmp_path, "weights.bin")
    (ok.parent / "weights.bin").write_bytes(np.ones(64 * 64, np.float32).tobytes())
    assert graph_from_onnx(ok).layers[0].weights[0].shape == (64, 64)
    for location in ("../secret.bin", str(secret)):  # path traversal, absolute path
        with pytest.raises(ModelFileError, match="not a readable ONNX model"):
            load_onnx(_external_model(tmp_path, location))
    link = _external_model(tmp_path, "link.bin")
    os.symlink(secret, link.parent / "link.bin")
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        load_onnx(link)


def test_onnx_pin_is_where_the_external_data_checks_were_verified() -> None:
    """pyproject.toml pins onnx to the range whose external-data checks the test above verifies."""
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"onnx>=1.23,<1.24"' in text
    version = tuple(int(x) for x in onnx.__version__.split(".")[:2])
    assert (1, 23) <= version < (1, 24)


def test_huge_constant_in_a_child_with_a_memory_limit(tmp_path: Path) -> None:
    """The whole import of the 750M-element case stays under 1 GB of address space growth."""
    path = tmp_path / "tiny.onnx"
    path.write_bytes(value_sized("ConstantOfShape", 750_000_000).SerializeToString())
    code = (
        "import resource,sys\n"
        "from annette.importers.onnx import graph_from_onnx\n"
        "from annette.errors import ShapeError\n"
        "graph_from_onnx  # imported first: the limit is on what the import of the model adds\n"
        "soft = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 + 2**30\n"
        "resource.setrlimit(resource.RLIMIT_DATA, (soft, soft))\n"
        "try:\n    graph_from_onnx(sys.argv[1])\nexcept ShapeError as e:\n    print('ShapeError', e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("ShapeError"), res.stdout + res.stderr


def test_found_by_the_fuzzer(make_onnx) -> None:  # type: ignore[no-untyped-def]
    relu = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    future = make_onnx(relu, [("x", [1, 2])], [("y", [1, 2])])
    future.opset_import[0].version = 99
    with pytest.raises(ModelFileError, match="imports opset 99"):
        graph_from_onnx(future)
    odd = make_onnx(relu, [("x", [1, 2])], [("y", [1, 2])])
    odd.graph.input[0].type.tensor_type.elem_type = 99
    with pytest.raises(ModelFileError, match="unknown element type 99"):
        graph_from_onnx(odd)
