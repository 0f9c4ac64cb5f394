"""NAS-Bench-201: parsing, sampling, closed-form parameter/op counts, ONNX runs, torch reference."""

from __future__ import annotations

import collections
import importlib.util

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from annette.errors import ModelFileError
from annette.spaces import nb201

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
# NAS-Bench-201's best CIFAR-10 cell: five 3x3 convolutions and one skip per cell.
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
# Every op, a zero node (node 1) read by a conv and a skip.
MIXED = "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|"


def trainable_params(model: onnx.ModelProto) -> int:
    """Parameters as PyTorch counts them: no BatchNorm running statistics, no folded constants."""
    skip = (".running_mean", ".running_var", ".zero")
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if not t.name.endswith(skip))


def conv_bn(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + 2 * cout


# Closed form of the macro skeleton (everything but the cells):
# stem conv+BN, two residual reduction blocks (conv_a, conv_b with BN; 1x1 shortcut conv without BN),
# final BN and the 64->10 classifier with bias.
SKELETON = (
    conv_bn(3, 16, 3)
    + conv_bn(16, 32, 3) + conv_bn(32, 32, 3) + 16 * 32
    + conv_bn(32, 64, 3) + conv_bn(64, 64, 3) + 32 * 64
    + 2 * 64 + 64 * 10 + 10
)  # fmt: skip


def test_parse_roundtrip_and_index() -> None:
    for text in (ALL_3X3, ALL_NONE, BEST, MIXED):
        arch = nb201.parse_arch(text)
        assert str(arch) == text
        assert nb201.Arch.from_index(arch.index) == arch
    assert nb201.NUM_ARCHS == 15625
    assert nb201.Arch.from_index(0).ops == ("none",) * 6
    assert nb201.parse_arch(MIXED).op(2, 1) == "nor_conv_1x1"
    assert len(set(nb201.all_archs())) == 15625


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|conv_5x5~1|+|none~0|none~1|none~2|", "'conv_5x5'"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "3 node groups"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|none~0|none~1|none~2|", "node 2 needs 2"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~1|none~0|+|none~0|none~1|none~2|", "'nor_conv_3x3~1'"),
        ("|nor_conv_3x3-0|+|none~0|none~1|+|none~0|none~1|none~2|", "'nor_conv_3x3-0'"),
        ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
    ],
)
def test_parse_errors_name_the_token(text: str, needle: str) -> None:
    with pytest.raises(ModelFileError, match="NAS-Bench-201") as info:
        nb201.parse_arch(text)
    assert needle in str(info.value)


def test_sample_archs_uniform_distinct_deterministic() -> None:
    a = nb201.sample_archs(2000, seed=3)
    assert a == nb201.sample_archs(2000, seed=3)
    assert a != nb201.sample_archs(2000, seed=4)
    assert len(set(a)) == 2000
    # Each edge's op is uniform over the five: 2000 draws per edge -> 400 expected per op (sd ~ 18).
    for k in range(6):
        counts = collections.Counter(nb201.parse_arch(s).ops[k] for s in a)
        assert set(counts) == set(nb201.ALL_OPS)
        assert all(300 < c < 500 for c in counts.values()), counts
    with pytest.raises(ValueError):
        nb201.sample_archs(15626, seed=0)


def test_param_counts_match_nas_bench_201() -> None:
    # NAS-Bench-201 reports 1.531546 MB (all 3x3) and 0.073306 MB (no parametric op) on CIFAR-10.
    cells_3x3 = 5 * 6 * (conv_bn(16, 16, 3) + conv_bn(32, 32, 3) + conv_bn(64, 64, 3))
    assert SKELETON + cells_3x3 == 1_531_546
    assert SKELETON == 73_306
    assert trainable_params(nb201.onnx_from_arch(ALL_3X3)) == 1_531_546
    assert trainable_params(nb201.onnx_from_arch(ALL_SKIP)) == 73_306
    assert trainable_params(nb201.onnx_from_arch(ALL_NONE)) == 73_306
    best = SKELETON + 5 * 5 * (conv_bn(16, 16, 3) + conv_bn(32, 32, 3) + conv_bn(64, 64, 3))
    assert trainable_params(nb201.onnx_from_arch(BEST)) == best == 1_288_506
    mixed_cell = lambda c: conv_bn(c, c, 3) * 2 + conv_bn(c, c, 1)  # noqa: E731
    assert trainable_params(nb201.onnx_from_arch(MIXED)) == SKELETON + 5 * sum(map(mixed_cell, (16, 32, 64)))


def op_counts(model: onnx.ModelProto) -> collections.Counter[str]:
    return collections.Counter(n.op_type for n in model.graph.node)


def test_op_counts_closed_form() -> None:
    # Skeleton: 1 stem conv + 3 per reduction block; 2 + 2 per block BN; ReLU 2 per block + final.
    c = op_counts(nb201.onnx_from_arch(ALL_3X3))
    assert c["Conv"] == 1 + 2 * 3 + 15 * 6
    assert c["BatchNormalization"] == 1 + 2 * 2 + 1 + 15 * 6
    assert c["Relu"] == 2 * 2 + 1 + 15 * 6
    assert c["Add"] == 2 + 15 * (1 + 2)  # node 2 sums 2 edges, node 3 sums 3
    assert c["AveragePool"] == 2 and c["Gemm"] == 1 and c["Mul"] == 0
    c = op_counts(nb201.onnx_from_arch(ALL_NONE))
    assert c["Conv"] == 7 and c["Add"] == 2 and c["Mul"] == 15  # every cell output is a zero tensor
    c = op_counts(nb201.onnx_from_arch(ALL_SKIP))
    assert c["Conv"] == 7 and c["Add"] == 2 + 15 * 3
    c = op_counts(nb201.onnx_from_arch(MIXED))
    assert c["Mul"] == 15 and c["Conv"] == 7 + 15 * 3 and c["AveragePool"] == 2 + 15
    assert c["Add"] == 2 + 15 * 3  # node 2: 1 add, node 3: 2 adds
    # Dead operations are not emitted: node 1 feeds nothing that reaches node 3.
    dead = "|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|nor_conv_1x1~0|none~1|skip_connect~2|"
    c = op_counts(nb201.onnx_from_arch(dead))
    assert c["Conv"] == 7 + 15 * 2


def test_nodes_named_uniquely_and_model_checks() -> None:
    model = nb201.onnx_from_arch(MIXED, batch=2)
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names)
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [2, 10]


def test_onnx_runs_in_onnxruntime() -> None:
    import onnxruntime as ort

    for arch, batch in ((BEST, 1), (ALL_NONE, 1), (MIXED, 3)):
        sess = ort.InferenceSession(
            nb201.onnx_from_arch(arch, batch=batch).SerializeToString(), providers=["CPUExecutionProvider"]
        )
        x = np.random.default_rng(0).random((batch, 3, 32, 32), dtype=np.float32)
        (out,) = sess.run(None, {"input": x})
        assert out.shape == (batch, 10)
        assert np.isfinite(out).all()


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_matches_torch_reference_implementation() -> None:
    """A direct re-implementation of NAS-Bench-201's TinyNetwork/InferCell (every edge, Zero = x*0)."""
    import onnxruntime as ort
    import torch
    from torch import nn

    model = nb201.onnx_from_arch(MIXED, seed=5)
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}

    def conv(name: str, cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
        m = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        m.weight.data = weights[f"{name}.weight"]
        return m

    def bn(name: str, c: int) -> nn.BatchNorm2d:
        m = nn.BatchNorm2d(c)
        for attr in ("weight", "bias", "running_mean", "running_var"):
            getattr(m, attr).data = weights[f"{name}.{attr}"]
        return m

    def rcb(name: str, cin: int, cout: int, k: int, stride: int = 1) -> nn.Module:
        return nn.Sequential(nn.ReLU(), conv(f"{name}/conv", cin, cout, k, stride), bn(f"{name}/bn", cout))

    class Zero(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul(0.0)

    class Cell(nn.Module):
        def __init__(self, name: str, c: int) -> None:
            super().__init__()
            arch = nb201.parse_arch(MIXED)
            self.edges = nn.ModuleDict()
            for j, i in nb201.EDGES:
                op = arch.op(j, i)
                key = f"{name}/e{i}{j}_{op}"
                self.edges[f"{i}{j}"] = {
                    "none": lambda: Zero(),
                    "skip_connect": lambda: nn.Identity(),
                    "nor_conv_1x1": lambda: rcb(key, c, c, 1),  # noqa: B023
                    "nor_conv_3x3": lambda: rcb(key, c, c, 3),  # noqa: B023
                    "avg_pool_3x3": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                }[op]()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            nodes = [x]
            for j in range(1, 4):
                nodes.append(sum(self.edges[f"{i}{j}"](nodes[i]) for i in range(j)))  # type: ignore[misc]
            return nodes[3]

    class Reduction(nn.Module):
        def __init__(self, name: str, cin: int, cout: int) -> None:
            super().__init__()
            self.a = rcb(f"{name}/conv_a", cin, cout, 3, 2)
            self.b = rcb(f"{name}/conv_b", cout, cout, 3)
            self.down = nn.Sequential(nn.AvgPool2d(2, 2, 0), conv(f"{name}/downsample/conv", cin, cout, 1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.down(x) + self.b(self.a(x))

    layers: list[nn.Module] = [conv("stem/conv", 3, 16, 3), bn("stem/bn", 16)]
    c, k = 16, 0
    for stage in range(3):
        if stage:
            layers.append(Reduction(f"reduce{stage}", c, 2 * c))
            c *= 2
        for _ in range(5):
            layers.append(Cell(f"cell{k}", c))
            k += 1
    fc = nn.Linear(64, 10)
    fc.weight.data, fc.bias.data = weights["classifier.weight"], weights["classifier.bias"]
    layers += [bn("lastact/bn", 64), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc]
    net = nn.Sequential(*layers).eval()

    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(
        nb201.onnx_from_arch(MIXED, batch=2, seed=5).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (got,) = sess.run(None, {"input": x})
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)
    # A different seed gives different weights, so the comparison is not vacuous.
    other = nb201.onnx_from_arch(MIXED, batch=2, seed=6).SerializeToString()
    (got6,) = ort.InferenceSession(other, providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert not np.allclose(got6, expected, rtol=1e-2)


def test_graph_from_arch_closed_form_macs_and_names() -> None:
    from annette.graph.accounting import account

    g = nb201.graph_from_arch(ALL_3X3, batch=2)
    assert g.name == f"nb201:{ALL_3X3}"
    assert g.inputs[0].shape == (2, 3, 32, 32) and g.layers[-1].output.shape == (2, 10)
    # Layers keep the ONNX node names (runtime profiles link back to them).
    assert [layer.name for layer in g.layers] == [n.name for n in nb201.onnx_from_arch(ALL_3X3).graph.node]
    # Conv MACs by hand (batch 2): stem 3*16*9*32^2; per stage 30 convs C*C*9*HW; reductions
    # conv_a Cin*Cout*9*HW' + conv_b Cout^2*9*HW' + shortcut Cin*Cout*HW'.
    stem = 3 * 16 * 9 * 32 * 32
    cells = 30 * (16 * 16 * 9 * 32 * 32 + 32 * 32 * 9 * 16 * 16 + 64 * 64 * 9 * 8 * 8)
    red = (16 * 32 * 9 + 32 * 32 * 9 + 16 * 32) * 16 * 16 + (32 * 64 * 9 + 64 * 64 * 9 + 32 * 64) * 8 * 8
    conv_macs = sum(account(layer).macs for layer in g.layers if layer.op == "Conv")
    assert conv_macs == 2 * (stem + cells + red) == 2 * 220_119_040
    # NAS-Bench-201's smallest network (no parametric cell op): 7.78 M conv MACs.
    g0 = nb201.graph_from_arch(ALL_NONE)
    assert sum(account(layer).macs for layer in g0.layers if layer.op == "Conv") == stem + red == 7_782_400


def test_nb201_scheme_in_load_model_and_model_to_onnx() -> None:
    from annette.importers import load_model, model_to_onnx

    g = load_model(f"nb201:{MIXED}", batch=2)
    assert g == nb201.graph_from_arch(MIXED, batch=2)
    proto = model_to_onnx(f"nb201:{MIXED}", batch=2)
    assert proto.SerializeToString() == nb201.onnx_from_arch(MIXED, batch=2).SerializeToString()
    with pytest.raises(ModelFileError, match="conv_5x5"):
        load_model("nb201:|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|")


def test_an_onnx_form_over_protobufs_limit_is_one_clear_error_not_an_encode_error(monkeypatch) -> None:
    """torchvision's ViT-H/14 is 2.5 GB: ``annette evaluate --zoo torchvision`` died with protobuf's EncodeError."""
    import annette.importers as importers

    proto = importers.model_to_onnx(f"nb201:{MIXED}")
    monkeypatch.setattr(importers, "PROTO_LIMIT_BYTES", proto.ByteSize() - 1)  # this cell stands in for a 2 GiB one
    with pytest.raises(ModelFileError, match=r"over protobuf's 2 GiB limit"):
        importers.model_to_onnx(f"nb201:{MIXED}")


def test_a_model_protobuf_cannot_even_size_is_the_same_clear_error() -> None:
    """RegNet-Y-128GF (2.6 GB): protobuf's ByteSize itself raised EncodeError, before the size was compared."""
    from types import SimpleNamespace

    from google.protobuf.message import EncodeError

    import annette.importers as importers

    def refuses() -> int:
        raise EncodeError("Failed to serialize proto")

    huge = SimpleNamespace(ByteSize=refuses, graph=SimpleNamespace(initializer=[SimpleNamespace(raw_data=b"x" * 8)]))
    with pytest.raises(ModelFileError, match=r"torchvision:regnet_y_128gf.*over protobuf's 2 GiB limit"):
        importers._within_proto_limit("torchvision:regnet_y_128gf", huge)
