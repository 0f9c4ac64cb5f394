"""The legacy ANNETTE graph: loading, the original's traversal, and its graph edits (delete, fuse, split).

A legacy graph is ``{"name": ..., "layers": {layer_name: layer_dict, ...}}`` with NHWC shapes and explicit
``parents``/``children`` lists (see ``docs/legacy.md``). :class:`LegacyGraph` holds a private deep copy of the
layer dicts, because the mapping model edits them in place exactly as the original's ``AnnetteGraph`` does.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from annette.errors import LegacyFormatError
from annette.legacy.jsonfile import JsonSource, read_json_object

log = logging.getLogger(__name__)

LayerDict = dict[str, Any]


def parent_name(edge: str) -> str:
    """The layer a ``parents`` entry refers to (the original compares ``p.split(':')[0]``)."""
    return edge.split(":")[0]


class LegacyGraph:
    """A mutable working copy of a legacy graph with the original's traversal and edit semantics."""

    def __init__(self, name: str, layers: Mapping[str, LayerDict], source: str = "<dict>") -> None:
        self.name = name
        self.source = source
        self.layers: dict[str, LayerDict] = copy.deepcopy(dict(layers))
        self.fused: dict[str, list[str]] = {}  # primary -> absorbed layer names (reporting only)
        _validate_layers(self.layers, source)
        # input_layers: recomputed on load as the parent-less layers in file order (the file's list is ignored)
        self.input_layers: list[str] = [n for n, layer in self.layers.items() if not layer["parents"]]
        self._sort: list[str] | None = self.sort()  # None: to be recomputed, see ``topological_sort``

    def copy(self) -> LegacyGraph:
        """An independent copy, in the same state (also after edits)."""
        other = copy.copy(self)
        other.layers = copy.deepcopy(self.layers)
        other.fused = copy.deepcopy(self.fused)
        other.input_layers = list(self.input_layers)
        other._sort = None if self._sort is None else list(self._sort)
        return other

    # -- traversal --------------------------------------------------------------------------------------
    def sort(self) -> list[str]:
        """The original's Kahn walk over ``children`` (``AnnetteGraph._get_topological_sort``).

        Starts from ``input_layers``; for each visited node and each child in ``children`` order, the child's
        remaining-parent count drops by the number of its ``parents`` entries naming the node, and the child is
        appended whenever that count is 0. Unreachable layers are never visited; a child with no parents that
        is listed by a node is appended (visited) once more each time.
        """
        order = list(self.input_layers)
        left = {name: len(layer["parents"]) for name, layer in self.layers.items()}
        n_edges = sum(len(layer["children"]) for layer in self.layers.values())
        limit = 2 * (len(self.layers) + n_edges) + 16
        idx = 0
        while idx < len(order):
            name = order[idx]
            for child in self.layers[name]["children"]:
                left[child] -= sum(1 for p in self.layers[child]["parents"] if parent_name(p) == name)
                if left[child] == 0:
                    order.append(child)
            idx += 1
            if len(order) > limit:
                raise LegacyFormatError(
                    f"{self.source}: graph {self.name!r} cannot be traversed: the walk over 'children' does not "
                    f"terminate (layer {name!r} is re-visited through children lists that form a cycle); "
                    "the original loops forever here"
                )
        return order

    @property
    def topological_sort(self) -> list[str]:
        """The sort as the original holds it: recomputed after every deletion, *not* after a split.

        Computed lazily (deleting many layers in a row recomputes it once); :meth:`split_layer` materialises it
        first, so a split leaves it stale exactly as in the original.
        """
        if self._sort is None:
            self._sort = self.sort()
        return self._sort

    # -- edits (AnnetteGraph.delete_layer / fuse_layer / split_layer) -----------------------------------
    def delete_layer(self, name: str) -> None:
        """Remove ``name``, reconnecting each parent to each child (appended at the end of the lists)."""
        layer = self.layers[name]
        parents, children = layer["parents"], layer["children"]
        for p in parents:
            self._rewire(p, "children", name, children)
        for c in children:
            self._rewire(c, "parents", name, parents)
        if name in self.input_layers:
            self.input_layers.extend(children)
            self.input_layers.remove(name)
        del self.layers[name]
        self._sort = None

    def fuse_layer(self, primary: str, secondary: str, out_type: str) -> None:
        """Nest the secondary's dict under its type in the primary, delete it, and retype the primary."""
        sec = self.layers[secondary]
        self.layers[primary][sec["type"]] = sec
        self.fused.setdefault(primary, []).extend([secondary, *self.fused.pop(secondary, [])])
        self.delete_layer(secondary)
        self.layers[primary]["type"] = out_type

    def split_layer(self, name: str, types: tuple[str, ...]) -> None:
        """Replace ``name`` by a chain ``<name>_<T0> -> <name>_<T1> -> ...`` of shallow copies with the same shapes.

        Like the original, this does not refresh the topological sort.
        """
        self._sort = self.topological_sort  # materialise it now: the split does not refresh it
        if name in self.input_layers:
            raise LegacyFormatError(
                f"{self.source}: cannot split input layer {name!r}: the original leaves a dangling input entry"
            )
        if len(types) < 2:
            raise LegacyFormatError(f"{self.source}: splitting layer {name!r} needs at least 2 types, got {list(types)}")
        new_names = [f"{name}_{t}" for t in types]
        for i, (new, t) in enumerate(zip(new_names, types, strict=True)):
            if i == 0:
                self.layers[new] = self.layers.pop(name)
            else:
                self.layers[new] = dict(self.layers[new_names[0]])  # shallow copy: same shapes
            self.layers[new]["type"] = t
        last = len(new_names) - 1
        for i, new in enumerate(new_names):
            layer = self.layers[new]
            if i == 0:
                for p in layer["parents"]:
                    up = self._layer(p, f"parent of {name!r}")
                    up["children"] = [new if x == name else x for x in up["children"]]
                layer["children"] = [new_names[1]]
            elif i == last:
                layer["parents"] = [new_names[i - 1]]
                for c in layer["children"]:
                    down = self.layers[c]
                    down["parents"] = [new if x == name else x for x in down["parents"]]
            else:
                layer["parents"] = [new_names[i - 1]]
                layer["children"] = [new_names[i + 1]]

    def _rewire(self, owner: str, key: str, name: str, replacement: list[str]) -> None:
        """In ``owner``'s ``key`` list, remove ``name`` and append ``replacement`` (``delete_layer``'s edge patch)."""
        edges = self._layer(owner, f"a neighbour of {name!r}")[key]
        if name not in edges:
            raise LegacyFormatError(
                f"{self.source}: cannot remove layer {name!r}: {owner!r} does not list it in '{key}' "
                "(inconsistent edges; the original fails here too)"
            )
        edges.remove(name)
        edges.extend(replacement)

    def _layer(self, name: str, role: str) -> LayerDict:
        try:
            return self.layers[name]
        except KeyError:
            raise LegacyFormatError(f"{self.source}: layer {name!r} ({role}) does not exist") from None


def load_graph(source: JsonSource | LegacyGraph, name: str | None = None) -> LegacyGraph:
    """Load a legacy graph from a path, a parsed dict, or copy a :class:`LegacyGraph`.

    Raises :class:`LegacyFormatError` for malformed files (not JSON, no ``layers``, a layer without ``type``,
    ``parents``/``children`` naming a missing layer). Symbolic dimensions are reported when a layer is used.
    """
    if isinstance(source, LegacyGraph):
        return source.copy()
    data, label, _ = read_json_object(source, "legacy graph")
    layers = data.get("layers")
    if not isinstance(layers, dict):
        raise LegacyFormatError(
            f"{label}: not a legacy ANNETTE graph: expected a 'layers' object (layer name -> layer), "
            f"got {type(layers).__name__ if layers is not None else 'no layers key'}"
        )
    default = Path(label).stem if isinstance(source, (str, Path)) else "graph"
    graph_name = name or str(data.get("name") or default)
    return LegacyGraph(graph_name, layers, label)


def _validate_layers(layers: dict[str, LayerDict], source: str) -> None:
    for name, layer in layers.items():
        if not isinstance(layer, dict):
            raise LegacyFormatError(f"{source}: layer {name!r} should be an object, got {type(layer).__name__}")
        if not isinstance(layer.get("type"), str):
            raise LegacyFormatError(
                f"{source}: layer {name!r} has no 'type' (expected an op type string such as 'Conv', "
                f"got {layer.get('type')!r})"
            )
        for key in ("parents", "children"):
            edges = layer.get(key)
            if not isinstance(edges, list) or not all(isinstance(e, str) for e in edges):
                raise LegacyFormatError(
                    f"{source}: layer {name!r} ({layer['type']}): '{key}' should be a list of layer names, got {edges!r}"
                )
    for name, layer in layers.items():
        for p in layer["parents"]:
            if parent_name(p) not in layers:
                raise LegacyFormatError(f"{source}: layer {name!r} names parent {p!r}, which is not a layer of the graph")
        for c in layer["children"]:
            if c not in layers:
                raise LegacyFormatError(f"{source}: layer {name!r} names child {c!r}, which is not a layer of the graph")
