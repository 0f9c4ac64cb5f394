"""Closed-form oracles for the per-layer accounting (annette.graph.accounting)."""

from __future__ import annotations

import math

import pytest

from annette.errors import UnsupportedOperatorError
from annette.graph.accounting import ZERO_COST_OPS, LayerCost, account, account_graph, supported_ops
from annette.graph.ir import Graph, Layer, TensorSpec


def T(name: str, *shape: int, dtype: str = "float32") -> TensorSpec:
    return TensorSpec(name, tuple(shape), dtype)


def L(op: str, inputs: list[TensorSpec], outputs: list[TensorSpec], weights: list[TensorSpec] = (), **attrs) -> Layer:  # type: ignore[assignment]
    return Layer(f"{op.lower()}_0", op, tuple(inputs), tuple(outputs), tuple(weights), attrs)


def test_conv_dense_with_bias_counts_macs_params_and_bytes() -> None:
    layer = L("Conv", [T("x", 1, 3, 224, 224)], [T("y", 1, 64, 112, 112)], [T("w", 64, 3, 7, 7), T("b", 64)],
              kernel_shape=(7, 7), strides=(2, 2), pads=(3, 3, 3, 3), group=1)
    c = account(layer)
    assert c.macs == 64 * 112 * 112 * 3 * 7 * 7 == 118_013_952
    assert c.flops == 2 * c.macs
    assert c.params == c.weight_elems == 64 * 3 * 49 + 64
    assert c.input_elems == 3 * 224 * 224 and c.input_bytes == 4 * 3 * 224 * 224
    assert c.output_bytes == 4 * 64 * 112 * 112
    assert c.weight_bytes == 4 * (64 * 3 * 49 + 64)
    assert not c.zero_cost


def test_conv_depthwise_grouped_and_dilated() -> None:
    dw = L("Conv", [T("x", 2, 32, 56, 56)], [T("y", 2, 32, 56, 56)], [T("w", 32, 1, 3, 3)], kernel_shape=(3, 3), group=32)
    assert account(dw).macs == 2 * 32 * 56 * 56 * 9
    grouped = L("Conv", [T("x", 1, 64, 28, 28)], [T("y", 1, 128, 28, 28)], [T("w", 128, 16, 3, 3)], kernel_shape=(3, 3), group=4)
    assert account(grouped).macs == 128 * 28 * 28 * 16 * 9
    # dilation 2, stride 2: 32 -> (32 + 2*2 - 2*(3-1) - 1) // 2 + 1 = 16; MACs depend only on the output size
    dil = L("Conv", [T("x", 1, 8, 32, 32)], [T("y", 1, 16, 16, 16)], [T("w", 16, 8, 3, 3)], dilations=(2, 2), strides=(2, 2))
    assert account(dil).macs == 16 * 16 * 16 * 8 * 9  # kernel taken from the weight when the attr is absent
    conv1d = L("Conv", [T("x", 1, 4, 100)], [T("y", 1, 6, 98)], [T("w", 6, 4, 3)], kernel_shape=(3,))
    assert account(conv1d).macs == 6 * 98 * 4 * 3


def test_conv_transpose() -> None:
    layer = L("ConvTranspose", [T("x", 1, 16, 8, 8)], [T("y", 1, 8, 16, 16)], [T("w", 16, 8, 4, 4)],
              kernel_shape=(4, 4), strides=(2, 2), pads=(1, 1, 1, 1), group=1)
    assert account(layer).macs == 16 * 8 * 8 * 8 * 16  # in_elems * (C_out/group) * k*k


def test_gemm_and_matmul_variants() -> None:
    gemm = L("Gemm", [T("x", 2, 512)], [T("y", 2, 1000)], [T("w", 1000, 512), T("b", 1000)], transB=1)
    c = account(gemm)
    assert c.macs == 2 * 1000 * 512 and c.flops == 2 * c.macs and c.params == 512_000 + 1000
    gemm_ta = L("Gemm", [T("x", 512, 3)], [T("y", 3, 10)], [T("w", 512, 10)], transA=1)
    assert account(gemm_ta).macs == 3 * 10 * 512
    attn = L("MatMul", [T("q", 1, 12, 197, 64), T("k", 1, 12, 64, 197)], [T("s", 1, 12, 197, 197)])
    assert account(attn).macs == 12 * 197 * 197 * 64
    assert account(attn).params == 0
    bcast = L("MatMul", [T("a", 2, 1, 5, 4), T("b", 3, 4, 6)], [T("y", 2, 3, 5, 6)])
    assert account(bcast).macs == 2 * 3 * 5 * 6 * 4
    const_first = L("MatMul", [T("x", 1, 20, 30)], [T("y", 1, 10, 30)], [T("w", 10, 20)])
    assert account(const_first).macs == 10 * 30 * 20
    vec = L("MatMul", [T("x", 4)], [T("y", 5)], [T("w", 4, 5)])
    assert account(vec).macs == 20
    linear3d = L("MatMul", [T("x", 1, 197, 768)], [T("y", 1, 197, 3072)], [T("w", 768, 3072)])
    assert account(linear3d).macs == 197 * 768 * 3072 and account(linear3d).params == 768 * 3072


def test_einsum() -> None:
    layer = L("Einsum", [T("q", 2, 4, 10, 8), T("k", 2, 4, 12, 8)], [T("y", 2, 4, 10, 12)], equation="bhqd,bhkd->bhqk")
    assert account(layer).macs == 2 * 4 * 10 * 12 * 8
    ell = L("Einsum", [T("a", 3, 5, 7), T("b", 7, 2)], [T("y", 3, 5, 2)], equation="...k,kn->...n")
    assert account(ell).macs == 3 * 5 * 7 * 2


def test_pools() -> None:
    mp = L("MaxPool", [T("x", 1, 64, 112, 112)], [T("y", 1, 64, 56, 56)], kernel_shape=(3, 3), strides=(2, 2))
    c = account(mp)
    assert c.macs == 0 and c.flops == 64 * 56 * 56 * 9
    ap = L("AveragePool", [T("x", 1, 8, 10, 10)], [T("y", 1, 8, 5, 5)], kernel_shape=(2, 2), strides=(2, 2))
    assert account(ap).flops == 8 * 25 * 4
    gap = L("GlobalAveragePool", [T("x", 1, 2048, 7, 7)], [T("y", 1, 2048, 1, 1)])
    assert account(gap).flops == 2048 * 49
    assert account(L("GlobalMaxPool", [T("x", 1, 3, 4, 4)], [T("y", 1, 3, 1, 1)])).flops == 48


@pytest.mark.parametrize(
    ("op", "factor"),
    [("Add", 1), ("Sub", 1), ("Mul", 1), ("Div", 1), ("Pow", 1), ("Sqrt", 1), ("Erf", 1), ("Relu", 1),
     ("Clip", 2), ("Sigmoid", 4), ("HardSigmoid", 3), ("HardSwish", 4), ("Gelu", 4), ("Tanh", 1),
     ("Softplus", 3), ("LeakyRelu", 2), ("Softmax", 5), ("LayerNormalization", 8),
     ("InstanceNormalization", 8), ("GroupNormalization", 8), ("BatchNormalization", 2)],
)
def test_elementwise_factors(op: str, factor: int) -> None:
    layer = L(op, [T("x", 2, 3, 5, 7)], [T("y", 2, 3, 5, 7)])
    c = account(layer)
    assert c.flops == factor * 2 * 3 * 5 * 7 and c.macs == 0


def test_broadcast_add_where_prelu_and_variadic() -> None:
    add = L("Add", [T("x", 1, 64, 56, 56)], [T("y", 1, 64, 56, 56)], [T("b", 1, 64, 1, 1)])
    c = account(add)
    assert c.flops == 64 * 56 * 56 and c.params == 64 and c.weight_bytes == 256
    where = L("Where", [T("c", 1, 1, 4, 4, dtype="bool"), T("x", 2, 3, 4, 4)], [T("y", 2, 3, 4, 4)], [T("v", 1)])
    cw = account(where)
    assert cw.flops == 2 * 3 * 16 and cw.input_bytes == 16 * 1 + 96 * 4
    prelu = L("PRelu", [T("x", 1, 8, 4, 4)], [T("y", 1, 8, 4, 4)], [T("s", 8, 1, 1)])
    assert account(prelu).flops == 2 * 128 and account(prelu).params == 8
    three = [T("a", 10), T("b", 10), T("c", 10)]
    assert account(L("Sum", three, [T("y", 10)])).flops == 20
    assert account(L("Mean", three, [T("y", 10)])).flops == 30
    assert account(L("Max", three, [T("y", 10)])).flops == 20


def test_batchnorm_params_exclude_running_stats() -> None:
    bn = L("BatchNormalization", [T("x", 1, 32, 8, 8)], [T("y", 1, 32, 8, 8)],
           [T("scale", 32), T("bias", 32), T("mean", 32), T("var", 32)])
    c = account(bn)
    assert c.params == 64 and c.weight_elems == 128 and c.flops == 2 * 32 * 64


def test_resize_modes() -> None:
    x, y = T("x", 1, 4, 8, 8), T("y", 1, 4, 16, 16)
    assert account(L("Resize", [x], [y], mode="nearest")).flops == 0
    assert account(L("Resize", [x], [y], mode="linear")).flops == 4 * 256 * 2 * 2**2
    assert account(L("Resize", [x], [y], mode="cubic")).flops == 4 * 256 * 2 * 4**2
    assert account(L("Upsample", [x], [y])).flops == 0


def test_data_movement_and_reductions() -> None:
    concat = L("Concat", [T("a", 1, 3, 4, 4), T("b", 1, 5, 4, 4)], [T("y", 1, 8, 4, 4)], axis=1)
    c = account(concat)
    assert c.flops == 0 and c.input_bytes == 4 * 128 and c.output_bytes == 4 * 128 and not c.zero_cost
    tr = account(L("Transpose", [T("x", 2, 3, 4)], [T("y", 4, 3, 2)], perm=(2, 1, 0)))
    assert tr.flops == 0 and tr.output_elems == 24 and not tr.zero_cost
    gather = account(L("Gather", [T("x", 1, 197, 768)], [T("y", 1, 768)], axis=1, indices=0))
    assert gather.output_bytes == 768 * 4
    idx = account(L("Gather", [T("x", 1, 197, 768)], [T("y", 1, 5, 768)], [T("i", 5, dtype="int64")], axis=1))
    assert idx.params == 0 and idx.weight_elems == 5 and idx.weight_bytes == 40  # indices are not parameters
    rm = account(L("ReduceMean", [T("x", 1, 64, 7, 7)], [T("y", 1, 64, 1, 1)], axes=(2, 3)))
    assert rm.flops == 64 * 49
    split = account(L("Split", [T("x", 1, 6, 2)], [T("a", 1, 2, 2), T("b", 1, 4, 2)]))
    assert split.output_elems == 12 and split.flops == 0
    lrn = account(L("LRN", [T("x", 1, 8, 4, 4)], [T("y", 1, 8, 4, 4)], size=5))
    assert lrn.flops == 128 * 8


def test_dtype_aware_bytes() -> None:
    c = account(L("Relu", [T("x", 1, 1000, dtype="float16")], [T("y", 1, 1000, dtype="float16")]))
    assert c.input_bytes == 2000 and c.output_bytes == 2000
    c8 = account(L("Add", [T("x", 10, dtype="int8"), T("z", 10, dtype="int8")], [T("y", 10, dtype="int8")]))
    assert c8.input_bytes == 20 and c8.output_bytes == 10


@pytest.mark.parametrize("op", sorted(ZERO_COST_OPS))
def test_zero_cost_ops_count_nothing(op: str) -> None:
    c = account(L(op, [T("x", 1, 3, 4, 4)], [T("y", 1, 48)], [T("s", 2, dtype="int64")]))
    assert c == LayerCost(zero_cost=True)


def test_unknown_op_raises_naming_layer_and_op() -> None:
    layer = Layer("mystery_7", "NonMaxSuppression", (T("x", 1, 4),), (T("y", 1, 4),))
    with pytest.raises(UnsupportedOperatorError, match=r"mystery_7.*NonMaxSuppression"):
        account(layer)
    assert "NonMaxSuppression" not in supported_ops()
    assert {"Conv", "Reshape", "Softmax"} <= supported_ops()


def test_account_graph_totals_are_sums() -> None:
    x, h, y = T("x", 1, 3, 8, 8), T("h", 1, 4, 8, 8), T("y", 1, 4, 8, 8)
    conv = Layer("conv", "Conv", (x,), (h,), (T("w", 4, 3, 3, 3),), {"kernel_shape": (3, 3), "pads": (1, 1, 1, 1)})
    relu = Layer("relu", "Relu", (h,), (y,))
    flat = Layer("flat", "Flatten", (y,), (T("f", 1, 256),))
    g = Graph("g", (x,), (conv, relu, flat), ("f",)).validate()
    gc = account_graph(g)
    assert list(gc.layers) == ["conv", "relu", "flat"]
    assert gc.total.macs == 4 * 64 * 27
    assert gc.total.flops == 2 * 4 * 64 * 27 + 256
    assert gc.total.params == 108
    assert gc.total.output_bytes == 4 * (256 + 256)
    assert not gc.total.zero_cost and gc.layers["flat"].zero_cost
    assert gc.to_dict()["totals"]["macs"] == gc.total.macs
    assert math.isclose(sum(c.flops for _, c in gc), gc.total.flops)
