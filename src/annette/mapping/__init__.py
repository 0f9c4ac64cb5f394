"""The mapping model: how a target rewrites a graph before running it (fusions, removals, insertions).

Rules are learned from benchmark records (:func:`learn_rules`) and applied to graphs (:func:`apply`).
"""

from __future__ import annotations

from annette.mapping.apply import apply
from annette.mapping.learn import ProfiledRun, learn_rules, read_profile
from annette.mapping.mapped import ExecutedLayer, Flow, MappedGraph
from annette.mapping.rules import (
    AttrCondition,
    Evidence,
    FusionRule,
    InsertionRule,
    MappingRules,
    RemovalRule,
)

__all__ = [
    "AttrCondition",
    "Evidence",
    "ExecutedLayer",
    "Flow",
    "FusionRule",
    "InsertionRule",
    "MappedGraph",
    "MappingRules",
    "ProfiledRun",
    "RemovalRule",
    "apply",
    "learn_rules",
    "read_profile",
]
