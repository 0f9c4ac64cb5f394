"""Bad graph JSON (annette and legacy) and bad model specs: one named error, with the file named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import hwsynth
from annette.errors import GraphValidationError, LegacyFormatError, ModelFileError, ShapeError
from annette.importers import load_model


def conv_relu_doc() -> dict[str, Any]:
    b = hwsynth.Builder("net", (1, 4, 8, 8))
    return b.graph(b.relu(b.conv(b.input, 4))).to_dict()


def write(tmp_path: Path, doc: Any, name: str = "g.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def test_shapes_must_agree_along_every_edge(tmp_path: Path) -> None:
    """Before: a ReLU given 1x4x800x800 after a conv producing 1x4x8x8 was estimated (0.624 ms, exit 0)."""
    doc = conv_relu_doc()
    relu = doc["layers"][1]
    relu["inputs"][0]["shape"] = [1, 4, 800, 800]
    path = write(tmp_path, doc)
    with pytest.raises(ShapeError, match=rf"{path}: .*layer 'relu_1' \(Relu\) reads tensor 'conv_0_out' as "
                                         r"\[1, 4, 800, 800\].*'conv_0' produces it as \[1, 4, 8, 8\]"):
        load_model(path)
    doc = conv_relu_doc()
    doc["layers"][1]["inputs"][0]["dtype"] = "float16"
    with pytest.raises(ShapeError, match="produces it as .* float32"):
        load_model(write(tmp_path, doc))


def test_unknown_dtype_is_refused(tmp_path: Path) -> None:
    doc = conv_relu_doc()
    for t in (doc["inputs"][0], doc["layers"][0]["inputs"][0]):
        t["dtype"] = "complex128"
    with pytest.raises(ShapeError, match="dtype 'complex128', which annette does not support"):
        load_model(write(tmp_path, doc))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["layers"][0]["attrs"].update(group=0), "group must be a positive integer, got 0"),
        (lambda d: d["layers"][0]["attrs"].update(group=3), "group 3 does not divide the 4 input channels"),
        (lambda d: d.update(schema_version="1"), "expected the integer 1, not a string"),
        (lambda d: d["layers"][0].update(inputs="x"), "malformed annette graph JSON"),
        (lambda d: d["inputs"][0].update(shape=[1, 4, 2**40, 8]), "dimensions must be in"),
    ],
)
def test_bad_graph_json_names_file_and_problem(tmp_path: Path, edit: Any, message: str) -> None:
    doc = conv_relu_doc()
    edit(doc)
    path = write(tmp_path, doc)
    with pytest.raises((GraphValidationError, ModelFileError), match=message) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_deeply_nested_and_non_utf8_json(tmp_path: Path) -> None:
    deep = write(tmp_path, "[" * 200_000 + "]" * 200_000)
    with pytest.raises(ModelFileError, match="nested too deeply"):
        load_model(deep)
    raw = tmp_path / "latin.json"
    raw.write_bytes(b'{"schema": "annette.graph", "name": "\xe9"}')
    with pytest.raises(ModelFileError, match="not a UTF-8 text file"):
        load_model(raw)


def test_nested_hw_bundle(tmp_path: Path) -> None:
    from annette.errors import HardwareModelError
    from annette.hardware import HardwareModel

    with pytest.raises(HardwareModelError, match="nested too deeply"):
        HardwareModel.load(write(tmp_path, '{"a":' * 200_000 + "1" + "}" * 200_000, "hw.json"))


def legacy_doc() -> dict[str, Any]:
    return {
        "name": "leg",
        "layers": {
            "data": {"type": "DataInput", "parents": [], "children": ["fc"], "output_shape": [1, 16]},
            "fc": {"type": "FullyConnected", "parents": ["data"], "children": ["bn"], "output_shape": [1, 8]},
            "bn": {"type": "BatchNorm", "parents": ["fc"], "children": [], "output_shape": [1, 8]},
        },
    }


def test_legacy_layer_without_type_is_named(tmp_path: Path) -> None:
    doc = legacy_doc()
    del doc["layers"]["fc"]["type"]
    with pytest.raises(LegacyFormatError, match="layer 'fc' has no 'type'"):
        load_model(write(tmp_path, doc))


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["layers"].update(
            t={"type": "Transpose", "parents": ["fc"], "children": [], "output_shape": [1, 8], "perm": [0, 5]}
        ),
        lambda d: d["layers"].update(
            c={"type": "Concat", "parents": ["fc", "bn"], "children": [], "output_shape": [1, 16], "axis": "x"}
        ),
    ],
)
def test_legacy_bad_attributes_are_one_named_error(tmp_path: Path, edit: Any) -> None:
    doc = legacy_doc()
    edit(doc)
    for name in doc["layers"]:
        if name not in ("data", "fc", "bn"):
            doc["layers"]["fc"]["children"].append(name)
    path = write(tmp_path, doc)
    with pytest.raises((LegacyFormatError, GraphValidationError, ShapeError)) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("spec", ["nb201:|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"])
@pytest.mark.parametrize("batch", [0, -1])
def test_batch_zero_or_negative_is_refused_for_every_spec(spec: str, batch: int) -> None:
    """Before: --batch 0 silently meant batch 1 for nb201: and torchvision: (``batch or 1``)."""
    with pytest.raises(ShapeError, match=f"batch must be a positive integer.*got {batch}"):
        load_model(spec, batch=batch)
