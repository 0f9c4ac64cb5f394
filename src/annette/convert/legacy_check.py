"""Compare a converted legacy bundle with the exact legacy path, layer by layer, and say why they differ.

For one legacy graph, layer model and mapping model: the legacy estimate (``annette.legacy``) and the bundle
estimate of the converted graph (``annette.importers.legacy.graph_from_legacy``) are matched by layer name
(an executed layer is named after its primary member, as the original names a fused layer). Every layer
whose times differ by more than ``rtol`` is given the first reason of :data:`REASONS` that applies;
``unexplained`` is what none explains.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from annette.estimate import LayerEstimate, estimate
from annette.graph.ir import Graph
from annette.hardware import HardwareModel
from annette.importers.legacy import graph_from_legacy
from annette.layers.layertype import LayerType
from annette.legacy import LegacyLayerResult, estimate_legacy, load_graph

RTOL = 1e-9

REASONS: Mapping[str, str] = {
    "graph input": "DataInput is a layer in the original, a graph input (no layer) in annette",
    "visited twice": "the original's traversal visits the layer twice (orphan parent lists)",
    "fusion differs": "the layers fused differ (annette fuses by op-type chains with single consumers)",
    "first input only": "Base counts only the first of several inputs in the original (Concat, Add, Mul ...)",
    "rank-1 tensor": "the original drops the first dimension as batch even of a 1-D tensor (Shape's output)",
    "ConvPool counts": "ConvPool: reconstructed input size, and under Base the conv's output, in the original",
    "constant operand": "annette counts a constant operand the original does not record",
    "kernel_shape": "the legacy kernel_shape holds fewer weights than the layer has (PyTorch-exported depthwise "
    "[kh, kw, 1, 1]), so the original undercounts its weights and ops",
    "split layer": "the original splits the layer (Softplus -> Exp, Power, Log); compared as the sum of its parts",
    "depthwise as Conv": "the legacy file calls a depthwise convolution Conv; annette estimates Conv[dw]",
    "ConvTranspose ops": "ConvTranspose ops from the output size in the original, MACs from the input in annette",
    "MatMul entry": "MatMul uses the FullyConnected entry in the bundle, Base in the original",
    "not in the original": "annette estimates a layer the original never visits (not reachable via children)",
    "unexplained": "none of the above",
}


@dataclass(frozen=True)
class LayerDiff:
    name: str
    legacy_type: str
    annette_type: str
    legacy_ms: float | None
    bundle_ms: float | None
    reason: str


@dataclass(frozen=True)
class Comparison:
    graph: str
    kind: str
    legacy_ms: float
    legacy_input_ms: float  # time of the original's DataInput layers (not layers in annette)
    bundle_ms: float
    n_unsupported: int
    n_layers: int  # layers the original estimates
    diffs: tuple[LayerDiff, ...] = field(default=())

    @property
    def reasons(self) -> Counter[str]:
        return Counter(d.reason for d in self.diffs)

    @property
    def expected_exact(self) -> bool:
        """True where only graph inputs differ: then bundle = legacy − inputs (to rounding)."""
        return self.n_unsupported == 0 and set(self.reasons) <= {"graph input"}

    @property
    def rel_error(self) -> float:
        """(bundle − (legacy − inputs)) / (legacy − inputs)."""
        ref = self.legacy_ms - self.legacy_input_ms
        return self.bundle_ms / ref - 1.0 if ref else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "graph": self.graph,
            "kind": self.kind,
            "legacy_ms": self.legacy_ms,
            "legacy_input_ms": self.legacy_input_ms,
            "bundle_ms": self.bundle_ms,
            "rel_error": self.rel_error,
            "expected_exact": self.expected_exact,
            "n_layers": self.n_layers,
            "n_differing": len(self.diffs),
            "reasons": dict(self.reasons),
        }


def _reason(
    r: LegacyLayerResult | None,
    x: LayerEstimate | None,
    graph: Graph,
    parents: Mapping[str, int],
    visits: Mapping[str, int],
    removed: frozenset[str],
) -> str:
    if r is None:
        return "not in the original"
    if r.type == "DataInput":
        return "graph input"
    if visits[r.name] > 1:
        return "visited twice"
    legacy_members, members = {r.name, *r.fused}, set(() if x is None else x.covers)
    if x is None or not members <= legacy_members or not legacy_members - members <= removed:
        return "fusion differs"
    layer = graph.by_name[r.name]
    if any(len(t.shape) <= 1 for t in (*layer.inputs, *layer.outputs)):
        return "rank-1 tensor"
    if r.type == "ConvPool":
        return "ConvPool counts"
    if r.entry == "Base" and parents.get(r.name, 0) > 1:
        return "first input only"
    if any(m.weights for m in (graph.by_name[c] for c in x.covers)) and not r.num_weights:
        return "constant operand"
    if layer.weights and r.num_weights and r.num_weights != sum(w.numel for w in layer.weights):
        return "kernel_shape"
    if r.type == "Conv" and LayerType.parse(x.type).primary == "Conv[dw]":
        return "depthwise as Conv"
    if layer.op == "ConvTranspose":
        return "ConvTranspose ops"
    if layer.op == "MatMul":
        return "MatMul entry"
    return "unexplained"


def compare(
    graph_path: str | Path,
    bundle: HardwareModel,
    kind: str,
    layer_model: str | Path | Mapping[str, Any],
    mapping: str | Path | Mapping[str, Any],
    *,
    rtol: float = RTOL,
) -> Comparison:
    """Legacy path vs bundle on one legacy graph (raises what ``graph_from_legacy`` raises if not convertible)."""
    graph = graph_from_legacy(graph_path)
    legacy = estimate_legacy(graph_path, layer_model, mapping)
    est = estimate(graph, bundle, kind=kind)
    raw = load_graph(graph_path).layers
    parents = {n: len(layer.get("parents", ())) for n, layer in raw.items()}
    visits = Counter(r.name for r in legacy.layers)
    ours = {x.name: x for x in est.layers}
    # the parts of a layer the original split (renamed "<layer>_<part type>") are compared as one layer
    splits: dict[str, list[LegacyLayerResult]] = {}
    for r in legacy.layers:
        base = r.name[: -len(r.type) - 1]
        if r.name not in ours and r.name.endswith("_" + r.type) and base in ours:
            splits.setdefault(base, []).append(r)
    split_names = {r.name for parts in splits.values() for r in parts}
    diffs: list[LayerDiff] = []
    for base, parts in splits.items():
        whole, t = ours[base], math.fsum(r.time_ms for r in parts)
        if whole.time_ms is None or not math.isclose(whole.time_ms, t, rel_tol=rtol, abs_tol=0.0):
            diffs.append(LayerDiff(base, str(LayerType.joined(r.type for r in parts)), whole.type, t, whole.time_ms, "split layer"))
    for r in legacy.layers:
        if r.name in split_names:
            continue
        x = ours.get(r.name)
        if x is not None and x.time_ms is not None and math.isclose(x.time_ms, r.time_ms, rel_tol=rtol, abs_tol=0.0):
            continue
        why = _reason(r, x, graph, parents, visits, frozenset(est.removed))
        diffs.append(LayerDiff(r.name, r.type, "" if x is None else x.type, r.time_ms,
                               None if x is None else x.time_ms, why))
    seen = set(visits) | set(splits)
    diffs.extend(
        LayerDiff(x.name, "", x.type, None, x.time_ms, "not in the original") for x in est.layers if x.name not in seen
    )
    input_ms = sum(r.time_ms for r in legacy.layers if r.type == "DataInput")
    return Comparison(
        legacy.graph, kind, legacy.total_ms, input_ms, est.total_ms, est.n_unsupported, len(legacy.layers), tuple(diffs)
    )
