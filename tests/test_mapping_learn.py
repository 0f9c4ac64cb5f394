"""The mapping model: learning recovers a known target's rules, and applying them reproduces its execution."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import hwsynth
from annette.errors import HardwareModelError
from annette.mapping import MappingRules, apply, learn_rules, read_profile
from annette.mapping.mapped import Flow
from annette.mapping.rules import AttrCondition, FusionRule, RemovalRule
from annette.records import NodeProfile


@pytest.fixture(scope="module")
def records():  # type: ignore[no-untyped-def]
    return hwsynth.campaign(n_conv=30)


@pytest.fixture(scope="module")
def rules(records) -> MappingRules:  # type: ignore[no-untyped-def]
    return learn_rules(records, run_overhead_ms=hwsynth.RUN_MS)


def test_learns_the_fusions_with_their_condition(rules: MappingRules) -> None:
    fusions = {f.pattern: f for f in rules.fusions}
    assert set(fusions) == {("Conv", "Add", "Relu"), ("Conv", "Relu"), ("Conv", "MaxPool"), ("Gemm", "Relu")}
    assert fusions[("Conv", "MaxPool")].conditions == (AttrCondition(0, "strides", ((1, 1),)),)
    for pattern in (("Conv", "Add", "Relu"), ("Conv", "Relu"), ("Gemm", "Relu")):
        assert fusions[pattern].conditions == ()
        assert fusions[pattern].evidence.agreement == 1.0 and fusions[pattern].evidence.n_instances >= 16
    assert [len(f.pattern) for f in rules.fusions] == sorted((len(f.pattern) for f in rules.fusions), reverse=True)


def test_timing_test_corroborates_where_singles_exist(rules: MappingRules) -> None:
    conv_relu = next(f for f in rules.fusions if f.pattern == ("Conv", "Relu"))
    assert conv_relu.evidence.n_timing == 16 and conv_relu.evidence.timing_agreement == 1.0


def test_learns_removals_with_the_producer_condition(rules: MappingRules) -> None:
    removals = {r.op: r for r in rules.removals}
    assert set(removals) == {"Flatten", "BatchNormalization"}
    assert removals["Flatten"].after is None
    assert removals["BatchNormalization"].after == ("Conv",)  # folded after a Conv, run after an Add


def test_learns_insertions_side_and_neighbours(rules: MappingRules) -> None:
    ins = {r.op_type: r for r in rules.insertions}
    assert set(ins) == {"ReorderInput", "ReorderOutput"}
    assert (ins["ReorderInput"].anchor_op, ins["ReorderInput"].position) == ("Conv", "before")
    assert ins["ReorderInput"].neighbours == ("<input>",)
    assert (ins["ReorderOutput"].anchor_op, ins["ReorderOutput"].position) == ("Conv", "after")
    assert set(ins["ReorderOutput"].neighbours) == {"<output>", "MaxPool"}
    assert all(r.count == 1 and r.evidence.agreement == 1.0 for r in ins.values())


def _signature(nodes):  # type: ignore[no-untyped-def]
    return [(n.op_type if not n.members else "+".join(m.name for m in n.members)) for n in nodes]


def test_applying_learned_rules_reproduces_the_targets_execution(rules: MappingRules) -> None:
    rng = np.random.default_rng(7)
    b = hwsynth.Builder("unseen", (1, 16, 32, 32))
    x = b.relu(b.bn(b.conv(b.input, 24, 3, 1)))  # Conv+BN(folded)+Relu
    y = b.relu(b.add(b.conv(x, 24, 3, 1), x))  # residual Conv+Add+Relu
    z = b.maxpool(b.conv(y, 32, 1, 1))  # stride-1 Conv+MaxPool
    w = b.maxpool(b.conv(z, 32, 3, 2))  # stride-2: not fused
    out = b.relu(b.gemm(b.flatten(b.bn(b.add(w, w))), 10))
    graph = b.graph(out)
    mapped = apply(graph, rules)
    truth = hwsynth.execute(graph)
    got = [(e.primary.op if e.inserted else "+".join(m.name for m in e.members)) for e in mapped.executed]
    assert got == _signature(truth)
    assert set(mapped.removed) == {"batchnormalization_1", "flatten_12"}  # not the BN after the Add
    assert mapped.rule_hits["fuse:Conv+MaxPool"] == 1
    # and the synthetic record of the graph is read back to the same executed layers
    run = read_profile(hwsynth.record(graph, "multi", "check", rng))
    assert run is not None and set(run.removed) == set(mapped.removed)


def test_rules_json_round_trip(rules: MappingRules) -> None:
    again = MappingRules.from_dict(json.loads(json.dumps(rules.to_dict())))
    assert again.fusions == rules.fusions and again.removals == rules.removals
    assert again.insertions == rules.insertions
    with pytest.raises(HardwareModelError, match="schema version"):
        MappingRules.from_dict({**rules.to_dict(), "schema_version": 99})
    with pytest.raises(HardwareModelError, match="malformed"):
        MappingRules.from_dict({"schema_version": 1, "fusions": [{"conditions": []}], "removals": [],
                                "insertions": []})


def test_timing_alone_decides_without_profiles(records) -> None:  # type: ignore[no-untyped-def]
    bare = [replace(r, profile=()) for r in records]
    rules = learn_rules(bare, run_overhead_ms=hwsynth.RUN_MS)
    assert [f.pattern for f in rules.fusions] == [("Conv", "Relu")]
    assert rules.fusions[0].evidence.n_instances == 0 and rules.fusions[0].evidence.n_timing == 16
    assert rules.removals == () and rules.insertions == ()


def test_disagreeing_data_give_no_rule(records) -> None:  # type: ignore[no-untyped-def]
    # Split every fused Conv+Relu node in half of the records: the profile no longer supports the fusion.
    def split(rec, i):  # type: ignore[no-untyped-def]
        if rec.family != "conv_relu" or i % 2:
            return rec
        prof = []
        for p in rec.profile:
            if len(p.covers) == 2:
                prof += [NodeProfile(p.node, "Conv", p.time_ms / 2, p.covers[:1]),
                         NodeProfile(p.node + "_relu", "Relu", p.time_ms / 2, p.covers[1:])]
            else:
                prof.append(p)
        return replace(rec, profile=tuple(prof))

    rules = learn_rules([split(r, i) for i, r in enumerate(records)], run_overhead_ms=hwsynth.RUN_MS)
    conv_relu = next(f for f in rules.fusions if f.pattern == ("Conv", "Relu"))
    # Still a rule (conv_bn_relu and head records fuse it everywhere), but its evidence shows the dissent.
    assert conv_relu.evidence.n_agree < conv_relu.evidence.n_instances


def test_removal_condition_and_flow_bypass() -> None:
    b = hwsynth.Builder("g", (1, 4, 8, 8))
    y = b.relu(b.bn(b.conv(b.input, 4)))
    graph = b.graph(y)
    rules = MappingRules(
        fusions=(FusionRule(("Conv", "Relu")),), removals=(RemovalRule("BatchNormalization", ("Conv",)),)
    )
    mapped = apply(graph, rules)
    assert [e.covers for e in mapped.executed] == [("conv_0", "relu_2")]
    assert Flow(graph, mapped.removed).source("batchnormalization_1_out") == "conv_0"
    # without the removal the BN sits between Conv and Relu: no chain, three executed layers
    assert len(apply(graph, MappingRules(fusions=(FusionRule(("Conv", "Relu")),))).executed) == 3


def test_a_layer_run_as_unnamed_kernels_is_one_executed_layer() -> None:
    # ORT runs a lone HardSwish as HardSigmoid + Mul nodes whose names link to no graph layer.
    b = hwsynth.Builder("hs", (1, 8, 4, 4))
    graph = b.graph(b._add("HardSwish", [b.input], (1, 8, 4, 4)))
    rec = hwsynth.record(graph, "micro", "hardswish", np.random.default_rng(0), profile=False)
    rec = replace(rec, profile=(NodeProfile("HardSigmoid_1", "HardSigmoid", 0.003),
                                NodeProfile("Mul_2", "Mul", 0.004)))
    run = read_profile(rec)
    assert run is not None and run.removed == frozenset()
    [(ex, t, n)] = run.executed({})
    assert ex.covers == ("hardswish_0",) and t == pytest.approx(0.007) and n == 2


def test_insertion_learns_a_shape_condition(records) -> None:  # type: ignore[no-untyped-def]
    # A target that reorders a Conv's input only when its channels fill blocks of 8.
    def blocked(rec):  # type: ignore[no-untyped-def]
        keep = []
        for p in rec.profile:
            if p.op_type == "ReorderInput":
                conv = rec.graph.layer(p.node.removeprefix("reorder_in_"))
                if conv.inputs[0].shape[1] % 8:
                    continue
            keep.append(p)
        return replace(rec, profile=tuple(keep))

    rules = learn_rules([blocked(r) for r in records], run_overhead_ms=hwsynth.RUN_MS)
    rule = next(r for r in rules.insertions if r.op_type == "ReorderInput")
    assert rule.neighbours == ("<input>",) and [str(c) for c in rule.conditions] == ["in_c % 8 == 0"]
    assert rule.evidence.agreement == 1.0
    again = MappingRules.from_dict(json.loads(json.dumps(rules.to_dict())))
    assert again.insertions == rules.insertions
    b = hwsynth.Builder("g", (1, 12, 8, 8))
    mapped = apply(b.graph(b.conv(b.conv(b.input, 16), 8)), rules)
    assert [e.primary.op for e in mapped.executed] == ["Conv", "Conv", "ReorderOutput"]  # 12 channels: no reorder


def test_fusion_learns_a_shape_condition(records) -> None:  # type: ignore[no-untyped-def]
    # A target that fuses Conv→Relu only into convolutions whose input channels fill blocks of 4 (ORT fuses
    # HardSwish only into its blocked-layout convolutions): the rule must say so, not list channel counts.
    def blocked(rec):  # type: ignore[no-untyped-def]
        nodes = []
        for p in rec.profile:
            layers = [rec.graph.layer(c) for c in p.covers]
            if [x.op for x in layers] == ["Conv", "Relu"] and layers[0].inputs[0].shape[1] % 4:
                nodes += [replace(p, covers=(layers[0].name,)), replace(p, node=f"{p.node}_act", op_type="Relu",
                                                                       covers=(layers[1].name,))]
            else:
                nodes.append(p)
        return replace(rec, profile=tuple(nodes))

    rules = learn_rules([blocked(r) for r in records], run_overhead_ms=hwsynth.RUN_MS)
    rule = next(f for f in rules.fusions if f.pattern == ("Conv", "Relu"))
    assert rule.conditions == () and [str(c) for c in rule.shape_conditions] == ["in_c % 4 == 0"]
    assert rule.evidence.agreement == 1.0
    assert MappingRules.from_dict(json.loads(json.dumps(rules.to_dict()))).fusions == rules.fusions
    for c, fused in ((12, True), (6, False)):
        b = hwsynth.Builder("g", (1, c, 8, 8))
        mapped = apply(b.graph(b.relu(b.conv(b.input, 8))), rules)
        assert [e.ops for e in mapped.executed if not e.inserted] == (
            [("Conv", "Relu")] if fused else [("Conv",), ("Relu",)]
        )


def test_fusion_learns_self_gating() -> None:
    # x·sigmoid(x) runs as one node, sigmoid(s)·x (a gate on another tensor) as two: the rule must tell them apart.
    records = []
    for i, c in enumerate((8, 8, 16, 16, 24, 24)):
        b = hwsynth.Builder(f"g{i}", (1, c, 4, 4))
        x = b.relu(b.input)
        gate = b._add("Sigmoid", [b.relu(x) if i % 2 else x], x.shape)
        graph = b.graph(b._add("Mul", [x, gate], x.shape))
        names = [layer.name for layer in graph.layers]
        if i % 2:  # relu, relu, sigmoid, mul: gate on another tensor
            nodes = [NodeProfile(n, graph.layer(n).op, 0.01, (n,)) for n in names]
        else:  # relu, sigmoid, mul: self-gated
            nodes = [NodeProfile(names[0], "Relu", 0.01, (names[0],)),
                     NodeProfile(names[2], "Mul", 0.01, (names[1], names[2]))]
        rec = hwsynth.record(graph, "multi", "gate", np.random.default_rng(i))
        records.append(replace(rec, profile=tuple(nodes)))
    rule = next(f for f in learn_rules(records).fusions if f.pattern == ("Sigmoid", "Mul"))
    assert rule.closed is True and rule.evidence.agreement == 1.0
    assert FusionRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    rules = MappingRules(fusions=(rule,))
    ops = [[e.ops for e in apply(r.graph, rules).executed] for r in records[:2]]
    assert ops[0] == [("Relu",), ("Sigmoid", "Mul")]
    assert ops[1] == [("Relu",), ("Relu",), ("Sigmoid",), ("Mul",)]


def test_inner_occurrences_decide_a_fusion() -> None:
    # Conv→Add is fused when the skip comes from another layer, not when it is the graph input (ORT: a blocked
    # Conv takes a residual Add only from a blocked tensor): the inner occurrences decide, so networks fuse it.
    records = []
    for i in range(24):
        inner = i % 2 == 0
        b = hwsynth.Builder(f"r{i}", (1, 8 + 4 * i, 8, 8))
        skip = b.relu(b.input) if inner else b.input
        graph = b.graph(b.add(b.conv(skip, 8 + 4 * i), skip))
        names = [layer.name for layer in graph.layers]
        groups = [names[:1], names[1:]] if inner else [[n] for n in names]
        nodes = tuple(NodeProfile(g[0], graph.layer(g[0]).op, 0.01, tuple(g)) for g in groups)
        records.append(replace(hwsynth.record(graph, "multi", "residual", np.random.default_rng(i)), profile=nodes))
    rule = next(f for f in learn_rules(records).fusions if f.pattern == ("Conv", "Add"))
    assert not rule.conditional and rule.evidence.n_instances == 12 and rule.evidence.agreement == 1.0


def test_fusion_learns_a_conv_with_its_swish() -> None:
    # OpenVINO runs Conv→x·σ(x) (the Conv's output read by both the Sigmoid and the Mul) as one node: the chain
    # walks through the fork and rejoins it at the Mul; a Conv whose output also feeds a layer outside never fuses.
    records = []
    for i, c in enumerate((8, 16, 24, 32)):
        b = hwsynth.Builder(f"s{i}", (1, c, 8, 8))
        x = b.conv(b.input, c)
        y = b._add("Mul", [x, b._add("Sigmoid", [x], x.shape)], x.shape)
        graph = b.graph(b.relu(y))
        names = [layer.name for layer in graph.layers]
        nodes = (NodeProfile(names[0], "Conv", 0.01, tuple(names[:3])), NodeProfile(names[3], "Relu", 0.01, (names[3],)))
        records.append(replace(hwsynth.record(graph, "multi", "swish", np.random.default_rng(i)), profile=nodes))
    rule = next(f for f in learn_rules(records).fusions if f.pattern == ("Conv", "Sigmoid", "Mul"))
    assert rule.evidence.n_instances == 4 and rule.evidence.agreement == 1.0 and rule.forks
    assert FusionRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    rules = MappingRules(fusions=(rule,))
    assert [e.ops for e in apply(records[0].graph, rules).executed] == [("Conv", "Sigmoid", "Mul"), ("Relu",)]
    linear = MappingRules(fusions=(replace(rule, forks=False),))  # a rule learned on linear chains only
    assert [e.ops for e in apply(records[0].graph, linear).executed][0] == ("Conv",)
    b = hwsynth.Builder("bn", (1, 8, 8, 8))  # the fork one member later: Conv → BN → x·σ(x)
    x = b.bn(b.conv(b.input, 8))
    graph = b.graph(b._add("Mul", [x, b._add("Sigmoid", [x], x.shape)], x.shape))
    pattern = ("Conv", "BatchNormalization", "Sigmoid", "Mul")
    assert [e.ops for e in apply(graph, MappingRules(fusions=(FusionRule(pattern, forks=True),))).executed] == [pattern]
    assert len(apply(graph, MappingRules(fusions=(FusionRule(pattern),))).executed) == 4  # linear only: unfused
    b = hwsynth.Builder("leaky", (1, 8, 8, 8))
    x = b.conv(b.input, 8)
    y = b._add("Mul", [x, b._add("Sigmoid", [x], x.shape)], x.shape)
    graph = b.graph(b.add(y, b.relu(x)))  # the Conv's output has a third reader
    assert [e.ops for e in apply(graph, rules).executed][0] == ("Conv",)
    assert Flow(graph).chain(graph.layers[0], ("Conv", "Sigmoid")) is None  # the branch never rejoins
