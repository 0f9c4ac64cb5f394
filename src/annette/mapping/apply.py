"""Apply a rule set to a graph: which layers the target removes, fuses and inserts.

:class:`Mapper` holds a rule set's indexes (fusions by first and second op, insertion rules by anchor op) and
a memo of which insertion rules' shape conditions hold for an anchor's shapes, so mapping many graphs
(:func:`apply_many`) pays for them once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from annette.graph.ir import Graph, Layer
from annette.mapping.mapped import (
    GRAPH_INPUT,
    GRAPH_OUTPUT,
    ExecutedLayer,
    Flow,
    MappedGraph,
    inserted_layer,
    neighbour_keys,
)
from annette.mapping.rules import FusionRule, InsertionRule, MappingRules, RemovalRule


def removal_applies(rule: RemovalRule, layer: Layer, graph: Graph) -> bool:
    if layer.op != rule.op:
        return False
    if rule.after is None:
        return True
    src = graph.producer.get(layer.inputs[0].name) if layer.inputs else None
    return (GRAPH_INPUT if src is None else graph.by_name[src].op) in rule.after


class Mapper:
    """Applies ``rules`` to graphs (:meth:`map`); build one per rule set and reuse it for many graphs."""

    def __init__(self, rules: MappingRules) -> None:
        self.rules = rules
        # first op -> second op -> fusions, in the rule set's order (longest pattern first, then best supported)
        self._fusions: dict[str, dict[str, list[FusionRule]]] = {}
        for first, fusions in rules.fusions_by_first_op.items():
            by_second: dict[str, list[FusionRule]] = defaultdict(list)
            for f in fusions:
                by_second[f.pattern[1]].append(f)
            self._fusions[first] = dict(by_second)
        # graph op types -> anchor op -> the insertion rules that can fire in a graph with those ops
        self._insertions: dict[frozenset[str], dict[str, list[InsertionRule]]] = {}
        # (op, first input shape, first output shape, group) -> the insertion rules whose shape conditions hold
        self._holding: dict[tuple[object, ...], tuple[InsertionRule, ...]] = {}

    def map(self, graph: Graph) -> MappedGraph:
        """The executed layers of ``graph``, in execution order.

        Removal rules drop layers (they pass their input through); fusion rules, longest pattern first, merge
        linear chains into one executed layer; insertion rules add nodes around executed layers.
        """
        hits: Counter[str] = Counter()
        removals = self.rules.removals_by_op
        removed: list[str] = []
        if removals:
            for layer in graph.layers:
                for r in removals.get(layer.op, ()):
                    if removal_applies(r, layer, graph):
                        removed.append(layer.name)
                        hits[r.id] += 1
                        break
        flow = Flow(graph, removed)

        fusions = self._fusions
        taken: set[str] = set(removed)
        executed: list[ExecutedLayer] = []
        for layer in graph.layers:
            if layer.name in taken:
                continue
            by_second = fusions.get(layer.op)
            fused = self._fuse(flow, layer, by_second, taken) if by_second else None
            if fused is None:
                executed.append(ExecutedLayer(layer.name, (layer,)))
            else:
                rule, chain = fused
                executed.append(ExecutedLayer(layer.name, chain, bypassed=flow.bypassed(chain)))
                hits[rule.id] += 1
                taken.update(m.name for m in chain)

        if self.rules.insertions:
            executed = self._insert(flow, executed, hits)
        return MappedGraph(graph=graph, executed=tuple(executed), removed=tuple(removed), rule_hits=dict(hits))

    @staticmethod
    def _fuse(
        flow: Flow, layer: Layer, by_second: dict[str, list[FusionRule]], taken: set[str]
    ) -> tuple[FusionRule, tuple[Layer, ...]] | None:
        """The first fusion (in rule order) whose chain starts at ``layer``, and that chain.

        Walks the linear chain ``layer → ...`` once (each member but the last feeding exactly one kept layer
        and no graph output, as :meth:`Flow.chain`) and matches every candidate pattern against it.
        """
        walk = [layer]
        by_name = flow.graph.by_name
        end = False  # the chain cannot grow past walk[-1]
        for f in by_second.get(flow.next_op(layer) or "", ()):
            n = len(f.pattern)
            while len(walk) < n and not end:
                consumers, leaves = flow.consumers(walk[-1])
                if leaves or len(consumers) != 1:
                    end = True
                else:
                    walk.append(by_name[consumers[0]])
            if len(walk) < n or any(walk[i].op != f.pattern[i] for i in range(2, n)):
                continue
            chain = tuple(walk[:n])
            if f.allows(chain) and not any(m.name in taken for m in chain):
                return f, chain
        return None

    def _rules_for(self, graph: Graph) -> dict[str, list[InsertionRule]]:
        """Insertion rules by anchor op, without those that cannot fire in ``graph``: a neighbour key is a graph
        layer's op type or the graph's boundary, so a rule none of whose neighbours is either never fires."""
        ops = frozenset([layer.op for layer in graph.layers])
        out = self._insertions.get(ops)
        if out is None:
            present = ops | {GRAPH_INPUT, GRAPH_OUTPUT}
            out = {}
            for anchor, rules in self.rules.insertions_by_anchor.items():
                kept = [r for r in rules if anchor in ops and not present.isdisjoint(r.neighbours)]
                if kept:
                    out[anchor] = kept
            self._insertions[ops] = out
        return out

    def _holding_rules(self, layer: Layer, rules: list[InsertionRule]) -> tuple[InsertionRule, ...]:
        """The rules among ``rules`` (all anchored on ``layer.op``) whose shape conditions hold for ``layer``."""
        try:
            key = (
                layer.op,
                layer.inputs[0].shape if layer.inputs else None,
                layer.outputs[0].shape if layer.outputs else None,
                layer.attrs.get("group", 1),
            )
            hit = self._holding.get(key)
        except TypeError:  # an unhashable group attribute: no memo
            return tuple(r for r in rules if r.holds(layer))
        if hit is None:
            hit = self._holding[key] = tuple(r for r in rules if r.holds(layer))
        return hit

    def _insert(self, flow: Flow, executed: list[ExecutedLayer], hits: Counter[str]) -> list[ExecutedLayer]:
        by_anchor = self._rules_for(flow.graph)
        if not by_anchor:
            return executed
        executed_of: dict[str, ExecutedLayer] | None = None
        out: list[ExecutedLayer] = []
        for ex in executed:
            primary = ex.members[0]
            rules = by_anchor.get(primary.op)
            holding = self._holding_rules(primary, rules) if rules else ()
            if not holding:
                out.append(ex)
                continue
            if executed_of is None:
                executed_of = {m.name: e for e in executed for m in e.members}
            before: list[ExecutedLayer] = []
            after: list[ExecutedLayer] = []
            keys: dict[str, list[str]] = {}
            for r in holding:
                if r.position not in keys:
                    keys[r.position] = neighbour_keys(flow, executed_of, ex, r.position)
                if any(k in r.neighbours for k in keys[r.position]):
                    hits[r.id] += 1
                    side = before if r.position == "before" else after
                    side.extend(
                        inserted_layer(r.op_type, ex, r.position, f"{r.op_type}:{r.position}:{ex.name}:{i}")
                        for i in range(r.count)
                    )
            out.extend((*before, ex, *after))
        return out


def apply(graph: Graph, rules: MappingRules) -> MappedGraph:
    """The executed layers of ``graph`` under ``rules``, in execution order (see :meth:`Mapper.map`)."""
    return Mapper(rules).map(graph)


def apply_many(graphs: Sequence[Graph], rules: MappingRules) -> list[MappedGraph]:
    """:func:`apply` for many graphs, sharing the rule indexes and memos."""
    mapper = Mapper(rules)
    return [mapper.map(g) for g in graphs]
