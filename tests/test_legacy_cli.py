"""``annette legacy-estimate`` through typer's CliRunner, on one reference vector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annette.cli.main import app

LEGACY = Path(__file__).resolve().parents[1].parent / "shared" / "legacy-annette"
pytestmark = pytest.mark.skipif(not LEGACY.is_dir(), reason=f"shared legacy ANNETTE data not found at {LEGACY}")

GRAPH = str(LEGACY / "graphs" / "cf_squeezenet.json")
NCS2 = str(LEGACY / "models" / "layer" / "ncs2-roofline.json")
OV = str(LEGACY / "models" / "mapping" / "ov.json")


def test_json_output_matches_reference_vector() -> None:
    result = CliRunner().invoke(app, ["legacy-estimate", GRAPH, "--layer-model", NCS2, "--mapping-model", OV, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"total_ms", "n_layers", "layers", "warnings"}
    assert abs(doc["total_ms"] - 6.102255584361827) / 6.102255584361827 < 1e-9
    assert doc["n_layers"] == len(doc["layers"]) == 37 and doc["warnings"] == []
    keys = {"name", "type", "time_ms", "num_ops", "num_inputs", "num_outputs", "num_weights"}
    assert all(set(row) == keys for row in doc["layers"])
    assert sum(row["time_ms"] for row in doc["layers"]) == pytest.approx(doc["total_ms"], rel=1e-12)


def test_table_output_and_no_mapping() -> None:
    result = CliRunner().invoke(app, ["legacy-estimate", GRAPH, "-l", NCS2, "-m", "none"])
    assert result.exit_code == 0, result.output
    assert "total:" in result.stdout and "65 visited layers" in result.stdout  # unmapped: every layer


def test_errors_are_one_line_and_exit_1() -> None:
    ov2 = str(LEGACY / "models" / "mapping" / "ov2.json")
    result = CliRunner().invoke(app, ["legacy-estimate", GRAPH, "-l", NCS2, "-m", ov2])
    assert result.exit_code == 1
    assert "LegacyFormatError" in result.output and "never published" in result.output
