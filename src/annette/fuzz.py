"""A seeded mutation fuzzer of annette's input paths, run in crash-isolated, memory-limited child processes.

Used by the test suite (a bounded run: ``tests/test_fuzz.py``) and by ``benchmarks/fuzz_inputs.py`` (thousands
of mutants, counts by outcome). Seeds are small valid inputs: ONNX models (convolutions, a MatMul, shape
computations, a ConstantOfShape, pools, a Concat) and a hardware-model bundle holding every layer-model kind
(LightGBM texts included). Mutants are structure-aware (protobuf fields, JSON values, LightGBM tokens: dims,
types, names, attributes, numbers) and byte-level (flips, cuts, insertions).

Each case runs in a child process (``python -m annette.fuzz --child``) under ``RLIMIT_AS`` (its address space
after imports + ``mem_limit_bytes``): ONNX mutants are imported, accounted and estimated on a shipped bundle;
bundle mutants are loaded and used for an estimate with every kind they hold. Outcomes:

- ``ok``: a result; ``annette:<Error>``: an annette error (both are what bad input may give);
- ``exception:<Type>``: any other exception (a defect); ``crash``: the child died (a signal: a defect);
  ``timeout``: no answer within ``timeout_s`` (a defect).

The child reports each case's peak resident memory (VmHWM, reset before the case through
``/proc/self/clear_refs``).
"""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import random
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

GOOD = ("ok", "annette")

# -- seeds ------------------------------------------------------------------------------------------------------


def seed_models() -> list[bytes]:
    """Small valid ONNX models, serialized."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    F, I64 = TensorProto.FLOAT, TensorProto.INT64
    rng = np.random.default_rng(0)

    def model(nodes: list[Any], inputs: list[Any], outputs: list[Any], inits: list[Any], opset: int = 17) -> bytes:
        g = helper.make_graph(nodes, "seed", inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        onnx.checker.check_model(m)
        return bytes(m.SerializeToString())

    def w(name: str, *shape: int) -> Any:
        return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)

    def i64(name: str, values: list[int]) -> Any:
        return numpy_helper.from_array(np.array(values, np.int64), name)

    x = helper.make_tensor_value_info("x", F, [1, 3, 8, 8])
    seeds = [
        model([helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["c"], ["r"], name="relu"),
               helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2])],
              [x], [helper.make_tensor_value_info("y", F, [1, 4, 4, 4])], [w("w", 4, 3, 3, 3), w("b", 4)]),
        model([helper.make_node("Conv", ["x", "w"], ["c"], name="dw", group=3, kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="bn"),
               helper.make_node("Add", ["n", "x"], ["y"], name="add")],
              [x], [helper.make_tensor_value_info("y", F, [1, 3, 8, 8])],
              [w("w", 3, 1, 3, 3), w("s", 3), w("bb", 3), w("m", 3),
               numpy_helper.from_array(np.ones(3, np.float32), "v")]),
        model([helper.make_node("Shape", ["x"], ["s"], name="shape"),
               helper.make_node("Gather", ["s", "zero"], ["n"], name="gather", axis=0),
               helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
               helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
               helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
               helper.make_node("MatMul", ["flat", "w"], ["mm"], name="mm"),
               helper.make_node("Softmax", ["mm"], ["y"], name="softmax", axis=-1)],
              [x], [helper.make_tensor_value_info("y", F, [1, 10])],
              [i64("zero", [0]), i64("ax", [0]), i64("minus1", [-1]), w("w", 192, 10)]),
        model([helper.make_node("ConstantOfShape", ["shape"], ["z"], name="cos",
                                value=helper.make_tensor("v", F, [1], [1.0])),
               helper.make_node("Mul", ["x", "z"], ["m"], name="mul"),
               helper.make_node("GlobalAveragePool", ["m"], ["g"], name="gap"),
               helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
               helper.make_node("Gemm", ["f", "w", "b"], ["y"], name="fc", transB=1)],
              [x], [helper.make_tensor_value_info("y", F, [1, 5])], [i64("shape", [1, 3, 8, 8]), w("w", 5, 3), w("b", 5)]),
        model([helper.make_node("Split", ["x", "sp"], ["a", "b"], name="split", axis=1),
               helper.make_node("Sigmoid", ["a"], ["sa"], name="sig"),
               helper.make_node("Concat", ["sa", "b"], ["c"], name="cat", axis=1),
               helper.make_node("Transpose", ["c"], ["t"], name="tr", perm=[0, 2, 3, 1]),
               helper.make_node("Slice", ["t", "st", "en", "axs"], ["y"], name="slice")],
              [x], [helper.make_tensor_value_info("y", F, [1, 4, 8, 3])],
              [i64("sp", [1, 2]), i64("st", [0]), i64("en", [4]), i64("axs", [1])]),
        model([helper.make_node("Range", ["r0", "r1", "r2"], ["r"], name="range"),
               helper.make_node("Cast", ["r"], ["rf"], name="cast", to=F),
               helper.make_node("Add", ["x", "rf"], ["y"], name="add")],
              [x], [helper.make_tensor_value_info("y", F, [1, 3, 8, 8])],
              [numpy_helper.from_array(np.array(0, np.int64), "r0"), numpy_helper.from_array(np.array(8, np.int64), "r1"),
               numpy_helper.from_array(np.array(1, np.int64), "r2")]),
    ]
    del I64
    return seeds


def seed_bundle() -> dict[str, Any]:
    """A small valid bundle: the shipped ``annette-dnndk`` (roofline, refined) plus statistical and mixed
    models (LightGBM texts) for Conv, fitted on random rows."""
    import numpy as np

    from annette.hardware import SHIPPED
    from annette.layers import LAYER_MODELS
    from annette.layers.features import Features

    doc: dict[str, Any] = json.loads(SHIPPED.get("annette-dnndk").read_text())
    names = tuple(doc["features"]["names"])
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 1e6, size=(60, len(names)))
    y = 1e-6 * X[:, 0] + 0.01
    for kind, params in (("statistical", {"n_estimators": 8, "num_leaves": 7}), ("mixed", {"n_estimators": 8, "num_leaves": 7})):
        model = LAYER_MODELS.get(kind)(**params).fit(Features(names, X), y)
        doc["layer_models"]["Conv"][kind] = model.to_dict()
    return doc


# -- mutation ---------------------------------------------------------------------------------------------------
INTERESTING_INTS = (0, -1, 1, 2, 3, 7, 255, 2**31 - 1, 2**31, 2**40, 10**9, 7 * 10**8, -(2**31), 2**62)
INTERESTING_VALUES: tuple[Any, ...] = (
    0, -1, 1, -0.5, 1e308, -1e308, float("nan"), float("inf"), float("-inf"), 2**63, "", "x", "1", None, True,
    [], {}, [1], {"a": 1}, "tree", 5,
)


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.randrange(4)
    if op == 0 and b:  # flip bytes
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 1 and b:  # cut
        cut = rng.randrange(len(b))
        b = b[:cut] if rng.random() < 0.5 else b[:cut] + b[cut + rng.randint(1, 16):]
    elif op == 2:  # insert
        pos = rng.randrange(len(b) + 1)
        b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:  # duplicate a slice
        if b:
            i = rng.randrange(len(b))
            j = min(len(b), i + rng.randint(1, 64))
            b[i:i] = b[i:j]
    return bytes(b)


def _mutate_onnx(data: bytes, rng: random.Random) -> bytes:
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.ParseFromString(data)
    g = m.graph
    tensors = [*(vi.name for vi in g.input), *(t.name for t in g.initializer), *(o for n in g.node for o in n.output)]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(12)
        if op == 0 and g.input:  # a graph input's dims
            dims = rng.choice(list(g.input)).type.tensor_type.shape.dim
            if dims:
                d = rng.choice(list(dims))
                if rng.random() < 0.2:
                    d.dim_param = "N"
                else:
                    d.dim_value = rng.choice(INTERESTING_INTS)
        elif op == 1 and g.initializer:  # an initializer's declared dims
            t = rng.choice(list(g.initializer))
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = rng.choice(INTERESTING_INTS)
            else:
                t.dims.append(rng.choice(INTERESTING_INTS))
        elif op == 2 and g.initializer:  # an initializer's values (int64: shape operands)
            t = rng.choice(list(g.initializer))
            if t.raw_data and t.data_type == onnx.TensorProto.INT64:
                import numpy as np

                arr = np.frombuffer(t.raw_data, np.int64).copy()
                if arr.size:
                    arr[rng.randrange(arr.size)] = rng.choice(INTERESTING_INTS)
                t.raw_data = arr.tobytes()
            elif t.raw_data:
                raw = bytearray(t.raw_data)
                raw[rng.randrange(len(raw))] = rng.randrange(256)
                t.raw_data = bytes(raw)
            else:
                t.data_type = rng.choice([1, 6, 7, 9, 10, 11, 16, 14, 8])
        elif op == 3 and g.node:  # an attribute's values
            node = rng.choice(list(g.node))
            if node.attribute:
                a = rng.choice(list(node.attribute))
                if a.ints:
                    a.ints[rng.randrange(len(a.ints))] = rng.choice(INTERESTING_INTS)
                elif a.type == onnx.AttributeProto.INT:
                    a.i = rng.choice(INTERESTING_INTS)
                elif a.type == onnx.AttributeProto.FLOAT:
                    a.f = rng.choice([0.0, -1.0, float("nan"), 1e30])
                elif a.type == onnx.AttributeProto.TENSOR:
                    a.t.dims.append(rng.choice(INTERESTING_INTS))
            else:
                node.attribute.append(helper.make_attribute(rng.choice(["axis", "group", "perm", "kernel_shape"]),
                                                            rng.choice([0, -5, [0, 9], [1, 1]])))
        elif op == 4 and g.node:  # an op type
            rng.choice(list(g.node)).op_type = rng.choice(
                ["Relu", "Conv", "MatMul", "Reshape", "ConstantOfShape", "Expand", "Tile", "Range", "Concat", "Gather",
                 "NonZero", "Resize", "Pad", "Loop", "Nope", "Transpose", "Split", "TopK", "Einsum", "OneHot"])
        elif op == 5 and g.node and tensors:  # rewire an input (dangling, cycles, double use)
            node = rng.choice(list(g.node))
            if node.input:
                node.input[rng.randrange(len(node.input))] = rng.choice([*tensors, "ghost", ""])
        elif op == 6 and g.node:  # drop or duplicate a node
            i = rng.randrange(len(g.node))
            if rng.random() < 0.5:
                del g.node[i]
            else:
                g.node.append(copy.deepcopy(g.node[i]))
        elif op == 7 and g.output:  # an output's declared shape
            dims = g.output[0].type.tensor_type.shape.dim
            if dims and rng.random() < 0.7:
                dims[rng.randrange(len(dims))].dim_value = rng.choice(INTERESTING_INTS)
            else:
                g.output[0].type.tensor_type.ClearField("shape")
        elif op == 8:  # the opset
            m.opset_import[0].version = rng.choice([1, 7, 10, 11, 13, 17, 21, 99])
        elif op == 9 and g.node:  # a value-sized op on a constant
            import numpy as np
            from onnx import numpy_helper

            n = rng.choice([10, 10**6, 2 * 10**7, 7 * 10**8, 2**40])
            g.initializer.append(numpy_helper.from_array(np.array([n], np.int64), f"fz{len(g.initializer)}"))
            g.node.insert(0, helper.make_node(rng.choice(["ConstantOfShape", "Expand", "Tile"]),
                                              [g.initializer[-1].name] * (1 if rng.random() < 0.5 else 2), ["fz_out"]))
        elif op == 10 and g.input:  # an input's element type
            rng.choice(list(g.input)).type.tensor_type.elem_type = rng.choice([0, 1, 7, 9, 10, 14, 16, 8, 99])
        else:  # names
            if g.node:
                rng.choice(list(g.node)).name = rng.choice(["", "dup", g.node[0].name, "x" * 300])
    out = bytes(m.SerializeToString())
    return _mutate_bytes(out, rng) if rng.random() < 0.15 else out


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list) and obj:
        for i in {0, len(obj) - 1}:
            yield from _paths(obj[i], (*prefix, i))


def _mutate_lgbm(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    op = rng.randrange(6)
    if op == 0:
        return text[: rng.randrange(len(text))]
    i = rng.randrange(len(lines))
    if op == 1:
        del lines[i]
    elif op == 2:
        lines.insert(i, lines[rng.randrange(len(lines))])
    elif op == 3 and "=" in lines[i]:
        key, _, value = lines[i].partition("=")
        tokens = value.split(" ")
        j = rng.randrange(len(tokens))
        tokens[j] = str(rng.choice([*INTERESTING_INTS, "1.5", "nan", "1e999", "-", ""]))
        lines[i] = key + "=" + " ".join(tokens)
    elif op == 4 and "=" in lines[i]:
        key, _, value = lines[i].partition("=")
        tokens = value.split(" ")
        if len(tokens) > 1:
            del tokens[rng.randrange(len(tokens))]
        lines[i] = key + "=" + " ".join(tokens)
    else:
        return text.replace(rng.choice(["left_child=", "right_child=", "split_feature="]),
                            rng.choice(["left_child=", "right_child=", "split_feature="]), 1)
    return "\n".join(lines)


def _mutate_bundle(doc: dict[str, Any], rng: random.Random) -> str:
    d = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        paths = [p for p in _paths(d) if p]
        path = rng.choice(paths)
        parent: Any = d
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        value = parent[key]
        r = rng.random()
        if isinstance(value, str) and value.startswith("tree") and r < 0.8:
            parent[key] = _mutate_lgbm(value, rng)
        elif isinstance(parent, dict) and r < 0.15:
            del parent[key]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and r < 0.6:
            parent[key] = rng.choice([-value, value * 1e6, 0, float("nan"), float("inf"), -1, value + 1])
        else:
            parent[key] = rng.choice(INTERESTING_VALUES)
    text = json.dumps(d)
    if rng.random() < 0.05:
        return text[: rng.randrange(len(text))]
    if rng.random() < 0.02:
        return "[" * 100_000 + "]" * 100_000
    return text


def cases(seed: int, n: int, bundle_share: float = 0.25) -> Iterator[dict[str, str]]:
    """``n`` seeded mutants: ``{"kind": "onnx", "data": base64}`` or ``{"kind": "bundle", "data": JSON text}``."""
    rng = random.Random(seed)
    models = seed_models()
    bundle = seed_bundle()
    for _ in range(n):
        if rng.random() < bundle_share:
            yield {"kind": "bundle", "data": _mutate_bundle(bundle, rng)}
        else:
            data = _mutate_onnx(rng.choice(models), rng) if rng.random() < 0.85 else _mutate_bytes(rng.choice(models), rng)
            yield {"kind": "onnx", "data": base64.b64encode(data).decode()}


# -- the child --------------------------------------------------------------------------------------------------
def _peak_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _run_case(case: dict[str, str], graph: Any, hw_default: Any) -> str:
    from annette.errors import AnnetteError
    from annette.estimate import estimate
    from annette.graph.accounting import account_graph
    from annette.hardware import HardwareModel
    from annette.importers.onnx import graph_from_onnx

    if case["kind"] == "selftest:abort":  # the isolation's own checks (tests/test_fuzz.py)
        os.abort()
    if case["kind"] == "selftest:alloc":
        try:
            bytearray(int(case["data"]))
        except MemoryError:
            return "exception:MemoryError"
        return "ok"
    try:
        if case["kind"] == "onnx":
            g = graph_from_onnx(base64.b64decode(case["data"]))
            account_graph(g)
            estimate(g, hw_default, kind="refined")
        else:
            try:
                doc = json.loads(case["data"])
            except (ValueError, RecursionError):
                return "annette:unreadable JSON"  # what HardwareModel.load reports for such a file
            if not isinstance(doc, dict):
                return "annette:not an object"
            hw = HardwareModel.from_dict(doc, source="<fuzz>")
            for kind in hw.kinds:
                est = estimate(graph, hw, kind=kind)
                if not math.isfinite(est.total_ms):
                    return "exception:non-finite total"
        return "ok"
    except AnnetteError as exc:
        return f"annette:{type(exc).__name__}"
    except Exception as exc:  # a defect: reported by type
        return f"exception:{type(exc).__name__}"


def _answer(doc: dict[str, Any]) -> None:
    """One line of the child protocol on stdout (the child's only output there)."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def child_main() -> None:
    """Read cases (one JSON per line) on stdin, answer ``{"outcome", "peak_kb"}`` per line on stdout."""
    import logging

    logging.disable(logging.CRITICAL)
    import numpy as np  # noqa: F401  (imported before the limit: its own allocations are not the case's)

    from annette.graph.ir import Graph, Layer, TensorSpec
    from annette.hardware import HardwareModel

    x = TensorSpec("x", (1, 3, 8, 8))
    c = TensorSpec("c", (1, 8, 8, 8))
    graph = Graph("g", (x,), (Layer("conv", "Conv", (x,), (c,), (TensorSpec("w", (8, 3, 3, 3)),),
                                    {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1), "strides": (1, 1), "group": 1}),
                              Layer("relu", "Relu", (c,), (TensorSpec("y", (1, 8, 8, 8)),))), ("y",)).validate()
    hw_default = HardwareModel.load("annette-dnndk")
    limit = int(os.environ.get("ANNETTE_FUZZ_MEM", str(2**30)))
    if limit > 0:
        vm = 0
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    vm = int(line.split()[1]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + limit, vm + limit))
    _answer({"ready": True})
    for line in sys.stdin:
        case = json.loads(line)
        _reset_peak()
        outcome = _run_case(case, graph, hw_default)
        _answer({"outcome": outcome, "peak_kb": _peak_kb()})


# -- the parent -------------------------------------------------------------------------------------------------
@dataclass
class Result:
    outcome: str
    peak_kb: int
    seconds: float


class _Child:
    def __init__(self, mem_limit_bytes: int, nice: int) -> None:
        env = {**os.environ, "ANNETTE_FUZZ_MEM": str(mem_limit_bytes), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "annette.fuzz", "--child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env, preexec_fn=(lambda: os.nice(nice)) if nice else None,
        )
        self.baseline_kb = 0
        ready = self._read(300.0)
        if ready is None or not ready.get("ready"):
            raise RuntimeError("the fuzz child did not start")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        """The child's next answer; None on a timeout; ``{"eof": True}`` when it died."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"eof": True}

    def run(self, case: dict[str, str], timeout_s: float) -> Result:
        assert self.proc.stdin is not None
        t0 = time.perf_counter()
        try:
            self.proc.stdin.write(json.dumps(case) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return Result("crash", 0, 0.0)
        answer = self._read(timeout_s)
        dt = time.perf_counter() - t0
        if answer is not None and "outcome" in answer:
            return Result(str(answer["outcome"]), int(answer["peak_kb"]), dt)
        if answer is None:
            self.kill()
            return Result("timeout", 0, dt)
        code = self.proc.wait()
        return Result("crash" + (f":{signal.Signals(-code).name}" if code < 0 else f":exit {code}"), 0, dt)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def run_cases(
    items: Iterator[dict[str, str]], *, timeout_s: float = 30.0, mem_limit_bytes: int = 2**30, nice: int = 0,
    on_result: Callable[[int, dict[str, str], Result], None] | None = None,
) -> list[Result]:
    """Run the cases in one child after another (a new child after a crash or a timeout)."""
    results: list[Result] = []
    child: _Child | None = None
    try:
        for i, case in enumerate(items):
            if child is None or not child.alive:
                child = _Child(mem_limit_bytes, nice)
            result = child.run(case, timeout_s)
            results.append(result)
            if on_result is not None:
                on_result(i, case, result)
    finally:
        if child is not None:
            child.kill()
    return results


def is_defect(outcome: str) -> bool:
    return outcome.split(":", 1)[0] not in GOOD


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child_main()
    else:
        sys.exit("usage: python -m annette.fuzz --child (see benchmarks/fuzz_inputs.py)")
