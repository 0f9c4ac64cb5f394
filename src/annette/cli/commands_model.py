"""``annette fit``, ``annette estimate`` and ``annette hw list``: build, use and list hardware models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from annette.cli.commands_graph import MODEL_HELP, SHAPE_HELP, _si, parse_input_shapes
from annette.cli.common import console, emit_json, err_console, handle_errors
from annette.errors import UnknownNameError
from annette.layers import KINDS

hw_app = typer.Typer(help="Hardware models (shipped and fitted).", no_args_is_help=True)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _kinds(value: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise UnknownNameError(f"unknown layer-model kind(s) {bad or [value]}; valid: {', '.join(KINDS)}")
    return kinds


@handle_errors
def fit(
    store_dirs: list[Path] = typer.Argument(..., help="Benchmark store directories (each holds store.sqlite)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the hardware model (JSON)."),
    kinds: str = typer.Option(",".join(KINDS), "--kinds", help="Comma-separated layer-model kinds to fit."),
    seed: int = typer.Option(0, "--seed", help="Seed of the hold-out split and the tree ensembles."),
    holdout: float = typer.Option(0.15, "--holdout", help="Share of each family's records held out for quality."),
    name: str = typer.Option(None, "--name", help="Name of the hardware model (default: from the target)."),
    exclude_flag: list[str] = typer.Option(None, "--exclude-flag", help="Skip records with this stability flag."),
    use_networks: bool = typer.Option(False, "--use-networks", help="Also train on network records' profiles."),
    target: str = typer.Option(None, "--target", help="Target key, where the store holds several."),
    generic_default: bool = typer.Option(
        True, "--generic-default/--no-generic-default",
        help="Estimate op types no benchmark covered with the generic model (noted per layer), "
        "instead of reporting them unsupported.",
    ),
    cache_store: list[Path] = typer.Option(
        None, "--cache-store",
        help="Store of cache-pressure blocks (benchmarks/cache_pressure.py) to fit the cache model from.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the fit report as JSON."),
) -> None:
    """Fit a hardware model (mapping rules + layer models) from one or more benchmark stores."""
    from annette.fit import fit_store

    with err_console.status("fitting ...") as status:

        def progress(msg: str) -> None:
            status.update(msg)
            err_console.print(f"[dim]{msg}[/]", highlight=False)

        hw, report = fit_store(
            store_dirs, kinds=_kinds(kinds), seed=seed, holdout=holdout, name=name,
            exclude_flags=tuple(exclude_flag or ()), use_networks=use_networks, target_key=target, progress=progress,
            generic_default=generic_default, cache_dirs=tuple(cache_store or ()),
        )
    hw.save(out)
    doc = report.to_dict()
    if as_json:
        emit_json({"out": str(out), "name": hw.name, **doc})
        return
    table = Table(title=f"{hw.name}: held-out quality per executed-layer type (kernel time)")
    for col in ("type", "kind", "n train", "n test", "MAPE", "R²"):
        table.add_column(col, justify="left" if col in ("type", "kind") else "right")
    for q in report.quality:
        table.add_row(escape(q.type), q.kind, str(q.n_train), str(q.n_test), _pct(q.mape),
                      "-" if q.r2 is None else f"{q.r2:.3f}")
    console.print(table)
    for kind, e2e in report.end_to_end.items():
        console.print(f"held-out multi-layer records, {kind}: MAPE {_pct(e2e['mape'])} over {e2e['n']}",
                      highlight=False)
    o = report.overhead
    console.print(f"overhead {o.per_node_ms * 1e3:.2f} µs/node + {o.per_run_ms * 1e3:.2f} µs/run ({o.method})",
                  highlight=False)
    if hw.cache is not None:
        c = hw.cache
        console.print(f"cache: {c.capacity_bytes / 2**20:.0f} MiB, weights fetched again at "
                      f"{c.bandwidth_bytes_per_s / 1e9:.1f} GB/s ({c.method})", highlight=False)
    for line in report.rules:
        console.print(f"  {escape(line)}", highlight=False)
    if report.skipped:
        console.print(f"skipped: {report.skipped}", highlight=False)
    console.print(f"wrote {out}", highlight=False)


@handle_errors
def estimate(
    model: str = typer.Argument(..., help=MODEL_HELP),
    hw: str = typer.Option(..., "--hw", help="Hardware model: a JSON file or a shipped name (annette hw list)."),
    kind: str = typer.Option("mixed", "--kind", help=f"Layer-model kind: {', '.join(KINDS)}."),
    batch: int = typer.Option(None, "--batch", "-b", help="Batch size."),
    input_shape: list[str] = typer.Option(None, "--input-shape", help=SHAPE_HELP),
    strict: bool = typer.Option(False, "--strict", help="Fail if any layer has no layer model."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Estimate a model's latency layer by layer on a hardware model."""
    from annette.estimate import estimate as run_estimate
    from annette.hardware import HardwareModel
    from annette.importers import load_model

    if kind not in KINDS:
        raise UnknownNameError(f"unknown kind {kind!r}; valid: {', '.join(KINDS)}")
    hardware = HardwareModel.load(hw)
    graph = load_model(model, batch=batch, input_shapes=parse_input_shapes(input_shape))
    est = run_estimate(graph, hardware, kind=kind, strict=strict)
    if as_json:
        emit_json(est.to_dict())
        return
    table = Table(title=f"{est.model} on {est.hardware} ({est.target}, {est.kind})")
    for col in ("executed layer", "type", "covers", "FLOPs", "bytes", "bound", "time ms", "note"):
        table.add_column(col, justify="right" if col in ("FLOPs", "bytes", "time ms") else "left")
    for x in est.layers:
        covers = f"(inserted for {x.anchor})" if x.inserted else ",".join(x.covers)
        time_cell = "[red]unsupported[/]" if x.time_ms is None else f"{x.time_ms:.4f}"
        table.add_row(escape(x.name), escape(x.type), escape(covers), _si(x.flops), _si(x.bytes), x.bound,
                      time_cell, escape(x.note))
    table.add_section()
    table.add_row("total", "", "", "", "", "", f"{est.total_ms:.4f}", "", style="bold")
    console.print(table)
    n_bad = len(est.unsupported)
    console.print(
        f"{len(est.layers)} executed layers, {len(est.removed)} graph layers removed; "
        f"{est.run_overhead_ms * 1e3:.2f} µs per run (and {est.node_overhead_ms * 1e3:.2f} µs per node, included in "
        f"each layer's time)" + (f"; {est.cache_ms:.4f} ms of weights fetched again (network larger than the cache, "
        "included)" if est.cache_ms else "") + "; total "
        f"{est.total_ms:.4f} ms" + (f"; [red]{n_bad} unsupported layer(s) not in the total[/]" if n_bad else ""),
        highlight=False,
    )


def _hw_row(name: str) -> dict[str, Any]:
    from annette.hardware import SHIPPED, HardwareModel

    hw = HardwareModel.load(SHIPPED.get(name))
    e2e = dict(hw.quality.get("end_to_end_holdout", {}))
    return {
        "name": name,
        "path": str(SHIPPED.get(name)),
        "target": hw.target.key,
        "device_model": hw.target.device_model,
        "runtime": f"{hw.target.runtime} {hw.target.runtime_version}",
        "kinds": list(hw.kinds),
        "n_types": len(hw.layer_models),
        "provenance": dict(hw.provenance),
        "accuracy": {k: v.get("mape") for k, v in e2e.items()},
        "measured": dict(hw.quality.get("measured", {})),
    }


def _accuracy_cell(row: dict[str, Any]) -> str:
    """Measured studies first (MAPE of each kind on real networks, with the noise floor); else held-out data."""
    lines = []
    for study, m in row["measured"].items():
        kinds = ", ".join(f"{k} {v['mape_pct']:.1f} %" for k, v in m["kinds"].items())
        lines.append(f"{study} ({m['kinds'][next(iter(m['kinds']))]['n']} nets, {m['date'][:10]}): {kinds}; "
                     f"noise floor {m['noise_floor']['mape_pct']:.1f} %")
    if not lines and row["accuracy"]:
        lines.append("held-out blocks/layers: " + ", ".join(f"{k} {_pct(v)}" for k, v in row["accuracy"].items()))
    return "\n".join(lines) or "-"


@handle_errors
def hw_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the shipped hardware models."""
    from annette.hardware import SHIPPED

    rows = [_hw_row(name) for name in SHIPPED.names()]
    if as_json:
        emit_json(rows)
        return
    table = Table(title="shipped hardware models")
    for col in ("name", "device", "runtime", "kinds", "accuracy (MAPE)"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], f"{r['device_model']}\n{r['target']}", r["runtime"], "\n".join(r["kinds"]),
                      _accuracy_cell(r))
    console.print(table)
    if not rows:
        console.print("no shipped hardware model yet: fit one with `annette fit STORE -o hw.json`")


hw_app.command("list")(hw_list)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)
    app.command("estimate")(estimate)
    app.add_typer(hw_app, name="hw")
