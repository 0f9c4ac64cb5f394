"""``hf:NAME`` specs: HuggingFace transformers architectures built offline from their configs (no download).

The exports go to ANNETTE_CACHE_DIR, a temporary folder for the test session (conftest). The export tests
use one-layer models at short sequences (seconds each).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from annette.errors import ModelFileError, UnknownNameError
from annette.importers import load_model, model_to_onnx, split_scheme
from annette.importers.hf import HF_MODELS, export_onnx, is_cached, parse_spec


def test_spec_defaults_and_options() -> None:
    spec = parse_spec("bert-base-uncased")
    assert (spec.model.name, spec.seq, spec.layers) == ("bert-base-uncased", 128, None)
    assert spec.label == "hf:bert-base-uncased?seq=128"
    spec = parse_spec("gpt2?seq=256&layers=2")
    assert (spec.seq, spec.layers, spec.key) == (256, 2, "gpt2_s256_l2")
    assert parse_spec("gpt2?layers=12").layers is None  # all layers: the same export as no option
    vit = parse_spec("vit-base-patch16-224")
    assert (vit.seq, vit.label) == (None, "hf:vit-base-patch16-224")
    assert split_scheme("hf:gpt2?seq=64") == ("hf", "gpt2?seq=64")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt2?seq=2048", "position limit of 1024"),
        ("gpt2?seq=0", "positive integer"),
        ("gpt2?seq=abc", "positive integer"),
        ("gpt2?batch=2", "unknown option"),
        ("gpt2?layers=13", "12 layers"),
        ("vit-base-patch16-224?seq=64", "takes no seq"),
    ],
)
def test_bad_options_say_what_is_expected(spec: str, message: str) -> None:
    with pytest.raises(ModelFileError, match=message):
        parse_spec(spec)


def test_unknown_name_lists_the_models() -> None:
    with pytest.raises(UnknownNameError, match="bert-base-uncased.*gpt2"):
        parse_spec("bert-base")


needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None, reason="transformers is not installed (pip install annette[hf])"
)


@needs_transformers
@pytest.mark.parametrize("name", HF_MODELS.names())
def test_registry_repeats_the_configs(name: str) -> None:
    """``layers`` and ``max_seq`` (used without importing transformers) match the config classes."""
    model = HF_MODELS.get(name)
    config = model.make_config()
    assert getattr(config, model.layers_key) == model.layers
    limit = config.image_size if model.inputs == "pixels" else getattr(
        config, "n_positions", getattr(config, "max_position_embeddings", None))
    assert limit == model.max_seq
    assert model.make_config(layers=1).to_dict()[model.layers_key] == 1


@pytest.mark.slow
@needs_transformers
def test_bert_base_is_the_hub_architecture() -> None:
    from annette.importers.hf import build_module

    module, example = build_module("bert-base-uncased")
    assert sum(p.numel() for p in module.parameters()) == 109_482_240  # bert-base-uncased's parameter count
    assert tuple(example[0].shape) == (1, 128)


EXPECTED_OPS = {
    "bert-base-uncased": {"Gather", "MatMul", "Softmax", "LayerNormalization", "Gelu", "Gemm", "Tanh"},
    "gpt2": {"Gather", "Gemm", "Split", "Pow", "Tanh", "Softmax", "LayerNormalization"},
    "vit-base-patch16-224": {"Conv", "Concat", "MatMul", "Softmax", "Gelu", "LayerNormalization"},
    "smollm2-135m": {"Gather", "Pow", "ReduceMean", "Sqrt", "Reciprocal", "Slice", "Neg", "Expand", "Sigmoid"},
}


@pytest.mark.slow
@needs_transformers
@pytest.mark.parametrize("name", sorted(EXPECTED_OPS))
def test_one_layer_export_imports_with_the_expected_ops(name: str) -> None:
    from annette.graph.accounting import account_graph
    from annette.importers.hf import build_module

    options = "layers=1" + ("" if name.startswith("vit") else "&seq=32")
    spec = f"hf:{name}?{options}"
    graph = load_model(spec)
    assert graph.name == parse_spec(f"{name}?{options}").label
    ops = {layer.op for layer in graph.layers}
    assert EXPECTED_OPS[name] <= ops, sorted(ops)
    first = graph.inputs[0]
    assert first.shape == ((1, 3, 224, 224) if name.startswith("vit") else (1, 32))
    module, _ = build_module(f"{name}?{options}")
    params = account_graph(graph).total.params
    weights = sum(p.numel() for p in module.parameters())
    # the same weights, except that the static export folds the position tables to the rows seq uses and
    # materialises a few constants (rotary cos/sin tables, causal or all-zero attention masks)
    assert 0.97 * weights <= params <= 1.01 * weights
    assert is_cached(f"{name}?{options}")


@pytest.mark.slow
@needs_transformers
def test_batch_and_onnx_form_for_measure() -> None:
    """``--batch`` re-exports at that batch; ``model_to_onnx`` (annette measure) gives a model ORT runs."""
    import onnxruntime as ort

    from annette.backends.base import random_inputs

    graph = load_model("hf:gpt2?layers=1&seq=16", batch=2)
    assert graph.inputs[0].shape == (2, 16) and graph.inputs[0].dtype == "int64"
    proto = model_to_onnx("hf:gpt2?layers=1&seq=16", batch=2)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, random_inputs(proto))[0]
    assert out.shape == (2, 16, 768) and np.isfinite(out).all()
    again = export_onnx("gpt2?layers=1&seq=16", batch=2)  # from the cache
    assert again.SerializeToString() == proto.SerializeToString()


@needs_transformers
def test_first_export_is_announced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from annette.cli.commands_graph import loading_message
    from annette.importers.hf import needs_export

    monkeypatch.setenv("ANNETTE_CACHE_DIR", str(tmp_path))
    assert needs_export("gpt2?seq=64") and not needs_export("no-such-model")
    assert loading_message("hf:gpt2?seq=64", None).startswith("exporting hf:gpt2?seq=64 with torch and transformers")
    assert loading_message("hf:no-such-model", None) == "importing hf:no-such-model ..."  # the load says why
