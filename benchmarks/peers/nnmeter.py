"""Build nn-Meter 2.0's latency predictor for this machine's ONNX Runtime CPU target, and predict with it.

Runs in its own environment (nn-meter 2.0, setuptools < 81, torch CPU, onnxruntime, annette without extras:
see ``benchmarks/peers/README.md``), never in annette's. Two commands:

    nnmeter.py build   --workspace WS --budget-min 30 [--name NAME] [--seed 0]
    nnmeter.py predict --workspace WS --out PRED.json FILE.onnx ...

``build`` points HOME at ``WS/home`` (nn-Meter keeps its registries under ``~/.nn_meter``), registers the ONNX
Runtime backend of ``nnmeter_backend.py`` (annette's session options and measurement protocol) with
``nn-meter register --backend``, creates nn-Meter's workspace with ``nn-meter create``, applies the run-time
shims of :data:`SHIMS`, and within ``--budget-min`` minutes (everything counted: test-case and kernel
generation, measuring, random-forest fitting):

1. fusion rules: nn-Meter's ``generate_testcases`` / ``profile_models(mode="ruletest")`` /
   ``detect_fusion_rule`` (at most half the budget);
2. kernel predictors: for every kernel of nn-Meter's default ``predictorbuild_config.yaml`` (the 16 kernels
   its predictor looks up), nn-Meter's adaptive sampling loop (``build_predictor_for_kernel``: prior samples,
   a random forest, fine-grained samples around the test points with > 10 % error, refit) with the sample
   counts scaled to the budget: a pilot of ``PILOT`` samples per kernel gives each kernel's cost per sample,
   then every kernel gets the same share ``s`` of its default ``INIT_SAMPLE_NUM`` (``PRIOR_SHARE`` of the
   time left), and fine-grained iterations (``FINEGRAINED_SAMPLE_NUM`` per large-error point, up to
   ``ITERATION - 1`` rounds) use the rest, split evenly between the iterations and, within one, in
   proportion to each kernel's default prior workload (``INIT_SAMPLE_NUM`` x its cost per sample), so that
   every kernel gets about the same share of the work nn-Meter's default config asks of it;
3. writes ``WS/predictor/``: one ``<kernel>.pkl`` per kernel (nn-Meter's own pickled forests, read only by
   nn-Meter), ``fusion_rules.json``, ``meta.yaml``, registers it with ``nn-meter register --predictor``, and
   writes ``build.json`` (budget, wall time, measurements, rules found, samples per kernel, shims, versions).

``predict`` loads that predictor (``nn_meter.load_latency_predictor``) and predicts each ONNX file
(``model_type="onnx"``, ms); every kernel nn-Meter leaves out of its sum (an op with no feature extractor,
or a kernel with no predictor) is listed per network with its reason: nn-Meter counts it as 0 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BACKEND_NAME = "annette_ort_cpu"
DEFAULT_PREDICTOR = "annette-ort-cpu-nnmeter"
PREDICTOR_VERSION = 1.0
SCHEMA_VERSION = 1

PILOT = 8  # prior samples per kernel that measure its cost per sample
PRIOR_SHARE = 0.75  # of the kernel-phase time, for prior samples; the rest for fine-grained iterations
PRIOR_PASSES = 3  # prior passes, each with the costs per sample measured so far
RULETEST_SHARE = 0.5  # the fusion-rule phase stops measuring after this share of the budget
UNBUILDABLE: dict[str, str] = {}  # fusion test cases whose torch models could not be built (shim 10)
MIN_FIT = 5  # labelled samples a kernel needs for nn-Meter's 80/20 split and forest


@dataclass(frozen=True)
class Shim:
    """One run-time change to nn-Meter 2.0 (``number``: its item in ../shared/peers/nn-meter.md)."""

    number: int
    key: str
    where: str  # build | predict
    reason: str


SHIMS: tuple[Shim, ...] = (
    Shim(1, "export-dynamo-false", "build",
         "torch >= 2.9 exports with dynamo by default; nn-Meter's two-input test cases and its opset-12 export "
         "fail under it: torch.onnx.export is wrapped with dynamo=False (the TorchScript exporter nn-Meter was "
         "written for)"),
    Shim(2, "no-mon-testcase", "build",
         "the multi-output test case (MON) is not implemented for torch (raises NotImplementedError) and aborts "
         "all test-case generation: OTHER_TESTCASES: [] in the workspace's ruletest_config.yaml (the kernel "
         "detector then uses nn-Meter's default MON rule, 0)"),
    Shim(3, "torch-testcase-nchw", "build",
         "PyPI 2.0 builds torch fusion test cases with the TensorFlow NHWC shape [HW, HW, CIN] read as NCHW "
         "(28 channels of 28 x 64 pixels); fixed on nn-Meter's main (PR #81), never released: 3-D test-case "
         "shapes become [CIN, HW, HW]"),
    Shim(4, "rf-max-features", "build",
         "every kernel of a custom backend gets RandomForestRegressor(max_features='auto'), which scikit-learn "
         ">= 1.3 rejects at fit: 'auto' becomes 1.0 (what 'auto' meant for regressors)"),
    Shim(5, "concat-features", "predict",
         "the concat predictor is trained on 5 features [HW, CIN1..CIN4] and fed 6 [HW, n_inputs, CIN1..CIN4] "
         "at predict time (nn-Meter issue #122, unmerged PR #123): the input count is dropped"),
    Shim(6, "gap-input-size", "predict",
         "global-average-pool features take the input size from hasattr(item, 'inputh') on a dict, always "
         "False, so HW is always 1: the kernel's inputh is used"),
    Shim(7, "count-dropped", "predict",
         "a kernel with no feature extractor (ops outside nn-Meter's table: Sigmoid, Softmax, Mul, Transpose, "
         "Reshape, ...) or with no predictor counts as 0 ms silently: each is listed per network (the "
         "prediction itself is unchanged)"),
    Shim(8, "no-sleep-no-files", "build",
         "profile_models sleeps 0.2 s after every model, and every sampled kernel is kept as an ONNX file "
         "(fully connected ones ~50 MB): the sleep is removed and the backend deletes each file once measured"),
    Shim(9, "torch-gap-block-nchw", "build",
         "the torch GlobalAvgPoolBlock (global-avgpool kernel) builds its input as NHWC [HW, HW, CIN], so it "
         "pools an HW-channel tensor over (HW, CIN): its input becomes [CIN, HW, HW] like every other torch "
         "block"),
    Shim(10, "skip-unbuildable-testcase", "build",
         "one test case whose torch models cannot be built aborts all test-case generation (reshape_fc: the "
         "torch FC reads its input channels from dimension 0, TensorFlow's from the last): such test cases are "
         "skipped and listed in build.json (their pair is then not fused)"),
    Shim(11, "drop-unextractable-kernel", "predict",
         "a fused kernel whose first op has no kernel size but whose name holds 'conv' (add-conv, relu-conv, "
         "after a pair rule such as add_conv was detected) raises KeyError 'ks' in the feature extractor and "
         "aborts the whole prediction: that kernel is dropped (0 ms) and listed"),
    Shim(12, "shapeless-node-keeps-type", "predict",
         "the ONNX converter gives a node whose first input or output has no shape in the file (an Identity "
         "of an initializer, as today's torch exporter writes shared weights; an op on a 1-D shape tensor) no "
         "attributes at all, and the kernel detector then aborts the whole prediction with KeyError 'type': "
         "such a node keeps its op type and attributes with empty shapes"),
)  # fmt: skip


def log(msg: str) -> None:
    print(f"[nnmeter {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def set_home(workspace: Path) -> Path:
    """nn-Meter reads ``~/.nn_meter`` at import time: point HOME at the workspace before importing it."""
    if "nn_meter" in sys.modules:
        raise RuntimeError("nn_meter was imported before HOME was set")
    home = workspace / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home)
    return home


def nnmeter_cli(*args: str) -> None:
    """Run nn-Meter's own command line (same interpreter, HOME as set)."""
    exe = Path(sys.executable).with_name("nn-meter")
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "nn_meter.utils.nn_meter_cli.interface", *args]
    proc = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "Traceback" in out:
        raise RuntimeError(f"`nn-meter {' '.join(args)}` failed:\n{out}")
    said = [line for line in out.splitlines() if line.startswith("(nn-Meter)")]
    log(f"nn-meter {' '.join(args)}: {said[-1] if said else 'ok'}")


def yaml_dump(obj: Any, path: Path) -> None:
    import yaml

    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")


def yaml_load(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- shims ----------------------------------------------------------------------------------------------
class _NoSleep:
    """Stands in for the ``time`` module inside ``nn_meter.builder.nn_meter_builder`` (shim 8)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(_seconds: float) -> None:
        return None


def apply_build_shims() -> list[str]:
    """Shims 1, 3, 4, 8, 9 (2 is a config edit, 5-7 are predict-time). Call after ``builder_config.init``
    and before any fusion-rule or sampling module of nn-Meter is imported."""
    import inspect

    import torch

    applied = []
    export = torch.onnx.export
    if "dynamo" in inspect.signature(export).parameters and not getattr(export, "_nnmeter_shim", False):
        def export_no_dynamo(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("dynamo", False)
            return export(*args, **kwargs)

        export_no_dynamo._nnmeter_shim = True  # type: ignore[attr-defined]
        torch.onnx.export = export_no_dynamo
        applied.append("export-dynamo-false")

    if "nn_meter.builder.backend_meta.fusion_rule_tester.test_fusion_rule" in sys.modules:
        raise RuntimeError("test_fusion_rule was imported before the test-case shim")
    from nn_meter.builder.backend_meta.fusion_rule_tester import generate_testcase

    generate = generate_testcase.generate_testcases

    def generate_nchw() -> dict[str, Any]:
        cases = generate()
        for cls in cases.values():
            shape = getattr(cls, "input_shape", None)
            if getattr(cls, "implement", None) == "torch" and shape and len(shape) == 3:
                hw_h, hw_w, cin = shape
                cls.input_shape = [cin, hw_h, hw_w]
        return cases

    generate_testcase.generate_testcases = generate_nchw
    applied.append("torch-testcase-nchw")

    from nn_meter.builder.backend_meta.fusion_rule_tester import test_fusion_rule

    def generate_skipping(self: Any) -> dict[str, Any]:
        testcases = {}
        for name, cls in self._testcases.items():
            try:
                testcases[name] = cls(test_fusion_rule.config).save_testcase()
            except Exception as exc:  # torch raises anything for a shape it cannot build
                UNBUILDABLE[name] = f"{type(exc).__name__}: {exc}"
        return testcases

    test_fusion_rule.FusionRuleTester.generate = generate_skipping
    applied.append("skip-unbuildable-testcase")

    from nn_meter.builder.kernel_predictor_builder.predictor_builder import predictor_lib

    forest = predictor_lib.RandomForestRegressor

    def forest_fixed(**kwargs: Any) -> Any:
        if kwargs.get("max_features") == "auto":
            kwargs["max_features"] = 1.0
        return forest(**kwargs)

    predictor_lib.RandomForestRegressor = forest_fixed
    applied.append("rf-max-features")

    from nn_meter.builder import nn_meter_builder

    nn_meter_builder.time = _NoSleep()  # type: ignore[assignment]
    applied.append("no-sleep-no-files")

    from nn_meter.builder.nn_modules.torch_networks import blocks

    gap_init = blocks.GlobalAvgPoolBlock.__init__

    def gap_init_nchw(self: Any, config: dict[str, Any], batch_size: int = 1) -> None:
        gap_init(self, config, batch_size)
        self.input_shape = [config["CIN"], config["HW"], config["HW"]]
        self.input_tensor_shape = [self.input_shape]

    blocks.GlobalAvgPoolBlock.__init__ = gap_init_nchw
    applied.append("torch-gap-block-nchw")
    return applied


@dataclass
class KernelAccount:
    """What nn-Meter's predictor made of one network's kernels (shim 7)."""

    kept: list[tuple[str, str]]  # (op, kernel name)
    dropped: list[dict[str, str]]  # op, name, reason


def apply_predict_shims(account: KernelAccount) -> list[str]:
    """Shims 5, 6, 7, 11: wrap the feature extractor nn-Meter's ``nn_predict`` calls; 12: the ONNX converter's
    attributes of shapeless nodes."""
    from nn_meter.predictor.prediction import predict_by_kernel
    from nn_meter.predictor.prediction.extract_feature import get_predict_features

    def features_fixed(kernels: list[dict[str, Any]]) -> dict[int, dict[str, list[Any]]]:
        out: dict[int, dict[str, list[Any]]] = {}
        for item in kernels:
            try:
                one = get_predict_features([item])
            except (KeyError, IndexError, TypeError) as exc:  # shim 11
                account.dropped.append({"op": str(item.get("op")), "name": str(item.get("name")),
                                        "reason": f"feature extraction failed ({type(exc).__name__}: {exc})"})  # fmt: skip
                continue
            if not one:
                account.dropped.append({"op": str(item.get("op")), "name": str(item.get("name")),
                                        "reason": "no feature extractor"})  # fmt: skip
                continue
            op, feats = next(iter(one[0].items()))
            feats = list(feats)
            if "concat" in op and len(feats) == 6:
                feats = [feats[0], *feats[2:6]]  # shim 5: [HW, CIN1..CIN4]
            if ("global-pool" in op or "global-avgpool" in op or "gap" in op) and "inputh" in item:
                feats[0] = item["inputh"]  # shim 6
            out[len(out)] = {op: feats}
            account.kept.append((op, str(item.get("name"))))
        return out

    predict_by_kernel.get_predict_features = features_fixed
    from nn_meter.ir_converter.onnx_converter.converter import OnnxConverter

    fetch_attrs = OnnxConverter.fetch_attrs

    def fetch_attrs_typed(self: Any, node: Any) -> dict[str, Any]:  # shim 12
        attrs = fetch_attrs(self, node)
        return attrs or {"type": node.op_type, "attr": {}, "input_shape": [], "output_shape": []}

    OnnxConverter.fetch_attrs = fetch_attrs_typed
    return ["concat-features", "gap-input-size", "count-dropped", "drop-unextractable-kernel",
            "shapeless-node-keeps-type"]


# -- build ----------------------------------------------------------------------------------------------
def write_backend_registration(ws: Path, threads: int, keep_models: bool) -> Path:
    config = {"THREADS": threads, "OPT_LEVEL": "all", "KEEP_MODELS": keep_models,
              "MEASURE_LOG": str(ws / "measurements.jsonl")}  # fmt: skip
    yaml_dump(config, ws / "backend_config.yaml")
    meta = {
        "builtin_name": BACKEND_NAME,
        "package_location": str(HERE),
        "class_module": "nnmeter_backend",
        "class_name": "OrtBackend",
        "defaultConfigFile": str(ws / "backend_config.yaml"),
    }
    yaml_dump(meta, ws / "backend_meta.yaml")
    return ws / "backend_meta.yaml"


def labelled(models: dict[str, dict[str, Any]]) -> int:
    return sum(1 for module in models.values() for m in module.values() if "latency" in m)


class Builder:
    def __init__(self, ws: Path, budget_s: float, seed: int) -> None:
        self.ws = ws
        self.t0 = time.monotonic()
        self.deadline = self.t0 + budget_s
        self.budget_s = budget_s
        self.seed = seed
        import nnmeter_backend

        self.hooks: Any = nnmeter_backend  # its DEADLINE and PHASE steer the backend
        from nn_meter.builder.backends import connect_backend

        self.backend = connect_backend(BACKEND_NAME)  # through nn-Meter's registry: proves the registration

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fusion_rules(self) -> dict[str, Any]:
        from nn_meter.builder import profile_models
        from nn_meter.builder.backend_meta.fusion_rule_tester import detect_fusion_rule, generate_testcases

        t = time.monotonic()
        testcases = generate_testcases()
        n_models = sum(len(v) for v in testcases.values())
        log(f"fusion rules: {len(testcases)} test cases, {n_models} models generated in {time.monotonic() - t:.0f} s")
        self.hooks.PHASE = "ruletest"
        self.hooks.DEADLINE = min(self.deadline, self.t0 + RULETEST_SHARE * self.budget_s)
        profiled = profile_models(self.backend, testcases, mode="ruletest")
        complete = {name: tc for name, tc in profiled.items() if all("latency" in m for m in tc.values())}
        rules = detect_fusion_rule(complete) if complete else {}
        obeyed = sorted(name for name, r in rules.items() if r.get("obey"))
        log(f"fusion rules: {len(complete)}/{len(testcases)} test cases measured, {len(obeyed)} fuse: {', '.join(obeyed)}")
        if UNBUILDABLE:
            log(f"fusion rules: {len(UNBUILDABLE)} test cases could not be built: {', '.join(sorted(UNBUILDABLE))}")
        return {"testcases": len(testcases) + len(UNBUILDABLE), "built_testcases": len(testcases),
                "models": n_models, "measured_testcases": len(complete),
                "unbuildable": dict(UNBUILDABLE),
                "rules": rules, "obeyed": obeyed, "wall_s": time.monotonic() - t}  # fmt: skip

    def sample(self, kernel: str, n: int, mode: str, mark: str, configs: list[Any] | None = None,
               deadline: float | None = None) -> tuple[dict[str, Any], int]:  # fmt: skip
        from nn_meter.builder import profile_models
        from nn_meter.builder.kernel_predictor_builder import generate_config_sample

        self.hooks.PHASE = f"{mark}:{kernel}"
        self.hooks.DEADLINE = min(self.deadline, deadline) if deadline is not None else self.deadline
        models = generate_config_sample(kernel, n, mark=mark, sampling_mode=mode, configs=configs)
        profiled = profile_models(self.backend, models, mode="predbuild", save_name=f"profiled_{kernel}.json")
        if not self.backend.keep_models:  # kernels generated but not measured (budget spent) are not kept either
            for module in models.values():
                for m in module.values():
                    if m.get("model") and os.path.isfile(m["model"]):
                        os.remove(m["model"])
        return profiled, labelled(profiled)

    def fit(self, kernel: str, data: dict[str, Any], threshold: float, mark: str) -> tuple[Any, float, list[Any]]:
        from nn_meter.builder.kernel_predictor_builder import build_predictor_by_data

        self.hooks.PHASE = f"fit:{kernel}"
        results = self.ws / "nnm" / "predictor_build" / "results"
        predictor, acc10, errors = build_predictor_by_data(kernel, data, BACKEND_NAME, error_threshold=threshold,
                                                           mark=mark, save_path=str(results))  # fmt: skip
        return predictor, float(acc10), list(errors)

    def kernels(self, config: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from nn_meter.builder.utils import merge_info

        t = time.monotonic()
        names = list(config)
        data: dict[str, dict[str, Any]] = {}
        count: dict[str, int] = {}
        cost: dict[str, float] = {}
        info: dict[str, dict[str, Any]] = {k: {"pilot": 0, "prior": 0, "finegrained": 0, "iterations": 0}
                                           for k in names}  # fmt: skip
        skipped: dict[str, str] = {}
        # 1. pilot: cost per sample of each kernel
        for k in names:
            if self.left() < 2.0:
                skipped[k] = "budget spent before its pilot"
                continue
            t1 = time.monotonic()
            data[k], count[k] = self.sample(k, PILOT, "prior", "pilot")
            cost[k] = (time.monotonic() - t1) / max(count[k], 1)
            info[k]["pilot"] = count[k]
            log(f"pilot {k}: {count[k]} samples, {cost[k]:.2f} s/sample")
        # 2. prior: the same share s of every kernel's default INIT_SAMPLE_NUM, in up to PRIOR_PASSES passes: a
        # pilot's cost per sample is the mean of a few draws (one huge convolution can dominate it), so after each
        # pass every kernel's cost is its measured time per sample so far, and the next pass buys more with what
        # is left of the prior phase's time
        active = [k for k in names if k in data and count[k] > 0]
        for k in names:
            if k in data and count[k] == 0:
                skipped[k] = "no pilot sample could be measured"
        spent = {k: cost[k] * count[k] for k in active}
        budget, t_prior, share = PRIOR_SHARE * max(self.left(), 0.0), time.monotonic(), 0.0
        for _ in range(PRIOR_PASSES):
            allowance = budget - (time.monotonic() - t_prior)
            demand = sum(config[k]["INIT_SAMPLE_NUM"] * cost[k] for k in active)
            if demand <= 0 or allowance < 1.0 or share >= 1.0:
                break
            share = min(1.0, share + allowance / demand)
            log(f"prior: {share:.4f} of nn-Meter's default sample counts fit the budget")
            for k in active:
                target = max(PILOT, round(share * config[k]["INIT_SAMPLE_NUM"]))
                extra = target - count[k]
                if extra <= 0 or self.left() < cost[k]:
                    continue
                t1 = time.monotonic()
                new, n = self.sample(k, extra, "prior", "prior", deadline=t1 + 1.25 * extra * cost[k])
                data[k] = merge_info(new_info=new, prev_info=data[k])
                count[k] += n
                info[k]["prior"] += n
                spent[k] += time.monotonic() - t1
                cost[k] = spent[k] / count[k]
                log(f"prior {k}: +{n} samples ({count[k]} in all, {cost[k]:.3f} s/sample)")
        # 3. fit, then fine-grained iterations (iteration-major, so that every kernel gets some)
        predictors: dict[str, Any] = {}
        errors: dict[str, list[Any]] = {}
        for k in active:
            if count[k] < MIN_FIT:
                skipped[k] = f"only {count[k]} labelled samples (needs {MIN_FIT})"
                continue
            predictors[k], info[k]["acc10"], errors[k] = self.fit(k, data[k], config[k]["ERROR_THRESHOLD"], "prior")
            info[k]["iterations"] = 1
        max_iter = max((int(config[k]["ITERATION"]) for k in predictors), default=1)
        for it in range(1, max_iter):
            todo = [k for k in predictors if it < int(config[k]["ITERATION"]) and errors[k]]
            for i, k in enumerate(todo):
                # this iteration's share of the time left, split like the prior phase: in proportion to each
                # kernel's default prior workload (INIT_SAMPLE_NUM x its cost per sample)
                fine = int(config[k]["FINEGRAINED_SAMPLE_NUM"])
                weights = sum(config[j]["INIT_SAMPLE_NUM"] * cost[j] for j in todo[i:])
                slot = max(self.left(), 0.0) / (max_iter - it) * config[k]["INIT_SAMPLE_NUM"] * cost[k] / weights
                n_cfg = min(len(errors[k]), math.floor(slot / (fine * cost[k])))
                if n_cfg <= 0:  # not even one point's worth: fewer samples around the first large-error point
                    n_cfg, fine = 1, math.floor(slot / cost[k])
                    if fine < 2:
                        continue
                kdeadline = time.monotonic() + 1.25 * n_cfg * fine * cost[k]
                new, n = self.sample(k, fine, "finegrained", f"finegrained{it}", configs=errors[k][:n_cfg],
                                     deadline=kdeadline)  # fmt: skip
                if n == 0:
                    continue
                data[k] = merge_info(new_info=new, prev_info=data[k])
                count[k] += n
                info[k]["finegrained"] += n
                predictors[k], info[k]["acc10"], errors[k] = self.fit(
                    k, data[k], config[k]["ERROR_THRESHOLD"], f"finegrained{it}")
                info[k]["iterations"] = it + 1
                log(f"finegrained {it} {k}: +{n} samples around {n_cfg} large-error points, acc10 {info[k]['acc10']:.3f}")
        for k in names:
            info[k]["samples"] = count.get(k, 0)
            info[k]["cost_s_per_sample"] = cost.get(k)
        return {"predictors": predictors, "kernels": info, "skipped": skipped, "prior_share": share,
                "wall_s": time.monotonic() - t}  # fmt: skip


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("nn-meter", "torch", "onnx", "onnxruntime", "scikit-learn", "numpy", "annette"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "missing"
    return out


def build(args: argparse.Namespace) -> None:
    ws = Path(args.workspace).resolve()
    if ws.exists() and any(ws.iterdir()) and not args.force:
        raise SystemExit(f"{ws} is not empty: pass --force to rebuild there (its nn-Meter state is replaced)")
    if ws.exists() and args.force:
        shutil.rmtree(ws)
    ws.mkdir(parents=True)
    wall0 = time.monotonic()
    set_home(ws)
    random.seed(args.seed)
    import numpy as np

    np.random.seed(args.seed)

    import nn_meter

    nn_meter.create_user_configs()
    nnmeter_cli("register", "--backend", str(write_backend_registration(ws, args.threads, args.keep_models)))
    nnmeter_cli("create", "--customized-workspace", str(ws / "nnm"), "--backend", BACKEND_NAME)
    configs = ws / "nnm" / "configs"
    ruletest = yaml_load(configs / "ruletest_config.yaml")
    ruletest.update({"IMPLEMENT": "torch", "OTHER_TESTCASES": [], "DETAIL": True})  # shim 2
    yaml_dump(ruletest, configs / "ruletest_config.yaml")
    predbuild = yaml_load(configs / "predictorbuild_config.yaml")
    predbuild["IMPLEMENT"] = "torch"
    if args.kernels:
        unknown = sorted(set(args.kernels) - set(predbuild["KERNELS"]))
        if unknown:
            raise SystemExit(f"unknown kernels {unknown}; nn-Meter's: {', '.join(predbuild['KERNELS'])}")
        predbuild["KERNELS"] = {k: v for k, v in predbuild["KERNELS"].items() if k in args.kernels}
    yaml_dump(predbuild, configs / "predictorbuild_config.yaml")

    from nn_meter.builder import builder_config

    builder_config.init(str(ws / "nnm"))
    shims = ["no-mon-testcase", *apply_build_shims()]
    log(f"shims applied: {', '.join(shims)}")

    builder = Builder(ws, 60.0 * args.budget_min, args.seed)
    rules = builder.fusion_rules()
    kernels = builder.kernels(predbuild["KERNELS"])
    builder.hooks.DEADLINE = None
    build_s = time.monotonic() - builder.t0

    pdir = ws / "predictor"
    pdir.mkdir()
    for k, model in kernels["predictors"].items():
        with open(pdir / f"{k}.pkl", "wb") as fh:
            pickle.dump(model, fh)  # nn-Meter's own predictor format, read back only by nn-Meter
    (pdir / "fusion_rules.json").write_text(json.dumps(rules["rules"], indent=2), encoding="utf-8")
    yaml_dump({"name": args.name, "version": PREDICTOR_VERSION, "category": "cpu",
               "package_location": str(pdir), "kernel_predictors": sorted(kernels["predictors"])},
              pdir / "meta.yaml")  # fmt: skip
    nnmeter_cli("register", "--predictor", str(pdir / "meta.yaml"))

    from annette.backends.base import cpu_model
    from annette.bench.runner import DEFAULT_PROTOCOL

    lines = [json.loads(x) for x in (ws / "measurements.jsonl").read_text().splitlines() if x.strip()] \
        if (ws / "measurements.jsonl").exists() else []  # fmt: skip
    summary = {
        "schema": "annette.peers.nnmeter.build",
        "schema_version": SCHEMA_VERSION,
        "predictor": {"name": args.name, "version": PREDICTOR_VERSION, "dir": str(pdir)},
        "budget_min": args.budget_min,
        "build_s": build_s,
        "wall_s": time.monotonic() - wall0,
        "measurements": len(lines),
        "measurements_by_phase": {"ruletest": sum(1 for x in lines if x["phase"] == "ruletest"),
                                  "kernels": sum(1 for x in lines if x["phase"] != "ruletest")},  # fmt: skip
        "measure_s": sum(x["wall_s"] for x in lines),
        "fusion_rules": {k: v for k, v in rules.items() if k != "rules"},
        "kernels": kernels["kernels"],
        "kernels_built": sorted(kernels["predictors"]),
        "kernels_skipped": kernels["skipped"],
        "prior_share": kernels["prior_share"],
        "shims": [asdict(s) for s in SHIMS if s.key in shims or s.where == "predict"],
        "seed": args.seed,
        "threads": args.threads,
        "protocol": DEFAULT_PROTOCOL.to_dict(),
        "label": "min (annette's protocol label, given to nn-Meter as Latency.avg)",
        "cpu": cpu_model(),
        "versions": versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (pdir / "build.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    log(f"built {len(kernels['predictors'])} kernel predictors and {len(rules['obeyed'])} fusion rules from "
        f"{len(lines)} measurements in {build_s / 60:.1f} min (budget {args.budget_min} min): {pdir}/build.json")


# -- predict --------------------------------------------------------------------------------------------
def predict(args: argparse.Namespace) -> None:
    ws = Path(args.workspace).resolve()
    summary_path = ws / "predictor" / "build.json"
    if not summary_path.exists():
        raise SystemExit(f"{summary_path} not found: run `nnmeter.py build --workspace {ws}` first")
    built = json.loads(summary_path.read_text())
    set_home(ws)
    import logging

    import nn_meter
    from nn_meter.predictor.prediction.predict_by_kernel import merge_conv_kernels
    from nn_meter.predictor.prediction.utils import get_kernel_name

    logging.getLogger("nn-Meter").setLevel(logging.WARNING)
    account = KernelAccount([], [])
    shims = apply_predict_shims(account)
    name, version = built["predictor"]["name"], built["predictor"]["version"]
    predictor = nn_meter.load_latency_predictor(name, version)
    have = set(predictor.kernel_predictors)
    rows = []
    for f in args.files:
        account.kept.clear()
        account.dropped.clear()
        t = time.perf_counter()
        try:
            ms = float(predictor.predict(str(f), model_type="onnx"))
            error = None
        except Exception as exc:  # nn-Meter's converter and detector raise anything
            ms, error = math.nan, f"{type(exc).__name__}: {exc}"
        no_predictor = [{"op": op, "name": kname, "reason": f"no {get_kernel_name(merge_conv_kernels(op))} predictor"}
                        for op, kname in account.kept if get_kernel_name(merge_conv_kernels(op)) not in have]  # fmt: skip
        dropped = [*account.dropped, *no_predictor]
        rows.append({"file": str(f), "predicted_ms": None if math.isnan(ms) else ms, "error": error,
                     "kernels": len(account.kept) + len(account.dropped), "dropped": dropped,
                     "predict_s": time.perf_counter() - t})  # fmt: skip
        log(f"{Path(f).name}: {ms:.3f} ms, {len(dropped)} of {rows[-1]['kernels']} kernels dropped"
            + (f" ({error})" if error else ""))
    out = {"schema": "annette.peers.nnmeter.predictions", "schema_version": SCHEMA_VERSION,
           "predictor": built["predictor"], "shims": shims, "networks": rows}  # fmt: skip
    Path(args.out).write_text(json.dumps(out, indent=2), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build and register nn-Meter's predictor within a time budget")
    b.add_argument("--workspace", required=True, help="scratch folder (HOME, nn-Meter workspace, predictor)")
    b.add_argument("--budget-min", type=float, required=True, help="minutes for the whole build (30 = annette's)")
    b.add_argument("--name", default=DEFAULT_PREDICTOR, help="predictor name to register")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--kernels", nargs="*", help="only these kernels (default: nn-Meter's 16)")
    b.add_argument("--keep-models", action="store_true", help="keep every sampled kernel's ONNX file")
    b.add_argument("--force", action="store_true", help="replace a non-empty workspace")
    p = sub.add_parser("predict", help="predict ONNX files with the built predictor")
    p.add_argument("--workspace", required=True)
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], None]] = {"build": build, "predict": predict}
    commands[args.command](args)


if __name__ == "__main__":
    main()
