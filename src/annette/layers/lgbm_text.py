"""Check a LightGBM model text before LightGBM sees it.

LightGBM's text parser is not memory-safe: a tree whose arrays are shorter than its ``num_leaves`` says, a
child index out of range or a split on a feature the model does not have make it read past its arrays
(SIGSEGV), and a child cycle would make prediction loop forever. :func:`checked_model_text` accepts only the
exact layout LightGBM writes (after :func:`compact_model_text`), parses every field in Python and checks
counts, index ranges, the tree structure and that every number is finite; LightGBM is only ever handed a
text that passed. Only what annette fits is accepted: single-output regression, numerical splits, no
linear trees. A failure raises :class:`ValueError` naming the tree and the field.

It is vectorised over all trees (a shipped bundle holds ~50,000 of them): one regular expression over all
trees, then one NumPy parse per field (~0.3 s for the 27 MB of trees of the largest shipped bundle).
"""

from __future__ import annotations

import re
import warnings

import numpy as np

MAX_LEAVES = 131072  # LightGBM's own limit on num_leaves
MAX_FEATURES = 100_000
OBJECTIVES = ("regression",)

# Keys LightGBM writes that prediction does not read; compact_model_text drops them.
TRAINING_ONLY_KEYS = (
    "split_gain=", "internal_value=", "internal_weight=", "internal_count=", "leaf_weight=", "leaf_count=",
    "tree_sizes=",
)  # fmt: skip

_HEADER = re.compile(
    r"tree\nversion=v[234]\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n"
    r"max_feature_idx=(\d{1,6})\nobjective=([^\n]*)\nfeature_names=([^\n]*)\nfeature_infos=([^\n]*)\n\n"
)
_NUMS = r"[-+.0-9eE ]*"  # numbers separated by spaces; their count and values are checked after the match
_TREE = re.compile(
    r"Tree=(\d{1,9})\nnum_leaves=(\d{1,6})\nnum_cat=0\n"
    rf"split_feature=({_NUMS})\nthreshold=({_NUMS})\ndecision_type=({_NUMS})\n"
    rf"left_child=({_NUMS})\nright_child=({_NUMS})\nleaf_value=({_NUMS})\n"
    rf"is_linear=0\nshrinkage=({_NUMS})\n\n\n"
)
_TREES = re.compile(f"(?:{_TREE.pattern.replace('(', '(?:')})*")  # all trees at once, without groups
_END = "end of trees\n\n"
_NAME = re.compile(r"[^\s=]{1,256}")
_FLOAT = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?"
_INFO = re.compile(rf"none|\[{_FLOAT}:{_FLOAT}\]")
# decision_type bits: 1 categorical (refused), 2 default left, 4|8 missing type (0 none, 1 zero, 2 NaN; 3 invalid)
DECISION_TYPES = (0, 2, 4, 6, 8, 10)


def compact_model_text(text: str) -> str:
    """LightGBM model text without what only training and inspection need (per-node training statistics,
    tree byte offsets, the importance and parameter sections). Prediction does not read them: dropping them
    halves a bundle and predicts bit-identically (tested)."""
    cut = text.find("\nfeature_importances:")
    if cut >= 0:
        text = text[: cut + 1]
    return "\n".join(line for line in text.split("\n") if not line.startswith(TRAINING_ONLY_KEYS))


def _where_tree(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    tree = text.rfind("\nTree=", 0, pos + 1)
    name = text[tree + 1 : text.find("\n", tree + 1)] if tree >= 0 else "the header"
    return f"line {line} ({name[:20]})"


_INTS = re.compile(r"-?\d{1,10}(?: -?\d{1,10})*")
# |x| >= 1e100: LightGBM never writes such values. Two literal-prefixed patterns: a class prefix ([eE]) makes
# the regular expression engine scan 10x slower.
_OVERFLOW = (re.compile(r"e\+?\d{3}"), re.compile(r"E\+?\d{3}"))


def _token_counts(fields: list[str]) -> np.ndarray:
    """Per field, its number of space-separated tokens (0 for an empty one), vectorised over all fields."""
    joined = np.frombuffer(("\n".join(fields) + "\n").encode("ascii"), dtype=np.uint8)
    ends = np.flatnonzero(joined == 10)
    spaces = np.cumsum(joined == 32)[ends]
    per = np.diff(spaces, prepend=0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.where(ends == starts, 0, per + 1).astype(np.int64)


def _parse(fields: list[str], counts: np.ndarray, dtype: type, what: str) -> np.ndarray:
    """All trees' values of one field, concatenated; each tree must hold its expected count (tokens separated
    by single spaces, as LightGBM splits them). Integers (indices, types) are parsed and checked token by
    token. Floats are only counted here (and checked not to overflow, once over all trees): LightGBM reads
    every token as a double, whatever it holds, and no value can make it read out of bounds; parsing them
    would double the time a shipped bundle takes to load. They are returned empty."""
    got = _token_counts(fields)
    bad = np.flatnonzero(got != counts)
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"LightGBM tree {i}: {what} has {got[i]} values, expected {counts[i]}")
    joined = " ".join(f for f in fields if f)
    if dtype is np.float64:  # overflow: checked once over all trees (checked_model_text)
        return np.zeros(0)
    if not joined:
        return np.zeros(0, dtype=dtype)
    if not _INTS.fullmatch(joined):
        raise ValueError(f"LightGBM trees: {what} holds a value that is not an integer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        values: np.ndarray = np.fromstring(joined, dtype=dtype, sep=" ")
    if len(values) != int(counts.sum()):
        raise ValueError(f"LightGBM trees: {what} holds a value that is not a number")
    return values


def checked_model_text(text: str, n_features: int | None = None) -> str:
    """``text`` after checking it (see the module docstring); ``n_features``, where given, is the number of
    feature columns the model must take. Texts with LightGBM's training-only keys are compacted first.
    Raises ValueError naming what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"a LightGBM model text must be a string, got {type(text).__name__}")
    first = text[: text.find("\nTree=", text.find("\nTree=") + 1)]  # LightGBM writes the same keys in every tree
    if "\nfeature_importances:" in text or any(f"\n{k}" in first for k in TRAINING_ONLY_KEYS):
        text = compact_model_text(text)
    head = _HEADER.match(text)
    if head is None:
        raise ValueError(
            "LightGBM model text: the header is not LightGBM's (a single-output model: 'tree', version, "
            "num_class=1, num_tree_per_iteration=1, label_index=0, max_feature_idx, objective, feature_names, "
            "feature_infos)"
        )
    n = int(head.group(1)) + 1
    if n > MAX_FEATURES:
        raise ValueError(f"LightGBM model header: max_feature_idx {n - 1} is out of range")
    if n_features is not None and n != n_features:
        raise ValueError(f"LightGBM model takes {n} features, but the layer model has {n_features} feature names")
    if head.group(2) not in OBJECTIVES:
        raise ValueError(f"LightGBM model header: objective {head.group(2)[:40]!r} not in {OBJECTIVES}")
    names, infos = head.group(3).split(" "), head.group(4).split(" ")
    if len(names) != n or not all(_NAME.fullmatch(x) for x in names):
        raise ValueError(f"LightGBM model header: feature_names must be {n} names separated by single spaces")
    if len(infos) != n or not all(_INFO.fullmatch(x) for x in infos):
        raise ValueError(f"LightGBM model header: feature_infos must be {n} ranges ('none' or '[lo:hi]')")
    start = head.end()
    pos = _TREES.match(text, start).end()  # type: ignore[union-attr]  # (?:...)* always matches
    if not text.startswith(_END, pos):
        raise ValueError(
            f"LightGBM model text: tree {text.count(chr(10) + 'Tree=', start - 1, pos)} at {_where_tree(text, pos)} "
            "is not in LightGBM's layout (truncated, a field missing or out of order, categorical or linear trees, "
            "no 'end of trees')"
        )
    huge = next((m for m in (p.search(text, start, pos) for p in _OVERFLOW) if m), None)
    if huge:
        raise ValueError(f"LightGBM model text: a value at {_where_tree(text, huge.start())} is out of range")
    if text[pos + len(_END) :].strip():
        raise ValueError("LightGBM model text: text after 'end of trees'")
    trees = _TREE.findall(text, start, pos)  # the same trees _TREES matched, each a tuple of its fields
    if not trees:
        raise ValueError("LightGBM model text holds no tree")
    cols = list(zip(*trees, strict=True))
    numbers = np.array(cols[0], dtype=np.int64)
    if not np.array_equal(numbers, np.arange(len(trees))):
        raise ValueError(f"LightGBM trees are not numbered 0..{len(trees) - 1}")
    leaves = np.array(cols[1], dtype=np.int64)
    if leaves.min() < 1 or leaves.max() > MAX_LEAVES:
        i = int(np.flatnonzero((leaves < 1) | (leaves > MAX_LEAVES))[0])
        raise ValueError(f"LightGBM tree {i}: num_leaves {leaves[i]} is out of range [1, {MAX_LEAVES}]")
    inner = leaves - 1
    feature = _parse(list(cols[2]), inner, np.int64, "split_feature")
    _parse(list(cols[3]), inner, np.float64, "threshold")
    decision = _parse(list(cols[4]), inner, np.int64, "decision_type")
    left = _parse(list(cols[5]), inner, np.int64, "left_child")
    right = _parse(list(cols[6]), inner, np.int64, "right_child")
    _parse(list(cols[7]), leaves, np.float64, "leaf_value")
    _parse(list(cols[8]), np.ones(len(trees), dtype=np.int64), np.float64, "shrinkage")
    tree_of = np.repeat(np.arange(len(trees)), inner)

    def first_tree(bad: np.ndarray) -> int:
        return int(tree_of[np.flatnonzero(bad)[0]])

    if len(feature) and (feature.min() < 0 or feature.max() >= n):
        raise ValueError(f"LightGBM tree {first_tree((feature < 0) | (feature >= n))}: split_feature outside "
                         f"[0, {n - 1}] (max_feature_idx)")
    bad_decision = ~np.isin(decision, DECISION_TYPES)
    if bad_decision.any():
        raise ValueError(f"LightGBM tree {first_tree(bad_decision)}: decision_type not in {DECISION_TYPES} "
                         "(categorical splits and invalid missing types are not supported)")
    # A tree: each inner node but the root (0) is the child of exactly one node, and so is each leaf (~c).
    # Then the nodes reachable from the root form a tree, and prediction ends at a leaf.
    child = np.concatenate([left, right])
    owner = np.concatenate([tree_of, tree_of])
    is_inner = child >= 0
    idx = np.where(is_inner, child, ~child)
    limit = np.where(is_inner, inner[owner] - 1, leaves[owner] - 1)
    low = np.where(is_inner, 1, 0)
    out_of_range = (idx < low) | (idx > limit)
    if out_of_range.any():
        raise ValueError(f"LightGBM tree {int(owner[np.flatnonzero(out_of_range)[0]])}: left_child/right_child "
                         "index out of range")
    key = (owner << 20) | (idx << 1) | is_inner
    uniq, counts = np.unique(key, return_counts=True)
    if len(uniq) != len(key):
        raise ValueError(f"LightGBM tree {int(uniq[np.flatnonzero(counts > 1)[0]] >> 20)}: a node is the child of "
                         "two nodes (left_child/right_child do not form a tree)")
    return text


def text_n_features(text: str) -> int:
    """The number of feature columns a (checked) model text takes."""
    head = _HEADER.match(text)
    if head is None:
        raise ValueError("LightGBM model text: the header is not LightGBM's")
    return int(head.group(1)) + 1
