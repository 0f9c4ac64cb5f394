"""The transformer benchmark families: registered in the one registry, valid ONNX that ONNX Runtime runs,
imported into the layer types they are there to measure, samplers within the cost caps."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from annette.backends.base import random_inputs
from annette.bench.blocks import FAMILIES, MAX_COST, MIN_COST, build_model, sample_params
from annette.bench.transformer_blocks import SMALL_PARAMS, TARGET_OPS, TRANSFORMER_FAMILIES
from annette.graph.accounting import account, account_graph
from annette.importers.onnx import graph_from_onnx

# the layer types of BERT, GPT-2, ViT and Llama-style exports that had no benchmark family before
UNCOVERED_TYPES = {"Gather", "IsNaN", "Where", "Split", "Pow", "Slice", "ReduceMean", "Sqrt", "Reciprocal", "Neg",
                   "Expand", "Cast", "Erf", "Sub", "Div", "Sin", "Cos"}


def test_families_are_in_the_one_registry_after_importing_blocks_only() -> None:
    code = ("from annette.bench.blocks import FAMILIES; import json; "
            "print(json.dumps(sorted(FAMILIES.names())))")
    names = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert set(TRANSFORMER_FAMILIES) <= set(names)
    assert set(SMALL_PARAMS) == set(TARGET_OPS) == set(TRANSFORMER_FAMILIES)


def test_every_previously_uncovered_type_has_a_family() -> None:
    covered = {op for ops in TARGET_OPS.values() for op in ops}
    assert covered >= UNCOVERED_TYPES


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_small_configuration_runs_in_onnxruntime_and_imports(family: str) -> None:
    import onnxruntime as ort

    model = build_model(family, SMALL_PARAMS[family])
    onnx.checker.check_model(model, full_check=True)
    assert all(node.name for node in model.graph.node)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, random_inputs(model))
    declared = [tuple(d.dim_value for d in o.type.tensor_type.shape.dim) for o in model.graph.output]
    assert [o.shape for o in outputs] == declared  # the builder's shape bookkeeping matches the runtime
    assert all(np.isfinite(o).all() for o in outputs)

    graph = graph_from_onnx(model)
    ops = {layer.op for layer in graph.layers}
    assert set(TARGET_OPS[family]) <= ops, f"{family}: {sorted(ops)}"
    assert [layer.name for layer in graph.layers] == [n.name for n in model.graph.node]  # nothing folded away
    cost = account_graph(graph)  # every layer type is accounted (no UnsupportedOperatorError)
    assert cost.total.input_bytes > 0 and cost.total.output_bytes > 0


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_sampler_stays_within_the_cost_caps_and_builds(family: str) -> None:
    fam = FAMILIES.get(family)
    rng = np.random.default_rng(7)
    draws = [sample_params(family, rng) for _ in range(25)]
    assert all(MIN_COST <= fam.cost(p) <= MAX_COST for p in draws)
    assert all(json.loads(json.dumps(p)) == p for p in draws)  # JSON-native (the store's key)
    assert len({json.dumps(p, sort_keys=True) for p in draws}) > 1  # the sampler does vary
    cheapest = min(draws, key=fam.cost)
    graph = graph_from_onnx(build_model(family, cheapest))
    assert set(TARGET_OPS[family]) <= {layer.op for layer in graph.layers}


def test_embedding_gather_reads_rows_not_the_table() -> None:
    params = {"variant": "embedding", "n": 1, "s": 16, "d": 32, "vocab": 1000}
    graph = graph_from_onnx(build_model("gather", params))
    gather = next(layer for layer in graph.layers if layer.op == "Gather")
    cost = account(gather)
    assert cost.params == 1000 * 32  # the whole table is parameters
    assert cost.weight_bytes == 16 * 32 * 4  # but one lookup reads only the 16 rows it outputs
    assert cost.output_bytes == 16 * 32 * 4


def test_token_ids_spread_over_the_table() -> None:
    """The ids made in the graph cover the table, as real token ids do (not just rows 0 and 1)."""
    import onnxruntime as ort

    vocab = 1000
    model = build_model("gather", {"variant": "embedding", "n": 1, "s": 256, "d": 8, "vocab": vocab})
    cast = next(n for n in model.graph.node if n.op_type == "Cast")
    model.graph.output.append(onnx.helper.make_tensor_value_info(cast.output[0], onnx.TensorProto.INT64, [1, 256]))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ids = session.run([cast.output[0]], random_inputs(model))[0]
    assert ids.min() >= 0 and ids.max() < vocab
    assert len(np.unique(ids)) > 100


def test_core_campaign_keeps_most_micro_draws_for_the_cnn_families() -> None:
    from annette.bench.sweeps import family_weights

    weights = family_weights()
    micro = [f for f in TRANSFORMER_FAMILIES if FAMILIES.get(f).kind == "micro"]
    assert all(weights[f] > 0 for f in micro)
    assert sum(weights[f] for f in micro) < 0.2
    assert weights["conv"] > 10 * max(weights[f] for f in micro)


@pytest.mark.parametrize("family", TRANSFORMER_FAMILIES)
def test_refined_configurations_are_valid_or_refused(family: str) -> None:
    """``annette build`` refines around badly predicted configurations by perturbing their sizes: every
    perturbation either builds and runs, or the family's cost refuses it (so refine skips it)."""
    import onnxruntime as ort

    from annette.bench.sweeps import _perturb

    fam = FAMILIES.get(family)
    rng = np.random.default_rng(3)
    base = min((sample_params(family, rng) for _ in range(10)), key=fam.cost)
    tried = 0
    for _ in range(12):
        params = _perturb(family, base, rng, 0.25)
        if not 0 < fam.cost(params) <= MAX_COST or fam.cost(params) > 4 * fam.cost(base) + 1e6:
            continue
        model = build_model(family, params)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, random_inputs(model))
        tried += 1
    assert tried > 0
