"""Benchmark families for the layers of transformer exports (BERT, GPT-2, ViT, Llama/Qwen-style decoders).

They register into the one family registry, :data:`annette.bench.blocks.FAMILIES` (this module is imported by
``annette.bench``, so the registry is complete wherever a family is looked up). Shapes are the ones
``torch.onnx.export`` gives for ``transformers`` models: tokens x features (n, s, d), heads (n, h, s, hd),
attention scores (n, h, s, s), per-token statistics (n, s, 1).

Micro families (one layer type each, plus the few nodes that make its operands):

- ``gather``: an embedding lookup (a constant (vocab, d) table read at token ids) or a ``select`` of one
  position (BERT's pooler and ViT's CLS token: axis 1 of (n, s, d) at a constant index). Token ids are made
  in the graph from a float input (Mul, Add, Cast to int64), so they spread over the whole table as real
  token ids do; the benchmark runner feeds only float inputs.
- ``where``: ``Where`` after ``IsNaN`` (the exporters' scaled-dot-product attention zeroes NaN scores) or
  with a broadcast boolean mask (masked_fill), both on attention scores.
- ``split`` (fused QKV or gate/up projections), ``slice`` (rotary halves, a CLS row), ``expand`` (GQA's
  repeat_kv: Unsqueeze, Expand, Reshape; or a broadcast of a (1, 1, s, s) mask), ``cast`` (to int64 or
  bool and back), ``concat_seq`` (last-axis concat of rotary halves, ViT's CLS prepend),
  ``matmul_heads`` (4-D attention products), ``reducemean`` (last axis, keepdims), ``pow`` (x^2 of RMSNorm,
  x^3 of GPT-2's GELU), unary ops ``sqrt``, ``reciprocal``, ``neg``, ``erf``, ``sin``, ``cos``, and binary
  ops in transformer broadcasts ``add_seq``, ``mul_seq``, ``sub``, ``div`` (same shape, a (d,) bias, a
  (n, s, 1) statistic, a (1, 1, s, s) mask, a scalar).

Multi-layer blocks, as the exporters write them: ``sdpa`` (scaled-dot-product attention, optionally with
grouped KV heads), ``add_layernorm`` (residual Add + LayerNorm: BERT, GPT-2), ``rmsnorm``, ``layernorm_unfused`` (opset < 17 exports), ``gelu_tanh`` (GPT-2),
``gelu_erf`` (un-fused GELU), ``rotary`` (rotate-half position embedding), ``swiglu`` (Llama's MLP, with
or without the residual Add after its bias-free down projection),
``embed_ln`` (embedding + positions + LayerNorm); and whole layers, node for node as exported:
``encoder_layer`` (BERT post-LN, ViT pre-LN), ``gpt2_layer`` (Conv1D as Reshape-Gemm-Reshape, fused QKV
Split, causal mask, tanh GELU), ``decoder_layer`` (Llama/Qwen2: RMSNorm, rotary, GQA, SwiGLU).

:data:`TARGET_OPS` names the ONNX op types each family is there to measure, :data:`SMALL_PARAMS` a small
valid configuration of each (tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from annette.bench.blocks import _NP_TYPES, ELEM, FAMILIES, Family, NetBuilder, Params, _logu
from annette.errors import InvalidOptionError

WIDTHS = (256, 384, 512, 576, 768, 896, 1024, 1280, 1536, 2048, 2304, 3072, 4096)
HEAD_DIMS = (32, 64, 64, 64, 80, 128)
HEADS = (2, 3, 4, 8, 9, 12, 14, 16)
INT64, BOOL = 7, 9  # ONNX element types
MAX_TABLE_ELEMS = 1 << 24  # embedding tables up to 64 MiB of fp32 (larger than a CPU's last-level cache)
# The core campaign draws a micro family by how often its type occurs in torchvision networks, at least 2 %
# (annette.bench.sweeps.family_weights); these 20 families take half that floor each (~15 % of the micro
# draws together, ~110 configurations each in a 20,000-configuration plan), so CNN coverage stays.
MICRO_WEIGHT = 0.5
MULTI_WEIGHT = 0.5  # likewise among the core blocks, where a campaign weighs its block families

TARGET_OPS: dict[str, tuple[str, ...]] = {}
SMALL_PARAMS: dict[str, Params] = {}


def _register(
    name: str, kind: str, build: Any, sample: Any, cost: Any, targets: Sequence[str], small: Params
) -> None:
    weight = MICRO_WEIGHT if kind == "micro" else MULTI_WEIGHT
    FAMILIES.register(name, Family(name, kind, build, sample, cost, stage="core", weight=weight))
    TARGET_OPS[name] = tuple(targets)
    SMALL_PARAMS[name] = small


# -- helpers ----------------------------------------------------------------------------------------------
def _tokens(rng: np.random.Generator) -> tuple[int, int]:
    """(batch, sequence length) as transformer benchmarks use them."""
    return int(rng.choice([1, 1, 1, 2, 4, 8])), _logu(rng, 8, 1024)


def _seq_shape(rng: np.random.Generator) -> list[int]:
    """An activation shape of a transformer: (n, s, d), (n, h, s, hd), (n, h, s, s) or (n, s, 1)."""
    n, s = _tokens(rng)
    kind = rng.choice(["tokens", "heads", "scores", "stats"], p=[0.45, 0.25, 0.2, 0.1])
    if kind == "tokens":
        return [n, s, int(rng.choice(WIDTHS))]
    if kind == "heads":
        return [n, int(rng.choice(HEADS)), s, int(rng.choice(HEAD_DIMS))]
    if kind == "scores":
        return [n, int(rng.choice(HEADS)), min(s, 512), min(s, 512)]
    return [n, s, 1]


def _numel(shape: Sequence[int]) -> float:
    return float(math.prod(shape))


def _scalar(b: NetBuilder, base: str, value: float) -> str:
    return b.const(base, np.array(value, dtype=_NP_TYPES[b.dtype]))


def _ints(b: NetBuilder, base: str, values: Sequence[int]) -> str:
    return b.const(base, np.array(list(values), dtype=np.int64))


def _positive(b: NetBuilder, x: str) -> str:
    """|x| + 0.5: an operand away from zero (no infinities from Sqrt, Reciprocal, Div)."""
    return b.binary("Add", b.node("Abs", [x], b.shapes[x], base="abs"), _scalar(b, "positive.offset", 0.5))


def _token_ids(b: NetBuilder, n: int, s: int, vocab: int) -> str:
    """int64 ids in [0, vocab) spread over the table: u ~ U[-1, 1) -> (u + 1) * vocab / 2 -> Cast."""
    u = b.input((n, s), base="u")
    half = _scalar(b, "ids.half", vocab / 2.0)
    x = b.node("Add", [b.node("Mul", [u, half], (n, s), base="ids_scale"), half], (n, s), base="ids_shift")
    return b.node("Cast", [x], (n, s), base="ids_cast", to=INT64)


def _multi_output(b: NetBuilder, op: str, inputs: Sequence[str], shapes: Sequence[Sequence[int]], base: str,
                  **attrs: Any) -> list[str]:
    from onnx import helper

    name = b._name(base)
    outs = [f"{name}_out{i}" for i in range(len(shapes))]
    b.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
    for o, shape in zip(outs, shapes, strict=True):
        b.shapes[o] = tuple(int(d) for d in shape)
    return outs


def _slice(b: NetBuilder, x: str, axis: int, start: int, end: int) -> str:
    shape = list(b.shapes[x])
    ax = axis % len(shape)
    shape[ax] = max(0, min(end, shape[ax]) - start)
    return b.node("Slice", [x, _ints(b, "slice.starts", [start]), _ints(b, "slice.ends", [end]),
                            _ints(b, "slice.axes", [axis])], shape, base="slice")


def _reduce_mean(b: NetBuilder, x: str) -> str:
    shape = (*b.shapes[x][:-1], 1)
    return b.node("ReduceMean", [x, _ints(b, "mean.axes", [-1])], shape, base="reducemean", keepdims=1)


# -- micro: gather -----------------------------------------------------------------------------------------
def _gather_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    if p["variant"] == "embedding":
        n, s, d, vocab = p["n"], p["s"], p["d"], p["vocab"]
        table = b.weight("embedding.table", (vocab, d))
        return [b.node("Gather", [table, _token_ids(b, n, s, vocab)], (n, s, d), base="gather", axis=0)]
    n, s, d = p["shape"]
    x = b.input((n, s, d))
    return [b.node("Gather", [x, b.const("select.index", np.array(p["index"], dtype=np.int64))], (n, d),
                   base="gather", axis=1)]


def _gather_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    d = int(rng.choice(WIDTHS))
    if rng.random() < 0.8:
        vocab = min(_logu(rng, 1000, 160_000), MAX_TABLE_ELEMS // d)
        return {"variant": "embedding", "n": n, "s": s, "d": d, "vocab": vocab}
    return {"variant": "select", "shape": [n, s, d], "index": 0}


def _gather_cost(p: Mapping[str, Any]) -> float:
    if p["variant"] == "embedding":
        return ELEM * (2.0 * p["n"] * p["s"] * p["d"] + 4 * p["n"] * p["s"])
    n, s, d = p["shape"]
    return ELEM * (n * s * d + n * d)


_register("gather", "micro", _gather_build, _gather_sample, _gather_cost, ("Gather",),
          {"variant": "embedding", "n": 1, "s": 16, "d": 32, "vocab": 1000})


# -- micro: where --------------------------------------------------------------------------------------------
def _where_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    shape = p["shape"]
    x = b.input(shape)
    if p["cond"] == "isnan":  # Where(IsNaN(p), 0, p): the exporters' scaled-dot-product attention
        cond = b.node("IsNaN", [x], shape, base="isnan")
        return [b.node("Where", [cond, _scalar(b, "where.zero", 0.0), x], shape, base="where")]
    mshape = [1, 1, *shape[-2:]] if p["cond"] == "mask" else shape
    cond = b.node("Less", [b.input(mshape, base="m"), _scalar(b, "mask.threshold", 0.0)], mshape, base="less")
    return [b.node("Where", [cond, _scalar(b, "where.fill", -1e4), x], shape, base="where")]


def _scores_shape(rng: np.random.Generator) -> list[int]:
    n, s = _tokens(rng)
    s = min(s, 512)
    return [n, int(rng.choice(HEADS)), s, s]


_register("where", "micro", _where_build,
          lambda rng: {"shape": _scores_shape(rng), "cond": str(rng.choice(["isnan", "isnan", "mask", "full"]))},
          lambda p: 4 * ELEM * _numel(p["shape"]), ("Where",), {"shape": [1, 2, 16, 16], "cond": "isnan"})


# -- micro: split, slice, expand, cast, concat ---------------------------------------------------------------
def _split_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    shape = p["shape"]
    x = b.input(shape)
    part = [*shape[:-1], shape[-1] // p["parts"]]
    return _multi_output(b, "Split", [x], [part] * p["parts"], "split", axis=-1, num_outputs=p["parts"])


def _split_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    parts = int(rng.choice([2, 3, 3]))
    return {"shape": [n, s, parts * int(rng.choice(WIDTHS[:10]))], "parts": parts}


_register("split", "micro", _split_build, _split_sample,
          lambda p: 2 * ELEM * _numel(p["shape"]) if p["shape"][-1] % p["parts"] == 0 else -1.0, ("Split",),
          {"shape": [1, 16, 96], "parts": 3})


def _slice_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return [_slice(b, b.input(p["shape"]), p["axis"], p["start"], p["end"])]


def _slice_sample(rng: np.random.Generator) -> Params:
    if rng.random() < 0.7:  # rotary: one half of the head dimension
        n, s = _tokens(rng)
        hd = int(rng.choice(HEAD_DIMS))
        first = rng.random() < 0.5
        return {"shape": [n, int(rng.choice(HEADS)), s, hd], "axis": 3, "start": 0 if first else hd // 2,
                "end": hd // 2 if first else hd}
    n, s = _tokens(rng)  # a token range, e.g. the CLS row or a truncation
    start = int(rng.choice([0, 1]))
    return {"shape": [n, s, int(rng.choice(WIDTHS))], "axis": 1, "start": start,
            "end": start + 1 if rng.random() < 0.5 else s}


_register("slice", "micro", _slice_build, _slice_sample,
          lambda p: ELEM * (_numel(p["shape"]) + _numel(p["shape"]) * (p["end"] - p["start"]) / p["shape"][p["axis"]])
          if 0 <= p["start"] < p["end"] <= p["shape"][p["axis"]] else -1.0,
          ("Slice",), {"shape": [1, 2, 16, 32], "axis": 3, "start": 16, "end": 32})


def _expand_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    if p["variant"] == "repeat_kv":  # (n, kv, s, hd) -> (n, kv, 1, s, hd) -> (n, kv, rep, s, hd) -> (n, h, s, hd)
        n, kv, s, hd = p["shape"]
        x = b.input((n, kv, s, hd))
        u = b.node("Unsqueeze", [x, _ints(b, "unsqueeze.axes", [2])], (n, kv, 1, s, hd), base="unsqueeze")
        big = (n, kv, p["rep"], s, hd)
        e = b.node("Expand", [u, _ints(b, "expand.shape", big)], big, base="expand")
        return [b.reshape(e, (n, kv * p["rep"], s, hd))]
    n, h, s = p["shape"][0], p["rep"], p["shape"][-1]  # broadcast a (n, 1, s, s) mask over the heads
    x = b.input((n, 1, s, s))
    return [b.node("Expand", [x, _ints(b, "expand.shape", (n, h, s, s))], (n, h, s, s), base="expand")]


def _expand_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    if rng.random() < 0.75:
        return {"variant": "repeat_kv", "shape": [n, int(rng.choice([1, 2, 3, 4, 8])), s, int(rng.choice(HEAD_DIMS))],
                "rep": int(rng.choice([2, 3, 4, 7, 8]))}
    s = min(s, 512)
    return {"variant": "mask", "shape": [n, 1, s, s], "rep": int(rng.choice(HEADS))}


_register("expand", "micro", _expand_build, _expand_sample,
          lambda p: ELEM * _numel(p["shape"]) * (1 + p["rep"]), ("Expand",),
          {"variant": "repeat_kv", "shape": [1, 2, 16, 32], "rep": 3})


def _cast_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    shape = p["shape"]
    to = {"int64": INT64, "bool": BOOL}[p["cast_to"] if "cast_to" in p else p["to"]]  # "to": the first records
    y = b.node("Cast", [b.input(shape)], shape, base="cast", to=to)
    return [b.node("Cast", [y], shape, base="cast_back", to=1 if b.dtype == "float32" else 10)]


_register("cast", "micro", _cast_build,
          lambda rng: {"shape": _seq_shape(rng), "cast_to": str(rng.choice(["int64", "bool"]))},
          lambda p: 4 * ELEM * _numel(p["shape"]) if p.get("cast_to") in ("int64", "bool") else -1.0,
          ("Cast",), {"shape": [1, 16, 32], "cast_to": "bool"})


def _concat_seq_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    shapes = p["shapes"]
    axis = p["axis"]
    xs = [b.input(s) for s in shapes]
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return [b.node("Concat", xs, out, base="concat", axis=axis)]


def _concat_seq_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    if rng.random() < 0.6:  # rotary: cat(-x2, x1) on the head dimension
        half = int(rng.choice(HEAD_DIMS)) // 2
        shape = [n, int(rng.choice(HEADS)), s, half]
        return {"shapes": [shape, shape], "axis": 3}
    d = int(rng.choice(WIDTHS))  # ViT: the CLS token before the patch tokens
    return {"shapes": [[n, 1, d], [n, s, d]], "axis": 1}


_register("concat_seq", "micro", _concat_seq_build, _concat_seq_sample,
          lambda p: 2 * ELEM * sum(_numel(s) for s in p["shapes"]), ("Concat",),
          {"shapes": [[1, 2, 16, 16], [1, 2, 16, 16]], "axis": 3})


# -- micro: matmul on heads, reductions, elementwise ---------------------------------------------------------
def _matmul_heads_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    n, h, m, k, cols = p["n"], p["h"], p["m"], p["k"], p["cols"]
    return [b.matmul(b.input((n, h, m, k)), b.input((n, h, k, cols), base="y"))]


def _matmul_heads_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    s = min(s, 512)
    hd = int(rng.choice(HEAD_DIMS))
    h = int(rng.choice(HEADS))
    if rng.random() < 0.5:  # Q . K^T
        return {"n": n, "h": h, "m": s, "k": hd, "cols": s}
    return {"n": n, "h": h, "m": s, "k": s, "cols": hd}  # P . V


_register("matmul_heads", "micro", _matmul_heads_build, _matmul_heads_sample,
          lambda p: float(p["n"] * p["h"] * (p["m"] * p["k"] * p["cols"]
                                             + ELEM * (p["m"] * p["k"] + p["k"] * p["cols"] + p["m"] * p["cols"]))),
          ("MatMul",), {"n": 1, "h": 2, "m": 16, "k": 32, "cols": 16})


def _tokens_shape(rng: np.random.Generator) -> list[int]:
    n, s = _tokens(rng)
    return [n, s, int(rng.choice(WIDTHS))]


_register("reducemean", "micro", lambda b, p: [_reduce_mean(b, b.input(p["shape"]))],
          lambda rng: {"shape": _tokens_shape(rng)}, lambda p: 2 * ELEM * _numel(p["shape"]), ("ReduceMean",),
          {"shape": [1, 16, 64]})


def _pow_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return [b.node("Pow", [b.input(p["shape"]), _scalar(b, "pow.exponent", float(p["exponent"]))], p["shape"],
                   base="pow")]


_register("pow", "micro", _pow_build,
          lambda rng: {"shape": _tokens_shape(rng), "exponent": int(rng.choice([2, 3]))},
          lambda p: 3 * ELEM * _numel(p["shape"]), ("Pow",), {"shape": [1, 16, 64], "exponent": 3})

UNARY_OPS = {"sqrt": "Sqrt", "reciprocal": "Reciprocal", "neg": "Neg", "erf": "Erf", "sin": "Sin", "cos": "Cos"}


def _unary_family(name: str, op: str) -> None:
    def build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
        x = b.input(p["shape"])
        if op in ("Sqrt", "Reciprocal"):  # keep the operand positive, as RMSNorm's mean of squares + eps is
            x = _positive(b, x)
        return [b.node(op, [x], p["shape"], base=name)]

    _register(name, "micro", build, lambda rng: {"shape": _seq_shape(rng)}, lambda p: 2 * ELEM * _numel(p["shape"]),
              (op,), {"shape": [1, 16, 32]})


for _name, _op in UNARY_OPS.items():
    _unary_family(_name, _op)

BROADCASTS = ("none", "bias", "stat", "mask", "scalar")


def _operand_shape(shape: Sequence[int], broadcast: str) -> list[int]:
    if broadcast == "none":
        return list(shape)
    if broadcast == "bias":
        return [shape[-1]]
    if broadcast == "stat":
        return [*shape[:-1], 1]
    if broadcast == "mask":
        return [1, 1, *shape[-2:]]
    return []


def _binary_seq_family(name: str, op: str) -> None:
    def build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
        shape, broadcast = p["shape"], p["broadcast"]
        x = b.input(shape)
        other = _operand_shape(shape, broadcast)
        if broadcast in ("bias", "mask", "scalar"):  # constants in the exports: a bias, the mask, a scale
            values = b.rng.uniform(0.5, 1.5, size=other).astype(_NP_TYPES[b.dtype])
            y = b.const(f"{name}.operand", np.asarray(values))
        else:
            y = b.input(other, base="y")
            if op == "Div":
                y = _positive(b, y)
        return [b.node(op, [x, y], shape, base=name)]

    def sample(rng: np.random.Generator) -> Params:
        broadcast = str(rng.choice(BROADCASTS))
        if broadcast == "mask":
            return {"shape": _scores_shape(rng), "broadcast": broadcast}
        shape = _tokens_shape(rng)
        return {"shape": shape, "broadcast": broadcast}

    _register(name, "micro", build, sample, lambda p: 3 * ELEM * _numel(p["shape"]), (op,),
              {"shape": [1, 16, 32], "broadcast": "stat"})


for _name, _op in {"add_seq": "Add", "mul_seq": "Mul", "sub": "Sub", "div": "Div"}.items():
    _binary_seq_family(_name, _op)


# -- multi-layer blocks ------------------------------------------------------------------------------------
def _attn_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    heads = int(rng.choice(HEADS))
    kv = heads if rng.random() < 0.6 else int(rng.choice([k for k in (1, 2, 3, 4) if heads % k == 0]))
    return {"n": n, "s": min(s, 512), "heads": heads, "kv_heads": kv, "hd": int(rng.choice(HEAD_DIMS)),
            "mask": int(rng.random() < 0.5)}


def _sdpa_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    n, s, h, kv, hd = p["n"], p["s"], p["heads"], p["kv_heads"], p["hd"]
    q = b.input((n, h, s, hd), base="q")
    k, v = b.input((n, kv, s, hd), base="k"), b.input((n, kv, s, hd), base="v")
    return [_sdpa(b, q, k, v, bool(p["mask"]))]


def _sdpa(b: NetBuilder, q: str, k: str, v: str, causal_mask: bool) -> str:
    """torch.onnx's scaled_dot_product_attention on (n, h, s, hd) heads: q and k^T scaled by hd^-1/4 each,
    QK^T, + mask, softmax, NaN -> 0, . V; grouped KV heads repeated first (Unsqueeze, Expand, Reshape)."""
    n, h, s, hd = b.shapes[q]
    kv = b.shapes[k][1]
    if h % kv:
        raise InvalidOptionError(f"sdpa: kv_heads={kv} must divide heads={h}")
    if kv != h:
        def repeat(t: str) -> str:
            u = b.node("Unsqueeze", [t, _ints(b, "unsqueeze.axes", [2])], (n, kv, 1, s, hd), base="unsqueeze")
            e = b.node("Expand", [u, _ints(b, "expand.shape", (n, kv, h // kv, s, hd))], (n, kv, h // kv, s, hd),
                       base="expand")
            return b.reshape(e, (n, h, s, hd))

        k, v = repeat(k), repeat(v)
    kt = b.reshape(b.transpose(b.reshape(k, (n * h, s, hd)), (0, 2, 1)), (n, h, hd, s))
    scale = _scalar(b, "sdpa.scale", hd ** -0.25)
    scores = b.matmul(b.binary("Mul", q, scale), b.binary("Mul", kt, scale))
    if causal_mask:
        causal = np.triu(np.full((s, s), -1e4, dtype=_NP_TYPES[b.dtype]), 1).reshape(1, 1, s, s)
        scores = b.binary("Add", scores, b.const("sdpa.mask", causal))
    probs = b.softmax(scores)
    probs = b.node("Where", [b.node("IsNaN", [probs], b.shapes[probs], base="isnan"), _scalar(b, "sdpa.zero", 0.0),
                             probs], b.shapes[probs], base="where")
    return b.matmul(probs, v)


_register("sdpa", "multi", _sdpa_build, _attn_sample,
          lambda p: float(p["n"] * p["heads"] * p["s"] * (2 * p["s"] * p["hd"] + ELEM * (6 * p["s"] + 4 * p["hd"]))),
          ("MatMul", "Softmax", "IsNaN", "Where"),
          {"n": 1, "s": 16, "heads": 4, "kv_heads": 2, "hd": 32, "mask": 1})


def _rmsnorm_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return [_rmsnorm(b, b.input(p["shape"]))]


def _rmsnorm(b: NetBuilder, x: str) -> str:
    """Llama's RMSNorm as exported: x * 1 / sqrt(mean(x^2) + eps) * weight."""
    shape = b.shapes[x]
    ms = _reduce_mean(b, b.node("Pow", [x, _scalar(b, "rms.two", 2.0)], shape, base="pow"))
    stat = b.node("Reciprocal", [b.node("Sqrt", [b.binary("Add", ms, _scalar(b, "rms.eps", 1e-6))], b.shapes[ms],
                                         base="sqrt")], b.shapes[ms], base="reciprocal")
    return b.binary("Mul", b.binary("Mul", x, stat), b.weight("rms.weight", (shape[-1],)))


_register("rmsnorm", "multi", _rmsnorm_build, lambda rng: {"shape": _tokens_shape(rng)},
          lambda p: 6 * ELEM * _numel(p["shape"]), ("Pow", "ReduceMean", "Sqrt", "Reciprocal", "Mul"),
          {"shape": [1, 16, 64]})


def _layernorm_unfused_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    shape = p["shape"]
    x = b.input(shape)
    centred = b.binary("Sub", x, _reduce_mean(b, x))
    var = _reduce_mean(b, b.node("Pow", [centred, _scalar(b, "ln.two", 2.0)], shape, base="pow"))
    std = b.node("Sqrt", [b.binary("Add", var, _scalar(b, "ln.eps", 1e-5))], b.shapes[var], base="sqrt")
    y = b.binary("Div", centred, std)
    return [b.binary("Add", b.binary("Mul", y, b.weight("ln.weight", (shape[-1],))), b.weight("ln.bias", (shape[-1],)))]


_register("layernorm_unfused", "multi", _layernorm_unfused_build, lambda rng: {"shape": _tokens_shape(rng)},
          lambda p: 8 * ELEM * _numel(p["shape"]), ("ReduceMean", "Sub", "Pow", "Sqrt", "Div"),
          {"shape": [1, 16, 64]})


def _gelu_tanh_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return [_gelu_tanh(b, b.input(p["shape"]))]


def _gelu_tanh(b: NetBuilder, x: str) -> str:
    """GPT-2's gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), node for node as exported."""
    shape = b.shapes[x]
    half = b.binary("Mul", x, _scalar(b, "gelu.half", 0.5))
    cube = b.binary("Mul", b.node("Pow", [x, _scalar(b, "gelu.three", 3.0)], shape, base="pow"),
                    _scalar(b, "gelu.c", 0.044715))
    inner = b.binary("Mul", b.binary("Add", x, cube), _scalar(b, "gelu.k", math.sqrt(2.0 / math.pi)))
    t = b.binary("Add", b.node("Tanh", [inner], shape, base="tanh"), _scalar(b, "gelu.one", 1.0))
    return b.binary("Mul", half, t)


_register("gelu_tanh", "multi", _gelu_tanh_build, lambda rng: {"shape": _tokens_shape(rng)},
          lambda p: 8 * ELEM * _numel(p["shape"]), ("Pow", "Tanh", "Mul", "Add"), {"shape": [1, 16, 64]})


def _gelu_erf_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    """x * 0.5 * (1 + erf(x / sqrt 2)), as opset < 20 exports write GELU."""
    shape = p["shape"]
    x = b.input(shape)
    e = b.node("Erf", [b.binary("Div", x, _scalar(b, "gelu.sqrt2", math.sqrt(2.0)))], shape, base="erf")
    return [b.binary("Mul", b.binary("Mul", x, b.binary("Add", e, _scalar(b, "gelu.one", 1.0))),
                     _scalar(b, "gelu.half", 0.5))]


_register("gelu_erf", "multi", _gelu_erf_build, lambda rng: {"shape": _tokens_shape(rng)},
          lambda p: 5 * ELEM * _numel(p["shape"]), ("Div", "Erf", "Add", "Mul"), {"shape": [1, 16, 64]})


def _rotary_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    return [_rotary(b, b.input((p["n"], p["heads"], p["s"], p["hd"])))]


def _rotary(b: NetBuilder, q: str) -> str:
    """q * cos + rotate_half(q) * sin, rotate_half(q) = cat(-q[..., hd/2:], q[..., :hd/2])."""
    n, h, s, hd = b.shapes[q]
    angles = np.arange(s)[:, None] * (10000.0 ** (-np.arange(hd // 2) * 2.0 / hd))[None, :]
    angles = np.concatenate([angles, angles], axis=1).reshape(1, 1, s, hd)
    cos = b.const("rotary.cos", np.cos(angles).astype(_NP_TYPES[b.dtype]))
    sin = b.const("rotary.sin", np.sin(angles).astype(_NP_TYPES[b.dtype]))
    first, second = _slice(b, q, 3, 0, hd // 2), _slice(b, q, 3, hd // 2, hd)
    neg = b.node("Neg", [second], b.shapes[second], base="neg")
    rotated = b.node("Concat", [neg, first], (n, h, s, hd), base="concat", axis=-1)
    return b.binary("Add", b.binary("Mul", q, cos), b.binary("Mul", rotated, sin))


_register("rotary", "multi", _rotary_build,
          lambda rng: {"n": _tokens(rng)[0], "heads": int(rng.choice(HEADS)), "s": _logu(rng, 8, 1024),
                       "hd": int(rng.choice(HEAD_DIMS))},
          lambda p: 8 * ELEM * p["n"] * p["heads"] * p["s"] * p["hd"], ("Slice", "Neg", "Concat", "Mul", "Add"),
          {"n": 1, "heads": 2, "s": 16, "hd": 32})


def _swiglu_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input((p["n"], p["s"], p["d"]))
    down = _swiglu(b, x, p["hidden"])
    return [b.binary("Add", down, x) if p.get("residual") else down]  # a decoder layer adds the residual


def _swiglu(b: NetBuilder, x: str, hidden: int) -> str:
    """Llama's MLP: down(silu(gate(x)) * up(x)), bias-free projections."""
    gate = b.linear(x, hidden, base="gate", bias=False)
    act = b.binary("Mul", gate, b.node("Sigmoid", [gate], b.shapes[gate], base="sigmoid"))
    up = b.linear(x, hidden, base="up", bias=False)
    return b.linear(b.binary("Mul", act, up), b.shapes[x][-1], base="down", bias=False)


_register("swiglu", "multi", _swiglu_build,
          lambda rng: {"n": 1, "s": _logu(rng, 8, 512), "d": int(rng.choice(WIDTHS[:9])),
                       "hidden": int(rng.choice([1024, 1536, 2048, 2816, 4864])), "residual": int(rng.random() < 0.5)},
          lambda p: float(3 * p["n"] * p["s"] * p["d"] * p["hidden"] + 4 * ELEM * p["n"] * p["s"] * p["hidden"]),
          ("MatMul", "Sigmoid", "Mul", "Add"), {"n": 1, "s": 16, "d": 32, "hidden": 64, "residual": 1})


def _embed_ln_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    n, s, d, vocab = p["n"], p["s"], p["d"], p["vocab"]
    table = b.weight("embedding.table", (vocab, d))
    x = b.node("Gather", [table, _token_ids(b, n, s, vocab)], (n, s, d), base="gather", axis=0)
    x = b.binary("Add", x, b.weight("embedding.positions", (1, s, d)))
    return [b.layernorm(x)]


_register("embed_ln", "multi", _embed_ln_build,
          lambda rng: {"n": _tokens(rng)[0], "s": _logu(rng, 8, 512), "d": (d := int(rng.choice(WIDTHS[:9]))),
                       "vocab": min(_logu(rng, 1000, 160_000), MAX_TABLE_ELEMS // d)},
          lambda p: ELEM * 6.0 * p["n"] * p["s"] * p["d"], ("Gather", "Add", "LayerNormalization"),
          {"n": 1, "s": 16, "d": 32, "vocab": 1000})



def _add_layernorm_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    x = b.input(p["shape"])
    return [b.layernorm(b.binary("Add", x, b.input(p["shape"], base="residual")))]


_register("add_layernorm", "multi", _add_layernorm_build, lambda rng: {"shape": _tokens_shape(rng)},
          lambda p: 4 * ELEM * _numel(p["shape"]), ("Add", "LayerNormalization"), {"shape": [1, 16, 64]})


# -- whole transformer layers, node for node as torch.onnx exports them --------------------------------------
def _heads(b: NetBuilder, t: str, heads: int) -> str:
    """(n, s, heads * hd) -> (n, heads, s, hd)."""
    n, s, d = b.shapes[t]
    return b.transpose(b.reshape(t, (n, s, heads, d // heads)), (0, 2, 1, 3))


def _merge(b: NetBuilder, t: str) -> str:
    """(n, h, s, hd) -> (n, s, h * hd)."""
    n, h, s, hd = b.shapes[t]
    return b.reshape(b.transpose(t, (0, 2, 1, 3)), (n, s, h * hd))


def _layer_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    d = int(rng.choice([128, 192, 256, 384, 512, 768]))
    return {"n": n, "s": min(s, 256), "d": d, "heads": d // int(rng.choice([32, 64])), "ratio": 4}


def _layer_cost(p: Mapping[str, Any]) -> float:
    n, s, d = p["n"], p["s"], p["d"]
    if d % p["heads"]:
        return -1.0  # invalid (e.g. a refined width): redraw
    return float(n * s * (4 * d * d + 2 * p["ratio"] * d * d + 2 * s * d) + ELEM * n * s * d * (12 + 2 * p["ratio"]))


def _encoder_layer_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    """BERT's layer (post-LN: attention, Add, LayerNorm, MLP, Add, LayerNorm) or ViT's (pre-LN)."""
    n, s, d, heads = p["n"], p["s"], p["d"], p["heads"]
    x = b.input((n, s, d))
    pre = p["norm"] == "pre"
    y = b.layernorm(x) if pre else x
    q, k, v = (_heads(b, b.linear(y, d, base=name), heads) for name in ("q", "k", "v"))
    h = b.binary("Add", b.linear(_merge(b, _sdpa(b, q, k, v, False)), d, base="o"), x)
    if not pre:
        h = b.layernorm(h)
    y = b.layernorm(h) if pre else h
    y = b.linear(b.act(b.linear(y, p["ratio"] * d, base="fc1"), "gelu"), d, base="fc2")
    out = b.binary("Add", y, h)
    return [out if pre else b.layernorm(out)]


_register("encoder_layer", "multi", _encoder_layer_build,
          lambda rng: {**_layer_sample(rng), "norm": str(rng.choice(["post", "pre"]))}, _layer_cost,
          ("MatMul", "Add", "LayerNormalization", "Softmax", "IsNaN", "Where", "Gelu"),
          {"n": 1, "s": 16, "d": 64, "heads": 2, "ratio": 4, "norm": "post"})


def _gemm2d(b: NetBuilder, x: str, cout: int, base: str) -> str:
    """GPT-2's Conv1D: (n, s, d) -> Reshape (n*s, d) -> Gemm with a (d, cout) weight -> Reshape (n, s, cout)."""
    n, s, d = b.shapes[x]
    w = b.weight(f"{base}.weight", (d, cout), scale=1.0 / math.sqrt(d))
    y = b.node("Gemm", [b.reshape(x, (n * s, d)), w, b.weight(f"{base}.bias", (cout,))], (n * s, cout), base=base)
    return b.reshape(y, (n, s, cout))


def _gpt2_layer_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    n, s, d, heads = p["n"], p["s"], p["d"], p["heads"]
    x = b.input((n, s, d))
    qkv = _gemm2d(b, b.layernorm(x), 3 * d, "c_attn")
    q, k, v = (_heads(b, t, heads) for t in _multi_output(b, "Split", [qkv], [(n, s, d)] * 3, "split", axis=2,
                                                          num_outputs=3))
    h = b.binary("Add", _gemm2d(b, _merge(b, _sdpa(b, q, k, v, True)), d, "c_proj"), x)
    y = _gemm2d(b, _gelu_tanh(b, _gemm2d(b, b.layernorm(h), p["ratio"] * d, "c_fc")), d, "mlp_proj")
    return [b.binary("Add", y, h)]


_register("gpt2_layer", "multi", _gpt2_layer_build, _layer_sample, _layer_cost,
          ("Gemm", "Split", "Pow", "Tanh", "Softmax", "IsNaN", "Where", "LayerNormalization"),
          {"n": 1, "s": 16, "d": 64, "heads": 2, "ratio": 4})


def _decoder_layer_build(b: NetBuilder, p: Mapping[str, Any]) -> list[str]:
    """A Llama/Qwen2 decoder layer: RMSNorm, q/k/v (Qwen2: with biases), rotary, grouped KV heads, causal
    attention, o projection + residual, RMSNorm, SwiGLU + residual."""
    n, s, d, heads, kv = p["n"], p["s"], p["d"], p["heads"], p["kv_heads"]
    hd = d // heads
    x = b.input((n, s, d))
    y = _rmsnorm(b, x)
    bias = bool(p["qkv_bias"])
    q = _rotary(b, _heads(b, b.linear(y, d, base="q", bias=bias), heads))
    k = _rotary(b, _heads(b, b.linear(y, kv * hd, base="k", bias=bias), kv))
    v = _heads(b, b.linear(y, kv * hd, base="v", bias=bias), kv)
    h = b.binary("Add", b.linear(_merge(b, _sdpa(b, q, k, v, True)), d, base="o", bias=False), x)
    return [b.binary("Add", _swiglu(b, _rmsnorm(b, h), p["hidden"]), h)]


def _decoder_layer_sample(rng: np.random.Generator) -> Params:
    n, s = _tokens(rng)
    hd = int(rng.choice([32, 64]))
    heads = int(rng.choice([4, 6, 8, 9, 12, 14]))
    kv = int(rng.choice([k for k in (1, 2, 3, heads) if heads % k == 0]))
    d = heads * hd
    return {"n": n, "s": min(s, 256), "d": d, "heads": heads, "kv_heads": kv, "hidden": int(d * rng.choice([2.75, 4, 5.5])),
            "qkv_bias": int(rng.random() < 0.4)}


def _decoder_layer_cost(p: Mapping[str, Any]) -> float:
    n, s, d, heads, kv = p["n"], p["s"], p["d"], p["heads"], p["kv_heads"]
    if d % heads or (d // heads) % 2 or heads % kv:
        return -1.0  # rotary needs an even head size, GQA kv heads that divide the heads
    return float(n * s * (2 * d * d + 2 * d * d // heads * kv + 3 * d * p["hidden"] + 2 * s * d)
                 + ELEM * n * s * (20 * d + 4 * p["hidden"]))


_register("decoder_layer", "multi", _decoder_layer_build, _decoder_layer_sample, _decoder_layer_cost,
          ("MatMul", "Pow", "ReduceMean", "Sqrt", "Reciprocal", "Slice", "Neg", "Concat", "Expand", "Softmax",
           "IsNaN", "Where", "Sigmoid"),
          {"n": 1, "s": 16, "d": 64, "heads": 4, "kv_heads": 2, "hidden": 128, "qkv_bias": 1})

TRANSFORMER_FAMILIES: tuple[str, ...] = tuple(TARGET_OPS)
