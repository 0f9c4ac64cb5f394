"""Importing the h200-torch-eager micro-kernel tables into a store."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from annette.bench.external import h200_family_params, import_table
from annette.bench.store import BenchStore
from annette.errors import BenchStoreError
from annette.graph.accounting import account

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "h200-torch-eager"


def _sample_rows(path: Path, per_kind: int = 2) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows, seen = [], {}
        for row in reader:
            if seen.get(row["kind"], 0) < per_kind:
                seen[row["kind"]] = seen.get(row["kind"], 0) + 1
                rows.append(row)
        return list(reader.fieldnames or []), rows


@pytest.fixture
def table(tmp_path: Path) -> Path:
    src = SHARED / "micro_fp16.csv"
    if not src.is_file():
        pytest.skip(f"shared data absent: {src}")
    fields, rows = _sample_rows(src)
    bad = dict(rows[0], out_c=str(int(rows[0]["out_c"]) + 1), status="CUDA out of memory", median_ms="", p10_ms="",
               p90_ms="", min_ms="")
    out = tmp_path / "sample.csv"
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows([*rows, bad])
    return out


def test_import_rows_as_micro_records(table: Path, tmp_path: Path) -> None:
    counts = import_table(table, tmp_path / "store")
    assert counts == {"ok": 22, "failed": 1, "skipped": 0}  # 11 kinds x 2 rows, plus the failed row
    with BenchStore(tmp_path / "store") as store:
        records = list(store.records())
        assert {r.family for r in records} == {"conv", "gemm", "maxpool", "avgpool", "globalavgpool", "add",
                                               "concat", "relu", "batchnorm", "hardswish", "sigmoid"}
        for rec in records:
            t = rec.target
            assert (t.backend, t.device_model, t.runtime, t.provider, t.precision) == (
                "external", "NVIDIA H200", "torch", "eager", "fp16")
            m = rec.measurement
            assert m is not None and m.label_ms == m.min_ms and m.samples_ms == () and "no_raw_samples" in m.flags
            assert rec.graph is not None and rec.graph.layers[0].output.dtype == "float16"
            assert rec.metadata["p10_ms"] >= m.min_ms
        conv = next(r for r in records if r.family == "conv")
        p = conv.params
        layer = conv.graph.layers[0]
        oh = (p["h"] + 2 * p["pad"] - p["k"]) // p["stride"] + 1
        assert layer.output.shape == (p["n"], p["cout"], oh, oh) and conv.target.batch == p["n"]
        assert account(layer).macs == p["n"] * p["cout"] * oh * oh * p["cin"] // p["groups"] * p["k"] ** 2
        failed = list(store.records(status="failed"))
        assert len(failed) == 1 and failed[0].error == "external: CUDA out of memory"
    again = import_table(table, tmp_path / "store")
    assert again == {"ok": 0, "failed": 0, "skipped": 23}


def test_batch_filter(table: Path, tmp_path: Path) -> None:
    counts = import_table(table, tmp_path / "s1", batch=1)
    with BenchStore(tmp_path / "s1") as store:
        assert {r.target.batch for r in store.records(status=None)} == {1}
        assert store.count() == counts["ok"] + counts["failed"] and counts["skipped"] > 0


def test_row_mapping_closed_forms() -> None:
    row = {"kind": "linear", "batch": "8", "in_c": "512", "in_h": "1", "in_w": "1", "out_c": "10", "kernel": "",
           "stride": "", "padding": "", "groups": "", "dtype": "fp32"}
    assert h200_family_params(row) == ("gemm", {"n": 8, "cin": 512, "cout": 10, "dtype": "float32"})
    row.update(kind="concat", in_c="16", in_h="7", in_w="7")
    assert h200_family_params(row) == ("concat", {"n": 8, "cs": [16, 16], "h": 7, "w": 7, "dtype": "float32"})


def test_not_a_table(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(BenchStoreError, match="missing columns"):
        import_table(bad, tmp_path / "s")
    with pytest.raises(BenchStoreError, match="not found"):
        import_table(tmp_path / "absent.csv", tmp_path / "s")
