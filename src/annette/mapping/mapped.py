"""What a target executes: executed layers (fused, plain or inserted), each linked to the graph layers it covers.

``Flow`` is the data flow of a graph with some layers removed (a removed layer passes its first input through),
shared by rule learning and rule application so that both see the same neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from annette.graph.ir import Graph, Layer, TensorSpec

GRAPH_INPUT = "<input>"
GRAPH_OUTPUT = "<output>"


@dataclass(frozen=True)
class ExecutedLayer:
    """One node the target runs.

    ``members`` are the graph layers it implements, in topological order (one for a plain layer, several for
    a fusion). An inserted node (e.g. a layout reorder) covers no graph layer: its single member is a
    synthetic layer whose op is the inserted op type and whose tensor is the one it converts; ``anchor`` names
    the executed layer it was inserted for.
    """

    name: str
    members: tuple[Layer, ...]
    inserted: bool = False
    anchor: str = ""
    # tensors between members that pass through removed layers (internal to the fusion, like members' outputs)
    bypassed: tuple[str, ...] = ()

    @property
    def covers(self) -> tuple[str, ...]:
        return () if self.inserted else tuple(m.name for m in self.members)

    @property
    def primary(self) -> Layer:
        return self.members[0]

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(m.op for m in self.members)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ops": list(self.ops),
            "covers": list(self.covers),
            "inserted": self.inserted,
            "anchor": self.anchor,
        }


@dataclass(frozen=True)
class MappedGraph:
    """A graph as the target runs it: executed layers in execution order, and the graph layers it removed."""

    graph: Graph
    executed: tuple[ExecutedLayer, ...]
    removed: tuple[str, ...] = ()
    rule_hits: Mapping[str, int] = field(default_factory=dict)  # rule id -> how often it fired

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph.name,
            "executed": [e.to_dict() for e in self.executed],
            "removed": list(self.removed),
            "rule_hits": dict(self.rule_hits),
        }


class Flow:
    """Neighbours of the layers of ``graph`` once the layers in ``removed`` are bypassed."""

    def __init__(self, graph: Graph, removed: Iterable[str] = ()) -> None:
        self.graph = graph
        self.removed = frozenset(removed)
        self._outputs = frozenset(graph.outputs)
        self._consumers: dict[str, tuple[list[str], bool]] = {}
        self._next: dict[str, Layer | None] = {}
        self._forks: dict[str, tuple[Layer | None, Layer | None]] = {}

    def source(self, tensor: str) -> str | None:
        """The kept layer whose output reaches ``tensor`` (None for a graph input)."""
        producer = self.graph.producer
        name = producer.get(tensor)
        while name is not None and name in self.removed:
            layer = self.graph.by_name[name]
            if not layer.inputs:
                return None
            name = producer.get(layer.inputs[0].name)
        return name

    def producers(self, layer: Layer) -> list[str | None]:
        """For each activation input of ``layer``: the kept layer producing it, or None (graph input)."""
        return [self.source(t.name) for t in layer.inputs]

    def consumers(self, layer: Layer) -> tuple[list[str], bool]:
        """Kept layers reading ``layer``'s outputs (through removed ones), and whether an output leaves the graph."""
        cached = self._consumers.get(layer.name)
        if cached is None:
            cached = self._consumers[layer.name] = self._find_consumers(layer)
        return cached

    def _find_consumers(self, layer: Layer) -> tuple[list[str], bool]:
        if len(layer.outputs) == 1:  # fast path, same result where no reader was removed: nothing to walk through
            tensor = layer.outputs[0].name
            readers = self.graph.consumers.get(tensor, ())
            if not self.removed or self.removed.isdisjoint(readers):
                return list(readers if len(readers) < 2 else dict.fromkeys(readers)), tensor in self._outputs
        found: list[str] = []
        leaves = False
        stack = [t.name for t in layer.outputs]
        seen: set[str] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            if tensor in self._outputs:
                leaves = True
            for c in self.graph.consumers.get(tensor, ()):
                if c in self.removed:
                    removed_layer = self.graph.by_name[c]
                    if removed_layer.inputs and removed_layer.inputs[0].name == tensor:
                        stack.extend(t.name for t in removed_layer.outputs)
                elif c not in found:
                    found.append(c)
        return found, leaves

    def bypassed(self, members: tuple[Layer, ...]) -> tuple[str, ...]:
        """Input tensors of ``members`` (and the removed layers' tensors behind them) that reach another member
        only through removed layers, e.g. the BatchNormalization output read by the Relu of Conv(+BN removed)+Relu."""
        if not self.removed:
            return ()
        names = {m.name for m in members}
        producer, by_name = self.graph.producer, self.graph.by_name
        out: list[str] = []
        for m in members[1:]:
            for t in m.inputs:
                path, tensor, name = [], t.name, producer.get(t.name)
                while name is not None and name in self.removed:
                    path.append(tensor)
                    layer = by_name[name]
                    if not layer.inputs:
                        break
                    tensor = layer.inputs[0].name
                    name = producer.get(tensor)
                if name in names:
                    out.extend(p for p in path if p not in out)
        return tuple(out)

    def single_consumer(self, layer: Layer) -> Layer | None:
        """The one kept layer ``layer`` feeds, or None (several, none, or a graph output): the next link of a chain."""
        name = layer.name
        if name in self._next:  # fusion walks ask for the same links again
            return self._next[name]
        nxt: Layer | None
        readers = self.graph.consumers.get(layer.outputs[0].name, ()) if len(layer.outputs) == 1 else None
        if readers is not None and (not self.removed or self.removed.isdisjoint(readers)):
            # fast path, same result as through consumers(): no removed reader to walk through
            if not readers or layer.outputs[0].name in self._outputs:
                nxt = None
            else:
                first = readers[0]
                nxt = None if len(readers) > 1 and any(r != first for r in readers) else self.graph.by_name[first]
        else:
            consumers, leaves = self.consumers(layer)
            nxt = None if leaves or len(consumers) != 1 else self.graph.by_name[consumers[0]]
        self._next[name] = nxt
        return nxt

    def link(self, layer: Layer) -> tuple[Layer | None, Layer | None]:
        """The next link of a chain from ``layer``, and the layer where a side branch from ``layer`` rejoins it.

        The next link is the one kept layer ``layer`` feeds (:meth:`single_consumer`), with no side branch; or,
        where ``layer`` feeds exactly two kept layers and one of them (the join) is reached from the other within
        :data:`MAX_SIDE_PATH` single-consumer links, that other one, with the join: ``x·σ(x)`` after a Conv
        (Sigmoid, then the Mul that reads the Conv's output again), which runtimes fuse into the Conv.
        """
        nxt = self.single_consumer(layer)
        if nxt is not None:
            return nxt, None
        fork = self._forks.get(layer.name)
        if fork is None:
            fork = self._forks[layer.name] = self._find_fork(layer)
        return fork

    def _find_fork(self, layer: Layer) -> tuple[Layer | None, Layer | None]:
        consumers, leaves = self.consumers(layer)
        if leaves or len(consumers) != 2:
            return None, None
        a, b = (self.graph.by_name[c] for c in consumers)
        for first, join in ((a, b), (b, a)):
            walk: Layer | None = first
            for _ in range(MAX_SIDE_PATH):
                walk = self.single_consumer(walk) if walk is not None else None
                if walk is join:
                    return first, join
        return None, None

    def chain(self, start: Layer, pattern: tuple[str, ...]) -> tuple[Layer, ...] | None:
        """The layers ``start → ...`` forming a chain with op types ``pattern``, or None.

        Every member but the last feeds exactly one kept layer (the next member) and no graph output, or feeds
        two whose side branch rejoins the chain at a later member (:meth:`link`).
        """
        if start.op != pattern[0] or start.name in self.removed:
            return None
        members = [start]
        waiting: set[str] = set()  # joins of side branches the chain has not reached yet
        for op in pattern[1:]:
            nxt, join = self.link(members[-1])
            if nxt is None or nxt.op != op:
                return None
            members.append(nxt)
            waiting.discard(nxt.name)
            if join is not None:
                waiting.add(join.name)
        return None if waiting else tuple(members)


MAX_SIDE_PATH = 3  # links from a side branch's first layer to its join (x·σ(x): one, Sigmoid -> Mul)


def duplicates(graph: Graph, ops: Container[str]) -> dict[str, str]:
    """Layers of ``ops`` that repeat an earlier layer's computation, each mapped to that earlier layer: same op,
    same input tensors, same attributes, no weights, and not a graph output."""
    seen: dict[tuple[object, ...], str] = {}
    out: dict[str, str] = {}
    outputs = set(graph.outputs)
    readers = graph.consumers
    for layer in graph.layers:
        if layer.op not in ops or layer.weights or not layer.inputs or len(readers[layer.inputs[0].name]) < 2:
            continue  # a repeat reads a tensor that its original reads too
        if any(t.name in outputs for t in layer.outputs):
            continue
        key = (layer.op, tuple([t.name for t in layer.inputs]), tuple(sorted(layer.attrs.items())))
        try:
            first = seen.setdefault(key, layer.name)
        except TypeError:  # an unhashable attribute value
            continue
        if first != layer.name:
            out[layer.name] = first
    return out


def inserted_tensor(anchor_members: Sequence[Layer], position: str) -> TensorSpec:
    """The tensor a node inserted before (the anchor's first input) or after (its last member's output) converts."""
    return anchor_members[0].inputs[0] if position == "before" else anchor_members[-1].outputs[0]


def inserted_layer(op_type: str, anchor: ExecutedLayer, position: str, name: str) -> ExecutedLayer:
    """A node of ``op_type`` inserted before (converting the anchor's input) or after (its output) ``anchor``."""
    tensor = inserted_tensor(anchor.members, position)
    synthetic = Layer(
        name=name,
        op=op_type,
        inputs=(tensor,),
        outputs=(TensorSpec(f"{name}:out", tensor.shape, tensor.dtype),),
    )
    return ExecutedLayer(name=name, members=(synthetic,), inserted=True, anchor=anchor.name)


def neighbour_keys(flow: Flow, executed_of: Mapping[str, ExecutedLayer], ex: ExecutedLayer, position: str) -> list[str]:
    """Primary op types of the executed layers next to ``ex`` on one side (``<input>``/``<output>`` at the
    graph's boundary): the producer of its first input (before) or the consumers of its output (after)."""

    def primary_op(layer_name: str) -> str | None:
        neighbour = executed_of.get(layer_name)
        return None if neighbour is None else neighbour.primary.op

    return neighbour_ops(flow, primary_op, ex.members, position)


def neighbour_ops(
    flow: Flow, primary_op: Callable[[str], str | None], members: Sequence[Layer], position: str
) -> list[str]:
    """:func:`neighbour_keys` of the executed layer made of ``members``, where ``primary_op`` gives the primary op
    of the executed layer holding a graph layer (None: the layer's own op)."""

    by_name = flow.graph.by_name
    if position == "before":
        if not members[0].inputs:
            return [GRAPH_INPUT]
        src = flow.source(members[0].inputs[0].name)
        return [GRAPH_INPUT if src is None else primary_op(src) or by_name[src].op]
    consumers, leaves = flow.consumers(members[-1])
    keys = [primary_op(c) or by_name[c].op for c in consumers]
    if leaves or not consumers:
        keys.append(GRAPH_OUTPUT)
    return keys
