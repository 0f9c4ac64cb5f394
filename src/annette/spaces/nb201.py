"""NAS-Bench-201 (Dong & Yang, ICLR 2020): architecture strings, the CIFAR network as ONNX, sampling.

The network is NAS-Bench-201's ``TinyNetwork(C=16, N=5, genotype, num_classes=10)`` in inference mode, input
``batch x 3 x 32 x 32``:

- stem: Conv3x3(3->16, pad 1, no bias) + BatchNorm;
- three stages of 5 cells (16, 32, 64 channels), separated by two ``ResNetBasicblock(stride=2)``:
  ReLU-Conv3x3(s2)-BN, ReLU-Conv3x3-BN, shortcut AvgPool2d(2, 2) + Conv1x1 (no bias, no BN), added;
- cell: 4 nodes; node j = sum over i < j of op_{j<-i}(node i), op one of :data:`ALL_OPS`:
  ``none`` (contributes nothing), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3``
  (ReLU-Conv-BN, no conv bias), ``avg_pool_3x3`` (stride 1, pad 1, count_include_pad=False);
  the cell's output is node 3;
- BatchNorm + ReLU, global average pool, Linear(64 -> 10).

How the ONNX graph spells it (one place for the logic; :func:`graph_from_arch` imports this ONNX):
``none`` edges emit no node. A node whose incoming edges are all ``none`` is the zero tensor; where another
edge reads it, it is materialised as ``Mul(cell input, 0)`` (what the reference ``Zero`` op computes), so
every architecture, also one whose output is cut off from its input, gives a graph that runs.
Operations whose result no later node reads are not emitted (PyTorch's exporter drops them too).
A node's sum is a chain of binary ``Add`` in edge order. Weights are random but deterministic (``seed``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from annette.errors import InvalidOptionError, ModelFileError

if TYPE_CHECKING:
    import onnx

    from annette.graph.ir import Graph

ALL_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The five edge operations, in NAS-Bench-201's order (``NAS_BENCH_201`` in its code)."""

NUM_NODES = 4
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, NUM_NODES) for i in range(j))
"""The six cell edges as (to, from), in the order of the architecture string."""
NUM_ARCHS = len(ALL_OPS) ** len(EDGES)  # 15,625

STEM_CHANNELS = 16
CELLS_PER_STAGE = 5
NUM_CLASSES = 10
IMAGE_SIZE = 32
OPSET = 17
BN_EPSILON = 1e-5

_TOKEN = re.compile(r"^(?P<op>[A-Za-z0-9_]+)~(?P<src>\d+)$")


@dataclass(frozen=True)
class Arch:
    """A parsed cell: ``ops[k]`` is the operation on edge ``EDGES[k]``."""

    ops: tuple[str, ...]

    def op(self, to: int, src: int) -> str:
        return self.ops[EDGES.index((to, src))]

    def __str__(self) -> str:
        nodes = []
        for j in range(1, NUM_NODES):
            nodes.append("|" + "|".join(f"{self.op(j, i)}~{i}" for i in range(j)) + "|")
        return "+".join(nodes)

    @property
    def index(self) -> int:
        """Position in this module's enumeration (base-5 digits over edges, ops in :data:`ALL_OPS` order)."""
        value = 0
        for op in self.ops:
            value = value * len(ALL_OPS) + ALL_OPS.index(op)
        return value

    @staticmethod
    def from_index(index: int) -> Arch:
        if not 0 <= index < NUM_ARCHS:
            raise ModelFileError(f"NAS-Bench-201 index must be in [0, {NUM_ARCHS}), got {index}")
        ops: list[str] = []
        for _ in EDGES:
            index, digit = divmod(index, len(ALL_OPS))
            ops.append(ALL_OPS[digit])
        return Arch(tuple(reversed(ops)))


def parse_arch(arch: str | Arch) -> Arch:
    """Parse and validate ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; errors name the bad token."""
    if isinstance(arch, Arch):
        return arch
    text = arch.strip()
    expected = "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'"
    groups = text.split("+")
    if len(groups) != NUM_NODES - 1:
        raise ModelFileError(
            f"NAS-Bench-201 architecture {arch!r}: expected {NUM_NODES - 1} node groups separated by '+' "
            f"({expected}), got {len(groups)}"
        )
    ops: list[str] = []
    for j, group in enumerate(groups, start=1):
        if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
            raise ModelFileError(
                f"NAS-Bench-201 architecture {arch!r}: node {j} group {group!r} must start and end with '|'"
            )
        tokens = group[1:-1].split("|")
        if len(tokens) != j:
            raise ModelFileError(
                f"NAS-Bench-201 architecture {arch!r}: node {j} needs {j} incoming edge(s) "
                f"(op~0 .. op~{j - 1}), got {len(tokens)} in {group!r}"
            )
        for i, token in enumerate(tokens):
            m = _TOKEN.match(token)
            if m is None:
                raise ModelFileError(
                    f"NAS-Bench-201 architecture {arch!r}: token {token!r} of node {j} is not 'op~input'"
                )
            if m["op"] not in ALL_OPS:
                raise ModelFileError(
                    f"NAS-Bench-201 architecture {arch!r}: unknown operation {m['op']!r} in token {token!r}; "
                    f"valid: {', '.join(ALL_OPS)}"
                )
            if int(m["src"]) != i:
                raise ModelFileError(
                    f"NAS-Bench-201 architecture {arch!r}: token {token!r} of node {j} should read node {i} "
                    f"(edges are listed in input order 0..{j - 1})"
                )
            ops.append(m["op"])
    return Arch(tuple(ops))


def sample_archs(n: int, *, seed: int) -> list[str]:
    """``n`` distinct architecture strings drawn uniformly from the 15,625 (deterministic for a seed)."""
    if not 0 <= n <= NUM_ARCHS:
        raise InvalidOptionError(f"can sample between 0 and {NUM_ARCHS} distinct architectures, got n={n}")
    rng = np.random.default_rng(seed)
    return [str(Arch.from_index(int(i))) for i in rng.choice(NUM_ARCHS, size=n, replace=False)]


def all_archs() -> list[str]:
    """All 15,625 architecture strings in index order."""
    return [str(Arch.from_index(i)) for i in range(NUM_ARCHS)]


# -- ONNX construction ---------------------------------------------------------------------------------
class _Builder:
    """Accumulates named ONNX nodes and random (seeded) initializers."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def _node(self, op: str, name: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = f"{name}:out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def _init(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(array.astype(np.float32), name=name))
        return name

    def relu(self, x: str, name: str) -> str:
        return self._node("Relu", name, [x])

    def conv(self, x: str, name: str, c_in: int, c_out: int, k: int, stride: int = 1) -> str:
        fan_in = c_in * k * k
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(c_out, c_in, k, k))
        pad = k // 2
        return self._node(
            "Conv", name, [x, self._init(f"{name}.weight", w)],
            kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
        )  # fmt: skip

    def bn(self, x: str, name: str, c: int) -> str:
        r = self.rng
        params = [
            self._init(f"{name}.weight", r.uniform(0.5, 1.5, c)),
            self._init(f"{name}.bias", r.normal(0.0, 0.1, c)),
            self._init(f"{name}.running_mean", r.normal(0.0, 0.1, c)),
            self._init(f"{name}.running_var", r.uniform(0.5, 1.5, c)),
        ]
        return self._node("BatchNormalization", name, [x, *params], epsilon=BN_EPSILON)

    def relu_conv_bn(self, x: str, name: str, c_in: int, c_out: int, k: int, stride: int = 1) -> str:
        y = self.relu(x, f"{name}/relu")
        y = self.conv(y, f"{name}/conv", c_in, c_out, k, stride)
        return self.bn(y, f"{name}/bn", c_out)

    def avg_pool(self, x: str, name: str, k: int, stride: int, pad: int) -> str:
        return self._node(
            "AveragePool", name, [x], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4,
            count_include_pad=0,
        )  # fmt: skip

    def add(self, a: str, b: str, name: str) -> str:
        return self._node("Add", name, [a, b])

    def zeros_like(self, x: str, name: str) -> str:
        return self._node("Mul", name, [x, self._init(f"{name}.zero", np.zeros((), np.float32))])

    # -- NAS-Bench-201 blocks --------------------------------------------------------------------------
    def cell(self, x: str, name: str, arch: Arch, c: int) -> str:
        # Which nodes the output (node 3) depends on through non-none edges.
        needed = {NUM_NODES - 1}
        for j in range(NUM_NODES - 1, 0, -1):
            if j in needed:
                needed.update(i for i in range(j) if arch.op(j, i) != "none")
        values: dict[int, str] = {0: x}
        for j in range(1, NUM_NODES):
            if j not in needed:
                continue
            terms: list[str] = []
            for i in range(j):
                op = arch.op(j, i)
                edge = f"{name}/e{i}{j}_{op}"
                if op == "none":
                    continue
                if op == "skip_connect":
                    terms.append(values[i])
                elif op == "nor_conv_1x1":
                    terms.append(self.relu_conv_bn(values[i], edge, c, c, 1))
                elif op == "nor_conv_3x3":
                    terms.append(self.relu_conv_bn(values[i], edge, c, c, 3))
                elif op == "avg_pool_3x3":
                    terms.append(self.avg_pool(values[i], edge, 3, 1, 1))
                else:  # parse_arch admits only ALL_OPS
                    raise AssertionError(op)
            if not terms:
                values[j] = self.zeros_like(x, f"{name}/node{j}_zero")
                continue
            acc = terms[0]
            for n, t in enumerate(terms[1:], start=1):
                acc = self.add(acc, t, f"{name}/node{j}_add{n}")
            values[j] = acc
        return values[NUM_NODES - 1]

    def reduction(self, x: str, name: str, c_in: int, c_out: int) -> str:
        y = self.relu_conv_bn(x, f"{name}/conv_a", c_in, c_out, 3, stride=2)
        y = self.relu_conv_bn(y, f"{name}/conv_b", c_out, c_out, 3)
        r = self.avg_pool(x, f"{name}/downsample/pool", 2, 2, 0)
        r = self.conv(r, f"{name}/downsample/conv", c_in, c_out, 1)
        return self.add(r, y, f"{name}/add")


def onnx_from_arch(arch: str | Arch, *, batch: int = 1, seed: int = 0) -> onnx.ModelProto:
    """The NAS-Bench-201 CIFAR-10 network for ``arch`` as an ONNX model (opset 17; every node named)."""
    import onnx
    from onnx import TensorProto, helper

    cell_arch = parse_arch(arch)
    if batch < 1:
        raise InvalidOptionError(f"batch must be >= 1, got {batch}")
    b = _Builder(seed)
    x = b.conv("input", "stem/conv", 3, STEM_CHANNELS, 3)
    x = b.bn(x, "stem/bn", STEM_CHANNELS)
    c = STEM_CHANNELS
    index = 0
    for stage in range(3):
        if stage > 0:
            x = b.reduction(x, f"reduce{stage}", c, 2 * c)
            c *= 2
        for _ in range(CELLS_PER_STAGE):
            x = b.cell(x, f"cell{index}", cell_arch, c)
            index += 1
    x = b.bn(x, "lastact/bn", c)
    x = b.relu(x, "lastact/relu")
    x = b._node("GlobalAveragePool", "global_pool", [x])
    x = b._node("Flatten", "flatten", [x], axis=1)
    w = b._init("classifier.weight", b.rng.normal(0.0, np.sqrt(1.0 / c), size=(NUM_CLASSES, c)))
    bias = b._init("classifier.bias", b.rng.normal(0.0, 0.01, size=NUM_CLASSES))
    b.nodes.append(helper.make_node("Gemm", [x, w, bias], ["logits"], name="classifier", transB=1))
    name = f"nb201:{cell_arch}"
    graph = helper.make_graph(
        b.nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, IMAGE_SIZE, IMAGE_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, NUM_CLASSES])],
        initializer=b.inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="annette.spaces.nb201"
    )
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def graph_from_arch(arch: str | Arch, *, batch: int = 1, seed: int = 0) -> Graph:
    """The network for ``arch`` in annette IR: :func:`onnx_from_arch` imported with ``graph_from_onnx``."""
    from annette.importers.onnx import graph_from_onnx

    cell_arch = parse_arch(arch)
    return graph_from_onnx(onnx_from_arch(cell_arch, batch=batch, seed=seed), name=f"nb201:{cell_arch}")
