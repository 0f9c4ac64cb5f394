"""Shared command line of the fixed-setting study scripts (accuracy_zoo.py, fidelity_nb201.py)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from annette.evaluate.report import markdown_table, settings_line, write_report
from annette.evaluate.study import Progress, StudySettings, run_study

SETTINGS = StudySettings(backend="onnxruntime", threads=1, batch=1, rounds=3, seed=0, profile=True)


def show(p: Progress) -> None:
    where = f" round {p.round + 1}" if p.round >= 0 else ""
    print(f"[{p.phase}{where}] {p.done}/{p.total} {p.network}", flush=True)


def main(doc: str | None, specs: list[str], title: str, default_out: str) -> None:
    """Parse --hw/--backend/--out, run the study with SETTINGS, write the report, print its table."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hw", required=True, help="hardware model: shipped name or JSON file")
    parser.add_argument("--backend", default=SETTINGS.backend, help="backend that measures: onnxruntime or openvino")
    parser.add_argument("--out", default=default_out, help="report directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = dataclasses.replace(SETTINGS, backend=args.backend)
    result = run_study(specs, args.hw, args.out, settings, title=title, progress=show)
    files = write_report(result, args.out)
    print()
    print(settings_line(result))
    print()
    print(markdown_table(result))
    print(f"\nreport: {files.html}")
