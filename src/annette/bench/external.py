"""Import external micro-kernel tables into a store (formats in ``EXTERNAL_FORMATS``).

``h200-torch-eager``: the CSVs of ``shared/data/h200-torch-eager`` (PyTorch eager on an NVIDIA H200,
channels_last, fp16/fp32; columns in that folder's README). Each row becomes a micro record whose graph is
the matching single-layer benchmark network (``annette.bench.blocks``) in the file's dtype, with target
backend "external" (torch eager on the H200) and the row's batch. The tables publish statistics, not raw
samples: the record's label is the row's value of ``LABEL_STATISTIC`` (min), ``median_ms`` and ``min_ms``
are the row's, ``samples_ms`` is empty and the flag ``no_raw_samples`` says so; p10/p90/reps go to the
metadata. Rows whose status is not ``ok`` are kept as failed records with that status as the error.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from annette import checks
from annette.bench.store import BenchStore
from annette.bench.sweeps import make_config
from annette.errors import BenchStoreError
from annette.records import BenchRecord, Measurement, Target
from annette.registry import Registry
from annette.stats import LABEL_STATISTIC

log = logging.getLogger(__name__)

H200_COLUMNS = ("kind", "batch", "in_c", "in_h", "in_w", "out_c", "kernel", "stride", "padding", "groups", "out_h",
                "out_w", "dtype", "layout", "median_ms", "p10_ms", "p90_ms", "min_ms", "reps", "status")
_DTYPES = {"fp16": ("float16", "fp16"), "fp32": ("float32", "fp32")}
_STAT_COLUMN = {"min": "min_ms", "p10": "p10_ms", "median": "median_ms"}


def h200_family_params(row: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """The benchmark family and parameters of one h200-torch-eager row."""
    i = {k: int(row[k] or 0) for k in ("batch", "in_c", "in_h", "in_w", "out_c", "kernel", "stride", "padding", "groups")}
    n, c, h, w = i["batch"], i["in_c"], i["in_h"], i["in_w"]
    dtype = _DTYPES[row["dtype"]][0]
    img = {"n": n, "c": c, "h": h, "w": w, "dtype": dtype}
    kind = row["kind"]
    if kind == "conv2d":
        return "conv", {"n": n, "cin": c, "h": h, "w": w, "cout": i["out_c"], "k": i["kernel"], "stride": i["stride"],
                        "pad": i["padding"], "dilation": 1, "groups": i["groups"], "dtype": dtype}
    if kind == "linear":
        return "gemm", {"n": n, "cin": c, "cout": i["out_c"], "dtype": dtype}
    if kind in ("maxpool", "avgpool"):
        return kind, {**img, "k": i["kernel"], "stride": i["stride"], "pad": i["padding"]}
    if kind == "gavgpool":
        return "globalavgpool", img
    if kind == "add":
        return "add", {**img, "broadcast": 0}
    if kind == "concat":
        return "concat", {"n": n, "cs": [c, c], "h": h, "w": w, "dtype": dtype}
    if kind == "batchnorm":
        return "batchnorm", img
    if kind in ("relu", "hardswish", "sigmoid"):
        return kind, {"shape": [n, c, h, w], "dtype": dtype}
    raise BenchStoreError(f"h200-torch-eager row of unknown kind {kind!r}")


def h200_target(precision: str, batch: int) -> Target:
    return Target(
        backend="external",
        device="cuda:0",
        device_model="NVIDIA H200",
        runtime="torch",
        runtime_version="2.11.0+cu130",
        provider="eager",
        threads=1,
        precision=precision,
        batch=batch,
        extra={"cudnn": "9.19", "layout": "channels_last", "source": "h200-torch-eager", "timing": "cuda events"},
    )


def h200_records(path: Path, accept: Callable[[str, Target], bool] = lambda _id, _t: True) -> Iterator[BenchRecord]:
    """The records of one table; rows that ``accept(config_id, target)`` refuses are not built."""
    from annette.bench.blocks import build_model
    from annette.importers.onnx import graph_from_onnx

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BenchStoreError(f"{path}: not a UTF-8 CSV table ({exc.reason} at byte {exc.start})") from None
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in H200_COLUMNS if c not in (reader.fieldnames or ())]
        if missing:
            raise BenchStoreError(f"{path}: not an h200-torch-eager table; missing columns {missing}")
        for line, row in enumerate(reader, start=2):
            try:
                family, params = h200_family_params(row)
                precision = _DTYPES[row["dtype"]][1]
                target = h200_target(precision, int(row["batch"]))
            except (KeyError, ValueError) as exc:
                raise BenchStoreError(f"{path}:{line}: malformed row ({exc!r})") from exc
            config = make_config(family, params, target.key, "external")
            if not accept(config.config_id, target):
                continue
            meta: dict[str, Any] = {"source": "external", "file": path.name, "line": line,
                                    "layout": row["layout"], "reps": int(row["reps"] or 0),
                                    "label_statistic": LABEL_STATISTIC}
            if row["status"] != "ok":
                yield BenchRecord(config.config_id, "micro", family, config.params, target, "failed",
                                  error=f"external: {row['status']}", metadata=meta)
                continue
            try:  # a time that is not a finite positive number is no measurement: the row is kept as failed
                times = {c: checks.number(_float(row[c], c), c, positive=True)
                         for c in ("median_ms", "min_ms", "p10_ms", "p90_ms")}
            except ValueError as exc:
                log.warning("%s:%d: %s; stored as failed", path, line, exc)
                yield BenchRecord(config.config_id, "micro", family, config.params, target, "failed",
                                  error=f"external: invalid time: {exc}", metadata=meta)
                continue
            meta.update({"p10_ms": times["p10_ms"], "p90_ms": times["p90_ms"]})
            measurement = Measurement(
                samples_ms=(),
                inner_loops=1,
                label_ms=times[_STAT_COLUMN[LABEL_STATISTIC]],
                median_ms=times["median_ms"],
                min_ms=times["min_ms"],
                flags=("no_raw_samples",),
            )
            graph = graph_from_onnx(build_model(family, config.params, name=config.model_name))
            yield BenchRecord(config.config_id, "micro", family, config.params, target, "ok", graph=graph,
                              measurement=measurement, metadata=meta)


def _float(text: str | None, column: str) -> float:
    if text is None:
        raise ValueError(f"{column} is missing (a short row)")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{column} {text[:40]!r} is not a number") from None


EXTERNAL_FORMATS: Registry[Callable[[Path, Callable[[str, Target], bool]], Iterator[BenchRecord]]] = Registry(
    "external table format"
)
EXTERNAL_FORMATS.register("h200-torch-eager", h200_records)


def import_table(
    paths: list[str | Path] | str | Path,
    store_dir: str | Path,
    *,
    format: str = "h200-torch-eager",
    batch: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Import one or more tables into the store at ``store_dir`` (rows already there are skipped).

    ``batch`` keeps only the rows of that batch size (the batch is part of the target). Returns counts
    of added ok / failed rows and skipped ones.
    """
    reader = EXTERNAL_FORMATS.get(format)
    files = [Path(p) for p in (paths if isinstance(paths, list) else [paths])]
    counts = {"ok": 0, "failed": 0, "skipped": 0}
    with BenchStore(store_dir) as store:
        for path in files:
            if not path.is_file():
                raise BenchStoreError(f"table not found: {path}")

            def accept(config_id: str, target: Target) -> bool:
                if (batch is not None and target.batch != batch) or store.has(config_id):
                    counts["skipped"] += 1
                    return False
                return True

            for record in reader(path, accept):
                store.add(record)
                counts[record.status] += 1
                if progress is not None:
                    progress(counts["ok"] + counts["failed"])
    return counts
