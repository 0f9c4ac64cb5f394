"""An nn-Meter 2.0 builder backend that runs kernels on ONNX Runtime exactly as annette measures them.

nn-Meter imports this module by name (``nn-meter register --backend``: ``class_module: nnmeter_backend``,
``class_name: OrtBackend``); ``benchmarks/peers/nnmeter.py build`` writes that registration. It needs
nn-Meter and annette in one environment (see ``benchmarks/peers/README.md``), and is never imported by
annette itself.

- Session: annette's ``OnnxRuntimeBackend(threads=THREADS, opt_level=OPT_LEVEL)`` (1 thread, sequential,
  CPUExecutionProvider, all graph optimisations), so its session options are annette's.
- Timing: annette's ``annette.bench.runner.measure`` under ``DEFAULT_PROTOCOL`` (the micro-kernel protocol
  of annette's own campaigns: warm-up, calibrated inner loop, adaptive stop, label = minimum). nn-Meter
  reads ``Latency.avg``: it gets annette's label (the minimum); ``std`` is the samples' standard deviation.
- Every measurement is appended to ``MEASURE_LOG`` (JSON lines: phase, model, label, samples, flags), so
  the build can count what it measured.
- The kernel's ONNX file is deleted once measured unless ``KEEP_MODELS`` (nn-Meter keeps every sampled
  kernel; fully connected ones are ~50 MB each).
- ``DEADLINE`` (``time.monotonic()`` seconds, set by the build) stops measuring: past it ``profile`` raises
  :class:`BudgetExhausted`, which nn-Meter's ``profile_models`` logs per model and skips.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

from nn_meter.builder.backend_meta.utils import Latency, ProfiledResults
from nn_meter.builder.backends import BaseBackend, BaseParser, BaseProfiler

DEADLINE: float | None = None  # time.monotonic() after which nothing more is measured
PHASE = ""  # tag written with every measurement (ruletest, pilot:<kernel>, prior:<kernel>, ...)


class BudgetExhausted(RuntimeError):
    """The build's time budget is spent; nn-Meter's profile loop logs this and skips the model."""


class OrtProfiler(BaseProfiler):
    def __init__(self, threads: int = 1, opt_level: str = "all", measure_log: str = "") -> None:
        from annette.backends.onnxruntime import OnnxRuntimeBackend

        self.backend = OnnxRuntimeBackend(threads=threads, opt_level=opt_level)
        self.measure_log = measure_log

    def profile(self, model_path: str, **kwargs: Any) -> Any:  # noqa: ARG002 - nn-Meter passes its kwargs
        import onnx

        from annette.bench.runner import DEFAULT_PROTOCOL, measure

        if DEADLINE is not None and time.monotonic() > DEADLINE:
            raise BudgetExhausted(f"time budget spent before measuring {Path(model_path).name}")
        t0 = time.monotonic()
        prepared = self.backend.prepare(onnx.load(model_path))
        m = measure(prepared, DEFAULT_PROTOCOL)
        if self.measure_log:
            with open(self.measure_log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({
                    "phase": PHASE, "model": Path(model_path).name, "label_ms": m.label_ms,
                    "median_ms": m.median_ms, "n_samples": len(m.samples_ms), "inner_loops": m.inner_loops,
                    "flags": list(m.flags), "wall_s": time.monotonic() - t0,
                }) + "\n")  # fmt: skip
        return m


class OrtParser(BaseParser):
    def __init__(self) -> None:
        self._latency = Latency()

    def parse(self, content: Any) -> OrtParser:
        samples = list(content.samples_ms)
        std = statistics.pstdev(samples) if len(samples) > 1 else 0.0
        self._latency = Latency(float(content.label_ms), float(std))
        return self

    @property
    def results(self) -> ProfiledResults:
        return ProfiledResults({"latency": self._latency})


class OrtBackend(BaseBackend):
    """ONNX Runtime CPU with annette's session options and protocol (see the module docstring)."""

    profiler_class = OrtProfiler
    parser_class = OrtParser

    def update_configs(self) -> None:
        cfg = self.configs or {}
        self.keep_models = bool(cfg.get("KEEP_MODELS", False))
        self.parser_kwargs: dict[str, Any] = {}
        self.profiler_kwargs = {
            "threads": int(cfg.get("THREADS", 1)),
            "opt_level": str(cfg.get("OPT_LEVEL", "all")),
            "measure_log": str(cfg.get("MEASURE_LOG", "")),
        }

    def profile(self, converted_model: str, metrics: Any = None, input_shape: Any = None, **kwargs: Any) -> Any:
        metrics = metrics or ["latency"]
        return self.parser.parse(self.profiler.profile(converted_model, **kwargs)).results.get(metrics)

    def profile_model_file(self, model_path: str, save_path: str, input_shape: Any = None, metrics: Any = None,
                           **kwargs: Any) -> Any:  # fmt: skip
        try:
            return self.profile(self.convert_model(model_path, save_path, input_shape), metrics, input_shape, **kwargs)
        finally:
            if not self.keep_models and os.path.isfile(model_path):
                os.remove(model_path)
