"""Apply a rule set to a graph: which layers the target removes, fuses and inserts.

:class:`Mapper` holds a rule set's indexes (fusions by first and second op, insertion rules by anchor op and
by the op types a graph holds) and a memo of which insertion rules' shape conditions hold for an anchor's
shapes, so mapping many graphs (:func:`apply_many`) pays for them once. :meth:`Mapper.plan` maps a graph
without building its :class:`ExecutedLayer` objects (a NAS loop estimating thousands of graphs needs only
a few of them); :meth:`Plan.mapped` builds them all, :meth:`Plan.executed` one at a time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from annette.graph.ir import Graph, Layer, TensorSpec
from annette.mapping.mapped import (
    GRAPH_INPUT,
    GRAPH_OUTPUT,
    ExecutedLayer,
    Flow,
    MappedGraph,
    inserted_layer,
    inserted_tensor,
    neighbour_ops,
)
from annette.mapping.rules import FusionRule, InsertionRule, MappingRules, RemovalRule

# An executed layer before it is built: a kept one is (members, bypassed); an inserted one is
# (op type, position, index among the nodes its rule inserts, the kept anchor).
Kept = tuple[tuple[Layer, ...], tuple[str, ...]]
Inserted = tuple[str, str, int, Kept]
Item = Kept | Inserted


def is_inserted(item: Item) -> bool:
    return isinstance(item[0], str)


def item_tensor(item: Inserted) -> TensorSpec:
    """The tensor an inserted item converts."""
    return inserted_tensor(item[3][0], item[1])


def build(item: Item, anchor: ExecutedLayer | None = None) -> ExecutedLayer:
    """The executed layer an item stands for (``anchor``: an inserted item's anchor, where already built)."""
    if is_inserted(item):
        op_type, position, i, kept = cast(Inserted, item)
        ex = anchor or build(kept)
        return inserted_layer(op_type, ex, position, f"{op_type}:{position}:{ex.name}:{i}")
    members, bypassed = cast(Kept, item)
    return ExecutedLayer(members[0].name, members, bypassed=bypassed)


@dataclass(frozen=True, eq=False)
class Plan:
    """A graph mapped by :meth:`Mapper.plan`: its executed layers as items, in execution order."""

    graph: Graph
    items: list[Item]
    removed: tuple[str, ...]
    rule_hits: dict[str, int]

    def mapped(self) -> MappedGraph:
        built: dict[int, ExecutedLayer] = {}  # kept items by id: an anchor is built once

        def kept(item: Item) -> ExecutedLayer:
            return built.get(id(item)) or built.setdefault(id(item), build(item))

        executed = tuple(build(item, kept(item[3])) if is_inserted(item) else kept(item) for item in self.items)
        return MappedGraph(graph=self.graph, executed=executed, removed=self.removed, rule_hits=self.rule_hits)


def removal_applies(rule: RemovalRule, layer: Layer, graph: Graph) -> bool:
    if layer.op != rule.op:
        return False
    if rule.after is None:
        return True
    src = graph.producer.get(layer.inputs[0].name) if layer.inputs else None
    return (GRAPH_INPUT if src is None else graph.by_name[src].op) in rule.after


class Mapper:
    """Applies ``rules`` to graphs (:meth:`map`, :meth:`plan`); build one per rule set, reuse it for many graphs."""

    def __init__(self, rules: MappingRules) -> None:
        self.rules = rules
        # first op -> second op -> fusions, in the rule set's order (longest pattern first, then best supported)
        self._fusions: dict[str, dict[str, list[FusionRule]]] = {}
        for first, fusions in rules.fusions_by_first_op.items():
            by_second: dict[str, list[FusionRule]] = defaultdict(list)
            for f in fusions:
                by_second[f.pattern[1]].append(f)
            self._fusions[first] = dict(by_second)
        self._fusion_ids = {f: f.id for f in rules.fusions}
        # graph op types -> anchor op -> the insertion rules that can fire in a graph with those ops
        self._insertions: dict[frozenset[str], dict[str, list[InsertionRule]]] = {}
        # (op, first input shape, first output shape, group) -> the insertion rules whose shape conditions hold
        self._holding: dict[tuple[object, ...], tuple[InsertionRule, ...]] = {}

    def map(self, graph: Graph) -> MappedGraph:
        """The executed layers of ``graph``, in execution order (see :meth:`plan`)."""
        return self.plan(graph).mapped()

    def plan(self, graph: Graph) -> Plan:
        """Map ``graph`` without building its executed layers.

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
        kept: list[Kept] = []
        for layer in graph.layers:
            if layer.name in taken:
                continue
            by_second = fusions.get(layer.op)
            fused = self._fuse(flow, layer, by_second, taken) if by_second else None
            if fused is None:
                kept.append(((layer,), ()))
            else:
                rule, chain = fused
                kept.append((chain, flow.bypassed(chain)))
                hits[self._fusion_ids[rule]] += 1
                taken.update([m.name for m in chain])

        items: list[Item] = self._insert(flow, kept, hits) if self.rules.insertions else list(kept)
        return Plan(graph, items, tuple(removed), dict(hits))

    @staticmethod
    def _fuse(
        flow: Flow, layer: Layer, by_second: dict[str, list[FusionRule]], taken: set[str]
    ) -> tuple[FusionRule, tuple[Layer, ...]] | None:
        """The first fusion (in rule order) whose chain starts at ``layer``, and that chain.

        Walks the linear chain ``layer → ...`` once (each member but the last feeding exactly one kept layer
        and no graph output, as :meth:`Flow.chain`) and matches every candidate pattern against it.
        """
        candidates = by_second.get(flow.next_op(layer) or "")
        if not candidates:
            return None
        by_name = flow.graph.by_name
        walk = [layer, by_name[flow.consumers(layer)[0][0]]]
        longest = len(candidates[0].pattern)  # candidates are longest first
        while len(walk) < longest:
            consumers, leaves = flow.consumers(walk[-1])
            if leaves or len(consumers) != 1:
                break
            walk.append(by_name[consumers[0]])
        ops = tuple([m.op for m in walk])
        for f in candidates:
            n = len(f.pattern)
            if ops[:n] == f.pattern:
                chain = tuple(walk[:n])
                if f.allows(chain) and taken.isdisjoint([m.name for m in chain]):
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

    def _insert(self, flow: Flow, kept: list[Kept], hits: Counter[str]) -> list[Item]:
        by_anchor = self._rules_for(flow.graph)
        if not by_anchor:
            return list(kept)
        primary_op: Callable[[str], str | None] | None = None
        out: list[Item] = []
        for item in kept:
            primary = item[0][0]
            rules = by_anchor.get(primary.op)
            holding = self._holding_rules(primary, rules) if rules else ()
            if not holding:
                out.append(item)
                continue
            if primary_op is None:
                primary_op = {m.name: members[0].op for members, _ in kept for m in members}.get
            before: list[Item] = []
            after: list[Item] = []
            keys: dict[str, list[str]] = {}
            for r in holding:
                if r.position not in keys:
                    keys[r.position] = neighbour_ops(flow, primary_op, item[0], r.position)
                if any(k in r.neighbours for k in keys[r.position]):
                    hits[r.id] += 1
                    side = before if r.position == "before" else after
                    side.extend([(r.op_type, r.position, i, item) for i in range(r.count)])
            out.extend((*before, item, *after))
        return out


def apply(graph: Graph, rules: MappingRules) -> MappedGraph:
    """The executed layers of ``graph`` under ``rules``, in execution order (see :meth:`Mapper.plan`)."""
    return Mapper(rules).map(graph)


def apply_many(graphs: Sequence[Graph], rules: MappingRules) -> list[MappedGraph]:
    """:func:`apply` for many graphs, sharing the rule indexes and memos."""
    mapper = Mapper(rules)
    return [mapper.map(g) for g in graphs]
