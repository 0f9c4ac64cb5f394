"""Apply a rule set to a graph: which layers the target removes, fuses and inserts.

:class:`Mapper` holds a rule set's indexes (fusions by first and second op, insertion rules by anchor op and
by the op types a graph holds) and a memo of which insertion rules' shape conditions hold for an anchor's
shapes, so mapping many graphs with one mapper pays for them once. :meth:`Mapper.plan` maps a graph without
building its :class:`ExecutedLayer` objects (a NAS loop estimating thousands of graphs needs only a few of
them): :meth:`Plan.mapped` builds them all, an item's ``build`` (:class:`Kept`, :class:`Inserted`) one.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import NamedTuple, cast

from annette.graph.ir import Graph, Layer, TensorSpec
from annette.mapping.mapped import (
    GRAPH_INPUT,
    GRAPH_OUTPUT,
    ExecutedLayer,
    Flow,
    MappedGraph,
    duplicates,
    inserted_layer,
    inserted_tensor,
    neighbour_ops,
)
from annette.mapping.rules import FusionRule, InsertionRule, Layouts, MappingRules, RemovalRule, input_layout


class Kept(NamedTuple):
    """A kept executed layer before it is built: the graph layers it runs (one, or a fusion's chain) and the
    tensors between them that pass through removed layers."""

    members: tuple[Layer, ...]
    bypassed: tuple[str, ...] = ()

    def build(self) -> ExecutedLayer:
        """The executed layer this item stands for."""
        return ExecutedLayer(self.members[0].name, self.members, bypassed=self.bypassed)


class Inserted(NamedTuple):
    """A node an insertion or layout rule adds before it is built: its op type, its position beside the kept
    ``anchor`` (``before``/``after``) and ``nth``, its index among the nodes its rule inserts there."""

    op_type: str
    position: str
    nth: int
    anchor: Kept

    @property
    def tensor(self) -> TensorSpec:
        """The tensor the node converts."""
        return inserted_tensor(self.anchor.members, self.position)

    def build(self, anchor: ExecutedLayer | None = None) -> ExecutedLayer:
        """The executed layer this item stands for (``anchor``: its anchor's, where already built)."""
        ex = anchor or self.anchor.build()
        name = f"{self.op_type}:{self.position}:{ex.name}:{self.nth}"
        return inserted_layer(self.op_type, ex, self.position, name)


Item = Kept | Inserted
# Rules as the mapper indexes them: a fusion's (pattern, rule, whether it has conditions, id); an insertion's
# (rule, its neighbours, position, id).
_Fusion = tuple[tuple[str, ...], FusionRule, bool, str]
_Insertion = tuple[InsertionRule, frozenset[str], str, str]


@dataclass(frozen=True, eq=False)
class Plan:
    """A graph mapped by :meth:`Mapper.plan`: its executed layers as items, in execution order."""

    graph: Graph
    items: list[Item]
    removed: tuple[str, ...]
    rule_hits: dict[str, int]

    def mapped(self) -> MappedGraph:
        built: dict[int, ExecutedLayer] = {}  # kept items by id: an anchor is built once

        def kept(item: Kept) -> ExecutedLayer:
            return built.get(id(item)) or built.setdefault(id(item), item.build())

        executed = tuple(
            item.build(kept(item.anchor)) if isinstance(item, Inserted) else kept(item) for item in self.items
        )
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
        self._fusions: dict[str, dict[str, list[_Fusion]]] = {}
        for first, fusions in rules.fusions_by_first_op.items():
            by_second: dict[str, list[_Fusion]] = defaultdict(list)
            for f in fusions:
                by_second[f.pattern[1]].append((f.pattern, f, f.conditional, f.id))
            self._fusions[first] = dict(by_second)
        self._forking = frozenset(f.pattern[0] for f in rules.fusions if f.forks)  # first ops of forking rules
        # graph op types -> anchor op -> the insertion rules that can fire in a graph with those ops
        self._insertions: dict[frozenset[str], dict[str, list[_Insertion]]] = {}
        # (op, first input shape, first output shape, group) -> the insertion rules whose shape conditions hold
        self._holding: dict[tuple[object, ...], tuple[_Insertion, ...]] = {}
        # (op, input layout, first input shape, first output shape, group) -> (runs blocked, converts plain input)
        self._layout_memo: dict[tuple[object, ...], tuple[bool, bool]] = {}
        self._merge_ops = frozenset(r.op for r in rules.merges)

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
        merged = duplicates(graph, self._merge_ops) if self._merge_ops else {}
        for name in merged:
            removed.append(name)
            hits[f"merge:{graph.by_name[name].op}"] += 1
        if removals:
            for layer in graph.layers:
                if layer.name in merged:
                    continue
                for r in removals.get(layer.op, ()):
                    if removal_applies(r, layer, graph):
                        removed.append(layer.name)
                        hits[r.id] += 1
                        break
        flow = Flow(graph, removed)

        fusions, forking = self._fusions, self._forking
        taken: set[str] = set(removed)
        kept: list[Kept] = []
        new = tuple.__new__  # Kept(...) through NamedTuple's generated __new__ costs 3x as much, per layer
        primary_op: dict[str, str] = {}  # fused members after the first -> the op of the first
        for layer in graph.layers:
            if layer.name in taken:
                continue
            by_second = fusions.get(layer.op)
            fused = self._fuse(flow, layer, by_second, taken, layer.op in forking) if by_second else None
            if fused is None:
                kept.append(new(Kept, ((layer,), ())))
            else:
                rule_id, chain = fused
                kept.append(new(Kept, (chain, flow.bypassed(chain))))
                hits[rule_id] += 1
                taken.update([m.name for m in chain])
                primary_op.update([(m.name, layer.op) for m in chain[1:]])

        items: list[Item] = self._insert(flow, kept, primary_op, hits) if self.rules.insertions else list(kept)
        if self.rules.layouts is not None:
            items = convert_layouts(self.rules.layouts, flow, items, hits, self._layout_memo)
        return Plan(graph, items, tuple(removed), dict(hits))

    @staticmethod
    def _fuse(
        flow: Flow, layer: Layer, by_second: dict[str, list[_Fusion]], taken: set[str], forking: bool
    ) -> tuple[str, tuple[Layer, ...]] | None:
        """The first fusion (in rule order) whose chain starts at ``layer``: its rule id and chain.

        Walks the chain ``layer → ...`` once (each member but the last feeding exactly one kept layer and no graph
        output, or, where ``forking`` (a rule from ``layer``'s op forks), a side branch that rejoins it, as
        :meth:`Flow.chain`) and matches every candidate pattern; a rule that does not fork matches linear chains.
        """
        second, join = flow.single_consumer(layer), None
        if second is None and forking:
            second, join = flow.link(layer)
        candidates = by_second.get(second.op) if second is not None else None
        if not candidates or second is None:
            return None
        walk: list[Layer] = [layer, second]
        longest = len(candidates[0][0])  # candidates are longest first
        marks = None
        if forking:
            marks = Mapper._walk_forks(flow, walk, join, longest)
        else:  # the common case, and the hot path of a NAS loop: a linear walk
            while len(walk) < longest:
                nxt = flow.single_consumer(walk[-1])
                if nxt is None:
                    break
                walk.append(nxt)
        ops = tuple([m.op for m in walk])
        for pattern, f, conditional, rule_id in candidates:
            n = len(pattern)
            if ops[:n] == pattern and (marks is None or (marks[n - 1][0] and (f.forks or not marks[n - 1][1]))):
                chain = tuple(walk[:n])
                if (not conditional or f.allows(chain)) and taken.isdisjoint([m.name for m in chain]):
                    return rule_id, chain
        return None

    @staticmethod
    def _walk_forks(flow: Flow, walk: list[Layer], join: Layer | None, longest: int) -> list[tuple[bool, bool]] | None:
        """Extend ``walk`` (its first two layers, ``join`` where the second link forked) up to ``longest`` layers
        through links that may fork (:meth:`Flow.link`). Once the walk forks: per walk length - 1, whether a chain
        ending there leaves no side branch open and whether it forked (None: the walk stayed linear)."""
        marks: list[tuple[bool, bool]] | None = None
        waiting: set[str] = set()  # the joins of the side branches not rejoined yet
        if join is not None:
            marks, waiting = [(True, False), (False, True)], {join.name}
        while len(walk) < longest:
            nxt, join = flow.single_consumer(walk[-1]), None
            if nxt is None:
                nxt, join = flow.link(walk[-1])
            if nxt is None:
                break
            walk.append(nxt)
            if marks is None and join is not None:
                marks = [(True, False)] * (len(walk) - 1)
            if marks is not None:
                waiting.discard(nxt.name)
                if join is not None:
                    waiting.add(join.name)
                marks.append((not waiting, marks[-1][1] or join is not None))
        return marks

    def _rules_for(self, graph: Graph) -> dict[str, list[_Insertion]]:
        """Insertion rules by anchor op, without those that cannot fire in ``graph``: a neighbour key is a graph
        layer's op type or the graph's boundary, so a rule none of whose neighbours is either never fires."""
        ops = frozenset([layer.op for layer in graph.layers])
        out = self._insertions.get(ops)
        if out is None:
            present = ops | {GRAPH_INPUT, GRAPH_OUTPUT}
            out = {}
            for anchor, rules in self.rules.insertions_by_anchor.items():
                kept = [
                    (r, frozenset(r.neighbours), r.position, r.id)
                    for r in rules
                    if anchor in ops and not present.isdisjoint(r.neighbours)
                ]
                if kept:
                    out[anchor] = kept
            self._insertions[ops] = out
        return out

    def _holding_rules(self, layer: Layer, rules: list[_Insertion]) -> tuple[_Insertion, ...]:
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
            return tuple(r for r in rules if r[0].holds(layer))
        if hit is None:
            hit = self._holding[key] = tuple(r for r in rules if r[0].holds(layer))
        return hit

    def _insert(self, flow: Flow, kept: list[Kept], primary_op: dict[str, str], hits: Counter[str]) -> list[Item]:
        """``kept`` with the inserted items; ``primary_op`` maps the fused members after the first to their
        executed layer's primary op (a neighbour's key)."""
        by_anchor = self._rules_for(flow.graph)
        if not by_anchor:
            return list(kept)
        out: list[Item] = []
        for item in kept:
            members = item.members
            primary = members[0]
            rules = by_anchor.get(primary.op)
            holding = self._holding_rules(primary, rules) if rules else ()
            if not holding:
                out.append(item)
                continue
            before: list[Item] = []
            after: list[Item] = []
            keys: dict[str, list[str]] = {}
            placed: set[tuple[str, str]] = set()  # one insertion of a type per side (rules per neighbour op)
            for r, neighbours, position, rule_id in holding:
                if position not in keys:
                    keys[position] = neighbour_ops(flow, primary_op.get, members, position)
                if (r.op_type, position) not in placed and not neighbours.isdisjoint(keys[position]):
                    placed.add((r.op_type, position))
                    hits[rule_id] += 1
                    side = before if position == "before" else after
                    side.extend([Inserted(r.op_type, position, i, item) for i in range(r.count)])
            out.extend((*before, item, *after))
        return out


def layout_decision(layouts: Layouts, layer: Layer, key: str) -> tuple[bool, bool]:
    """Whether ``layer`` (an executed layer's primary) runs blocked when its inputs' layout is ``key``, and
    whether it then converts a plain input."""
    runs_blocked = any(r.holds(layer) for r in layouts.blocked_by_key.get((layer.op, key), ()))
    return runs_blocked, runs_blocked and any(r.holds(layer) for r in layouts.converts_by_op.get(layer.op, ()))


def convert_layouts(
    layouts: Layouts,
    flow: Flow,
    items: list[Item],
    hits: Counter[str],
    memo: dict[tuple[object, ...], tuple[bool, bool]] | None = None,
) -> list[Item]:
    """``items`` with the layout conversions: each kept item runs blocked or plain by ``layouts`` given its
    inputs' layouts (graph inputs are plain); a blocked item reading a plain tensor gets a ``to_blocked`` node
    before it where a conversion rule holds; a blocked item read by a plain one or by a graph output gets one
    ``to_plain`` node after it. ``memo`` keeps the decisions by op, input layout and shapes across graphs."""
    memo = {} if memo is None else memo
    graph = flow.graph
    holder: dict[str, int] = {}  # graph layer -> index of its kept item
    last: dict[int, int] = {}  # kept item -> topological index of its last member
    members_of: dict[int, tuple[Layer, ...]] = {}  # kept item -> its members
    order = {layer.name: k for k, layer in enumerate(graph.layers)}
    for i, item in enumerate(items):
        if isinstance(item, Kept):
            members_of[i] = members = item.members
            for m in members:
                holder[m.name] = i
            last[i] = order[members[-1].name]
    graph_inputs = {t.name for t in graph.inputs}
    producer, removed, source = graph.producer, flow.removed, flow.source
    blocked: dict[int, bool] = {}
    before: set[int] = set()
    after: set[int] = set()
    # an item's external inputs are all produced before its last member: visit items in that order
    layout_ops = layouts.ops
    for i in sorted(last, key=last.__getitem__):
        members = members_of[i]
        n_inputs = 0  # external activation inputs
        blocked_sources: list[int] = []  # the items producing the blocked ones
        for m in members:
            for t in m.inputs:
                src = producer.get(t.name)  # Flow.source, inline where no removed layer is in the way (hot path)
                if src is not None and src in removed:
                    src = source(t.name)
                if src is None:
                    n_inputs += t.name in graph_inputs
                    continue
                j = holder[src]
                if j != i:
                    n_inputs += 1
                    if blocked[j]:
                        blocked_sources.append(j)
        primary = members[0]
        if primary.op not in layout_ops:
            blocked[i] = False
            if blocked_sources:
                after.update(blocked_sources)
            continue
        key = input_layout(n_inputs, len(blocked_sources))
        try:  # the memo key as in Mapper._holding_rules, with the input layout (inline: this is the hot path)
            memo_key: tuple[object, ...] | None = (
                key,
                primary.op,
                primary.inputs[0].shape if primary.inputs else None,
                primary.outputs[0].shape if primary.outputs else None,
                primary.attrs.get("group", 1),
            )
            decision = memo.get(memo_key)  # type: ignore[arg-type]
        except TypeError:  # an unhashable group attribute: no memo
            memo_key, decision = None, None
        if decision is None:
            decision = layout_decision(layouts, primary, key)
            if memo_key is not None:
                memo[memo_key] = decision
        runs_blocked, converts = decision
        blocked[i] = runs_blocked
        if runs_blocked:
            if converts and n_inputs and key != "blocked":
                before.add(i)
        elif blocked_sources:
            after.update(blocked_sources)
    for name in graph.outputs:
        src = flow.source(name)
        if src is not None and blocked[holder[src]]:
            after.add(holder[src])
    if not before and not after:
        return items
    hits[f"layout:{layouts.to_blocked}"] += len(before)
    hits[f"layout:{layouts.to_plain}"] += len(after)
    out: list[Item] = []
    for i, item in enumerate(items):
        if i in before:
            out.append(Inserted(layouts.to_blocked, "before", 0, cast(Kept, item)))
        out.append(item)
        if i in after:
            out.append(Inserted(layouts.to_plain, "after", 0, cast(Kept, item)))
    return out


def apply(graph: Graph, rules: MappingRules) -> MappedGraph:
    """The executed layers of ``graph`` under ``rules``, in execution order (see :meth:`Mapper.plan`)."""
    return Mapper(rules).map(graph)

