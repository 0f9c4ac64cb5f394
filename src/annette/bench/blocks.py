"""Benchmark networks built with ``onnx.helper`` (no torch): single layers (micro-kernels) and blocks.

Every benchmark is a *family* (``FAMILIES`` registry) with a kind (micro | multi), a builder from a JSON
parameter dict to an ``onnx.ModelProto`` whose nodes are all named, and a sampler of random parameters
(log-uniform sizes, capped in cost so one configuration stays in the millisecond range on a CPU core).
``family_params(layer)`` is the inverse for micro families: the family and parameters of one graph layer
(used to extract configurations from real networks and to import external tables).

Weights are random (seeded); activations are graph inputs, so a runtime cannot constant-fold them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from annette.errors import InvalidOptionError
from annette.registry import Registry

if TYPE_CHECKING:
    import onnx

    from annette.graph.ir import Layer

OPSET = 20  # Gelu needs 20; LayerNormalization 17
Params = dict[str, Any]

_ELEM_TYPES = {"float32": 1, "float16": 10}
_NP_TYPES = {"float32": np.float32, "float16": np.float16}


class NetBuilder:
    """Appends named ONNX nodes to a network, tracking each tensor's shape (NCHW, batch first)."""

    def __init__(self, name: str, dtype: str = "float32", seed: int = 0) -> None:
        if dtype not in _ELEM_TYPES:
            raise InvalidOptionError(f"benchmark dtype must be one of {', '.join(_ELEM_TYPES)}, got {dtype!r}")
        self.name = name
        self.dtype = dtype
        self.rng = np.random.default_rng(seed)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.graph_inputs: list[str] = []
        self._count: dict[str, int] = {}

    # -- plumbing ----------------------------------------------------------------------------------------
    def _name(self, base: str) -> str:
        i = self._count.get(base, 0)
        self._count[base] = i + 1
        return f"{base}{i}" if i else base

    def input(self, shape: Sequence[int], base: str = "x") -> str:
        name = self._name(base)
        self.shapes[name] = tuple(int(d) for d in shape)
        self.graph_inputs.append(name)
        return name

    def const(self, base: str, values: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self._name(base)
        self.inits.append(numpy_helper.from_array(values, name))
        self.shapes[name] = tuple(values.shape)
        return name

    def weight(self, base: str, shape: Sequence[int], scale: float = 0.1) -> str:
        data = (self.rng.standard_normal(tuple(shape), dtype=np.float32) * scale).astype(_NP_TYPES[self.dtype])
        return self.const(base, data)

    def node(self, op: str, inputs: Sequence[str], shape: Sequence[int], base: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        name = self._name(base or op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [name], name=name, **attrs))
        self.shapes[name] = tuple(int(d) for d in shape)
        return name

    def build(self, outputs: Sequence[str]) -> onnx.ModelProto:
        from onnx import helper

        et = _ELEM_TYPES[self.dtype]
        graph = helper.make_graph(
            self.nodes,
            self.name,
            [helper.make_tensor_value_info(n, et, list(self.shapes[n])) for n in self.graph_inputs],
            [helper.make_tensor_value_info(n, et, list(self.shapes[n])) for n in outputs],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="annette.bench")
        model.ir_version = 9
        return model

    # -- layers ------------------------------------------------------------------------------------------
    def conv(
        self, x: str, cout: int, k: int, stride: int = 1, pad: int | None = None, dilation: int = 1, groups: int = 1,
        base: str = "conv",
    ) -> str:
        n, cin, h, w = self.shapes[x]
        if cin % groups or cout % groups:
            raise InvalidOptionError(f"conv groups={groups} must divide cin={cin} and cout={cout}")
        pad = dilation * (k - 1) // 2 if pad is None else pad
        oh = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        ow = (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        if oh < 1 or ow < 1:
            raise InvalidOptionError(f"conv k={k} stride={stride} dilation={dilation} pad={pad} on {h}x{w} gives no output")
        fan_in = cin // groups * k * k
        wname = self.weight(f"{base}.weight", (cout, cin // groups, k, k), scale=1.0 / math.sqrt(fan_in))
        bname = self.weight(f"{base}.bias", (cout,))
        return self.node(
            "Conv", [x, wname, bname], (n, cout, oh, ow), base=base, kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad] * 4, dilations=[dilation, dilation], group=groups,
        )

    def bn(self, x: str, base: str = "bn") -> str:
        c = self.shapes[x][1]
        ps = [self.weight(f"{base}.{p}", (c,)) for p in ("scale", "bias", "mean")]
        var = self.const(f"{base}.var", (np.abs(self.rng.standard_normal(c)) + 0.5).astype(_NP_TYPES[self.dtype]))
        return self.node("BatchNormalization", [x, *ps, var], self.shapes[x], base=base, epsilon=1e-5)

    def act(self, x: str, kind: str) -> str:
        shape = self.shapes[x]
        if kind == "clip":  # ReLU6
            lo = self.const("clip.min", np.array(0.0, dtype=_NP_TYPES[self.dtype]))
            hi = self.const("clip.max", np.array(6.0, dtype=_NP_TYPES[self.dtype]))
            return self.node("Clip", [x, lo, hi], shape, base="clip")
        if kind == "silu":  # x * sigmoid(x): ONNX has no SiLU before opset 24
            return self.node("Mul", [x, self.node("Sigmoid", [x], shape, base="silu_sigmoid")], shape, base="silu_mul")
        if kind == "gelu":
            return self.node("Gelu", [x], shape, base="gelu")
        op = ACTIVATIONS.get(kind)
        if op is None:
            raise InvalidOptionError(f"unknown activation {kind!r}; known: {', '.join(sorted(ACTIVATION_KINDS))}")
        return self.node(op, [x], shape, base=kind)

    def pool(self, x: str, kind: str, k: int, stride: int, pad: int = 0) -> str:
        n, c, h, w = self.shapes[x]
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        if oh < 1 or ow < 1:
            raise InvalidOptionError(f"{kind} k={k} stride={stride} pad={pad} on {h}x{w} gives no output")
        op = {"maxpool": "MaxPool", "avgpool": "AveragePool"}[kind]
        return self.node(op, [x], (n, c, oh, ow), base=kind, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def global_avgpool(self, x: str) -> str:
        n, c = self.shapes[x][:2]
        return self.node("GlobalAveragePool", [x], (n, c, 1, 1), base="gap")

    def binary(self, op: str, x: str, y: str) -> str:
        shape = np.broadcast_shapes(self.shapes[x], self.shapes[y])
        return self.node(op, [x, y], shape, base=op.lower())

    def gemm(self, x: str, cout: int, base: str = "gemm") -> str:
        n, cin = self.shapes[x]
        w = self.weight(f"{base}.weight", (cout, cin), scale=1.0 / math.sqrt(cin))
        b = self.weight(f"{base}.bias", (cout,))
        return self.node("Gemm", [x, w, b], (n, cout), base=base, transB=1)

    def linear(self, x: str, cout: int, base: str = "linear", bias: bool = True) -> str:
        """MatMul with a constant weight (+ Add of a bias): how exporters write nn.Linear on 3-D inputs."""
        shape = self.shapes[x]
        w = self.weight(f"{base}.weight", (shape[-1], cout), scale=1.0 / math.sqrt(shape[-1]))
        y = self.node("MatMul", [x, w], (*shape[:-1], cout), base=f"{base}_matmul")
        return self.node("Add", [y, self.weight(f"{base}.bias", (cout,))], (*shape[:-1], cout), base=f"{base}_add") if bias else y

    def matmul(self, a: str, b: str, base: str = "matmul") -> str:
        sa, sb = self.shapes[a], self.shapes[b]
        return self.node("MatMul", [a, b], (*np.broadcast_shapes(sa[:-2], sb[:-2]), sa[-2], sb[-1]), base=base)

    def softmax(self, x: str, axis: int = -1) -> str:
        return self.node("Softmax", [x], self.shapes[x], base="softmax", axis=axis)

    def layernorm(self, x: str) -> str:
        d = self.shapes[x][-1]
        return self.node(
            "LayerNormalization", [x, self.weight("ln.scale", (d,)), self.weight("ln.bias", (d,))], self.shapes[x],
            base="layernorm", axis=-1, epsilon=1e-5,
        )

    def concat(self, xs: Sequence[str], axis: int = 1) -> str:
        shape = list(self.shapes[xs[0]])
        shape[axis] = sum(self.shapes[x][axis] for x in xs)
        return self.node("Concat", list(xs), shape, base="concat", axis=axis)

    def resize(self, x: str, scale: int, mode: str) -> str:
        n, c, h, w = self.shapes[x]
        scales = self.const("resize.scales", np.array([1, 1, scale, scale], dtype=np.float32))
        return self.node("Resize", [x, "", scales], (n, c, h * scale, w * scale), base="resize", mode=mode)

    def transpose(self, x: str, perm: Sequence[int]) -> str:
        shape = self.shapes[x]
        return self.node("Transpose", [x], [shape[p] for p in perm], base="transpose", perm=list(perm))

    def reshape(self, x: str, shape: Sequence[int]) -> str:
        target = self.const("reshape.shape", np.array(list(shape), dtype=np.int64))
        return self.node("Reshape", [x, target], shape, base="reshape")


ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "hardswish": "HardSwish", "hardsigmoid": "HardSigmoid", "tanh": "Tanh"}
ACTIVATION_KINDS = (*ACTIVATIONS, "clip", "gelu", "silu")


# -- families -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # micro | multi
    build: Callable[[NetBuilder, Mapping[str, Any]], list[str]]  # appends layers, returns the outputs
    sample: Callable[[np.random.Generator], Params]
    cost: Callable[[Mapping[str, Any]], float]  # rough MACs + ELEM x elements moved, to cap random draws
    # The build stage that measures the family: core (micro-kernels and blocks), context (blocks inside a
    # network), cache (cache pressure), overhead (per-node cost); see annette.build. ``weight``: its share
    # among the families of its stage.
    stage: str = "core"
    weight: float = 1.0


FAMILIES: Registry[Family] = Registry("benchmark family")

ELEM = 20.0  # a moved element costs about as much as 20 multiply-accumulates on a CPU core
MAX_COST = 3e8  # ~ 5-20 ms on one CPU core; random draws above are redrawn
MIN_COST = 1e3


def build_model(family: str, params: Mapping[str, Any], *, name: str | None = None) -> onnx.ModelProto:
    """The ONNX network of one configuration (every node named, weights seeded by the parameters)."""
    fam = FAMILIES.get(family)
    key = canonical(params)
    seed = int(hashlib.sha256(f"{family}{key}".encode()).hexdigest()[:8], 16)
    b = NetBuilder(name or f"{family}", dtype=str(params.get("dtype", "float32")), seed=seed)
    try:
        outputs = fam.build(b, params)
    except KeyError as exc:
        raise InvalidOptionError(f"family {family!r} needs parameter {exc.args[0]!r}; got {sorted(params)}") from None
    return b.build(outputs)


def canonical(params: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(params), sort_keys=True, separators=(",", ":"))


def sample_params(family: str, rng: np.random.Generator, max_cost: float = MAX_COST, tries: int = 200) -> Params:
    fam = FAMILIES.get(family)
    for _ in range(tries):
        params = fam.sample(rng)
        if MIN_COST <= fam.cost(params) <= max_cost:
            return params
    raise InvalidOptionError(f"could not draw {family} parameters under the cost cap {max_cost:g} in {tries} tries")


def _logu(rng: np.random.Generator, lo: float, hi: float) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _img(rng: np.random.Generator, cmax: int = 1024) -> Params:
    hw = _logu(rng, 4, 224)
    return {"n": 1, "c": _logu(rng, 3, cmax), "h": hw, "w": hw}


def _elems(p: Mapping[str, Any]) -> float:
    """The elements of the (first) input."""
    return float(math.prod(p["shape"])) if "shape" in p else float(p["n"] * p["c"] * p["h"] * p["w"])


def _numel(p: Mapping[str, Any]) -> float:
    return ELEM * _elems(p)


def _conv_out(h: int, k: int, s: int, pad: int, d: int = 1) -> int:
    return (h + 2 * pad - d * (k - 1) - 1) // s + 1


def _register(name: str, kind: str, build: Any, sample: Any, cost: Any) -> None:
    FAMILIES.register(name, Family(name, kind, build, sample, cost))


# conv: regular, grouped, depthwise, dilated, strided, 1x1..7x7
GROUP_WIDTHS = (4, 8, 12, 16, 24, 32, 48, 64, 128)  # channels per group of the grouped variant


def _conv_sample(rng: np.random.Generator) -> Params:
    hw = _logu(rng, 7, 224)
    k = int(rng.choice([1, 3, 5, 7], p=[0.35, 0.45, 0.1, 0.1]))
    stride = int(rng.choice([1, 2], p=[0.75, 0.25]))
    dilation = 2 if k == 3 and rng.random() < 0.1 else 1
    variant = rng.choice(["regular", "depthwise", "grouped"], p=[0.70, 0.18, 0.12])
    if variant == "depthwise":
        cin = cout = groups = _logu(rng, 8, 1024)
    elif variant == "grouped":
        # as networks group: a group width of 4-128 channels (RegNet 8-112, ResNeXt 4-32 per group), 2-64 groups,
        # mostly as many outputs as inputs; kernels take whole groups or split them, so the width is the feature
        width = int(rng.choice(GROUP_WIDTHS))
        groups = min(_logu(rng, 2, 64), max(2, 2048 // width))
        cin = width * groups
        cout = cin * int(rng.choice([1, 2], p=[0.8, 0.2]))
    else:
        cin, cout = _logu(rng, 3, 1024), _logu(rng, 8, 1024)
        groups = 1
    return {"n": 1, "cin": cin, "h": hw, "w": hw, "cout": cout, "k": k, "stride": stride,
            "pad": dilation * (k - 1) // 2, "dilation": dilation, "groups": groups}


def _conv_cost(p: Mapping[str, Any]) -> float:
    oh = _conv_out(p["h"], p["k"], p["stride"], p["pad"], p.get("dilation", 1))
    ow = _conv_out(p["w"], p["k"], p["stride"], p["pad"], p.get("dilation", 1))
    macs = p["n"] * p["cout"] * oh * ow * p["cin"] // p["groups"] * p["k"] ** 2
    elems = p["n"] * (p["cin"] * p["h"] * p["w"] + p["cout"] * oh * ow) + p["cout"] * p["cin"] // p["groups"] * p["k"] ** 2
    return float(macs + ELEM * elems)


def _conv_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["n"], p["cin"], p["h"], p["w"]))
    return [b.conv(x, p["cout"], p["k"], p["stride"], p["pad"], p.get("dilation", 1), p["groups"])]


_register("conv", "micro", _conv_build, _conv_sample, _conv_cost)


def _gemm_sample(rng: np.random.Generator) -> Params:
    # rows: a classifier head's batch, or a transformer's tokens (batch x sequence: GPT-2's linear layers export
    # as Gemm on 128-1024 rows), which a tree model cannot extrapolate to from heads alone
    n = int(rng.choice([1, 1, 8, 64])) if rng.random() < 0.6 else _logu(rng, 16, 2048)
    return {"n": n, "cin": _logu(rng, 16, 8192), "cout": _logu(rng, 8, 8192)}


_register(
    "gemm", "micro",
    lambda b, p: [b.gemm(b.input((p["n"], p["cin"])), p["cout"])],
    _gemm_sample,
    lambda p: float(p["n"] * p["cin"] * p["cout"] + ELEM * (p["cin"] * p["cout"] + p["n"] * (p["cin"] + p["cout"]))),
)


def _matmul_sample(rng: np.random.Generator) -> Params:
    return {"b": _logu(rng, 1, 16), "m": _logu(rng, 8, 512), "k": _logu(rng, 8, 1024), "n": _logu(rng, 8, 1024),
            "const_b": int(rng.random() < 0.5)}


def _matmul_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    a = b.input((p["b"], p["m"], p["k"]))
    if p.get("const_b"):
        return [b.linear(a, p["n"], bias=False)]
    return [b.matmul(a, b.input((p["b"], p["k"], p["n"]), base="y"))]


_register("matmul", "micro", _matmul_build, _matmul_sample,
          lambda p: float(p["b"] * p["m"] * p["k"] * p["n"] + ELEM * p["b"] * (p["m"] * p["k"] + p["k"] * p["n"] + p["m"] * p["n"])))


def _pool_sample(rng: np.random.Generator) -> Params:
    k = int(rng.choice([2, 3, 3, 5, 7]))
    stride = int(rng.choice([1, 2, 2]))
    return {**_img(rng), "k": k, "stride": stride, "pad": int(rng.integers(0, k // 2 + 1))}


def _pool_family(kind: str) -> None:
    def build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
        return [b.pool(b.input((p["n"], p["c"], p["h"], p["w"])), kind, p["k"], p["stride"], p["pad"])]

    def cost(p: Mapping[str, Any]) -> float:
        if _conv_out(p["h"], p["k"], p["stride"], p["pad"]) < 1 or 2 * p["pad"] >= p["k"]:
            return -1.0  # invalid: redraw
        oh = _conv_out(p["h"], p["k"], p["stride"], p["pad"])
        return float(p["n"] * p["c"] * oh * oh * p["k"] ** 2 + 2 * _numel(p))

    _register(kind, "micro", build, _pool_sample, cost)


for _kind in ("maxpool", "avgpool"):
    _pool_family(_kind)

_register("globalavgpool", "micro", lambda b, p: [b.global_avgpool(b.input((p["n"], p["c"], p["h"], p["w"])))],
          _img, _numel)


def _binary_family(name: str, op: str) -> None:
    def build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
        x = b.input((p["n"], p["c"], p["h"], p["w"]))
        yshape = (p["n"], p["c"], 1, 1) if p.get("broadcast") else (p["n"], p["c"], p["h"], p["w"])
        return [b.binary(op, x, b.input(yshape, base="y"))]

    def sample(rng: np.random.Generator) -> Params:
        return {**_img(rng), "broadcast": int(rng.random() < 0.25)}

    _register(name, "micro", build, sample, lambda p: 3 * _numel(p))


_binary_family("add", "Add")
_binary_family("mul", "Mul")


def _shape_sample(rng: np.random.Generator) -> Params:
    if rng.random() < 0.7:
        p = _img(rng)
        return {"shape": [p["n"], p["c"], p["h"], p["w"]]}
    return {"shape": [1, _logu(rng, 16, 1024), _logu(rng, 32, 4096)]}  # tokens x features


def _act_family(kind: str) -> None:
    _register(kind, "micro", lambda b, p: [b.act(b.input(p["shape"]), kind)], _shape_sample, lambda p: 2 * _numel(p))


for _kind in ACTIVATION_KINDS:
    _act_family(_kind)

_register("batchnorm", "micro", lambda b, p: [b.bn(b.input((p["n"], p["c"], p["h"], p["w"])))], _img,
          lambda p: 2 * _numel(p))
_register("softmax", "micro", lambda b, p: [b.softmax(b.input(p["shape"]))],
          lambda rng: {"shape": [_logu(rng, 1, 16), _logu(rng, 16, 1024), _logu(rng, 16, 1024)]}, lambda p: 2 * _numel(p))
_register("layernorm", "micro", lambda b, p: [b.layernorm(b.input(p["shape"]))],
          lambda rng: {"shape": [1, _logu(rng, 16, 1024), _logu(rng, 64, 4096)]}, lambda p: 2 * _numel(p))


def _concat_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    xs = [b.input((p["n"], c, p["h"], p["w"])) for c in p["cs"]]
    return [b.concat(xs)]


def _concat_sample(rng: np.random.Generator) -> Params:
    p = _img(rng, cmax=512)
    return {"n": 1, "cs": [_logu(rng, 8, 512) for _ in range(int(rng.integers(2, 5)))], "h": p["h"], "w": p["w"]}


_register("concat", "micro", _concat_build, _concat_sample,
          lambda p: 2.0 * ELEM * p["n"] * sum(p["cs"]) * p["h"] * p["w"])


def _resize_sample(rng: np.random.Generator) -> Params:
    p = _img(rng, cmax=512)
    p["h"] = p["w"] = min(p["h"], 112)
    return {**p, "scale": 2, "mode": str(rng.choice(["nearest", "linear"]))}


_register("resize", "micro",
          lambda b, p: [b.resize(b.input((p["n"], p["c"], p["h"], p["w"])), p["scale"], p["mode"])],
          _resize_sample, lambda p: _numel(p) * (1 + p["scale"] ** 2))


def _transpose_sample(rng: np.random.Generator) -> Params:
    if rng.random() < 0.5:  # NCHW -> NHWC
        p = _img(rng)
        return {"shape": [p["n"], p["c"], p["h"], p["w"]], "perm": [0, 2, 3, 1]}
    heads = int(rng.choice([4, 8, 12, 16]))  # attention head split: (n, s, heads, d) -> (n, heads, s, d)
    return {"shape": [1, _logu(rng, 16, 1024), heads, _logu(rng, 16, 128)], "perm": [0, 2, 1, 3]}


_register("transpose", "micro", lambda b, p: [b.transpose(b.input(p["shape"]), p["perm"])], _transpose_sample,
          lambda p: 2 * _numel(p))


def _reshape_sample(rng: np.random.Generator) -> Params:
    p = _img(rng)
    return {"shape": [p["n"], p["c"], p["h"], p["w"]], "to": [p["n"], p["c"] * p["h"] * p["w"]]}


_register("reshape", "micro", lambda b, p: [b.reshape(b.input(p["shape"]), p["to"])], _reshape_sample,
          lambda p: _numel(p))


# -- multi-layer blocks -----------------------------------------------------------------------------------


def _block_img(rng: np.random.Generator, cmax: int = 512) -> Params:
    hw = int(rng.choice([7, 14, 28, 56, 112]))
    return {"n": 1, "c": _logu(rng, 16, cmax), "h": hw, "w": hw}


def _cbr_sample(rng: np.random.Generator) -> Params:
    p = _conv_sample(rng)
    return {**p, "act": str(rng.choice(["relu", "clip", "hardswish", "silu"], p=[0.6, 0.2, 0.1, 0.1]))}


def _cbr_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = _conv_build(b, p)[0]
    return [b.act(b.bn(x), p["act"])]


_register("conv_bn_relu", "multi", _cbr_build, _cbr_sample, _conv_cost)


def _crp_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.act(_conv_build(b, p)[0], "relu")
    return [b.pool(x, "maxpool", p["pool_k"], p["pool_stride"], p["pool_k"] // 2 if p["pool_k"] == 3 else 0)]


def _crp_sample(rng: np.random.Generator) -> Params:
    p = _conv_sample(rng)
    return {**p, "pool_k": int(rng.choice([2, 3])), "pool_stride": 2}


def _crp_cost(p: Mapping[str, Any]) -> float:
    oh = _conv_out(p["h"], p["k"], p["stride"], p["pad"], p.get("dilation", 1))
    return _conv_cost(p) if oh >= p["pool_k"] else -1.0


_register("conv_relu_maxpool", "multi", _crp_build, _crp_sample, _crp_cost)


def _residual_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["n"], p["c"], p["h"], p["w"]))
    y = b.act(b.bn(b.conv(x, p["c"], 3)), "relu")
    y = b.bn(b.conv(y, p["c"], 3))
    return [b.act(b.binary("Add", y, x), "relu")]


_register("residual", "multi", _residual_build, _block_img, lambda p: _elems(p) * (18.0 * p["c"] + 4 * ELEM))


def _dwsep_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["n"], p["c"], p["h"], p["w"]))
    y = b.act(b.bn(b.conv(x, p["c"], 3, p["stride"], groups=p["c"])), "relu")
    return [b.act(b.bn(b.conv(y, p["cout"], 1)), "relu")]


_register("dwsep", "multi", _dwsep_build,
          lambda rng: {**_block_img(rng), "cout": _logu(rng, 16, 1024), "stride": int(rng.choice([1, 2]))},
          lambda p: _elems(p) * (9 + p["cout"] / p["stride"] ** 2 + 3 * ELEM))


def _ir_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["n"], p["c"], p["h"], p["w"]))
    hidden = p["c"] * p["expand"]
    y = b.act(b.bn(b.conv(x, hidden, 1)), p["act"]) if p["expand"] != 1 else x
    y = b.act(b.bn(b.conv(y, hidden, p["k"], p["stride"], groups=hidden)), p["act"])
    y = b.bn(b.conv(y, p["cout"], 1))
    return [b.binary("Add", y, x) if p["stride"] == 1 and p["cout"] == p["c"] else y]


def _ir_sample(rng: np.random.Generator) -> Params:
    p = _block_img(rng, cmax=160)
    stride = int(rng.choice([1, 2], p=[0.7, 0.3]))
    cout = p["c"] if stride == 1 and rng.random() < 0.6 else _logu(rng, 16, 320)
    return {**p, "cout": cout, "expand": int(rng.choice([1, 3, 4, 6])), "k": int(rng.choice([3, 5])),
            "stride": stride, "act": str(rng.choice(["clip", "hardswish", "relu"]))}


_register("inverted_residual", "multi", _ir_build, _ir_sample,
          lambda p: _elems(p) * p["expand"] * (p["c"] + p["k"] ** 2 + p["cout"] + 3 * ELEM))


def _se_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["n"], p["c"], p["h"], p["w"]))
    s = b.global_avgpool(x)
    s = b.act(b.conv(s, max(8, p["c"] // p["reduce"]), 1), "relu")
    s = b.act(b.conv(s, p["c"], 1), p["gate"])
    return [b.binary("Mul", x, s)]


_register("se", "multi", _se_build,
          lambda rng: {**_block_img(rng, cmax=1024), "reduce": int(rng.choice([4, 16])),
                       "gate": str(rng.choice(["sigmoid", "hardsigmoid"]))},
          lambda p: 3 * _numel(p))


def _attention_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return [attention_block(b, b.input((p["n"], p["s"], p["d"])), p["heads"])]


def attention_block(b: NetBuilder, x: str, heads: int) -> str:
    """Multi-head self-attention on tokens ``x`` (n, s, d): q/k/v projections, softmax(q k^T / sqrt(hd)) v, output
    projection."""
    n, s, d = b.shapes[x]
    hd = d // heads

    def split(t: str) -> str:  # (n, s, d) -> (n, heads, s, hd)
        return b.transpose(b.reshape(t, (n, s, heads, hd)), (0, 2, 1, 3))

    q, k, v = (split(b.linear(x, d, base=name)) for name in ("q", "k", "v"))
    kt = b.transpose(k, (0, 1, 3, 2))
    scale = b.const("attn.scale", np.array(1.0 / math.sqrt(hd), dtype=_NP_TYPES[b.dtype]))
    att = b.softmax(b.binary("Mul", b.matmul(q, kt), scale))
    o = b.reshape(b.transpose(b.matmul(att, v), (0, 2, 1, 3)), (n, s, d))
    return b.linear(o, d, base="proj")


def _attention_sample(rng: np.random.Generator) -> Params:
    heads = int(rng.choice([4, 8, 12]))
    return {"n": 1, "s": _logu(rng, 16, 512), "d": heads * int(rng.choice([32, 64])), "heads": heads}


_register("attention", "multi", _attention_build, _attention_sample,
          lambda p: float(p["n"] * p["s"] * p["d"] * (4 * p["d"] + 2 * p["s"])))


def _mlp_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return [mlp_block(b, b.input((p["n"], p["s"], p["d"])), p["ratio"])]


def mlp_block(b: NetBuilder, x: str, ratio: int) -> str:
    """A transformer's pre-norm MLP on tokens ``x``: LayerNorm, fc (d * ratio), GELU, fc (d), residual."""
    d = b.shapes[x][-1]
    y = b.linear(b.act(b.linear(b.layernorm(x), d * ratio, base="fc1"), "gelu"), d, base="fc2")
    return b.binary("Add", y, x)


_register("mlp", "multi", _mlp_build,
          lambda rng: {"n": 1, "s": _logu(rng, 16, 512), "d": int(rng.choice([128, 256, 384, 512, 768])),
                       "ratio": int(rng.choice([2, 4]))},
          lambda p: float(2 * p["n"] * p["s"] * p["d"] ** 2 * p["ratio"]))

# chains of two arbitrary layer types (fusion tests)
CHAIN_OPS = ("conv1x1", "conv3x3", "dwconv3x3", "batchnorm", "relu", "clip", "sigmoid", "hardswish", "maxpool",
             "avgpool", "add", "mul")


def _chain_layer(b: NetBuilder, x: str, op: str, cout: int) -> str:
    c = b.shapes[x][1]
    if op == "conv1x1":
        return b.conv(x, cout, 1)
    if op == "conv3x3":
        return b.conv(x, cout, 3)
    if op == "dwconv3x3":
        return b.conv(x, c, 3, groups=c)
    if op == "batchnorm":
        return b.bn(x)
    if op in ("maxpool", "avgpool"):
        return b.pool(x, op, 3, 1, 1)
    if op in ("add", "mul"):
        return b.binary(op.capitalize(), x, b.input(b.shapes[x], base="y"))
    return b.act(x, op)


def _chain_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["n"], p["c"], p["h"], p["w"]))
    return [_chain_layer(b, _chain_layer(b, x, p["first"], p["c"]), p["second"], p["c"])]


_register("chain2", "multi", _chain_build,
          lambda rng: {**_block_img(rng), "first": str(rng.choice(CHAIN_OPS)), "second": str(rng.choice(CHAIN_OPS))},
          lambda p: _elems(p) * ((9 if "conv3x3" in (p["first"], p["second"]) else 1) * p["c"] + 2 * ELEM))


def stage_families(stage: str) -> list[str]:
    """The families a build stage measures (see ``Family.stage``)."""
    return [n for n in FAMILIES.names() if FAMILIES.get(n).stage == stage]


# -- the inverse: a graph layer's family and parameters ----------------------------------------------------

_OP_FAMILY = {
    "MaxPool": "maxpool", "AveragePool": "avgpool", "GlobalAveragePool": "globalavgpool", "BatchNormalization": "batchnorm",
    "Relu": "relu", "Sigmoid": "sigmoid", "HardSwish": "hardswish", "HardSigmoid": "hardsigmoid", "Tanh": "tanh",
    "Gelu": "gelu", "Clip": "clip", "Softmax": "softmax", "LayerNormalization": "layernorm", "Add": "add",
    "Mul": "mul", "Concat": "concat", "Resize": "resize", "Transpose": "transpose", "Reshape": "reshape",
    "Flatten": "reshape",
}


def family_params(layer: Layer) -> tuple[str, Params] | None:
    """The micro family and parameters that rebuild ``layer`` alone, or None where no family fits.

    Conv: square kernels, equal strides and symmetric pads only; Gemm with transB; MatMul; pools 2-D;
    elementwise ops with equal shapes or a per-channel second operand.
    """
    op = layer.op
    shape = list(layer.input.shape) if layer.inputs else []
    out = list(layer.output.shape) if layer.outputs else []

    def ints(key: str, default: int, n: int = 2) -> tuple[int, ...]:
        vals = layer.attr(key)
        return tuple(int(v) for v in vals) if isinstance(vals, tuple) else (default,) * n

    def square(key: str, default: int) -> int | None:
        vals = ints(key, default)
        return vals[0] if len(set(vals)) == 1 else None

    pads = ints("pads", 0, 4)
    if op == "Conv" and len(shape) == 4 and layer.weights:
        wshape = layer.weights[0].shape
        k, s, d = square("kernel_shape", wshape[-1] if wshape else 1), square("strides", 1), square("dilations", 1)
        if None in (k, s, d) or len(set(pads)) != 1 or wshape[-1] != wshape[-2]:
            return None
        return "conv", {"n": shape[0], "cin": shape[1], "h": shape[2], "w": shape[3], "cout": out[1], "k": k,
                        "stride": s, "pad": pads[0], "dilation": d, "groups": ints("group", 1, 1)[0]}
    if op == "Gemm" and len(shape) == 2:
        return "gemm", {"n": shape[0], "cin": shape[1], "cout": out[1]}
    if op == "MatMul" and len(shape) == 3:
        if len(layer.inputs) == 2 and len(layer.inputs[1].shape) == 3:
            return "matmul", {"b": shape[0], "m": shape[1], "k": shape[2], "n": out[-1], "const_b": 0}
        if layer.weights and len(layer.weights[0].shape) == 2:
            return "matmul", {"b": shape[0], "m": shape[1], "k": shape[2], "n": out[-1], "const_b": 1}
        return None
    family = _OP_FAMILY.get(op)
    if family is None:
        return None
    if family in ("maxpool", "avgpool"):
        k, s = square("kernel_shape", 1), square("strides", 1)
        if len(shape) != 4 or None in (k, s) or len(set(pads)) != 1 or layer.attr("ceil_mode", 0):
            return None
        return family, {"n": shape[0], "c": shape[1], "h": shape[2], "w": shape[3], "k": k, "stride": s, "pad": pads[0]}
    if family in ("globalavgpool", "batchnorm"):
        return (family, {"n": shape[0], "c": shape[1], "h": shape[2], "w": shape[3]}) if len(shape) == 4 else None
    if family in ("add", "mul"):
        if len(layer.inputs) != 2 or len(shape) != 4:
            return None
        other = list(layer.inputs[1].shape)
        if other == shape:
            return family, {"n": shape[0], "c": shape[1], "h": shape[2], "w": shape[3], "broadcast": 0}
        if other == [shape[0], shape[1], 1, 1]:
            return family, {"n": shape[0], "c": shape[1], "h": shape[2], "w": shape[3], "broadcast": 1}
        return None
    if family == "concat":
        if len(shape) != 4 or layer.attr("axis") not in (1, -3):
            return None
        return family, {"n": shape[0], "cs": [t.shape[1] for t in layer.inputs], "h": shape[2], "w": shape[3]}
    if family == "resize":
        if len(shape) != 4 or out[2] % shape[2] or out[2] // shape[2] != out[3] // max(1, shape[3]):
            return None
        mode = str(layer.attr("mode", "nearest"))
        return family, {"n": shape[0], "c": shape[1], "h": shape[2], "w": shape[3], "scale": out[2] // shape[2],
                        "mode": mode if mode in ("nearest", "linear") else "linear"}
    if family == "transpose":
        perm = layer.attr("perm")
        return (family, {"shape": shape, "perm": list(perm)}) if isinstance(perm, tuple) else None
    if family == "reshape":
        return family, {"shape": shape, "to": out}
    if family == "softmax" and layer.attr("axis", -1) not in (-1, len(shape) - 1):
        return None
    return family, {"shape": shape}


# The families of the other build stages register themselves into the same registry.
from annette.bench import context_blocks as _context_blocks  # noqa: E402,F401
from annette.bench import networks as _networks  # noqa: E402,F401
