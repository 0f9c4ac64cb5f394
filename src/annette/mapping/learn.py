"""Learn a target's mapping rules from benchmark records.

Primary evidence is the runtime's per-node profile (``NodeProfile.covers``): a node covering several graph
layers is a fusion, graph layers covered by no node were removed (or folded), nodes covering nothing were
inserted. Where single-layer records exist for every member of a small chain, the timing test
t(A) + t(B) − t(A→B) > α·min(t(A), t(B)) (nn-Meter; α = 0.5) corroborates a fusion, or decides it alone
when no profiles exist. Per-run overhead is subtracted from every time before the test.

A pattern becomes a rule when at least ``min_instances`` occurrences support it and the rule agrees with at
least ``min_agreement`` of its occurrences; where the data disagree, a condition on one member attribute
(e.g. ``strides in [(1, 1)]``) is learned if it separates fused from unfused occurrences.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import median

from annette.graph.ir import AttrValue, Graph, Layer
from annette.mapping.mapped import (
    GRAPH_INPUT,
    ExecutedLayer,
    Flow,
    duplicates,
    inserted_layer,
    neighbour_keys,
)
from annette.mapping.rules import (
    AttrCondition,
    Evidence,
    FusionRule,
    InsertionRule,
    LayoutRule,
    Layouts,
    MappingRules,
    MergeRule,
    RemovalRule,
    ShapeCondition,
    input_layout,
    is_closed,
)
from annette.records import BenchRecord, NodeProfile

logger = logging.getLogger(__name__)

DEFAULT_POSITION = "before"  # side of an inserted node's anchor when no rule says otherwise


# -- reading profiles ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfiledRun:
    """A record's graph with its per-node profile resolved to graph layers (in profile = execution order)."""

    record: BenchRecord
    graph: Graph
    nodes: tuple[NodeProfile, ...]
    members: tuple[tuple[Layer, ...], ...]  # per node, topological order; () for an inserted node
    removed: frozenset[str]

    def covered(self) -> dict[int, ExecutedLayer]:
        """Node index -> executed layer, for nodes that cover graph layers."""
        flow = Flow(self.graph, self.removed)
        return {
            i: ExecutedLayer(name=node.node, members=m, bypassed=flow.bypassed(m) if len(m) > 1 else ())
            for i, (node, m) in enumerate(zip(self.nodes, self.members, strict=True))
            if m
        }

    def anchor(self, i: int, position: str) -> int | None:
        """The covered node an inserted node ``i`` serves: the next one (before) or the previous one (after)."""
        order = range(i + 1, len(self.nodes)) if position == "before" else range(i - 1, -1, -1)
        return next((j for j in order if self.members[j]), None)

    def executed(self, positions: Mapping[str, str]) -> list[tuple[ExecutedLayer, float, int]]:
        """Every executed layer with its kernel time and node count. Nodes covering the same graph layers (a
        layer split into several kernels) are one executed layer; an inserted node of type T is anchored on
        the side ``positions[T]`` (default before); one without a covered neighbour is left out."""
        covered = self.covered()
        merged: dict[tuple[str, ...], list[float | int]] = {}
        first: dict[tuple[str, ...], ExecutedLayer] = {}
        out: list[tuple[ExecutedLayer, float, int]] = []
        for i, node in enumerate(self.nodes):
            if i in covered:
                key = covered[i].covers
                if key in merged:
                    merged[key][0] += node.time_ms
                    merged[key][1] += 1
                else:
                    merged[key] = [node.time_ms, 1]
                    first[key] = covered[i]
                continue
            position = positions.get(node.op_type, DEFAULT_POSITION)
            j = self.anchor(i, position)
            if j is not None:
                out.append((inserted_layer(node.op_type, covered[j], position, node.node), node.time_ms, 1))
        out.extend((first[key], float(t), int(n)) for key, (t, n) in merged.items())
        return out


def read_profile(record: BenchRecord) -> ProfiledRun | None:
    """Resolve a record's profile to its graph; None where it has no graph or no profile."""
    if record.graph is None or not record.profile:
        return None
    graph = record.graph
    profile = relinked(record.target.backend, graph, record.profile)
    index = {layer.name: i for i, layer in enumerate(graph.layers)}
    members: list[tuple[Layer, ...]] = []
    covered: set[str] = set()
    unknown = 0
    for node in profile:
        names = sorted({c for c in node.covers if c in index}, key=index.__getitem__)
        unknown += sum(1 for c in node.covers if c not in index)
        members.append(tuple(graph.layers[index[n]] for n in names))
        covered.update(names)
    if unknown:
        logger.debug("record %s: %d profile covers name no graph layer", record.config_id, unknown)
    if not covered and len(graph.layers) == 1:
        # A single layer that the runtime ran as kernels of other names (ORT: HardSwish as HardSigmoid + Mul).
        members = [(graph.layers[0],)] * len(members)
        covered.add(graph.layers[0].name)
    removed = frozenset(layer.name for layer in graph.layers if layer.name not in covered)
    return ProfiledRun(record, graph, tuple(profile), tuple(members), removed)


def relinked(backend: str, graph: Graph, profile: Sequence[NodeProfile]) -> Sequence[NodeProfile]:
    """A stored profile linked to its graph again (:func:`annette.mapping.observed.link_profile`) where its backend
    can give back the raw nodes from what a profile stores (ONNX Runtime: node names and op types), so that
    records measured with an older linker are read as today's linker reads them; the profile as stored elsewhere."""
    from annette.backends import BACKENDS
    from annette.mapping.observed import link_profile

    rebuild = getattr(BACKENDS.get(backend), "stored_nodes", None) if backend in BACKENDS else None
    return link_profile(graph, rebuild(profile)) if rebuild is not None else profile


# -- learning ------------------------------------------------------------------------------------------------
def learn_rules(
    records: Iterable[BenchRecord],
    *,
    alpha: float = 0.5,
    min_agreement: float = 0.8,
    min_instances: int = 2,
    run_overhead_ms: float = 0.0,
    profiles: Sequence[ProfiledRun | None] | None = None,
) -> MappingRules:
    """Learn removals, fusions and insertions from ``records`` (ok records with graphs).

    ``profiles``: each record's :func:`read_profile`, where the caller has read them already (one per record,
    in order); else they are read here."""
    given = list(records)
    if profiles is not None and len(profiles) != len(given):
        raise ValueError(f"{len(profiles)} profiles for {len(given)} records")
    kept = [i for i, r in enumerate(given) if r.status == "ok" and r.graph is not None]
    read = (read_profile(given[i]) if profiles is None else profiles[i] for i in kept)
    runs = [run for run in read if run is not None]
    records = [given[i] for i in kept]
    logger.info("learning mapping rules from %d records (%d with profiles)", len(records), len(runs))
    merges = _learn_merges(runs, min_agreement, min_instances)
    removals = _learn_removals(runs, min_agreement, min_instances)
    timing = _timing_instances(records, alpha, run_overhead_ms)
    fusions = _learn_fusions(runs, timing, min_agreement, min_instances)
    layouts = _learn_layouts(runs, min_instances)
    conversions = () if layouts is None else (layouts.to_blocked, layouts.to_plain)
    insertions = _learn_insertions(runs, min_instances, skip=conversions)
    settings = {
        "alpha": alpha,
        "min_agreement": min_agreement,
        "min_instances": min_instances,
        "run_overhead_ms": run_overhead_ms,
        "n_records": len(records),
        "n_profiled": len(runs),
    }
    return MappingRules(tuple(fusions), tuple(removals), tuple(insertions), settings, layouts, tuple(merges))


def _producer_op(graph: Graph, layer: Layer) -> str:
    src = graph.producer.get(layer.inputs[0].name) if layer.inputs else None
    return GRAPH_INPUT if src is None else graph.by_name[src].op


def _split(labels: Sequence[tuple[AttrValue, bool]]) -> tuple[tuple[AttrValue, ...], int]:
    """Values whose majority is True, and how many labels that choice gets right."""
    n: Counter[AttrValue] = Counter()
    m: Counter[AttrValue] = Counter()
    for value, label in labels:
        n[value] += 1
        m[value] += label
    chosen = tuple(sorted((v for v in n if 2 * m[v] > n[v]), key=repr))
    right = sum(max(m[v], n[v] - m[v]) for v in n)
    return chosen, right


def _learn_merges(runs: Sequence[ProfiledRun], min_agreement: float, min_instances: int) -> list[MergeRule]:
    """Merge rules: repeated computations (:func:`duplicates`) that the profile does not run twice, i.e. where
    the repeat and the original do not both have a node of their own."""
    n: Counter[str] = Counter()
    agree: Counter[str] = Counter()
    records: dict[str, set[int]] = defaultdict(set)
    for r, run in enumerate(runs):
        dups = duplicates(run.graph, _AnyOp())
        if not dups:
            continue
        alone = {m[0].name for m in run.members if len(m) == 1}
        for dup, first in dups.items():
            op = run.graph.by_name[dup].op
            n[op] += 1
            agree[op] += not (dup in alone and first in alone)
            records[op].add(r)
    return [
        MergeRule(op, Evidence(len(records[op]), n[op], agree[op]))
        for op in sorted(n)
        if agree[op] >= min_instances and agree[op] / n[op] >= min_agreement
    ]


class _AnyOp:
    """Every op type (a container for :func:`duplicates`)."""

    def __contains__(self, op: object) -> bool:
        return True


def _learn_removals(runs: Sequence[ProfiledRun], min_agreement: float, min_instances: int) -> list[RemovalRule]:
    seen: dict[str, list[tuple[AttrValue, bool]]] = defaultdict(list)
    records: Counter[str] = Counter()
    for run in runs:
        for op in {layer.op for layer in run.graph.layers}:
            records[op] += 1
        for layer in run.graph.layers:
            seen[layer.op].append((_producer_op(run.graph, layer), layer.name in run.removed))
    rules = []
    for op, labels in sorted(seen.items()):
        n, m = len(labels), sum(label for _, label in labels)
        if m < min_instances:
            continue
        if m / n >= min_agreement:
            rules.append(RemovalRule(op, None, Evidence(records[op], n, m)))
            continue
        after, right = _split(labels)
        if after and right / n >= min_agreement:
            rules.append(RemovalRule(op, tuple(str(a) for a in after), Evidence(records[op], n, right)))
    return rules


def _signature(layer: Layer) -> str:
    return json.dumps(
        [
            layer.op,
            [t.shape for t in layer.inputs],
            [t.shape for t in layer.outputs],
            [t.shape for t in layer.weights],
            sorted((k, v) for k, v in layer.attrs.items()),
        ],
        default=list,
    )


def _timing_instances(
    records: Sequence[BenchRecord], alpha: float, run_overhead_ms: float
) -> dict[tuple[str, ...], list[bool]]:
    """For chain-shaped records whose every layer also has a single-layer record: is the chain fused by timing?"""
    single: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.graph is not None and len(r.graph.layers) == 1 and r.measurement is not None:
            single[_signature(r.graph.layers[0])].append(r.measurement.label_ms - run_overhead_ms)
    out: dict[tuple[str, ...], list[bool]] = defaultdict(list)
    for r in records:
        if r.graph is None or r.measurement is None or len(r.graph.layers) < 2:
            continue
        layers = r.graph.layers
        pattern = tuple(layer.op for layer in layers)
        if Flow(r.graph).chain(layers[0], pattern) != layers:
            continue
        times = [median(single[s]) for s in map(_signature, layers) if s in single]
        if len(times) != len(layers) or min(times) <= 0:
            continue
        together = r.measurement.label_ms - run_overhead_ms
        out[pattern].append(sum(times) - together > alpha * min(times))
    return out


def _learn_fusions(
    runs: Sequence[ProfiledRun],
    timing: Mapping[tuple[str, ...], list[bool]],
    min_agreement: float,
    min_instances: int,
) -> list[FusionRule]:
    patterns: set[tuple[str, ...]] = set()
    for run in runs:
        flow = Flow(run.graph, run.removed)
        for m in run.members:
            if len(m) > 1:
                pattern = tuple(layer.op for layer in m)
                if flow.chain(m[0], pattern) == m:
                    patterns.add(pattern)
                else:
                    logger.debug("record %s: fused node over %s is not a chain", run.record.config_id, pattern)
    rules = []
    for pattern in sorted(patterns | set(timing)):
        instances, n_records, forks = _fusion_instances(runs, pattern)
        votes = timing.get(pattern, [])
        evidence = Evidence(n_records, n_timing=len(votes), n_timing_agree=sum(votes))
        rule = _fusion_rule(pattern, instances, evidence, min_agreement, min_instances)
        if rule is not None and forks:
            rule = replace(rule, forks=True)
        if rule is None and not instances and len(votes) >= min_instances and sum(votes) / len(votes) >= min_agreement:
            rule = FusionRule(pattern, (), evidence)  # timing alone (no profiles)
        if rule is not None:
            rules.append(rule)
    rules.sort(key=lambda r: (-len(r.pattern), r.pattern))
    return rules


def _fusion_instances(
    runs: Sequence[ProfiledRun], pattern: tuple[str, ...]
) -> tuple[list[tuple[tuple[Layer, ...], bool]], int, bool]:
    """Occurrences of ``pattern`` as a chain, each labelled fused (one node covers exactly the chain) or not, and
    whether a fused one forks (a member but the last read by two layers of the chain: :meth:`Flow.link`).

    Occurrences inside a larger fused node are left out (a longer rule explains them), and so are occurrences
    whose later members another node fused with other layers (of two convolutions feeding one Add, only one
    can take it). Inner occurrences (no later member reads a graph input) come first in the returned list:
    see :func:`_inner_first`."""
    inner: list[tuple[tuple[Layer, ...], bool]] = []
    boundary: list[tuple[tuple[Layer, ...], bool]] = []
    n_records = 0
    forks = False
    for run in runs:
        flow = Flow(run.graph, run.removed)
        node_of = {layer.name: i for i, m in enumerate(run.members) for layer in m}
        found = False
        for layer in run.graph.layers:
            chain = flow.chain(layer, pattern) if layer.op == pattern[0] else None
            if chain is None:
                continue
            node = node_of.get(chain[0].name)
            names = {c.name for c in chain}
            if node is not None and names < {x.name for x in run.members[node]}:
                continue
            others = {node_of.get(c.name) for c in chain[1:]} - {node, None}
            if any(len(run.members[j]) > 1 and {x.name for x in run.members[j]} - names for j in others if j is not None):
                continue
            fused = node is not None and names == {x.name for x in run.members[node]}
            forks = forks or (fused and any(flow.single_consumer(c) is None for c in chain[:-1]))
            produced = {t.name for c in chain for t in c.outputs}
            at_input = any(t.name not in produced and flow.source(t.name) is None for c in chain[1:] for t in c.inputs)
            (boundary if at_input else inner).append((chain, fused))
            found = True
        n_records += found
    return _inner_first(inner, boundary), n_records, forks


MIN_INNER = 10  # inner occurrences that suffice to decide a fusion rule without the boundary ones


def _inner_first(
    inner: list[tuple[tuple[Layer, ...], bool]], boundary: list[tuple[tuple[Layer, ...], bool]]
) -> list[tuple[tuple[Layer, ...], bool]]:
    """The occurrences that decide a rule: the inner ones where there are at least :data:`MIN_INNER`, else all.

    A chain whose later member reads a graph input directly (a residual Add of a benchmark block whose skip is
    the benchmark's input) shows how the target treats a network's *input*; inside networks such tensors come
    from other layers, and the target may map the chain differently (ORT fuses the Add into a blocked Conv
    only when the skip tensor is blocked too, which a graph input never is)."""
    return inner if len(inner) >= MIN_INNER else inner + boundary


def _fusion_rule(
    pattern: tuple[str, ...],
    instances: Sequence[tuple[tuple[Layer, ...], bool]],
    evidence: Evidence,
    min_agreement: float,
    min_instances: int,
) -> FusionRule | None:
    n = len(instances)
    m = sum(fused for _, fused in instances)
    if m < min_instances:
        return None
    if m / n >= min_agreement:
        return FusionRule(pattern, (), _with(evidence, n, m))
    # One condition: a member attribute taking a few values (strides in [(1, 1)]; a long list of values
    # memorises the sweep, e.g. the channel counts that happened to be blocked), or a shape test on the first
    # member (in_c % 4 == 0), which wins ties as the more general of the two.
    best: tuple[int, int, AttrCondition | ShapeCondition | bool] | None = None
    for position in range(len(pattern)):
        keys = sorted({k for chain, _ in instances for k in chain[position].attrs})
        for key in keys:
            labels = [(chain[position].attrs.get(key), fused) for chain, fused in instances]
            values, right = _split(labels)
            if values and len(values) <= MAX_ATTR_VALUES and (best is None or (right, 0) > best[:2]):
                best = (right, 0, AttrCondition(position, key, values))
    for cand in SHAPE_CANDIDATES:
        right = sum(cand.holds(chain[0]) == fused for chain, fused in instances)
        if best is None or (right, 1) > best[:2]:
            best = (right, 1, cand)
    closed = sum(is_closed(chain) == fused for chain, fused in instances)  # x·σ(x) fused, σ(s)·x not
    for value, right in ((True, closed), (False, n - closed)):
        if best is None or (right, 1) > best[:2]:
            best = (right, 1, value)
    if best is None or best[0] / n < min_agreement:
        return None
    cond = best[2]
    if isinstance(cond, bool):
        rule = FusionRule(pattern, (), _with(evidence, n, best[0]), closed=cond)
    elif isinstance(cond, ShapeCondition):
        rule = FusionRule(pattern, (), _with(evidence, n, best[0]), shape_conditions=(cond,))
    else:
        rule = FusionRule(pattern, (cond,), _with(evidence, n, best[0]))
    # a condition that is right by refusing (nearly) every chain is no fusion rule: it must fuse real ones
    if sum(fused and rule.allows(chain) for chain, fused in instances) < min_instances:
        return None
    return rule


MAX_ATTR_VALUES = 4  # an attribute condition listing more values than this is memorisation, not a rule


def _with(evidence: Evidence, n: int, agree: int) -> Evidence:
    return Evidence(evidence.n_records, n, agree, evidence.n_timing, evidence.n_timing_agree)


def _learn_insertions(
    runs: Sequence[ProfiledRun], min_instances: int, skip: Sequence[str] = ()
) -> list[InsertionRule]:
    """Insertion rules by neighbour op, for inserted node types other than ``skip`` (the layout conversions)."""
    # Which covered node does each inserted node serve, on either side?
    assoc: dict[tuple[str, str], dict[tuple[int, int], int]] = defaultdict(Counter)
    for r, run in enumerate(runs):
        for i, m in enumerate(run.members):
            if m or run.nodes[i].op_type in skip:
                continue
            for position in ("before", "after"):
                j = run.anchor(i, position)
                if j is not None:
                    assoc[(run.nodes[i].op_type, position)][(r, j)] += 1
    rules = []
    for op_type in sorted({t for t, _ in assoc}):
        position = _concentrated_side(runs, assoc, op_type)
        rules.extend(_insertion_rules(runs, op_type, position, assoc[(op_type, position)], min_instances))
    return rules


# Kernel exec types that name a blocked layout (ONNX Runtime runs NCHWc kernels in the com.microsoft.nchwc domain).
BLOCKED_MARKERS = ("nchwc",)


def is_blocked(node: NodeProfile) -> bool:
    exec_type = node.exec_type.lower()
    return any(m in exec_type for m in BLOCKED_MARKERS)


def _learn_layouts(runs: Sequence[ProfiledRun], min_instances: int) -> Layouts | None:
    """Blocked-layout propagation from profiles whose kernels say which layout they ran in; None where none do.

    The conversion node types are the inserted blocked-layout nodes that most often sit between a plain and a
    blocked node (to blocked) or a blocked and a plain one (to plain). A layer's input layout is what its
    producers' nodes ran in (graph inputs are plain); the conditions under which it runs blocked, and under
    which a blocked layer converts its plain input, are learned per op and input layout."""
    into: Counter[str] = Counter()
    out_of: Counter[str] = Counter()
    for run in runs:
        for i, (node, m) in enumerate(zip(run.nodes, run.members, strict=True)):
            if m or not is_blocked(node):
                continue
            prev, nxt = run.anchor(i, "after"), run.anchor(i, "before")
            prev_blocked = prev is not None and is_blocked(run.nodes[prev])
            next_blocked = nxt is not None and is_blocked(run.nodes[nxt])
            into[node.op_type] += next_blocked and not prev_blocked
            out_of[node.op_type] += prev_blocked and not next_blocked
    if not into or not out_of:
        return None
    to_blocked, to_plain = into.most_common(1)[0][0], out_of.most_common(1)[0][0]
    if to_blocked == to_plain:
        return None
    blocked: dict[tuple[str, str], list[tuple[Layer, bool]]] = defaultdict(list)
    converts: dict[str, list[tuple[Layer, bool]]] = defaultdict(list)
    records: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r, run in enumerate(runs):
        for j, key, label, converted in _layout_instances(run, to_blocked, to_plain):
            primary = run.members[j][0]
            blocked[(primary.op, key)].append((primary, label))
            records[(primary.op, key)].add(r)
            if converted is not None:
                converts[primary.op].append((primary, converted))
                records[(primary.op, "convert")].add(r)

    def rules(sub: Sequence[tuple[Layer, bool]], op: str, key: str, inputs: str) -> list[LayoutRule]:
        """Up to MAX_LAYOUT_RULES rules for one op and input layout, any of which makes it run blocked (sequential
        covering: a further rule is learned on the instances the earlier ones leave out, e.g. ONNX Runtime's
        NCHWc convolution takes a plain input when its channels are a multiple of 4, and also when there are
        fewer than 4, as in a network's first layer)."""
        out: list[LayoutRule] = []
        rest = list(sub)
        while len(out) < MAX_LAYOUT_RULES and sum(label for _, label in rest) >= min_instances:
            found = _key_conditions(rest)
            if found is None or (out and not found[0]):
                break
            out.append(LayoutRule(op, inputs, found[0], Evidence(len(records[(op, key)]), len(rest), found[1])))
            rest = [(layer, label) for layer, label in rest if not all(c.holds(layer) for c in found[0])]
            if not found[0]:
                break
        return out

    return Layouts(
        to_blocked,
        to_plain,
        tuple(rule for (op, key), sub in sorted(blocked.items()) for rule in rules(sub, op, key, key)),
        tuple(rule for op, sub in sorted(converts.items()) for rule in rules(sub, op, "convert", "plain")),
    )


def _layout_instances(
    run: ProfiledRun, to_blocked: str, to_plain: str
) -> Iterator[tuple[int, str, bool, bool | None]]:
    """Per covered node, in execution order: (node index, its inputs' layout, whether it ran blocked, and for a
    blocked node with a plain input whether a ``to_blocked`` node converted it (else None)).

    A node ran blocked when its kernel says so, or when it reads only blocked tensors with no ``to_plain`` node
    executed between them and it (a layout-agnostic kernel, e.g. ONNX Runtime's Relu on an NCHWc tensor)."""
    node_of = {layer.name: j for j, m in enumerate(run.members) for layer in m}
    converted = {run.anchor(i, "before") for i, node in enumerate(run.nodes) if node.op_type == to_blocked}
    plain_at = [i for i, node in enumerate(run.nodes) if node.op_type == to_plain]
    flow = Flow(run.graph, run.removed)
    graph_inputs = {t.name for t in run.graph.inputs}
    ran_blocked: dict[int, bool] = {}
    for j, m in enumerate(run.members):
        if not m:
            continue
        names = {layer.name for layer in m}
        sources: list[int | None] = []
        for layer in m:
            for t in layer.inputs:
                src = flow.source(t.name)
                if src is None:
                    if t.name in graph_inputs:
                        sources.append(None)
                elif src not in names and src in node_of and node_of[src] != j:
                    sources.append(node_of[src])
        flags = [s is not None and ran_blocked.get(s, False) for s in sources]
        key = input_layout(len(flags), sum(flags))
        label = is_blocked(run.nodes[j])
        if not label and key == "blocked":
            last = max(s for s in sources if s is not None)
            label = not any(last < i < j for i in plain_at)
        ran_blocked[j] = label
        yield j, key, label, (j in converted) if label and not all(flags) else None


def _concentrated_side(
    runs: Sequence[ProfiledRun], assoc: Mapping[tuple[str, str], Mapping[tuple[int, int], int]], op_type: str
) -> str:
    """The side on which most inserted nodes have an anchor of one op type (the inserted node's real partner)."""
    best = ("before", (-1, -1.0))
    for position in ("before", "after"):
        anchors = Counter[str]()
        for (r, j), count in assoc.get((op_type, position), {}).items():
            anchors[runs[r].members[j][0].op] += count
        top = max(anchors.values(), default=0)
        score = (top, top / sum(anchors.values()) if top else 0.0)
        if score > best[1]:
            best = (position, score)
    return best[0]


def _insertion_rules(
    runs: Sequence[ProfiledRun],
    op_type: str,
    position: str,
    assoc: Mapping[tuple[int, int], int],
    min_instances: int,
) -> list[InsertionRule]:
    anchor_ops = {runs[r].members[j][0].op for r, j in assoc}
    instances: dict[str, list[tuple[list[str], Layer, bool]]] = defaultdict(list)
    counts: dict[str, list[int]] = defaultdict(list)
    records: dict[str, set[int]] = defaultdict(set)
    for r, run in enumerate(runs):
        covered = run.covered()
        executed_of = {layer.name: ex for ex in covered.values() for layer in ex.members}
        flow = Flow(run.graph, run.removed)
        for j, ex in covered.items():
            op = ex.primary.op
            if op not in anchor_ops:
                continue
            count = assoc.get((r, j), 0)
            if count:
                counts[op].append(count)
                records[op].add(r)
            instances[op].append((neighbour_keys(flow, executed_of, ex, position), ex.primary, count > 0))
    rules = []
    for op in sorted(anchor_ops):
        # One condition set per neighbour op (ORT reorders a Conv's output before a Concat only where the Concat
        # cannot run blocked, before a graph output always); neighbours with the same conditions share a rule.
        by_conditions: dict[tuple[ShapeCondition, ...], list[tuple[str, int, int]]] = defaultdict(list)
        for key in sorted({k for keys, _, _ in instances[op] for k in keys}):
            sub = [(layer, label) for keys, layer, label in instances[op] if key in keys]
            if sum(label for _, label in sub) < min_instances:
                continue
            found = _key_conditions(sub)
            if found is not None:
                by_conditions[found[0]].append((key, found[1], len(sub)))
        count = round(median(counts[op])) if counts[op] else 1
        for conditions, keys in by_conditions.items():
            evidence = Evidence(len(records[op]), sum(n for *_, n in keys), sum(right for _, right, _ in keys))
            neighbours = tuple(k for k, *_ in keys)
            rules.append(InsertionRule(op_type, op, position, neighbours, count, evidence, conditions))
    return rules


def _key_conditions(
    sub: Sequence[tuple[Layer, bool]], max_conditions: int = 2
) -> tuple[tuple[ShapeCondition, ...], int] | None:
    """Up to ``max_conditions`` shape conditions on the anchor (added greedily while each makes the rule right on
    clearly more anchors) under which the node is inserted next to one neighbour op; None where never inserting
    is right more often. Returns (conditions, anchors predicted right)."""

    def right(conditions: tuple[ShapeCondition, ...]) -> int:
        return sum(all(c.holds(layer) for c in conditions) == label for layer, label in sub)

    conditions: tuple[ShapeCondition, ...] = ()
    best = right(conditions)
    margin = max(1, len(sub) // 200)
    for _ in range(max_conditions):
        found: tuple[int, ShapeCondition] | None = None
        for cand in SHAPE_CANDIDATES:
            if cand not in conditions:
                r = right((*conditions, cand))
                if r >= best + margin and (found is None or r > found[0]):
                    found = (r, cand)
        if found is None:
            break
        best, conditions = found[0], (*conditions, found[1])
    never = sum(not label for _, label in sub)
    return (conditions, best) if best > never else None


MAX_LAYOUT_RULES = 2

SHAPE_CANDIDATES: tuple[ShapeCondition, ...] = (
    *(ShapeCondition(v, "mod", m) for v in ("in_c", "out_c") for m in (2, 4, 8, 16, 32)),
    *(ShapeCondition(v, "lt", t) for v in ("in_c", "out_c") for t in (4, 8, 16)),
    *(ShapeCondition(v, "nmod", m) for v in ("in_c", "out_c") for m in (4, 8, 16)),
    *(ShapeCondition(v, "ge", t) for v in ("in_c", "out_c") for t in (2, 4, 8, 16, 32, 64)),
    ShapeCondition("group", "eq", 1),
    ShapeCondition("group", "ge", 2),
)
