"""Legacy mapping-model JSON (``database/models/mapping/*.json``) and the original's optimizer passes.

A mapping file is ``{"name": ..., "<Rule>": {"prim_type", "sec_type", "out_type", "fuse_cond", "est_model",
"conv_dict"}, ...}``; the rules run in file order. ``sec_type`` set -> a *fuser* (primary->secondary pair
becomes ``out_type``); ``sec_type`` null and ``out_type`` a list -> a *splitter*; both null -> a *remover*.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from annette.errors import LegacyFormatError
from annette.legacy.graph import LegacyGraph
from annette.legacy.jsonfile import JsonSource, read_json_object
from annette.legacy.layers import MAPPING_LAYER_CLASSES, compute_counts

log = logging.getLogger(__name__)

CONDITION_OPS = ("==", ">", "<", ">=", "<=")


@dataclass(frozen=True)
class FuseCondition:
    """``layer[name]`` (or ``layer[name][index]``) compared with ``value``: ``==`` on ``str(x)``, else as floats."""

    name: str
    op: str
    value: str
    index: int | None = None

    def holds(self, view: Mapping[str, Any], where: str) -> bool:
        try:
            x = view[self.name] if self.index is None else view[self.name][self.index]
        except (KeyError, IndexError, TypeError):
            raise LegacyFormatError(
                f"{where}: fuse condition on {self.name!r}"
                + (f"[{self.index}]" if self.index is not None else "")
                + " cannot be evaluated: the layer has no such value"
            ) from None
        if self.op == "==":
            return str(x) == self.value
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise LegacyFormatError(f"{where}: fuse condition {self.name!r} {self.op} {self.value}: value {x!r} is not a number")
        v = float(self.value)
        return {">": x > v, "<": x < v, ">=": x >= v, "<=": x <= v}[self.op]


@dataclass(frozen=True)
class MappingRule:
    """One optimizer of a mapping model, in the order of the file."""

    key: str
    name: str
    kind: str  # "fuser" | "splitter" | "remover"
    prim_type: str
    sec_type: str | None = None
    out_type: str | tuple[str, ...] | None = None
    primary_conditions: tuple[FuseCondition, ...] = ()
    secondary_conditions: tuple[FuseCondition, ...] = ()
    est_model: str | None = None  # a classifier pickle that must also predict 1.0 (never shipped: not runnable)


@dataclass(frozen=True)
class MappingModel:
    name: str
    rules: tuple[MappingRule, ...]
    source: str = "<dict>"


def _parse_conditions(raw: Any, where: str) -> tuple[FuseCondition, ...]:
    if not isinstance(raw, dict):
        raise LegacyFormatError(f"{where}: expected an object of conditions, got {raw!r}")
    out = []
    for key, cond in raw.items():
        here = f"{where} condition {key!r}"
        if not isinstance(cond, dict) or not isinstance(cond.get("name"), str):
            raise LegacyFormatError(f"{here}: expected {{'name', 'cond', 'val'}}, got {cond!r}")
        op, val, idx = cond.get("cond"), cond.get("val"), cond.get("i")
        if op not in CONDITION_OPS:
            raise LegacyFormatError(f"{here}: 'cond' should be one of {CONDITION_OPS}, got {op!r}")
        if not isinstance(val, str):
            raise LegacyFormatError(f"{here}: 'val' should be a string, got {val!r}")
        if op != "==":
            try:
                float(val)
            except ValueError:
                raise LegacyFormatError(f"{here}: {op} needs a numeric 'val', got {val!r}") from None
        if idx is not None and (isinstance(idx, bool) or not isinstance(idx, int)):
            raise LegacyFormatError(f"{here}: 'i' should be an integer index, got {idx!r}")
        out.append(FuseCondition(name=cond["name"], op=op, value=val, index=idx))
    return tuple(out)


def parse_rule(key: str, raw: Any, source: str = "<dict>") -> MappingRule:
    where = f"{source}: mapping rule {key!r}"
    if not isinstance(raw, dict):
        raise LegacyFormatError(f"{where}: expected an object, got {type(raw).__name__}")
    prim, sec, out = raw.get("prim_type"), raw.get("sec_type"), raw.get("out_type")
    if not isinstance(prim, str):
        raise LegacyFormatError(f"{where}: 'prim_type' should be a layer type string, got {prim!r}")
    est_model = str(raw["est_model"]) if raw.get("est_model") else None
    if sec is not None:
        if not isinstance(sec, str) or not isinstance(out, str):
            raise LegacyFormatError(f"{where}: a fuser needs string 'sec_type' and 'out_type', got {sec!r}, {out!r}")
        cond = raw.get("fuse_cond")
        prim_c: tuple[FuseCondition, ...] = ()
        sec_c: tuple[FuseCondition, ...] = ()
        if cond:
            if not isinstance(cond, dict) or "primary" not in cond or "secondary" not in cond:
                raise LegacyFormatError(f"{where}: 'fuse_cond' should have 'primary' and 'secondary', got {cond!r}")
            prim_c = _parse_conditions(cond["primary"], f"{where} primary")
            sec_c = _parse_conditions(cond["secondary"], f"{where} secondary")
        return MappingRule(key, str(raw.get("name", key)), "fuser", prim, sec, out, prim_c, sec_c, est_model)
    if out is None:
        return MappingRule(key, str(raw.get("name", key)), "remover", prim)
    if isinstance(out, list) and len(out) >= 2 and all(isinstance(t, str) for t in out):
        return MappingRule(key, str(raw.get("name", key)), "splitter", prim, None, tuple(out))
    raise LegacyFormatError(
        f"{where}: with 'sec_type' null, 'out_type' must be null (remover) or a list of at least two layer "
        f"types (splitter), got {out!r}"
    )


def load_mapping_model(source: JsonSource | MappingModel, *, runnable: bool = True) -> MappingModel:
    """Load a legacy mapping-model file (path or parsed dict); rules keep the file order.

    With ``runnable`` (the default), a rule that decides fusion with a classifier pickle (``est_model``, as in
    ``ov2.json``) raises :class:`LegacyFormatError`: those pickles were never published, and annette never
    unpickles files. ``runnable=False`` reads such files as data.
    """
    if isinstance(source, MappingModel):
        model = source
    else:
        data, label, _ = read_json_object(source, "mapping model")
        rules = tuple(parse_rule(k, v, label) for k, v in data.items() if k != "name")
        model = MappingModel(name=str(data.get("name", label)), rules=rules, source=label)
    for rule in model.rules:
        if runnable and rule.est_model:
            raise LegacyFormatError(
                f"{model.source}: mapping rule {rule.key!r} decides fusion with the classifier {rule.est_model!r}, "
                "a pickle that was never published (and annette never unpickles files); use a mapping model "
                "without 'est_model' (e.g. ov.json)"
            )
    return model


def _condition_view(name: str, layer: dict[str, Any]) -> Mapping[str, Any]:
    """The layer as a fuse condition sees it: with counts where the mapping's class table has its type."""
    cls = MAPPING_LAYER_CLASSES.get(layer["type"])
    if cls is None:
        return layer
    try:
        return {**layer, **compute_counts(cls, name, layer).as_dict()}
    except LegacyFormatError:
        return layer  # the original's bare ``except`` falls back to the raw layer dict


def _fuse_allowed(rule: MappingRule, graph: LegacyGraph, primary: str, secondary: str) -> bool:
    if not rule.primary_conditions and not rule.secondary_conditions:
        return True
    ok = True  # all conditions are evaluated, as the original counts failures over all of them
    for conds, name in ((rule.primary_conditions, primary), (rule.secondary_conditions, secondary)):
        view = _condition_view(name, graph.layers[name])
        where = f"{graph.source}: rule {rule.key!r} on layer {name!r}"
        for cond in conds:
            ok = cond.holds(view, where) and ok
    return ok


def apply_mapping(graph: LegacyGraph, mapping: MappingModel) -> None:
    """``Mapping_model.run_optimization``: edit ``graph`` in place.

    Phase 1: removers and splitters in file order, each over the topological sort as it was when its pass
    started. Phase 2: fusers in file order, likewise; a fuser fuses primary L into ``out_type`` when L has
    exactly one child C of ``sec_type`` (C's other parents are not checked) and all conditions hold.
    Layers deleted during a pass are skipped; layers created by a split are not visited in that pass.
    """
    for phase in (("remover", "splitter"), ("fuser",)):
        for rule in mapping.rules:
            if rule.kind not in phase:
                continue
            for name in tuple(graph.topological_sort):
                layer = graph.layers.get(name)
                if layer is None or layer["type"] != rule.prim_type:
                    continue
                if rule.kind == "remover":
                    graph.delete_layer(name)
                elif rule.kind == "splitter":
                    assert isinstance(rule.out_type, tuple)
                    graph.split_layer(name, rule.out_type)
                elif len(layer["children"]) == 1:
                    child = layer["children"][0]
                    if graph.layers[child]["type"] == rule.sec_type and _fuse_allowed(rule, graph, name, child):
                        assert isinstance(rule.out_type, str)
                        log.debug("%s: %s fuses %s into %s", rule.key, name, child, rule.out_type)
                        graph.fuse_layer(name, child, rule.out_type)
