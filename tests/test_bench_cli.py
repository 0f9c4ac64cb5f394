"""The bench CLI: bench (campaign), bench status/import/export, measure; errors as one line, exit 1."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from annette.bench.blocks import build_model
from annette.cli.main import app

runner = CliRunner()


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_bench_simulated_status_export(tmp_path: Path) -> None:
    out = tmp_path / "store"
    doc = _json(runner.invoke(app, ["bench", "--backend", "simulated", "--opt", "scale=0.02", "--out", str(out),
                                    "--max-configs", "6", "--profile-runs", "1", "--seed", "2", "--json"]))
    assert doc["measured"] == 6 and doc["stopped_by"] == "max_configs" and doc["store"] == str(out)
    status = _json(runner.invoke(app, ["bench", "status", str(out), "--json"]))
    assert status["total"] == 6 and sum(status["by_kind"].values()) == 6
    assert list(status["targets"]) == ["simulated/simulated/fp32/b1/t1"]
    assert json.loads(status["meta"]["campaign"])["backend_options"] == {"scale": 0.02, "threads": 1}
    text = runner.invoke(app, ["bench", "status", str(out)])
    assert text.exit_code == 0 and "6 records" in text.stdout
    exported = runner.invoke(app, ["bench", "export", str(out), str(tmp_path / "x.csv")])
    assert exported.exit_code == 0 and len((tmp_path / "x.csv").read_text().splitlines()) == 7
    again = runner.invoke(app, ["bench", "--backend", "simulated", "--out", str(out), "--max-configs", "1"])
    assert again.exit_code == 1 and "--resume" in again.stderr


def test_bench_errors_are_one_line(tmp_path: Path) -> None:
    r = runner.invoke(app, ["bench", "--backend", "simulated"])
    assert r.exit_code == 1 and "--out" in r.stderr and "Traceback" not in r.stderr
    r = runner.invoke(app, ["bench", "--backend", "tensorrt", "--out", str(tmp_path / "s")])
    assert r.exit_code == 1 and "valid names: onnxruntime, openvino, simulated, torch" in " ".join(r.stderr.split())
    assert r.stderr.startswith("error:")
    r = runner.invoke(app, ["bench", "status", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "no benchmark store" in r.stderr
    r = runner.invoke(app, ["bench", "--backend", "simulated", "--out", str(tmp_path / "s2"), "--opt", "oops"])
    assert r.exit_code == 1 and "KEY=VALUE" in r.stderr


def test_measure_onnx_file_json(tmp_path: Path) -> None:
    path = tmp_path / "block.onnx"
    onnx.save(build_model("conv_bn_relu", {"n": 1, "cin": 8, "h": 16, "w": 16, "cout": 8, "k": 3, "stride": 1,
                                           "pad": 1, "dilation": 1, "groups": 1, "act": "relu"}, name="b"), path)
    doc = _json(runner.invoke(app, ["measure", str(path), "--backend", "onnxruntime", "--json", "--profile"]))
    assert doc["label_statistic"] == "min" and doc["latency_ms"] == doc["min_ms"] == min(doc["samples_ms"])
    assert doc["median_ms"] >= doc["min_ms"] > 0 and len(doc["samples_ms"]) >= 10
    assert doc["target"]["runtime"] == "onnxruntime" and doc["target"]["threads"] == 1
    assert any(set(p["covers"]) == {"conv", "bn", "relu"} for p in doc["profile"])


def test_bench_import_h200(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "h200-torch-eager" / "micro_fp32.csv"
    if not src.is_file():
        pytest.skip(f"shared data absent: {src}")
    small = tmp_path / "small.csv"
    small.write_text("".join(src.open().readlines()[:6]))
    doc = _json(runner.invoke(app, ["bench", "import", str(small), "--format", "h200-torch-eager",
                                    "--out", str(tmp_path / "s"), "--json"]))
    assert doc["ok"] + doc["skipped"] == 5 and doc["failed"] == 0
    r = runner.invoke(app, ["bench", "import", str(small), "--format", "nope", "--out", str(tmp_path / "s")])
    assert r.exit_code == 1 and "h200-torch-eager" in r.stderr
