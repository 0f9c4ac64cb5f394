"""What a newcomer sees in the CLI (issue 14, items 4, 5 and 7): no silences, no truncated names or types,
escaped markup, one meaning per short option, one name per option, --version, ``hw show``, several models
per ``estimate`` call, and the layers guessed by the generic model counted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from typer.testing import CliRunner

import annette
from annette.cli.commands_graph import loading_message
from annette.cli.main import app
from conftest import build_onnx

runner = CliRunner()
NB201 = "nb201:|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cli(*args: str, columns: int = 120) -> subprocess.CompletedProcess[str]:
    """The real entry point at a given terminal width (rich reads COLUMNS)."""
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "annette.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def help_text(*command: str) -> str:
    r = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "160", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    return ANSI.sub("", r.output)


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"annette {annette.__version__}"


def test_help_shows_no_type_for_flags() -> None:
    text = help_text("estimate")
    assert "<bool>" not in text
    assert "--strict" in text and "--allow-generic" in text and "<int>" in text  # valued options keep their type


def test_short_b_is_batch_everywhere_and_backend_options_have_one_name() -> None:
    for command in (("estimate",), ("info",), ("measure",), ("evaluate",), ("export",), ("import",)):
        line = next(x for x in help_text(*command).splitlines() if "--batch" in x)
        assert "-b" in line, command
    for command in (("bench",), ("measure",), ("evaluate",)):
        text = help_text(*command)
        backend_line = next(x for x in text.splitlines() if "--backend " in x)
        assert " -b " not in backend_line, command
        assert "--backend-option" in text and "--opt" in text, command


def test_hw_list_keeps_every_name_whole_at_120_columns() -> None:
    from annette.hardware import SHIPPED

    r = cli("hw", "list", columns=120)
    assert r.returncode == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 120
    for name in SHIPPED.names():
        assert re.search(rf"│ {re.escape(name)}\s+│", r.stdout), name


def test_hw_show() -> None:
    r = runner.invoke(app, ["hw", "show", "cpu-x86-ort-fp32-t1", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["target"]["extra"]["isa"] and doc["default_type"] == "*" and "Conv" in doc["types"]
    text = ANSI.sub("", runner.invoke(app, ["hw", "show", "annette-dnndk"]).output)
    assert "target.device_model" in text and "generic default" in text and "Base" in text
    bad = runner.invoke(app, ["hw", "show", "no-such-model"])
    assert bad.exit_code == 1


def test_estimate_table_keeps_fused_types_and_escapes_markup(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    model = build_onnx(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="dw", group=16, pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn"),
         helper.make_node("Relu", ["n"], ["y"], name="relu")],
        [("x", [1, 16, 32, 32])], ["y"],
        {"w": rng.normal(size=(16, 1, 3, 3)).astype(np.float32), "s": np.ones(16, np.float32),
         "b": np.zeros(16, np.float32), "m": np.zeros(16, np.float32), "v": np.ones(16, np.float32)},
    )
    path = tmp_path / "dw.onnx"
    onnx.save_model(model, str(path))
    r = cli("estimate", str(path), "--hw", "cpu-x86-ort-fp32-t1", columns=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(cli("estimate", str(path), "--hw", "cpu-x86-ort-fp32-t1", "--json").stdout)
    types = {x["type"] for x in doc["layers"]}
    assert any("Conv[dw]" in t for t in types)  # printed with its [dw], not eaten as markup
    for t in types:
        assert t in r.stdout, t  # whole, on one line
    assert max(len(line) for line in r.stdout.splitlines()) <= 120
    assert "no layer guessed by the generic model" in r.stdout


def test_estimate_counts_generic_layers_and_strict_refuses_them() -> None:
    r = runner.invoke(app, ["estimate", NB201, "--hw", "annette-dnndk", "--kind", "refined"])
    assert r.exit_code == 0, r.output
    assert re.search(r"\d+ layer\(s\) guessed by the generic model \([\d.]+ ms, [\d.]+ % of the total\)",
                     ANSI.sub("", r.output).replace("\n", " "))
    doc = json.loads(runner.invoke(app, ["estimate", NB201, "--hw", "annette-dnndk", "--kind", "refined",
                                         "--json"]).stdout)
    assert doc["n_generic"] > 0 and 0 < doc["generic_share"] < 1
    strict = runner.invoke(app, ["estimate", NB201, "--hw", "annette-dnndk", "--kind", "refined", "--strict"])
    assert strict.exit_code == 1 and "--allow-generic" in strict.output
    allowed = runner.invoke(app, ["estimate", NB201, "--hw", "annette-dnndk", "--kind", "refined", "--strict",
                                  "--allow-generic"])
    assert allowed.exit_code == 0, allowed.output


def test_estimate_several_models_and_a_folder(tmp_path: Path) -> None:
    for i, c in enumerate((4, 128)):
        m = build_onnx([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [("x", [1, 3, 64, 64])],
                       ["y"], {"w": np.ones((c, 3, 3, 3), np.float32)}, name=f"net{i}")
        onnx.save_model(m, str(tmp_path / f"net{i}.onnx"))
    r = runner.invoke(app, ["estimate", str(tmp_path), "--hw", "cpu-x86-ort-fp32-t1", "--json"])
    assert r.exit_code == 0, r.output
    docs = json.loads(r.stdout)
    assert [d["model"] for d in docs] == ["net0", "net1"] and docs[0]["total_ms"] < docs[1]["total_ms"]
    table = runner.invoke(app, ["estimate", str(tmp_path / "net0.onnx"), NB201, "--hw", "cpu-x86-ort-fp32-t1"])
    assert table.exit_code == 0 and "2 models on cpu-x86-ort-fp32-t1" in table.output
    failing = runner.invoke(app, ["estimate", str(tmp_path / "net0.onnx"), "missing.onnx", "--hw",
                                  "cpu-x86-ort-fp32-t1"])
    assert failing.exit_code == 1 and "missing.onnx" in failing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    assert runner.invoke(app, ["estimate", str(empty), "--hw", "cpu-x86-ort-fp32-t1"]).exit_code == 1


def test_a_first_torchvision_export_announces_itself() -> None:
    assert loading_message("torchvision:resnet18", 1).startswith("exporting torchvision:resnet18 with torch")
    assert loading_message(NB201, None).startswith("importing")


def test_errors_are_one_line() -> None:
    r = cli("estimate", "x" * 300 + ".onnx", "--hw", "cpu-x86-ort-fp32-t1", columns=80)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("spelling", [["--models", "A", "B"], ["-m", "A", "-m", "B"], ["A", "B"]])
def test_evaluate_takes_models_in_every_spelling(spelling: list[str], tmp_path: Path) -> None:
    # both are missing files: the study reports each by name (it got both), and fails since none measured
    args = [x if x not in ("A", "B") else str(tmp_path / f"{x}.onnx") for x in spelling]
    r = runner.invoke(app, ["evaluate", "--hw", "cpu-x86-ort-fp32-t1", "--backend", "simulated", *args,
                            "--rounds", "1", "-o", str(tmp_path / "out")])
    assert "unexpected extra argument" not in r.output.lower()
    assert "A.onnx" in r.output and "B.onnx" in r.output, r.output
