"""Golden estimates: a fixed set of graphs estimated with every shipped bundle and every kind it has.

The graphs need no torch: NAS-Bench-201 networks (seeded architectures and weights) and benchmark blocks of
``annette.bench`` (parameters drawn at a fixed seed, or a transformer family's small configuration). Their
specifications are stored with the results, so the check rebuilds exactly the graphs that were estimated.
``tests/test_golden_estimates.py`` recomputes every total and per-layer time and compares them with the
stored ones; a refactoring that changes no behaviour keeps them equal.

    .venv/bin/python scripts/golden_estimates.py           # compare with tests/data/golden_estimates.json
    .venv/bin/python scripts/golden_estimates.py --write   # (re)write it from the current code
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "data" / "golden_estimates.json"
SCHEMA_VERSION = 1
NB201_SEED = 201  # architectures sample_archs(3, seed=NB201_SEED), weights seed 0
BLOCK_SEED = 12  # parameters of the CNN blocks: sample_params(family, default_rng(BLOCK_SEED))
CNN_BLOCKS = (
    "conv_bn_relu", "conv_relu_maxpool", "residual", "dwsep", "inverted_residual", "se", "attention", "mlp",
    "chain2", "ctx_bottleneck", "ctx_shuffle", "ctx_convnext", "ctx_dense", "ctx_head", "ctx_cell", "cache_conv",
)
TRANSFORMER_BLOCKS = ("encoder_layer", "gpt2_layer", "decoder_layer", "sdpa", "rmsnorm", "gelu_tanh")


def graph_specs() -> list[dict[str, Any]]:
    """The graphs, as specifications :func:`build_graph` turns into graphs."""
    from annette.bench.blocks import sample_params
    from annette.bench.transformer_blocks import SMALL_PARAMS
    from annette.spaces.nb201 import sample_archs

    specs: list[dict[str, Any]] = [
        {"kind": "nb201", "arch": arch, "batch": batch}
        for arch, batch in zip(sample_archs(3, seed=NB201_SEED), (1, 1, 4), strict=True)
    ]
    for family in CNN_BLOCKS:
        params = sample_params(family, np.random.default_rng(BLOCK_SEED))
        specs.append({"kind": "block", "family": family, "params": json.loads(json.dumps(params))})
    for family in TRANSFORMER_BLOCKS:
        specs.append({"kind": "block", "family": family, "params": json.loads(json.dumps(SMALL_PARAMS[family]))})
    return specs


def build_graph(spec: Mapping[str, Any]) -> Any:
    from annette.importers import as_graph

    if spec["kind"] == "nb201":
        from annette.spaces.nb201 import graph_from_arch

        return graph_from_arch(spec["arch"], batch=int(spec["batch"]), seed=0)
    from annette.bench.blocks import build_model

    return as_graph(build_model(spec["family"], spec["params"], name=f"block:{spec['family']}"))


def bundles() -> list[Path]:
    import annette

    return sorted((Path(annette.__file__).parent / "data" / "hw").glob("*.json"))


def estimates(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """bundle name -> its executed layers per graph (name, type: the same for every kind) and, per kind, every
    graph's total, counts and per-layer times."""
    from annette.estimate import estimate_many
    from annette.hardware import HardwareModel

    graphs = [build_graph(s) for s in specs]
    if len({g.name for g in graphs}) != len(graphs):
        raise SystemExit("golden graphs must have distinct names (results are keyed by them)")
    out: dict[str, dict[str, Any]] = {}
    for path in bundles():
        hw = HardwareModel.load(path)
        entry: dict[str, Any] = {"layers": None, "kinds": {}}
        for kind in hw.kinds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bundles fitted for another machine than this one
                results = estimate_many(graphs, hw, kind=kind)
            layers = {e.model: [[x.name, x.type] for x in e.layers] for e in results}
            if entry["layers"] is None:
                entry["layers"] = layers
            elif entry["layers"] != layers:  # a kind mapped differently: keep it visible
                entry.setdefault("layers_by_kind", {})[kind] = layers
            entry["kinds"][kind] = {
                e.model: {
                    "total_ms": e.total_ms,
                    "n_executed": e.n_executed,
                    "n_unsupported": e.n_unsupported,
                    "n_generic": e.n_generic,
                    "layer_ms": [x.time_ms for x in e.layers],
                }
                for e in results
            }
        out[path.stem] = entry
    return out


def compute() -> dict[str, Any]:
    specs = graph_specs()
    return {"schema_version": SCHEMA_VERSION, "graphs": specs, "estimates": estimates(specs)}


def differences(stored: Mapping[str, Any], rel: float = 1e-9) -> Iterator[str]:
    """Where estimates of the stored graphs differ from the stored ones (numbers beyond ``rel``)."""
    got = estimates(list(stored["graphs"]))
    want = stored["estimates"]
    if set(got) != set(want):
        yield f"bundles differ: got {sorted(got)}, stored {sorted(want)}"
    for bundle in sorted(set(got) & set(want)):
        g, w = got[bundle], want[bundle]
        for key in ("layers", "layers_by_kind"):
            if g.get(key) != w.get(key):
                yield f"{bundle}: executed layers (names, types) differ from the stored ones ({key})"
        if set(g["kinds"]) != set(w["kinds"]):
            yield f"{bundle}: kinds differ: got {sorted(g['kinds'])}, stored {sorted(w['kinds'])}"
        for kind in sorted(set(g["kinds"]) & set(w["kinds"])):
            if set(g["kinds"][kind]) != set(w["kinds"][kind]):
                yield f"{bundle}/{kind}: graphs differ"
                continue
            for graph, wg in w["kinds"][kind].items():
                yield from _compare(f"{bundle}/{kind}/{graph}", g["kinds"][kind][graph], wg, rel)


def _close(a: float | None, b: float | None, rel: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-300)


def _compare(where: str, got: Mapping[str, Any], want: Mapping[str, Any], rel: float) -> Iterator[str]:
    for key in ("n_executed", "n_unsupported", "n_generic"):
        if got[key] != want[key]:
            yield f"{where}: {key} {got[key]!r}, stored {want[key]!r}"
    if not _close(got["total_ms"], want["total_ms"], rel):
        yield f"{where}: total_ms {got['total_ms']!r}, stored {want['total_ms']!r}"
    if len(got["layer_ms"]) != len(want["layer_ms"]):
        yield f"{where}: {len(got['layer_ms'])} layers, stored {len(want['layer_ms'])}"
        return
    for i, (ms, wms) in enumerate(zip(got["layer_ms"], want["layer_ms"], strict=True)):
        if not _close(ms, wms, rel):
            yield f"{where}: executed layer {i}: {ms!r} ms, stored {wms!r} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN} from the current code")
    args = parser.parse_args()
    if args.write:
        data = compute()
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        n = sum(len(per_kind) for b in data["estimates"].values() for per_kind in b["kinds"].values())
        print(f"wrote {GOLDEN}: {len(data['graphs'])} graphs, {n} estimates")
        return
    found = list(differences(json.loads(GOLDEN.read_text())))
    for line in found[:50]:
        print(line)
    print(f"{len(found)} difference(s)")
    raise SystemExit(1 if found else 0)


if __name__ == "__main__":
    main()
