"""PyTorch eager mode (``torch.inference_mode()``), on the CPU or a CUDA device.

``prepare`` takes a ``torchvision:NAME`` spec (random weights, the zoo's native input size) or a
``(module, example_inputs)`` pair; an ONNX model cannot be run by PyTorch and raises ``BackendError``.
Options: ``device`` (cpu | cuda | cuda:N, default cpu), ``threads`` (``torch.set_num_threads``, CPU),
``precision`` (fp32 | fp16; fp16 on CUDA only), ``channels_last`` (4-D memory format, default False).

On CUDA, ``run()`` synchronises; the runner times batches of calls with CUDA events
(``time_calls``), so one sample is launch + kernel time as an eager network experiences it.

Per-node profile: each leaf module's forward is wrapped in a ``record_function`` range and the torch
profiler runs the model; one ``ExecutedNode`` per leaf-module call (``node`` = module path, ``op_type`` =
module class). Functional operations outside leaf modules (e.g. ``out += identity``) are in the
end-to-end time only. The nodes are linked to no graph layer (naming ``none``: ``covers`` stays empty):
exported ONNX node names do not carry module paths reliably across exporters.

The backend takes model specs (``takes_specs``): a caller hands it ``torchvision:NAME`` itself, not the
spec's ONNX form.

torch is imported only inside this module's functions.
"""

from __future__ import annotations

import logging
from typing import Any

from annette.backends.base import BACKENDS, check_threads, cpu_extra, cpu_model
from annette.errors import BackendError
from annette.graph.ir import Graph
from annette.records import ExecutedNode, Target
from annette.torchvision_models import TORCHVISION_MODELS

log = logging.getLogger(__name__)

RANGE_PREFIX = "annette.module:"


class TorchBackend:
    name = "torch"
    takes_specs = True

    def __init__(
        self, device: str = "cpu", threads: int = 1, precision: str = "fp32", batch: int = 1, channels_last: bool = False
    ) -> None:
        self.device = device
        self.threads = check_threads(threads)
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"torch precision must be fp32 or fp16, got {precision!r}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise BackendError("torch fp16 is supported on CUDA devices only; use --precision fp32 on the CPU")
        if device != "cpu" and not device.startswith("cuda"):
            raise BackendError(f"torch device must be cpu, cuda or cuda:N, got {device!r}")
        self.precision = precision
        self.batch = batch
        self.channels_last = channels_last

    def is_available(self) -> bool:
        try:
            import torch
        except ImportError:
            return False
        return self.device == "cpu" or bool(torch.cuda.is_available())

    def describe(self) -> Target:
        import torch

        if self.device == "cpu":
            device, model, extra = "cpu", cpu_model(), cpu_extra()
        else:
            dev = torch.device(self.device)
            index = dev.index if dev.index is not None else torch.cuda.current_device()
            device, model = f"cuda:{index}", torch.cuda.get_device_name(index)
            extra = {"cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version())}
        return Target(
            backend=self.name,
            device=device,
            device_model=model,
            runtime="torch",
            runtime_version=torch.__version__,
            provider="eager",
            threads=self.threads,
            precision=self.precision,
            batch=self.batch,
            extra={**extra, "channels_last": str(self.channels_last)},
        )

    def prepare(self, model: Any, graph: Graph | None = None) -> TorchPrepared:
        import torch

        if isinstance(model, str):
            module, inputs = _torchvision(model, self.batch)
        elif isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], torch.nn.Module):
            module, inputs = model[0], tuple(model[1]) if isinstance(model[1], (tuple, list)) else (model[1],)
        else:
            raise BackendError(
                "the torch backend runs PyTorch modules: pass 'torchvision:NAME' or (module, example_inputs), "
                f"got {type(model).__name__} (an ONNX model cannot be run by PyTorch; use onnxruntime or openvino)"
            )
        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        module = module.eval().to(device=self.device, dtype=dtype)
        inputs = tuple(
            x.to(device=self.device, dtype=dtype if x.is_floating_point() else x.dtype).contiguous(
                memory_format=fmt if x.dim() == 4 else torch.contiguous_format
            )
            for x in inputs
        )
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return TorchPrepared(module, inputs, self.device)


def _torchvision(spec: str, batch: int) -> tuple[Any, tuple[Any, ...]]:
    import torch

    if not spec.startswith("torchvision:"):
        raise BackendError(f"the torch backend takes 'torchvision:NAME' specs, got {spec!r}")
    name = spec.split(":", 1)[1]
    if name not in TORCHVISION_MODELS:
        raise BackendError(f"unknown torchvision model {name!r}; known: {', '.join(sorted(TORCHVISION_MODELS))}")
    import torchvision

    size = TORCHVISION_MODELS[name]
    module = torchvision.models.get_model(name, weights=None)
    gen = torch.Generator().manual_seed(0)
    return module, (torch.randn(batch, 3, size, size, generator=gen),)


class TorchPrepared:
    def __init__(self, module: Any, inputs: tuple[Any, ...], device: str) -> None:
        self.module = module
        self.inputs = inputs
        self.cuda = device.startswith("cuda")

    def _call(self) -> None:
        import torch

        with torch.inference_mode():
            self.module(*self.inputs)

    def run(self) -> None:
        self._call()
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def time_calls(self, n: int) -> float:
        """Milliseconds for ``n`` back-to-back calls: CUDA events on CUDA, perf_counter on the CPU."""
        import time

        import torch

        if not self.cuda:
            t0 = time.perf_counter()
            for _ in range(n):
                self._call()
            return (time.perf_counter() - t0) * 1000.0
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(n):
            self._call()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))

    def profile(self, runs: int) -> tuple[ExecutedNode, ...]:
        from torch.profiler import ProfilerActivity, profile, record_function

        leaves = [(name, m) for name, m in self.module.named_modules() if name and not list(m.children())]
        calls: dict[str, int] = {}
        ranges: list[Any] = []

        def pre(name: str) -> Any:
            def hook(_m: Any, _inp: Any) -> None:
                i = calls.get(name, 0)
                calls[name] = i + 1
                r = record_function(f"{RANGE_PREFIX}{name}" + (f"#{i}" if i else ""))
                r.__enter__()
                ranges.append(r)

            return hook

        def post(_m: Any, _inp: Any, _out: Any) -> None:
            ranges.pop().__exit__(None, None, None)

        handles = [h for name, m in leaves for h in (m.register_forward_pre_hook(pre(name)), m.register_forward_hook(post))]
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        times: dict[str, list[float]] = {}
        classes = {name: type(m).__name__ for name, m in leaves}
        try:
            for _ in range(runs):
                calls.clear()
                with profile(activities=activities) as prof:
                    self.run()
                for ev in prof.events():
                    if ev.name.startswith(RANGE_PREFIX):
                        us = (getattr(ev, "device_time_total", 0) or 0) if self.cuda else 0
                        times.setdefault(ev.name[len(RANGE_PREFIX):], []).append((us or ev.cpu_time_total) / 1000.0)
        finally:
            for h in handles:
                h.remove()
        return tuple(
            ExecutedNode(node=node, op_type=classes[node.split("#")[0]], times_ms=tuple(ts), naming="none",
                         exec_type="eager")
            for node, ts in times.items()
        )


BACKENDS.register("torch", TorchBackend)
