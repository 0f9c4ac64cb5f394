"""Apply a rule set to a graph: which layers the target removes, fuses and inserts."""

from __future__ import annotations

from collections import Counter

from annette.graph.ir import Graph, Layer
from annette.mapping.mapped import (
    GRAPH_INPUT,
    ExecutedLayer,
    Flow,
    MappedGraph,
    inserted_layer,
    neighbour_keys,
)
from annette.mapping.rules import InsertionRule, MappingRules, RemovalRule


def removal_applies(rule: RemovalRule, layer: Layer, graph: Graph) -> bool:
    if layer.op != rule.op:
        return False
    if rule.after is None:
        return True
    src = graph.producer.get(layer.inputs[0].name) if layer.inputs else None
    return (GRAPH_INPUT if src is None else graph.by_name[src].op) in rule.after


def apply(graph: Graph, rules: MappingRules) -> MappedGraph:
    """The executed layers of ``graph`` under ``rules``, in execution order.

    Removal rules drop layers (they pass their input through); fusion rules, longest pattern first, merge
    linear chains into one executed layer; insertion rules add nodes around executed layers.
    """
    hits: Counter[str] = Counter()
    removals = rules.removals_by_op
    removed: list[str] = []
    for layer in graph.layers:
        for r in removals.get(layer.op, ()):
            if removal_applies(r, layer, graph):
                removed.append(layer.name)
                hits[r.id] += 1
                break
    flow = Flow(graph, removed)

    fusions = rules.fusions_by_first_op
    taken: set[str] = set(removed)
    executed: list[ExecutedLayer] = []
    for layer in graph.layers:
        if layer.name in taken:
            continue
        members: tuple[Layer, ...] = (layer,)
        bypassed: tuple[str, ...] = ()
        candidates = fusions.get(layer.op, ())
        second = flow.next_op(layer) if candidates else None
        for f in candidates:
            if f.pattern[1] != second:
                continue
            chain = flow.chain(layer, f.pattern)
            if chain is not None and f.allows(chain) and not any(m.name in taken for m in chain):
                members, bypassed = chain, flow.bypassed(chain)
                hits[f.id] += 1
                taken.update(m.name for m in chain)
                break
        executed.append(ExecutedLayer(layer.name, members, bypassed=bypassed))

    if rules.insertions:
        executed = _insert(flow, executed, rules.insertions_by_anchor, hits)
    return MappedGraph(graph=graph, executed=tuple(executed), removed=tuple(removed), rule_hits=dict(hits))


def _insert(
    flow: Flow, executed: list[ExecutedLayer], by_anchor: dict[str, list[InsertionRule]], hits: Counter[str]
) -> list[ExecutedLayer]:
    executed_of = {m.name: ex for ex in executed for m in ex.members}
    out: list[ExecutedLayer] = []
    for ex in executed:
        rules = by_anchor.get(ex.primary.op)
        if not rules:
            out.append(ex)
            continue
        before: list[ExecutedLayer] = []
        after: list[ExecutedLayer] = []
        keys: dict[str, list[str]] = {}
        for r in rules:
            if not r.holds(ex.primary):
                continue
            if r.position not in keys:
                keys[r.position] = neighbour_keys(flow, executed_of, ex, r.position)
            if r.fires(ex.primary, keys[r.position]):
                hits[r.id] += 1
                side = before if r.position == "before" else after
                side.extend(
                    inserted_layer(r.op_type, ex, r.position, f"{r.op_type}:{r.position}:{ex.name}:{i}")
                    for i in range(r.count)
                )
        out.extend((*before, ex, *after))
    return out
