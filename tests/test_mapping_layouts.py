"""Blocked-layout propagation (ONNX Runtime's NCHWc): learned from profiles whose kernels name their layout,
applied by propagating layouts through a graph, so that conversions appear only where a plain and a blocked
layer meet, not wherever a neighbour's op type once needed one."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

import hwsynth
from annette.mapping import MappingRules, apply, learn_rules
from annette.mapping.rules import LayoutRule, Layouts, ShapeCondition
from annette.records import BenchRecord, NodeProfile

NCHWC = "com.microsoft.nchwc"
ALIGNED = (ShapeCondition("in_c", "mod", 8),)
LAYOUTS = Layouts(
    "ReorderInput",
    "ReorderOutput",
    blocked=(LayoutRule("Conv", "plain", ALIGNED), LayoutRule("Conv", "blocked", ALIGNED),
             LayoutRule("Relu", "blocked"), LayoutRule("Add", "blocked")),
    converts=(LayoutRule("Conv", "plain", (ShapeCondition("in_c", "ge", 8),)),),
)  # fmt: skip


def _ops(graph, rules: MappingRules) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.primary.op for e in apply(graph, rules).executed]


def test_layouts_propagate_through_layout_agnostic_layers() -> None:
    b = hwsynth.Builder("g", (1, 16, 8, 8))
    x = b.conv(b.input, 16)
    y = b.conv(b.relu(x), 16)  # Relu on a blocked tensor stays blocked: no conversion on either side
    z = b.add(y, x)
    rules = MappingRules(layouts=LAYOUTS)
    assert _ops(b.graph(b.conv(z, 16)), rules) == ["ReorderInput", "Conv", "Relu", "Conv", "Add", "Conv", "ReorderOutput"]


def test_one_conversion_per_blocked_tensor_read_by_plain_layers() -> None:
    b = hwsynth.Builder("g", (1, 16, 8, 8))
    x = b.conv(b.input, 16)
    y = b.add(b.maxpool(x, 1), b.maxpool(x, 1))  # two plain readers (MaxPool has no rule here) of one tensor
    mapped = apply(b.graph(y), MappingRules(layouts=LAYOUTS))
    assert [e.primary.op for e in mapped.executed] == ["ReorderInput", "Conv", "ReorderOutput", "MaxPool", "MaxPool", "Add"]
    assert mapped.rule_hits == {"layout:ReorderInput": 1, "layout:ReorderOutput": 1}


def test_unaligned_channels_run_plain_and_small_inputs_are_read_as_is() -> None:
    b = hwsynth.Builder("g", (1, 3, 8, 8))
    x = b.conv(b.input, 16)  # 3 input channels: not blocked by the rules (in_c % 8), so plain; no conversion
    y = b.conv(x, 12)  # 16 channels, plain input: blocked, converted (in_c >= 8)
    out = b.conv(y, 16)  # 12 input channels: plain again, so the blocked tensor before it is converted back
    assert _ops(b.graph(out), MappingRules(layouts=LAYOUTS)) == ["Conv", "ReorderInput", "Conv", "ReorderOutput", "Conv"]


def _profiled(graph, nodes: list[tuple[str, str, tuple[str, ...], str]]) -> BenchRecord:  # type: ignore[no-untyped-def]
    rec = hwsynth.record(graph, "multi", "layout", np.random.default_rng(0), profile=False)
    return replace(rec, profile=tuple(NodeProfile(n, op, 0.01, covers, ex) for n, op, covers, ex in nodes))


def _campaign() -> list[BenchRecord]:
    """A target that runs convolutions with whole 8-channel blocks blocked, and Relu on whatever it reads."""
    records = []
    for c in (8, 16, 24, 32, 40, 12, 20):
        b = hwsynth.Builder(f"g{c}", (1, c, 8, 8))
        x = b.conv(b.input, c)
        y = b.conv(b.relu(x), c)
        g = b.graph(b.flatten(y))
        conv0, relu, conv1, flat = (layer.name for layer in g.layers)
        if c % 8 == 0:
            nodes = [("ri", "ReorderInput", (), f"{NCHWC}:ReorderInput"), (conv0, "Conv", (conv0,), f"{NCHWC}:Conv"),
                     (relu, "Relu", (relu,), "ai.onnx:Relu"), (conv1, "Conv", (conv1,), f"{NCHWC}:Conv"),
                     ("ro", "ReorderOutput", (), f"{NCHWC}:ReorderOutput"), (flat, "Flatten", (flat,), "ai.onnx:Flatten")]
        else:
            nodes = [(n, op, (n,), f"ai.onnx:{op}") for n, op in zip((conv0, relu, conv1, flat), ("Conv", "Relu", "Conv", "Flatten"), strict=True)]
        records.append(_profiled(g, nodes))
        # a Relu straight on the (plain) graph input runs plain: the next convolution converts it
        b = hwsynth.Builder(f"h{c}", (1, c, 8, 8))
        g = b.graph(b.conv(b.relu(b.input), c))
        relu, conv = (layer.name for layer in g.layers)
        if c % 8 == 0:
            nodes = [(relu, "Relu", (relu,), "ai.onnx:Relu"), ("ri", "ReorderInput", (), f"{NCHWC}:ReorderInput"),
                     (conv, "Conv", (conv,), f"{NCHWC}:Conv"), ("ro", "ReorderOutput", (), f"{NCHWC}:ReorderOutput")]
        else:
            nodes = [(relu, "Relu", (relu,), "ai.onnx:Relu"), (conv, "Conv", (conv,), "ai.onnx:Conv")]
        records.append(_profiled(g, nodes))
    return records  # fmt: skip


def test_learns_which_layers_run_blocked_and_the_conversions() -> None:
    rules = learn_rules(_campaign())
    layouts = rules.layouts
    assert layouts is not None and (layouts.to_blocked, layouts.to_plain) == ("ReorderInput", "ReorderOutput")
    blocked = {(r.op, r.inputs): [str(c) for c in r.conditions] for r in layouts.blocked}
    assert blocked == {("Conv", "plain"): ["in_c % 8 == 0"], ("Conv", "blocked"): [], ("Relu", "blocked"): []}
    assert rules.insertions == ()  # the conversions are the layout model's, not neighbour rules
    assert MappingRules.from_dict(json.loads(json.dumps(rules.to_dict()))).layouts == layouts
    # applied inside a network: one conversion in, one out, none around the Relu between blocked convolutions
    b = hwsynth.Builder("net", (1, 16, 8, 8))
    y = b.conv(b.relu(b.conv(b.relu(b.conv(b.input, 16)), 16)), 16)
    assert _ops(b.graph(b.flatten(y)), rules) == [
        "ReorderInput", "Conv", "Relu", "Conv", "Relu", "Conv", "ReorderOutput", "Flatten"
    ]  # fmt: skip


def test_profiles_without_layout_names_learn_no_layouts() -> None:
    records = [replace(r, profile=tuple(replace(p, exec_type="") for p in r.profile)) for r in _campaign()]
    assert learn_rules(records).layouts is None


def test_learns_and_applies_merges_of_repeated_computations() -> None:
    """Two ReLUs of one tensor, each feeding a convolution: a target with common-subexpression elimination runs
    one ReLU (its profile has no node of the repeat's own); one without runs both."""

    def graph(c: int):  # type: ignore[no-untyped-def]
        b = hwsynth.Builder(f"cse{c}", (1, c, 8, 8))
        x = b.conv(b.input, c)
        return b.graph(b.add(b.conv(b.relu(x), c), b.conv(b.relu(x), c)))

    def record(c: int, merged: bool) -> BenchRecord:  # type: ignore[no-untyped-def]
        g = graph(c)
        names = [layer.name for layer in g.layers]  # conv, relu, conv, relu, conv, add
        nodes = [(n, g.layer(n).op, (n,), "") for n in names if not (merged and n == names[3])]
        return _profiled(g, nodes)

    rules = learn_rules([record(c, True) for c in (8, 16, 24)])
    assert [(m.op, m.evidence.n_instances, m.evidence.n_agree) for m in rules.merges] == [("Relu", 3, 3)]
    assert MappingRules.from_dict(json.loads(json.dumps(rules.to_dict()))).merges == rules.merges
    mapped = apply(graph(32), rules)
    assert [e.primary.op for e in mapped.executed] == ["Conv", "Relu", "Conv", "Conv", "Add"]
    assert mapped.removed == ("relu_3",) and mapped.rule_hits["merge:Relu"] == 1
    assert learn_rules([record(c, False) for c in (8, 16, 24)]).merges == ()


def test_a_second_layout_rule_covers_what_the_first_leaves_out() -> None:
    """ONNX Runtime's NCHWc convolution also takes a plain input of very few channels (a network's first layer),
    without a conversion: learned as a second rule for the same op and input layout (any rule holding suffices)."""
    records = _campaign()
    for c in (1, 2, 3):
        b = hwsynth.Builder(f"stem{c}", (1, c, 8, 8))
        g = b.graph(b.flatten(b.conv(b.conv(b.input, 16), 16)))
        conv0, conv1, flat = (layer.name for layer in g.layers)
        records.append(_profiled(g, [(conv0, "Conv", (conv0,), f"{NCHWC}:Conv"), (conv1, "Conv", (conv1,), f"{NCHWC}:Conv"),
                                     ("ro", "ReorderOutput", (), f"{NCHWC}:ReorderOutput"),
                                     (flat, "Flatten", (flat,), "ai.onnx:Flatten")]))
    for c in (12, 20, 28):  # unaligned inputs of more channels run plain, whatever the output
        b = hwsynth.Builder(f"wide{c}", (1, c, 8, 8))
        g = b.graph(b.conv(b.input, 16))
        conv = g.layers[0].name
        records.append(_profiled(g, [(conv, "Conv", (conv,), "ai.onnx:Conv")]))
    layouts = learn_rules(records).layouts
    assert layouts is not None
    plain = [r for r in layouts.blocked if (r.op, r.inputs) == ("Conv", "plain")]
    assert [str(c) for c in plain[0].conditions] == ["in_c % 8 == 0"] and len(plain) == 2
    assert all(c.test == "lt" for c in plain[1].conditions)
    rules = MappingRules(layouts=layouts)
    b = hwsynth.Builder("net", (1, 3, 8, 8))  # a stem on 3 channels: blocked from the start, converted only at the end
    assert _ops(b.graph(b.flatten(b.conv(b.conv(b.input, 16), 16))), rules) == ["Conv", "Conv", "ReorderOutput", "Flatten"]
    b = hwsynth.Builder("net", (1, 12, 8, 8))  # 12 channels: neither rule holds, so plain
    assert _ops(b.graph(b.flatten(b.conv(b.input, 16))), rules) == ["Conv", "Flatten"]
    assert ShapeCondition("in_c", "lt", 4).holds(b.graph(b.conv(b.input, 16)).layers[0]) is False
