"""Mapping rules as data: fusions, removals and insertions, each with the evidence it was learned from.

Rules are learned (:mod:`annette.mapping.learn`), never hard-coded as facts about a target, and saved as
JSON inside the hardware-model bundle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from annette.checks import check_schema
from annette.errors import HardwareModelError
from annette.graph.ir import AttrValue, Layer

MAPPING_SCHEMA_VERSION = 1
POSITIONS = ("before", "after")


def _freeze(value: Any) -> AttrValue:
    return tuple(value) if isinstance(value, list) else value  # type: ignore[no-any-return]


def _thaw(value: AttrValue) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class Evidence:
    """What a rule rests on.

    ``n_instances`` occurrences were judged by per-node profiles, ``n_agree`` of them agree with the rule;
    ``n_timing`` occurrences had single-layer timings for the timing test t(A)+t(B)−t(A→B) > α·min(t(A), t(B)),
    ``n_timing_agree`` of them agree. ``n_records`` counts the benchmark records with an occurrence.
    """

    n_records: int = 0
    n_instances: int = 0
    n_agree: int = 0
    n_timing: int = 0
    n_timing_agree: int = 0

    @property
    def agreement(self) -> float | None:
        return self.n_agree / self.n_instances if self.n_instances else None

    @property
    def timing_agreement(self) -> float | None:
        return self.n_timing_agree / self.n_timing if self.n_timing else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_records": self.n_records,
            "n_instances": self.n_instances,
            "n_agree": self.n_agree,
            "agreement": self.agreement,
            "n_timing": self.n_timing,
            "n_timing_agree": self.n_timing_agree,
            "timing_agreement": self.timing_agreement,
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Evidence:
        return Evidence(
            n_records=int(d.get("n_records", 0)),
            n_instances=int(d.get("n_instances", 0)),
            n_agree=int(d.get("n_agree", 0)),
            n_timing=int(d.get("n_timing", 0)),
            n_timing_agree=int(d.get("n_timing_agree", 0)),
        )


@dataclass(frozen=True)
class AttrCondition:
    """Member ``position`` of a fusion must have attribute ``attr`` in ``values`` (None: attribute absent)."""

    position: int
    attr: str
    values: tuple[AttrValue, ...]

    def holds(self, members: Sequence[Layer]) -> bool:
        return members[self.position].attrs.get(self.attr) in self.values

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "attr": self.attr, "values": [_thaw(v) for v in self.values]}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> AttrCondition:
        return AttrCondition(int(d["position"]), str(d["attr"]), tuple(_freeze(v) for v in d["values"]))


@dataclass(frozen=True)
class FusionRule:
    """A linear chain of op types (``Conv → Relu``) that the target runs as one node, when ``conditions`` (member
    attributes) and ``shape_conditions`` (on the first member, e.g. ``in_c % 4 == 0``: ORT fuses HardSwish only
    into the blocked-layout convolutions, which need whole channel blocks) hold."""

    pattern: tuple[str, ...]
    conditions: tuple[AttrCondition, ...] = ()
    evidence: Evidence = Evidence()
    shape_conditions: tuple[ShapeCondition, ...] = ()
    # True: only chains whose later members read nothing from outside but the first member's inputs (x·σ(x),
    # a self-gated activation); False: only chains that do (σ(s)·x, a gate applied to another tensor).
    closed: bool | None = None
    # True: learned on chains that fork and rejoin (Flow.link: x·σ(x) after a Conv), which it matches as well as
    # linear ones; False: it matches linear chains only.
    forks: bool = False

    @property
    def id(self) -> str:
        return "fuse:" + "+".join(self.pattern)

    @property
    def conditional(self) -> bool:
        """Whether :meth:`allows` can refuse a chain (else every chain of the pattern fuses)."""
        return bool(self.conditions or self.shape_conditions or self.closed is not None)

    def allows(self, members: Sequence[Layer]) -> bool:
        return (
            all(c.holds(members) for c in self.conditions)
            and all(c.holds(members[0]) for c in self.shape_conditions)
            and (self.closed is None or is_closed(members) == self.closed)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": list(self.pattern),
            "conditions": [c.to_dict() for c in self.conditions],
            "shape_conditions": [c.to_dict() for c in self.shape_conditions],
            "closed": self.closed,
            **({"forks": True} if self.forks else {}),
            "evidence": self.evidence.to_dict(),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> FusionRule:
        closed = d.get("closed")
        rule = FusionRule(
            pattern=tuple(str(x) for x in d["pattern"]),
            conditions=tuple(AttrCondition.from_dict(c) for c in d.get("conditions", ())),
            evidence=Evidence.from_dict(d.get("evidence", {})),
            shape_conditions=tuple(ShapeCondition.from_dict(c) for c in d.get("shape_conditions", ())),
            closed=None if closed is None else bool(closed),
            forks=bool(d.get("forks", False)),
        )
        if len(rule.pattern) < 2:
            raise ValueError(f"fusion pattern {list(rule.pattern)} must chain at least two op types")
        bad = [c.position for c in rule.conditions if not 0 <= c.position < len(rule.pattern)]
        if bad:
            raise ValueError(f"fusion {rule.id}: condition positions {bad} are outside its {len(rule.pattern)} members")
        return rule


def is_closed(members: Sequence[Layer]) -> bool:
    """Whether the later members of a chain read only tensors of the chain or inputs of its first member."""
    inside = {t.name for m in members for t in m.outputs} | {t.name for t in members[0].inputs}
    return all(t.name in inside for m in members[1:] for t in m.inputs)


@dataclass(frozen=True)
class RemovalRule:
    """Layers of type ``op`` that the target does not run (zero cost): always, or only after ``after`` ops.

    ``after`` lists the op types of the producing layer (``<input>`` for a graph input) after which the
    layer is removed, e.g. a BatchNormalization folded into the Conv before it.
    """

    op: str
    after: tuple[str, ...] | None = None
    evidence: Evidence = Evidence()

    @property
    def id(self) -> str:
        return f"remove:{self.op}" + ("" if self.after is None else "@" + "|".join(self.after))

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "after": None if self.after is None else list(self.after),
            "evidence": self.evidence.to_dict(),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> RemovalRule:
        after = d.get("after")
        return RemovalRule(
            op=str(d["op"]),
            after=None if after is None else tuple(str(x) for x in after),
            evidence=Evidence.from_dict(d.get("evidence", {})),
        )


@dataclass(frozen=True)
class MergeRule:
    """Layers of ``op`` that repeat an earlier layer's computation (same input tensors, same attributes, no
    weights: e.g. two ReLUs of one tensor feeding two convolutions) run once: the target eliminates the common
    subexpression. Applied like a removal (see :func:`annette.mapping.mapped.duplicates`)."""

    op: str
    evidence: Evidence = Evidence()

    @property
    def id(self) -> str:
        return f"merge:{self.op}"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "evidence": self.evidence.to_dict()}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> MergeRule:
        return MergeRule(op=str(d["op"]), evidence=Evidence.from_dict(d.get("evidence", {})))


SHAPE_VALUES = ("in_c", "out_c", "group")
SHAPE_TESTS = ("mod", "ge", "eq", "nmod", "lt")


def shape_value(layer: Layer, value: str) -> int:
    """``in_c``/``out_c``: channels (dimension 1) of the first input/output; ``group``: the group attribute."""
    if value == "group":
        group = layer.attrs.get("group", 1)
        return group if isinstance(group, int) else 1
    tensors = layer.inputs if value == "in_c" else layer.outputs
    shape = tensors[0].shape if tensors else ()
    return shape[1] if len(shape) > 1 else (shape[0] if shape else 1)


@dataclass(frozen=True)
class ShapeCondition:
    """A test on the anchor's primary layer: ``value % arg == 0`` (mod), ``!= 0`` (nmod), ``value >= arg`` (ge),
    ``value < arg`` (lt), ``== arg`` (eq)."""

    value: str
    test: str
    arg: int

    def holds(self, layer: Layer) -> bool:
        x = shape_value(layer, self.value)
        if self.test == "mod":
            return x % self.arg == 0
        if self.test == "nmod":
            return x % self.arg != 0
        if self.test == "lt":
            return x < self.arg
        return x >= self.arg if self.test == "ge" else x == self.arg

    def __str__(self) -> str:
        return {
            "mod": f"{self.value} % {self.arg} == 0",
            "nmod": f"{self.value} % {self.arg} != 0",
            "ge": f"{self.value} >= {self.arg}",
            "lt": f"{self.value} < {self.arg}",
        }.get(self.test, f"{self.value} == {self.arg}")

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "test": self.test, "arg": self.arg}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ShapeCondition:
        value, test = str(d["value"]), str(d["test"])
        if value not in SHAPE_VALUES or test not in SHAPE_TESTS:
            raise ValueError(f"shape condition {dict(d)}: value must be one of {SHAPE_VALUES}, test of {SHAPE_TESTS}")
        return ShapeCondition(value, test, int(d["arg"]))


@dataclass(frozen=True)
class InsertionRule:
    """``count`` nodes of type ``op_type`` inserted ``position`` (before/after) executed layers whose primary
    op is ``anchor_op``, when a neighbour on that side (producer before, consumer after; ``<input>`` and
    ``<output>`` for the graph's boundary) is one of ``neighbours`` and every shape condition on the
    anchor holds (e.g. ``in_c % 8 == 0``: blocked layouts need whole channel blocks). The inserted node
    converts the anchor's input (before) or output (after) tensor; its cost is its own layer model's.
    """

    op_type: str
    anchor_op: str
    position: str
    neighbours: tuple[str, ...]
    count: int = 1
    evidence: Evidence = Evidence()
    conditions: tuple[ShapeCondition, ...] = ()

    def holds(self, anchor: Layer) -> bool:
        """The shape conditions (cheap; checked before the neighbours are looked up)."""
        return all(c.holds(anchor) for c in self.conditions)

    def fires(self, anchor: Layer, keys: Sequence[str]) -> bool:
        return any(k in self.neighbours for k in keys) and self.holds(anchor)

    @property
    def id(self) -> str:
        return f"insert:{self.op_type}:{self.position}:{self.anchor_op}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "op_type": self.op_type,
            "anchor_op": self.anchor_op,
            "position": self.position,
            "neighbours": list(self.neighbours),
            "count": self.count,
            "conditions": [c.to_dict() for c in self.conditions],
            "evidence": self.evidence.to_dict(),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> InsertionRule:
        position = str(d["position"])
        if position not in POSITIONS:
            raise ValueError(f"insertion position {position!r} is not one of {POSITIONS}")
        return InsertionRule(
            op_type=str(d["op_type"]),
            anchor_op=str(d["anchor_op"]),
            position=position,
            neighbours=tuple(str(x) for x in d["neighbours"]),
            count=int(d.get("count", 1)),
            evidence=Evidence.from_dict(d.get("evidence", {})),
            conditions=tuple(ShapeCondition.from_dict(c) for c in d.get("conditions", ())),
        )


LAYOUT_INPUTS = ("blocked", "plain", "mixed")


def input_layout(n_inputs: int, n_blocked: int) -> str:
    """The layout key of an executed layer with ``n_inputs`` activation inputs, ``n_blocked`` of them blocked
    (graph inputs are plain): what learning and applying the layout rules both key on."""
    return "plain" if not n_blocked else ("blocked" if n_blocked == n_inputs else "mixed")


@dataclass(frozen=True)
class LayoutRule:
    """Executed layers whose primary op is ``op`` and whose activation inputs are all blocked, all plain or
    mixed (``inputs``) run in the blocked layout when every shape condition holds (in :attr:`Layouts.blocked`);
    in :attr:`Layouts.converts`, a blocked layer of ``op`` reads a plain input through a conversion node when
    every condition holds (otherwise it reads the plain tensor as it is, e.g. a convolution with 3 input
    channels)."""

    op: str
    inputs: str
    conditions: tuple[ShapeCondition, ...] = ()
    evidence: Evidence = Evidence()

    def holds(self, layer: Layer) -> bool:
        return all(c.holds(layer) for c in self.conditions)

    def __str__(self) -> str:
        return f"{self.op} on {self.inputs} inputs" + "".join(f" if {c}" for c in self.conditions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "inputs": self.inputs,
            "conditions": [c.to_dict() for c in self.conditions],
            "evidence": self.evidence.to_dict(),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> LayoutRule:
        inputs = str(d["inputs"])
        if inputs not in LAYOUT_INPUTS:
            raise ValueError(f"layout rule inputs {inputs!r} is not one of {LAYOUT_INPUTS}")
        return LayoutRule(
            op=str(d["op"]),
            inputs=inputs,
            conditions=tuple(ShapeCondition.from_dict(c) for c in d.get("conditions", ())),
            evidence=Evidence.from_dict(d.get("evidence", {})),
        )


@dataclass(frozen=True)
class Layouts:
    """Blocked-layout propagation (ONNX Runtime's NCHWc transformer): which executed layers run blocked, given
    the layouts of their inputs (graph inputs are plain), and which of them convert a plain input with a
    ``to_blocked`` node. A blocked tensor read by a plain layer or leaving the graph passes through one
    ``to_plain`` node after its producer, shared by all its plain readers."""

    to_blocked: str
    to_plain: str
    blocked: tuple[LayoutRule, ...] = ()
    converts: tuple[LayoutRule, ...] = ()

    @cached_property
    def blocked_by_key(self) -> dict[tuple[str, str], list[LayoutRule]]:
        out: dict[tuple[str, str], list[LayoutRule]] = defaultdict(list)
        for r in self.blocked:
            out[(r.op, r.inputs)].append(r)
        return dict(out)

    @cached_property
    def ops(self) -> frozenset[str]:
        """The ops that can run blocked."""
        return frozenset(r.op for r in self.blocked)

    @cached_property
    def converts_by_op(self) -> dict[str, list[LayoutRule]]:
        out: dict[str, list[LayoutRule]] = defaultdict(list)
        for r in self.converts:
            out[r.op].append(r)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_blocked": self.to_blocked,
            "to_plain": self.to_plain,
            "blocked": [r.to_dict() for r in self.blocked],
            "converts": [r.to_dict() for r in self.converts],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Layouts:
        return Layouts(
            to_blocked=str(d["to_blocked"]),
            to_plain=str(d["to_plain"]),
            blocked=tuple(LayoutRule.from_dict(r) for r in d["blocked"]),
            converts=tuple(LayoutRule.from_dict(r) for r in d["converts"]),
        )

    def summary(self) -> list[str]:
        return [f"layout:blocked: {r}: {r.evidence.n_instances} seen" for r in self.blocked] + [
            f"layout:{self.to_blocked}: {r}: {r.evidence.n_instances} seen" for r in self.converts
        ]


@dataclass(frozen=True)
class MappingRules:
    """An ordered rule set: merges and removals first, then fusions (longest pattern first), then insertions,
    then the layout conversions (where the target propagates a blocked layout)."""

    fusions: tuple[FusionRule, ...] = ()
    removals: tuple[RemovalRule, ...] = ()
    insertions: tuple[InsertionRule, ...] = ()
    settings: Mapping[str, Any] | None = None  # how the rules were learned (alpha, thresholds)
    layouts: Layouts | None = None
    merges: tuple[MergeRule, ...] = ()

    @cached_property
    def removals_by_op(self) -> dict[str, list[RemovalRule]]:
        out: dict[str, list[RemovalRule]] = defaultdict(list)
        for r in self.removals:
            out[r.op].append(r)
        return dict(out)

    @cached_property
    def fusions_by_first_op(self) -> dict[str, list[FusionRule]]:
        """Fusions by the op type they start with, longest pattern first, then best supported."""
        out: dict[str, list[FusionRule]] = defaultdict(list)
        for f in sorted(self.fusions, key=lambda f: (-len(f.pattern), -f.evidence.n_agree)):
            out[f.pattern[0]].append(f)
        return dict(out)

    @cached_property
    def insertions_by_anchor(self) -> dict[str, list[InsertionRule]]:
        out: dict[str, list[InsertionRule]] = defaultdict(list)
        for r in self.insertions:
            out[r.anchor_op].append(r)
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": MAPPING_SCHEMA_VERSION,
            "fusions": [r.to_dict() for r in self.fusions],
            "removals": [r.to_dict() for r in self.removals],
            "insertions": [r.to_dict() for r in self.insertions],
            "layouts": None if self.layouts is None else self.layouts.to_dict(),
            "merges": [r.to_dict() for r in self.merges],
            "settings": dict(self.settings or {}),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> MappingRules:
        try:
            check_schema(d, "mapping rules", MAPPING_SCHEMA_VERSION)
        except ValueError as exc:
            raise HardwareModelError(str(exc)) from None
        try:
            return MappingRules(
                fusions=tuple(FusionRule.from_dict(r) for r in d["fusions"]),
                removals=tuple(RemovalRule.from_dict(r) for r in d["removals"]),
                insertions=tuple(InsertionRule.from_dict(r) for r in d["insertions"]),
                settings=dict(d.get("settings", {})),
                layouts=None if d.get("layouts") is None else Layouts.from_dict(d["layouts"]),
                merges=tuple(MergeRule.from_dict(r) for r in d.get("merges", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            why = f"missing key {exc.args[0]!r}" if type(exc) is KeyError and exc.args else f"{type(exc).__name__}: {exc}"
            raise HardwareModelError(f"malformed mapping rules: {why}") from exc

    def summary(self) -> list[str]:
        """One line per rule with its evidence (for reports and the CLI)."""
        lines = []
        rules: list[MergeRule | RemovalRule | FusionRule | InsertionRule] = [
            *self.merges, *self.removals, *self.fusions, *self.insertions
        ]
        for rule in rules:
            ev = rule.evidence
            agree = "-" if ev.agreement is None else f"{ev.agreement:.0%}"
            timing = "-" if ev.timing_agreement is None else f"{ev.timing_agreement:.0%} of {ev.n_timing}"
            cond = ""
            if isinstance(rule, FusionRule) and (rule.conditions or rule.shape_conditions or rule.closed is not None):
                cond = " if " + ", ".join(
                    [f"#{c.position}.{c.attr} in {list(c.values)}" for c in rule.conditions]
                    + [f"#0.{c}" for c in rule.shape_conditions]
                    + ([] if rule.closed is None else ["closed" if rule.closed else "not closed"])
                )
            if isinstance(rule, InsertionRule):
                cond = f" next to {list(rule.neighbours)}" + "".join(f" if {c}" for c in rule.conditions)
                cond += f" x{rule.count}"
            lines.append(f"{rule.id}{cond}: {ev.n_instances} seen, profile agreement {agree}, timing {timing}")
        return lines + ([] if self.layouts is None else self.layouts.summary())
