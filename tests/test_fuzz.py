"""A bounded fuzz run in CI: seeded mutants of small valid ONNX models and bundles, each in a crash-isolated,
memory-limited child; every outcome must be a result or an annette error (benchmarks/fuzz_inputs.py runs
thousands)."""

from __future__ import annotations

import collections

from annette import fuzz


def test_isolation_catches_crashes_and_limits_memory() -> None:
    cases = [{"kind": "selftest:abort", "data": ""}, {"kind": "selftest:alloc", "data": str(4 * 2**30)},
             {"kind": "selftest:alloc", "data": str(2**20)}]
    outcomes = [r.outcome for r in fuzz.run_cases(iter(cases), mem_limit_bytes=2**30)]
    assert outcomes == ["crash:SIGABRT", "exception:MemoryError", "ok"]
    assert fuzz.is_defect(outcomes[0]) and fuzz.is_defect(outcomes[1]) and not fuzz.is_defect("annette:ShapeError")


def test_mutants_give_results_or_annette_errors() -> None:
    results = fuzz.run_cases(fuzz.cases(seed=13, n=300), timeout_s=60, mem_limit_bytes=2**30)
    counts = collections.Counter(r.outcome for r in results)
    defects = {k: v for k, v in counts.items() if fuzz.is_defect(k)}
    assert not defects, counts
    assert counts["ok"] > 10 and sum(v for k, v in counts.items() if k.startswith("annette:")) > 100
    assert max(r.peak_kb for r in results) < 2**20  # KiB: every case under 1 GiB resident


def test_mutation_is_deterministic() -> None:
    assert list(fuzz.cases(seed=5, n=20)) == list(fuzz.cases(seed=5, n=20))
