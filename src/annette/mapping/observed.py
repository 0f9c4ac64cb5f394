"""What a runtime executed, linked to the graph layers it implements: the observed mapping.

A backend's profiler reports :class:`~annette.records.ExecutedNode` entries in the runtime's own names
(``Prepared.profile``); :func:`link_profile` links them, once, to the layers of the graph the caller holds, and
gives the :class:`~annette.records.NodeProfile` entries a benchmark record stores (each executed node with its
label time and the layers it ``covers``). The runtimes' naming habits are known here: the affixes they add to
node names (:func:`resolve_runtime_name`), the ONNX ops their own op types implement (``RUNTIME_OPS``,
``SPLIT_INTO``), and how layers that no node names were fused or removed (:func:`link_layers`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

from annette.graph.accounting import ZERO_COST_OPS
from annette.graph.ir import Graph
from annette.records import ExecutedNode, NodeProfile
from annette.stats import label_of


def link_profile(graph: Graph, nodes: Iterable[ExecutedNode]) -> tuple[NodeProfile, ...]:
    """The profile of ``nodes`` (one runtime's profiled run of ``graph``'s model), linked to ``graph``'s layers.

    One :class:`NodeProfile` per node that ran, in the runtime's order: its label time over its profiled runs
    (``annette.stats.label_of``) and the layers it covers (in graph order). The nodes' ``origins`` name layers
    (read as each node's ``naming`` says); :func:`link_layers` assigns the layers no node names, but never to
    an inserted node; the layers of nodes that did not run were removed. Nodes named ``none`` cover no layer.
    """
    nodes = tuple(nodes)
    ran = [n for n in nodes if n.ran]
    anchors: dict[str, set[str]] = {}
    for n in ran:
        if n.naming == "node":
            anchors[n.node] = _named(graph, n) - _claimed(anchors)
        elif n.naming == "members":
            anchors[n.node] = _named(graph, n)
    covers: dict[str, set[str]] = {}
    if anchors:
        removed = {layer for n in nodes if not n.ran for layer in _named(graph, n)} - _claimed(anchors)
        inserted = {n.node for n in ran if n.inserted}
        node_ops = {n.node: n.op_type for n in ran if n.node in anchors}
        covers = link_layers(graph, anchors, node_ops, removed, inserted)
    return tuple(
        NodeProfile(
            node=n.node,
            op_type=n.op_type,
            time_ms=label_of(n.times_ms),
            covers=order_layers(graph, covers.get(n.node, set())),
            exec_type=n.exec_type,
        )
        for n in ran
    )


def _named(graph: Graph, node: ExecutedNode) -> set[str]:
    """The layers ``node``'s origins name (a node-named origin is resolved with the node's op type)."""
    if node.naming == "none":
        return set()
    op_type = node.op_type if node.naming == "node" else None
    return {layer for origin in node.origins for layer in resolve_runtime_name(origin, graph, op_type)}


def _claimed(anchors: Mapping[str, set[str]]) -> set[str]:
    return {layer for layers in anchors.values() for layer in layers}


_RUNTIME_NAME_AFFIXES = (
    re.compile(r"^fused (.+)$"),  # ORT: FusedConv / FusedGemm keep "fused <node>"
    re.compile(r"^(.+)_bn_nchwc$"),  # ORT NCHWc: a BatchNormalization run as a depthwise Conv, "<bn>_bn_nchwc"
    re.compile(r"^(.+)_nchwc$"),  # ORT NCHWc: "<output tensor>_nchwc"
    re.compile(r"^(.+)/[A-Za-z]+Fusion/?$"),  # ORT: "<node>/MatMulAddFusion", "<node>/MatMulScaleFusion/"
    re.compile(r"^(.+)/WithoutBiases$"),  # OpenVINO: the bias-less half of a Conv/Gemm
    re.compile(r"^(.+)/sink_port_\d+$"),
)
# Layers that head a fused group: a runtime names the group after a later member at times (ORT NCHWc names
# a Conv+BN+Relu node after the Relu's output; OpenVINO renames a Conv that absorbed a BN), so an unnamed
# one joins its consumers' node, never its producer's.
MAIN_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def resolve_runtime_name(name: str, graph: Graph, op_type: str | None = None) -> set[str]:
    """The graph layers a runtime node name refers to (empty when none).

    Tries the layer names, then the output-tensor names (runtimes name rewritten nodes after the tensor they
    produce), then the same after stripping the affixes runtimes add (``fused X``, ``X_nchwc``,
    ``X/MatMulAddFusion``, ``X/WithoutBiases``). Given the executed node's ONNX-style ``op_type`` (``Conv``,
    ``FusedConv``), a match on a later member of a fused chain (the Relu of Conv->BN->Relu) is extended
    back through single-consumer layers to the layer of that op type, and the whole chain is returned.
    """
    candidates = [name]
    for pattern in _RUNTIME_NAME_AFFIXES:
        m = pattern.match(name)
        if m:
            candidates.append(m.group(1))
    for cand in candidates:
        layer = cand if cand in graph.by_name else graph.producer.get(cand)
        if layer is not None:
            return _chain_back(graph, layer, op_type)
    return set()


def _chain_back(graph: Graph, layer: str, op_type: str | None) -> set[str]:
    if not op_type:
        return {layer}
    op = op_type.removeprefix("Fused")
    chain = [layer]
    while graph.layer(chain[-1]).op != op:
        preds = graph.predecessors(chain[-1])
        if len(preds) != 1 or graph.successors(preds[0]) != [chain[-1]]:
            return {layer}  # no single-consumer path back to an op of that type: the name alone
        chain.append(preds[0])
    return set(chain)


# runtime op types -> the ONNX ops their node may implement besides its own name (OpenVINO's CPU plugin
# names, ORT's contrib ops); SPLIT_INTO: ONNX ops a runtime runs as several kernels
RUNTIME_OPS: dict[str, frozenset[str]] = {
    "Convolution": frozenset({"Conv"}),
    "GroupConvolution": frozenset({"Conv"}),
    "FullyConnected": frozenset({"Gemm", "MatMul"}),
    "Gemm": frozenset({"MatMul"}),
    "Pooling": frozenset({"MaxPool", "AveragePool"}),
    "Reduce": frozenset({"GlobalAveragePool", "ReduceMean"}),
    "ReduceMean": frozenset({"GlobalAveragePool"}),
    "Eltwise": frozenset({"Add", "Sub", "Mul", "Div", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh"}),
    "MVN": frozenset({"LayerNormalization"}),
    "Concatenation": frozenset({"Concat"}),
    "Interpolate": frozenset({"Resize"}),
    "QuickGelu": frozenset({"Sigmoid", "Mul"}),
}
SPLIT_INTO: dict[str, frozenset[str]] = {"HardSwish": frozenset({"HardSigmoid", "Mul"})}


def implements(node_op: str, layer_op: str) -> bool:
    """Whether an executed node of runtime type ``node_op`` can implement a layer of ONNX type ``layer_op``."""
    return (
        node_op.removeprefix("Fused") == layer_op
        or layer_op in RUNTIME_OPS.get(node_op, ())
        or node_op in SPLIT_INTO.get(layer_op, ())
    )


def link_layers(
    graph: Graph,
    anchors: dict[str, set[str]],
    node_ops: Mapping[str, str],
    removed: Collection[str] = (),
    inserted: Collection[str] = (),
) -> dict[str, set[str]]:
    """Complete ``anchors`` (executed node -> layers matched by name, in execution order) with the layers
    that no node names; ``node_ops`` gives each node's runtime op type.

    1. Orphan nodes (named after no layer, not ``inserted`` layout reorders nor zero-cost reshapes) take, in
       execution order, the first unnamed layer of an op they implement that comes after the layers of the
       nodes before them (OpenVINO renames a Conv whose BatchNorm it folded to ``Multiply_N``); a node of
       a split op's other kernel joins the layer its predecessor took (ORT runs HardSwish as HardSigmoid +
       Mul: both cover the layer).
    2. An unnamed zero-cost layer (Reshape, Flatten, Identity, ...) was removed. Any other unnamed layer
       not known to be ``removed`` was fused into a neighbour: into its producer's node when it is that
       producer's only consumer (Conv+Relu, Conv+Add, MatMul+Add), or into its consumers' node when one
       node owns all of them (a renamed Conv+BN joins its activation's node; x*sigmoid(x) fused into one
       node). A Conv/Gemm/MatMul heads its group, so it only joins its consumers' node; other layers try
       their producer first. Repeated until nothing changes; layers left over are reported by no node.
    """
    owner: dict[str, str] = {}
    for node, layers in anchors.items():
        for layer in layers:
            owner.setdefault(layer, node)
    pending = [
        x.name for x in graph.layers if x.name not in owner and x.name not in removed and x.op not in ZERO_COST_OPS
    ]
    covers: dict[str, set[str]] = {node: set() for node in anchors}
    index = {x.name: i for i, x in enumerate(graph.layers)}
    position, last = -1, ""
    for node, layers in anchors.items():
        op = node_ops.get(node, "")
        if layers:
            position, last = max(index[x] for x in layers), ""
        elif node in inserted or op in ZERO_COST_OPS:
            continue
        elif last and op in SPLIT_INTO.get(graph.layer(last).op, ()):
            covers[node].add(last)
        else:
            match = next((n for n in pending if index[n] > position and implements(op, graph.layer(n).op)), "")
            if match:
                owner[match] = node
                pending.remove(match)
                position, last = index[match], match
    changed = True
    while pending and changed:
        changed = False
        for name in list(pending):
            order = (False,) if graph.layer(name).op in MAIN_OPS else (True, False)
            for upstream in order:
                into = _fusion_neighbour(graph, name, owner, upstream)
                if into is not None:
                    owner[name] = into
                    pending.remove(name)
                    changed = True
                    break
    for layer, node in owner.items():
        covers[node].add(layer)
    return covers


def _fusion_neighbour(graph: Graph, name: str, owner: dict[str, str], upstream: bool) -> str | None:
    """The node that ``name`` fused into, looking at its producers (``upstream``) or its consumers."""
    if upstream:
        # Of several producers that feed only this layer, the one whose node runs a Conv/Gemm/MatMul took it: an
        # elementwise layer fuses into a compute kernel's output (ORT's blocked Conv adds its "Sum" input), and
        # a pool that happens to be the Add's first input ran without it.
        nodes = [owner[p] for p in graph.predecessors(name) if p in owner and graph.successors(p) == [name]]
        if len(nodes) > 1:
            heads = {owner[x.name] for x in graph.layers if x.op in MAIN_OPS and x.name in owner}
            return next((n for n in nodes if n in heads), nodes[0])
        return nodes[0] if nodes else None
    consumers = {owner.get(succ) for succ in graph.successors(name)}
    return consumers.pop() if len(consumers) == 1 and None not in consumers else None


def order_layers(graph: Graph, names: set[str]) -> tuple[str, ...]:
    """``names`` in the graph's layer order."""
    return tuple(x.name for x in graph.layers if x.name in names)
