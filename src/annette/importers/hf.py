"""HuggingFace ``transformers`` architectures, built offline from their config classes with random weights.

Spec: ``hf:NAME`` or ``hf:NAME?seq=N&layers=L`` (quote it in a shell: ``?`` and ``&`` are special there).

- ``NAME`` is one of :data:`HF_MODELS` (``bert-base-uncased``, ``gpt2``, ``vit-base-patch16-224``,
  ``smollm2-135m``, ...). Each is the hub model's architecture written here as a config (the
  ``transformers`` defaults where they are the hub's values, e.g. ``BertConfig()`` for bert-base-uncased):
  nothing is downloaded. The network is the base model (what ``AutoModel`` gives, no task head), in eval
  mode, seeded random weights; decoders run one prefill pass without a KV cache (``use_cache=False``).
- ``seq`` (text models; default 128, at most the model's position limit) is the sequence length: the only
  input is ``input_ids`` of shape (batch, seq), every token attends (no attention mask). Vision models take
  ``pixel_values`` (batch, 3, image, image) at their native image size and accept no ``seq``.
- ``layers`` (default: all) keeps the first L transformer layers, e.g. ``hf:smollm2-135m?layers=1`` is the
  embedding, one decoder block and the final norm.

``export_onnx`` exports with :func:`annette.importers.torch.onnx_from_module` (static shapes) and caches the
file under ``$ANNETTE_CACHE_DIR/zoo`` (default ``~/.cache/annette/zoo``), keyed by name, options, batch and
the torch and transformers versions; ``graph_from_hf`` imports it. torch and transformers are imported only
when an export is needed.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from annette.errors import AnnetteError, ModelFileError
from annette.graph.ir import Graph
from annette.importers.zoo import cache_dir, load_cached, save_cached
from annette.registry import Registry

log = logging.getLogger(__name__)

SEED = 0
DEFAULT_SEQ = 128
OPTIONS = ("seq", "layers")


@dataclass(frozen=True)
class HFModel:
    """One architecture: a ``transformers`` config class with the hub model's values, and its base model.

    ``layers`` and ``max_seq`` repeat what the config says (tested), so that a cached export needs no import
    of transformers."""

    name: str
    config_class: str  # a class of the transformers package, e.g. "BertConfig"
    model_class: str  # e.g. "BertModel"
    layers: int  # transformer layers
    max_seq: int  # position limit (text models); the image size (vision models)
    config: Mapping[str, Any] = field(default_factory=dict)  # keyword arguments of the config class
    inputs: str = "tokens"  # tokens: input_ids (batch, seq) | pixels: pixel_values (batch, 3, size, size)
    layers_key: str = "num_hidden_layers"  # the config field that holds the number of layers

    def make_config(self, layers: int | None = None) -> Any:
        """The config object (imports transformers), with the first ``layers`` layers only if given."""
        transformers = _transformers()
        kwargs: dict[str, Any] = dict(self.config)
        if self.inputs == "tokens":
            kwargs.setdefault("use_cache", False)
        if layers is not None:
            kwargs[self.layers_key] = layers
        return getattr(transformers, self.config_class)(**kwargs)


HF_MODELS: Registry[HFModel] = Registry("HuggingFace model")


def _register(model: HFModel) -> None:
    HF_MODELS.register(model.name, model)


_BERT_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
# Encoders (BertModel with its pooler, as AutoModel loads them)
_register(HFModel("bert-base-uncased", "BertConfig", "BertModel", 12, 512))
_register(HFModel("bert-large-uncased", "BertConfig", "BertModel", 24, 512, _BERT_LARGE))
_register(HFModel("distilbert-base-uncased", "DistilBertConfig", "DistilBertModel", 6, 512, layers_key="n_layers"))
# Decoders (GPT-2: learned positions, GELU-tanh MLP; Llama-style: RMSNorm, rotary positions, SwiGLU, GQA)
_register(HFModel("gpt2", "GPT2Config", "GPT2Model", 12, 1024, layers_key="n_layer"))
_register(HFModel("gpt2-medium", "GPT2Config", "GPT2Model", 24, 1024, {"n_embd": 1024, "n_layer": 24, "n_head": 16},
                  layers_key="n_layer"))
_register(HFModel("smollm2-135m", "LlamaConfig", "LlamaModel", 30, 8192, {  # HuggingFaceTB/SmolLM2-135M
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0, "tie_word_embeddings": True,
}))
_register(HFModel("qwen2.5-0.5b", "Qwen2Config", "Qwen2Model", 24, 32768, {  # Qwen/Qwen2.5-0.5B
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "tie_word_embeddings": True,
}))
# Vision (ViTModel with its pooler; image size 224, patch 16)
_register(HFModel("vit-base-patch16-224", "ViTConfig", "ViTModel", 12, 224, inputs="pixels"))
_register(HFModel("vit-large-patch16-224", "ViTConfig", "ViTModel", 24, 224, _BERT_LARGE, inputs="pixels"))


@dataclass(frozen=True)
class HFSpec:
    """A parsed ``NAME?seq=N&layers=L``: the model and the options that shape its export."""

    model: HFModel
    seq: int | None  # tokens models only
    layers: int | None  # None: all

    @property
    def key(self) -> str:
        """A file-name-safe key of the model and its options."""
        parts = [self.model.name]
        if self.seq is not None:
            parts.append(f"s{self.seq}")
        if self.layers is not None:
            parts.append(f"l{self.layers}")
        return "_".join(parts)

    @property
    def label(self) -> str:
        """The canonical spec, e.g. ``hf:gpt2?seq=128``."""
        opts = [f"{k}={v}" for k, v in (("seq", self.seq), ("layers", self.layers)) if v is not None]
        return f"hf:{self.model.name}" + (f"?{'&'.join(opts)}" if opts else "")


def parse_spec(spec: str) -> HFSpec:
    """``"bert-base-uncased?seq=256"`` -> HFSpec; unknown names and options raise, listing the valid ones."""
    name, _, query = spec.partition("?")
    model = HF_MODELS.get(name.strip())
    options: dict[str, int] = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in OPTIONS or not sep:
            raise ModelFileError(
                f"hf:{spec}: unknown option {item!r}; expected hf:NAME?seq=N&layers=L (options: {', '.join(OPTIONS)})"
            )
        try:
            options[key] = int(value)
        except ValueError:
            raise ModelFileError(f"hf:{spec}: option {key} must be a positive integer, got {value!r}") from None
        if options[key] <= 0:
            raise ModelFileError(f"hf:{spec}: option {key} must be a positive integer, got {options[key]}")
    seq = options.get("seq")
    if model.inputs == "pixels":
        if seq is not None:
            raise ModelFileError(f"hf:{spec}: {model.name} is a vision model and takes no seq (its input is an image)")
    else:
        seq = DEFAULT_SEQ if seq is None else seq
        if seq > model.max_seq:
            raise ModelFileError(f"hf:{spec}: seq {seq} exceeds {model.name}'s position limit of {model.max_seq}")
    layers = options.get("layers")
    if layers is not None:
        if layers > model.layers:
            raise ModelFileError(f"hf:{spec}: layers {layers} exceeds {model.name}'s {model.layers} layers")
        if layers == model.layers:
            layers = None
    return HFSpec(model, seq, layers)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelFileError("hf: models need transformers and torch (pip install 'annette[hf]')") from None
    return transformers


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package).replace("+", "_")
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError("hf: models need transformers and torch (pip install 'annette[hf]')") from None


def cache_path(spec: str, *, batch: int = 1) -> Path:
    """Where the export of ``hf:spec`` at ``batch`` is cached."""
    parsed = parse_spec(spec)
    return cache_dir() / (
        f"hf_{parsed.key}_b{batch}_torch{_version('torch')}_transformers{_version('transformers')}.onnx"
    )


def is_cached(spec: str, *, batch: int = 1) -> bool:
    """Whether ``hf:spec`` at ``batch`` is exported already (else the first use exports it: seconds to a minute)."""
    try:
        return cache_path(spec, batch=batch).is_file()
    except AnnetteError:  # a bad spec (the load that follows says why) or no transformers installed
        return False


def needs_export(spec: str, *, batch: int = 1) -> bool:
    """Whether loading ``hf:spec`` will export it first (a valid spec that is not cached yet)."""
    try:
        return not cache_path(spec, batch=batch).is_file()
    except AnnetteError:
        return False


def build_module(spec: str) -> tuple[Any, tuple[Any, ...]]:
    """The torch module (eval mode, seeded random weights) of ``hf:spec`` and example inputs at batch 1."""
    return _build(parse_spec(spec), 1)


def _build(parsed: HFSpec, batch: int) -> tuple[Any, tuple[Any, ...]]:
    transformers = _transformers()
    import torch

    config = parsed.model.make_config(parsed.layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        module = getattr(transformers, parsed.model.model_class)(config).eval()
    if parsed.model.inputs == "pixels":
        size = int(config.image_size)
        example = (torch.zeros(batch, int(config.num_channels), size, size),)
    else:
        example = (torch.zeros(batch, int(parsed.seq or DEFAULT_SEQ), dtype=torch.long),)
    return module, example


def export_onnx(spec: str, *, batch: int = 1) -> onnx.ModelProto:
    """The ONNX export of ``hf:spec`` at ``batch`` (static shapes; cached on disk)."""
    if batch <= 0:
        raise ModelFileError(f"batch must be a positive integer, got {batch}")
    parsed = parse_spec(spec)
    path = cache_path(spec, batch=batch)
    cached = load_cached(path)
    if cached is not None:
        return cached
    from annette.importers.torch import onnx_from_module

    log.info("exporting %s at batch %d (first use; cached in %s)", parsed.label, batch, path)
    module, example = _build(parsed, batch)
    proto = onnx_from_module(module, example, name=parsed.label)
    return save_cached(proto, path)


def graph_from_hf(spec: str, *, batch: int = 1) -> Graph:
    """Import ``hf:spec`` (see the module docstring) as an annette Graph named by its canonical spec."""
    from annette.importers.onnx import graph_from_onnx

    return graph_from_onnx(export_onnx(spec, batch=batch), name=parse_spec(spec).label)


__all__ = ["HF_MODELS", "HFModel", "HFSpec", "build_module", "export_onnx", "graph_from_hf", "is_cached",
           "needs_export", "parse_spec"]
